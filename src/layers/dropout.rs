//! Inverted dropout over n values of any shape (shaders/dropout.wgsl): forward x -> y and
//! backward dy -> dx apply the same keep decision, hashed from (seed, the step's optimiser
//! update, index), so nothing is stored and a resumed run draws the same masks. An
//! evaluation step runs it with p = 0, a plain copy (network.rs). Each thread takes
//! PER_THREAD consecutive values.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots, whole};
use crate::loop_budget::{LoopBound, loop_ticks};

pub const DROPOUT_WGSL: &str = include_str!("../../shaders/dropout.wgsl");
/// Values per thread (shaders/dropout.wgsl PER_THREAD).
pub const PER_THREAD: usize = 4;

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
    pub owned: Vec<wgpu::Buffer>,
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
        let count =
            u32::try_from(n).map_err(|_| format!("dropout over {n} values: more than a u32 can index"))?;
        let kernel = k.on_demand(gpu, "dropout.wgsl", "dropout")?;
        let params = DropParams { n: count, seed, threshold: threshold(p), scale: (1.0 / (1.0 - p)) as f32 };
        let uniform = gpu.uniform_init("dropout params", &[params]);
        // bindings 3 and 4, the vec4 views, are read only where n is a multiple of 4; elsewhere
        // a buffer may be shorter than one vec4, which a vec4 binding does not allow
        let as_vec4 = n.is_multiple_of(4);
        // (two: one buffer may not be bound both read-only and read_write)
        let stand_ins =
            [gpu.storage("dropout's unread vec4 view", 4)?, gpu.storage("dropout's unwritten vec4 view", 4)?];
        let apply = |src: &wgpu::Buffer, dst: &wgpu::Buffer| -> Result<Dispatch> {
            let (src4, dst4) = if as_vec4 { (src, dst) } else { (&stand_ins[0], &stand_ins[1]) };
            Ok(Dispatch::new(
                gpu,
                &kernel,
                n.div_ceil(PER_THREAD) as u32,
                &[(0, whole(&uniform)), (1, whole(src)), (2, whole(dst)), (3, whole(src4)), (4, whole(dst4))],
            )?
            .with_steps(gpu, &kernel, slots)
            .with_loops(LoopBound::new(
                loop_ticks(PER_THREAD as u64),
                format!("{PER_THREAD} values per thread"),
            ))
            // each value read and written once (the mask is hashed, not stored)
            .with_bytes(8 * n as u64))
        };
        let forward = vec![apply(x, y)?];
        let backward = match grads {
            Some((dy, dx)) => vec![apply(dy, dx)?],
            None => Vec::new(),
        };
        Ok(Dropout { forward, backward, owned: [vec![uniform], stand_ins.into()].concat() })
    }
}
