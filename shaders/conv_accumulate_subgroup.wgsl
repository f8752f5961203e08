// conv.wgsl's inner loop, subgroup variant, for workgroups that are exactly one 8-lane
// subgroup (lavapipe). Loads, not arithmetic, bound a CPU adapter. Per input channel the
// 16 channels' 9 taps are 36 vec4s of wt; each lane loads 4 or 5 of them (a vec4 load
// costs about two scalar ones there) and subgroupBroadcast hands them round, so a lane
// loads under 10 scalars' worth of weights per input channel instead of 144.
// Appended to conv.wgsl.

@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

// Lane l loads the bias of channels oc0 + l and oc0 + 8 + l; subgroupBroadcast shares
// them (2 loads a lane instead of 16).
fn biases(blk: Block) -> array<f32, 16> {
    let at = p.bias_offset + blk.oc0 + blk.lane % 8u;
    let lo = layer[at];
    let hi = layer[at + 8u];
    return array<f32, 16>(subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u),
                          subgroupBroadcast(lo, 3u), subgroupBroadcast(lo, 4u), subgroupBroadcast(lo, 5u),
                          subgroupBroadcast(lo, 6u), subgroupBroadcast(lo, 7u), subgroupBroadcast(hi, 0u),
                          subgroupBroadcast(hi, 1u), subgroupBroadcast(hi, 2u), subgroupBroadcast(hi, 3u),
                          subgroupBroadcast(hi, 4u), subgroupBroadcast(hi, 5u), subgroupBroadcast(hi, 6u),
                          subgroupBroadcast(hi, 7u));
}

// Lanes take consecutive 2x2 blocks of the batch, workgroups a channel block.
fn place(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Block {
    return locate(wid, nwg, lid);
}

struct Acc16 {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
    a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>,
    a8: vec4<f32>, a9: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>,
    a12: vec4<f32>, a13: vec4<f32>, a14: vec4<f32>, a15: vec4<f32>,
}

// One tap for all 16 channels: w0..w3 hold channels 0-3, 4-7, 8-11, 12-15.
fn tap(acc: Acc16, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, v: vec4<f32>) -> Acc16 {
    var r = acc;
    r.a0 += w0.x * v; r.a1 += w0.y * v; r.a2 += w0.z * v; r.a3 += w0.w * v;
    r.a4 += w1.x * v; r.a5 += w1.y * v; r.a6 += w1.z * v; r.a7 += w1.w * v;
    r.a8 += w2.x * v; r.a9 += w2.y * v; r.a10 += w2.z * v; r.a11 += w2.w * v;
    r.a12 += w3.x * v; r.a13 += w3.y * v; r.a14 += w3.z * v; r.a15 += w3.w * v;
    return r;
}

// Taps 2k and 2k + 1 live in slot k: tap 2k's four vec4s on lanes 0-3, tap 2k + 1's on 4-7.
fn even_tap(acc: Acc16, slot: vec4<f32>, v: vec4<f32>) -> Acc16 {
    return tap(acc, subgroupBroadcast(slot, 0u), subgroupBroadcast(slot, 1u), subgroupBroadcast(slot, 2u),
               subgroupBroadcast(slot, 3u), v);
}

fn odd_tap(acc: Acc16, slot: vec4<f32>, v: vec4<f32>) -> Acc16 {
    return tap(acc, subgroupBroadcast(slot, 4u), subgroupBroadcast(slot, 5u), subgroupBroadcast(slot, 6u),
               subgroupBroadcast(slot, 7u), v);
}

// acc[o] = the 2x2 block of output channel oc0 + o (before bias).
fn accumulate(blk: Block) -> array<vec4<f32>, 16> {
    let tile = tile_for(blk);
    let lane = blk.lane;
    // wt is (in, 9, out) as vec4s: tap t's channels oc0 .. oc0 + 15 are 4 vec4s at
    // ic * 9 * row + t * row + oc0 / 4, with row = out / 4. Item i = 4 t + q, so lane l
    // loads items l, l + 8, l + 16, l + 24 and l + 32 (lanes 0-3 only: 36 items).
    let row = p.out_channels / 4u;
    let q = lane % 4u;
    let t_lane = lane / 4u;
    var acc: Acc16;
    for (var ic = 0u; ic < p.in_channels; ic++) {
        let at = ic * 9u * row + blk.oc0 / 4u + q;
        let s0 = wt[at + t_lane * row];
        let s1 = wt[at + (2u + t_lane) * row];
        let s2 = wt[at + (4u + t_lane) * row];
        let s3 = wt[at + (6u + t_lane) * row];
        let s4 = wt[at + 8u * row];
        let t = load_taps(blk, tile, ic);
        acc = even_tap(acc, s0, t.t0);
        acc = odd_tap(acc, s0, t.t1);
        acc = even_tap(acc, s1, t.t2);
        acc = odd_tap(acc, s1, t.t3);
        acc = even_tap(acc, s2, t.t4);
        acc = odd_tap(acc, s2, t.t5);
        acc = even_tap(acc, s3, t.t6);
        acc = odd_tap(acc, s3, t.t7);
        acc = even_tap(acc, s4, t.t8);
    }
    return array<vec4<f32>, 16>(acc.a0, acc.a1, acc.a2, acc.a3, acc.a4, acc.a5, acc.a6, acc.a7,
                                acc.a8, acc.a9, acc.a10, acc.a11, acc.a12, acc.a13, acc.a14, acc.a15);
}
