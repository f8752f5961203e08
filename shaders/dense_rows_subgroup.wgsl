// matmul's A fetch, subgroup variant (8-lane subgroups): lane l loads row m0 + l and
// subgroupBroadcast shares it. Appended to dense.wgsl.

fn a_rows8(m0: u32, kk: u32, lane: u32) -> array<f32, 8> {
    let mine = a_at(m0 + lane % 8u, kk);
    return array<f32, 8>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u),
                         subgroupBroadcast(mine, 3u), subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u),
                         subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
}
