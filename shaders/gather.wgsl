// Builds one batch on the GPU from the resident dataset.
//
// images: the split's pixels as u8, four per u32 (each image is a whole number of words
// because its side is divisible by 4). labels: u8, four per u32. order: the epoch's
// permutation of sample_index indices. Output x (B, 1, S, S) f32 in [0, 1] and y (B) u32.
// Slots past the step's valid count repeat the last valid sample_index; the loss masks them.
//
// gather_augment (training only): the same batch, one thread per pixel, each image
// randomly cropped from its copy zero-padded by `crop` pixels, flipped left-right with
// probability 1/2 when `flip` is 1, then with probability erase / 10000 a rectangle of
// 2-33% of the image set to 0 (after normalisation). Every choice comes from a hash of
// (seed, optimiser update, the sample's place in the epoch's order), so runs and resumes
// repeat exactly; augment.rs holds the same arithmetic on the host for the tests. The
// rectangle is computed in whole numbers (a ratio table, exact square roots) so that the
// host and every adapter agree bit for bit.

override WG: u32 = 64u;

struct GatherParams {
    batch: u32,
    words_per_image: u32,
    side: u32,
    crop: u32,
    flip: u32,
    seed: u32,
    // x = v * scale + shift for v = byte / 255 (normalize.rs)
    scale: f32,
    shift: f32,
    erase: u32,
    // erase_ratios[i / 4][i % 4]: aspect ratio i (height / width) in 1/256ths
    erase_ratios: array<vec4<u32>, 8>,
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
    x[i] = unpack4x8unorm(images[sample_index * p.words_per_image + word]) * p.scale + p.shift;
    if word == 0u {
        y[b] = (labels[sample_index / 4u] >> (8u * (sample_index % 4u))) & 255u;
    }
}

@group(0) @binding(6) var<storage, read_write> x_pixels: array<f32>;

// floor(a * b / c) without overflowing on the way
fn mul_div(a: u32, b: u32, c: u32) -> u32 {
    return (a / c) * b + (a % c) * b / c;
}

// The exact integer square root. The float estimate is within one of it for any u32
// (a few ulp of error), and the two corrections make it exact.
fn isqrt(n: u32) -> u32 {
    var r = min(u32(sqrt(f32(n))), 65535u);
    if r * r > n {
        r -= 1u;
    }
    if r < 65535u && (r + 1u) * (r + 1u) <= n {
        r += 1u;
    }
    return r;
}

// sqrt(n) rounded to the nearest whole number: up when n > r * r + r
fn round_sqrt(n: u32) -> u32 {
    let r = isqrt(n);
    return select(r, r + 1u, n - r * r > r);
}

// Whether output pixel (yy, xx) of the sample with hash h is erased (augment::erase_rect).
fn erased(h: u32, yy: u32, xx: u32) -> bool {
    if p.erase == 0u || mix(h ^ 4u) % 10000u >= p.erase {
        return false;
    }
    let goal = mul_div(p.side * p.side, 20u + mix(h ^ 5u) % 311u, 1000u);
    let r = mix(h ^ 6u) % 32u;
    let q = p.erase_ratios[r / 4u][r % 4u];
    let eh = clamp(round_sqrt(mul_div(goal, q, 256u)), 1u, p.side);
    let ew = clamp(round_sqrt(mul_div(goal, 256u, q)), 1u, p.side);
    let top = mix(h ^ 7u) % (p.side - eh + 1u);
    let left = mix(h ^ 8u) % (p.side - ew + 1u);
    return yy >= top && yy < top + eh && xx >= left && xx < left + ew;
}

@compute @workgroup_size(WG)
fn gather_augment(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let area = p.side * p.side;
    if i >= p.batch * area {
        return;
    }
    let b = i / area;
    let yy = (i % area) / p.side;
    let xx = (i % area) % p.side;
    let pos = step.start + min(b, step.count - 1u);
    let sample_index = order[pos];
    // one hash per (seed, update, place in the order), then one per decision
    let h = mix(p.seed ^ mix(step.update ^ mix(pos)));
    let span = 2u * p.crop + 1u;
    let dy = i32(mix(h ^ 1u) % span) - i32(p.crop);
    let dx = i32(mix(h ^ 2u) % span) - i32(p.crop);
    let flipped = p.flip == 1u && (mix(h ^ 3u) & 1u) == 1u;
    let cx = select(xx, p.side - 1u - xx, flipped);
    let sy = i32(yy) + dy;
    let sx = i32(cx) + dx;
    let s = i32(p.side);
    var v = 0.0;
    if sy >= 0 && sy < s && sx >= 0 && sx < s {
        let byte = sample_index * area + u32(sy) * p.side + u32(sx);
        v = f32((images[byte / 4u] >> (8u * (byte % 4u))) & 255u) / 255.0;
    }
    // padding is a zero byte, normalised like any other; erasing comes after normalising
    x_pixels[i] = select(v * p.scale + p.shift, 0.0, erased(h, yy, xx));
    if yy == 0u && xx == 0u {
        y[b] = (labels[sample_index / 4u] >> (8u * (sample_index % 4u))) & 255u;
    }
}
