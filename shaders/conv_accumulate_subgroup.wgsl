// conv.wgsl's inner loop, subgroup variant, for workgroups that are exactly one 8-lane
// subgroup (lavapipe). Loads, not arithmetic, bound a CPU adapter: here each lane loads 2
// of the 16 channels' weights per tap and subgroupBroadcast shares them, so a lane loads
// 18 weights per input channel instead of 144. Appended to conv.wgsl.

@group(0) @binding(2) var<storage, read> wt: array<f32>;

struct Acc16 {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
    a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>,
    a8: vec4<f32>, a9: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>,
    a12: vec4<f32>, a13: vec4<f32>, a14: vec4<f32>, a15: vec4<f32>,
}

// One tap for all 16 channels: lane l holds channel l's weight in lo, channel 8 + l's in hi.
fn tap(acc: Acc16, lo: f32, hi: f32, v: vec4<f32>) -> Acc16 {
    var r = acc;
    r.a0 += subgroupBroadcast(lo, 0u) * v;
    r.a1 += subgroupBroadcast(lo, 1u) * v;
    r.a2 += subgroupBroadcast(lo, 2u) * v;
    r.a3 += subgroupBroadcast(lo, 3u) * v;
    r.a4 += subgroupBroadcast(lo, 4u) * v;
    r.a5 += subgroupBroadcast(lo, 5u) * v;
    r.a6 += subgroupBroadcast(lo, 6u) * v;
    r.a7 += subgroupBroadcast(lo, 7u) * v;
    r.a8 += subgroupBroadcast(hi, 0u) * v;
    r.a9 += subgroupBroadcast(hi, 1u) * v;
    r.a10 += subgroupBroadcast(hi, 2u) * v;
    r.a11 += subgroupBroadcast(hi, 3u) * v;
    r.a12 += subgroupBroadcast(hi, 4u) * v;
    r.a13 += subgroupBroadcast(hi, 5u) * v;
    r.a14 += subgroupBroadcast(hi, 6u) * v;
    r.a15 += subgroupBroadcast(hi, 7u) * v;
    return r;
}

// acc[o] = the 2x2 block of output channel oc0 + o (before bias).
fn accumulate(blk: Block) -> array<vec4<f32>, 16> {
    let tile = tile_for(blk);
    let lane = blk.lane;
    var acc: Acc16;
    for (var ic = 0u; ic < p.in_channels; ic++) {
        let t = load_taps(blk, tile, ic);
        // wt is (in, 9, out): tap k of channel oc0 + c sits at at + k * out + c
        let at = ic * 9u * p.out_channels + blk.oc0 + lane;
        let s = p.out_channels;
        acc = tap(acc, wt[at], wt[at + 8u], t.t0);
        acc = tap(acc, wt[at + s], wt[at + s + 8u], t.t1);
        acc = tap(acc, wt[at + 2u * s], wt[at + 2u * s + 8u], t.t2);
        acc = tap(acc, wt[at + 3u * s], wt[at + 3u * s + 8u], t.t3);
        acc = tap(acc, wt[at + 4u * s], wt[at + 4u * s + 8u], t.t4);
        acc = tap(acc, wt[at + 5u * s], wt[at + 5u * s + 8u], t.t5);
        acc = tap(acc, wt[at + 6u * s], wt[at + 6u * s + 8u], t.t6);
        acc = tap(acc, wt[at + 7u * s], wt[at + 7u * s + 8u], t.t7);
        acc = tap(acc, wt[at + 8u * s], wt[at + 8u * s + 8u], t.t8);
    }
    return array<vec4<f32>, 16>(acc.a0, acc.a1, acc.a2, acc.a3, acc.a4, acc.a5, acc.a6, acc.a7,
                                acc.a8, acc.a9, acc.a10, acc.a11, acc.a12, acc.a13, acc.a14, acc.a15);
}
