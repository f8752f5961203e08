// matmul_tall's vec4 fetch of A (A_K4, A_M4), subgroup variant (8-lane subgroups): each
// lane loads two vec4s of a 16-row x 4-k-step block and subgroupBroadcast shares them.
// Appended to dense_tall.wgsl's module.
//
// A_K4: lane l holds rows m0 + l (u) and m0 + 8 + l (v), k-steps kk .. kk + 3.
// A_M4: lane l holds rows m0 + 4 (l % 4) .. + 3 at k-step kk + l / 4 (u) and kk + 2 + l / 4
// (v): lanes 0-3 hold one k-step's 16 rows, lanes 4-7 the next.

struct AQuad {
    u: vec4<f32>,
    v: vec4<f32>,
}

fn a_quad(m0: u32, kk: u32, lane: u32) -> AQuad {
    let l = lane % 8u;
    if TALL_A_LOAD == A_K4 {
        return AQuad(a_k4_at(m0 + l, kk), a_k4_at(m0 + 8u + l, kk));
    }
    let row = m0 + 4u * (l % 4u);
    let step = kk + l / 4u;
    return AQuad(a_m4_at(row, step), a_m4_at(row, step + 2u));
}

// The 16 rows at k-step kk + d (d a literal at every call, so the selects fold away).
fn a_quad_rows(q: AQuad, d: u32) -> TallRows {
    if TALL_A_LOAD == A_K4 {
        let u0 = subgroupBroadcast(q.u, 0u); let u1 = subgroupBroadcast(q.u, 1u);
        let u2 = subgroupBroadcast(q.u, 2u); let u3 = subgroupBroadcast(q.u, 3u);
        let u4 = subgroupBroadcast(q.u, 4u); let u5 = subgroupBroadcast(q.u, 5u);
        let u6 = subgroupBroadcast(q.u, 6u); let u7 = subgroupBroadcast(q.u, 7u);
        let v0 = subgroupBroadcast(q.v, 0u); let v1 = subgroupBroadcast(q.v, 1u);
        let v2 = subgroupBroadcast(q.v, 2u); let v3 = subgroupBroadcast(q.v, 3u);
        let v4 = subgroupBroadcast(q.v, 4u); let v5 = subgroupBroadcast(q.v, 5u);
        let v6 = subgroupBroadcast(q.v, 6u); let v7 = subgroupBroadcast(q.v, 7u);
        return TallRows(array<f32, 8>(u0[d], u1[d], u2[d], u3[d], u4[d], u5[d], u6[d], u7[d]),
                        array<f32, 8>(v0[d], v1[d], v2[d], v3[d], v4[d], v5[d], v6[d], v7[d]));
    }
    // A_M4: k-steps kk and kk + 1 are in u, kk + 2 and kk + 3 in v; odd steps on lanes 4-7
    let src = select(q.u, q.v, d >= 2u);
    let odd = d % 2u == 1u;
    let g0 = select(subgroupBroadcast(src, 0u), subgroupBroadcast(src, 4u), odd);
    let g1 = select(subgroupBroadcast(src, 1u), subgroupBroadcast(src, 5u), odd);
    let g2 = select(subgroupBroadcast(src, 2u), subgroupBroadcast(src, 6u), odd);
    let g3 = select(subgroupBroadcast(src, 3u), subgroupBroadcast(src, 7u), odd);
    return TallRows(array<f32, 8>(g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w),
                    array<f32, 8>(g2.x, g2.y, g2.z, g2.w, g3.x, g3.y, g3.z, g3.w));
}
