//! Dense layer y = x . W^T + b (optionally ReLU), forward and backward.
//!
//! x (B, I) row-major, W (O, I) as in PyTorch, followed by b (O) in one parameter block.
//! Backward from dy (B, O): dW = dy^T . x, db = column sums of dy, and optionally
//! dx = dy . W, masked by the previous layer's ReLU (dx = 0 where that activation <= 0).

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, whole, words};
use crate::loop_budget::{LoopBound, loop_ticks};

#[derive(Debug, Clone, Copy)]
pub struct DenseShape {
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
}

impl DenseShape {
    pub fn weight_len(&self) -> usize {
        self.inputs * self.outputs
    }
    pub fn param_len(&self) -> usize {
        self.weight_len() + self.outputs
    }
}

pub const FLAG_BIAS: u32 = 1;
pub const FLAG_RELU: u32 = 2;
pub const FLAG_MASK: u32 = 4;

/// c (M, N) = a (M, K) . b (K, N) with a[m, k] = a[m * a_row + k * a_col] and
/// b[k, n] = b[k * b_row + n * b_col].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a_row: u32,
    pub a_col: u32,
    pub b_row: u32,
    pub b_col: u32,
    pub flags: u32,
    pub bias_offset: u32,
    pub c_offset: u32,
    pub n_groups: u32,
    /// Split-K slices and the k range (bias_grad: rows) of each; set by `matmul` and
    /// `bias_grad`.
    pub splits: u32,
    pub k_chunk: u32,
    pub _pad: [u32; 3],
}

/// Rows per workgroup and columns per thread in matmul (TM and TN in dense.wgsl).
pub const TILE: (u32, u32) = (8, 8);

/// A prepared matmul; `bias` and `aux` default to `a` when the flags don't use them.
pub struct MatmulArgs<'a> {
    pub params: MatmulParams,
    pub a: wgpu::BindingResource<'a>,
    pub b: wgpu::BindingResource<'a>,
    pub c: wgpu::BindingResource<'a>,
    pub bias: Option<wgpu::BindingResource<'a>>,
    pub aux: Option<wgpu::BindingResource<'a>>,
}

/// The loads matmul uses for B. Scalar, Rows and Cols are also matmul_tall's ways of
/// reading B, numbered as B_SCALAR, B_ROWS and B_COLS in dense.wgsl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BLoad {
    Scalar = 0,
    Rows = 1,
    Cols = 2,
    /// matmul_tall
    Tall,
    /// matmul_tiled
    Tiled,
}

/// Loops of one matmul invocation over a k range of `k_len`. Tile: the 8-column offset
/// loop, the k loop (matmul_cols: 4 k-steps an iteration, each with its 8- and 4-loops)
/// and the TM x TN epilogue.
fn matmul_loops(load: BLoad, k_len: u64) -> u64 {
    let fixed = loop_ticks(8) + loop_ticks(TILE.0 as u64) + TILE.0 as u64 * loop_ticks(TILE.1 as u64);
    match load {
        BLoad::Cols => fixed + loop_ticks(k_len / 4) + (k_len / 4) * (loop_ticks(8) + loop_ticks(4)),
        BLoad::Scalar | BLoad::Rows => fixed + loop_ticks(k_len),
        // the k loop: 4 k-steps an iteration then up to 3 single ones, or one step an
        // iteration (the stores are straight-line code)
        BLoad::Tall => loop_ticks(k_len) + loop_ticks(3),
        // per slab of TILED.2 k-steps: the staging loop and the k-step loop; then the 4 x 4
        // stores
        BLoad::Tiled => {
            let slabs = k_len.div_ceil(TILED.2 as u64);
            loop_ticks(slabs) + slabs * (loop_ticks(4) + loop_ticks(TILED.2 as u64)) + 5 * loop_ticks(4)
        }
    }
}

/// The longest k range one invocation may take within `budget` (a multiple of 4 for
/// matmul_cols); 0 if none.
pub fn max_k_chunk(load: BLoad, budget: u64) -> u64 {
    let step = if load == BLoad::Cols { 4 } else { 1 };
    // matmul_loops grows with k_len: bisect over multiples of `step`
    let (mut lo, mut hi) = (0u64, budget.min(u32::MAX as u64) / step + 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if matmul_loops(load, mid * step) <= budget { lo = mid } else { hi = mid }
    }
    lo * step
}

/// Slices and slice length for a loop of `len` steps (multiples of `step`) whose longest
/// slice may be `max_chunk`: as few slices as fit, of balanced length.
fn split_plan(len: u32, max_chunk: u64, step: u32, what: &str) -> Result<(u32, u32)> {
    // slices are whole steps long
    let max_chunk = max_chunk / step as u64 * step as u64;
    if max_chunk == 0 {
        return Err(format!("{what}: no slice fits this adapter's loop budget"));
    }
    let splits = (len as u64).div_ceil(max_chunk).max(1) as u32;
    let chunk = len.div_ceil(splits).div_ceil(step) * step;
    Ok((len.div_ceil(chunk.max(1)).max(1), chunk.max(step)))
}

/// How a matmul is computed; every variant sums over k in the same order, so all give
/// identical results and the autotuner may pick any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulVariant {
    /// matmul / matmul_rows / matmul_cols: a workgroup shares 8 rows, each lane 8 columns.
    Tile = 0,
    /// matmul_tall: a workgroup shares 16 rows, each lane 4 columns (fewer loads per
    /// multiply-add where per-lane loads are dear, as on llvmpipe).
    Tall = 1,
    /// matmul_tiled: 256-lane workgroups stage 64 x 64 tiles of A and B in workgroup
    /// memory, each lane 4 x 4 outputs (the classic GPU GEMM).
    Tiled = 2,
    /// matmul_tiled on f16 copies of A and B (to_f16 first), summing in f32: half the
    /// bytes per operand read. Not bit-identical to the others: a candidate only with
    /// `--f16-storage`, on a device with SHADER_F16.
    TiledF16 = 3,
}

impl MatmulVariant {
    /// The variants that give identical results, the autotuner's usual candidates.
    pub const ALL: [MatmulVariant; 3] = [MatmulVariant::Tile, MatmulVariant::Tall, MatmulVariant::Tiled];

    pub fn from_choice(choice: u32) -> Option<MatmulVariant> {
        MatmulVariant::ALL.into_iter().chain([MatmulVariant::TiledF16]).find(|v| *v as u32 == choice)
    }
}

/// How matmul_tall reads A in its loops of 4 k-steps (TALL_A_LOAD; A_SCALAR, A_K4 and A_M4
/// in dense_tall.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ALoad {
    /// a_rows8 at each k-step, any strides.
    Scalar = 0,
    /// A's rows run along k (a_col = 1, a_row a multiple of 4, K at least 4) and slices
    /// start at multiples of 4: a row's 4 k-steps in one vec4.
    K4 = 1,
    /// A's columns run along m (a_row = 1; a_col and m multiples of 4): 4 rows at one
    /// k-step in one vec4.
    M4 = 2,
}

impl ALoad {
    /// The way to read A of `params`; `aligned_slices`: every K slice starts at a multiple
    /// of 4 (so does an unsplit product's one).
    pub fn for_product(params: &MatmulParams, aligned_slices: bool) -> ALoad {
        // (K under 4 has no run of 4 k-steps, and its A may be shorter than one vec4)
        if params.a_col == 1 && params.a_row.is_multiple_of(4) && params.k >= 4 && aligned_slices {
            ALoad::K4
        } else if params.a_row == 1 && params.a_col.is_multiple_of(4) && params.m.is_multiple_of(4) {
            ALoad::M4
        } else {
            ALoad::Scalar
        }
    }
}

/// matmul_tall's rows per workgroup and columns per lane (TALL_M, TALL_N in dense_tall.wgsl).
pub const TALL: (u32, u32) = (16, 4);
/// matmul_tiled's output tile (rows, columns) and its k-step (TILED_* in dense_tiled.wgsl).
pub const TILED: (u32, u32, u32) = (64, 64, 16);
/// matmul_tiled's workgroup: 16 x 16 lanes.
pub const TILED_WG: u32 = 256;

/// c = a . b (plus the epilogue in params.flags), by the variant the autotuner picks for
/// this shape (`MatmulVariant::Tile` where tuning is off).
pub fn matmul(
    gpu: &Gpu,
    k: &Kernels,
    args: MatmulArgs,
    owned: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let p = &args.params;
    // --f16-storage: the f16 variant joins the candidates, in every mode and on every
    // adapter (it was asked for), under keys of its own, so that a run without the flag
    // never reads an f16 choice
    let f16 = k.tuner.f16_storage && gpu.has_f16();
    let mut shaders = crate::kernels::dense_variants(k.variant);
    if f16 {
        shaders.extend(crate::kernels::f16_sources().into_iter().map(|m| m.1));
    }
    let key = format!(
        "matmul {}x{}x{}, a strides ({}, {}), b strides ({}, {}), flags {}: variant{} [shader {}]",
        p.m,
        p.n,
        p.k,
        p.a_row,
        p.a_col,
        p.b_row,
        p.b_col,
        p.flags,
        if f16 { " (f16 storage offered)" } else { "" },
        crate::autotune::fingerprint(&shaders)
    );
    // matmul_tiled, shaped for GPUs, runs 5-10x slower on a CPU adapter: there it is
    // measured only by `--autotune full`
    let software = crate::gpu::is_software(&gpu.info);
    let (more, mut candidates): (Vec<u32>, Vec<u32>) = MatmulVariant::ALL
        .iter()
        .map(|v| *v as u32)
        .partition(|&v| software && v == MatmulVariant::Tiled as u32);
    if f16 {
        candidates.push(MatmulVariant::TiledF16 as u32);
    }
    let (dispatches, scratch) =
        k.tuner.choose_built(gpu, &key, MatmulVariant::Tile as u32, &candidates, &more, &mut |c| {
            let variant = MatmulVariant::from_choice(c).ok_or("not a matmul variant")?;
            let mut scratch = Vec::new();
            Ok((matmul_with(gpu, k, variant, &args, &mut scratch)?, scratch))
        })?;
    owned.extend(scratch);
    Ok(dispatches)
}

/// The longest K slice of a product whose B is read as `tile_load` by the Tile variant:
/// the shortest that any variant's loops allow, so that every variant splits K the same
/// way and adds the same partial sums in the same order (the autotuner's choice changes
/// no bit). A multiple of 4 where B's columns are read as vec4s.
pub fn longest_slice(tile_load: BLoad, loop_budget: u64) -> u64 {
    let longest = [tile_load, BLoad::Tall, BLoad::Tiled].map(|l| max_k_chunk(l, loop_budget));
    let longest = longest.into_iter().min().unwrap_or(0);
    if tile_load == BLoad::Cols { longest / 4 * 4 } else { longest }
}

pub const DENSE_TALL_WGSL: &str = include_str!("../../shaders/dense_tall.wgsl");
/// matmul_tall's vec4 fetch of A, by family: plain and 8-lane subgroups.
pub const DENSE_TALL_FETCH_WGSL: &str = include_str!("../../shaders/dense_tall_fetch.wgsl");
pub const DENSE_TALL_FETCH_SUBGROUP_WGSL: &str = include_str!("../../shaders/dense_tall_fetch_subgroup.wgsl");
pub const DENSE_TILED_WGSL: &str = include_str!("../../shaders/dense_tiled.wgsl");
pub const DENSE_TILED_F32_WGSL: &str = include_str!("../../shaders/dense_tiled_f32.wgsl");
pub const DENSE_TILED_F16_WGSL: &str = include_str!("../../shaders/dense_tiled_f16.wgsl");

/// c = a . b by `variant`. Tile: B rows or columns that can be read as vec4s go to
/// matmul_rows or matmul_cols, the rest to matmul. Where the loop over K would pass the
/// adapter's loop budget, K is split: slices write raw partial tiles into a scratch buffer
/// (kept in `owned`) and matmul_reduce adds them in order and applies the epilogue. One
/// dispatch, or two when split.
pub fn matmul_with(
    gpu: &Gpu,
    k: &Kernels,
    variant: MatmulVariant,
    args: &MatmulArgs,
    owned: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let mut params = args.params;
    let rows_as_vec4 = params.b_col == 1 && params.b_row.is_multiple_of(4) && params.n.is_multiple_of(4);
    let cols_as_vec4 = params.b_row == 1 && params.b_col.is_multiple_of(4) && params.k.is_multiple_of(4);
    // one plan for every variant (longest_slice); where B's columns are read as vec4s,
    // slices are whole vec4s long
    let tile_load = if rows_as_vec4 {
        BLoad::Rows
    } else if cols_as_vec4 {
        BLoad::Cols
    } else {
        BLoad::Scalar
    };
    let (splits, k_chunk) = split_plan(
        params.k,
        longest_slice(tile_load, gpu.loop_budget),
        if cols_as_vec4 { 4 } else { 1 },
        &format!("matmul over K = {}", params.k),
    )?;
    // The on-demand variants are built for the flags they apply (none where split-K
    // slices leave the epilogue to matmul_reduce): see EPILOGUE in dense.wgsl.
    let epilogue = if splits == 1 { params.flags } else { 0 };
    let a_load = ALoad::for_product(&params, splits == 1 || k_chunk.is_multiple_of(4));
    let on_demand = |module, entry, wg, more: &[(&'static str, u32)]| {
        let overrides = [&[("WG", wg), ("EPILOGUE", epilogue)], more].concat();
        k.on_demand_with(gpu, module, entry, &overrides)
    };
    let (kernel, load) = match variant {
        // matmul_tall is also built for its ways of reading A and B: B as the default
        // variant reads it (tile_load)
        MatmulVariant::Tall => {
            let ways = [("TALL_B_LOAD", tile_load as u32), ("TALL_A_LOAD", a_load as u32)];
            (on_demand("dense_variants.wgsl", "matmul_tall", k.workgroup_size, &ways)?, BLoad::Tall)
        }
        MatmulVariant::Tiled => {
            (on_demand("dense_variants.wgsl", "matmul_tiled", TILED_WG, &[])?, BLoad::Tiled)
        }
        MatmulVariant::TiledF16 => {
            (on_demand("dense_f16.wgsl", "matmul_tiled", TILED_WG, &[])?, BLoad::Tiled)
        }
        MatmulVariant::Tile if rows_as_vec4 => (k.matmul_rows.clone(), BLoad::Rows),
        MatmulVariant::Tile if cols_as_vec4 => (k.matmul_cols.clone(), BLoad::Cols),
        MatmulVariant::Tile => (k.matmul.clone(), BLoad::Scalar),
    };
    // binding 6, B's vec4 view: matmul_tiled does not declare it, and the others read it
    // only where B's rows or columns are whole vec4s. Elsewhere B may be shorter than one
    // vec4 (a 1-feature activation), which the binding does not allow: a stand-in is bound.
    let stand_in = gpu.storage("matmul's unread vec4 view", 4)?;
    let b4 = if rows_as_vec4 || cols_as_vec4 { args.b.clone() } else { whole(&stand_in) };
    // A and B as the kernel reads them: f32 (bindings 1 and 2, and B's vec4 view but for
    // matmul_tiled), or f16 copies made first (bindings 7 and 8)
    let mut copies = Vec::new();
    let halves = if variant == MatmulVariant::TiledF16 {
        let (copy_a, a16) = f16_copy(gpu, k, "matmul's f16 A", &args.a)?;
        let (copy_b, b16) = f16_copy(gpu, k, "matmul's f16 B", &args.b)?;
        copies.extend([copy_a, copy_b]);
        Some([a16, b16])
    } else {
        None
    };
    let operands: Vec<(u32, wgpu::BindingResource)> = match (&halves, variant) {
        (Some([a16, b16]), _) => vec![(7, whole(a16)), (8, whole(b16))],
        (None, MatmulVariant::Tiled) => vec![(1, args.a.clone()), (2, args.b.clone())],
        // binding 11, A's vec4 view: read only by matmul_tall, where A allows (ALoad)
        (None, MatmulVariant::Tall) => {
            let a4 = if a_load == ALoad::Scalar { whole(&stand_in) } else { args.a.clone() };
            vec![(1, args.a.clone()), (2, args.b.clone()), (6, b4), (11, a4)]
        }
        _ => vec![(1, args.a.clone()), (2, args.b.clone()), (6, b4)],
    };
    // the f16 variant runs dense_f16.wgsl's matmul_tiled: named apart in kernel tables
    let name = if variant == MatmulVariant::TiledF16 { "matmul_tiled_f16" } else { kernel.name };
    let (tile_rows, tile_cols) = match load {
        BLoad::Tall => (TALL.0, kernel.workgroup_size * TALL.1),
        BLoad::Tiled => (TILED.0, TILED.1),
        _ => (TILE.0, kernel.workgroup_size * TILE.1),
    };
    params.n_groups = params.n.div_ceil(tile_cols);
    params.splits = splits;
    params.k_chunk = k_chunk;
    let flops = 2 * params.m as u64 * params.n as u64 * params.k as u64;
    let tiles = params.m.div_ceil(tile_rows) * params.n_groups;
    let slice_loops = LoopBound::new(
        matmul_loops(load, k_chunk as u64),
        format!("K = {k_chunk} of {} per slice", params.k),
    );
    let bias = args.bias.clone().unwrap_or_else(|| args.a.clone());
    let aux = args.aux.clone().unwrap_or_else(|| args.a.clone());
    if splits == 1 {
        let uniform = gpu.uniform_init("matmul params", &[params]);
        let mut entries = vec![(0, whole(&uniform)), (3, args.c.clone()), (4, bias), (5, aux)];
        entries.extend(operands);
        let mut d =
            Dispatch::with_groups(gpu, &kernel, tiles, &entries)?.with_flops(flops).with_loops(slice_loops);
        d.name = name;
        owned.extend([uniform, stand_in]);
        owned.extend(halves.into_iter().flatten());
        copies.push(d);
        return Ok(copies);
    }
    let plane = params.m as usize * params.n as usize;
    let partial = gpu.storage("matmul split-K partials", splits as usize * plane)?;
    let slice_params = MatmulParams { flags: 0, c_offset: 0, ..params };
    let slice_uniform = gpu.uniform_init("matmul params", &[slice_params]);
    // the slices apply no epilogue: A's f32 binding stands in for bias and aux
    let mut entries =
        vec![(0, whole(&slice_uniform)), (3, whole(&partial)), (4, args.a.clone()), (5, args.a.clone())];
    entries.extend(operands);
    let mut slices = Dispatch::with_groups(gpu, &kernel, tiles * splits, &entries)?
        .with_flops(flops)
        .with_loops(slice_loops);
    slices.name = name;
    let reduce = reduce_slices(gpu, k, params, &partial, args.c.clone(), Some((bias, aux)), owned)?;
    owned.extend([partial, slice_uniform, stand_in]);
    owned.extend(halves.into_iter().flatten());
    copies.extend([slices, reduce]);
    Ok(copies)
}

/// A dispatch of to_f16 that copies the f32 words of `src` into a new f16 buffer of the
/// same layout, and that buffer.
fn f16_copy(
    gpu: &Gpu,
    k: &Kernels,
    label: &str,
    src: &wgpu::BindingResource,
) -> Result<(Dispatch, wgpu::Buffer)> {
    let wgpu::BindingResource::Buffer(binding) = src else {
        return Err(format!("internal error: {label}: not a buffer binding"));
    };
    let bytes = binding.size.map_or(binding.buffer.size().saturating_sub(binding.offset), |s| s.get());
    let words = bytes / 4;
    let pairs =
        u32::try_from(words.div_ceil(2)).map_err(|_| format!("{label}: {words} words are too many"))?;
    // one f32-sized word holds a pair of halves
    let narrow = gpu.storage(label, pairs as usize)?;
    let kernel = k.on_demand(gpu, "dense_f16.wgsl", "to_f16")?;
    let copy = Dispatch::new(gpu, &kernel, pairs, &[(9, src.clone()), (10, whole(&narrow))])?
        .with_loops(LoopBound::none())
        .with_bytes(6 * words);
    Ok((copy, narrow))
}

/// matmul_reduce over `partial`: c[c_offset + i] = epilogue(the `params.splits` slices of
/// (m, n) summed in order), with the flags' bias and mask bindings (absent: no flags).
fn reduce_slices(
    gpu: &Gpu,
    k: &Kernels,
    params: MatmulParams,
    partial: &wgpu::Buffer,
    c: wgpu::BindingResource,
    bias_aux: Option<(wgpu::BindingResource, wgpu::BindingResource)>,
    owned: &mut Vec<wgpu::Buffer>,
) -> Result<Dispatch> {
    let uniform = gpu.uniform_init("matmul_reduce params", &[params]);
    let (bias, aux) = bias_aux.unwrap_or_else(|| (whole(partial), whole(partial)));
    let d = Dispatch::new(
        gpu,
        &k.matmul_reduce,
        params.m * params.n,
        &[(0, whole(&uniform)), (1, whole(partial)), (3, c), (4, bias), (5, aux)],
    )?
    .with_loops(LoopBound::new(loop_ticks(params.splits as u64), format!("{} slices to add", params.splits)));
    owned.push(uniform);
    Ok(d)
}

/// c[c_offset + n] = sum over the rows of dy (rows x cols), in row order; split over rows
/// (then reduced in order) where one loop over them would pass the loop budget.
#[allow(clippy::too_many_arguments)]
pub fn bias_grad(
    gpu: &Gpu,
    k: &Kernels,
    rows: u32,
    cols: u32,
    dy: wgpu::BindingResource,
    c: wgpu::BindingResource,
    c_offset: u32,
    owned: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let max_rows = gpu.loop_budget.saturating_sub(1);
    let (splits, k_chunk) = split_plan(rows, max_rows, 1, &format!("bias_grad over {rows} rows"))?;
    let params = MatmulParams { m: rows, n: cols, c_offset, splits, k_chunk, ..Default::default() };
    let loops = LoopBound::new(loop_ticks(k_chunk as u64), format!("{k_chunk} of {rows} rows per slice"));
    if splits == 1 {
        let uniform = gpu.uniform_init("bias_grad params", &[params]);
        let d = Dispatch::new(gpu, &k.bias_grad, cols, &[(0, whole(&uniform)), (1, dy), (3, c)])?
            .with_loops(loops);
        owned.push(uniform);
        return Ok(vec![d]);
    }
    let partial = gpu.storage("bias_grad partials", splits as usize * cols as usize)?;
    let slice_uniform = gpu.uniform_init("bias_grad params", &[MatmulParams { c_offset: 0, ..params }]);
    let slices = Dispatch::new(
        gpu,
        &k.bias_grad,
        cols * splits,
        &[(0, whole(&slice_uniform)), (1, dy), (3, whole(&partial))],
    )?
    .with_loops(loops);
    // The reduce sees the slices as a (1, cols) matmul's split-K partials.
    let reduce_params = MatmulParams { m: 1, n: cols, c_offset, splits, ..Default::default() };
    let reduce = reduce_slices(gpu, k, reduce_params, &partial, c, None, owned)?;
    owned.extend([partial, slice_uniform]);
    Ok(vec![slices, reduce])
}

pub struct DenseBuffers<'a> {
    pub x: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub offset: usize,
    pub y: &'a wgpu::Buffer,
    pub dy: &'a wgpu::Buffer,
    /// Gradient with respect to x; None for a first layer.
    pub dx: Option<&'a wgpu::Buffer>,
    /// The activation x came out of a ReLU: dx is zeroed where it is <= 0.
    pub dx_relu_mask: Option<&'a wgpu::Buffer>,
}

pub struct Dense {
    pub shape: DenseShape,
    pub forward: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
    /// Parameter uniforms the dispatches bind; kept alive with the layer.
    pub uniforms: Vec<wgpu::Buffer>,
}

impl Dense {
    /// The layer's dispatches; with `with_backward` false (evaluation only) none for the
    /// backward pass, whose buffers in `b` then go unused.
    pub fn new(
        gpu: &Gpu,
        k: &Kernels,
        shape: DenseShape,
        relu: bool,
        b: &DenseBuffers,
        with_backward: bool,
    ) -> Result<Self> {
        let (bsz, ni, no) = (shape.batch as u32, shape.inputs as u32, shape.outputs as u32);
        let block = || words(b.params, b.offset, shape.param_len());
        let grad_block = || words(b.grads, b.offset, shape.param_len());
        let mut uniforms = Vec::new();
        let forward = matmul(
            gpu,
            k,
            MatmulArgs {
                // y (B, O) = x (B, I) . W^T, with W^T[i, o] = W[o * I + i]
                params: MatmulParams {
                    m: bsz,
                    n: no,
                    k: ni,
                    a_row: ni,
                    a_col: 1,
                    b_row: 1,
                    b_col: ni,
                    flags: FLAG_BIAS | if relu { FLAG_RELU } else { 0 },
                    bias_offset: shape.weight_len() as u32,
                    ..Default::default()
                },
                a: whole(b.x),
                b: block(),
                c: whole(b.y),
                bias: Some(block()),
                aux: None,
            },
            &mut uniforms,
        )?;
        if !with_backward {
            return Ok(Dense { shape, forward, backward: Vec::new(), uniforms });
        }
        // dW (O, I) = dy^T (O, B) . x (B, I)
        let mut backward = matmul(
            gpu,
            k,
            MatmulArgs {
                params: MatmulParams {
                    m: no,
                    n: ni,
                    k: bsz,
                    a_row: 1,
                    a_col: no,
                    b_row: ni,
                    b_col: 1,
                    ..Default::default()
                },
                a: whole(b.dy),
                b: whole(b.x),
                c: grad_block(),
                bias: None,
                aux: None,
            },
            &mut uniforms,
        )?;
        backward.extend(bias_grad(
            gpu,
            k,
            bsz,
            no,
            whole(b.dy),
            grad_block(),
            shape.weight_len() as u32,
            &mut uniforms,
        )?);
        if let Some(dx) = b.dx {
            // dx (B, I) = dy (B, O) . W (O, I)
            backward.extend(matmul(
                gpu,
                k,
                MatmulArgs {
                    params: MatmulParams {
                        m: bsz,
                        n: ni,
                        k: no,
                        a_row: no,
                        a_col: 1,
                        b_row: ni,
                        b_col: 1,
                        flags: if b.dx_relu_mask.is_some() { FLAG_MASK } else { 0 },
                        ..Default::default()
                    },
                    a: whole(b.dy),
                    b: block(),
                    c: whole(dx),
                    bias: None,
                    aux: b.dx_relu_mask.map(whole),
                },
                &mut uniforms,
            )?);
        }
        Ok(Dense { shape, forward, backward, uniforms })
    }
}
