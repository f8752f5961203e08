// Weight and bias gradients of a 3x3, pad 1 convolution, NCHW f32.
//
// x (B, CI, H, W) is the layer input, dy (B, CO, H, W) the gradient at the convolution
// output (after the ReLU and pool masks). conv_wgrad writes one partial per batch chunk:
// partial[chunk][CO * CI * 9 + CO] (weights then bias). conv_wgrad_reduce adds the chunks
// in index order, so the result is bit-identical from run to run.
//
// A thread owns OT output channels of one input channel (OT * 9 weights) for one chunk and
// slides a 3x3 window along each row, so each step loads 3 new inputs and OT gradients.

override WG: u32 = 64u;
const OT: u32 = 8u;

struct WgradParams {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    chunks: u32,
    chunk_size: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: WgradParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

@compute @workgroup_size(WG)
fn conv_wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let id = (wid.x + wid.y * nwg.x) * WG + lid;
    let tiles = (p.out_channels / OT) * p.in_channels;
    if id >= tiles * p.chunks {
        return;
    }
    let chunk = id % p.chunks;
    let tile = id / p.chunks;
    let ic = tile % p.in_channels;
    let oc0 = (tile / p.in_channels) * OT;
    var acc: array<f32, 72>;
    var bacc: array<f32, 8>;
    let h = p.height;
    let w = p.width;
    let plane = h * w;
    let b_end = min(p.batch, (chunk + 1u) * p.chunk_size);
    for (var b = chunk * p.chunk_size; b < b_end; b++) {
        let xbase = (b * p.in_channels + ic) * plane;
        let dbase = (b * p.out_channels + oc0) * plane;
        for (var y = 0u; y < h; y++) {
            // win[r * 3 + c] = x[y - 1 + r][x - 1 + c]; the left column starts as padding.
            var win: array<f32, 9>;
            var row_ok: array<bool, 3>;
            var row_off: array<u32, 3>;
            for (var r = 0u; r < 3u; r++) {
                let yy = i32(y) - 1 + i32(r);
                row_ok[r] = yy >= 0 && yy < i32(h);
                row_off[r] = xbase + u32(clamp(yy, 0, i32(h) - 1)) * w;
                win[r * 3u] = 0.0;
                win[r * 3u + 1u] = select(0.0, x[row_off[r]], row_ok[r]);
            }
            for (var xx = 0u; xx < w; xx++) {
                let next_ok = xx + 1u < w;
                let next = min(xx + 1u, w - 1u);
                for (var r = 0u; r < 3u; r++) {
                    win[r * 3u + 2u] = select(0.0, x[row_off[r] + next], row_ok[r] && next_ok);
                }
                let pix = y * w + xx;
                for (var o = 0u; o < OT; o++) {
                    let g = dy[dbase + o * plane + pix];
                    bacc[o] += g;
                    for (var t = 0u; t < 9u; t++) {
                        acc[o * 9u + t] += g * win[t];
                    }
                }
                for (var r = 0u; r < 3u; r++) {
                    win[r * 3u] = win[r * 3u + 1u];
                    win[r * 3u + 1u] = win[r * 3u + 2u];
                }
            }
        }
    }
    let stride = p.out_channels * p.in_channels * 9u + p.out_channels;
    let base = chunk * stride;
    for (var o = 0u; o < OT; o++) {
        for (var t = 0u; t < 9u; t++) {
            partial[base + ((oc0 + o) * p.in_channels + ic) * 9u + t] = acc[o * 9u + t];
        }
        if ic == 0u {
            partial[base + p.out_channels * p.in_channels * 9u + oc0 + o] = bacc[o];
        }
    }
}

// Nine taps of one output channel's gradient: lo = taps 0..3, hi = taps 4..7, e = tap 8.
struct Acc9 {
    lo: vec4<f32>,
    hi: vec4<f32>,
    e: f32,
    bias: f32,
}

fn upd(q: Acc9, g: f32, lo: vec4<f32>, hi: vec4<f32>, e: f32) -> Acc9 {
    return Acc9(q.lo + g * lo, q.hi + g * hi, q.e + g * e, q.bias + g);
}

fn store_acc(base: u32, oc: u32, ic: u32, q: Acc9) {
    let at = base + (oc * p.in_channels + ic) * 9u;
    partial[at] = q.lo.x;
    partial[at + 1u] = q.lo.y;
    partial[at + 2u] = q.lo.z;
    partial[at + 3u] = q.lo.w;
    partial[at + 4u] = q.hi.x;
    partial[at + 5u] = q.hi.y;
    partial[at + 6u] = q.hi.z;
    partial[at + 7u] = q.hi.w;
    partial[at + 8u] = q.e;
    if ic == 0u {
        partial[base + p.out_channels * p.in_channels * 9u + oc] = q.bias;
    }
}

// The same partial sums with lanes spread over input channels instead of chunks: all
// lanes need the same 8 gradient values per pixel (grads8, from conv_wgrad_grads*.wgsl)
// and each lane loads only its 3 new window inputs. Used when in_channels >= WG.
@compute @workgroup_size(WG)
fn conv_wgrad_ic(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let group = wid.x + wid.y * nwg.x;
    let ic_groups = (p.in_channels + WG - 1u) / WG;
    let rest = group / ic_groups;
    let chunk = rest % p.chunks;
    let oc0 = (rest / p.chunks) * OT;
    let ic_unclamped = (group % ic_groups) * WG + lid;
    // Lanes past the last channel recompute the last one (subgroup operations need every
    // lane) and store nothing.
    let ic = min(ic_unclamped, p.in_channels - 1u);
    if oc0 >= p.out_channels {
        return;
    }
    let h = p.height;
    let w = p.width;
    let plane = h * w;
    var q0: Acc9; var q1: Acc9; var q2: Acc9; var q3: Acc9;
    var q4: Acc9; var q5: Acc9; var q6: Acc9; var q7: Acc9;
    let b_end = min(p.batch, (chunk + 1u) * p.chunk_size);
    for (var b = chunk * p.chunk_size; b < b_end; b++) {
        let xbase = (b * p.in_channels + ic) * plane;
        let dbase = (b * p.out_channels + oc0) * plane;
        for (var y = 0u; y < h; y++) {
            let ok0 = y > 0u;
            let ok2 = y + 1u < h;
            let r0 = xbase + select(0u, y - 1u, ok0) * w;
            let r1 = xbase + y * w;
            let r2 = xbase + select(y, y + 1u, ok2) * w;
            // columns x-1 (left), x (mid), x+1 (right) of rows y-1, y, y+1
            var left = vec3<f32>();
            var mid = vec3(select(0.0, x[r0], ok0), x[r1], select(0.0, x[r2], ok2));
            for (var xx = 0u; xx < w; xx++) {
                let nx = min(xx + 1u, w - 1u);
                let okx = xx + 1u < w;
                let right = vec3(select(0.0, x[r0 + nx], ok0 && okx), select(0.0, x[r1 + nx], okx),
                                 select(0.0, x[r2 + nx], ok2 && okx));
                let lo = vec4(left.x, mid.x, right.x, left.y);
                let hi = vec4(mid.y, right.y, left.z, mid.z);
                let e = right.z;
                let g = grads8(dbase + y * w + xx, plane, lid);
                q0 = upd(q0, g[0], lo, hi, e);
                q1 = upd(q1, g[1], lo, hi, e);
                q2 = upd(q2, g[2], lo, hi, e);
                q3 = upd(q3, g[3], lo, hi, e);
                q4 = upd(q4, g[4], lo, hi, e);
                q5 = upd(q5, g[5], lo, hi, e);
                q6 = upd(q6, g[6], lo, hi, e);
                q7 = upd(q7, g[7], lo, hi, e);
                left = mid;
                mid = right;
            }
        }
    }
    if ic_unclamped >= p.in_channels {
        return;
    }
    let base = chunk * (p.out_channels * p.in_channels * 9u + p.out_channels);
    store_acc(base, oc0, ic, q0);
    store_acc(base, oc0 + 1u, ic, q1);
    store_acc(base, oc0 + 2u, ic, q2);
    store_acc(base, oc0 + 3u, ic, q3);
    store_acc(base, oc0 + 4u, ic, q4);
    store_acc(base, oc0 + 5u, ic, q5);
    store_acc(base, oc0 + 6u, ic, q6);
    store_acc(base, oc0 + 7u, ic, q7);
}

@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

// grad[i] = sum over chunks of partial[chunk][i], in chunk order.
@compute @workgroup_size(WG)
fn conv_wgrad_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let stride = p.out_channels * p.in_channels * 9u + p.out_channels;
    if i >= stride {
        return;
    }
    var sum = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        sum += partial[c * stride + i];
    }
    grad[i] = sum;
}
