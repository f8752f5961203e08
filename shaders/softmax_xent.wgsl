// Softmax cross-entropy, fused with its gradient and the batch's metrics.
//
// logits (B, K) -> d_logits (B, K) = (softmax - onehot) / count for the step's `count`
// valid samples, zero for padding slots. metrics[slot * 2] gets the summed loss and
// metrics[slot * 2 + 1] the number of correct argmax predictions. One thread walks the
// batch in order: the sums are then identical on every run, and B * K is small.

override WG: u32 = 64u;

struct XentParams {
    batch: u32,
    classes: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: XentParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> d_logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> metrics: array<f32>;
@group(1) @binding(0) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn softmax_xent(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if lid != 0u || wid.x != 0u {
        return;
    }
    let count = min(step.count, p.batch);
    let scale = 1.0 / f32(count);
    var loss_sum = 0.0;
    var correct = 0.0;
    for (var b = 0u; b < p.batch; b++) {
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
        for (var k = 0u; k < p.classes; k++) {
            let prob = exp(logits[row + k] - best) / denom;
            let onehot = select(0.0, 1.0, k == label);
            d_logits[row + k] = select(0.0, (prob - onehot) * scale, valid);
        }
        if valid {
            loss_sum += log(denom) - (logits[row + label] - best);
            correct += select(0.0, 1.0, best_k == label);
        }
    }
    metrics[step.slot * 2u] = loss_sum;
    metrics[step.slot * 2u + 1u] = correct;
}
