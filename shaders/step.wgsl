// The per-step values of one recorded training or evaluation step (kernels::Step on the
// host), bound as a uniform at group 1, and the hash that per-step randomness (dropout
// masks, augmentation) is drawn from. Prepended to every shader that reads them.

struct Step {
    // first sample of the batch in the epoch's order
    start: u32,
    // valid samples in the batch (the last batch of an epoch may be short)
    count: u32,
    // the optimiser update this training step makes (1-based; 0 when evaluating)
    update: u32,
    _pad1: u32,
    // Adam: lr / (1 - beta1^t) and sqrt(1 - beta2^t) for update t
    step_size: f32,
    sqrt_bias_correction2: f32,
    // SGD
    lr: f32,
    _pad2: f32,
}

// A 32-bit integer mixer (xor-shift-multiply): counters hashed with the seed give every
// random decision, so runs repeat exactly. layers::dropout::mix is the same on the host.
fn mix(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}
