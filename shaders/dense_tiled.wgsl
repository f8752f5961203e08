// matmul_tiled: the classic GPU GEMM. Appended to dense.wgsl (bindings, epilogue) and one
// of the slab fetches: dense_tiled_f32.wgsl (A and B as they are) or dense_tiled_f16.wgsl
// (f16 copies of them, the f16-storage variant; products and sums stay f32).
//
// A workgroup of 16 x 16 lanes owns a 64 x 64 tile of C. Per k-step of TILED_K it stages
// the tile's 64 x TILED_K slab of A and TILED_K x 64 slab of B in workgroup memory (each
// lane loads 4 values of each, consecutive lanes along whichever dimension is contiguous
// in memory, so that loads coalesce), then each lane adds the slab's products into its
// 4 x 4 outputs, held in registers: rows ty + 16 i and columns tx + 16 j, so that the lanes
// of a row of the workgroup read consecutive words of the B slab.
// Each output sums over k in order, as matmul does: both give identical results.

const TILED_M: u32 = 64u;
const TILED_N: u32 = 64u;
const TILED_K: u32 = 16u;
const TILED_LANES: u32 = 256u;

var<workgroup> a_slab: array<f32, 1024>; // [kk][mm], TILED_K x TILED_M
var<workgroup> b_slab: array<f32, 1024>; // [kk][nn], TILED_K x TILED_N

// Slab entry `i` of 1024 as (k offset, row or column offset): consecutive i run along k
// where the matrix is contiguous along k, else along the row or column.
fn slab_pos(i: u32, k_contiguous: bool) -> vec2<u32> {
    if k_contiguous {
        return vec2(i % TILED_K, i / TILED_K);
    }
    return vec2(i / TILED_M, i % TILED_M);
}

// built with WG = TILED_LANES
@compute @workgroup_size(WG)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    // p.n_groups = ceil(n / TILED_N) here; every value up to tx is the same for the whole
    // workgroup: the barriers stay uniform
    let at = tile_place(wid, nwg, TILED_M);
    let split = at.split;
    let m0 = at.m0;
    let n0 = at.block * TILED_N;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let k_begin = min(split, p.splits) * p.k_chunk;
    let k_end = select(min(p.k, k_begin + p.k_chunk), k_begin, split >= p.splits);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += TILED_K) {
        for (var r = 0u; r < 4u; r++) {
            let i = lid + r * TILED_LANES;
            let pa = slab_pos(i, p.a_col == 1u);
            let row = m0 + pa.y;
            let ka = k0 + pa.x;
            a_slab[pa.x * TILED_M + pa.y] = select(0.0, slab_a(min(row, p.m - 1u) * p.a_row + min(ka, p.k - 1u) * p.a_col),
                                                   row < p.m && ka < k_end);
            let pb = slab_pos(i, p.b_row == 1u);
            let col = n0 + pb.y;
            let kb = k0 + pb.x;
            b_slab[pb.x * TILED_N + pb.y] = select(0.0, slab_b(min(kb, p.k - 1u) * p.b_row + min(col, p.n - 1u) * p.b_col),
                                                   col < p.n && kb < k_end);
        }
        workgroupBarrier();
        let steps = min(TILED_K, k_end - k0);
        for (var kk = 0u; kk < steps; kk++) {
            let av = vec4(a_slab[kk * TILED_M + ty], a_slab[kk * TILED_M + ty + 16u],
                          a_slab[kk * TILED_M + ty + 32u], a_slab[kk * TILED_M + ty + 48u]);
            let bv = vec4(b_slab[kk * TILED_N + tx], b_slab[kk * TILED_N + tx + 16u],
                          b_slab[kk * TILED_N + tx + 32u], b_slab[kk * TILED_N + tx + 48u]);
            acc[0] += av[0] * bv;
            acc[1] += av[1] * bv;
            acc[2] += av[2] * bv;
            acc[3] += av[3] * bv;
        }
        workgroupBarrier();
    }
    if split >= p.splits {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        let row = m0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + tx + 16u * j;
            if row < p.m && col < p.n {
                let at = row * p.n + col;
                c[p.c_offset + split * p.m * p.n + at] = epilogue(acc[i][j], at, col);
            }
        }
    }
}
