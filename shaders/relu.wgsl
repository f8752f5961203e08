// ReLU over n f32 values of any shape (layout does not matter): thread t takes the
// PER_THREAD consecutive values from t * PER_THREAD, which on a CPU adapter spreads each
// invocation's start-up over several values.
//
// relu_forward:   x -> y = max(x, 0), written as select(0.0, v, v > 0.0) so that NaN and -0
//                 give +0 whatever the driver's max does with them.
// relu_backward:  dy, y -> dx = dy where y > 0, else 0 (the mask reads the output, so the
//                 input buffer may be reused once the forward has run).
// relu_mask:      dy *= (y > 0) in place, for a fused dense + ReLU whose consumer cannot
//                 apply the mask itself. A separate entry point with dy read_write, because
//                 wgpu refuses one buffer bound both read-only and read_write in a dispatch.

override WG: u32 = 64u;
const PER_THREAD: u32 = 4u;

struct ReluParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: ReluParams;
// forward: x; backward: dy
@group(0) @binding(1) var<storage, read> src: array<f32>;
// forward: y; backward: dx
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// the forward's output y, for the backward masks
@group(0) @binding(3) var<storage, read> out: array<f32>;
// relu_mask: dy, masked in place
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(WG)
fn relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let first = ((wid.x + wid.y * nwg.x) * WG + lid) * PER_THREAD;
    for (var i = first; i < min(first + PER_THREAD, p.n); i++) {
        let v = src[i];
        dst[i] = select(0.0, v, v > 0.0);
    }
}

@compute @workgroup_size(WG)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let first = ((wid.x + wid.y * nwg.x) * WG + lid) * PER_THREAD;
    for (var i = first; i < min(first + PER_THREAD, p.n); i++) {
        dst[i] = select(0.0, src[i], out[i] > 0.0);
    }
}

@compute @workgroup_size(WG)
fn relu_mask(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let first = ((wid.x + wid.y * nwg.x) * WG + lid) * PER_THREAD;
    for (var i = first; i < min(first + PER_THREAD, p.n); i++) {
        grad[i] = select(0.0, grad[i], out[i] > 0.0);
    }
}
