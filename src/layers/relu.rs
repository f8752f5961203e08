//! Standalone ReLU over n values of any shape (shaders/relu.wgsl): forward x -> y =
//! max(x, 0), with NaN and -0 giving +0; backward dy -> dx = dy where y > 0, else 0. The
//! backward masks by the output y, so x need not survive the forward. `relu_mask_in_place`
//! is the same mask applied to dy in place, for a fused dense + ReLU whose consumer cannot
//! apply it. Each thread takes PER_THREAD consecutive values.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, whole};
use crate::loop_budget::{LoopBound, loop_ticks};

pub const RELU_WGSL: &str = include_str!("../../shaders/relu.wgsl");
/// Values per thread (shaders/relu.wgsl PER_THREAD).
pub const PER_THREAD: usize = 4;

fn threads(n: usize) -> u32 {
    n.div_ceil(PER_THREAD) as u32
}

fn span_loops() -> LoopBound {
    LoopBound::new(loop_ticks(PER_THREAD as u64), format!("{PER_THREAD} values per thread"))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ReluParams {
    n: u32,
    _pad: [u32; 3],
}

/// The uniform for `n` values; the shaders index with u32, so larger counts are refused.
fn params(gpu: &Gpu, n: usize) -> Result<wgpu::Buffer> {
    let n = u32::try_from(n).map_err(|_| format!("relu over {n} values: more than a u32 can index"))?;
    Ok(gpu.uniform_init("relu params", &[ReluParams { n, _pad: [0; 3] }]))
}

pub struct Relu {
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    pub uniform: wgpu::Buffer,
}

impl Relu {
    /// y = max(x, 0) over n values; dx = dy where y > 0, else 0, when grads (dy, dx) are given.
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        n: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        grads: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
    ) -> Result<Relu> {
        let uniform = params(gpu, n)?;
        let fwd = k.on_demand(gpu, "relu.wgsl", "relu_forward")?;
        let forward = vec![
            Dispatch::new(gpu, &fwd, threads(n), &[(0, whole(&uniform)), (1, whole(x)), (2, whole(y))])?
                .with_loops(span_loops())
                .with_bytes(8 * n as u64),
        ];
        let mut backward = Vec::new();
        if let Some((dy, dx)) = grads {
            let bwd = k.on_demand(gpu, "relu.wgsl", "relu_backward")?;
            backward.push(
                Dispatch::new(
                    gpu,
                    &bwd,
                    threads(n),
                    &[(0, whole(&uniform)), (1, whole(dy)), (2, whole(dx)), (3, whole(y))],
                )?
                .with_loops(span_loops())
                .with_bytes(12 * n as u64),
            );
        }
        Ok(Relu { forward, backward, uniform })
    }
}

/// dy *= (y > 0) in place, for a fused dense+ReLU whose consumer cannot apply the mask itself.
/// Returns the dispatch and the uniform it binds (keep it alive).
pub fn relu_mask_in_place(
    gpu: &Gpu,
    k: &Kernels,
    n: usize,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
) -> Result<(Dispatch, wgpu::Buffer)> {
    let uniform = params(gpu, n)?;
    let kernel = k.on_demand(gpu, "relu.wgsl", "relu_mask")?;
    let dispatch =
        Dispatch::new(gpu, &kernel, threads(n), &[(0, whole(&uniform)), (3, whole(y)), (4, whole(dy))])?
            .with_loops(span_loops())
            .with_bytes(12 * n as u64);
    Ok((dispatch, uniform))
}
