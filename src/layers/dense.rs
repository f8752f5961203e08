//! Dense layer y = x . W^T + b (optionally ReLU), forward and backward.
//!
//! x (B, I) row-major, W (O, I) as in PyTorch, followed by b (O) in one parameter block.
//! Backward from dy (B, O): dW = dy^T . x, db = column sums of dy, and optionally
//! dx = dy . W, masked by the previous layer's ReLU (dx = 0 where that activation <= 0).

use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, whole, words};

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
    pub _pad: u32,
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

/// c = a . b (plus the epilogue in params.flags). B rows or columns that can be read as
/// vec4s go to matmul_rows or matmul_cols, the rest to matmul.
pub fn matmul(
    gpu: &Gpu,
    k: &Kernels,
    args: MatmulArgs,
    uniforms: &mut Vec<wgpu::Buffer>,
) -> Result<Dispatch> {
    let mut params = args.params;
    let rows_as_vec4 = params.b_col == 1 && params.b_row.is_multiple_of(4) && params.n.is_multiple_of(4);
    let cols_as_vec4 = params.b_row == 1 && params.b_col.is_multiple_of(4) && params.k.is_multiple_of(4);
    let kernel = if rows_as_vec4 {
        &k.matmul_rows
    } else if cols_as_vec4 {
        &k.matmul_cols
    } else {
        &k.matmul
    };
    params.n_groups = params.n.div_ceil(kernel.workgroup_size * TILE.1);
    let uniform = gpu.uniform_init("matmul params", &[params]);
    let groups = params.m.div_ceil(TILE.0) * params.n_groups;
    let entries = vec![
        (0, whole(&uniform)),
        (1, args.a.clone()),
        (2, args.b.clone()),
        (3, args.c),
        (4, args.bias.unwrap_or_else(|| args.a.clone())),
        (5, args.aux.unwrap_or_else(|| args.a.clone())),
        (6, args.b),
    ];
    let flops = 2 * params.m as u64 * params.n as u64 * params.k as u64;
    let d = Dispatch::with_groups(gpu, kernel, groups, &entries)?.with_flops(flops);
    uniforms.push(uniform);
    Ok(d)
}

/// c[c_offset + n] = sum over the rows of dy (rows x cols), in row order.
#[allow(clippy::too_many_arguments)]
pub fn bias_grad(
    gpu: &Gpu,
    k: &Kernels,
    rows: u32,
    cols: u32,
    dy: wgpu::BindingResource,
    c: wgpu::BindingResource,
    c_offset: u32,
    uniforms: &mut Vec<wgpu::Buffer>,
) -> Result<Dispatch> {
    let params = MatmulParams { m: rows, n: cols, c_offset, ..Default::default() };
    let uniform = gpu.uniform_init("bias_grad params", &[params]);
    let d = Dispatch::new(gpu, &k.bias_grad, cols, &[(0, whole(&uniform)), (1, dy), (3, c)])?;
    uniforms.push(uniform);
    Ok(d)
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
    pub fn new(gpu: &Gpu, k: &Kernels, shape: DenseShape, relu: bool, b: &DenseBuffers) -> Result<Self> {
        let (bsz, ni, no) = (shape.batch as u32, shape.inputs as u32, shape.outputs as u32);
        let block = || words(b.params, b.offset, shape.param_len());
        let grad_block = || words(b.grads, b.offset, shape.param_len());
        let mut uniforms = Vec::new();
        let forward = vec![matmul(
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
        )?];
        let mut backward = vec![
            // dW (O, I) = dy^T (O, B) . x (B, I)
            matmul(
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
            )?,
            bias_grad(gpu, k, bsz, no, whole(b.dy), grad_block(), shape.weight_len() as u32, &mut uniforms)?,
        ];
        if let Some(dx) = b.dx {
            // dx (B, I) = dy (B, O) . W (O, I)
            backward.push(matmul(
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
