// Generic convolution, NCHW f32, stride 1, "same" padding K / 2 (K odd: 3 or 5), any
// channel counts and any side: the layer for shapes the tiled 3x3 kernels (conv.wgsl) do
// not take.
//
// x (B, CI, S, S), y and dy (B, CO, S, S). The layer's parameter block (bound at its
// offset, so index 0 is its first word): weights (CO, CI, K, K), then the bias (CO) when
// has_bias; the gradient block has the same layout.
//
// conv_generic_forward: one thread per y value, loops CI x K x K.
// conv_generic_dx: one thread per dx value, loops CO x K x K.
// conv_generic_wgrad: one thread per (chunk, parameter). The batch's B * S output rows,
//   taken in order r = b * S + oy, are cut into `chunks` chunks of `chunk_rows` rows (the
//   last may be short; chunks may end inside an image); each thread sums its parameter's
//   gradient over its chunk's rows in order into partial[chunk * param_len + q].
// conv_generic_wgrad_reduce: one thread per parameter adds the chunks in index order into
//   the gradient block (overwriting it). No atomics: the result is bitwise reproducible.
//
// Every loop's trip count is uniform or bounded by a uniform (CI, CO, K, chunk_rows, S),
// so conv_generic.rs can bound each invocation's loop iterations (loop_budget.rs).
//
// Out-of-image taps are skipped by testing the unsigned coordinate against S: a negative
// coordinate wraps around to a huge u32 (WGSL u32 arithmetic wraps), so one comparison
// covers both edges.

override WG: u32 = 64u;

struct ConvGenericParams {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    side: u32,
    kernel: u32,
    // 1 when the block holds a bias after the weights
    has_bias: u32,
    chunks: u32,
    chunk_rows: u32,
}

@group(0) @binding(0) var<uniform> p: ConvGenericParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
// y, dx, the wgrad partials or the gradient block, by entry point
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> partial: array<f32>;

fn thread_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn weight_len() -> u32 {
    return p.out_channels * p.in_channels * p.kernel * p.kernel;
}

fn param_len() -> u32 {
    return weight_len() + select(0u, p.out_channels, p.has_bias != 0u);
}

@compute @workgroup_size(WG)
fn conv_generic_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = thread_id(wid, nwg, lid);
    let s = p.side;
    let area = s * s;
    if i >= p.batch * p.out_channels * area {
        return;
    }
    let ox = i % s;
    let oy = (i / s) % s;
    let co = (i / area) % p.out_channels;
    let b = i / (area * p.out_channels);
    let k = p.kernel;
    let pad = k / 2u;
    var acc = 0.0;
    for (var ci = 0u; ci < p.in_channels; ci++) {
        let x_plane = (b * p.in_channels + ci) * area;
        let w_taps = (co * p.in_channels + ci) * k * k;
        for (var ky = 0u; ky < k; ky++) {
            let iy = oy + ky - pad;
            if iy >= s {
                continue;
            }
            for (var kx = 0u; kx < k; kx++) {
                let ix = ox + kx - pad;
                if ix < s {
                    acc += x[x_plane + iy * s + ix] * w[w_taps + ky * k + kx];
                }
            }
        }
    }
    if p.has_bias != 0u {
        acc += w[weight_len() + co];
    }
    dst[i] = acc;
}

// dx[b, ci, iy, ix] = sum over co, ky, kx of dy[b, co, iy + pad - ky, ix + pad - kx] *
// w[co, ci, ky, kx]: the forward's taps read back from the input's side.
@compute @workgroup_size(WG)
fn conv_generic_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = thread_id(wid, nwg, lid);
    let s = p.side;
    let area = s * s;
    if i >= p.batch * p.in_channels * area {
        return;
    }
    let ix = i % s;
    let iy = (i / s) % s;
    let ci = (i / area) % p.in_channels;
    let b = i / (area * p.in_channels);
    let k = p.kernel;
    let pad = k / 2u;
    var acc = 0.0;
    for (var co = 0u; co < p.out_channels; co++) {
        let dy_plane = (b * p.out_channels + co) * area;
        let w_taps = (co * p.in_channels + ci) * k * k;
        for (var ky = 0u; ky < k; ky++) {
            let oy = iy + pad - ky;
            if oy >= s {
                continue;
            }
            for (var kx = 0u; kx < k; kx++) {
                let ox = ix + pad - kx;
                if ox < s {
                    acc += dy[dy_plane + oy * s + ox] * w[w_taps + ky * k + kx];
                }
            }
        }
    }
    dst[i] = acc;
}

@compute @workgroup_size(WG)
fn conv_generic_wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    let len = param_len();
    if t >= p.chunks * len {
        return;
    }
    let chunk = t / len;
    let q = t % len;
    let s = p.side;
    let k = p.kernel;
    let pad = k / 2u;
    let first = chunk * p.chunk_rows;
    let end = min(p.batch * s, first + p.chunk_rows);
    // A bias lane runs the same loops as the centre tap of input channel 0 (every row and
    // column), with x read as 1: one loop nest for every lane, so that lanes of one SIMD
    // vector never run a weight loop and a bias loop one after the other (llvmpipe would
    // count both against the invocation's loop budget).
    let is_bias = q >= weight_len();
    let wq = min(q, weight_len() - 1u);
    let kx = select(wq % k, pad, is_bias);
    let ky = select((wq / k) % k, pad, is_bias);
    let ci = select((wq / (k * k)) % p.in_channels, 0u, is_bias);
    let co = select(wq / (k * k * p.in_channels), q - weight_len(), is_bias);
    // the output columns whose tap kx lands inside the image: ix = ox + kx - pad in [0, S)
    // (empty when S is narrower than the tap's offset: S + pad <= kx)
    let ox_first = select(0u, pad - kx, kx < pad);
    let ox_end = min(s, select(0u, s + pad - kx, s + pad > kx));
    var acc = 0.0;
    for (var r = first; r < end; r++) {
        let b = r / s;
        let oy = r % s;
        let iy = oy + ky - pad;
        if iy >= s {
            continue;
        }
        let dy_row = ((b * p.out_channels + co) * s + oy) * s;
        // x_row + ox is x[b, ci, iy, ox + kx - pad]; ox >= ox_first keeps it in the row
        let x_row = ((b * p.in_channels + ci) * s + iy) * s + kx - pad;
        for (var ox = ox_first; ox < ox_end; ox++) {
            acc += dy[dy_row + ox] * select(x[x_row + ox], 1.0, is_bias);
        }
    }
    dst[t] = acc;
}

@compute @workgroup_size(WG)
fn conv_generic_wgrad_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let q = thread_id(wid, nwg, lid);
    let len = param_len();
    if q >= len {
        return;
    }
    var acc = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        acc += partial[c * len + q];
    }
    dst[q] = acc;
}
