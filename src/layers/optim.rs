//! Optimisers over the flat parameter buffer: Adam, AdamW (decoupled weight decay) and SGD
//! with momentum, optional weight decay and Nesterov momentum (PyTorch's rules). Weight
//! decay applies where the decay mask is 1: conv and dense weights, not biases or batch
//! norm. With `clip_grad_norm` the gradients are first clipped by their global norm.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, Step, StepSlots, whole};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    Adam,
    #[value(name = "adamw")]
    AdamW,
    Sgd,
}

#[derive(Debug, Clone, Copy)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub momentum: f64,
    /// AdamW's decoupled decay, or SGD's L2 term (0: none; Adam takes none).
    pub weight_decay: f64,
    /// Nesterov momentum (SGD only).
    pub nesterov: bool,
    /// The largest global gradient norm before the step (clip.rs); 0: no clipping.
    pub clip_grad_norm: f64,
}

impl Default for OptimizerConfig {
    /// PyTorch's Adam defaults with lr 1e-3 (momentum only matters for SGD).
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
            clip_grad_norm: 0.0,
        }
    }
}

impl OptimizerConfig {
    /// Fills the optimiser fields of `step` for update number `t` (1-based), with the
    /// learning rate scaled by the schedule's `factor` (1 for a constant rate).
    pub fn fill_step(&self, step: &mut Step, t: u64, factor: f64) {
        let lr = self.lr * factor;
        step.lr = lr as f32;
        let bc1 = 1.0 - self.beta1.powf(t as f64);
        let bc2 = 1.0 - self.beta2.powf(t as f64);
        step.step_size = (lr / bc1) as f32;
        step.sqrt_bias_correction2 = bc2.sqrt() as f32;
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct OptimParams {
    len: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    momentum: f32,
    weight_decay: f32,
    nesterov: f32,
    _pad: f32,
}

/// Optimiser state: Adam's m and v, or SGD's velocity (in `m`).
pub struct Optimizer {
    pub m: wgpu::Buffer,
    pub v: wgpu::Buffer,
    /// Gradient clipping before the update, when asked for.
    pub clip: Option<crate::layers::clip::GradClip>,
    pub update: Dispatch,
    _uniform: wgpu::Buffer,
    _mask: wgpu::Buffer,
}

impl Optimizer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        cfg: &OptimizerConfig,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        len: usize,
        slots: &StepSlots,
        decay_mask: &[f32],
    ) -> Result<Optimizer> {
        if !len.is_multiple_of(4) {
            return Err(format!("optimizer: parameter count {len} must be a multiple of 4"));
        }
        let m = gpu.storage("optimizer m", len)?;
        let v = gpu.storage("optimizer v", len)?;
        let uniform = gpu.uniform_init(
            "optimizer params",
            &[OptimParams {
                len: (len / 4) as u32,
                beta1: cfg.beta1 as f32,
                beta2: cfg.beta2 as f32,
                eps: cfg.eps as f32,
                momentum: cfg.momentum as f32,
                weight_decay: cfg.weight_decay as f32,
                nesterov: if cfg.nesterov { 1.0 } else { 0.0 },
                _pad: 0.0,
            }],
        );
        let extended = cfg.kind == OptimizerKind::AdamW || cfg.weight_decay > 0.0 || cfg.nesterov;
        if extended && decay_mask.len() != len {
            return Err(format!("optimizer: decay mask of {} words for {len} parameters", decay_mask.len()));
        }
        // the plain kernels never read the mask: a placeholder word then
        let mask = gpu.storage_init("weight decay mask", if extended { decay_mask } else { &[0.0; 4] })?;
        let mut entries = vec![(0, whole(&uniform)), (1, whole(params)), (2, whole(grads)), (3, whole(&m))];
        if extended {
            entries.push((5, whole(&mask)));
        }
        let kernel = match (cfg.kind, extended) {
            (OptimizerKind::Adam, _) => {
                entries.push((4, whole(&v)));
                &k.adam
            }
            (OptimizerKind::AdamW, _) => {
                entries.push((4, whole(&v)));
                &k.adamw
            }
            (OptimizerKind::Sgd, false) => &k.sgd,
            (OptimizerKind::Sgd, true) => &k.sgd_ext,
        };
        // per parameter: it, its gradient and the moments read; it and the moments written
        let words = match cfg.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => 7,
            OptimizerKind::Sgd => 5,
        };
        let update = Dispatch::new(gpu, kernel, (len / 4) as u32, &entries)?
            .with_bytes(4 * words * len as u64)
            .with_steps(gpu, kernel, slots)
            .with_loops(crate::loop_budget::LoopBound::none());
        let clip = if cfg.clip_grad_norm > 0.0 {
            Some(crate::layers::clip::GradClip::new(gpu, k, grads, len, cfg.clip_grad_norm)?)
        } else {
            None
        };
        Ok(Optimizer { m, v, clip, update, _uniform: uniform, _mask: mask })
    }
}
