// matmul_tall: like matmul, but a workgroup shares 16 rows (two a_rows8 fetches) and
// each lane owns 4 consecutive columns. Appended to dense.wgsl with an a_rows8 helper,
// then a_quad and a_quad_rows (dense_tall_fetch*.wgsl, of the same family).
//
// Why: on an adapter that runs a workgroup as one SIMD program (llvmpipe), a load whose
// address differs per lane costs a scalar load per lane, while broadcasting a value from
// one lane is cheap. Per k-step a lane here loads 4 B values and 2 A values (the others
// arrive by a_rows8) for 64 multiply-adds, against matmul's 8 and 1 for 64; where A comes
// as vec4s (TALL_A_LOAD), 2 A loads serve 4 k-steps.
// Sums run over k in order as in matmul, so both give identical results.

// How this pipeline reads B: B_SCALAR, B_ROWS or B_COLS (dense.wgsl), set when it is built
// to matmul_rows' or matmul_cols' condition on the strides. Chosen at run time, the ways
// no lane takes still cost a CPU adapter time (llvmpipe: about 15% of a 128 x 3136 x
// 128 product).
override TALL_B_LOAD: u32 = 0u;

// How this pipeline reads A in its loops of 4 k-steps, set when it is built from the
// strides (the host's ALoad): A_SCALAR, by a_rows8 at each k-step; A_K4 where A's rows
// run along k (a_col = 1, a_row a multiple of 4, slices starting at multiples of 4): a
// row's 4 k-steps as one vec4; A_M4 where A's columns run along m (a_row = 1, a_col and
// m multiples of 4): 4 rows' values at one k-step as one vec4. On 8-lane subgroups a lane
// then makes 2 vec4 loads per 4 k-steps instead of 8 scalar ones, and a vec4 load costs a
// CPU adapter about two scalar ones (tall_quad; a_quad and a_quad_rows in
// dense_tall_fetch*.wgsl).
override TALL_A_LOAD: u32 = 0u;
const A_SCALAR: u32 = 0u;
const A_K4: u32 = 1u;
const A_M4: u32 = 2u;

// A as vec4s, for A_K4 and A_M4.
@group(0) @binding(11) var<storage, read> a4: array<vec4<f32>>;

// The vec4 holding row `row`'s k-steps kk .. kk + 3 (A_K4; rows past m re-read the last).
fn a_k4_at(row: u32, kk: u32) -> vec4<f32> {
    return a4[(min(row, p.m - 1u) * p.a_row + kk) / 4u];
}

// The vec4 holding rows row .. row + 3 at k-step kk (A_M4; row a multiple of 4, groups
// past m re-read the last).
fn a_m4_at(row: u32, kk: u32) -> vec4<f32> {
    return a4[(min(row, p.m - 4u) + kk * p.a_col) / 4u];
}

const TALL_M: u32 = 16u;
const TALL_N: u32 = 4u;

// A lane's 16 x 4 outputs, row by row (a struct, not an array: the CPU adapter's compiler
// keeps named fields in registers but copies arrays passed by value).
struct Tall {
    r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
    r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>,
    r8: vec4<f32>, r9: vec4<f32>, r10: vec4<f32>, r11: vec4<f32>,
    r12: vec4<f32>, r13: vec4<f32>, r14: vec4<f32>, r15: vec4<f32>,
}

// A's values of the 16 rows at one k-step: rows m0 .. m0 + 7 (lo), m0 + 8 .. m0 + 15 (hi).
struct TallRows {
    lo: array<f32, 8>,
    hi: array<f32, 8>,
}

// One k-step: row i += a[m0 + i, k] * the lane's 4 B values.
fn tall_rows(t: Tall, bv: vec4<f32>, a: TallRows) -> Tall {
    let lo = a.lo;
    let hi = a.hi;
    return Tall(t.r0 + lo[0] * bv, t.r1 + lo[1] * bv, t.r2 + lo[2] * bv, t.r3 + lo[3] * bv,
                t.r4 + lo[4] * bv, t.r5 + lo[5] * bv, t.r6 + lo[6] * bv, t.r7 + lo[7] * bv,
                t.r8 + hi[0] * bv, t.r9 + hi[1] * bv, t.r10 + hi[2] * bv, t.r11 + hi[3] * bv,
                t.r12 + hi[4] * bv, t.r13 + hi[5] * bv, t.r14 + hi[6] * bv, t.r15 + hi[7] * bv);
}

// One k-step, A by a_rows8.
fn tall_step(t: Tall, bv: vec4<f32>, m0: u32, kk: u32, lid: u32) -> Tall {
    return tall_rows(t, bv, TallRows(a_rows8(m0, kk, lid), a_rows8(m0 + 8u, kk, lid)));
}

// Four k-steps kk .. kk + 3 (kk a multiple of 4 for A_K4), B's values b0 .. b3, A as
// TALL_A_LOAD says: the same sums in the same order whichever way A is read.
fn tall_quad(t: Tall, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>, m0: u32, kk: u32,
             lid: u32) -> Tall {
    var r = t;
    if TALL_A_LOAD == A_SCALAR {
        r = tall_step(r, b0, m0, kk, lid);
        r = tall_step(r, b1, m0, kk + 1u, lid);
        r = tall_step(r, b2, m0, kk + 2u, lid);
        r = tall_step(r, b3, m0, kk + 3u, lid);
    } else {
        let q = a_quad(m0, kk, lid);
        r = tall_rows(r, b0, a_quad_rows(q, 0u));
        r = tall_rows(r, b1, a_quad_rows(q, 1u));
        r = tall_rows(r, b2, a_quad_rows(q, 2u));
        r = tall_rows(r, b3, a_quad_rows(q, 3u));
    }
    return r;
}

// B's row kk at the lane's 4 columns (offsets bo), by scalar loads.
fn b_cols(bo: vec4<u32>, kk: u32) -> vec4<f32> {
    let bk = kk * p.b_row;
    return vec4(b[bo.x + bk], b[bo.y + bk], b[bo.z + bk], b[bo.w + bk]);
}

@compute @workgroup_size(WG)
fn matmul_tall(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    // p.n_groups = ceil(n / (WG * TALL_N)) here
    let at = tile_place(wid, nwg, TALL_M);
    let split = at.split;
    let m0 = at.m0;
    let k_begin = at.k_begin;
    let k_end = at.k_end;
    let n0 = (at.block * WG + lid) * TALL_N;
    if m0 >= p.m || split >= p.splits {
        return;
    }
    // columns past the edge re-read the last valid one and store nothing
    let nl = p.n - 1u;
    let bo = vec4(min(n0, nl), min(n0 + 1u, nl), min(n0 + 2u, nl), min(n0 + 3u, nl)) * p.b_col;
    var t: Tall;
    // B's rows as vec4s where they are contiguous and aligned (matmul_rows' condition)
    if TALL_B_LOAD == B_ROWS {
        let n4 = min(n0, p.n - 4u) / 4u;
        let row4 = p.b_row / 4u;
        // 4 k-steps an iteration (fewer loop passes), then the rest
        var kk = k_begin;
        for (; kk + 4u <= k_end; kk += 4u) {
            let at = kk * row4 + n4;
            t = tall_quad(t, b4[at], b4[at + row4], b4[at + 2u * row4], b4[at + 3u * row4], m0, kk, lid);
        }
        for (; kk < k_end; kk++) {
            t = tall_step(t, b4[kk * row4 + n4], m0, kk, lid);
        }
    } else if TALL_B_LOAD == B_COLS {
        // B's columns as vec4s along k (matmul_cols' condition; slices are whole vec4s
        // long): 4 k-steps per iteration
        for (var kk = k_begin; kk < k_end; kk += 4u) {
            let q0 = b4[(bo.x + kk) / 4u];
            let q1 = b4[(bo.y + kk) / 4u];
            let q2 = b4[(bo.z + kk) / 4u];
            let q3 = b4[(bo.w + kk) / 4u];
            t = tall_quad(t, vec4(q0.x, q1.x, q2.x, q3.x), vec4(q0.y, q1.y, q2.y, q3.y),
                          vec4(q0.z, q1.z, q2.z, q3.z), vec4(q0.w, q1.w, q2.w, q3.w), m0, kk, lid);
        }
    } else {
        var kk = k_begin;
        for (; kk + 4u <= k_end; kk += 4u) {
            t = tall_quad(t, b_cols(bo, kk), b_cols(bo, kk + 1u), b_cols(bo, kk + 2u), b_cols(bo, kk + 3u), m0,
                          kk, lid);
        }
        for (; kk < k_end; kk++) {
            t = tall_step(t, b_cols(bo, kk), m0, kk, lid);
        }
    }
    // straight-line stores: a loop over an array of the outputs would index it with a
    // counter, which the CPU adapter's compiler does in memory
    let base = p.c_offset + split * p.m * p.n;
    store_row(base, m0, n0, t.r0); store_row(base, m0 + 1u, n0, t.r1);
    store_row(base, m0 + 2u, n0, t.r2); store_row(base, m0 + 3u, n0, t.r3);
    store_row(base, m0 + 4u, n0, t.r4); store_row(base, m0 + 5u, n0, t.r5);
    store_row(base, m0 + 6u, n0, t.r6); store_row(base, m0 + 7u, n0, t.r7);
    store_row(base, m0 + 8u, n0, t.r8); store_row(base, m0 + 9u, n0, t.r9);
    store_row(base, m0 + 10u, n0, t.r10); store_row(base, m0 + 11u, n0, t.r11);
    store_row(base, m0 + 12u, n0, t.r12); store_row(base, m0 + 13u, n0, t.r13);
    store_row(base, m0 + 14u, n0, t.r14); store_row(base, m0 + 15u, n0, t.r15);
}

// The lane's 4 outputs of one row, those inside C, through the epilogue.
fn store_row(base: u32, row: u32, n0: u32, v: vec4<f32>) {
    if row >= p.m {
        return;
    }
    let at = row * p.n + n0;
    if n0 < p.n { c[base + at] = epilogue(v.x, at, n0); }
    if n0 + 1u < p.n { c[base + at + 1u] = epilogue(v.y, at + 1u, n0 + 1u); }
    if n0 + 2u < p.n { c[base + at + 2u] = epilogue(v.z, at + 2u, n0 + 2u); }
    if n0 + 3u < p.n { c[base + at + 3u] = epilogue(v.w, at + 3u, n0 + 3u); }
}
