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
}

@group(0) @binding(0) var<uniform> p: BnParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> grads: array<f32>;
@group(1) @binding(0) var<uniform> step: Step;

// The batch's valid rows.
fn rows() -> u32 {
    return min(step.count, p.batch);
}

fn index_of(c: u32, j: u32) -> u32 {
    return ((j / p.plane) * p.channels + c) * p.plane + j % p.plane;
}

fn thread_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn count() -> f32 {
    return f32(rows() * p.plane);
}

const SUM: u32 = 0u;
const SQDEV: u32 = 1u;

// One thread per (chunk, channel): the chunk's sum of x or of (x - mean)^2.
fn stat_partial(t: u32, what: u32) {
    if t >= p.chunks * p.channels {
        return;
    }
    let chunk = t / p.channels;
    let c = t % p.channels;
    let mean = stats[c];
    let end = min(rows() * p.plane, (chunk + 1u) * p.chunk_len);
    var sum = 0.0;
    for (var j = chunk * p.chunk_len; j < end; j++) {
        let v = x[index_of(c, j)];
        if what == SUM {
            sum += v;
        } else {
            sum += (v - mean) * (v - mean);
        }
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

fn channel_of(i: u32) -> u32 {
    return (i / p.plane) % p.channels;
}

@compute @workgroup_size(WG)
fn bn_forward_train(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = thread_id(wid, nwg, lid);
    if i >= p.batch * p.channels * p.plane {
        return;
    }
    let c = channel_of(i);
    dst[i] = gamma(c) * (x[i] - stats[c]) * stats[p.channels + c] + beta(c);
}

@compute @workgroup_size(WG)
fn bn_forward_eval(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = thread_id(wid, nwg, lid);
    if i >= p.batch * p.channels * p.plane {
        return;
    }
    let c = channel_of(i);
    let inv_std = 1.0 / sqrt(stats[3u * p.channels + c] + p.eps);
    dst[i] = gamma(c) * (x[i] - stats[2u * p.channels + c]) * inv_std + beta(c);
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
    let end = min(rows() * p.plane, (chunk + 1u) * p.chunk_len);
    var sum_dy = 0.0;
    var sum_dy_xhat = 0.0;
    for (var j = chunk * p.chunk_len; j < end; j++) {
        let at = index_of(c, j);
        let g = dy[at];
        sum_dy += g;
        sum_dy_xhat += g * (x[at] - mean) * inv_std;
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
    let i = thread_id(wid, nwg, lid);
    if i >= p.batch * p.channels * p.plane {
        return;
    }
    let c = channel_of(i);
    let inv_std = stats[p.channels + c];
    let xhat = (x[i] - stats[c]) * inv_std;
    let dgamma = grads[p.param_offset + c];
    let dbeta = grads[p.param_offset + p.channels + c];
    let valid = i / (p.channels * p.plane) < rows();
    dst[i] = select(0.0, gamma(c) * inv_std * (dy[i] - (dbeta + xhat * dgamma) / count()), valid);
}
