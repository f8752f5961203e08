// Inverted dropout over n f32 values of any shape: y = x / (1 - p) where the sample is
// kept, 0 where it is dropped. Whether value i is kept comes from a hash of (seed, the
// step's optimiser update, i), never from a stored mask: the backward pass recomputes the
// same decision, and a resumed run draws the same masks. Kept when hash >= threshold,
// threshold = p * 2^32. No loops. Evaluation leaves dropout out of its step.

override WG: u32 = 64u;

struct DropParams {
    n: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: DropParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> step: Step;

fn keep(i: u32) -> bool {
    return mix(i ^ mix(step.update ^ mix(p.seed))) >= p.threshold;
}

// Forward (x -> y) and backward (dy -> dx) are the same map.
@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.n {
        return;
    }
    dst[i] = select(0.0, src[i] * p.scale, keep(i));
}
