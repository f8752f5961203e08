// 2x2 max pool, stride 2, NCHW f32: x (B, C, S, S) -> y (B, C, S/2, S/2), S even, plus a
// u32 code per pooled value (same layout as y) naming the window position that won:
// 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. Ties go to the first of those,
// as strict > comparisons give (PyTorch's MaxPool2d also keeps the first maximum in
// row-major order). Backward: dy (B, C, S/2, S/2) -> dx (B, C, S, S) with each gradient at
// its window's winner and zeros at the other three positions, so dx is fully written.
// A thread takes PER_THREAD consecutive pooled values in both directions: it places the
// first with two divisions and steps to the others by counting (a CPU adapter divides
// lane by lane, which cost more than the memory traffic).

override WG: u32 = 64u;
const PER_THREAD: u32 = 4u;

struct MaxPoolParams {
    // B * C * (S/2) * (S/2)
    pooled_count: u32,
    // S
    side: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: MaxPoolParams;
// backward: dy (the forward reads x through src2)
@group(0) @binding(1) var<storage, read> src: array<f32>;
// forward: y (the backward writes dx through dst2)
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// written by the forward, read by the backward
@group(0) @binding(3) var<storage, read_write> code: array<u32>;
// forward: x again, as vec2s (a window's rows are aligned pairs: S and the column are
// even), so 2 loads instead of 4; on a CPU adapter a load costs mostly per call
@group(0) @binding(4) var<storage, read> src2: array<vec2<f32>>;

// Where pooled value i's window is: its plane, and its row and column among the pooled
// values of the plane.
struct Window {
    plane: u32,
    row: u32,
    col: u32,
}

fn window_of(i: u32) -> Window {
    let half = p.side / 2u;
    let rem = i % (half * half);
    return Window(i / (half * half), rem / half, rem % half);
}

// The next pooled value's window, in row-major order across planes.
fn next_window(w: Window) -> Window {
    let half = p.side / 2u;
    if w.col + 1u < half {
        return Window(w.plane, w.row, w.col + 1u);
    }
    if w.row + 1u < half {
        return Window(w.plane, w.row + 1u, 0u);
    }
    return Window(w.plane + 1u, 0u, 0u);
}

// Index in x of the window's top-left position.
fn top_left(w: Window) -> u32 {
    return (w.plane * p.side + w.row * 2u) * p.side + w.col * 2u;
}

@compute @workgroup_size(WG)
fn maxpool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let first = ((wid.x + wid.y * nwg.x) * WG + lid) * PER_THREAD;
    if first >= p.pooled_count {
        return;
    }
    var w = window_of(first);
    for (var i = first; i < min(first + PER_THREAD, p.pooled_count); i++) {
        let at = top_left(w);
        let top = src2[at / 2u];
        let bottom = src2[(at + p.side) / 2u];
        var best = top.x;
        var won = 0u;
        let tr = top.y;
        let bl = bottom.x;
        let br = bottom.y;
        if tr > best { best = tr; won = 1u; }
        if bl > best { best = bl; won = 2u; }
        if br > best { best = br; won = 3u; }
        dst[i] = best;
        code[i] = won;
        w = next_window(w);
    }
}

// dx again, as vec2s: each window row is one aligned pair
@group(0) @binding(5) var<storage, read_write> dst2: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn maxpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let first = ((wid.x + wid.y * nwg.x) * WG + lid) * PER_THREAD;
    if first >= p.pooled_count {
        return;
    }
    var w = window_of(first);
    for (var i = first; i < min(first + PER_THREAD, p.pooled_count); i++) {
        let at = top_left(w) / 2u;
        let g = src[i];
        let won = code[i];
        dst2[at] = vec2(select(0.0, g, won == 0u), select(0.0, g, won == 1u));
        dst2[at + p.side / 2u] = vec2(select(0.0, g, won == 2u), select(0.0, g, won == 3u));
        w = next_window(w);
    }
}
