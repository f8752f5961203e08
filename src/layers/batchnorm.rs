//! Batch normalisation over channels (shaders/batchnorm.wgsl): values (B, C, P), NCHW
//! images with P = H * W or features (B, F) with P = 1. The statistics and the gradient
//! cover the step's valid rows only (`Step::count`): a short last batch's padding rows
//! change nothing. Training uses the batch's mean and
//! biased variance (two passes over the data, never E[x^2] - E[x]^2) and updates running
//! statistics with momentum 0.1 and the unbiased variance, as PyTorch does; evaluation uses
//! the running statistics. gamma and beta (C each) sit in the flat parameter buffer; the
//! statistics (mean, 1/std of the last batch, running mean, running variance: 4 x C) are
//! the layer's non-trainable state. Every per-channel sum runs in chunks of the channel's
//! B * P values, then over the chunks in order: deterministic, and within the loop budget.
//! A ReLU right after the layer can be fused in (`relu`): the forwards write max(y, 0) and
//! the backward masks dy by that output, saving the ReLU's two passes over the values.
//! The elementwise kernels give each thread several consecutive values of one plane: how
//! many is the autotuner's choice for the shape (autotune.rs), 16 where tuning is off.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots, whole};
use crate::loop_budget::{LoopBound, loop_ticks};

pub const BATCHNORM_WGSL: &str = include_str!("../../shaders/batchnorm.wgsl");
pub const EPS: f64 = 1e-5;
pub const MOMENTUM: f64 = 0.1;
/// Values per thread in the elementwise kernels (shaders/batchnorm.wgsl PER_THREAD) where
/// autotuning is off: on lavapipe 16 ran the best model's layers 2-3 times faster than 4,
/// and 64 gained a few percent more on some shapes, which the autotuner finds.
pub const PER_THREAD: u32 = 16;
/// What `--autotune quick` times, and what `full` adds.
pub const PER_THREAD_CANDIDATES: [u32; 3] = [4, 16, 64];
pub const PER_THREAD_MORE: [u32; 4] = [1, 2, 8, 32];

#[derive(Debug, Clone, Copy)]
pub struct BnShape {
    pub batch: usize,
    pub channels: usize,
    /// Values per channel per sample: H * W, or 1 for features.
    pub plane: usize,
}

impl BnShape {
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// gamma then beta.
    pub fn param_len(&self) -> usize {
        2 * self.channels
    }
    /// Threads of the elementwise kernels: each takes up to `per_thread` consecutive values
    /// of one (sample, channel) plane.
    pub fn elementwise_threads(&self, per_thread: u32) -> usize {
        self.batch * self.channels * self.plane.div_ceil(per_thread.max(1) as usize)
    }
    pub fn stats_len(&self) -> usize {
        4 * self.channels
    }
    /// The statistics a fresh layer starts from: running mean 0, running variance 1.
    pub fn initial_stats(&self) -> Vec<f32> {
        let c = self.channels;
        (0..4 * c).map(|i| if i >= 3 * c { 1.0 } else { 0.0 }).collect()
    }
    /// (chunks, values per chunk) of each channel's B * P values: about 2,048 threads in
    /// all, no chunk longer than the loop budget allows.
    pub fn plan(&self, loop_budget: u64) -> (usize, usize) {
        let n = (self.batch * self.plane).max(1);
        let parallel = (2048 / self.channels.max(1)).max(1);
        let len = n.div_ceil(parallel).min(loop_budget.saturating_sub(1).max(1) as usize);
        (n.div_ceil(len), len)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BnParams {
    batch: u32,
    channels: u32,
    plane: u32,
    chunk_len: u32,
    chunks: u32,
    param_offset: u32,
    eps: f32,
    momentum: f32,
    relu: u32,
    _pad: [u32; 3],
}

/// Buffers the layer reads and writes; `offset` is its (gamma, beta) block in the flat
/// parameter and gradient buffers.
pub struct BnBuffers<'a> {
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub offset: usize,
    pub stats: &'a wgpu::Buffer,
    pub dy: &'a wgpu::Buffer,
    /// Gradient with respect to x; None for a first layer.
    pub dx: Option<&'a wgpu::Buffer>,
}

pub struct BatchNorm {
    pub shape: BnShape,
    /// Batch statistics (and the running update), then the normalisation.
    pub train_forward: Vec<Dispatch>,
    /// The normalisation with the running statistics.
    pub eval_forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    /// Uniform and scratch, kept alive with the layer.
    pub owned: Vec<wgpu::Buffer>,
}

impl BatchNorm {
    /// With `relu`, the ReLU that follows is fused in (b.y then holds max(y, 0)).
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        shape: BnShape,
        relu: bool,
        b: &BnBuffers,
        with_backward: bool,
        slots: &StepSlots,
    ) -> Result<BatchNorm> {
        let (chunks, chunk_len) = shape.plan(gpu.loop_budget);
        let c = shape.channels;
        let uniform = gpu.uniform_init(
            "batchnorm params",
            &[BnParams {
                batch: shape.batch as u32,
                channels: c as u32,
                plane: shape.plane as u32,
                chunk_len: chunk_len as u32,
                chunks: chunks as u32,
                param_offset: b.offset as u32,
                eps: EPS as f32,
                momentum: MOMENTUM as f32,
                relu: relu.into(),
                _pad: [0; 3],
            }],
        );
        let partial = gpu.storage("batchnorm partial sums", 2 * chunks * c)?;
        let block = whole(b.params);
        let chunk_loops =
            LoopBound::new(loop_ticks(chunk_len as u64), format!("{chunk_len} values per chunk"));
        let reduce_loops =
            |times: u64| LoopBound::new(times * loop_ticks(chunks as u64), format!("{chunks} chunks"));
        let u = || (0, whole(&uniform));
        let per_chunk = (chunks * c) as u32;
        let normalise = [u(), (1, whole(b.x)), (2, whole(b.y)), (3, block.clone()), (4, whole(b.stats))];
        let threads = |per_thread: u32| {
            u32::try_from(shape.elementwise_threads(per_thread))
                .map_err(|_| format!("batch norm over {} values: too many for one dispatch", shape.len()))
        };
        // The elementwise kernels' values per thread: the autotuner times the evaluation
        // forward (the same loop as the others) at each candidate, the default first.
        // Candidates that cut a plane into as many spans as one before them are the same
        // work: left out.
        let spans = |c: u32| shape.plane.div_ceil(c as usize);
        let mut taken = vec![spans(PER_THREAD)];
        let mut distinct = |list: &[u32]| -> Vec<u32> {
            let mut out = Vec::new();
            for &c in list {
                if loop_ticks(c as u64) <= gpu.loop_budget && !taken.contains(&spans(c)) {
                    taken.push(spans(c));
                    out.push(c);
                }
            }
            out
        };
        let candidates: Vec<u32> =
            std::iter::once(PER_THREAD).chain(distinct(&PER_THREAD_CANDIDATES)).collect();
        let more = distinct(&PER_THREAD_MORE);
        let key = format!(
            "batch norm{} elementwise, {} x {} x {}: values per thread [shader {}]",
            if relu { " + relu" } else { "" },
            shape.batch,
            c,
            shape.plane,
            crate::autotune::fingerprint(BATCHNORM_WGSL)
        );
        let per_thread = k.tuner.choose(&key, PER_THREAD, &candidates, &more, &mut |pt, repeats| {
            let kernel = k.on_demand_with(gpu, "batchnorm.wgsl", "bn_forward_eval", &[("PER_THREAD", pt)])?;
            let d = Dispatch::new(gpu, &kernel, threads(pt)?, &normalise)?;
            crate::autotune::time_dispatches(gpu, &[&d], repeats)
        });
        let kernel = |entry: &'static str| {
            let elementwise = matches!(entry, "bn_forward_train" | "bn_forward_eval" | "bn_backward_dx");
            let overrides: &[(&'static str, u32)] =
                if elementwise { &[("PER_THREAD", per_thread)] } else { &[] };
            k.on_demand_with(gpu, "batchnorm.wgsl", entry, overrides)
        };
        let elements = threads(per_thread)?;
        let span_loops =
            || LoopBound::new(loop_ticks(per_thread as u64), format!("{per_thread} values per thread"));
        // Words each kernel reads or writes per value (for the kernel table's GB/s); the
        // fused ReLU's mask reads the output once more in the backward.
        let words_per_value = |entry: &str| -> u64 {
            let mask = u64::from(relu);
            match entry {
                "bn_sum_partial" | "bn_sqdev_partial" => 1,
                "bn_forward_train" | "bn_forward_eval" => 2,
                "bn_grad_partial" => 2 + mask,
                "bn_backward_dx" => 3 + mask,
                _ => 0,
            }
        };
        // Kernels that read the step's valid row count bind the per-step uniform.
        let stat = |entry, threads, entries: &[(u32, wgpu::BindingResource)], loops| -> Result<Dispatch> {
            let kernel = kernel(entry)?;
            let d = Dispatch::new(gpu, &kernel, threads, entries)?
                .with_loops(loops)
                .with_bytes(4 * words_per_value(entry) * shape.len() as u64);
            let per_step = !matches!(entry, "bn_forward_train" | "bn_forward_eval" | "bn_grad_reduce");
            Ok(if per_step { d.with_steps(gpu, &kernel, slots) } else { d })
        };
        let stats_entries = [u(), (1, whole(b.x)), (4, whole(b.stats)), (5, whole(&partial))];
        let reduce_entries = [u(), (4, whole(b.stats)), (5, whole(&partial))];
        let train_forward = vec![
            stat("bn_sum_partial", per_chunk, &stats_entries, chunk_loops.clone())?,
            stat("bn_mean", c as u32, &reduce_entries, reduce_loops(1))?,
            stat("bn_sqdev_partial", per_chunk, &stats_entries, chunk_loops.clone())?,
            stat("bn_var", c as u32, &reduce_entries, reduce_loops(1))?,
            stat("bn_forward_train", elements, &normalise, span_loops())?,
        ];
        let eval_forward = vec![stat("bn_forward_eval", elements, &normalise, span_loops())?];
        let mut backward = Vec::new();
        if with_backward {
            backward.push(stat(
                "bn_grad_partial",
                per_chunk,
                &[
                    u(),
                    (1, whole(b.x)),
                    (4, whole(b.stats)),
                    (5, whole(&partial)),
                    (6, whole(b.dy)),
                    (8, whole(b.y)),
                ],
                chunk_loops,
            )?);
            backward.push(stat(
                "bn_grad_reduce",
                c as u32,
                &[u(), (5, whole(&partial)), (7, whole(b.grads))],
                reduce_loops(2),
            )?);
            if let Some(dx) = b.dx {
                backward.push(stat(
                    "bn_backward_dx",
                    elements,
                    &[
                        u(),
                        (1, whole(b.x)),
                        (2, whole(dx)),
                        (3, block),
                        (4, whole(b.stats)),
                        (6, whole(b.dy)),
                        (7, whole(b.grads)),
                        (8, whole(b.y)),
                    ],
                    span_loops(),
                )?);
            }
        }
        Ok(BatchNorm { shape, train_forward, eval_forward, backward, owned: vec![uniform, partial] })
    }
}
