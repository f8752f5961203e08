//! The f16-storage matmul (`--f16-storage`): to_f16 copies of A and B, then matmul_tiled
//! summing in f32. Against an f64 reference with a bound derived per output from f16's
//! rounding (odd sizes, every stride pattern, each epilogue, several tiles, split K), exact
//! where every value is exact in f16 (at the loop budget's edge and the largest batch),
//! values past f16's range made infinite, and never offered without the flag. Needs an
//! adapter with SHADER_F16 (lavapipe has it); elsewhere the tests say they skip.

mod common;
#[path = "common/matmul_case.rs"]
mod matmul_case;
use common::skip::skip_unless_ci;
use common::*;
use gpu_train::autotune::Tuner;
use gpu_train::gpu::Gpu;
use gpu_train::kernels::Kernels;
use gpu_train::layers::dense::{BLoad, FLAG_BIAS, FLAG_MASK, FLAG_RELU, MatmulVariant, longest_slice};
use matmul_case::{Case, Operands};

/// The largest error rounding x to f16 may make: a relative half-to-one unit in the last
/// place (11 significant bits; either neighbour, as WGSL allows), or below f16's normal
/// range an absolute 2^-14 (a subnormal flushed to zero).
fn f16_error(x: f32) -> f64 {
    (x.abs() as f64) * 2f64.powi(-10) + 2f64.powi(-14)
}

/// Per output: the f64 value and how far the f16-storage result may be from it. A term
/// a.b may move by |a| e_b + (|b| + e_b) e_a; the f32 sum of k terms adds at most
/// (k + 2) 2^-24 of the sum of their sizes (and the bias). ReLU and the mask move no
/// value further.
fn reference(case: &Case, a: &[f32], b: &[f32], bias: &[f32], aux: &[f32]) -> Vec<(f64, f64)> {
    let p = case.params();
    let mut out = Vec::new();
    for i in 0..case.m {
        for j in 0..case.n {
            let (mut s, mut bound, mut size) = (0f64, 0f64, 0f64);
            for kk in 0..case.k {
                let x = a[(i * p.a_row + kk * p.a_col) as usize];
                let y = b[(kk * p.b_row + j * p.b_col) as usize];
                let (ex, ey) = (f16_error(x), f16_error(y));
                s += x as f64 * y as f64;
                bound += (x.abs() as f64) * ey + (y.abs() as f64 + ey) * ex;
                size += (x.abs() as f64 + ex) * (y.abs() as f64 + ey);
            }
            let at = (i * case.n + j) as usize;
            if case.flags & FLAG_BIAS != 0 {
                s += bias[(p.bias_offset + j) as usize] as f64;
                size += bias[(p.bias_offset + j) as usize].abs() as f64;
            }
            bound += (case.k as f64 + 2.0) * 2f64.powi(-24) * size;
            if case.flags & FLAG_RELU != 0 {
                s = s.max(0.0);
            }
            if case.flags & FLAG_MASK != 0 && aux[at] <= 0.0 {
                s = 0.0;
            }
            out.push((s, bound));
        }
    }
    out
}

/// Per kernel configuration: kernels forced to the f16-storage variant, with --f16-storage
/// on (or off), and the plain f32 kernels; None (after a visible skip) where the adapter
/// has no f16.
fn setups(f16_storage: bool) -> Option<Vec<(Gpu, Kernels, Kernels)>> {
    let all = variants();
    if !all[0].0.has_f16() {
        skip_unless_ci(&format!("{} has no SHADER_F16", all[0].0.describe()));
        return None;
    }
    let setup = |(gpu, k): (Gpu, Kernels)| {
        let f32_kernels = Kernels::with_config(&gpu, k.variant, k.workgroup_size).unwrap();
        let forced = Tuner::forcing(&gpu, MatmulVariant::TiledF16 as u32).with_f16_storage(f16_storage);
        (gpu, k.with_tuner(forced), f32_kernels)
    };
    Some(all.into_iter().map(setup).collect())
}

/// Checks `case` on every setup within the f16 bound (`exact`: small whole numbers, exact
/// in f16 and in every f32 sum, so the result must be exact); returns how many outputs
/// differ from the plain f32 product, which f16 rounding should make nonzero on random
/// inputs.
fn check(setups: &[(Gpu, Kernels, Kernels)], case: Case, seed: u64, exact: bool) -> usize {
    let ops = case.operands(seed, exact);
    let want = reference(&case, &ops.a, &ops.b, &ops.bias, &ops.aux);
    assert!(want.iter().any(|w| w.0 != 0.0), "{case:?}: the reference is all zeros, the test proves nothing");
    // the fewest outputs, over the setups, that differ from the f32 product
    let mut differ = usize::MAX;
    for (gpu, k, f32_kernels) in setups {
        let (got, names) = case.run(gpu, k, &ops, 0);
        assert!(names.contains(&"to_f16"), "{case:?}: the f16 variant did not run: {names:?}");
        let (plain, _) = case.run(gpu, f32_kernels, &ops, 0);
        let mut worst = 0f64;
        for (i, (g, (w, bound))) in got.iter().zip(&want).enumerate() {
            let err = (*g as f64 - w).abs();
            let allowed = if exact { 0.0 } else { *bound };
            assert!(
                err <= allowed,
                "{:?} {names:?} {case:?}: output {i} is {g}, want {w} within {allowed:e}",
                k.variant
            );
            worst = worst.max(if *bound > 0.0 { err / bound } else { 0.0 });
        }
        let here = got.iter().zip(&plain).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        println!(
            "{:?} {}-lane {names:?} {case:?}: worst error {worst:.3} of the f16 bound, {here} of {} outputs differ from f32",
            k.variant,
            k.workgroup_size,
            got.len()
        );
        differ = if differ == usize::MAX { here } else { differ.min(here) };
    }
    differ
}

/// The two f16 values nearest `v` (equal where v is one): WGSL lets a conversion round to
/// either. Below f16's normal range (2^-14) the grid is the subnormals' 2^-24.
fn f16_neighbours(v: f32) -> (f64, f64) {
    let x = v as f64;
    let spacing =
        if x.abs() < 2f64.powi(-14) { 2f64.powi(-24) } else { 2f64.powi(x.abs().log2().floor() as i32 - 10) };
    ((x / spacing).floor() * spacing, (x / spacing).ceil() * spacing)
}

/// Times the identity, each output is one converted input, exactly: every value must be
/// one of its two f16 neighbours (a subnormal may also flush to zero). B is bound at an
/// offset inside its buffer, as the dense layers bind their weights.
#[test]
fn each_value_is_rounded_to_a_neighbouring_f16() {
    let Some(setups) = setups(true) else { return };
    let mut r = rng(360);
    let mut a: Vec<f32> = Vec::new();
    for decade in -9..=3 {
        for _ in 0..12 {
            let v: f32 = rand::Rng::random_range(&mut r, 1.0f32..10.0) * 10f32.powi(decade);
            a.push(if a.len().is_multiple_of(2) { v } else { -v });
        }
    }
    a.extend([
        65_504.0,
        -65_504.0,
        65_503.0,
        1.0 + 2f32.powi(-11),
        2f32.powi(-14),
        2f32.powi(-24),
        0.0,
        -0.0,
    ]);
    // one more: an odd count, so that the last pair's upper half is padding
    a.push(0.333);
    let n = a.len() as u32;
    let mut identity = vec![0f32; (n * n) as usize];
    for i in 0..n as usize {
        identity[i * n as usize + i] = 1.0;
    }
    let case = Case { m: 1, n, k: n, a_rows: true, b_rows: true, flags: 0 };
    for (gpu, k, _) in &setups {
        let ops = Operands { a: a.clone(), b: identity.clone(), bias: vec![0.0; 3], aux: vec![0.0] };
        let (got, names) = case.run(gpu, k, &ops, 64);
        assert!(names.contains(&"to_f16"), "{names:?}");
        let mut rounded = 0;
        for (i, (&v, &g)) in a.iter().zip(&got).enumerate() {
            let (lo, hi) = f16_neighbours(v);
            let flushed = (v as f64).abs() < 2f64.powi(-14) && g == 0.0;
            assert!(
                g as f64 == lo || g as f64 == hi || flushed,
                "value {i}: {v:e} became {g:e}, not {lo:e} or {hi:e}"
            );
            rounded += (g != v) as usize;
        }
        println!(
            "{:?} {}-lane: {rounded} of {n} values changed by rounding to f16",
            k.variant, k.workgroup_size
        );
        assert!(rounded > n as usize / 2, "most random values are not f16 values: were they converted?");
    }
}

#[test]
fn f16_storage_matmul_stays_within_f16_rounding_in_every_stride_pattern() {
    let Some(setups) = setups(true) else { return };
    let mut seed = 300;
    for (m, n, k) in [(13, 21, 37), (13, 20, 36), (1, 1, 1), (9, 4, 4), (1, 3, 5)] {
        for (a_rows, b_rows) in [(true, false), (false, true), (true, true), (false, false)] {
            let flag_sets =
                if m * n < 4 { vec![0, FLAG_BIAS] } else { vec![0, FLAG_BIAS | FLAG_RELU, FLAG_MASK] };
            for flags in flag_sets {
                seed += 1;
                let differ = check(&setups, Case { m, n, k, a_rows, b_rows, flags }, seed, false);
                if m * n > 100 {
                    assert!(differ > 0, "no output shows f16 rounding: the copies may not be f16");
                }
            }
        }
    }
}

#[test]
fn f16_storage_matmul_covers_several_tiles_and_split_k() {
    let Some(mut setups) = setups(true) else { return };
    // past two 64 x 64 tiles, a k range ending inside a 16-step slab
    check(&setups, Case { m: 131, n: 150, k: 77, a_rows: true, b_rows: false, flags: FLAG_BIAS }, 320, false);
    check(&setups, Case { m: 70, n: 132, k: 40, a_rows: false, b_rows: true, flags: 0 }, 321, false);
    // a small loop budget splits K: slices, then matmul_reduce
    for (gpu, _, _) in &mut setups {
        gpu.loop_budget = 3_000;
    }
    check(&setups, Case { m: 17, n: 6, k: 9_000, a_rows: true, b_rows: false, flags: FLAG_BIAS }, 322, false);
}

#[test]
fn f16_storage_matmul_is_exact_at_the_loop_budget_and_the_largest_batch() {
    let Some(setups) = setups(true) else { return };
    let budget = setups[0].0.loop_budget;
    for (load, b_rows, n) in [(BLoad::Cols, false, 5), (BLoad::Rows, true, 4)] {
        let longest = longest_slice(load, budget) as u32;
        for k in [longest, longest + 4] {
            check(
                &setups,
                Case { m: 3, n, k, a_rows: true, b_rows, flags: FLAG_BIAS | FLAG_RELU },
                330 + k as u64,
                true,
            );
        }
    }
    // the weight gradient's longest sum, at the largest batch the CLI accepts
    check(&setups, Case { m: 3, n: 4, k: 65_536, a_rows: false, b_rows: true, flags: 0 }, 340, true);
}

#[test]
fn values_past_f16_range_become_infinite_not_wrong() {
    let Some(setups) = setups(true) else { return };
    // one special value per row of A, in its second column; B all ones
    let specials = [0.5, 70_000.0, f32::NAN, -70_000.0, f32::INFINITY, f32::NEG_INFINITY, 65_504.0];
    let case = Case { m: specials.len() as u32, n: 3, k: 5, a_rows: true, b_rows: true, flags: 0 };
    let mut a = vec![0.5f32; specials.len() * 5];
    for (row, v) in specials.iter().enumerate() {
        a[row * 5 + 1] = *v;
    }
    let b = vec![1.0f32; 15];
    for (gpu, k, _) in &setups {
        let ops = Operands { a: a.clone(), b: b.clone(), bias: vec![0.0; 6], aux: vec![0.0; 21] };
        let (got, _) = case.run(gpu, k, &ops, 0);
        for (i, v) in got.iter().enumerate() {
            let special = specials[i / 3];
            let what = format!("output {i} (A holds {special})");
            match special {
                x if x.is_nan() => assert!(!v.is_finite(), "{what}: a NaN input gave a finite {v}"),
                x if x.abs() > 65_504.0 => assert_eq!(*v, f32::INFINITY.copysign(x), "{what}"),
                // 65,504 is f16's largest value: it stays, and the sum is exact
                x => assert_eq!(*v, x + 2.0, "{what}"),
            }
        }
    }
}

#[test]
fn without_the_flag_the_f16_variant_is_never_used() {
    let Some(setups) = setups(false) else { return };
    let case = Case { m: 13, n: 21, k: 37, a_rows: true, b_rows: false, flags: FLAG_BIAS };
    let mut r = rng(350);
    let (a, b, bias) = (random(&mut r, 13 * 37), random(&mut r, 37 * 21), random(&mut r, 24));
    let ops = Operands { a, b, bias, aux: vec![0.0; 273] };
    for (gpu, k, f32_kernels) in &setups {
        let (got, names) = case.run(gpu, k, &ops, 0);
        assert!(!names.contains(&"to_f16"), "forced without --f16-storage, the f16 variant ran: {names:?}");
        let (plain, _) = case.run(gpu, f32_kernels, &ops, 0);
        assert!(
            got.iter().zip(&plain).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{names:?} differs from f32"
        );
    }
}
