//! A network built from a model's layer list: the fusion pass, the flat parameter layout
//! with PyTorch names, one activation (and, when training, one gradient) buffer per value,
//! and the forward (train and eval) and backward dispatches of every layer.
//!
//! Values: value 0 is the input batch x (B, C, S, S); value i + 1 is node i's output.
//! Parameters: one block per layer with parameters (weights then bias, or batch norm's
//! gamma then beta), each block starting on the adapter's storage offset alignment; the
//! gradients and the optimiser's state share that layout. Batch norm's running statistics
//! are each layer's own buffer (4 x C: batch mean, 1/std, running mean, running variance).

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots};
use crate::layers::batchnorm::{BatchNorm, BnBuffers, BnShape};
use crate::layers::conv::{Conv3x3ReluPool, ConvBuffers, ConvMode, ConvShape, OUT_TILE};
use crate::layers::conv_generic::{ConvGeneric, ConvGenericBuffers, ConvGenericShape};
use crate::layers::dense::{Dense, DenseBuffers, DenseShape};
use crate::layers::dropout::Dropout;
use crate::layers::gap::{GapShape, GlobalAvgPool};
use crate::layers::maxpool::{MaxPool, PoolShape};
use crate::layers::relu::{Relu, relu_mask_in_place};
use crate::model_spec::{LayerSpec, Shape};
use rand::{Rng, SeedableRng};

/// One operation after fusion: a run of one or more tokens of the layer string.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `fast`: the 3x3 tiled kernels (conv.rs); else the generic ones (conv_generic.rs).
    /// `relu_pool`: conv,relu,pool fused into one forward kernel (fast only).
    Conv {
        out_channels: usize,
        kernel: usize,
        bias: bool,
        relu_pool: bool,
        fast: bool,
    },
    /// `relu`: fc,relu fused (the ReLU in the matmul's epilogue).
    Dense {
        outputs: usize,
        relu: bool,
    },
    Relu,
    Pool,
    Gap,
    /// `relu`: bn,relu fused (the ReLU applied as batch norm writes its output).
    BatchNorm {
        relu: bool,
    },
    Dropout {
        p: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: Op,
    /// The tokens it covers, as written ("c32,relu,pool").
    pub text: String,
    /// Index of its first token in the layer list.
    pub first_token: usize,
    pub input: Shape,
    pub output: Shape,
    /// Index of its first token's module in the equivalent PyTorch nn.Sequential.
    pub torch_index: usize,
}

impl Node {
    /// "layer 4 (c64,relu,pool)": how dispatches and errors name it.
    pub fn label(&self) -> String {
        format!("layer {} ({})", self.first_token + 1, self.text)
    }
}

/// The index of each token's module in the nn.Sequential a model string stands for: one
/// module per token, plus nn.Flatten before the first fc that gets an image and after gap
/// (AdaptiveAvgPool2d(1) keeps a 1x1 image).
pub fn torch_indices(layers: &[LayerSpec]) -> Vec<usize> {
    let mut image = true;
    let mut index = 0;
    let mut out = Vec::with_capacity(layers.len());
    for spec in layers {
        if matches!(spec, LayerSpec::Dense { .. }) && image {
            index += 1;
            image = false;
        }
        out.push(index);
        index += 1;
        if matches!(spec, LayerSpec::GlobalAvgPool) {
            index += 1;
            image = false;
        }
    }
    out
}

/// Whether the tiled 3x3 kernels take this convolution: they need output channels in
/// multiples of OUT_TILE, an even side and, to pass gradients back, input channels in
/// multiples of OUT_TILE too.
fn fast_conv(kernel: usize, input: Shape, out_channels: usize, first: bool) -> bool {
    let Shape::Image { channels, side } = input else { return false };
    kernel == 3
        && out_channels.is_multiple_of(OUT_TILE)
        && side.is_multiple_of(2)
        && side > 0
        && (first || channels.is_multiple_of(OUT_TILE))
}

/// Shape inference (model_spec::infer, whose errors name the layer) and the fusion pass:
/// conv,relu,pool, fc,relu and bn,relu become one node wherever they appear in a row.
pub fn plan(layers: &[LayerSpec], channels: usize, side: usize, classes: usize) -> Result<Vec<Node>> {
    let info = crate::model_spec::infer(layers, channels, side, classes)?;
    let torch = torch_indices(layers);
    let mut nodes: Vec<Node> = Vec::new();
    let mut input = Shape::Image { channels, side };
    let mut i = 0;
    while i < layers.len() {
        let next = |d: usize| layers.get(i + d);
        let (op, len) = match &layers[i] {
            LayerSpec::Conv { out_channels, kernel } => {
                let bias = next(1) != Some(&LayerSpec::BatchNorm);
                let fast = fast_conv(*kernel, input, *out_channels, i == 0);
                let relu_pool =
                    fast && bias && next(1) == Some(&LayerSpec::Relu) && next(2) == Some(&LayerSpec::MaxPool);
                let op = Op::Conv { out_channels: *out_channels, kernel: *kernel, bias, relu_pool, fast };
                (op, if relu_pool { 3 } else { 1 })
            }
            LayerSpec::Dense { .. } => {
                let Shape::Flat { features } = info[i].output else {
                    return Err(format!("internal error: layer {} has no flat output", i + 1));
                };
                let relu = next(1) == Some(&LayerSpec::Relu);
                (Op::Dense { outputs: features, relu }, if relu { 2 } else { 1 })
            }
            LayerSpec::Relu => (Op::Relu, 1),
            LayerSpec::MaxPool => (Op::Pool, 1),
            LayerSpec::GlobalAvgPool => (Op::Gap, 1),
            LayerSpec::BatchNorm => {
                let relu = next(1) == Some(&LayerSpec::Relu);
                (Op::BatchNorm { relu }, if relu { 2 } else { 1 })
            }
            LayerSpec::Dropout { p } => (Op::Dropout { p: *p }, 1),
        };
        let text = layers[i..i + len].iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",");
        let output = info[i + len - 1].output;
        nodes.push(Node { op, text, first_token: i, input, output, torch_index: torch[i] });
        input = output;
        i += len;
    }
    Ok(nodes)
}

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in +-bound: PyTorch's default for Conv2d and Linear weights and biases
    /// (Kaiming-uniform with a = sqrt(5) reduces to 1/sqrt(fan_in)).
    Uniform(f64),
    Ones,
    Zeros,
}

/// One named parameter tensor in the flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its name in the PyTorch nn.Sequential's state_dict ("3.weight").
    pub name: String,
    pub dims: Vec<usize>,
    pub offset: usize,
    pub init: Init,
    /// False for tensors that exist in the buffer but not in the model (the zero bias
    /// slots of a conv followed by batch norm).
    pub exported: bool,
    /// Weights of conv and fc: the tensors weight decay applies to.
    pub decays: bool,
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Word offsets of each node's parameter block and its tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamLayout {
    pub tensors: Vec<Tensor>,
    /// (offset, words) per node; (0, 0) for a node without parameters.
    pub blocks: Vec<(usize, usize)>,
    pub total: usize,
}

impl ParamLayout {
    pub fn new(nodes: &[Node], align_words: usize) -> ParamLayout {
        let mut tensors = Vec::new();
        let mut blocks = Vec::new();
        let mut at = 0;
        for node in nodes {
            let start = at;
            let mut add = |suffix: &str, dims: Vec<usize>, init: Init, exported: bool, decays: bool| {
                let len: usize = dims.iter().product();
                let name = format!("{}.{suffix}", node.torch_index);
                tensors.push(Tensor { name, dims, offset: at, init, exported, decays });
                at += len;
            };
            match (&node.op, node.input) {
                (Op::Conv { out_channels, kernel, bias, .. }, Shape::Image { channels, .. }) => {
                    let bound = 1.0 / ((channels * kernel * kernel) as f64).sqrt();
                    add(
                        "weight",
                        vec![*out_channels, channels, *kernel, *kernel],
                        Init::Uniform(bound),
                        true,
                        true,
                    );
                    // the fast kernels read a bias slot either way; a bias-free one stays zero
                    if *bias {
                        add("bias", vec![*out_channels], Init::Uniform(bound), true, false);
                    } else {
                        add("bias", vec![*out_channels], Init::Zeros, false, false);
                    }
                }
                (Op::Dense { outputs, .. }, input) => {
                    let bound = 1.0 / (input.len() as f64).sqrt();
                    add("weight", vec![*outputs, input.len()], Init::Uniform(bound), true, true);
                    add("bias", vec![*outputs], Init::Uniform(bound), true, false);
                }
                (Op::BatchNorm { .. }, input) => {
                    let c = channels_of(input);
                    add("weight", vec![c], Init::Ones, true, false);
                    add("bias", vec![c], Init::Zeros, true, false);
                }
                _ => {}
            }
            blocks.push((start, at - start));
            if at > start {
                at = at.div_ceil(align_words) * align_words;
            }
        }
        ParamLayout { tensors, blocks, total: at }
    }

    /// Initial parameters from `seed`: uniform tensors drawn in layout order from one stream.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = vec![0f32; self.total];
        for t in &self.tensors {
            let slot = &mut out[t.offset..t.offset + t.len()];
            match t.init {
                Init::Uniform(bound) => {
                    slot.iter_mut().for_each(|v| *v = rng.random_range(-bound..bound) as f32)
                }
                Init::Ones => slot.fill(1.0),
                Init::Zeros => slot.fill(0.0),
            }
        }
        out
    }

    /// 1.0 for every word weight decay applies to (tensors with `decays`), else 0.0.
    pub fn decay_mask(&self) -> Vec<f32> {
        let mut mask = vec![0f32; self.total];
        for t in self.tensors.iter().filter(|t| t.decays) {
            mask[t.offset..t.offset + t.len()].fill(1.0);
        }
        mask
    }

    /// Trainable parameters the model has (exported tensors).
    pub fn count(&self) -> usize {
        self.tensors.iter().filter(|t| t.exported).map(|t| t.len()).sum()
    }
}

/// Channels (images) or features (flat) of a value.
pub fn channels_of(shape: Shape) -> usize {
    match shape {
        Shape::Image { channels, .. } => channels,
        Shape::Flat { features } => features,
    }
}

/// Values per channel per sample: H * W, or 1 for features.
fn plane_of(shape: Shape) -> usize {
    match shape {
        Shape::Image { side, .. } => side * side,
        Shape::Flat { .. } => 1,
    }
}

/// Batch norm's non-trainable state, by PyTorch name: running mean and variance live in
/// the layer's statistics buffer at `offset`; num_batches_tracked is the step count.
pub struct StateTensor {
    pub name: String,
    pub node: usize,
    pub offset: usize,
    pub len: usize,
}

/// The words of each buffer whose size follows the batch, named as errors name them: every
/// value, and when training every value's gradient and the layers' scratch.
pub fn batch_buffers(
    nodes: &[Node],
    batch: usize,
    k: &Kernels,
    loop_budget: u64,
    training: bool,
) -> Result<Vec<(String, usize)>> {
    let input = nodes.first().map_or(0, |n| n.input.len());
    let mut out = vec![("input batch".to_string(), batch * input)];
    for (i, node) in nodes.iter().enumerate() {
        let name = node.label();
        out.push((format!("{name} output"), batch * node.output.len()));
        if !training {
            continue;
        }
        out.push((format!("{name} output gradient"), batch * node.output.len()));
        if let Op::Conv { out_channels, fast: true, relu_pool, .. } = node.op {
            let shape = conv_shape(node, batch, out_channels);
            let unpool = relu_pool && shape.fuses_unpool(i > 0, k);
            if relu_pool && !unpool {
                out.push((format!("{name} gradient before the pool"), shape.pre_len()));
            }
            let plan = shape.wgrad_plan(unpool, loop_budget)?;
            out.push((format!("{name} weight-gradient partials"), shape.partial_len(&plan)));
        }
        if let (Op::Conv { out_channels, kernel, bias, fast: false, .. }, Shape::Image { channels, side }) =
            (&node.op, node.input)
        {
            let shape = ConvGenericShape {
                batch,
                in_channels: channels,
                out_channels: *out_channels,
                side,
                kernel: *kernel,
                bias: *bias,
            };
            let plan = shape.wgrad_plan(loop_budget, crate::layers::conv_generic::WGRAD_FILL_THREADS)?;
            out.push((format!("{name} weight-gradient partials"), plan.chunks * shape.param_len()));
        }
    }
    Ok(out)
}

fn conv_shape(node: &Node, batch: usize, out_channels: usize) -> ConvShape {
    let (in_channels, side) = match node.input {
        Shape::Image { channels, side } => (channels, side),
        Shape::Flat { features } => (features, 1),
    };
    ConvShape { batch, in_channels, out_channels, side }
}

pub struct Network {
    pub nodes: Vec<Node>,
    pub batch: usize,
    pub layout: ParamLayout,
    pub params: wgpu::Buffer,
    /// One word when the network only evaluates.
    pub grads: wgpu::Buffer,
    /// Value 0: the input batch (B, C, S, S), which the input pipeline fills.
    pub input: wgpu::Buffer,
    /// The last value: (B, classes) scores.
    pub logits: wgpu::Buffer,
    /// Its gradient, which the loss writes (one word when evaluating).
    pub d_logits: wgpu::Buffer,
    pub train_forward: Vec<Dispatch>,
    pub eval_forward: Vec<Dispatch>,
    /// Empty when the network only evaluates.
    pub backward: Vec<Dispatch>,
    /// Batch norm's running statistics, by PyTorch name.
    pub state: Vec<StateTensor>,
    /// Per node: its statistics buffer (batch norm) or None.
    pub stats: Vec<Option<wgpu::Buffer>>,
    values: Vec<wgpu::Buffer>,
    value_grads: Vec<wgpu::Buffer>,
    scratch: Vec<wgpu::Buffer>,
}

/// What one node's build returns.
#[derive(Default)]
struct Built {
    train_forward: Vec<Dispatch>,
    eval_forward: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    owned: Vec<wgpu::Buffer>,
}

impl Built {
    /// The same forward dispatches in training and evaluation.
    fn same(forward: Vec<Dispatch>, backward: Vec<Dispatch>, owned: Vec<wgpu::Buffer>) -> Built {
        Built { train_forward: forward.clone(), eval_forward: forward, backward, owned }
    }
}

impl Network {
    /// Builds `nodes` for batches of `batch`; with `training` false, no gradients and no
    /// backward dispatches. `seed` draws the initial parameters and the dropout masks.
    /// With `weights`, a network of the same nodes (at another batch), this one reads that
    /// one's parameters and batch norm statistics instead of owning its own: an evaluation
    /// network then always sees what training has made so far.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        nodes: Vec<Node>,
        batch: usize,
        seed: u64,
        slots: &StepSlots,
        training: bool,
        weights: Option<&Network>,
    ) -> Result<Network> {
        let Some(first) = nodes.first() else {
            return Err("a model needs at least one layer".into());
        };
        let layout = ParamLayout::new(&nodes, crate::model::param_align_words(gpu));
        crate::model::check_params_fit(gpu, &layout)?;
        let params = match weights {
            Some(w) if w.nodes == nodes => w.params.clone(),
            Some(_) => return Err("internal error: shared weights of another model".into()),
            None => gpu.storage_init("params", &layout.init(seed))?,
        };
        let grads = gpu.storage("grads", if training { layout.total } else { 1 })?;
        let mut values = vec![gpu.storage("input batch", batch * first.input.len())?];
        let mut value_grads = vec![gpu.storage("input gradient (unused)", 1)?];
        for (i, node) in nodes.iter().enumerate() {
            let len = batch * node.output.len();
            values.push(gpu.storage(&format!("{} output", node.label()), len)?);
            // the loss writes the logits' gradient even when evaluating
            let grad_len = if training || i + 1 == nodes.len() { len } else { 1 };
            value_grads.push(gpu.storage(&format!("{} output gradient", node.label()), grad_len)?);
        }
        // The fast convolutions' weight-gradient partials share one buffer, sized for the largest.
        let mut partial_len = 1;
        if training {
            for (i, node) in nodes.iter().enumerate() {
                if let Op::Conv { out_channels, fast: true, relu_pool, .. } = node.op {
                    let shape = conv_shape(node, batch, out_channels);
                    let plan =
                        shape.wgrad_plan(relu_pool && shape.fuses_unpool(i > 0, k), gpu.loop_budget)?;
                    partial_len = partial_len.max(shape.partial_len(&plan));
                }
            }
        }
        let partial = gpu.storage("conv weight-gradient partials", partial_len)?;

        let mut net = Network {
            batch,
            params,
            grads,
            input: values[0].clone(),
            logits: values[nodes.len()].clone(),
            d_logits: value_grads[nodes.len()].clone(),
            train_forward: Vec::new(),
            eval_forward: Vec::new(),
            backward: Vec::new(),
            state: Vec::new(),
            stats: Vec::new(),
            values,
            value_grads,
            scratch: vec![partial],
            layout,
            nodes: Vec::new(),
        };
        let mut backward_per_node = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let shared_stats = weights.and_then(|w| w.stats.get(i).cloned().flatten());
            let built = net.build_node(gpu, k, &nodes, i, seed, slots, training, shared_stats)?;
            let label = |ds: Vec<Dispatch>, pass: &str| -> Vec<Dispatch> {
                ds.into_iter()
                    .map(|mut d| {
                        d.layer = format!("{} {pass}", node.label());
                        d
                    })
                    .collect()
            };
            net.train_forward.extend(label(built.train_forward, "forward"));
            net.eval_forward.extend(label(built.eval_forward, "forward"));
            backward_per_node.push(label(built.backward, "backward"));
            net.scratch.extend(built.owned);
        }
        for b in backward_per_node.into_iter().rev() {
            net.backward.extend(b);
        }
        net.nodes = nodes;
        Ok(net)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_node(
        &mut self,
        gpu: &Gpu,
        k: &Kernels,
        nodes: &[Node],
        i: usize,
        seed: u64,
        slots: &StepSlots,
        training: bool,
        shared_stats: Option<wgpu::Buffer>,
    ) -> Result<Built> {
        let node = &nodes[i];
        let batch = self.batch;
        let (x, y) = (&self.values[i], &self.values[i + 1]);
        let dy = &self.value_grads[i + 1];
        // No gradient flows into the input batch.
        let dx = (i > 0 && training).then(|| &self.value_grads[i]);
        let grads = (training).then_some((dy, dx));
        let (offset, _) = self.layout.blocks[i];
        let n = batch * node.output.len();
        Ok(match node.op {
            Op::Conv { out_channels, kernel, bias, relu_pool, fast } => {
                let Shape::Image { channels, side } = node.input else {
                    return Err(format!("internal error: {} has no image input", node.label()));
                };
                if fast {
                    let shape = ConvShape { batch, in_channels: channels, out_channels, side };
                    let unpool = relu_pool && shape.fuses_unpool(dx.is_some(), k);
                    let code_len = if relu_pool { shape.code_len() } else { 1 };
                    let code = gpu.storage(&format!("{} pool codes", node.label()), code_len)?;
                    let d_pre = match (relu_pool, training && !unpool) {
                        (true, true) => gpu.storage(
                            &format!("{} gradient before the pool", node.label()),
                            shape.pre_len(),
                        )?,
                        _ => gpu.storage("unused", 1)?,
                    };
                    let conv = Conv3x3ReluPool::with_mode(
                        gpu,
                        k,
                        shape,
                        ConvMode { relu_pool, bias },
                        &ConvBuffers {
                            x,
                            params: &self.params,
                            grads: &self.grads,
                            offset,
                            pooled: y,
                            code: &code,
                            d_pooled: dy,
                            d_pre: if relu_pool { &d_pre } else { dy },
                            partial: &self.scratch[0],
                            dx,
                        },
                        training,
                    )?;
                    let mut owned = conv.uniforms;
                    owned.extend([code, d_pre]);
                    Built::same(conv.forward, conv.backward, owned)
                } else {
                    let shape =
                        ConvGenericShape { batch, in_channels: channels, out_channels, side, kernel, bias };
                    let conv = ConvGeneric::new(
                        gpu,
                        k,
                        shape,
                        &ConvGenericBuffers {
                            x,
                            y,
                            params: &self.params,
                            grads: &self.grads,
                            offset,
                            dy,
                            dx,
                        },
                        training,
                    )?;
                    Built::same(conv.forward, conv.backward, conv.owned)
                }
            }
            Op::Dense { outputs, relu } => {
                let shape = DenseShape { batch, inputs: node.input.len(), outputs };
                // A ReLU fused into the previous dense layer is masked here when its
                // gradient comes out of this layer's dx...
                let prev_relu = i > 0 && matches!(nodes[i - 1].op, Op::Dense { relu: true, .. });
                let dense = Dense::new(
                    gpu,
                    k,
                    shape,
                    relu,
                    &DenseBuffers {
                        x,
                        params: &self.params,
                        grads: &self.grads,
                        offset,
                        y,
                        dy,
                        dx,
                        dx_relu_mask: prev_relu.then_some(x),
                    },
                    training,
                )?;
                let mut backward = Vec::new();
                let mut owned = dense.uniforms;
                // ...and by a pass of its own otherwise.
                let next_is_dense = matches!(nodes.get(i + 1).map(|n| &n.op), Some(Op::Dense { .. }));
                if relu && training && !next_is_dense {
                    let (mask, u) = relu_mask_in_place(gpu, k, n, y, dy)?;
                    backward.push(mask);
                    owned.push(u);
                }
                backward.extend(dense.backward);
                Built::same(dense.forward, backward, owned)
            }
            Op::Relu => {
                let relu = Relu::new(gpu, k, n, x, y, grads.and_then(|(dy, dx)| dx.map(|dx| (dy, dx))))?;
                Built::same(relu.forward, relu.backward, vec![relu.uniform])
            }
            Op::Pool => {
                let Shape::Image { channels, side } = node.input else {
                    return Err(format!("internal error: {} has no image input", node.label()));
                };
                let shape = PoolShape { batch, channels, side };
                let pool =
                    MaxPool::new(gpu, k, shape, x, y, grads.and_then(|(dy, dx)| dx.map(|dx| (dy, dx))))?;
                Built::same(pool.forward, pool.backward, pool.owned)
            }
            Op::Gap => {
                let Shape::Image { channels, side } = node.input else {
                    return Err(format!("internal error: {} has no image input", node.label()));
                };
                let shape = GapShape { batch, channels, side };
                let gap = GlobalAvgPool::new(
                    gpu,
                    k,
                    shape,
                    x,
                    y,
                    grads.and_then(|(dy, dx)| dx.map(|dx| (dy, dx))),
                )?;
                Built::same(gap.forward, gap.backward, vec![gap.uniform])
            }
            Op::BatchNorm { relu } => {
                let shape = BnShape { batch, channels: channels_of(node.input), plane: plane_of(node.input) };
                let stats = match shared_stats {
                    Some(stats) => stats,
                    None => {
                        gpu.storage_init(&format!("{} statistics", node.label()), &shape.initial_stats())?
                    }
                };
                let bn = BatchNorm::new(
                    gpu,
                    k,
                    shape,
                    relu,
                    &BnBuffers {
                        x,
                        y,
                        params: &self.params,
                        grads: &self.grads,
                        offset,
                        stats: &stats,
                        dy,
                        dx,
                    },
                    training,
                    slots,
                )?;
                let c = shape.channels;
                for (suffix, at) in [("running_mean", 2 * c), ("running_var", 3 * c)] {
                    let name = format!("{}.{suffix}", node.torch_index);
                    self.state.push(StateTensor { name, node: i, offset: at, len: c });
                }
                self.stats.resize(i, None);
                self.stats.push(Some(stats));
                Built {
                    train_forward: bn.train_forward,
                    eval_forward: bn.eval_forward,
                    backward: bn.backward,
                    owned: bn.owned,
                }
            }
            Op::Dropout { p } => {
                // each dropout layer draws its own masks
                let layer_seed =
                    crate::layers::dropout::mix(seed as u32 ^ (i as u32).wrapping_mul(0x9e37_79b9));
                let drop = Dropout::new(
                    gpu,
                    k,
                    n,
                    p,
                    layer_seed,
                    x,
                    y,
                    grads.and_then(|(dy, dx)| dx.map(|dx| (dy, dx))),
                    slots,
                )?;
                // Off in evaluation: p = 0 keeps every value and scales by 1, a plain copy.
                let identity = Dropout::new(gpu, k, n, 0.0, 0, x, y, None, slots)?;
                let owned = [drop.owned, identity.owned].concat();
                Built {
                    train_forward: drop.forward,
                    eval_forward: identity.forward,
                    backward: drop.backward,
                    owned,
                }
            }
        })
    }

    /// GPU bytes of the values, their gradients and the layers' scratch.
    pub fn activation_bytes(&self) -> u64 {
        let stats: u64 = self.stats.iter().flatten().map(|b| b.size()).sum();
        self.values.iter().chain(&self.value_grads).chain(&self.scratch).map(|b| b.size()).sum::<u64>()
            + stats
    }

    /// Batch norm's running statistics, by PyTorch name, read back from the GPU.
    pub fn read_state(&self, gpu: &Gpu) -> Result<Vec<(String, Vec<f32>)>> {
        let mut out = Vec::new();
        for s in &self.state {
            let buffer = self.stats[s.node].as_ref().ok_or("internal error: no statistics buffer")?;
            out.push((s.name.clone(), gpu.read_words(buffer, s.offset, s.len)?));
        }
        Ok(out)
    }

    /// Writes running statistics by name (from a checkpoint).
    pub fn write_state(&self, gpu: &Gpu, tensors: &[(String, Vec<f32>)]) -> Result<()> {
        for (name, data) in tensors {
            let s = self
                .state
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| format!("checkpoint: this model has no state tensor '{name}'"))?;
            if data.len() != s.len {
                return Err(format!(
                    "checkpoint: '{name}' has {} values, the model needs {}",
                    data.len(),
                    s.len
                ));
            }
            let buffer = self.stats[s.node].as_ref().ok_or("internal error: no statistics buffer")?;
            gpu.queue.write_buffer(buffer, (s.offset * 4) as u64, bytemuck::cast_slice(data));
        }
        Ok(())
    }
}
