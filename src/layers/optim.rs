//! Optimisers over the flat parameter buffer: Adam and SGD with momentum (PyTorch's rules).

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, Step, StepSlots, whole};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    Adam,
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
    _pad: [f32; 3],
}

/// Optimiser state: Adam's m and v, or SGD's velocity (in `m`).
pub struct Optimizer {
    pub m: wgpu::Buffer,
    pub v: wgpu::Buffer,
    pub update: Dispatch,
    _uniform: wgpu::Buffer,
}

impl Optimizer {
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        cfg: &OptimizerConfig,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        len: usize,
        slots: &StepSlots,
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
                _pad: [0.0; 3],
            }],
        );
        let mut entries = vec![(0, whole(&uniform)), (1, whole(params)), (2, whole(grads)), (3, whole(&m))];
        let kernel = match cfg.kind {
            OptimizerKind::Adam => {
                entries.push((4, whole(&v)));
                &k.adam
            }
            OptimizerKind::Sgd => &k.sgd,
        };
        let update = Dispatch::new(gpu, kernel, (len / 4) as u32, &entries)?
            .with_steps(gpu, kernel, slots)
            .with_loops(crate::loop_budget::LoopBound::none());
        Ok(Optimizer { m, v, update, _uniform: uniform })
    }
}
