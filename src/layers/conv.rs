//! Conv 3x3 (pad 1) + bias, forward and backward, NCHW, in two modes: fused with ReLU and
//! 2x2 max-pool (the fusion pass picks it for conv,relu,pool), or plain.
//!
//! Fused forward: x (B, CI, S, S) -> pooled (B, CO, S/2, S/2) and a pool code per pooled
//! value; backward: d_pooled -> d_pre (B, CO, S, S) through the pool/ReLU mask.
//! Plain forward: x -> y (B, CO, S, S) (held in `pooled`); backward reads dy (in `d_pre`).
//! Then weight and bias gradients (per-chunk partials reduced in a fixed order) and,
//! unless this is the first layer, dx (B, CI, S, S).
//! Weights are (CO, CI, 3, 3) followed by the bias (CO), contiguous in one parameter block;
//! a layer without bias keeps zeros there and gives them a zero gradient.

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, whole, words};
use crate::loop_budget::{LoopBound, loop_ticks};

/// Output channels per thread in conv_fwd / conv_dx (OT in conv.wgsl).
pub const OUT_TILE: usize = 16;
/// Output channels per thread in conv_wgrad (OT in conv_wgrad.wgsl).
pub const WGRAD_TILE: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub side: usize,
}

impl ConvShape {
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * 9
    }
    pub fn param_len(&self) -> usize {
        self.weight_len() + self.out_channels
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.side * self.side
    }
    pub fn pre_len(&self) -> usize {
        self.batch * self.out_channels * self.side * self.side
    }
    pub fn pooled_len(&self) -> usize {
        self.pre_len() / 4
    }
    /// Multiply-adds of one pass (forward, dx or weight gradient) over the batch, times 2.
    pub fn flops(&self) -> u64 {
        2 * (self.batch * self.side * self.side * self.out_channels * self.in_channels * 9) as u64
    }
    /// Words of packed pool codes: 4 bits per pooled value.
    pub fn code_len(&self) -> usize {
        self.pooled_len() / 8
    }
    /// How the weight gradient splits the batch's B * side image rows into chunks: enough
    /// chunks to fill the device (each a whole number of images), and more, ending inside
    /// images, where a chunk's loops would pass the adapter's loop budget. `pooled`: the
    /// kernel reads d_pooled and the pool codes (fuses_unpool), which costs more loops.
    pub fn wgrad_plan(&self, pooled: bool, loop_budget: u64) -> Result<WgradPlan> {
        let tiles = (self.out_channels / WGRAD_TILE) * self.in_channels;
        let fill_chunks = (2048usize.div_ceil(tiles.max(1))).clamp(1, self.batch.max(1));
        let rows = self.batch * self.side;
        let per_row = wgrad_row_loops(self.side, pooled);
        // each row also passes the row loop's back edge once; the loop's exit adds one
        let max_rows = (loop_budget.saturating_sub(1) / (per_row + 1)) as usize;
        if max_rows == 0 {
            return Err(format!(
                "conv layer weight gradient: one image row of side {} needs {} loop iterations, over this adapter's loop budget of {loop_budget}",
                self.side,
                per_row + 2
            ));
        }
        let chunk_rows = (self.batch.div_ceil(fill_chunks) * self.side).min(max_rows).max(1);
        Ok(WgradPlan { chunks: rows.div_ceil(chunk_rows).max(1), chunk_rows, per_row })
    }

    /// Words of the weight-gradient partials under `plan`.
    pub fn partial_len(&self, plan: &WgradPlan) -> usize {
        plan.chunks * self.param_len()
    }

    /// Whether the weight gradient reads d_pooled and the pool codes directly (no separate
    /// max-pool backward pass, no d_pre buffer): for a first layer (no dx) whose weight
    /// gradient runs with lanes over batch chunks.
    pub fn fuses_unpool(&self, has_dx: bool, k: &Kernels) -> bool {
        !has_dx && self.in_channels < k.conv_wgrad_ic.workgroup_size as usize
    }

    pub fn check(&self) -> Result<()> {
        if !self.side.is_multiple_of(2) || self.side == 0 {
            return Err(format!("conv layer input side {} must be even and non-zero", self.side));
        }
        if !self.out_channels.is_multiple_of(OUT_TILE) {
            return Err(format!(
                "conv layer out_channels {} must be a multiple of {OUT_TILE}",
                self.out_channels
            ));
        }
        Ok(())
    }
}

/// Chunks of image rows for the weight gradient (see ConvShape::wgrad_plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgradPlan {
    pub chunks: usize,
    pub chunk_rows: usize,
    /// Loop iterations per image row.
    per_row: u64,
}

impl WgradPlan {
    /// conv_wgrad*'s loops per invocation: the row loop, and per row the column loop and,
    /// reading pooled gradients, the 8-channel loops of pooled8 and unpool8 (counted at
    /// every pixel).
    pub fn loops(&self) -> LoopBound {
        LoopBound::new(
            loop_ticks(self.chunk_rows as u64) + self.chunk_rows as u64 * self.per_row,
            format!("{} image rows per batch chunk", self.chunk_rows),
        )
    }

    /// conv_wgrad_reduce's loop over the chunks.
    pub fn reduce_loops(&self) -> LoopBound {
        LoopBound::new(loop_ticks(self.chunks as u64), format!("{} batch chunks to add", self.chunks))
    }
}

/// Loop iterations of one image row in conv_wgrad*, beyond the row loop's own pass.
fn wgrad_row_loops(side: usize, pooled: bool) -> u64 {
    let w = side as u64;
    let per_pixel = if pooled { 4 * loop_ticks(8) } else { 0 };
    loop_ticks(w) + w * per_pixel
}

/// conv_fwd / conv_dx loops per invocation over `inputs` input channels: tile_for's two
/// 4-loops, per channel load_taps' 4x4 nest, and the 16-channel epilogue.
pub fn conv_block_loops(inputs: usize) -> LoopBound {
    let c = inputs as u64;
    let per_channel = 4 * loop_ticks(4) + loop_ticks(4);
    LoopBound::new(
        2 * loop_ticks(4) + loop_ticks(c) + c * per_channel + loop_ticks(OUT_TILE as u64),
        format!("input channels = {inputs}"),
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvParams {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    groups_per_block: u32,
    bias_offset: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct WgradParams {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    chunks: u32,
    chunk_rows: u32,
    has_bias: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PoolParams {
    pooled_count: u32,
    height: u32,
    width: u32,
    channels: u32,
}

/// conv_fwd and conv_dx share one thread mapping: a 2x2 output block x OUT_TILE channels,
/// the channel block taken from the workgroup index.
/// Lanes of conv_tiled.wgsl's workgroups, 2x2 blocks per side of its tiles, and input
/// channels per stage (TILE_LANES, TILE_BLOCKS and TILED_IC there).
pub const TILED_WG: u32 = 64;
pub const TILED_BLOCKS: u32 = 8;
pub const TILED_IC: u32 = 4;
/// conv_tiled's staged input patch per channel: the tile and a 1-pixel border.
pub const TILED_PATCH_SIDE: u32 = 2 * TILED_BLOCKS + 2;

/// The conv_fwd, conv_fwd_plain and conv_dx kernels the autotuner chooses between per
/// shape. Both sum in the same order, so the choice changes no bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvVariant {
    /// The family's kernels (conv_accumulate*.wgsl): what `--autotune off` runs.
    Direct = 0,
    /// conv_tiled.wgsl, shaped for GPUs: 64-lane workgroups on 16x16-pixel tiles whose
    /// inputs and weights are staged in workgroup memory.
    Tiled = 1,
}

impl ConvVariant {
    pub fn from_choice(choice: u32) -> Option<ConvVariant> {
        [ConvVariant::Direct, ConvVariant::Tiled].into_iter().find(|v| *v as u32 == choice)
    }
}

/// conv_tiled's loops per invocation: the stage loop; per stage the patch and weight loads
/// (strided over the workgroup) and the channel loop; per channel the 4x4 patch read, the
/// 9 taps' vectors and the tap loop; then conv.wgsl's store loop over the channel block.
pub fn conv_tiled_loops(inputs: usize) -> LoopBound {
    let (ic, lanes) = (TILED_IC as u64, TILED_WG as u64);
    let stages = (inputs as u64).div_ceil(ic);
    let patch = (TILED_PATCH_SIDE * TILED_PATCH_SIDE) as u64;
    let stage_w4 = 9 * OUT_TILE as u64 / 4;
    let loads = loop_ticks((ic * patch).div_ceil(lanes)) + loop_ticks((ic * stage_w4).div_ceil(lanes));
    let per_channel = 4 * loop_ticks(4) + loop_ticks(4) + 3 * loop_ticks(3) + loop_ticks(3) + loop_ticks(9);
    LoopBound::new(
        loop_ticks(stages)
            + stages * (loads + loop_ticks(ic) + ic * per_channel)
            + loop_ticks(OUT_TILE as u64),
        format!("input channels = {inputs}"),
    )
}

/// conv_fwd, conv_fwd_plain or conv_dx (`entry`) over `params` in `variant`, with its
/// uniform (returned, to keep alive with the layer) at binding 0.
pub(crate) fn conv_variant_dispatch(
    gpu: &Gpu,
    k: &Kernels,
    entry: &'static str,
    variant: ConvVariant,
    params: ConvParams,
    entries: &[(u32, wgpu::BindingResource)],
) -> Result<(Dispatch, wgpu::Buffer)> {
    let side = params.height / 2;
    let (kernel, groups_per_block, loops) = match variant {
        ConvVariant::Direct => {
            let kernel = match entry {
                "conv_fwd" => k.conv_fwd.clone(),
                "conv_fwd_plain" => k.conv_fwd_plain.clone(),
                "conv_dx" => k.conv_dx.clone(),
                _ => return Err(format!("internal error: no conv kernel {entry}")),
            };
            let blocks = (params.batch * side * side).div_ceil(kernel.workgroup_size);
            (kernel, blocks, conv_block_loops(params.in_channels as usize))
        }
        ConvVariant::Tiled => {
            // the family's order of sums (conv_tiled.wgsl's note)
            let per_ic_sum = (k.variant == crate::kernels::Variant::Plain) as u32;
            let overrides = [("WG", TILED_WG), ("PER_IC_SUM", per_ic_sum)];
            let kernel = k.on_demand_with(gpu, "conv_variants.wgsl", entry, &overrides)?;
            let tiles = side.div_ceil(TILED_BLOCKS).pow(2);
            (kernel, params.batch * tiles, conv_tiled_loops(params.in_channels as usize))
        }
    };
    let params = ConvParams { groups_per_block, ..params };
    let uniform = gpu.uniform_init("conv params", &[params]);
    let mut all = vec![(0, whole(&uniform))];
    all.extend(entries.iter().cloned());
    // the direct kernels also read their input as vec2s (binding 9, conv.wgsl's load_taps)
    if variant == ConvVariant::Direct {
        let src = entries.iter().find(|e| e.0 == 1).map(|e| e.1.clone());
        all.push((9, src.ok_or("internal error: a conv dispatch without its input")?));
    }
    let blocks = params.out_channels / OUT_TILE as u32;
    let d = Dispatch::with_groups(gpu, &kernel, blocks * groups_per_block, &all)?.with_loops(loops);
    Ok((d, uniform))
}

/// conv_variant_dispatch by the variant the autotuner picks for this kernel and shape.
fn tuned_block_dispatch(
    gpu: &Gpu,
    k: &Kernels,
    entry: &'static str,
    params: ConvParams,
    entries: &[(u32, wgpu::BindingResource)],
    owned: &mut Vec<wgpu::Buffer>,
) -> Result<Dispatch> {
    let key = format!(
        "{entry} batch {}, {} to {} channels, side {}: variant [shader {}]",
        params.batch,
        params.in_channels,
        params.out_channels,
        params.height,
        crate::autotune::fingerprint(&crate::kernels::conv_variant_sources(k.variant))
    );
    // The tiled variant is offered where its loops fit the adapter's budget; on a CPU
    // adapter, where it runs about 9x slower, only to `--autotune full`.
    let (mut candidates, mut more) = (vec![ConvVariant::Direct as u32], Vec::new());
    if conv_tiled_loops(params.in_channels as usize).ticks <= gpu.loop_budget {
        let list = if crate::gpu::is_software(&gpu.info) { &mut more } else { &mut candidates };
        list.push(ConvVariant::Tiled as u32);
    }
    let (mut chosen, uniform) =
        k.tuner.choose_built(gpu, &key, ConvVariant::Direct as u32, &candidates, &more, &mut |c| {
            let variant = ConvVariant::from_choice(c).ok_or("not a conv variant")?;
            let (d, uniform) = conv_variant_dispatch(gpu, k, entry, variant, params, entries)?;
            Ok((vec![d], uniform))
        })?;
    owned.push(uniform);
    chosen.pop().ok_or_else(|| "internal error: no conv dispatch".into())
}

/// How the weight-gradient kernels spread their lanes. Both run one loop per output
/// (wgrad_tile in conv_wgrad.wgsl) over the same chunks, so both write the same partials
/// and the autotuner may pick either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgradLanes {
    /// conv_wgrad (conv_wgrad_pooled where it reads the pooled gradient): one lane per
    /// (batch chunk, input channel, block of output channels).
    Chunks = 0,
    /// conv_wgrad_ic: a workgroup's lanes take consecutive input channels of one chunk, so
    /// they need the same gradients, which 8-lane subgroups load once and share.
    InputChannels = 1,
}

impl WgradLanes {
    pub fn from_choice(choice: u32) -> Option<WgradLanes> {
        [WgradLanes::Chunks, WgradLanes::InputChannels].into_iter().find(|v| *v as u32 == choice)
    }

    /// Without tuning: lanes over input channels where there are enough of them to fill a
    /// workgroup, else over chunks.
    pub fn default_for(shape: &ConvShape, k: &Kernels) -> WgradLanes {
        if shape.in_channels >= k.conv_wgrad_ic.workgroup_size as usize {
            WgradLanes::InputChannels
        } else {
            WgradLanes::Chunks
        }
    }
}

/// The weight-gradient partials, with `lanes`.
#[allow(clippy::too_many_arguments)]
fn wgrad_dispatch(
    gpu: &Gpu,
    k: &Kernels,
    shape: &ConvShape,
    chunks: usize,
    uniform: &wgpu::Buffer,
    b: &ConvBuffers,
    fused: bool,
    lanes: WgradLanes,
) -> Result<Dispatch> {
    // Fused with the pool backward, the kernel reads d_pooled and the codes instead of dy.
    let dy = if fused { b.d_pooled } else { b.d_pre };
    let entries = [
        (0, whole(uniform)),
        (1, whole(b.x)),
        (2, whole(dy)),
        (3, whole(b.partial)),
        (5, whole(b.d_pooled)),
        (6, whole(b.code)),
    ];
    let blocks = shape.out_channels / WGRAD_TILE;
    match lanes {
        WgradLanes::InputChannels if !fused => {
            let wg = k.conv_wgrad_ic.workgroup_size as usize;
            let groups = shape.in_channels.div_ceil(wg) * chunks * blocks;
            Dispatch::with_groups(gpu, &k.conv_wgrad_ic, groups as u32, &entries)
        }
        WgradLanes::InputChannels => {
            Err("internal error: conv_wgrad_ic cannot read the pooled gradient".into())
        }
        WgradLanes::Chunks => {
            let kernel = if fused { &k.conv_wgrad_pooled } else { &k.conv_wgrad };
            Dispatch::new(gpu, kernel, (blocks * shape.in_channels * chunks) as u32, &entries)
        }
    }
}

/// wgrad_dispatch by the lane mapping the autotuner picks for this shape; a weight
/// gradient that reads the pooled gradient has one (lanes over chunks).
#[allow(clippy::too_many_arguments)]
fn tuned_wgrad_dispatch(
    gpu: &Gpu,
    k: &Kernels,
    shape: &ConvShape,
    plan: &WgradPlan,
    uniform: &wgpu::Buffer,
    b: &ConvBuffers,
    fused: bool,
) -> Result<Dispatch> {
    let finish = |d: Dispatch| d.with_flops(shape.flops()).with_loops(plan.loops());
    if fused {
        return Ok(finish(wgrad_dispatch(gpu, k, shape, plan.chunks, uniform, b, true, WgradLanes::Chunks)?));
    }
    let key = format!(
        "conv_wgrad batch {}, {} to {} channels, side {}: lanes over (0 chunks, 1 input channels) [shader {}]",
        shape.batch,
        shape.in_channels,
        shape.out_channels,
        shape.side,
        crate::autotune::fingerprint(&crate::kernels::family_source(k.variant, "conv_wgrad.wgsl"))
    );
    // On a CPU adapter the default rule was measured (the other mapping ran 2-3 times
    // slower on lavapipe: ref-cnn's conv2 90-110 ms against about 30, bn-cnn's first
    // layer 23 against 8.5): the other mapping is timed only by `--autotune full`, which keeps a cold start
    // short. Elsewhere, where 64-lane workgroups make the rule a guess, both are timed.
    let default = WgradLanes::default_for(shape, k) as u32;
    let other = 1 - default;
    let (candidates, more) =
        if crate::gpu::is_software(&gpu.info) { (vec![default], vec![other]) } else { (vec![0, 1], vec![]) };
    let (mut chosen, ()) = k.tuner.choose_built(gpu, &key, default, &candidates, &more, &mut |c| {
        let lanes = WgradLanes::from_choice(c).ok_or("not a weight-gradient lane mapping")?;
        let d = finish(wgrad_dispatch(gpu, k, shape, plan.chunks, uniform, b, false, lanes)?);
        Ok((vec![d], ()))
    })?;
    chosen.pop().ok_or_else(|| "internal error: no conv_wgrad dispatch".into())
}

/// Whether the layer's ReLU and pool are fused into it, and whether it has a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvMode {
    pub relu_pool: bool,
    pub bias: bool,
}

impl ConvMode {
    pub const FUSED: ConvMode = ConvMode { relu_pool: true, bias: true };
}

/// Buffers a conv layer reads and writes. `params`/`grads` are the flat parameter buffers
/// and `offset` is this layer's block in them.
pub struct ConvBuffers<'a> {
    pub x: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub offset: usize,
    /// The output: pooled (B, CO, S/2, S/2) when fused, else y (B, CO, S, S).
    pub pooled: &'a wgpu::Buffer,
    pub code: &'a wgpu::Buffer,
    /// The output's gradient when fused (unused when plain).
    pub d_pooled: &'a wgpu::Buffer,
    /// The gradient before the pool (fused), or the output's gradient (plain).
    pub d_pre: &'a wgpu::Buffer,
    pub partial: &'a wgpu::Buffer,
    /// Gradient with respect to x; None for the first layer.
    pub dx: Option<&'a wgpu::Buffer>,
}

pub struct Conv3x3ReluPool {
    pub shape: ConvShape,
    pub mode: ConvMode,
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    /// Uniforms and scratch buffers the dispatches bind; kept alive with the layer.
    pub uniforms: Vec<wgpu::Buffer>,
}

impl Conv3x3ReluPool {
    /// The layer's dispatches; with `with_backward` false (evaluation only) none for the
    /// backward pass, whose buffers in `b` then go unused.
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        shape: ConvShape,
        b: &ConvBuffers,
        with_backward: bool,
    ) -> Result<Self> {
        Conv3x3ReluPool::with_mode(gpu, k, shape, ConvMode::FUSED, b, with_backward)
    }

    pub fn with_mode(
        gpu: &Gpu,
        k: &Kernels,
        shape: ConvShape,
        mode: ConvMode,
        b: &ConvBuffers,
        with_backward: bool,
    ) -> Result<Self> {
        shape.check()?;
        let s = shape.side as u32;
        let layer_params = words(b.params, b.offset, shape.param_len());

        let fwd_params = ConvParams {
            batch: shape.batch as u32,
            in_channels: shape.in_channels as u32,
            out_channels: shape.out_channels as u32,
            height: s,
            width: s,
            // set per variant by conv_variant_dispatch
            groups_per_block: 0,
            bias_offset: shape.weight_len() as u32,
            _pad: 0,
        };
        let fwd_uniform = gpu.uniform_init("conv_fwd params", &[fwd_params]);
        let wt_fwd = gpu.storage("conv weights (in, tap, out)", shape.weight_len())?;
        let wt_dx = gpu.storage("conv weights for dx (out, tap, in)", shape.weight_len())?;
        let mut owned = Vec::new();
        let forward = vec![
            Dispatch::new(
                gpu,
                &k.conv_weight_layout,
                shape.weight_len() as u32,
                &[
                    (0, whole(&fwd_uniform)),
                    (3, layer_params.clone()),
                    (7, whole(&wt_fwd)),
                    (8, whole(&wt_dx)),
                ],
            )?
            .with_loops(LoopBound::none()),
            if mode.relu_pool {
                tuned_block_dispatch(
                    gpu,
                    k,
                    "conv_fwd",
                    fwd_params,
                    &[
                        (1, whole(b.x)),
                        (2, whole(&wt_fwd)),
                        (3, layer_params.clone()),
                        (4, whole(b.pooled)),
                        (5, whole(b.code)),
                    ],
                    &mut owned,
                )?
            } else {
                tuned_block_dispatch(
                    gpu,
                    k,
                    "conv_fwd_plain",
                    fwd_params,
                    &[(1, whole(b.x)), (2, whole(&wt_fwd)), (3, layer_params.clone()), (6, whole(b.pooled))],
                    &mut owned,
                )?
            }
            .with_flops(shape.flops()),
        ];

        if !with_backward {
            let mut uniforms = vec![fwd_uniform, wt_fwd, wt_dx];
            uniforms.append(&mut owned);
            return Ok(Conv3x3ReluPool { shape, mode, forward, backward: Vec::new(), uniforms });
        }
        let pool_params = PoolParams {
            pooled_count: shape.pooled_len() as u32,
            height: s,
            width: s,
            channels: shape.out_channels as u32,
        };
        let pool_uniform = gpu.uniform_init("maxpool params", &[pool_params]);
        let fused_unpool = mode.relu_pool && shape.fuses_unpool(b.dx.is_some(), k);
        let plan = shape.wgrad_plan(fused_unpool, gpu.loop_budget)?;
        let chunks = plan.chunks;
        let wgrad_params = WgradParams {
            batch: shape.batch as u32,
            in_channels: shape.in_channels as u32,
            out_channels: shape.out_channels as u32,
            height: s,
            width: s,
            chunks: chunks as u32,
            chunk_rows: plan.chunk_rows as u32,
            has_bias: mode.bias as u32,
        };
        let wgrad_uniform = gpu.uniform_init("conv_wgrad params", &[wgrad_params]);
        let mut backward = Vec::new();
        if mode.relu_pool && !fused_unpool {
            backward.push(
                Dispatch::new(
                    gpu,
                    &k.maxpool_relu_backward,
                    // a thread per code word: 8 channels' pooled values
                    pool_params.pooled_count / 8,
                    &[
                        (0, whole(&pool_uniform)),
                        (1, whole(b.d_pooled)),
                        (2, whole(b.code)),
                        (3, whole(b.d_pre)),
                    ],
                )?
                .with_loops(LoopBound::new(loop_ticks(8), "8 channels per thread".to_string()))
                // each pooled gradient and its half-byte code read, its 4 pre-pool values written
                .with_bytes(pool_params.pooled_count as u64 * (4 + 16) + shape.code_len() as u64 * 4),
            );
        }
        backward.extend([
            tuned_wgrad_dispatch(gpu, k, &shape, &plan, &wgrad_uniform, b, fused_unpool)?,
            Dispatch::new(
                gpu,
                &k.conv_wgrad_reduce,
                shape.param_len() as u32,
                &[
                    (0, whole(&wgrad_uniform)),
                    (3, whole(b.partial)),
                    (4, words(b.grads, b.offset, shape.param_len())),
                ],
            )?
            .with_loops(plan.reduce_loops()),
        ]);
        let mut uniforms = vec![fwd_uniform, pool_uniform, wgrad_uniform, wt_fwd];
        if let Some(dx) = b.dx {
            if !shape.in_channels.is_multiple_of(OUT_TILE) {
                return Err(format!(
                    "conv layer in_channels {} must be a multiple of {OUT_TILE} to propagate gradients",
                    shape.in_channels
                ));
            }
            // dx is a convolution of d_pre with the kernel flipped and its channel axes swapped.
            let dx_params = ConvParams {
                in_channels: shape.out_channels as u32,
                out_channels: shape.in_channels as u32,
                ..fwd_params
            };
            backward.push(
                tuned_block_dispatch(
                    gpu,
                    k,
                    "conv_dx",
                    dx_params,
                    &[(1, whole(b.d_pre)), (2, whole(&wt_dx)), (6, whole(dx))],
                    &mut owned,
                )?
                .with_flops(shape.flops()),
            );
        }
        uniforms.push(wt_dx);
        uniforms.append(&mut owned);
        Ok(Conv3x3ReluPool { shape, mode, forward, backward, uniforms })
    }
}
