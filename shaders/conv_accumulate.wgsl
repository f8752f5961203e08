// conv.wgsl's inner loop, plain variant: every lane loads the weights it uses, four
// output channels per vec4 load. Appended to conv.wgsl.

@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

fn biases(blk: Block) -> array<f32, 16> {
    return own_biases(blk);
}

// Lanes take consecutive 2x2 blocks of the batch, workgroups a channel block.
fn place(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Block {
    return locate(wid, nwg, lid);
}

fn outer(w: vec4<f32>, v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(w * v.x, w * v.y, w * v.z, w * v.w);
}

// Four output channels' contribution from one input channel: column c of the result is
// pixel c of the block, row r is channel r. `at` indexes wt (vec4s), `step` is one tap.
fn mac9(at: u32, step: u32, t: Taps) -> mat4x4<f32> {
    return outer(wt[at], t.t0) + outer(wt[at + step], t.t1) + outer(wt[at + 2u * step], t.t2)
         + outer(wt[at + 3u * step], t.t3) + outer(wt[at + 4u * step], t.t4) + outer(wt[at + 5u * step], t.t5)
         + outer(wt[at + 6u * step], t.t6) + outer(wt[at + 7u * step], t.t7) + outer(wt[at + 8u * step], t.t8);
}

// acc[o] = the 2x2 block of output channel oc0 + o (before bias).
// Named accumulators instead of a loop keep them in registers.
fn accumulate(blk: Block) -> array<vec4<f32>, 16> {
    let tile = tile_for(blk);
    let step = p.out_channels / 4u;
    var m0 = mat4x4<f32>(); var m1 = mat4x4<f32>(); var m2 = mat4x4<f32>(); var m3 = mat4x4<f32>();
    for (var ic = 0u; ic < p.in_channels; ic++) {
        let t = load_taps(blk, tile, ic);
        let at = ic * 9u * step + blk.oc0 / 4u;
        m0 += mac9(at, step, t);
        m1 += mac9(at + 1u, step, t);
        m2 += mac9(at + 2u, step, t);
        m3 += mac9(at + 3u, step, t);
    }
    // rows of mK are channels: transpose to one vec4 of pixels per channel
    let t0 = transpose(m0);
    let t1 = transpose(m1);
    let t2 = transpose(m2);
    let t3 = transpose(m3);
    return array<vec4<f32>, 16>(t0[0], t0[1], t0[2], t0[3], t1[0], t1[1], t1[2], t1[3],
                                t2[0], t2[1], t2[2], t2[3], t3[0], t3[1], t3[2], t3[3]);
}
