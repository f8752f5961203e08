// The per-step values of one recorded training or evaluation step (kernels::Step on the
// host), bound as a uniform at group 1. Prepended to every shader that reads it.

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
