// Softmax cross-entropy, fused with its gradient and the per-sample metrics.
//
// logits (B, K) -> d_logits (B, K) = (softmax - target) / count for the step's `count`
// valid samples, zero for padding slots. The target is the one-hot label smoothed by
// eps: (1 - eps) onehot + eps / K, and the loss is the cross-entropy against it (eps = 0:
// plain cross-entropy, bit for bit as before). One thread per row, so no invocation's loops grow
// with the batch (3K + 2 iterations). Each valid row b also writes its loss and whether
// its argmax is right to metrics[2 (start + b)] and metrics[2 (start + b) + 1], indexed by
// the sample's place in the epoch's order: the host sums them in that order, so batching
// never changes how they are added up.

override WG: u32 = 64u;

struct XentParams {
    batch: u32,
    classes: u32,
    // label smoothing eps in [0, 1)
    smoothing: f32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: XentParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> d_logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> metrics: array<f32>;
@group(1) @binding(0) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn softmax_xent(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let b = (wid.x + wid.y * nwg.x) * WG + lid;
    if b >= p.batch {
        return;
    }
    let count = min(step.count, p.batch);
    let scale = 1.0 / f32(count);
    let row = b * p.classes;
    var best = logits[row];
    var best_k = 0u;
    for (var k = 1u; k < p.classes; k++) {
        if logits[row + k] > best {
            best = logits[row + k];
            best_k = k;
        }
    }
    var denom = 0.0;
    for (var k = 0u; k < p.classes; k++) {
        denom += exp(logits[row + k] - best);
    }
    let label = labels[b];
    let valid = b < count;
    let spread = p.smoothing / f32(p.classes);
    // sum over k of (logit_k - best): the smoothed loss's share of every class
    var shifted_sum = 0.0;
    for (var k = 0u; k < p.classes; k++) {
        let shifted = logits[row + k] - best;
        let prob = exp(shifted) / denom;
        let wanted = select(0.0, 1.0 - p.smoothing, k == label) + spread;
        d_logits[row + k] = select(0.0, (prob - wanted) * scale, valid);
        shifted_sum += shifted;
    }
    if valid {
        let at = 2u * (step.start + b);
        // -sum_k target_k log p_k, with log p_k = (logit_k - best) - log(denom)
        metrics[at] = log(denom) - (1.0 - p.smoothing) * (logits[row + label] - best) - spread * shifted_sum;
        metrics[at + 1u] = select(0.0, 1.0, best_k == label);
    }
}
