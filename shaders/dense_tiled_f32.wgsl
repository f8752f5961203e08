// matmul_tiled's slab fetches for f32 A and B (dense.wgsl's bindings 1 and 2).

fn slab_a(i: u32) -> f32 {
    return a[i];
}

fn slab_b(i: u32) -> f32 {
    return b[i];
}
