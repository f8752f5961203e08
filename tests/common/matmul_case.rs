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
