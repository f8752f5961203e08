// conv_wgrad_ic's gradient fetch, subgroup variant (8-lane subgroups): lane l loads
// channel oc0 + l (two pixels, one vec2) and subgroupBroadcast shares it, one load per
// lane instead of 8. Appended to conv_wgrad.wgsl.

// dy of channels oc0 .. oc0 + 7 at two pixels; `at` (even) is channel oc0's index.
fn grads8(at: u32, plane: u32, lane: u32) -> Grads8Pair {
    let mine = dy[(at + (lane % 8u) * plane) / 2u];
    return split8(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u),
                  subgroupBroadcast(mine, 3u), subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u),
                  subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
}
