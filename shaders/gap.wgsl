// Global average pool, NCHW f32: x (B, C, S, S) -> y (B, C), each plane's mean; backward
// dy (B, C) -> dx (B, C, S, S) = dy / (S * S) over the plane. Forward runs one thread per
// plane (S * S + 1 loop iterations, summed in order); backward one per element, no loops.

override WG: u32 = 64u;

struct GapParams {
    // B * C
    planes: u32,
    // S * S
    area: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: GapParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn gap_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let plane = (wid.x + wid.y * nwg.x) * WG + lid;
    if plane >= p.planes {
        return;
    }
    var sum = 0.0;
    for (var j = 0u; j < p.area; j++) {
        sum += src[plane * p.area + j];
    }
    dst[plane] = sum / f32(p.area);
}

@compute @workgroup_size(WG)
fn gap_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.planes * p.area {
        return;
    }
    dst[i] = src[i / p.area] / f32(p.area);
}
