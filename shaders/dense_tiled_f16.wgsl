// The f16-storage variant of matmul_tiled (needs the adapter's SHADER_F16): to_f16 copies
// A and B, each a flat run of f32 words, into f16 buffers of the same layout, and
// matmul_tiled stages its slabs from those. Products and sums stay f32, so the results
// differ from the f32 variants only by the rounding of each input to f16 (11 significant
// bits from 2^-14 up; fewer, or zero, below). The module starts with `enable f16;` (added by the host) and appends dense.wgsl,
// dense_rows.wgsl, this file and dense_tiled.wgsl.
//
// A value past f16's range (magnitude above 65,504) or NaN becomes an infinity of its
// sign (NaN: +inf) in the copy, never a large finite number, so the products it enters
// are infinite or NaN (unless a ReLU or mask epilogue zeroes them) and the loss shows it.
// The copies are written as u32 words holding two halves each, and read as array<f16>.

@group(0) @binding(7) var<storage, read> a16: array<f16>;
@group(0) @binding(8) var<storage, read> b16: array<f16>;

fn slab_a(i: u32) -> f32 {
    return f32(a16[i]);
}

fn slab_b(i: u32) -> f32 {
    return f32(b16[i]);
}

// to_f16: thread t converts words 2t and 2t + 1 of `wide` into word t of `narrow`, one
// f16 in each half (low half first, as array<f16> reads it; a half past the end of `wide`
// gets 0). No loops.
@group(0) @binding(9) var<storage, read> wide: array<f32>;
@group(0) @binding(10) var<storage, read_write> narrow: array<u32>;

// v's f16 bits in the low half (pack2x16float rounds as f16() does). Past f16's range,
// the bits of an infinity of v's sign, set here: WGSL leaves converting such a value
// indeterminate.
fn half_bits(v: f32) -> u32 {
    if abs(v) <= 65504.0 {
        return pack2x16float(vec2(v, 0.0)) & 0xffffu;
    }
    return select(0x7c00u, 0xfc00u, v < 0.0);
}

@compute @workgroup_size(WG)
fn to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    let n = arrayLength(&wide);
    if 2u * t >= n {
        return;
    }
    let hi = select(0.0, wide[min(2u * t + 1u, n - 1u)], 2u * t + 1u < n);
    narrow[t] = half_bits(wide[2u * t]) | (half_bits(hi) << 16u);
}
