// 2x2 max pool, stride 2, NCHW f32: x (B, C, S, S) -> y (B, C, S/2, S/2), S even, plus a
// u32 code per pooled value (same layout as y) naming the window position that won:
// 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. Ties go to the first of those,
// as strict > comparisons give (PyTorch's MaxPool2d also keeps the first maximum in
// row-major order). Backward: dy (B, C, S/2, S/2) -> dx (B, C, S, S) with each gradient at
// its window's winner and zeros at the other three positions, so dx is fully written.
// One thread per pooled value in both directions, no loops.

override WG: u32 = 64u;

struct MaxPoolParams {
    // B * C * (S/2) * (S/2)
    pooled_count: u32,
    // S
    side: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: MaxPoolParams;
// forward: x; backward: dy
@group(0) @binding(1) var<storage, read> src: array<f32>;
// forward: y; backward: dx
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// written by the forward, read by the backward
@group(0) @binding(3) var<storage, read_write> code: array<u32>;
// forward: x again, as vec2s (a window's rows are aligned pairs: S and the column are
// even), so 2 loads instead of 4; on a CPU adapter a load costs mostly per call
@group(0) @binding(4) var<storage, read> src2: array<vec2<f32>>;

// Index in x of pooled value i's top-left window position.
fn top_left(i: u32) -> u32 {
    let half = p.side / 2u;
    let plane = i / (half * half);
    let rem = i % (half * half);
    return (plane * p.side + (rem / half) * 2u) * p.side + (rem % half) * 2u;
}

@compute @workgroup_size(WG)
fn maxpool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.pooled_count {
        return;
    }
    let at = top_left(i);
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
}

@compute @workgroup_size(WG)
fn maxpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.pooled_count {
        return;
    }
    let at = top_left(i);
    let g = src[i];
    let won = code[i];
    dst[at] = select(0.0, g, won == 0u);
    dst[at + 1u] = select(0.0, g, won == 1u);
    dst[at + p.side] = select(0.0, g, won == 2u);
    dst[at + p.side + 1u] = select(0.0, g, won == 3u);
}
