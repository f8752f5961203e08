// Optimiser steps over the flat parameter buffer (every layer's weights and biases).
//
// adam: PyTorch's Adam without weight decay. The host folds the bias corrections for the
// step into step.step_size = lr / (1 - beta1^t) and step.sqrt_bias_correction2 =
// sqrt(1 - beta2^t), so one recorded command buffer can hold several steps.
// adamw: PyTorch's AdamW: first p *= 1 - lr * weight_decay where the decay mask is 1
// (conv and dense weights; not biases or batch norm), then the Adam step.
// sgd: PyTorch's SGD with momentum: v = momentum * v + g; p -= lr * v.
// sgd_ext: the same with weight decay added to the gradient (g += weight_decay * p where
// the mask is 1, as PyTorch's SGD) and optionally Nesterov momentum (p -= lr (g + mu v)).
// adam and sgd stay as they were, so runs without decay or Nesterov match earlier ones.
// Each thread updates 4 parameters: a vec4 load costs about half of 4 scalar loads on CPU
// adapters. The buffer length is a multiple of 4 (the layout pads it).

override WG: u32 = 64u;

struct OptimParams {
    // in vec4s
    len: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    momentum: f32,
    weight_decay: f32,
    // 1.0 for Nesterov momentum (sgd_ext)
    nesterov: f32,
    _pad2: f32,
}

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> v: array<vec4<f32>>;
// 1.0 where weight decay applies, 0.0 elsewhere (adamw, sgd_ext)
@group(0) @binding(5) var<storage, read> decay: array<vec4<f32>>;
@group(1) @binding(0) var<uniform> step: Step;

// Updates Adam's moments of vec4 i and returns the step to subtract from the parameters.
fn adam_step(i: u32) -> vec4<f32> {
    let g = grad[i];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    return step.step_size * mi / (sqrt(vi) / step.sqrt_bias_correction2 + p.eps);
}

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.len {
        return;
    }
    param[i] -= adam_step(i);
}

@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.len {
        return;
    }
    let vel = p.momentum * m[i] + grad[i];
    m[i] = vel;
    param[i] -= step.lr * vel;
}

@compute @workgroup_size(WG)
fn adamw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.len {
        return;
    }
    let decayed = param[i] * (1.0 - step.lr * p.weight_decay * decay[i]);
    param[i] = decayed - adam_step(i);
}

@compute @workgroup_size(WG)
fn sgd_ext(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.len {
        return;
    }
    let g = grad[i] + p.weight_decay * decay[i] * param[i];
    let vel = p.momentum * m[i] + g;
    m[i] = vel;
    param[i] -= step.lr * select(vel, g + p.momentum * vel, p.nesterov > 0.5);
}
