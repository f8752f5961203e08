// Dense (fully connected) layer kernels, f32.
//
// matmul: c (M, N) row-major = a (M, K) . b (K, N), where a and b are read through strides
// so that transposes cost nothing: a[m, k] = a[m * a_row + k * a_col],
// b[k, n] = b[k * b_row + n * b_col]. Optional epilogues (flags): 1 adds bias[n],
// 2 applies ReLU, 4 zeroes entries where aux[m, n] <= 0 (the ReLU backward mask).
// A thread owns a TM x TN tile and sums over K in order, so results are deterministic.
// Split-K: with p.splits > 1, workgroup slice s sums only k in [s * k_chunk, (s + 1) *
// k_chunk) and stores its raw tile at c[c_offset + s * M * N + ...] (the host passes no
// flags); matmul_reduce then adds the slices in order and applies the epilogue. The host
// splits where one invocation's loop over K would pass the adapter's loop budget.
//
// bias_grad: db[n] = sum over m of dy[m, n], in row order (dy in `a`, db in `c`); split
// the same way over rows, slice s writing c[c_offset + s * N + n].

override WG: u32 = 64u;
// Rows per workgroup (shared by all its lanes) and consecutive columns per lane.
const TM: u32 = 8u;
const TN: u32 = 8u;

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    flags: u32,
    // bias[n] lives at bias[bias_offset + n]; outputs start at c[c_offset]
    bias_offset: u32,
    c_offset: u32,
    // workgroups along n: ceil(n / (WG * TN))
    n_groups: u32,
    // split-K: slices and the k (or, for bias_grad, row) range of each
    splits: u32,
    k_chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> aux: array<f32>;

fn a_at(row: u32, kk: u32) -> f32 {
    return a[min(row, p.m - 1u) * p.a_row + kk * p.a_col];
}

// A workgroup owns TM rows, so every lane needs the same A values (a_rows8, from
// dense_rows*.wgsl); each lane reads its own TN columns of B.
// B read as vec4s along n: matmul_rows when b's rows are contiguous (b_col == 1, b_row and
// n multiples of 4), one vec4 load per k instead of four scalar loads.
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

const B_SCALAR: u32 = 0u;
const B_ROWS: u32 = 1u;
// matmul_cols: b's columns are contiguous (b_row == 1, b_col and k multiples of 4): each
// lane loads 4 k-steps of its 4 columns as 4 vec4s.
const B_COLS: u32 = 2u;

struct Acc8 {
    c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>,
    c4: vec4<f32>, c5: vec4<f32>, c6: vec4<f32>, c7: vec4<f32>,
}

// One k-step: row i of the tile += a[i] * b's 4 columns.
fn fma8(acc: Acc8, av: array<f32, 8>, bv: vec4<f32>) -> Acc8 {
    return Acc8(acc.c0 + av[0] * bv, acc.c1 + av[1] * bv, acc.c2 + av[2] * bv, acc.c3 + av[3] * bv,
                acc.c4 + av[4] * bv, acc.c5 + av[5] * bv, acc.c6 + av[6] * bv, acc.c7 + av[7] * bv);
}

// Where a workgroup's output tile lies, for every matmul variant: the workgroups of a
// dispatch walk the column blocks (p.n_groups of them) of each `rows`-row band, band by
// band, then the next K slice. The values are the same for the whole workgroup.
struct TilePlace {
    split: u32,
    m0: u32,
    block: u32,
    k_begin: u32,
    k_end: u32,
}

fn tile_place(wid: vec3<u32>, nwg: vec3<u32>, rows: u32) -> TilePlace {
    let group = wid.x + wid.y * nwg.x;
    let tiles = ((p.m + rows - 1u) / rows) * p.n_groups;
    let split = group / tiles;
    let k_begin = split * p.k_chunk;
    return TilePlace(split, ((group % tiles) / p.n_groups) * rows, group % p.n_groups, k_begin,
                     min(p.k, k_begin + p.k_chunk));
}

// `b_load` is always a literal, so each entry point compiles one way of reading B.
fn matmul_tile(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, b_load: u32) {
    let at = tile_place(wid, nwg, TM);
    let split = at.split;
    let m0 = at.m0;
    let k_begin = at.k_begin;
    let k_end = at.k_end;
    let n0 = (at.block * WG + lid) * TN;
    if m0 >= p.m || split >= p.splits {
        return;
    }
    // Lanes and columns past the edge re-read the last valid column (subgroup operations
    // need every lane) and store nothing. The lane's
    // columns are two halves: lo = n0 .. n0 + 3 (tile t), hi = n0 + 4 .. n0 + 7 (tile u).
    let nl = p.n - 1u;
    var bo: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        bo[j] = min(n0 + j, nl) * p.b_col;
    }
    // Every variant sums over k in the same order, so they give identical results.
    var t: Acc8;
    var u: Acc8;
    if b_load == B_COLS {
        for (var kk = k_begin; kk < k_end; kk += 4u) {
            var q: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                q[j] = b4[(bo[j] + kk) / 4u];
            }
            for (var d = 0u; d < 4u; d++) {
                let av = a_rows8(m0, kk + d, lid);
                t = fma8(t, av, vec4(q[0][d], q[1][d], q[2][d], q[3][d]));
                u = fma8(u, av, vec4(q[4][d], q[5][d], q[6][d], q[7][d]));
            }
        }
    } else {
        for (var kk = k_begin; kk < k_end; kk++) {
            let bk = kk * p.b_row;
            var lo: vec4<f32>;
            var hi: vec4<f32>;
            if b_load == B_ROWS {
                lo = b4[(bk + min(n0, p.n - 4u)) / 4u];
                hi = b4[(bk + min(n0 + 4u, p.n - 4u)) / 4u];
            } else {
                lo = vec4(b[bo[0] + bk], b[bo[1] + bk], b[bo[2] + bk], b[bo[3] + bk]);
                hi = vec4(b[bo[4] + bk], b[bo[5] + bk], b[bo[6] + bk], b[bo[7] + bk]);
            }
            let av = a_rows8(m0, kk, lid);
            t = fma8(t, av, lo);
            u = fma8(u, av, hi);
        }
    }
    // a var, not a let: indexing a let array with a loop counter copies the whole array
    var acc = array<vec4<f32>, 16>(t.c0, u.c0, t.c1, u.c1, t.c2, u.c2, t.c3, u.c3,
                                   t.c4, u.c4, t.c5, u.c5, t.c6, u.c6, t.c7, u.c7);
    for (var i = 0u; i < TM; i++) {
        let row = m0 + i;
        if row >= p.m {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let col = n0 + j;
            if col >= p.n {
                break;
            }
            let at = row * p.n + col;
            c[p.c_offset + split * p.m * p.n + at] = epilogue(acc[2u * i + j / 4u][j % 4u], at, col);
        }
    }
}

// The flags a pipeline may apply: every flag by default. The autotuner's variants are built
// with their dispatch's flags, so the adapter's compiler drops the steps not taken. A CPU
// adapter otherwise spends time on them even where no lane takes them (llvmpipe: about
// a tenth of a 128 x 3136 x 128 product without flags).
override EPILOGUE: u32 = 7u;

// The flags' epilogue for output element `at` (row * n + col).
fn epilogue(sum: f32, at: u32, col: u32) -> f32 {
    let flags = p.flags & EPILOGUE;
    var v = sum;
    if (flags & 1u) != 0u {
        v += bias[p.bias_offset + col];
    }
    if (flags & 2u) != 0u {
        v = max(v, 0.0);
    }
    if (flags & 4u) != 0u && !(aux[at] > 0.0) {
        v = 0.0;
    }
    return v;
}

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    matmul_tile(wid, nwg, lid, B_SCALAR);
}

@compute @workgroup_size(WG)
fn matmul_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    matmul_tile(wid, nwg, lid, B_COLS);
}

@compute @workgroup_size(WG)
fn matmul_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    matmul_tile(wid, nwg, lid, B_ROWS);
}

// Reuses the matmul bindings: p.m rows and p.n columns of `a` are summed into `c`, rows
// [s * k_chunk, (s + 1) * k_chunk) by slice s.
@compute @workgroup_size(WG)
fn bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.n * p.splits {
        return;
    }
    let col = i % p.n;
    let split = i / p.n;
    let r_end = min(p.m, (split + 1u) * p.k_chunk);
    var sum = 0.0;
    for (var r = split * p.k_chunk; r < r_end; r++) {
        sum += a[r * p.n + col];
    }
    c[p.c_offset + split * p.n + col] = sum;
}

// Split-K's second half: c[c_offset + i] = epilogue(sum over slices s of a[s * M * N + i]),
// slices added in order; one thread per output element.
@compute @workgroup_size(WG)
fn matmul_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let plane = p.m * p.n;
    if i >= plane {
        return;
    }
    var sum = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        sum += a[s * plane + i];
    }
    c[p.c_offset + i] = epilogue(sum, i, i % p.n);
}
