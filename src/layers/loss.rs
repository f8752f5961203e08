//! Softmax cross-entropy: the loss gradient and the per-sample metrics in one kernel.
//!
//! logits (B, K), labels (B) -> d_logits (B, K) (already divided by the valid count) and,
//! per valid sample at position `start + b` of the epoch's order, metrics[2 (start + b)]
//! = its loss and metrics[2 (start + b) + 1] = 1 if its argmax is right, else 0. The host
//! sums those in order (train::Trainer), so batching never changes how they are added up.
//! With label smoothing eps the target is (1 - eps) onehot + eps / K (training only; the
//! model evaluates with eps = 0, so test losses stay comparable).

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots, whole};
use crate::loop_budget::{LoopBound, loop_ticks};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct XentParams {
    batch: u32,
    classes: u32,
    smoothing: f32,
    _pad: u32,
}

/// Loop iterations of one row: the argmax scan (K - 1), the denominator and the gradient (K each).
pub fn xent_loops(classes: usize) -> LoopBound {
    let k = classes as u64;
    LoopBound::new(loop_ticks(k - 1) + 2 * loop_ticks(k), format!("classes = {classes}"))
}

#[allow(clippy::too_many_arguments)]
pub fn softmax_xent(
    gpu: &Gpu,
    k: &Kernels,
    batch: usize,
    classes: usize,
    logits: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    d_logits: &wgpu::Buffer,
    metrics: &wgpu::Buffer,
    slots: &StepSlots,
    smoothing: f64,
) -> Result<(Dispatch, wgpu::Buffer)> {
    if !(0.0..1.0).contains(&smoothing) {
        return Err(format!("label smoothing {smoothing} must be at least 0 and below 1"));
    }
    let uniform = gpu.uniform_init(
        "xent params",
        &[XentParams { batch: batch as u32, classes: classes as u32, smoothing: smoothing as f32, _pad: 0 }],
    );
    let d = Dispatch::new(
        gpu,
        &k.softmax_xent,
        batch as u32,
        &[
            (0, whole(&uniform)),
            (1, whole(logits)),
            (2, whole(labels)),
            (3, whole(d_logits)),
            (4, whole(metrics)),
        ],
    )?
    .with_steps(gpu, &k.softmax_xent, slots)
    .with_loops(xent_loops(classes))
    // per row: the logits and their gradient, the label, the loss and correctness
    .with_bytes(batch as u64 * (8 * classes as u64 + 4 + 8));
    Ok((d, uniform))
}
