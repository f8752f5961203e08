// conv.wgsl's kernels, GPU-shaped: the autotuner's conv variant 1 ("tiled"), built at 64
// lanes and appended to conv.wgsl with the family's summation order (PER_IC_SUM).
//
// A workgroup owns a 16x16-pixel tile of one image (8x8 2x2 blocks, one per lane) for OT
// output channels. Per stage of TILED_IC input channels the lanes stage, in workgroup
// memory, the tile's 18x18 input patches (zero outside the image) and the stage's weights
// (as vec4s of 4 channels); after a barrier each lane reads its 4x4 patch there and the
// weights (the same address on every lane). Input values are read from storage once per
// tile instead of up to 4 times per block.
//
// The sums run over input channels, then taps, in the order of the family's accumulate,
// so this variant gives the same bits: PER_IC_SUM = 0 adds each tap into the accumulator
// (conv_accumulate_subgroup.wgsl), 1 sums one input channel's 9 taps first and adds that
// (conv_accumulate.wgsl).

override PER_IC_SUM: u32 = 0u;
// lanes per workgroup (the module is built with WG = TILE_LANES), 2x2 blocks per tile side
const TILE_LANES: u32 = 64u;
const TILE_BLOCKS: u32 = 8u;
const TILED_IC: u32 = 4u;
// an 18x18 patch per input channel: the 16x16 tile and a 1-pixel border
const PATCH_SIDE: u32 = 2u * TILE_BLOCKS + 2u;
const PATCH_LEN: u32 = PATCH_SIDE * PATCH_SIDE;
// a stage's weights: 9 taps x OT channels, as vec4s
const STAGE_W4: u32 = 9u * OT / 4u;

@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

fn biases(blk: Block) -> array<f32, 16> {
    return own_biases(blk);
}

var<workgroup> inputs: array<f32, TILED_IC * PATCH_LEN>;
var<workgroup> weights: array<vec4<f32>, TILED_IC * STAGE_W4>;

// groups_per_block = batch * tiles per image; lanes are row-major over the tile's blocks.
fn place(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Block {
    let group = wid.x + wid.y * nwg.x;
    let block = group / p.groups_per_block;
    let r = group % p.groups_per_block;
    let ph = p.height / 2u;
    let pw = p.width / 2u;
    let tiles_x = (pw + TILE_BLOCKS - 1u) / TILE_BLOCKS;
    let tiles_y = (ph + TILE_BLOCKS - 1u) / TILE_BLOCKS;
    let tile = r % (tiles_x * tiles_y);
    let qy = (tile / tiles_x) * TILE_BLOCKS + lid / TILE_BLOCKS;
    let qx = (tile % tiles_x) * TILE_BLOCKS + lid % TILE_BLOCKS;
    var out: Block;
    out.valid = qy < ph && qx < pw && block * OT < p.out_channels;
    out.b = min(r / (tiles_x * tiles_y), p.batch - 1u);
    out.y0 = min(qy, ph - 1u) * 2u;
    out.x0 = min(qx, pw - 1u) * 2u;
    out.oc0 = min(block * OT, p.out_channels - OT);
    out.pooled_index = min(qy, ph - 1u) * pw + min(qx, pw - 1u);
    out.lane = lid;
    out.tile = vec2((tile % tiles_x) * 2u * TILE_BLOCKS, (tile / tiles_x) * 2u * TILE_BLOCKS);
    return out;
}

struct Acc16 {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    a4: vec4<f32>,
    a5: vec4<f32>,
    a6: vec4<f32>,
    a7: vec4<f32>,
    a8: vec4<f32>,
    a9: vec4<f32>,
    a10: vec4<f32>,
    a11: vec4<f32>,
    a12: vec4<f32>,
    a13: vec4<f32>,
    a14: vec4<f32>,
    a15: vec4<f32>,
}

// One tap for the 16 channels (w0..w3: channels 0-3, 4-7, 8-11, 12-15) added into acc.
fn tiled_tap(acc: Acc16, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, v: vec4<f32>) -> Acc16 {
    var r = acc;
    r.a0 = r.a0 + w0.x * v;
    r.a1 = r.a1 + w0.y * v;
    r.a2 = r.a2 + w0.z * v;
    r.a3 = r.a3 + w0.w * v;
    r.a4 = r.a4 + w1.x * v;
    r.a5 = r.a5 + w1.y * v;
    r.a6 = r.a6 + w1.z * v;
    r.a7 = r.a7 + w1.w * v;
    r.a8 = r.a8 + w2.x * v;
    r.a9 = r.a9 + w2.y * v;
    r.a10 = r.a10 + w2.z * v;
    r.a11 = r.a11 + w2.w * v;
    r.a12 = r.a12 + w3.x * v;
    r.a13 = r.a13 + w3.y * v;
    r.a14 = r.a14 + w3.z * v;
    r.a15 = r.a15 + w3.w * v;
    return r;
}

// The first tap's products (the start of a per-channel sum).
fn tiled_first(w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, v: vec4<f32>) -> Acc16 {
    var r: Acc16;
    r.a0 = w0.x * v;
    r.a1 = w0.y * v;
    r.a2 = w0.z * v;
    r.a3 = w0.w * v;
    r.a4 = w1.x * v;
    r.a5 = w1.y * v;
    r.a6 = w1.z * v;
    r.a7 = w1.w * v;
    r.a8 = w2.x * v;
    r.a9 = w2.y * v;
    r.a10 = w2.z * v;
    r.a11 = w2.w * v;
    r.a12 = w3.x * v;
    r.a13 = w3.y * v;
    r.a14 = w3.z * v;
    r.a15 = w3.w * v;
    return r;
}

fn tiled_add(acc: Acc16, s: Acc16) -> Acc16 {
    var r = acc;
    r.a0 = r.a0 + s.a0;
    r.a1 = r.a1 + s.a1;
    r.a2 = r.a2 + s.a2;
    r.a3 = r.a3 + s.a3;
    r.a4 = r.a4 + s.a4;
    r.a5 = r.a5 + s.a5;
    r.a6 = r.a6 + s.a6;
    r.a7 = r.a7 + s.a7;
    r.a8 = r.a8 + s.a8;
    r.a9 = r.a9 + s.a9;
    r.a10 = r.a10 + s.a10;
    r.a11 = r.a11 + s.a11;
    r.a12 = r.a12 + s.a12;
    r.a13 = r.a13 + s.a13;
    r.a14 = r.a14 + s.a14;
    r.a15 = r.a15 + s.a15;
    return r;
}

// Tap t's weights for the stage's channel c.
fn stage_w(c: u32, t: u32, q: u32) -> vec4<f32> {
    return weights[c * STAGE_W4 + t * (OT / 4u) + q];
}

// Stage channel c's contribution to the lane's block, whose 4x4 patch starts at `at`.
fn tiled_channel(acc: Acc16, c: u32, at: u32) -> Acc16 {
    var v: array<f32, 16>;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            v[i * 4u + j] = inputs[at + i * PATCH_SIDE + j];
        }
    }
    var t: array<vec4<f32>, 9>;
    for (var ty = 0u; ty < 3u; ty++) {
        for (var tx = 0u; tx < 3u; tx++) {
            let o = ty * 4u + tx;
            t[ty * 3u + tx] = vec4(v[o], v[o + 1u], v[o + 4u], v[o + 5u]);
        }
    }
    if PER_IC_SUM == 1u {
        var s = tiled_first(stage_w(c, 0u, 0u), stage_w(c, 0u, 1u), stage_w(c, 0u, 2u), stage_w(c, 0u, 3u), t[0]);
        for (var k = 1u; k < 9u; k++) {
            s = tiled_tap(s, stage_w(c, k, 0u), stage_w(c, k, 1u), stage_w(c, k, 2u), stage_w(c, k, 3u), t[k]);
        }
        return tiled_add(acc, s);
    }
    var r = acc;
    for (var k = 0u; k < 9u; k++) {
        r = tiled_tap(r, stage_w(c, k, 0u), stage_w(c, k, 1u), stage_w(c, k, 2u), stage_w(c, k, 3u), t[k]);
    }
    return r;
}

// acc[o] = the 2x2 block of output channel oc0 + o (before bias).
fn accumulate(blk: Block) -> array<vec4<f32>, 16> {
    let lane = blk.lane;
    let at = (lane / TILE_BLOCKS) * 2u * PATCH_SIDE + (lane % TILE_BLOCKS) * 2u;
    let row = p.out_channels / 4u;
    let image = blk.b * p.in_channels;
    var acc: Acc16;
    let stages = (p.in_channels + TILED_IC - 1u) / TILED_IC;
    for (var s = 0u; s < stages; s++) {
        let ic0 = s * TILED_IC;
        for (var i = lane; i < TILED_IC * PATCH_LEN; i += TILE_LANES) {
            let c = i / PATCH_LEN;
            let y = i32(blk.tile.y + (i % PATCH_LEN) / PATCH_SIDE) - 1;
            let x = i32(blk.tile.x + i % PATCH_SIDE) - 1;
            var v = 0.0;
            if ic0 + c < p.in_channels && y >= 0 && y < i32(p.height) && x >= 0 && x < i32(p.width) {
                v = src[((image + ic0 + c) * p.height + u32(y)) * p.width + u32(x)];
            }
            inputs[i] = v;
        }
        for (var i = lane; i < TILED_IC * STAGE_W4; i += TILE_LANES) {
            let c = i / STAGE_W4;
            var w = vec4(0.0);
            if ic0 + c < p.in_channels {
                let tap = (i % STAGE_W4) / (OT / 4u);
                w = wt[((ic0 + c) * 9u + tap) * row + blk.oc0 / 4u + i % (OT / 4u)];
            }
            weights[i] = w;
        }
        workgroupBarrier();
        for (var c = 0u; c < TILED_IC; c++) {
            if ic0 + c < p.in_channels {
                acc = tiled_channel(acc, c, c * PATCH_LEN + at);
            }
        }
        workgroupBarrier();
    }
    return array<vec4<f32>, 16>(acc.a0, acc.a1, acc.a2, acc.a3, acc.a4, acc.a5, acc.a6, acc.a7, acc.a8, acc.a9, acc.a10, acc.a11, acc.a12, acc.a13, acc.a14, acc.a15);
}
