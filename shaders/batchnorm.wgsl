// Batch normalisation over channels, f32. Values are (B, C, P): NCHW images with P = H * W
// per plane, or (B, F) features with P = 1. Only the step's valid rows (Step.count of B:
// the last batch of an epoch may be short, its other rows padding) enter the statistics
// and get a gradient. Each channel's N = count * P values are taken in
// order j = b * P + i and cut into `chunks` chunks of `chunk_len`, so that no invocation's
// loop passes the adapter's loop budget and every sum has a fixed order (partial sums per
// chunk, then the chunks in order).
//
// stats (4, C): mean, inv_std (1 / sqrt(var + eps), var biased) of the last training
// batch, then the running mean and running variance (unbiased), as PyTorch keeps them.
// params: gamma (C) then beta (C) at param_offset; grads the same layout.
//
// Training forward: bn_sum_partial -> bn_mean -> bn_sqdev_partial -> bn_var (which also
// updates the running statistics) -> bn_forward_train. Evaluation: bn_forward_eval (the
// running statistics). Backward: bn_grad_partial -> bn_grad_reduce (dgamma, dbeta into
// grads) -> bn_backward_dx.
//
// With p.relu set, a ReLU that follows the layer is fused in: the forwards write
// max(y, 0) (NaN and -0 give +0, as relu.wgsl), and the backward kernels mask dy by that
// output (`out`) before using it, as relu_backward would have.
//
// The elementwise kernels (forwards, dx) give each thread up to PER_THREAD consecutive
// values of one (sample, channel) row: one division finds the row, and the channel's
// values are loaded once for all of them. Every value is computed the same way whatever
// PER_THREAD is, so the autotuner's choice never changes a result.

override WG: u32 = 64u;

struct BnParams {
    batch: u32,
    channels: u32,
    plane: u32,
    chunk_len: u32,
    chunks: u32,
    param_offset: u32,
    eps: f32,
    momentum: f32,
    relu: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Values per thread of the elementwise kernels: set by the host (the autotuner's choice).
override PER_THREAD: u32 = 16u;

@group(0) @binding(0) var<uniform> p: BnParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> grads: array<f32>;
// the layer's output, whose sign masks dy when a ReLU is fused
@group(0) @binding(8) var<storage, read> out: array<f32>;
@group(1) @binding(0) var<uniform> step: Step;

// The batch's valid rows.
fn rows() -> u32 {
    return min(step.count, p.batch);
}

fn thread_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn count() -> f32 {
    return f32(rows() * p.plane);
}

const SUM: u32 = 0u;
const SQDEV: u32 = 1u;

// Walks channel c's values j = first .. end - 1 (j = b * plane + i) in order, with one
// division at the start: `at` is j's flat index, and steps over the other channels' planes
// at each sample's end.
struct Walk {
    at: u32,
    i: u32,
}

fn walk_start(c: u32, first: u32) -> Walk {
    let b = first / p.plane;
    let i = first - b * p.plane;
    return Walk((b * p.channels + c) * p.plane + i, i);
}

fn walk_next(w: Walk) -> Walk {
    if w.i + 1u == p.plane {
        return Walk(w.at + 1u + (p.channels - 1u) * p.plane, 0u);
    }
    return Walk(w.at + 1u, w.i + 1u);
}

// One thread per (chunk, channel): the chunk's sum of x or of (x - mean)^2.
fn stat_partial(t: u32, what: u32) {
    if t >= p.chunks * p.channels {
        return;
    }
    let chunk = t / p.channels;
    let c = t % p.channels;
    let mean = stats[c];
    let first = chunk * p.chunk_len;
    let end = min(rows() * p.plane, first + p.chunk_len);
    var w = walk_start(c, first);
    var sum = 0.0;
    for (var j = first; j < end; j++) {
        let v = x[w.at];
        if what == SUM {
            sum += v;
        } else {
            sum += (v - mean) * (v - mean);
        }
        w = walk_next(w);
    }
    partial[t] = sum;
}

@compute @workgroup_size(WG)
fn bn_sum_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    stat_partial(thread_id(wid, nwg, lid), SUM);
}

@compute @workgroup_size(WG)
fn bn_sqdev_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    stat_partial(thread_id(wid, nwg, lid), SQDEV);
}

// The chunks' partials for channel c (stride `stride` words per chunk, `at` within), in order.
fn chunk_sum(c: u32, stride: u32, at: u32) -> f32 {
    var sum = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        sum += partial[k * stride + at];
    }
    return sum;
}

@compute @workgroup_size(WG)
fn bn_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let c = thread_id(wid, nwg, lid);
    if c >= p.channels {
        return;
    }
    stats[c] = chunk_sum(c, p.channels, c) / count();
}

@compute @workgroup_size(WG)
fn bn_var(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let c = thread_id(wid, nwg, lid);
    if c >= p.channels {
        return;
    }
    let n = count();
    let sqdev = chunk_sum(c, p.channels, c);
    let var_biased = sqdev / n;
    stats[p.channels + c] = 1.0 / sqrt(var_biased + p.eps);
    // the running variance is the unbiased one (PyTorch); one value has none: keep it
    let unbiased = select(stats[3u * p.channels + c], sqdev / (n - 1.0), n > 1.0);
    let m = p.momentum;
    stats[2u * p.channels + c] = (1.0 - m) * stats[2u * p.channels + c] + m * stats[c];
    stats[3u * p.channels + c] = (1.0 - m) * stats[3u * p.channels + c] + m * unbiased;
}

fn gamma(c: u32) -> f32 {
    return params[p.param_offset + c];
}

fn beta(c: u32) -> f32 {
    return params[p.param_offset + p.channels + c];
}

// Up to PER_THREAD consecutive values of row `row` (= sample * channels + channel),
// starting at flat index `base`.
struct Span {
    base: u32,
    len: u32,
    channel: u32,
    row: u32,
}

fn segments_per_row() -> u32 {
    return (p.plane + PER_THREAD - 1u) / PER_THREAD;
}

// None past the end: threads = batch * channels * segments_per_row().
fn span_of(t: u32) -> Span {
    let segs = segments_per_row();
    let row = t / segs;
    let first = (t - row * segs) * PER_THREAD;
    return Span(row * p.plane + first, min(PER_THREAD, p.plane - first), row % p.channels, row);
}

fn elementwise_threads() -> u32 {
    return p.batch * p.channels * segments_per_row();
}

fn relu_if_fused(v: f32) -> f32 {
    return select(v, select(0.0, v, v > 0.0), p.relu != 0u);
}

// dy at `at`, masked by the fused ReLU's output.
fn dy_at(at: u32) -> f32 {
    let g = dy[at];
    if p.relu != 0u {
        return select(0.0, g, out[at] > 0.0);
    }
    return g;
}

// y = (x - mean) * (gamma * inv_std) + beta over one span.
fn normalise(s: Span, mean: f32, inv_std: f32) {
    let scale = gamma(s.channel) * inv_std;
    let shift = beta(s.channel);
    for (var k = 0u; k < s.len; k++) {
        dst[s.base + k] = relu_if_fused((x[s.base + k] - mean) * scale + shift);
    }
}

@compute @workgroup_size(WG)
fn bn_forward_train(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t >= elementwise_threads() {
        return;
    }
    let s = span_of(t);
    normalise(s, stats[s.channel], stats[p.channels + s.channel]);
}

@compute @workgroup_size(WG)
fn bn_forward_eval(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t >= elementwise_threads() {
        return;
    }
    let s = span_of(t);
    let c = s.channel;
    normalise(s, stats[2u * p.channels + c], 1.0 / sqrt(stats[3u * p.channels + c] + p.eps));
}

// One thread per (chunk, channel): partial[2 t] = sum dy, partial[2 t + 1] = sum dy * xhat.
@compute @workgroup_size(WG)
fn bn_grad_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t >= p.chunks * p.channels {
        return;
    }
    let chunk = t / p.channels;
    let c = t % p.channels;
    let mean = stats[c];
    let inv_std = stats[p.channels + c];
    let first = chunk * p.chunk_len;
    let end = min(rows() * p.plane, first + p.chunk_len);
    var w = walk_start(c, first);
    var sum_dy = 0.0;
    var sum_dy_xhat = 0.0;
    for (var j = first; j < end; j++) {
        let g = dy_at(w.at);
        sum_dy += g;
        sum_dy_xhat += g * (x[w.at] - mean) * inv_std;
        w = walk_next(w);
    }
    partial[2u * t] = sum_dy;
    partial[2u * t + 1u] = sum_dy_xhat;
}

// dgamma and dbeta per channel, into grads.
@compute @workgroup_size(WG)
fn bn_grad_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let c = thread_id(wid, nwg, lid);
    if c >= p.channels {
        return;
    }
    grads[p.param_offset + c] = chunk_sum(c, 2u * p.channels, 2u * c + 1u);
    grads[p.param_offset + p.channels + c] = chunk_sum(c, 2u * p.channels, 2u * c);
}

// dx = gamma inv_std (dy - (dbeta + xhat dgamma) / N); zero on padding rows, which took
// no part in the statistics.
@compute @workgroup_size(WG)
fn bn_backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t >= elementwise_threads() {
        return;
    }
    let s = span_of(t);
    let c = s.channel;
    let mean = stats[c];
    let inv_std = stats[p.channels + c];
    let scale = gamma(c) * inv_std;
    let dgamma = grads[p.param_offset + c];
    let dbeta = grads[p.param_offset + p.channels + c];
    let n = count();
    let valid = s.row / p.channels < rows();
    for (var k = 0u; k < s.len; k++) {
        let at = s.base + k;
        let xhat = (x[at] - mean) * inv_std;
        dst[at] = select(0.0, scale * (dy_at(at) - (dbeta + xhat * dgamma) / n), valid);
    }
}
