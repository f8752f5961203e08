//! Gradient clipping by global norm (`--clip-grad-norm X`, shaders/clip.wgsl): after the
//! backward pass every gradient in the flat buffer (len words, a multiple of 4) is scaled
//! by min(1, X / (norm + 1e-6)), the norm being the 2-norm over all of them, as PyTorch's
//! clip_grad_norm_. The norm is summed per chunk and then over the chunks in order, so it
//! is the same at every run, and no invocation loops past the adapter's budget.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, whole};
use crate::loop_budget::{LoopBound, loop_ticks};

pub const CLIP_WGSL: &str = include_str!("../../shaders/clip.wgsl");
/// Added to the norm before dividing, as PyTorch does.
pub const EPS: f64 = 1e-6;
/// About this many threads share the sum of squares.
const PARALLEL: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ClipParams {
    len: u32,
    chunk_len: u32,
    chunks: u32,
    max_norm: f32,
}

/// (chunks, vec4s per chunk) for `len4` vec4s: about PARALLEL chunks, none longer than the
/// loop budget allows, and few enough that one thread adds them within it.
pub fn plan(len4: usize, loop_budget: u64) -> (usize, usize) {
    let most = loop_budget.saturating_sub(1).max(1) as usize;
    let chunk_len = len4.div_ceil(PARALLEL).clamp(1, most);
    (len4.div_ceil(chunk_len).max(1), chunk_len)
}

pub struct GradClip {
    /// clip_partial, clip_scale, clip_apply.
    pub dispatches: Vec<Dispatch>,
    /// [coef, norm] of the last step.
    pub clip: wgpu::Buffer,
    _owned: Vec<wgpu::Buffer>,
}

impl GradClip {
    pub fn new(gpu: &Gpu, k: &Kernels, grads: &wgpu::Buffer, len: usize, max_norm: f64) -> Result<GradClip> {
        if !len.is_multiple_of(4) || len == 0 {
            return Err(format!("gradient clipping: {len} gradients, not a positive multiple of 4"));
        }
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(format!("gradient clipping: the largest norm {max_norm} must be positive"));
        }
        let len4 = len / 4;
        let (chunks, chunk_len) = plan(len4, gpu.loop_budget);
        if loop_ticks(chunks as u64) > gpu.loop_budget {
            return Err(format!(
                "gradient clipping: {len} gradients need {chunks} chunks of {chunk_len}, more than this adapter's loop budget of {} lets one invocation add",
                gpu.loop_budget
            ));
        }
        let uniform = gpu.uniform_init(
            "clip params",
            &[ClipParams {
                len: len4 as u32,
                chunk_len: chunk_len as u32,
                chunks: chunks as u32,
                max_norm: max_norm as f32,
            }],
        );
        let partial = gpu.storage("clip partial sums", chunks)?;
        let clip = gpu.storage("clip coef and norm", 4)?;
        // each entry point's layout holds only the bindings it uses
        let dispatch = |entry: &'static str, threads: usize, loops: LoopBound| -> Result<Dispatch> {
            let kernel = k.on_demand(gpu, "clip.wgsl", entry)?;
            let bound = match entry {
                "clip_partial" => [1, 2],
                "clip_scale" => [2, 3],
                _ => [1, 3],
            };
            let all = [(1, grads), (2, &partial), (3, &clip)];
            let mut entries = vec![(0, whole(&uniform))];
            entries.extend(all.iter().filter(|(b, _)| bound.contains(b)).map(|(b, buf)| (*b, whole(buf))));
            Ok(Dispatch::new(gpu, &kernel, threads as u32, &entries)?.with_loops(loops))
        };
        let dispatches = vec![
            dispatch(
                "clip_partial",
                chunks,
                LoopBound::new(loop_ticks(chunk_len as u64), format!("{chunk_len} vec4s per chunk")),
            )?,
            dispatch("clip_scale", 1, LoopBound::new(loop_ticks(chunks as u64), format!("{chunks} chunks")))?,
            dispatch("clip_apply", len4, LoopBound::none())?,
        ];
        Ok(GradClip { dispatches, clip, _owned: vec![uniform, partial] })
    }
}
