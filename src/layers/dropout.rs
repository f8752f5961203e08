//! Inverted dropout over n values of any shape (shaders/dropout.wgsl): forward x -> y and
//! backward dy -> dx apply the same keep decision, hashed from (seed, the step's optimiser
//! update, index), so nothing is stored and a resumed run draws the same masks. Training
//! only: an evaluation step leaves the layer out.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots, whole};
use crate::loop_budget::LoopBound;

pub const DROPOUT_WGSL: &str = include_str!("../../shaders/dropout.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DropParams {
    n: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
}

/// The shader's integer mixer, for hosts that need the same decisions (tests).
pub fn mix(v: u32) -> u32 {
    let mut x = v;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Hashes at or above this are kept: p * 2^32.
pub fn threshold(p: f64) -> u32 {
    (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

/// Whether value `i` is kept at optimiser update `update`, as the shader decides.
pub fn keeps(seed: u32, update: u32, i: u32, p: f64) -> bool {
    mix(i ^ mix(update ^ mix(seed))) >= threshold(p)
}

pub struct Dropout {
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    /// Kept alive with the layer.
    pub uniform: wgpu::Buffer,
}

impl Dropout {
    /// Dropout with probability `p` (0 <= p < 1) over `n` values: x -> y, and dy -> dx when
    /// given. `seed` is the run's seed (each dropout layer of a model should get its own).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        n: usize,
        p: f64,
        seed: u32,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        grads: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
        slots: &StepSlots,
    ) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(format!("dropout probability {p} must be at least 0 and below 1"));
        }
        let kernel = k.on_demand(gpu, "dropout.wgsl", "dropout")?;
        let params =
            DropParams { n: n as u32, seed, threshold: threshold(p), scale: (1.0 / (1.0 - p)) as f32 };
        let uniform = gpu.uniform_init("dropout params", &[params]);
        let apply = |src: &wgpu::Buffer, dst: &wgpu::Buffer| -> Result<Dispatch> {
            Ok(Dispatch::new(
                gpu,
                &kernel,
                n as u32,
                &[(0, whole(&uniform)), (1, whole(src)), (2, whole(dst))],
            )?
            .with_steps(gpu, &kernel, slots)
            .with_loops(LoopBound::none())
            // each value read and written once (the mask is hashed, not stored)
            .with_bytes(8 * n as u64))
        };
        let forward = vec![apply(x, y)?];
        let backward = match grads {
            Some((dy, dx)) => vec![apply(dy, dx)?],
            None => Vec::new(),
        };
        Ok(Dropout { forward, backward, uniform })
    }
}
