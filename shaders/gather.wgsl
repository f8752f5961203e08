// Builds one batch on the GPU from the resident dataset.
//
// images: the split's pixels as u8, four per u32 (each image is a whole number of words
// because its side is divisible by 4). labels: u8, four per u32. order: the epoch's
// permutation of sample_index indices. Output x (B, 1, S, S) f32 in [0, 1] and y (B) u32.
// Slots past the step's valid count repeat the last valid sample_index; the loss masks them.

override WG: u32 = 64u;

struct GatherParams {
    batch: u32,
    words_per_image: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> y: array<u32>;
@group(1) @binding(0) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.batch * p.words_per_image {
        return;
    }
    let b = i / p.words_per_image;
    let word = i % p.words_per_image;
    let sample_index = order[step.start + min(b, step.count - 1u)];
    x[i] = unpack4x8unorm(images[sample_index * p.words_per_image + word]);
    if word == 0u {
        y[b] = (labels[sample_index / 4u] >> (8u * (sample_index % 4u))) & 255u;
    }
}
