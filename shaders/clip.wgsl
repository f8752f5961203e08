// Gradient clipping by global norm over the flat gradient buffer (every layer's weights
// and biases), after the backward pass and before the optimiser step: PyTorch's
// clip_grad_norm_ with the 2-norm, coef = min(1, max_norm / (norm + 1e-6)), g *= coef.
//
// The norm is a sum in a fixed order, the same at every run: clip_partial gives each
// thread one chunk of chunk_len vec4s (never more loop passes than the adapter allows) and
// stores the chunk's sum of squares; clip_scale (one thread) adds the chunks in order and
// stores (coef, norm); clip_apply multiplies every gradient by coef, which is exactly 1
// when the norm is within bounds, so clipping then changes nothing.

override WG: u32 = 64u;

struct ClipParams {
    // gradients in vec4s (the layout pads the buffer to a multiple of 4)
    len: u32,
    chunk_len: u32,
    chunks: u32,
    max_norm: f32,
}

@group(0) @binding(0) var<uniform> p: ClipParams;
@group(0) @binding(1) var<storage, read_write> grad: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
// [coef, norm]
@group(0) @binding(3) var<storage, read_write> clip: array<f32>;

fn thread_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn clip_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t >= p.chunks {
        return;
    }
    let end = min(p.len, (t + 1u) * p.chunk_len);
    var sum = 0.0;
    for (var i = t * p.chunk_len; i < end; i++) {
        let g = grad[i];
        sum += dot(g, g);
    }
    partial[t] = sum;
}

@compute @workgroup_size(WG)
fn clip_scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    if thread_id(wid, nwg, lid) != 0u {
        return;
    }
    var sum = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        sum += partial[c];
    }
    let norm = sqrt(sum);
    clip[0] = min(1.0, p.max_norm / (norm + 1e-6));
    clip[1] = norm;
}

@compute @workgroup_size(WG)
fn clip_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = thread_id(wid, nwg, lid);
    if i >= p.len {
        return;
    }
    grad[i] *= clip[0];
}
