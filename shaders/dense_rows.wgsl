// matmul's A fetch, plain variant: every lane loads the 8 rows' values.
// Appended to dense.wgsl.

fn a_rows8(m0: u32, kk: u32, lane: u32) -> array<f32, 8> {
    return array<f32, 8>(a_at(m0, kk), a_at(m0 + 1u, kk), a_at(m0 + 2u, kk), a_at(m0 + 3u, kk),
                         a_at(m0 + 4u, kk), a_at(m0 + 5u, kk), a_at(m0 + 6u, kk), a_at(m0 + 7u, kk));
}
