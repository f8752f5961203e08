//! Every matmul variant the autotuner may pick (Tile, Tall, and the GPU-shaped Tiled) on
//! every kernel configuration, against an f64 reference: odd sizes, every stride pattern
//! the layers use, each epilogue, several tiles, the split-K edge of the loop budget, and
//! bit-identical results between variants.

mod common;
#[path = "common/matmul_case.rs"]
mod matmul_case;
use common::*;
use gpu_train::autotune::Tuner;
use gpu_train::gpu::Gpu;
use gpu_train::kernels::Kernels;
use gpu_train::layers::dense::{ALoad, BLoad, FLAG_BIAS, FLAG_MASK, FLAG_RELU, MatmulVariant, longest_slice};
use matmul_case::Case;

impl Case {
    fn reference(&self, a: &[f32], b: &[f32], bias: &[f32], aux: &[f32]) -> Vec<f64> {
        let p = self.params();
        let mut c = vec![0f64; (self.m * self.n) as usize];
        for i in 0..self.m {
            for j in 0..self.n {
                let mut s = 0f64;
                for kk in 0..self.k {
                    s += a[(i * p.a_row + kk * p.a_col) as usize] as f64
                        * b[(kk * p.b_row + j * p.b_col) as usize] as f64;
                }
                let at = (i * self.n + j) as usize;
                if self.flags & FLAG_BIAS != 0 {
                    s += bias[(p.bias_offset + j) as usize] as f64;
                }
                if self.flags & FLAG_RELU != 0 {
                    s = s.max(0.0);
                }
                if self.flags & FLAG_MASK != 0 && aux[at] <= 0.0 {
                    s = 0.0;
                }
                c[at] = s;
            }
        }
        c
    }
}

/// Every kernel configuration (common::variants) with a tuner that picks each matmul
/// variant in turn.
type Setups = Vec<(Gpu, Vec<(Kernels, MatmulVariant)>)>;

fn setups() -> Setups {
    let mut out = Vec::new();
    for (gpu, config) in variants() {
        let forced = MatmulVariant::ALL
            .map(|variant| {
                let k = Kernels::with_config(&gpu, config.variant, config.workgroup_size).unwrap();
                (k.with_tuner(Tuner::forcing(&gpu, variant as u32)), variant)
            })
            .into_iter()
            .collect();
        out.push((gpu, forced));
    }
    out
}

/// Runs `case` on every configuration and variant; returns each run's label, output and
/// dispatch names. `exact`: small whole numbers, so every sum is exact in f32.
fn check(setups: &Setups, case: Case, seed: u64, exact: bool) -> Vec<(String, Vec<f32>)> {
    let ops = case.operands(seed, exact);
    let want = case.reference(&ops.a, &ops.b, &ops.bias, &ops.aux);
    let mut outputs = Vec::new();
    for (gpu, forced) in setups {
        for (k, variant) in forced {
            let (got, names) = case.run(gpu, k, &ops, 0);
            let label = format!("{:?} {}-lane {variant:?} {names:?} {case:?}", k.variant, k.workgroup_size);
            // f32 rounding grows with the square root of the sum's length
            let tol = if exact { 0.0 } else { (3e-6 * (case.k as f64).sqrt()).max(1e-5) };
            assert_close(&label, &got, &want, tol);
            outputs.push((label, got));
        }
    }
    outputs
}

/// Every variant sums over k in the same order: the autotuner's choice changes no bit.
fn assert_identical(outputs: &[(String, Vec<f32>)]) {
    let (first_label, first) = &outputs[0];
    for (label, out) in &outputs[1..] {
        let same = out.iter().zip(first).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{label} differs in some bit from {first_label}");
    }
}

#[test]
fn every_matmul_variant_matches_the_reference_in_every_stride_pattern() {
    // 13 x 21 x 37: no size a multiple of any tile; 36 and 20: B readable as vec4s
    let setups = setups();
    let mut seed = 40;
    // 12 x 21 x 40: matmul_tall reads A as vec4s (A_K4 by rows, A_M4 by columns) with
    // fewer rows than a tile
    for (m, n, k) in [(13, 21, 37), (13, 20, 36), (1, 1, 1), (9, 4, 4), (12, 21, 40)] {
        for (a_rows, b_rows) in [(true, false), (false, true), (true, true), (false, false)] {
            // one value: ReLU or the mask could zero it, and the test would prove nothing
            // (each set is a pipeline of its own for the autotuner's variants: EPILOGUE)
            let flag_sets = if m * n == 1 {
                vec![0, FLAG_BIAS]
            } else {
                vec![0, FLAG_BIAS, FLAG_BIAS | FLAG_RELU, FLAG_MASK]
            };
            for flags in flag_sets {
                seed += 1;
                let outputs = check(&setups, Case { m, n, k, a_rows, b_rows, flags }, seed, false);
                // a tile of 16 rows or 64 columns has no row or column of another
                assert_identical(&outputs);
            }
        }
    }
}

#[test]
fn every_matmul_variant_covers_several_tiles_in_each_direction() {
    // past two 64 x 64 tiles of matmul_tiled, several 16-row groups of matmul_tall, and
    // a k-range that ends inside a 16-step slab
    let setups = setups();
    let case = Case { m: 131, n: 150, k: 77, a_rows: true, b_rows: false, flags: FLAG_BIAS };
    assert_identical(&check(&setups, case, 60, false));
    let case = Case { m: 70, n: 132, k: 40, a_rows: false, b_rows: true, flags: 0 };
    assert_identical(&check(&setups, case, 61, false));
    // matmul_tall reading A as vec4s: by columns over 5 row groups (the last a part), and
    // by rows with m past a multiple of 4
    let case = Case { m: 68, n: 150, k: 44, a_rows: false, b_rows: false, flags: FLAG_BIAS | FLAG_RELU };
    assert_eq!(ALoad::for_product(&case.params(), true), ALoad::M4);
    assert_identical(&check(&setups, case, 62, false));
    let case = Case { m: 131, n: 132, k: 44, a_rows: true, b_rows: true, flags: FLAG_MASK };
    assert_eq!(ALoad::for_product(&case.params(), true), ALoad::K4);
    assert_identical(&check(&setups, case, 63, false));
}

#[test]
fn every_matmul_variant_runs_right_at_and_past_the_loop_budget() {
    let setups = setups();
    let budget = setups[0].0.loop_budget;
    // every B layout: the Tile variant's load decides the plan all variants share
    for (load, b_rows, n) in [(BLoad::Cols, false, 5), (BLoad::Rows, true, 4), (BLoad::Scalar, true, 5)] {
        let longest = longest_slice(load, budget) as u32;
        println!("{load:?}: the longest K one slice may take within {budget} loop iterations is {longest}");
        // exact sums: a loop the driver cut short shows as a wrong value
        for k in [longest, longest + 4] {
            let case = Case { m: 3, n, k, a_rows: true, b_rows, flags: FLAG_BIAS | FLAG_RELU };
            assert_identical(&check(&setups, case, 70 + k as u64, true));
        }
    }
    // the weight gradient's longest sum, the largest batch the CLI accepts
    let case = Case { m: 3, n: 4, k: 65_536, a_rows: false, b_rows: true, flags: 0 };
    assert_identical(&check(&setups, case, 80, true));
}

/// With a small loop budget every variant splits K, on any adapter: they must split it
/// the same way, or the autotuner's choice would change the sums.
#[test]
fn every_matmul_variant_splits_k_the_same_way() {
    let mut setups = setups();
    for (gpu, _) in &mut setups {
        gpu.loop_budget = 3_000;
    }
    // B by columns as vec4s (K a multiple of 4), by rows, by scalar loads; A by rows (as
    // vec4s in matmul_tall where K is a multiple of 4 and so are the slices) or, with m a
    // multiple of 4, by columns (as vec4s)
    for (k, b_rows, n, m, a_rows) in [
        (9_000, false, 6, 17, true),
        (7_001, true, 8, 17, true),
        (7_001, false, 5, 17, true),
        (8_000, true, 8, 17, true),
        (7_001, true, 8, 20, false),
    ] {
        let case = Case { m, n, k, a_rows, b_rows, flags: FLAG_BIAS };
        let outputs = check(&setups, case, 90 + k as u64, false);
        assert!(outputs.iter().all(|(label, _)| label.contains("matmul_reduce")), "every variant splits");
        assert_identical(&outputs);
    }
}

#[test]
fn matmul_variant_constants_match_the_shaders() {
    use gpu_train::kernels::DENSE_WGSL;
    use gpu_train::layers::dense::{DENSE_TALL_WGSL, DENSE_TILED_WGSL, TALL, TILED, TILED_WG};
    // tile shapes, and matmul_tall's ways of reading A and B (TALL_A_LOAD, TALL_B_LOAD) as
    // the host numbers them (ALoad, BLoad)
    for (source, name, value) in [
        (DENSE_TALL_WGSL, "TALL_M", TALL.0),
        (DENSE_TALL_WGSL, "TALL_N", TALL.1),
        (DENSE_TILED_WGSL, "TILED_M", TILED.0),
        (DENSE_TILED_WGSL, "TILED_N", TILED.1),
        (DENSE_TILED_WGSL, "TILED_K", TILED.2),
        (DENSE_TILED_WGSL, "TILED_LANES", TILED_WG),
        (DENSE_TALL_WGSL, "A_SCALAR", ALoad::Scalar as u32),
        (DENSE_TALL_WGSL, "A_K4", ALoad::K4 as u32),
        (DENSE_TALL_WGSL, "A_M4", ALoad::M4 as u32),
        (DENSE_WGSL, "B_SCALAR", BLoad::Scalar as u32),
        (DENSE_WGSL, "B_ROWS", BLoad::Rows as u32),
        (DENSE_WGSL, "B_COLS", BLoad::Cols as u32),
    ] {
        let line = format!("const {name}: u32 = {value}u;");
        assert!(source.contains(&line), "the shader does not say `{line}`");
    }
    // a pipeline built without EPILOGUE applies every flag the host may set
    let every_flag = FLAG_BIAS | FLAG_RELU | FLAG_MASK;
    let line = format!("override EPILOGUE: u32 = {every_flag}u;");
    assert!(DENSE_WGSL.contains(&line), "dense.wgsl does not say `{line}`");
}
