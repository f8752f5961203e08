//! A model ready to train or evaluate: the network (network.rs) plus what is not the
//! network — the input gather from the resident data, the loss, the optimiser and the
//! per-sample metrics — assembled into the two step programs.
//!
//! Train step: gather, the network's training forward, softmax cross-entropy (writes the
//! logits' gradient and each sample's metrics), the network's backward, the optimiser.
//! Eval step: gather, the evaluation forward (batch norm's running statistics, no
//! dropout), the loss for the metrics.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots};
use crate::layers::input::{ResidentSplit, gather};
use crate::layers::loss::softmax_xent;
use crate::layers::optim::{Optimizer, OptimizerConfig};
use crate::model_spec::ModelDef;
use crate::network::{Network, Node, batch_buffers, plan};

/// The data a model is built for, and the batch.
#[derive(Debug, Clone, Copy)]
pub struct ModelShape {
    pub side: usize,
    pub classes: usize,
    pub batch: usize,
}

impl ModelShape {
    /// The model's nodes for single-channel images of this shape.
    pub fn plan(&self, def: &ModelDef) -> Result<Vec<Node>> {
        plan(&def.layers, 1, self.side, self.classes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
    pub activations: u64,
}

/// The parameter blocks' alignment in words on this adapter. The optimiser works on
/// vec4s, so blocks are at least 4 words apart.
pub fn param_align_words(gpu: &Gpu) -> usize {
    (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(4)
}

/// Refuses parameters that would not fit one buffer, before the host builds them.
pub fn check_params_fit(gpu: &Gpu, layout: &crate::network::ParamLayout) -> Result<()> {
    let limit = gpu.storage_limit();
    let bytes = layout.total as u64 * 4;
    if bytes > limit {
        return Err(format!(
            "the model's {} parameters need {bytes} bytes in one buffer, over this adapter's limit of {limit} bytes (max_storage_buffer_binding_size, max_buffer_size); use fewer or narrower layers",
            layout.count()
        ));
    }
    Ok(())
}

/// Refuses a batch whose buffers would not fit the adapter's binding limit, naming the
/// limit and the largest batch that does fit, before anything is allocated. Evaluation
/// (`training` false) checks only the buffers it allocates.
pub fn check_batch_fits(gpu: &Gpu, k: &Kernels, nodes: &[Node], batch: usize, training: bool) -> Result<()> {
    let binding = gpu.limits.max_storage_buffer_binding_size;
    let (limit, limit_name) = if gpu.limits.max_buffer_size < binding {
        (gpu.limits.max_buffer_size, "max_buffer_size")
    } else {
        (binding, "max_storage_buffer_binding_size")
    };
    let too_big = |batch: usize| -> Result<Option<(String, usize)>> {
        Ok(batch_buffers(nodes, batch, k, gpu.loop_budget, training)?
            .into_iter()
            .find(|(_, words)| *words as u64 * 4 > limit))
    };
    let Some((name, words)) = too_big(batch)? else {
        return Ok(());
    };
    // Buffer sizes grow with the batch, so bisect for the largest batch that fits.
    let (mut fits, mut fails) = (0, batch);
    while fails - fits > 1 {
        let mid = (fits + fails) / 2;
        if too_big(mid)?.is_none() { fits = mid } else { fails = mid }
    }
    if fits == 0 {
        // Not even one image fits: name what blocks a batch of one, which is what to shrink.
        let (name, words) = too_big(1)?.unwrap_or((name, words));
        return Err(format!(
            "even a batch of 1 needs {} bytes for buffer '{name}', over this adapter's {limit_name} of {limit} bytes: the model is too large for this adapter; use fewer channels or features",
            words as u64 * 4
        ));
    }
    Err(format!(
        "batch size {batch} needs {} bytes for buffer '{name}', over this adapter's {limit_name} of {limit} bytes; the largest batch that fits is {fits}; pass --batch-size {fits} or less",
        words as u64 * 4
    ))
}

/// The most images one step of a training run's evaluation takes.
pub const EVAL_BATCH_MAX: usize = 1024;
/// The GPU bytes that the evaluation network's activations may take together.
pub const EVAL_MEMORY_BUDGET: u64 = 256 << 20;

/// The batch a training run evaluates at, with a forward-only network of its own: the
/// largest batch up to EVAL_BATCH_MAX (and the `test_count` images there are) whose
/// activations (the input batch and every layer's output) each fit `limit_bytes` and
/// together fit `budget_bytes`. None when that is no more than the training batch, which
/// then evaluates itself.
pub fn eval_batch_for(
    nodes: &[Node],
    train_batch: usize,
    test_count: usize,
    (limit_bytes, budget_bytes): (u64, u64),
    k: &Kernels,
    loop_budget: u64,
) -> Result<Option<usize>> {
    let fits = |batch: usize| -> Result<bool> {
        let buffers = batch_buffers(nodes, batch, k, loop_budget, false)?;
        let bytes = |words: usize| words as u64 * 4;
        let total: u64 = buffers.iter().map(|(_, words)| bytes(*words)).sum();
        Ok(total <= budget_bytes && buffers.iter().all(|(_, words)| bytes(*words) <= limit_bytes))
    };
    let cap = EVAL_BATCH_MAX.min(test_count);
    if cap <= train_batch {
        return Ok(None);
    }
    if fits(cap)? {
        return Ok(Some(cap));
    }
    // Every buffer grows with the batch, so bisect: `ok` fits (or is the training batch,
    // which need not be checked here), `too_big` does not.
    let (mut ok, mut too_big) = (train_batch, cap);
    while too_big - ok > 1 {
        let mid = ok + (too_big - ok) / 2;
        if fits(mid)? { ok = mid } else { too_big = mid }
    }
    Ok((ok > train_batch).then_some(ok))
}

/// `eval_batch_for` with this adapter's storage limit and loop budget and the evaluation
/// memory budget.
pub fn eval_batch_on(
    gpu: &Gpu,
    k: &Kernels,
    nodes: &[Node],
    train_batch: usize,
    test_count: usize,
) -> Result<Option<usize>> {
    eval_batch_for(
        nodes,
        train_batch,
        test_count,
        (gpu.storage_limit(), EVAL_MEMORY_BUDGET),
        k,
        gpu.loop_budget,
    )
}

pub struct Model {
    pub shape: ModelShape,
    pub def: ModelDef,
    pub network: Network,
    /// None for an evaluation-only model.
    pub optimizer: Option<Optimizer>,
    pub train_metrics: wgpu::Buffer,
    pub test_metrics: wgpu::Buffer,
    /// Everything one training step launches, in order.
    pub train_step: Vec<Dispatch>,
    /// Everything one evaluation step launches, in order.
    pub eval_step: Vec<Dispatch>,
    owned: Vec<wgpu::Buffer>,
}

impl Model {
    /// The model and its steps. With `training` false only the evaluation step is built:
    /// no backward buffers, gradients or optimiser state are allocated and `train_step` is
    /// empty. Nothing is allocated before the batch is known to fit the adapter.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        def: &ModelDef,
        shape: ModelShape,
        optim: &OptimizerConfig,
        seed: u64,
        train: &ResidentSplit,
        test: &ResidentSplit,
        slots: &StepSlots,
        training: bool,
        label_smoothing: f64,
        augment: crate::augment::Augment,
        normalize: crate::normalize::Normalize,
        weights: Option<&Network>,
    ) -> Result<Model> {
        let nodes = shape.plan(def)?;
        if training && shape.batch == 1 {
            // One value per feature has no spread to normalise by (PyTorch refuses it too).
            if let Some(n) = nodes.iter().find(|n| {
                matches!(n.op, crate::network::Op::BatchNorm { .. })
                    && matches!(n.input, crate::model_spec::Shape::Flat { .. })
            }) {
                return Err(format!(
                    "{}: batch norm over features needs a batch of at least 2 to train (--batch-size 1 gives each feature one value)",
                    n.label()
                ));
            }
        }
        check_batch_fits(gpu, k, &nodes, shape.batch, training)?;
        let network = Network::new(gpu, k, nodes, shape.batch, seed, slots, training, weights)?;
        let b = shape.batch;
        let labels = gpu.storage("labels", b)?;
        // (loss, correct) per sample, at its place in the epoch's order
        let train_metrics = gpu.storage("train metrics", if training { 2 * train.count } else { 1 })?;
        let test_metrics = gpu.storage("test metrics", 2 * test.count)?;
        let x = &network.input;
        let (logits, d_logits) = (&network.logits, &network.d_logits);
        let mut owned = vec![labels.clone()];
        let label = |d: Dispatch, layer: &str| Dispatch { layer: layer.to_string(), ..d };

        let (gather_test, u) = gather(gpu, k, test, b, x, &labels, slots, None, normalize)?;
        owned.push(u);
        let (loss_test, u) =
            softmax_xent(gpu, k, b, shape.classes, logits, &labels, d_logits, &test_metrics, slots, 0.0)?;
        owned.push(u);
        let mut eval_step = vec![label(gather_test, "input")];
        eval_step.extend(network.eval_forward.iter().cloned());
        eval_step.push(label(loss_test, "loss"));

        let mut train_step = Vec::new();
        let optimizer = if training {
            let optimizer = Optimizer::new(
                gpu,
                k,
                optim,
                &network.params,
                &network.grads,
                network.layout.total,
                slots,
                &network.layout.decay_mask(),
            )?;
            let (gather_train, u) =
                gather(gpu, k, train, b, x, &labels, slots, Some((augment, seed as u32)), normalize)?;
            owned.push(u);
            let (loss_train, u) = softmax_xent(
                gpu,
                k,
                b,
                shape.classes,
                logits,
                &labels,
                d_logits,
                &train_metrics,
                slots,
                label_smoothing,
            )?;
            owned.push(u);
            train_step.push(label(gather_train, "input"));
            train_step.extend(network.train_forward.iter().cloned());
            train_step.push(label(loss_train, "loss"));
            train_step.extend(network.backward.iter().cloned());
            if let Some(clip) = &optimizer.clip {
                train_step.extend(clip.dispatches.iter().map(|d| label(d.clone(), "gradient clipping")));
            }
            train_step.push(label(optimizer.update.clone(), "optimizer"));
            Some(optimizer)
        } else {
            None
        };
        // Nothing runs until every dispatch's loops are known to fit the adapter.
        crate::loop_budget::check(gpu, &train_step)?;
        crate::loop_budget::check(gpu, &eval_step)?;
        Ok(Model {
            shape,
            def: def.clone(),
            network,
            optimizer,
            train_metrics,
            test_metrics,
            train_step,
            eval_step,
            owned,
        })
    }

    /// Records one training step (gather, forward, loss, backward, update) or, with
    /// `train` false, one evaluation step (gather, forward, loss), using step slot `slot`.
    pub fn record_step(&self, pass: &mut wgpu::ComputePass, train: bool, slot: usize) {
        for d in if train { &self.train_step } else { &self.eval_step } {
            d.record(pass, slot);
        }
    }

    /// The current parameters (flat layout), read back from the GPU.
    pub fn read_params(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        gpu.read_f32(&self.network.params)
    }

    /// Forward floating-point operations per image (a multiply-add counts 2).
    pub fn forward_flops(&self) -> u64 {
        crate::model_spec::infer(&self.def.layers, 1, self.shape.side, self.shape.classes)
            .map(|info| info.iter().map(|l| l.flops).sum())
            .unwrap_or(0)
    }

    /// GPU bytes by category: (weights, gradients, optimiser state, activations and scratch).
    pub fn memory(&self) -> MemoryUse {
        MemoryUse {
            weights: self.network.params.size(),
            gradients: self.network.grads.size(),
            optimizer: self.optimizer.as_ref().map_or(0, |o| o.m.size() + o.v.size()),
            activations: self.network.activation_bytes()
                + self.owned.iter().map(|b| b.size()).sum::<u64>()
                + self.train_metrics.size()
                + self.test_metrics.size(),
        }
    }
}
