//! Standalone 2x2 max pool, stride 2, NCHW (shaders/maxpool.wgsl): x (B, C, S, S) -> y
//! (B, C, S/2, S/2), S even. The forward records which window position won (0 top-left,
//! 1 top-right, 2 bottom-left, 3 bottom-right) in a u32 code buffer laid out like y, owned
//! by the layer; the backward sends each dy to its winner and zeros the other three dx
//! positions. Ties go to the first position in that order, as in PyTorch's MaxPool2d. A
//! thread takes PER_THREAD consecutive pooled values both ways.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, whole};
use crate::loop_budget::{LoopBound, loop_ticks};

pub const MAXPOOL_WGSL: &str = include_str!("../../shaders/maxpool.wgsl");
/// Pooled values per thread (shaders/maxpool.wgsl PER_THREAD).
pub const PER_THREAD: u32 = 4;

fn span_loops() -> LoopBound {
    LoopBound::new(loop_ticks(PER_THREAD as u64), format!("{PER_THREAD} pooled values per thread"))
}

#[derive(Debug, Clone, Copy)]
pub struct PoolShape {
    pub batch: usize,
    pub channels: usize,
    /// Input side S: even, at least 2.
    pub side: usize,
}

impl PoolShape {
    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.side * self.side
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels * (self.side / 2) * (self.side / 2)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MaxPoolParams {
    pooled_count: u32,
    side: u32,
    _pad: [u32; 2],
}

pub struct MaxPool {
    pub shape: PoolShape,
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    /// The uniform and the winner codes, bound by the dispatches.
    pub owned: Vec<wgpu::Buffer>,
}

impl MaxPool {
    /// 2x2 max pool, stride 2, NCHW: x (B,C,S,S) -> y (B,C,S/2,S/2), recording which window
    /// position won (its own u32 code buffer, allocated here); backward dy -> dx puts each
    /// gradient at the winner, zeros at the other 3 positions.
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        shape: PoolShape,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        grads: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
    ) -> Result<MaxPool> {
        if shape.side == 0 || !shape.side.is_multiple_of(2) {
            return Err(format!("max pool input side {} must be even and non-zero", shape.side));
        }
        // The shaders index x with u32; the pooled count is a quarter of it.
        if u32::try_from(shape.input_len()).is_err() {
            return Err(format!(
                "max pool over {} input values: more than a u32 can index",
                shape.input_len()
            ));
        }
        let pooled = shape.output_len() as u32;
        let params = MaxPoolParams { pooled_count: pooled, side: shape.side as u32, _pad: [0; 2] };
        let uniform = gpu.uniform_init("maxpool params", &[params]);
        let codes = gpu.storage("maxpool codes", shape.output_len())?;
        let fwd = k.on_demand(gpu, "maxpool.wgsl", "maxpool_forward")?;
        let forward = vec![
            Dispatch::new(
                gpu,
                &fwd,
                pooled.div_ceil(PER_THREAD),
                &[(0, whole(&uniform)), (2, whole(y)), (3, whole(&codes)), (4, whole(x))],
            )?
            .with_loops(span_loops())
            // per pooled value: its 4 inputs read, the maximum and its code written
            .with_bytes(4 * 6 * pooled as u64),
        ];
        let mut backward = Vec::new();
        if let Some((dy, dx)) = grads {
            let bwd = k.on_demand(gpu, "maxpool.wgsl", "maxpool_backward")?;
            backward.push(
                Dispatch::new(
                    gpu,
                    &bwd,
                    pooled.div_ceil(PER_THREAD),
                    &[(0, whole(&uniform)), (1, whole(dy)), (3, whole(&codes)), (5, whole(dx))],
                )?
                .with_loops(span_loops())
                // per pooled value: its gradient and code read, 4 gradients written
                .with_bytes(4 * 6 * pooled as u64),
            );
        }
        Ok(MaxPool { shape, forward, backward, owned: vec![uniform, codes] })
    }
}
