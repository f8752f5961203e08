//! Global average pool: forward and backward against f64 references on odd sizes in every
//! kernel configuration, the backward against finite differences, the largest side the
//! loop budget allows on exact whole-number data, and the next side refused by name.

mod common;
use common::*;
use gpu_train::layers::gap::{GapShape, GlobalAvgPool};

fn check(dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels), s: GapShape, exact: bool) {
    let (gpu, k) = dev;
    let mut r = rng(31 + s.side as u64);
    let make = if exact { small_ints } else { random };
    let x = make(&mut r, s.input_len());
    let dy = make(&mut r, s.output_len());
    let xb = gpu.storage_init("x", &x).unwrap();
    let yb = gpu.storage("y", s.output_len()).unwrap();
    let dyb = gpu.storage_init("dy", &dy).unwrap();
    let dxb = gpu.storage("dx", s.input_len()).unwrap();
    let layer = GlobalAvgPool::new(&gpu, &k, s, &xb, &yb, Some((&dyb, &dxb))).unwrap();
    gpu_train::loop_budget::check(&gpu, &layer.forward).unwrap();
    run(&gpu, &layer.forward.iter().chain(&layer.backward).collect::<Vec<_>>());
    let area = s.side * s.side;
    let want: Vec<f64> =
        x.chunks(area).map(|plane| plane.iter().map(|&v| v as f64).sum::<f64>() / area as f64).collect();
    let want_dx: Vec<f64> = (0..s.input_len()).map(|i| dy[i / area] as f64 / area as f64).collect();
    // exact sums; the one division rounds once
    let tol = if exact { 1e-7 } else { 1e-5 };
    assert_close("gap forward", &gpu.read_f32(&yb).unwrap(), &want, tol);
    assert_close("gap backward", &gpu.read_f32(&dxb).unwrap(), &want_dx, tol);
}

#[test]
fn gap_matches_reference() {
    for dev in variants() {
        check(dev, GapShape { batch: 3, channels: 5, side: 7 }, false);
    }
}

#[test]
fn gap_runs_right_at_the_largest_side_the_loop_budget_allows_and_refuses_the_next() {
    for dev in variants() {
        let budget = dev.0.loop_budget.min(65_535);
        let side = (1..).take_while(|s| (s * s + 1) as u64 <= budget).last().unwrap();
        println!("gap over {side}x{side}: {} loop iterations of {budget}", side * side + 1);
        check(dev, GapShape { batch: 1, channels: 3, side }, true);
    }
    let (gpu, k) = variants().remove(0);
    if gpu.loop_budget > 65_535 {
        skip::skip(&format!("gap refusal: this adapter's loop budget is {}", gpu.loop_budget));
        return;
    }
    let s = GapShape { batch: 1, channels: 1, side: 256 };
    let (x, y) = (gpu.storage("x", s.input_len()).unwrap(), gpu.storage("y", 1).unwrap());
    let layer = GlobalAvgPool::new(&gpu, &k, s, &x, &y, None).unwrap();
    let err = gpu_train::loop_budget::check(&gpu, &layer.forward).unwrap_err();
    assert!(err.contains("gap_forward") && err.contains("side = 256"), "{err}");
}

#[test]
fn gap_backward_matches_finite_differences() {
    // L = sum(y * w): dL/dx by central differences of the forward kernel.
    let (gpu, k) = variants().remove(0);
    let s = GapShape { batch: 2, channels: 3, side: 5 };
    let mut r = rng(5);
    let x = random(&mut r, s.input_len());
    let w = random(&mut r, s.output_len());
    let loss = |x: &[f32]| -> f64 {
        let xb = gpu.storage_init("x", x).unwrap();
        let yb = gpu.storage("y", s.output_len()).unwrap();
        let layer = GlobalAvgPool::new(&gpu, &k, s, &xb, &yb, None).unwrap();
        run(&gpu, &layer.forward.iter().collect::<Vec<_>>());
        gpu.read_f32(&yb).unwrap().iter().zip(&w).map(|(&y, &w)| y as f64 * w as f64).sum()
    };
    let (xb, yb, wb, dxb) = (
        gpu.storage_init("x", &x).unwrap(),
        gpu.storage("y", s.output_len()).unwrap(),
        gpu.storage_init("w", &w).unwrap(),
        gpu.storage("dx", s.input_len()).unwrap(),
    );
    let layer = GlobalAvgPool::new(&gpu, &k, s, &xb, &yb, Some((&wb, &dxb))).unwrap();
    run(&gpu, &layer.backward.iter().collect::<Vec<_>>());
    let analytic = gpu.read_f32(&dxb).unwrap();
    let mut worst = 0f64;
    for i in [0, 7, 24, 25, 60, s.input_len() - 1] {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += 1e-2;
        down[i] -= 1e-2;
        let numeric = (loss(&up) - loss(&down)) / 2e-2;
        worst = worst.max((numeric - analytic[i] as f64).abs() / (analytic[i] as f64).abs().max(1.0));
    }
    println!("gap backward vs finite differences: max error {worst:.3e}");
    assert!(worst < 1e-3, "finite-difference mismatch {worst:.3e}");
}
