// 3x3 convolution, stride 1, padding 1, NCHW f32.
//
// conv_fwd:   x (B, CI, H, W), w (CO, CI, 3, 3) followed by bias (CO) -> conv + bias, ReLU and 2x2
//             max-pool fused: y (B, CO, H/2, W/2) plus a 4-bit code per pooled value saying
//             which of the 4 window positions won (0..3), or 4 when ReLU zeroed it, packed
//             8 channels to a word: (B, CO/8, H/2, W/2) u32. The backward pass needs
//             nothing else. (Stores cost as much as loads on CPU adapters: packing saves 14
//             of a thread's 32.)
// conv_dx:    dy (B, CO, H, W) -> dx (B, CI, H, W), the same loop over a flipped kernel
//             with its channel axes swapped.
// conv_weight_layout: rewrites w (CO, CI, 3, 3) once per step as wt_fwd (CI, 9, CO) and
//             wt_dx (CO, 9, CI) (taps reversed), so that the loops above load the weights
//             of 4 output channels with one vec4 load.
// conv_wgrad: partial weight and bias gradients, one slice per chunk of image rows, so
//             that the batch reduction (conv_wgrad_reduce) runs in a fixed order without
//             atomics.
//
// A thread owns a 2x2 block of output pixels for OT output channels. The output-channel
// block comes from the workgroup id alone, so all lanes of a workgroup need the same
// weights; only the 4x4 input tile differs between lanes. The inner loop, `accumulate`,
// comes in two variants appended to this file: conv_accumulate.wgsl (plain loads) and
// conv_accumulate_subgroup.wgsl (each lane loads a share of the weights, subgroupBroadcast
// hands them to the others; for 8-lane subgroups, where loads dominate). Each variant also
// defines `place`, which maps a lane to its block: `locate` below for both of these, a 2D
// tile for conv_tiled.wgsl (the autotuner's GPU-shaped variant).
// Threads past the last position still run (clamped) so subgroup operations see every
// lane; they store nothing.

override WG: u32 = 64u;
const OT: u32 = 16u;

struct ConvParams {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    // workgroups that cover one output-channel block's positions
    groups_per_block: u32,
    // where the bias starts in `layer` (a layer's weights and bias are contiguous)
    bias_offset: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
// src again, as vec2s (load_taps)
@group(0) @binding(9) var<storage, read> src2: array<vec2<f32>>;
// (in_channels, 9, out_channels): wt_fwd or wt_dx
// bound as `wt` by the accumulate variant (conv_accumulate*.wgsl)

// The 2x2 block's inputs for each of the 9 taps: components x = (y0, x0), y = (y0, x0 + 1),
// z = (y0 + 1, x0), w = (y0 + 1, x0 + 1).
struct Taps {
    t0: vec4<f32>, t1: vec4<f32>, t2: vec4<f32>,
    t3: vec4<f32>, t4: vec4<f32>, t5: vec4<f32>,
    t6: vec4<f32>, t7: vec4<f32>, t8: vec4<f32>,
}

struct Block {
    valid: bool,
    b: u32,
    y0: u32,
    x0: u32,
    oc0: u32,
    pooled_index: u32,
    lane: u32,
    // top-left pixel of the workgroup's tile (conv_tiled.wgsl only)
    tile: vec2<u32>,
}

fn locate(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Block {
    let group = wid.x + wid.y * nwg.x;
    let block = group / p.groups_per_block;
    let pos = (group % p.groups_per_block) * WG + lid;
    let ph = p.height / 2u;
    let pw = p.width / 2u;
    var out: Block;
    out.valid = pos < p.batch * ph * pw && block * OT < p.out_channels;
    let clamped = min(pos, p.batch * ph * pw - 1u);
    out.b = clamped / (ph * pw);
    let rem = clamped % (ph * pw);
    out.y0 = (rem / pw) * 2u;
    out.x0 = (rem % pw) * 2u;
    out.oc0 = min(block * OT, p.out_channels - OT);
    out.pooled_index = rem;
    out.lane = lid;
    return out;
}

// Input-tile addressing for one block, computed once per thread.
struct Tile {
    row_off: array<u32, 4>,
    col_off: array<u32, 4>,
    ok: array<vec4<bool>, 4>,
}

fn tile_for(blk: Block) -> Tile {
    let h = i32(p.height);
    let w = i32(p.width);
    var t: Tile;
    var col_ok: vec4<bool>;
    for (var i = 0u; i < 4u; i++) {
        let xx = i32(blk.x0) - 1 + i32(i);
        col_ok[i] = xx >= 0 && xx < w;
        t.col_off[i] = u32(clamp(xx, 0, w - 1));
    }
    for (var i = 0u; i < 4u; i++) {
        let yy = i32(blk.y0) - 1 + i32(i);
        let row_ok = yy >= 0 && yy < h;
        t.ok[i] = col_ok & vec4(row_ok);
        t.row_off[i] = u32(clamp(yy, 0, h - 1)) * p.width;
    }
    return t;
}

// The 4x4 input patch of channel ic (zero outside the image), as the 9 taps' vectors.
fn load_taps(blk: Block, tile: Tile, ic: u32) -> Taps {
    let base = (blk.b * p.in_channels + ic) * p.height * p.width;
    var v: array<f32, 16>;
    // The block's own two columns are one aligned vec2 (x0 and the width are even): 12
    // loads instead of 16, and a load's cost on a CPU adapter is mostly per call.
    for (var i = 0u; i < 4u; i++) {
        let mid = src2[(base + tile.row_off[i] + blk.x0) / 2u];
        let lo = src[base + tile.row_off[i] + tile.col_off[0]];
        let hi = src[base + tile.row_off[i] + tile.col_off[3]];
        v[i * 4u] = select(0.0, lo, tile.ok[i][0]);
        v[i * 4u + 1u] = select(0.0, mid.x, tile.ok[i][1]);
        v[i * 4u + 2u] = select(0.0, mid.y, tile.ok[i][2]);
        v[i * 4u + 3u] = select(0.0, hi, tile.ok[i][3]);
    }
    var t: Taps;
    t.t0 = vec4(v[0], v[1], v[4], v[5]);
    t.t1 = vec4(v[1], v[2], v[5], v[6]);
    t.t2 = vec4(v[2], v[3], v[6], v[7]);
    t.t3 = vec4(v[4], v[5], v[8], v[9]);
    t.t4 = vec4(v[5], v[6], v[9], v[10]);
    t.t5 = vec4(v[6], v[7], v[10], v[11]);
    t.t6 = vec4(v[8], v[9], v[12], v[13]);
    t.t7 = vec4(v[9], v[10], v[13], v[14]);
    t.t8 = vec4(v[10], v[11], v[14], v[15]);
    return t;
}

@group(0) @binding(3) var<storage, read> layer: array<f32>;

// The bias of output channels oc0 .. oc0 + 15, each lane loading all 16 (`biases` in the
// accumulate variants uses this or shares the loads).
fn own_biases(blk: Block) -> array<f32, 16> {
    let at = p.bias_offset + blk.oc0;
    return array<f32, 16>(layer[at], layer[at + 1u], layer[at + 2u], layer[at + 3u], layer[at + 4u],
                          layer[at + 5u], layer[at + 6u], layer[at + 7u], layer[at + 8u], layer[at + 9u],
                          layer[at + 10u], layer[at + 11u], layer[at + 12u], layer[at + 13u], layer[at + 14u],
                          layer[at + 15u]);
}
@group(0) @binding(4) var<storage, read_write> pooled: array<f32>;
@group(0) @binding(5) var<storage, read_write> pool_code: array<u32>;

@compute @workgroup_size(WG)
fn conv_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let blk = place(wid, nwg, lid);
    var acc = accumulate(blk);
    // before the return: the subgroup variant's fetch needs every lane
    var bias = biases(blk);
    if !blk.valid {
        return;
    }
    let pooled_plane = (p.height / 2u) * (p.width / 2u);
    var codes = vec2<u32>();
    for (var o = 0u; o < OT; o++) {
        let oc = blk.oc0 + o;
        let v = acc[o] + bias[o];
        var best = v.x;
        var code = 0u;
        if v.y > best { best = v.y; code = 1u; }
        if v.z > best { best = v.z; code = 2u; }
        if v.w > best { best = v.w; code = 3u; }
        if !(best > 0.0) {
            best = 0.0;
            code = 4u;
        }
        let out = (blk.b * p.out_channels + oc) * pooled_plane + blk.pooled_index;
        pooled[out] = best;
        codes[o / 8u] |= code << (4u * (o % 8u));
    }
    // 4 bits per channel, 8 channels per word: (B, CO / 8, H/2, W/2) words
    let word = (blk.b * (p.out_channels / 8u) + blk.oc0 / 8u) * pooled_plane + blk.pooled_index;
    pool_code[word] = codes.x;
    pool_code[word + pooled_plane] = codes.y;
}

// as vec2s: a block's rows are aligned pairs (x0 and the width are even)
@group(0) @binding(6) var<storage, read_write> dx: array<vec2<f32>>;

// Writes channel oc's 2x2 block `v` (x, y: top row; z, w: bottom row) into dx, one vec2
// store per row.
fn store_block(blk: Block, oc: u32, v: vec4<f32>) {
    let row = (((blk.b * p.out_channels + oc) * p.height + blk.y0) * p.width + blk.x0) / 2u;
    dx[row] = v.xy;
    dx[row + p.width / 2u] = v.zw;
}

@compute @workgroup_size(WG)
fn conv_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let blk = place(wid, nwg, lid);
    var acc = accumulate(blk);
    if !blk.valid {
        return;
    }
    for (var o = 0u; o < OT; o++) {
        store_block(blk, blk.oc0 + o, acc[o]);
    }
}

// Without the fused ReLU and pool (a conv followed by batch norm, say): y (B, CO, H, W) =
// conv + bias, stored like conv_dx stores dx. A bias-free layer's bias slots hold zeros.
@compute @workgroup_size(WG)
fn conv_fwd_plain(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let blk = place(wid, nwg, lid);
    var acc = accumulate(blk);
    var bias = biases(blk);
    if !blk.valid {
        return;
    }
    for (var o = 0u; o < OT; o++) {
        let oc = blk.oc0 + o;
        store_block(blk, oc, acc[o] + bias[o]);
    }
}

@group(0) @binding(7) var<storage, read_write> wt_fwd: array<f32>;
@group(0) @binding(8) var<storage, read_write> wt_dx: array<f32>;

// One thread per weight w[oc][ic][t] (read from `layer`); p holds the forward shape.
@compute @workgroup_size(WG)
fn conv_weight_layout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.out_channels * p.in_channels * 9u {
        return;
    }
    let t = i % 9u;
    let ic = (i / 9u) % p.in_channels;
    let oc = i / (9u * p.in_channels);
    let w = layer[i];
    wt_fwd[(ic * 9u + t) * p.out_channels + oc] = w;
    wt_dx[(oc * 9u + 8u - t) * p.in_channels + ic] = w;
}
