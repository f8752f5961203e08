//! Softmax cross-entropy: the loss, its gradient and the batch metrics in one kernel.
//!
//! logits (B, K), labels (B) -> d_logits (B, K) (already divided by the valid count) and
//! metrics[slot] = (summed loss, correct predictions) for the step's slot.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots, whole};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct XentParams {
    batch: u32,
    classes: u32,
    _pad: [u32; 2],
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
) -> Result<(Dispatch, wgpu::Buffer)> {
    let uniform = gpu.uniform_init(
        "xent params",
        &[XentParams { batch: batch as u32, classes: classes as u32, _pad: [0; 2] }],
    );
    let d = Dispatch::new(
        gpu,
        &k.softmax_xent,
        1,
        &[
            (0, whole(&uniform)),
            (1, whole(logits)),
            (2, whole(labels)),
            (3, whole(d_logits)),
            (4, whole(metrics)),
        ],
    )?
    .with_steps(gpu, &k.softmax_xent, slots);
    Ok((d, uniform))
}
