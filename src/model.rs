//! ref-cnn: conv(1->32) ReLU pool, conv(32->64) ReLU pool, dense(64*S/4*S/4 -> 128) ReLU,
//! dense(128 -> classes), softmax cross-entropy. Activations are NCHW f32 with batch B.
//!
//! All parameters live in one flat buffer, one block per layer (weights then bias), each
//! block starting on the adapter's storage offset alignment; gradients and optimiser
//! state use the same layout, so one optimiser dispatch updates everything.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots};
use crate::layers::conv::{Conv3x3ReluPool, ConvBuffers, ConvShape};
use crate::layers::dense::{Dense, DenseBuffers, DenseShape};
use crate::layers::input::{ResidentSplit, gather};
use crate::layers::loss::softmax_xent;
use crate::layers::optim::{Optimizer, OptimizerConfig};
use rand::{Rng, SeedableRng};

pub const MODEL_NAME: &str = "ref-cnn";
const C1: usize = 32;
const C2: usize = 64;
const HIDDEN: usize = 128;

#[derive(Debug, Clone, Copy)]
pub struct ModelShape {
    pub side: usize,
    pub classes: usize,
    pub batch: usize,
}

impl ModelShape {
    pub fn conv1(&self) -> ConvShape {
        ConvShape { batch: self.batch, in_channels: 1, out_channels: C1, side: self.side }
    }
    pub fn conv2(&self) -> ConvShape {
        ConvShape { batch: self.batch, in_channels: C1, out_channels: C2, side: self.side / 2 }
    }
    pub fn fc1(&self) -> DenseShape {
        DenseShape { batch: self.batch, inputs: C2 * (self.side / 4) * (self.side / 4), outputs: HIDDEN }
    }
    pub fn fc2(&self) -> DenseShape {
        DenseShape { batch: self.batch, inputs: HIDDEN, outputs: self.classes }
    }
    /// (name, weight shape, parameter count) per layer, in parameter-buffer order.
    pub fn blocks(&self) -> Vec<(&'static str, Vec<usize>, usize)> {
        let (c1, c2, f1, f2) = (self.conv1(), self.conv2(), self.fc1(), self.fc2());
        vec![
            ("conv1", vec![c1.out_channels, c1.in_channels, 3, 3], c1.param_len()),
            ("conv2", vec![c2.out_channels, c2.in_channels, 3, 3], c2.param_len()),
            ("fc1", vec![f1.outputs, f1.inputs], f1.param_len()),
            ("fc2", vec![f2.outputs, f2.inputs], f2.param_len()),
        ]
    }
    /// Forward multiply-adds for one image.
    pub fn forward_macs(&self) -> u64 {
        let (c1, c2, f1, f2) = (self.conv1(), self.conv2(), self.fc1(), self.fc2());
        let conv = |c: ConvShape| (c.side * c.side * c.out_channels * c.in_channels * 9) as u64;
        conv(c1) + conv(c2) + f1.weight_len() as u64 + f2.weight_len() as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
    pub activations: u64,
}

/// Word offsets of each layer's block in the flat parameter buffer.
pub struct ParamLayout {
    pub offsets: Vec<usize>,
    pub lens: Vec<usize>,
    pub total: usize,
}

impl ParamLayout {
    pub fn new(shape: &ModelShape, align_words: usize) -> ParamLayout {
        let mut offsets = Vec::new();
        let mut lens = Vec::new();
        let mut at = 0;
        for (_, _, len) in shape.blocks() {
            offsets.push(at);
            lens.push(len);
            at = (at + len).div_ceil(align_words) * align_words;
        }
        ParamLayout { offsets, lens, total: at }
    }
}

/// PyTorch's default init for Conv2d and Linear: weights and biases uniform in
/// +-1/sqrt(fan_in) (Kaiming-uniform with a = sqrt(5) reduces to that bound).
pub fn init_params(shape: &ModelShape, layout: &ParamLayout, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![0f32; layout.total];
    for ((_, dims, len), &offset) in shape.blocks().iter().zip(&layout.offsets) {
        let fan_in: usize = dims[1..].iter().product();
        let bound = 1.0 / (fan_in as f64).sqrt();
        for v in &mut out[offset..offset + len] {
            *v = rng.random_range(-bound..bound) as f32;
        }
    }
    out
}

/// The parameter blocks' alignment in words on this adapter. The optimiser works on
/// vec4s, so blocks are at least 4 words apart.
pub fn param_align_words(gpu: &Gpu) -> usize {
    (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(4)
}

/// Words of the weight-gradient partials both conv layers share.
fn wgrad_partial_len(shape: &ModelShape, k: &Kernels, loop_budget: u64) -> Result<usize> {
    let (c1, c2) = (shape.conv1(), shape.conv2());
    let p1 = c1.partial_len(&c1.wgrad_plan(c1.fuses_unpool(false, k), loop_budget)?);
    let p2 = c2.partial_len(&c2.wgrad_plan(c2.fuses_unpool(true, k), loop_budget)?);
    Ok(p1.max(p2))
}

/// Words of each buffer whose size follows the batch, as Model::new allocates them; the
/// backward pass's only when `training`.
fn batch_buffers(
    shape: &ModelShape,
    k: &Kernels,
    loop_budget: u64,
    training: bool,
) -> Result<Vec<(&'static str, usize)>> {
    let (c1, c2, f1, f2) = (shape.conv1(), shape.conv2(), shape.fc1(), shape.fc2());
    let b = shape.batch;
    let mut buffers = vec![
        ("x", c1.input_len()),
        ("conv1 pooled", c1.pooled_len()),
        ("conv2 pooled", c2.pooled_len()),
        ("fc1 out", b * f1.outputs),
        ("logits", b * f2.outputs),
    ];
    if training {
        buffers.extend([
            ("d conv2 pre", c2.pre_len()),
            ("d conv1 pre", if c1.fuses_unpool(false, k) { 1 } else { c1.pre_len() }),
            ("conv wgrad partials", wgrad_partial_len(shape, k, loop_budget)?),
        ]);
    }
    Ok(buffers)
}

/// Refuses a batch whose buffers would not fit the adapter's binding limit, naming the
/// limit and the largest batch that does fit, before anything is allocated. Evaluation
/// (`training` false) checks only the buffers it allocates.
pub fn check_batch_fits(gpu: &Gpu, k: &Kernels, shape: &ModelShape, training: bool) -> Result<()> {
    let binding = gpu.limits.max_storage_buffer_binding_size;
    let (limit, limit_name) = if gpu.limits.max_buffer_size < binding {
        (gpu.limits.max_buffer_size, "max_buffer_size")
    } else {
        (binding, "max_storage_buffer_binding_size")
    };
    let too_big = |batch: usize| -> Result<Option<(&'static str, usize)>> {
        Ok(batch_buffers(&ModelShape { batch, ..*shape }, k, gpu.loop_budget, training)?
            .into_iter()
            .find(|&(_, words)| words as u64 * 4 > limit))
    };
    let Some((name, words)) = too_big(shape.batch)? else {
        return Ok(());
    };
    // Buffer sizes grow with the batch, so bisect for the largest batch that fits.
    let (mut fits, mut fails) = (0, shape.batch);
    while fails - fits > 1 {
        let mid = (fits + fails) / 2;
        if too_big(mid)?.is_none() { fits = mid } else { fails = mid }
    }
    let advice = if fits == 0 {
        "no batch fits this image size".to_string()
    } else {
        format!("the largest batch that fits is {fits}; pass --batch-size {fits} or less")
    };
    Err(format!(
        "batch size {} needs {} bytes for buffer '{name}', over this adapter's {limit_name} of {limit} bytes; {advice}",
        shape.batch,
        words as u64 * 4
    ))
}

pub struct Model {
    pub shape: ModelShape,
    /// (B, classes) scores of the last forward pass.
    pub logits: wgpu::Buffer,
    pub layout: ParamLayout,
    pub params: wgpu::Buffer,
    pub grads: wgpu::Buffer,
    /// None for an evaluation-only model.
    pub optimizer: Option<Optimizer>,
    pub train_metrics: wgpu::Buffer,
    pub test_metrics: wgpu::Buffer,
    /// Everything one training step launches, in order.
    pub train_step: Vec<Dispatch>,
    /// Everything one evaluation step launches, in order.
    pub eval_step: Vec<Dispatch>,
    _owned: Vec<wgpu::Buffer>,
    _layers: (Vec<wgpu::Buffer>, Vec<wgpu::Buffer>, Vec<wgpu::Buffer>, Vec<wgpu::Buffer>),
}

impl Model {
    /// The model and its steps. With `training` false only the evaluation step is built:
    /// no backward buffers, gradients or optimiser state are allocated (their placeholders
    /// hold one word) and `train_step` is empty.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        shape: ModelShape,
        optim: &OptimizerConfig,
        seed: u64,
        train: &ResidentSplit,
        test: &ResidentSplit,
        slots: &StepSlots,
        training: bool,
    ) -> Result<Model> {
        check_batch_fits(gpu, k, &shape, training)?;
        let layout = ParamLayout::new(&shape, param_align_words(gpu));
        let params = gpu.storage_init("params", &init_params(&shape, &layout, seed))?;
        // Backward-only buffers: full size when training, a placeholder word otherwise.
        let backward_len = |len: usize| if training { len } else { 1 };
        let grads = gpu.storage("grads", backward_len(layout.total))?;
        let (c1, c2, f1, f2) = (shape.conv1(), shape.conv2(), shape.fc1(), shape.fc2());
        let b = shape.batch;
        let x = gpu.storage("x", c1.input_len())?;
        let labels = gpu.storage("labels", b)?;
        let a1 = gpu.storage("conv1 pooled", c1.pooled_len())?;
        let code1 = gpu.storage("conv1 pool code", c1.code_len())?;
        let a2 = gpu.storage("conv2 pooled", c2.pooled_len())?;
        let code2 = gpu.storage("conv2 pool code", c2.code_len())?;
        let h1 = gpu.storage("fc1 out", b * f1.outputs)?;
        let logits = gpu.storage("logits", b * f2.outputs)?;
        let d_logits = gpu.storage("d logits", b * f2.outputs)?;
        let d_h1 = gpu.storage("d fc1 out", backward_len(b * f1.outputs))?;
        let d_a2 = gpu.storage("d conv2 pooled", backward_len(c2.pooled_len()))?;
        let d_pre2 = gpu.storage("d conv2 pre", backward_len(c2.pre_len()))?;
        let d_a1 = gpu.storage("d conv1 pooled", backward_len(c1.pooled_len()))?;
        // The first layer's weight gradient reads d_pooled directly when it can.
        let d_pre1 = gpu
            .storage("d conv1 pre", backward_len(if c1.fuses_unpool(false, k) { 1 } else { c1.pre_len() }))?;
        let partial_len = if training { wgrad_partial_len(&shape, k, gpu.loop_budget)? } else { 1 };
        let partial = gpu.storage("conv wgrad partials", partial_len)?;
        // (loss, correct) per sample, at its place in the epoch's order
        let train_metrics = gpu.storage("train metrics", backward_len(2 * train.count))?;
        let test_metrics = gpu.storage("test metrics", 2 * test.count)?;

        let conv1 = Conv3x3ReluPool::new(
            gpu,
            k,
            c1,
            &ConvBuffers {
                x: &x,
                params: &params,
                grads: &grads,
                offset: layout.offsets[0],
                pooled: &a1,
                code: &code1,
                d_pooled: &d_a1,
                d_pre: &d_pre1,
                partial: &partial,
                dx: None,
            },
            training,
        )?;
        let conv2 = Conv3x3ReluPool::new(
            gpu,
            k,
            c2,
            &ConvBuffers {
                x: &a1,
                params: &params,
                grads: &grads,
                offset: layout.offsets[1],
                pooled: &a2,
                code: &code2,
                d_pooled: &d_a2,
                d_pre: &d_pre2,
                partial: &partial,
                dx: Some(&d_a1),
            },
            training,
        )?;
        let fc1 = Dense::new(
            gpu,
            k,
            f1,
            true,
            &DenseBuffers {
                x: &a2,
                params: &params,
                grads: &grads,
                offset: layout.offsets[2],
                y: &h1,
                dy: &d_h1,
                dx: Some(&d_a2),
                dx_relu_mask: None,
            },
            training,
        )?;
        let fc2 = Dense::new(
            gpu,
            k,
            f2,
            false,
            &DenseBuffers {
                x: &h1,
                params: &params,
                grads: &grads,
                offset: layout.offsets[3],
                y: &logits,
                dy: &d_logits,
                dx: Some(&d_h1),
                dx_relu_mask: Some(&h1),
            },
            training,
        )?;
        let optimizer = if training {
            Some(Optimizer::new(gpu, k, optim, &params, &grads, layout.total, slots)?)
        } else {
            None
        };
        let mut owned = Vec::new();
        let (gather_test, u) = gather(gpu, k, test, b, &x, &labels, slots)?;
        owned.push(u);
        let (loss_test, u) =
            softmax_xent(gpu, k, b, f2.outputs, &logits, &labels, &d_logits, &test_metrics, slots)?;
        owned.push(u);

        let label = |ds: &[Dispatch], layer: &str| -> Vec<Dispatch> {
            ds.iter()
                .cloned()
                .map(|mut d| {
                    d.layer = layer.to_string();
                    d
                })
                .collect()
        };
        let mut forward = Vec::new();
        for (layer, name) in [
            (&conv1.forward, "conv1"),
            (&conv2.forward, "conv2"),
            (&fc1.forward, "fc1"),
            (&fc2.forward, "fc2"),
        ] {
            forward.extend(label(layer, &format!("{name} forward")));
        }
        let mut train_step = Vec::new();
        if let Some(optimizer) = &optimizer {
            let (gather_train, u) = gather(gpu, k, train, b, &x, &labels, slots)?;
            owned.push(u);
            let (loss_train, u) =
                softmax_xent(gpu, k, b, f2.outputs, &logits, &labels, &d_logits, &train_metrics, slots)?;
            owned.push(u);
            train_step.extend(label(&[gather_train], "input"));
            train_step.extend(forward.iter().cloned());
            train_step.extend(label(&[loss_train], "loss"));
            for (layer, name) in [
                (&fc2.backward, "fc2"),
                (&fc1.backward, "fc1"),
                (&conv2.backward, "conv2"),
                (&conv1.backward, "conv1"),
            ] {
                train_step.extend(label(layer, &format!("{name} backward")));
            }
            train_step.extend(label(std::slice::from_ref(&optimizer.update), "optimizer"));
        }
        let mut eval_step = label(&[gather_test], "input");
        eval_step.extend(forward);
        eval_step.extend(label(&[loss_test], "loss"));
        // Nothing runs until every dispatch's loops are known to fit the adapter.
        crate::loop_budget::check(gpu, &train_step)?;
        crate::loop_budget::check(gpu, &eval_step)?;

        owned.extend([
            x,
            labels,
            a1,
            code1,
            a2,
            code2,
            h1,
            logits.clone(),
            d_logits,
            d_h1,
            d_a2,
            d_pre2,
            d_a1,
            d_pre1,
            partial,
        ]);
        Ok(Model {
            logits,
            shape,
            layout,
            params,
            grads,
            optimizer,
            train_metrics,
            test_metrics,
            train_step,
            eval_step,
            _owned: owned,
            _layers: (conv1.uniforms, conv2.uniforms, fc1.uniforms, fc2.uniforms),
        })
    }

    /// Records one training step (gather, forward, loss, backward, update) or, with
    /// `train` false, one evaluation step (gather, forward, loss), using step slot `slot`.
    pub fn record_step(&self, pass: &mut wgpu::ComputePass, train: bool, slot: usize) {
        for d in if train { &self.train_step } else { &self.eval_step } {
            d.record(pass, slot);
        }
    }

    /// The current parameters, read back from the GPU.
    pub fn read_params(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        gpu.read_f32(&self.params)
    }

    /// GPU bytes by category: (weights, gradients, optimiser state, activations and scratch).
    pub fn memory(&self) -> MemoryUse {
        let layers = [&self._layers.0, &self._layers.1, &self._layers.2, &self._layers.3];
        let scratch: u64 = layers.iter().flat_map(|l| l.iter()).map(|b| b.size()).sum();
        MemoryUse {
            weights: self.params.size(),
            gradients: self.grads.size(),
            optimizer: self.optimizer.as_ref().map_or(0, |o| o.m.size() + o.v.size()),
            activations: self._owned.iter().map(|b| b.size()).sum::<u64>()
                + scratch
                + self.train_metrics.size()
                + self.test_metrics.size(),
        }
    }
}
