//! Global average pool (shaders/gap.wgsl): x (B, C, S, S) -> y (B, C), each plane's
//! mean; backward dy (B, C) -> dx (B, C, S, S) = dy / (S * S). The forward thread sums a
//! whole plane in order, S * S + 1 loop iterations: sides past the loop budget (256 on
//! llvmpipe) are refused by the model's check.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, whole};
use crate::loop_budget::{LoopBound, loop_ticks};

pub const GAP_WGSL: &str = include_str!("../../shaders/gap.wgsl");

#[derive(Debug, Clone, Copy)]
pub struct GapShape {
    pub batch: usize,
    pub channels: usize,
    pub side: usize,
}

impl GapShape {
    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.side * self.side
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct GapParams {
    planes: u32,
    area: u32,
    _pad: [u32; 2],
}

pub struct GlobalAvgPool {
    pub shape: GapShape,
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    /// Kept alive with the layer.
    pub uniform: wgpu::Buffer,
}

impl GlobalAvgPool {
    /// x -> y, and dy -> dx when `grads` (dy, dx) are given.
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        shape: GapShape,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        grads: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
    ) -> Result<GlobalAvgPool> {
        let area = shape.side * shape.side;
        let params = GapParams { planes: shape.output_len() as u32, area: area as u32, _pad: [0; 2] };
        let uniform = gpu.uniform_init("gap params", &[params]);
        let fwd = k.on_demand(gpu, "gap.wgsl", "gap_forward")?;
        let forward = vec![
            Dispatch::new(gpu, &fwd, params.planes, &[(0, whole(&uniform)), (1, whole(x)), (2, whole(y))])?
                .with_flops(shape.input_len() as u64)
                .with_loops(LoopBound::new(loop_ticks(area as u64), format!("side = {}", shape.side))),
        ];
        let mut backward = Vec::new();
        if let Some((dy, dx)) = grads {
            let bwd = k.on_demand(gpu, "gap.wgsl", "gap_backward")?;
            backward.push(
                Dispatch::new(
                    gpu,
                    &bwd,
                    shape.input_len() as u32,
                    &[(0, whole(&uniform)), (1, whole(dy)), (2, whole(dx))],
                )?
                .with_loops(LoopBound::none()),
            );
        }
        Ok(GlobalAvgPool { shape, forward, backward, uniform })
    }
}
