// Dense (fully connected) layer kernels, f32.
//
// matmul: c (M, N) row-major = a (M, K) . b (K, N), where a and b are read through strides
// so that transposes cost nothing: a[m, k] = a[m * a_row + k * a_col],
// b[k, n] = b[k * b_row + n * b_col]. Optional epilogues (flags): 1 adds bias[n],
// 2 applies ReLU, 4 zeroes entries where aux[m, n] <= 0 (the ReLU backward mask).
// A thread owns a TM x TN tile and sums over K in order, so results are deterministic.
//
// bias_grad: db[n] = sum over m of dy[m, n], in row order (dy in `a`, db in `c`).

override WG: u32 = 64u;
// Rows per workgroup (shared by all its lanes) and consecutive columns per lane.
const TM: u32 = 8u;
const TN: u32 = 4u;

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
    _pad: u32,
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

// `b_load` is always a literal, so each entry point compiles one way of reading B.
fn matmul_tile(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, b_load: u32) {
    let group = wid.x + wid.y * nwg.x;
    let m0 = (group / p.n_groups) * TM;
    let n0 = ((group % p.n_groups) * WG + lid) * TN;
    if m0 >= p.m {
        return;
    }
    // Lanes past the last column compute clamped copies (subgroup operations need every
    // lane) and store nothing.
    // Columns past the edge re-read the last valid one and are never stored.
    let nl = p.n - 1u;
    let b0 = min(n0, nl) * p.b_col;
    let b1 = min(n0 + 1u, nl) * p.b_col;
    let b2 = min(n0 + 2u, nl) * p.b_col;
    let b3 = min(n0 + 3u, nl) * p.b_col;
    var c0 = vec4<f32>(); var c1 = vec4<f32>(); var c2 = vec4<f32>(); var c3 = vec4<f32>();
    var c4 = vec4<f32>(); var c5 = vec4<f32>(); var c6 = vec4<f32>(); var c7 = vec4<f32>();
    for (var kk = 0u; kk < p.k; kk++) {
        let bk = kk * p.b_row;
        var bv: vec4<f32>;
        if b_load == B_ROWS {
            bv = b4[(bk + min(n0, p.n - 4u)) / 4u];
        } else {
            bv = vec4(b[b0 + bk], b[b1 + bk], b[b2 + bk], b[b3 + bk]);
        }
        let av = a_rows8(m0, kk, lid);
        c0 += av[0] * bv;
        c1 += av[1] * bv;
        c2 += av[2] * bv;
        c3 += av[3] * bv;
        c4 += av[4] * bv;
        c5 += av[5] * bv;
        c6 += av[6] * bv;
        c7 += av[7] * bv;
    }
    // a var, not a let: indexing a let array with a loop counter copies the whole array
    var acc = array<vec4<f32>, 8>(c0, c1, c2, c3, c4, c5, c6, c7);
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
            var v = acc[i][j];
            if (p.flags & 1u) != 0u {
                v += bias[p.bias_offset + col];
            }
            if (p.flags & 2u) != 0u {
                v = max(v, 0.0);
            }
            if (p.flags & 4u) != 0u && !(aux[row * p.n + col] > 0.0) {
                v = 0.0;
            }
            c[p.c_offset + row * p.n + col] = v;
        }
    }
}

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    matmul_tile(wid, nwg, lid, B_SCALAR);
}

@compute @workgroup_size(WG)
fn matmul_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    matmul_tile(wid, nwg, lid, B_ROWS);
}

// Reuses the matmul bindings: p.m rows and p.n columns of `a` are summed into `c`.
@compute @workgroup_size(WG)
fn bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let col = (wid.x + wid.y * nwg.x) * WG + lid;
    if col >= p.n {
        return;
    }
    var sum = 0.0;
    for (var r = 0u; r < p.m; r++) {
        sum += a[r * p.n + col];
    }
    c[p.c_offset + col] = sum;
}
