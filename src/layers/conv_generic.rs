//! Generic convolution (shaders/conv_generic.wgsl): K x K with K = 3 or 5, stride 1,
//! "same" padding K / 2, any channel counts and any side (odd too), optional bias; the
//! layer for the shapes the tiled 3x3 kernels (conv.rs: channels in multiples of 16, even
//! sides) do not take. NCHW f32:
//!
//! x (B, CI, S, S) -> y (B, CO, S, S) = conv(x, w) + bias.
//! Parameter block (and gradient block, same layout) at `offset` in the flat buffers:
//! weights (CO, CI, K, K), then the bias (CO) when `bias`.
//! Backward: dy (B, CO, S, S) -> weight and bias gradients (overwriting the block) and,
//! unless this is a first layer, dx (B, CI, S, S).
//!
//! Forward and dx run one thread per output value over channels and taps. The weight
//! gradient cuts the batch's B * S rows into chunks (partial sums per chunk, then the
//! chunks added in index order: deterministic, no atomics), sized to fill the device and
//! to keep each invocation inside the adapter's loop budget, ending inside images where a
//! whole image would not fit.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, whole, words};
use crate::loop_budget::{LoopBound, loop_ticks};

pub const CONV_GENERIC_WGSL: &str = include_str!("../../shaders/conv_generic.wgsl");

/// Weight-gradient threads (chunks x parameters) the plan aims for: small layers get more
/// chunks so that the device has enough independent sums to run.
pub const WGRAD_FILL_THREADS: usize = 16_384;

#[derive(Debug, Clone, Copy)]
pub struct ConvGenericShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub side: usize,
    /// 3 or 5.
    pub kernel: usize,
    pub bias: bool,
}

impl ConvGenericShape {
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel * self.kernel
    }
    pub fn param_len(&self) -> usize {
        self.weight_len() + if self.bias { self.out_channels } else { 0 }
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.side * self.side
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.side * self.side
    }
    /// Multiply-adds of one pass (forward, dx or weight gradient) over the batch, times 2;
    /// taps that fall in the padding count too, as in conv.rs.
    pub fn flops(&self) -> u64 {
        2 * (self.batch * self.side * self.side * self.out_channels * self.in_channels) as u64
            * (self.kernel * self.kernel) as u64
    }

    /// conv_generic_forward's loops: CI input channels, each K rows of K taps:
    /// CI ((K + 1)^2 + 2) + 3 (nest_ticks).
    pub fn forward_loops(&self) -> LoopBound {
        let k = self.kernel as u64;
        LoopBound::new(
            nest_ticks(&[self.in_channels as u64, k, k]),
            format!("{} input channels x {k}x{k} taps", self.in_channels, k = self.kernel),
        )
    }

    /// conv_generic_dx's loops: CO output channels, each K rows of K taps:
    /// CO ((K + 1)^2 + 2) + 3 (nest_ticks).
    pub fn dx_loops(&self) -> LoopBound {
        let k = self.kernel as u64;
        LoopBound::new(
            nest_ticks(&[self.out_channels as u64, k, k]),
            format!("{} output channels x {k}x{k} taps", self.out_channels, k = self.kernel),
        )
    }

    /// How the weight gradient cuts the batch's B * S rows into chunks: about
    /// `fill_threads` threads (chunks x parameters) in all, and no chunk longer than the
    /// loop budget allows (chunks then end inside images). Refuses a side whose single row
    /// would not fit, and a chunk count whose in-order reduction would not.
    pub fn wgrad_plan(&self, loop_budget: u64, fill_threads: usize) -> Result<WgradPlan> {
        let rows = self.batch * self.side;
        // nest_ticks([R, S]) = R (S + 2) + 2: each row runs its S columns (S + 1 ticks) and
        // passes the row loop's back edge once; the row loop's exit pass adds 2
        let per_row = self.side as u64 + 2;
        let max_rows = (loop_budget.saturating_sub(2) / per_row) as usize;
        if max_rows == 0 {
            return Err(format!(
                "kernel conv_generic_wgrad: one image row of side = {} needs {} loop iterations per \
                 invocation, over this adapter's loop budget of {loop_budget}; use a smaller side",
                self.side,
                nest_ticks(&[1, self.side as u64])
            ));
        }
        let fill_chunks = fill_threads.div_ceil(self.param_len().max(1)).clamp(1, rows.max(1));
        let chunk_rows = rows.div_ceil(fill_chunks).min(max_rows).max(1);
        let chunks = rows.div_ceil(chunk_rows).max(1);
        if loop_ticks(chunks as u64) > loop_budget {
            return Err(format!(
                "kernel conv_generic_wgrad_reduce: {chunks} batch chunks of {chunk_rows} rows (batch = {}, \
                 side = {}) need {} loop iterations per invocation to add, over this adapter's loop \
                 budget of {loop_budget}; use a smaller batch or side",
                self.batch,
                self.side,
                loop_ticks(chunks as u64)
            ));
        }
        Ok(WgradPlan { chunks, chunk_rows, side: self.side })
    }

    fn validate(&self) -> Result<()> {
        if self.kernel != 3 && self.kernel != 5 {
            return Err(format!(
                "generic conv layer: kernel size {} (only 3 and 5 are supported)",
                self.kernel
            ));
        }
        if self.batch == 0 || self.in_channels == 0 || self.out_channels == 0 || self.side == 0 {
            return Err(format!("generic conv layer: every size must be at least 1, got {self:?}"));
        }
        Ok(())
    }
}

/// Loop iterations llvmpipe charges one invocation for a perfect loop nest with these trip
/// counts, outermost first. Each loop passes its back edge n + 1 times (loop_budget.rs); on
/// top of that, a loop's last pass (the one that finds every lane done) still runs its body
/// with every lane masked off, and each loop nested in it passes its back edge once there:
/// one more tick per nested level, per run of the enclosing loop. (Measured on lavapipe: a
/// 3-deep nest (N, 3, 3) stops after 18 ticks per outer iteration, not 17.)
pub fn nest_ticks(trips: &[u64]) -> u64 {
    match trips {
        [] => 0,
        [n, inner @ ..] => loop_ticks(*n) + n * nest_ticks(inner) + inner.len() as u64,
    }
}

/// The weight gradient's batch chunks (ConvGenericShape::wgrad_plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgradPlan {
    pub chunks: usize,
    /// Image rows per chunk, counted over the batch (row r = b * S + y); the last chunk may
    /// be shorter.
    pub chunk_rows: usize,
    side: usize,
}

impl WgradPlan {
    /// conv_generic_wgrad's loops: chunk_rows rows of S columns, R (S + 2) + 2.
    pub fn loops(&self) -> LoopBound {
        LoopBound::new(
            nest_ticks(&[self.chunk_rows as u64, self.side as u64]),
            format!("{} image rows of side {} per batch chunk", self.chunk_rows, self.side),
        )
    }

    /// conv_generic_wgrad_reduce's loop over the chunks: chunks + 1.
    pub fn reduce_loops(&self) -> LoopBound {
        LoopBound::new(nest_ticks(&[self.chunks as u64]), format!("{} batch chunks to add", self.chunks))
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvGenericParams {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    side: u32,
    kernel: u32,
    has_bias: u32,
    chunks: u32,
    chunk_rows: u32,
}

/// Buffers the layer reads and writes; `offset` is its block (weights, then the bias) in
/// the flat parameter and gradient buffers, in words.
pub struct ConvGenericBuffers<'a> {
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub offset: usize,
    pub dy: &'a wgpu::Buffer,
    /// Gradient with respect to x; None for a first layer.
    pub dx: Option<&'a wgpu::Buffer>,
}

pub struct ConvGeneric {
    pub shape: ConvGenericShape,
    /// The weight gradient's chunks; None without a backward pass.
    pub plan: Option<WgradPlan>,
    pub forward: Vec<Dispatch>,
    /// Weight (and bias) gradient, then dx when asked for.
    pub backward: Vec<Dispatch>,
    pub owned: Vec<wgpu::Buffer>,
}

/// A thread count as the shaders index it (u32), or an error naming what is too large.
fn threads(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| format!("generic conv layer: {what} has {n} values, over the 2^32 a shader can index"))
}

impl ConvGeneric {
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        shape: ConvGenericShape,
        b: &ConvGenericBuffers,
        with_backward: bool,
    ) -> Result<ConvGeneric> {
        ConvGeneric::with_wgrad_fill(gpu, k, shape, b, with_backward, WGRAD_FILL_THREADS)
    }

    /// `new` with the weight gradient's chunks planned for `fill_threads` threads
    /// (ConvGenericShape::wgrad_plan): 1 asks for the fewest, longest chunks the loop budget
    /// allows, which tests use to run chunks right at the budget.
    pub fn with_wgrad_fill(
        gpu: &Gpu,
        k: &Kernels,
        shape: ConvGenericShape,
        b: &ConvGenericBuffers,
        with_backward: bool,
        fill_threads: usize,
    ) -> Result<ConvGeneric> {
        shape.validate()?;
        let kernel = |entry: &'static str| k.on_demand(gpu, "conv_generic.wgsl", entry);
        // the plan only matters with a backward pass; it is refused before anything is built
        let plan = if with_backward { Some(shape.wgrad_plan(gpu.loop_budget, fill_threads)?) } else { None };
        let (out_threads, in_threads) = (threads("y", shape.output_len())?, threads("x", shape.input_len())?);
        threads("the weight block", shape.param_len())?;
        let uniform = gpu.uniform_init(
            "conv_generic params",
            &[ConvGenericParams {
                batch: shape.batch as u32,
                in_channels: shape.in_channels as u32,
                out_channels: shape.out_channels as u32,
                side: shape.side as u32,
                kernel: shape.kernel as u32,
                has_bias: shape.bias as u32,
                chunks: plan.map_or(1, |p| p.chunks as u32),
                chunk_rows: plan.map_or(1, |p| p.chunk_rows as u32),
            }],
        );
        let block = || words(b.params, b.offset, shape.param_len());
        let bias_flops = if shape.bias { shape.output_len() as u64 } else { 0 };
        let forward = vec![
            Dispatch::new(
                gpu,
                &kernel("conv_generic_forward")?,
                out_threads,
                &[(0, whole(&uniform)), (1, whole(b.x)), (2, block()), (3, whole(b.y))],
            )?
            .with_flops(shape.flops() + bias_flops)
            .with_loops(shape.forward_loops()),
        ];
        let mut backward = Vec::new();
        let mut owned = vec![];
        if let Some(plan) = plan {
            let partial_len = plan.chunks * shape.param_len();
            let partial = gpu.storage("conv_generic wgrad partials", partial_len)?;
            backward.push(
                Dispatch::new(
                    gpu,
                    &kernel("conv_generic_wgrad")?,
                    threads("the weight-gradient partials", partial_len)?,
                    &[(0, whole(&uniform)), (1, whole(b.x)), (3, whole(&partial)), (4, whole(b.dy))],
                )?
                .with_flops(shape.flops() + bias_flops)
                .with_loops(plan.loops()),
            );
            backward.push(
                Dispatch::new(
                    gpu,
                    &kernel("conv_generic_wgrad_reduce")?,
                    shape.param_len() as u32,
                    &[
                        (0, whole(&uniform)),
                        (3, words(b.grads, b.offset, shape.param_len())),
                        (5, whole(&partial)),
                    ],
                )?
                .with_flops(partial_len as u64)
                .with_loops(plan.reduce_loops()),
            );
            if let Some(dx) = b.dx {
                backward.push(
                    Dispatch::new(
                        gpu,
                        &kernel("conv_generic_dx")?,
                        in_threads,
                        &[(0, whole(&uniform)), (2, block()), (3, whole(dx)), (4, whole(b.dy))],
                    )?
                    .with_flops(shape.flops())
                    .with_loops(shape.dx_loops()),
                );
            }
            owned.push(partial);
        }
        owned.push(uniform);
        Ok(ConvGeneric { shape, plan, forward, backward, owned })
    }
}
