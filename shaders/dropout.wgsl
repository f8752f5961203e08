// Inverted dropout over n f32 values of any shape: y = x / (1 - p) where the sample is
// kept, 0 where it is dropped. Whether value i is kept comes from a hash of (seed, the
// step's optimiser update, i), never from a stored mask: the backward pass recomputes the
// same decision, and a resumed run draws the same masks. Kept when hash >= threshold,
// threshold = p * 2^32. In evaluation the layer runs with p = 0: a plain copy.
// Thread t takes the PER_THREAD consecutive values from t * PER_THREAD (as relu.wgsl), which
// on a CPU adapter spreads each invocation's start-up over several values.

override WG: u32 = 64u;
const PER_THREAD: u32 = 4u;
// the vec4 path below takes a thread's values as one vec4
const_assert PER_THREAD == 4u;

struct DropParams {
    n: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: DropParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// the same buffers as vec4s, where n is a multiple of 4
@group(0) @binding(3) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst4: array<vec4<f32>>;
@group(1) @binding(0) var<uniform> step: Step;

// The same hash for 4 consecutive indices at once.
fn mix4(v: vec4<u32>) -> vec4<u32> {
    var x = v;
    x ^= x >> vec4(16u);
    x *= vec4(0x7feb352du);
    x ^= x >> vec4(15u);
    x *= vec4(0x846ca68bu);
    x ^= x >> vec4(16u);
    return x;
}

// Forward (x -> y) and backward (dy -> dx) are the same map. Where n is a multiple of 4,
// a thread's values are one vec4 (one load and one store on a CPU adapter instead of 4).
@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    let first = t * PER_THREAD;
    let salt = mix(step.update ^ mix(p.seed));
    if p.n % 4u == 0u {
        if first < p.n {
            let keep = mix4(vec4(first, first + 1u, first + 2u, first + 3u) ^ vec4(salt)) >= vec4(p.threshold);
            dst4[t] = select(vec4(0.0), src4[t] * p.scale, keep);
        }
        return;
    }
    for (var i = first; i < min(first + PER_THREAD, p.n); i++) {
        dst[i] = select(0.0, src[i] * p.scale, mix(i ^ salt) >= p.threshold);
    }
}
