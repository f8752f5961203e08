// Backward of the fused ReLU + 2x2 max-pool, NCHW f32.
//
// d_pooled (B, C, H/2, W/2) and the 4-bit code conv_fwd stored per pooled value (0..3 =
// which window position won, 4 = ReLU zeroed it; 8 channels per word, (B, C/8, H/2, W/2))
// -> d_pre (B, C, H, W): each pooled gradient goes to the winning position, zeros elsewhere.

override WG: u32 = 64u;

struct PoolParams {
    // B * C * (H/2) * (W/2)
    pooled_count: u32,
    height: u32,
    width: u32,
    channels: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> d_pooled: array<f32>;
@group(0) @binding(2) var<storage, read> pool_code: array<u32>;
@group(0) @binding(3) var<storage, read_write> d_pre: array<vec2<f32>>;

// A thread takes one code word: one pooled position of 8 channels. Its index divisions
// (a CPU adapter does integer division lane by lane) and the code load are shared by the
// 8 channels, and each window row is one vec2 store (W is even).
@compute @workgroup_size(WG)
fn maxpool_relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let word = (wid.x + wid.y * nwg.x) * WG + lid;
    if word >= p.pooled_count / 8u {
        return;
    }
    let pw = p.width / 2u;
    let positions = (p.height / 2u) * pw;
    let rem = word % positions;
    let plane0 = (word / positions) * 8u;
    let code = pool_code[word];
    // in vec2s: the window's top row in channel plane0's image, and the step to the next
    // row and to the next channel
    let top = ((plane0 * p.height + (rem / pw) * 2u) * p.width) / 2u + rem % pw;
    let row = p.width / 2u;
    let channel = p.height * row;
    for (var j = 0u; j < 8u; j++) {
        let g = d_pooled[(plane0 + j) * positions + rem];
        let won = (code >> (4u * j)) & 15u;
        let at = top + j * channel;
        d_pre[at] = vec2(select(0.0, g, won == 0u), select(0.0, g, won == 1u));
        d_pre[at + row] = vec2(select(0.0, g, won == 2u), select(0.0, g, won == 3u));
    }
}
