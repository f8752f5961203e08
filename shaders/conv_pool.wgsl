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
@group(0) @binding(3) var<storage, read_write> d_pre: array<f32>;

@compute @workgroup_size(WG)
fn maxpool_relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.pooled_count {
        return;
    }
    let pw = p.width / 2u;
    let ph = p.height / 2u;
    let plane = i / (ph * pw);
    let rem = i % (ph * pw);
    let top_left = (plane * p.height + (rem / pw) * 2u) * p.width + (rem % pw) * 2u;
    let g = d_pooled[i];
    let b = plane / p.channels;
    let c = plane % p.channels;
    let word = (b * (p.channels / 8u) + c / 8u) * (ph * pw) + rem;
    let code = (pool_code[word] >> (4u * (c % 8u))) & 15u;
    d_pre[top_left] = select(0.0, g, code == 0u);
    d_pre[top_left + 1u] = select(0.0, g, code == 1u);
    d_pre[top_left + p.width] = select(0.0, g, code == 2u);
    d_pre[top_left + p.width + 1u] = select(0.0, g, code == 3u);
}
