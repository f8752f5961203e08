// matmul_tall's vec4 fetch of A (A_K4, A_M4), plain variant: every lane loads the whole
// 16-row x 4-k-step block, 16 vec4s. Appended to dense_tall.wgsl's module.
//
// A_K4: field i holds row m0 + i at k-steps kk .. kk + 3.
// A_M4: field 4 s + g holds rows m0 + 4 g .. + 3 at k-step kk + s.

struct AQuad {
    f0: vec4<f32>, f1: vec4<f32>, f2: vec4<f32>, f3: vec4<f32>,
    f4: vec4<f32>, f5: vec4<f32>, f6: vec4<f32>, f7: vec4<f32>,
    f8: vec4<f32>, f9: vec4<f32>, f10: vec4<f32>, f11: vec4<f32>,
    f12: vec4<f32>, f13: vec4<f32>, f14: vec4<f32>, f15: vec4<f32>,
}

fn a_quad(m0: u32, kk: u32, lane: u32) -> AQuad {
    if TALL_A_LOAD == A_K4 {
        return AQuad(a_k4_at(m0, kk), a_k4_at(m0 + 1u, kk), a_k4_at(m0 + 2u, kk), a_k4_at(m0 + 3u, kk),
                     a_k4_at(m0 + 4u, kk), a_k4_at(m0 + 5u, kk), a_k4_at(m0 + 6u, kk), a_k4_at(m0 + 7u, kk),
                     a_k4_at(m0 + 8u, kk), a_k4_at(m0 + 9u, kk), a_k4_at(m0 + 10u, kk), a_k4_at(m0 + 11u, kk),
                     a_k4_at(m0 + 12u, kk), a_k4_at(m0 + 13u, kk), a_k4_at(m0 + 14u, kk), a_k4_at(m0 + 15u, kk));
    }
    return AQuad(a_m4_at(m0, kk), a_m4_at(m0 + 4u, kk), a_m4_at(m0 + 8u, kk), a_m4_at(m0 + 12u, kk),
                 a_m4_at(m0, kk + 1u), a_m4_at(m0 + 4u, kk + 1u), a_m4_at(m0 + 8u, kk + 1u),
                 a_m4_at(m0 + 12u, kk + 1u), a_m4_at(m0, kk + 2u), a_m4_at(m0 + 4u, kk + 2u),
                 a_m4_at(m0 + 8u, kk + 2u), a_m4_at(m0 + 12u, kk + 2u), a_m4_at(m0, kk + 3u),
                 a_m4_at(m0 + 4u, kk + 3u), a_m4_at(m0 + 8u, kk + 3u), a_m4_at(m0 + 12u, kk + 3u));
}

// One of four vec4s by d (0 .. 3).
fn pick4(d: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, e: vec4<f32>) -> vec4<f32> {
    return select(select(a, b, d == 1u), select(c, e, d == 3u), d >= 2u);
}

// The 16 rows at k-step kk + d.
fn a_quad_rows(q: AQuad, d: u32) -> TallRows {
    if TALL_A_LOAD == A_K4 {
        return TallRows(array<f32, 8>(q.f0[d], q.f1[d], q.f2[d], q.f3[d], q.f4[d], q.f5[d], q.f6[d], q.f7[d]),
                        array<f32, 8>(q.f8[d], q.f9[d], q.f10[d], q.f11[d], q.f12[d], q.f13[d], q.f14[d],
                                      q.f15[d]));
    }
    let g0 = pick4(d, q.f0, q.f4, q.f8, q.f12);
    let g1 = pick4(d, q.f1, q.f5, q.f9, q.f13);
    let g2 = pick4(d, q.f2, q.f6, q.f10, q.f14);
    let g3 = pick4(d, q.f3, q.f7, q.f11, q.f15);
    return TallRows(array<f32, 8>(g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w),
                    array<f32, 8>(g2.x, g2.y, g2.z, g2.w, g3.x, g3.y, g3.z, g3.w));
}
