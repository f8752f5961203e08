//! Standalone ReLU: forward, backward and the in-place mask against f64 references on odd
//! sizes in every kernel configuration (bit for bit: each output is an input or zero), a
//! size past 65,535 workgroups of 64 lanes so that the 2-D grid is exercised, the backward
//! against finite differences, and NaN / -0 / infinities giving what select(0, v, v > 0)
//! gives.

mod common;
use common::*;
use gpu_train::gpu::Gpu;
use gpu_train::kernels::Kernels;
use gpu_train::layers::relu::{Relu, relu_mask_in_place};

/// What the kernels must produce: y = max(x, 0) with NaN and -0 to +0, dx = dy where y > 0.
fn reference(x: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let y: Vec<f64> = x.iter().map(|&v| if v > 0.0 { v as f64 } else { 0.0 }).collect();
    let dx = y.iter().zip(dy).map(|(&y, &g)| if y > 0.0 { g as f64 } else { 0.0 }).collect();
    (y, dx)
}

/// Bit-for-bit equality (so +0 vs -0 counts), after assert_close has printed the error.
fn assert_bits(name: &str, got: &[f32], want: &[f64]) {
    assert_close(name, got, want, 0.0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), (w as f32).to_bits(), "{name}[{i}]: got {g:e}, want {w:e}");
    }
}

/// Forward, backward and the in-place mask over `n` fresh random values; returns the
/// forward dispatch's grid.
fn check(gpu: &Gpu, k: &Kernels, n: usize, seed: u64) -> (u32, u32) {
    let mut r = rng(seed);
    let x = random(&mut r, n);
    let dy = random(&mut r, n);
    let xb = gpu.storage_init("x", &x).unwrap();
    let yb = gpu.storage("y", n).unwrap();
    let dyb = gpu.storage_init("dy", &dy).unwrap();
    let dxb = gpu.storage("dx", n).unwrap();
    let masked = gpu.storage_init("dy masked in place", &dy).unwrap();
    let layer = Relu::new(gpu, k, n, &xb, &yb, Some((&dyb, &dxb))).unwrap();
    let (mask, _uniform) = relu_mask_in_place(gpu, k, n, &yb, &masked).unwrap();
    gpu_train::loop_budget::check(gpu, &layer.forward).unwrap();
    gpu_train::loop_budget::check(gpu, &layer.backward).unwrap();
    gpu_train::loop_budget::check(gpu, std::slice::from_ref(&mask)).unwrap();
    run(gpu, &layer.forward.iter().chain(&layer.backward).chain([&mask]).collect::<Vec<_>>());
    let (want_y, want_dx) = reference(&x, &dy);
    assert_bits(&format!("relu forward, n = {n}"), &gpu.read_f32(&yb).unwrap(), &want_y);
    assert_bits(&format!("relu backward, n = {n}"), &gpu.read_f32(&dxb).unwrap(), &want_dx);
    assert_bits(&format!("relu mask in place, n = {n}"), &gpu.read_f32(&masked).unwrap(), &want_dx);
    layer.forward[0].grid
}

#[test]
fn relu_matches_reference() {
    for (gpu, k) in variants() {
        // 3x5x6x6 and 3x5x10x10 activations, a dense layer's 7x13, and sizes off the lanes
        for (i, n) in [540, 1500, 91, 1, 8 * 64 + 3].into_iter().enumerate() {
            check(&gpu, &k, n, 11 + i as u64);
        }
    }
}

#[test]
fn relu_runs_right_on_a_two_dimensional_grid() {
    // more than 65,535 workgroups even at 64 lanes and PER_THREAD values a lane, so the
    // grid folds into y everywhere
    let n = 65_535 * 64 * gpu_train::layers::relu::PER_THREAD + 4_099;
    for (gpu, k) in variants() {
        let started = std::time::Instant::now();
        let grid = check(&gpu, &k, n, 7);
        println!("{n} values on a {}x{} grid in {:.2?}", grid.0, grid.1, started.elapsed());
        assert!(grid.1 > 1, "the grid {grid:?} did not fold into y");
    }
}

#[test]
fn relu_backward_matches_finite_differences() {
    // L = sum(y * w): dL/dx by central differences of the forward kernel, at every input.
    // Inputs stay at least 0.05 from the kink so a 1e-2 step never crosses it.
    let (gpu, k) = variants().remove(0);
    let n = 37;
    let mut r = rng(5);
    let x: Vec<f32> = random(&mut r, n).into_iter().map(|v| v + 0.05f32.copysign(v)).collect();
    let w = random(&mut r, n);
    let loss = |x: &[f32]| -> f64 {
        let xb = gpu.storage_init("x", x).unwrap();
        let yb = gpu.storage("y", n).unwrap();
        let layer = Relu::new(&gpu, &k, n, &xb, &yb, None).unwrap();
        run(&gpu, &layer.forward.iter().collect::<Vec<_>>());
        gpu.read_f32(&yb).unwrap().iter().zip(&w).map(|(&y, &w)| y as f64 * w as f64).sum()
    };
    let (xb, yb, wb, dxb) = (
        gpu.storage_init("x", &x).unwrap(),
        gpu.storage("y", n).unwrap(),
        gpu.storage_init("w", &w).unwrap(),
        gpu.storage("dx", n).unwrap(),
    );
    let layer = Relu::new(&gpu, &k, n, &xb, &yb, Some((&wb, &dxb))).unwrap();
    run(&gpu, &layer.forward.iter().chain(&layer.backward).collect::<Vec<_>>());
    let analytic = gpu.read_f32(&dxb).unwrap();
    assert!(analytic.contains(&0.0) && analytic.iter().any(|&g| g != 0.0));
    let mut worst = 0f64;
    for i in 0..n {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += 1e-2;
        down[i] -= 1e-2;
        let numeric = (loss(&up) - loss(&down)) / 2e-2;
        worst = worst.max((numeric - analytic[i] as f64).abs() / (analytic[i] as f64).abs().max(1.0));
    }
    println!("relu backward vs finite differences: max error {worst:.3e}");
    assert!(worst < 1e-3, "finite-difference mismatch {worst:.3e}");
}

#[test]
fn relu_gives_positive_zero_for_nan_and_negative_zero() {
    // select(0.0, v, v > 0.0): NaN, -0 and -inf all fail v > 0 and give +0; the masks
    // likewise drop the gradient wherever y is not positive.
    let x = [f32::NAN, -0.0, 0.0, f32::NEG_INFINITY, f32::INFINITY, -1.5, 2.5, f32::MIN_POSITIVE];
    let dy = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let n = x.len();
    for (gpu, k) in variants() {
        let xb = gpu.storage_init("x", &x).unwrap();
        let yb = gpu.storage("y", n).unwrap();
        let dyb = gpu.storage_init("dy", &dy).unwrap();
        let dxb = gpu.storage("dx", n).unwrap();
        let masked = gpu.storage_init("dy masked in place", &dy).unwrap();
        let layer = Relu::new(&gpu, &k, n, &xb, &yb, Some((&dyb, &dxb))).unwrap();
        let (mask, _uniform) = relu_mask_in_place(&gpu, &k, n, &yb, &masked).unwrap();
        run(&gpu, &layer.forward.iter().chain(&layer.backward).chain([&mask]).collect::<Vec<_>>());
        let (want_y, want_dx) = reference(&x, &dy);
        assert_bits("relu forward of special values", &gpu.read_f32(&yb).unwrap(), &want_y);
        assert_bits("relu backward of special values", &gpu.read_f32(&dxb).unwrap(), &want_dx);
        assert_bits("relu mask of special values", &gpu.read_f32(&masked).unwrap(), &want_dx);
    }
}
