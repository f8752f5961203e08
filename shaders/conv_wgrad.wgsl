// Weight and bias gradients of a 3x3, pad 1 convolution, NCHW f32.
//
// x (B, CI, H, W) is the layer input, dy (B, CO, H, W) the gradient at the convolution
// output (after the ReLU and pool masks). conv_wgrad writes one partial per chunk of the
// batch's B * H image rows (taken image by image, row by row): partial[chunk][CO * CI * 9
// + CO] (weights then bias). conv_wgrad_reduce adds the chunks in index order, so the
// result is bit-identical from run to run. The host picks chunk_rows so that a chunk's
// loops stay inside the adapter's loop budget (a chunk may end inside an image).
//
// A thread owns OT output channels of one input channel (OT * 9 weights) for one chunk and
// slides a 3x3 window along each row, so each step loads 3 new inputs and OT gradients.
// Two lane mappings share that loop (wgrad_tile): conv_wgrad and conv_wgrad_pooled spread
// lanes over batch chunks (for layers with few input channels; the pooled one reads
// d_pooled and the pool codes instead of dy), conv_wgrad_ic over input channels, where
// all lanes need the same gradients and `grads8` (conv_wgrad_grads*.wgsl) may share them.

override WG: u32 = 64u;
const OT: u32 = 16u;

struct WgradParams {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    chunks: u32,
    // image rows per chunk
    chunk_rows: u32,
    // 0 for a convolution without bias (batch norm follows): its bias slots, zero from
    // the start, get a zero gradient and so never move
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: WgradParams;
// as vec2s: two columns per load (a load's cost on a CPU adapter is mostly per call)
@group(0) @binding(1) var<storage, read> x: array<vec2<f32>>;
// as vec2s: the gradients of pixels x and x + 1 (x even) in one load
@group(0) @binding(2) var<storage, read> dy: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(5) var<storage, read> d_pooled: array<f32>;
@group(0) @binding(6) var<storage, read> pool_code: array<u32>;

// Nine taps of one output channel's gradient: lo = taps 0..3, hi = taps 4..7, e = tap 8.
struct Acc9 {
    lo: vec4<f32>,
    hi: vec4<f32>,
    e: f32,
    bias: f32,
}

// `with_bias` is always a literal: false compiles the bias sum away.
fn upd(q: Acc9, g: f32, lo: vec4<f32>, hi: vec4<f32>, e: f32, with_bias: bool) -> Acc9 {
    return Acc9(q.lo + g * lo, q.hi + g * hi, q.e + g * e, select(q.bias, q.bias + g, with_bias));
}

// dy of channels oc0 .. oc0 + 7 at two pixels: a at index `at` (even), b at the next.
struct Grads8Pair {
    a: array<f32, 8>,
    b: array<f32, 8>,
}

// (Eight values, not an array: the CPU adapter's compiler copies arrays passed by value.)
fn split8(v0: vec2<f32>, v1: vec2<f32>, v2: vec2<f32>, v3: vec2<f32>, v4: vec2<f32>, v5: vec2<f32>,
          v6: vec2<f32>, v7: vec2<f32>) -> Grads8Pair {
    return Grads8Pair(array<f32, 8>(v0.x, v1.x, v2.x, v3.x, v4.x, v5.x, v6.x, v7.x),
                      array<f32, 8>(v0.y, v1.y, v2.y, v3.y, v4.y, v5.y, v6.y, v7.y));
}

// Each lane loading its own.
fn own_grads8(at: u32, plane: u32) -> Grads8Pair {
    let i = at / 2u;
    let s = plane / 2u;
    return split8(dy[i], dy[i + s], dy[i + 2u * s], dy[i + 3u * s], dy[i + 4u * s], dy[i + 5u * s],
                  dy[i + 6u * s], dy[i + 7u * s]);
}

struct Tile16 {
    q0: Acc9, q1: Acc9, q2: Acc9, q3: Acc9, q4: Acc9, q5: Acc9, q6: Acc9, q7: Acc9,
    q8: Acc9, q9: Acc9, q10: Acc9, q11: Acc9, q12: Acc9, q13: Acc9, q14: Acc9, q15: Acc9,
}

// d_pooled of channels oc0 .. oc0 + 7 at pooled index `pi` of image b, and their codes.
struct Pooled8 {
    g: array<f32, 8>,
    codes: u32,
}

fn pooled8(b: u32, oc0: u32, pi: u32) -> Pooled8 {
    let pooled_plane = (p.height / 2u) * (p.width / 2u);
    let at = (b * p.out_channels + oc0) * pooled_plane + pi;
    var r: Pooled8;
    for (var o = 0u; o < 8u; o++) {
        r.g[o] = d_pooled[at + o * pooled_plane];
    }
    r.codes = pool_code[(b * (p.out_channels / 8u) + oc0 / 8u) * pooled_plane + pi];
    return r;
}

// The pre-pool gradient at window position k: the pooled gradient where that position won.
fn unpool8(q: Pooled8, k: u32) -> array<f32, 8> {
    var g: array<f32, 8>;
    for (var o = 0u; o < 8u; o++) {
        g[o] = select(0.0, q.g[o], ((q.codes >> (4u * o)) & 15u) == k);
    }
    return g;
}

const OWN_GRADS: u32 = 0u;
const SHARED_GRADS: u32 = 1u;
const FROM_POOLED: u32 = 2u;

// Rows y-1, y, y+1 of one input column (zero outside the image).
struct Rows3 {
    r0: u32,
    r1: u32,
    r2: u32,
    ok0: bool,
    ok2: bool,
}

// Columns xx and xx + 1 (xx even; widths are even, so both are inside or both outside).
struct ColumnPair {
    a: vec3<f32>,
    b: vec3<f32>,
}

fn column_pair(rows: Rows3, xx: u32) -> ColumnPair {
    let okx = xx < p.width;
    // row starts are even (planes and widths are)
    let cx = min(xx, p.width - 2u);
    let top = select(vec2(0.0), x[(rows.r0 + cx) / 2u], rows.ok0 && okx);
    let row = select(vec2(0.0), x[(rows.r1 + cx) / 2u], okx);
    let bottom = select(vec2(0.0), x[(rows.r2 + cx) / 2u], rows.ok2 && okx);
    return ColumnPair(vec3(top.x, row.x, bottom.x), vec3(top.y, row.y, bottom.y));
}

// Gradients of channels oc0 .. oc0 + 7 (g) and oc0 + 8 .. oc0 + 15 (h) at one pixel.
struct Grads16 {
    g: array<f32, 8>,
    h: array<f32, 8>,
}

// One pixel's products: columns x-1 (left), x (mid), x+1 (right) times its gradients.
fn pixel(t: Tile16, left: vec3<f32>, mid: vec3<f32>, right: vec3<f32>, gh: Grads16, with_bias: bool) -> Tile16 {
    let lo = vec4(left.x, mid.x, right.x, left.y);
    let hi = vec4(mid.y, right.y, left.z, mid.z);
    let e = right.z;
    let g = gh.g;
    let h = gh.h;
    return Tile16(upd(t.q0, g[0], lo, hi, e, with_bias), upd(t.q1, g[1], lo, hi, e, with_bias),
                  upd(t.q2, g[2], lo, hi, e, with_bias), upd(t.q3, g[3], lo, hi, e, with_bias),
                  upd(t.q4, g[4], lo, hi, e, with_bias), upd(t.q5, g[5], lo, hi, e, with_bias),
                  upd(t.q6, g[6], lo, hi, e, with_bias), upd(t.q7, g[7], lo, hi, e, with_bias),
                  upd(t.q8, h[0], lo, hi, e, with_bias), upd(t.q9, h[1], lo, hi, e, with_bias),
                  upd(t.q10, h[2], lo, hi, e, with_bias), upd(t.q11, h[3], lo, hi, e, with_bias),
                  upd(t.q12, h[4], lo, hi, e, with_bias), upd(t.q13, h[5], lo, hi, e, with_bias),
                  upd(t.q14, h[6], lo, hi, e, with_bias), upd(t.q15, h[7], lo, hi, e, with_bias));
}

// dy at index d (even; channel oc0's plane) and d + 1, by the entry point's way of
// reading it.
struct Grads16Pair {
    a: Grads16,
    b: Grads16,
}

fn grads16(fetch: u32, d: u32, plane: u32, lane: u32) -> Grads16Pair {
    var lo: Grads8Pair;
    var hi: Grads8Pair;
    if fetch == SHARED_GRADS {
        lo = grads8(d, plane, lane);
        hi = grads8(d + 8u * plane, plane, lane);
    } else {
        lo = own_grads8(d, plane);
        hi = own_grads8(d + 8u * plane, plane);
    }
    return Grads16Pair(Grads16(lo.a, hi.a), Grads16(lo.b, hi.b));
}

// Sums over the chunk's images; named accumulators keep them out of memory. `fetch` is
// always a literal, so each entry point compiles only its own way of reading gradients:
// OWN_GRADS (each lane loads dy), SHARED_GRADS (every lane has the same oc0 and chunk;
// grads8 may share the loads), FROM_POOLED (d_pooled and the pool codes, so a first layer
// needs no separate max-pool backward pass). Pixels go two at a time (a loop pass costs
// the CPU adapter about as much as a few dozen multiply-adds), pixel x then x + 1, so the
// sums run in the same order as one at a time.
fn wgrad_tile(chunk: u32, ic: u32, oc0: u32, lane: u32, fetch: u32, with_bias: bool) -> Tile16 {
    let h = p.height;
    let w = p.width;
    let plane = h * w;
    var t: Tile16;
    let r_end = min(p.batch * h, (chunk + 1u) * p.chunk_rows);
    for (var r = chunk * p.chunk_rows; r < r_end; r++) {
        let b = r / h;
        let y = r % h;
        let xbase = (b * p.in_channels + ic) * plane;
        let dbase = (b * p.out_channels + oc0) * plane + y * w;
        let ok0 = y > 0u;
        let ok2 = y + 1u < h;
        let rows = Rows3(xbase + select(0u, y - 1u, ok0) * w, xbase + y * w, xbase + select(y, y + 1u, ok2) * w,
                         ok0, ok2);
        var left = vec3<f32>();
        let first = column_pair(rows, 0u);
        var mid = first.a;
        var right = first.b;
        // widths are even (conv.rs refuses others)
        for (var xx = 0u; xx < w; xx += 2u) {
            var g0: Grads16;
            var g1: Grads16;
            if fetch == FROM_POOLED {
                // a pooled value covers columns xx and xx + 1 (xx is even here)
                let pi = (y / 2u) * (w / 2u) + xx / 2u;
                let window = pooled8(b, oc0, pi);
                let window_hi = pooled8(b, oc0 + 8u, pi);
                let k = (y % 2u) * 2u;
                g0 = Grads16(unpool8(window, k), unpool8(window_hi, k));
                g1 = Grads16(unpool8(window, k + 1u), unpool8(window_hi, k + 1u));
            } else {
                let both = grads16(fetch, dbase + xx, plane, lane);
                g0 = both.a;
                g1 = both.b;
            }
            let next = column_pair(rows, xx + 2u);
            t = pixel(t, left, mid, right, g0, with_bias);
            t = pixel(t, mid, right, next.a, g1, with_bias);
            left = right;
            mid = next.a;
            right = next.b;
        }
    }
    return t;
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

fn store_tile(chunk: u32, ic: u32, oc0: u32, t: Tile16) {
    let base = chunk * (p.out_channels * p.in_channels * 9u + p.out_channels);
    store_acc(base, oc0, ic, t.q0);
    store_acc(base, oc0 + 1u, ic, t.q1);
    store_acc(base, oc0 + 2u, ic, t.q2);
    store_acc(base, oc0 + 3u, ic, t.q3);
    store_acc(base, oc0 + 4u, ic, t.q4);
    store_acc(base, oc0 + 5u, ic, t.q5);
    store_acc(base, oc0 + 6u, ic, t.q6);
    store_acc(base, oc0 + 7u, ic, t.q7);
    store_acc(base, oc0 + 8u, ic, t.q8);
    store_acc(base, oc0 + 9u, ic, t.q9);
    store_acc(base, oc0 + 10u, ic, t.q10);
    store_acc(base, oc0 + 11u, ic, t.q11);
    store_acc(base, oc0 + 12u, ic, t.q12);
    store_acc(base, oc0 + 13u, ic, t.q13);
    store_acc(base, oc0 + 14u, ic, t.q14);
    store_acc(base, oc0 + 15u, ic, t.q15);
}

struct ChunkTile {
    valid: bool,
    chunk: u32,
    ic: u32,
    oc0: u32,
}

// Lanes over batch chunks.
fn chunk_tile(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> ChunkTile {
    let id = (wid.x + wid.y * nwg.x) * WG + lid;
    let tiles = (p.out_channels / OT) * p.in_channels;
    let tile = id / p.chunks;
    return ChunkTile(id < tiles * p.chunks, id % p.chunks, tile % p.in_channels, (tile / p.in_channels) * OT);
}

@compute @workgroup_size(WG)
fn conv_wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let c = chunk_tile(wid, nwg, lid);
    if c.valid {
        store_tile(c.chunk, c.ic, c.oc0, wgrad_tile(c.chunk, c.ic, c.oc0, lid, OWN_GRADS, true));
    }
}

@compute @workgroup_size(WG)
fn conv_wgrad_pooled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let c = chunk_tile(wid, nwg, lid);
    if c.valid {
        store_tile(c.chunk, c.ic, c.oc0, wgrad_tile(c.chunk, c.ic, c.oc0, lid, FROM_POOLED, true));
    }
}

// Lanes over input channels. Used when in_channels >= WG.
@compute @workgroup_size(WG)
fn conv_wgrad_ic(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let group = wid.x + wid.y * nwg.x;
    let ic_groups = (p.in_channels + WG - 1u) / WG;
    let rest = group / ic_groups;
    let chunk = rest % p.chunks;
    let oc0 = (rest / p.chunks) * OT;
    let ic_unclamped = (group % ic_groups) * WG + lid;
    if oc0 >= p.out_channels {
        return;
    }
    // Lanes past the last channel recompute the last one (subgroup operations need every
    // lane) and store nothing.
    // Only input channel 0 stores the bias gradient: the other workgroups skip its sum
    // (one add in ten of the inner loop).
    let ic = min(ic_unclamped, p.in_channels - 1u);
    var t: Tile16;
    if group % ic_groups == 0u {
        t = wgrad_tile(chunk, ic, oc0, lid, SHARED_GRADS, true);
    } else {
        t = wgrad_tile(chunk, ic, oc0, lid, SHARED_GRADS, false);
    }
    if ic_unclamped < p.in_channels {
        store_tile(chunk, ic_unclamped, oc0, t);
    }
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
    let is_bias = i >= p.out_channels * p.in_channels * 9u;
    grad[i] = select(sum, 0.0, is_bias && p.has_bias == 0u);
}
