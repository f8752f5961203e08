//! One matrix product as the matmul tests state it: c (m, n) = a . b with the stride
//! patterns the dense layers use, and the bias read from offset 3 (so that a bias slice
//! starting inside a buffer is what every test exercises).

use gpu_train::layers::dense::MatmulParams;

#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// A stored (m, k) row-major (true) or (k, m) (false: dy^T in the weight gradient).
    pub a_rows: bool,
    /// B stored (k, n) row-major (true) or (n, k) (false: W^T in the forward pass).
    pub b_rows: bool,
    pub flags: u32,
}

impl Case {
    pub fn params(&self) -> MatmulParams {
        let (a_row, a_col) = if self.a_rows { (self.k, 1) } else { (1, self.m) };
        let (b_row, b_col) = if self.b_rows { (self.n, 1) } else { (1, self.k) };
        let (m, n, k, flags) = (self.m, self.n, self.k, self.flags);
        MatmulParams { m, n, k, a_row, a_col, b_row, b_col, flags, bias_offset: 3, ..Default::default() }
    }
}

/// A product's inputs: A and B in the case's layouts, the bias (read from offset 3) and
/// the mask operand `aux` (m, n).
pub struct Operands {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub bias: Vec<f32>,
    pub aux: Vec<f32>,
}

impl Case {
    /// Random operands from `seed`: uniform in [-1, 1), or (`exact`) small whole numbers,
    /// whose every sum f32 holds exactly.
    pub fn operands(&self, seed: u64, exact: bool) -> Operands {
        use crate::common::{random, rng, small_ints};
        let mut r = rng(seed);
        let mut draw =
            |n: u32| if exact { small_ints(&mut r, n as usize) } else { random(&mut r, n as usize) };
        let (a, b) = (draw(self.m * self.k), draw(self.k * self.n));
        let (bias, aux) = (draw(self.n + 3), draw(self.m * self.n));
        Operands { a, b, bias, aux }
    }

    /// Runs the product with `k` (its loop bounds checked first), B bound `b_offset` words
    /// into its buffer after words of 1e9 (as the dense layers bind their weights: one range
    /// of the parameter buffer); returns c and the dispatches' names.
    pub fn run(
        &self,
        gpu: &gpu_train::gpu::Gpu,
        k: &gpu_train::kernels::Kernels,
        ops: &Operands,
        b_offset: usize,
    ) -> (Vec<f32>, Vec<&'static str>) {
        use gpu_train::kernels::{whole, words};
        let mut b_words = vec![1e9f32; b_offset];
        b_words.extend(&ops.b);
        let (ab, bb) = (gpu.storage_init("a", &ops.a).unwrap(), gpu.storage_init("b", &b_words).unwrap());
        let (biasb, auxb) =
            (gpu.storage_init("bias", &ops.bias).unwrap(), gpu.storage_init("aux", &ops.aux).unwrap());
        let cb = gpu.storage("c", (self.m * self.n) as usize).unwrap();
        let mut owned = Vec::new();
        let args = gpu_train::layers::dense::MatmulArgs {
            params: self.params(),
            a: whole(&ab),
            b: words(&bb, b_offset, ops.b.len()),
            c: whole(&cb),
            bias: Some(whole(&biasb)),
            aux: Some(whole(&auxb)),
        };
        let ds = gpu_train::layers::dense::matmul(gpu, k, args, &mut owned).unwrap();
        gpu_train::loop_budget::check(gpu, &ds).unwrap();
        crate::common::run(gpu, &ds.iter().collect::<Vec<_>>());
        (gpu.read_f32(&cb).unwrap(), ds.iter().map(|d| d.name).collect())
    }
}
