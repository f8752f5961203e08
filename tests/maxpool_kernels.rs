//! Standalone 2x2 max pool: forward and backward against f64 references on odd batch and
//! channel counts in every kernel configuration (exact: each output is an input or zero),
//! ties going to the first window position in row-major order (as PyTorch's MaxPool2d),
//! the backward against finite differences on tie-free inputs, and odd or zero sides
//! refused by name.

mod common;
use common::*;
use gpu_train::gpu::Gpu;
use gpu_train::kernels::Kernels;
use gpu_train::layers::maxpool::{MaxPool, PoolShape};
use rand::seq::SliceRandom;

/// y and the index in x of each window's winner: the first maximum of (top-left,
/// top-right, bottom-left, bottom-right).
fn reference_forward(s: PoolShape, x: &[f32]) -> (Vec<f64>, Vec<usize>) {
    let half = s.side / 2;
    let mut y = Vec::new();
    let mut winner = Vec::new();
    for plane in 0..s.batch * s.channels {
        for py in 0..half {
            for px in 0..half {
                let top_left = (plane * s.side + 2 * py) * s.side + 2 * px;
                let window = [top_left, top_left + 1, top_left + s.side, top_left + s.side + 1];
                let mut best = window[0];
                for &at in &window[1..] {
                    if x[at] as f64 > x[best] as f64 {
                        best = at;
                    }
                }
                y.push(x[best] as f64);
                winner.push(best);
            }
        }
    }
    (y, winner)
}

fn reference_backward(s: PoolShape, winner: &[usize], dy: &[f32]) -> Vec<f64> {
    let mut dx = vec![0.0; s.input_len()];
    for (&at, &g) in winner.iter().zip(dy) {
        dx[at] = g as f64;
    }
    dx
}

/// Runs forward then backward on x and dy: (y, dx).
fn pool(gpu: &Gpu, k: &Kernels, s: PoolShape, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let xb = gpu.storage_init("x", x).unwrap();
    let yb = gpu.storage("y", s.output_len()).unwrap();
    let dyb = gpu.storage_init("dy", dy).unwrap();
    // dx starts as garbage, so a position the backward forgets to zero shows
    let dxb = gpu.storage_init("dx", &vec![f32::MAX; s.input_len()]).unwrap();
    let layer = MaxPool::new(gpu, k, s, &xb, &yb, Some((&dyb, &dxb))).unwrap();
    gpu_train::loop_budget::check(gpu, &layer.forward).unwrap();
    gpu_train::loop_budget::check(gpu, &layer.backward).unwrap();
    run(gpu, &layer.forward.iter().chain(&layer.backward).collect::<Vec<_>>());
    (gpu.read_f32(&yb).unwrap(), gpu.read_f32(&dxb).unwrap())
}

fn check(gpu: &Gpu, k: &Kernels, s: PoolShape, x: &[f32], dy: &[f32]) {
    let (y, dx) = pool(gpu, k, s, x, dy);
    let (want_y, winner) = reference_forward(s, x);
    let want_dx = reference_backward(s, &winner, dy);
    // selection and copying only: exact
    assert_close(&format!("maxpool forward {s:?}"), &y, &want_y, 0.0);
    assert_close(&format!("maxpool backward {s:?}"), &dx, &want_dx, 0.0);
}

#[test]
fn maxpool_matches_reference() {
    for (gpu, k) in variants() {
        for (i, s) in [
            PoolShape { batch: 3, channels: 5, side: 6 },
            PoolShape { batch: 3, channels: 5, side: 10 },
            PoolShape { batch: 1, channels: 1, side: 2 },
            PoolShape { batch: 7, channels: 3, side: 28 },
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = rng(41 + i as u64);
            let x = random(&mut r, s.input_len());
            let dy = random(&mut r, s.output_len());
            check(&gpu, &k, s, &x, &dy);
        }
    }
}

#[test]
fn maxpool_ties_go_to_the_first_window_position() {
    // Hand-made windows, one per channel of a 2x2 input: all equal (top-left wins),
    // top-right = bottom-left = bottom-right (top-right), bottom pair (bottom-left), and
    // top-left = bottom-right (top-left).
    let s = PoolShape { batch: 1, channels: 4, side: 2 };
    let x = [2.0f32, 2.0, 2.0, 2.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, -1.0, -2.0, -2.0, -1.0];
    let dy = [1.0f32, 2.0, 3.0, 4.0];
    let want_dx = [1.0f32, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 4.0, 0.0, 0.0, 0.0];
    for (gpu, k) in variants() {
        let (y, dx) = pool(&gpu, &k, s, &x, &dy);
        assert_eq!(y, [2.0, 1.0, 1.0, -1.0], "maxpool forward of tied windows");
        assert_eq!(dx, want_dx, "maxpool backward of tied windows");

        // Whole numbers in [-3, 3] tie often: the reference's first-maximum rule must hold
        // everywhere, and must differ from a last-maximum rule somewhere for this to test it.
        let s = PoolShape { batch: 3, channels: 5, side: 10 };
        let mut r = rng(3);
        let x = small_ints(&mut r, s.input_len());
        let dy = random(&mut r, s.output_len());
        let (_, first) = reference_forward(s, &x);
        let reversed_ties = first
            .iter()
            .filter(|&&at| {
                // rows run on across planes, and S is even, so row parity is the window's
                let (row, col) = (at / s.side, at % s.side);
                let tl = (row - row % 2) * s.side + col - col % 2;
                [tl, tl + 1, tl + s.side, tl + s.side + 1].iter().any(|&o| o > at && x[o] == x[at])
            })
            .count();
        println!("{reversed_ties} of {} windows have a later tied maximum", s.output_len());
        assert!(reversed_ties > 50, "only {reversed_ties} tied windows");
        check(&gpu, &k, s, &x, &dy);
    }
}

#[test]
fn maxpool_backward_matches_finite_differences() {
    // L = sum(y * w): dL/dx by central differences of the forward kernel, at every input.
    // Inputs are distinct multiples of 0.05, so a 1e-2 step never changes a winner.
    let (gpu, k) = variants().remove(0);
    let s = PoolShape { batch: 2, channels: 3, side: 6 };
    let mut r = rng(9);
    let mut x: Vec<f32> = (0..s.input_len()).map(|i| (i as f32 - 100.0) * 0.05).collect();
    x.shuffle(&mut r);
    let w = random(&mut r, s.output_len());
    let loss = |x: &[f32]| -> f64 {
        let xb = gpu.storage_init("x", x).unwrap();
        let yb = gpu.storage("y", s.output_len()).unwrap();
        let layer = MaxPool::new(&gpu, &k, s, &xb, &yb, None).unwrap();
        run(&gpu, &layer.forward.iter().collect::<Vec<_>>());
        gpu.read_f32(&yb).unwrap().iter().zip(&w).map(|(&y, &w)| y as f64 * w as f64).sum()
    };
    let (_, analytic) = pool(&gpu, &k, s, &x, &w);
    assert_eq!(analytic.iter().filter(|&&g| g != 0.0).count(), s.output_len(), "one winner per window");
    let mut worst = 0f64;
    for i in 0..s.input_len() {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += 1e-2;
        down[i] -= 1e-2;
        let numeric = (loss(&up) - loss(&down)) / 2e-2;
        worst = worst.max((numeric - analytic[i] as f64).abs() / (analytic[i] as f64).abs().max(1.0));
    }
    println!("maxpool backward vs finite differences: max error {worst:.3e}");
    assert!(worst < 1e-3, "finite-difference mismatch {worst:.3e}");
}

#[test]
fn maxpool_refuses_odd_or_zero_sides_by_name() {
    let (gpu, k) = variants().remove(0);
    let (x, y) = (gpu.storage("x", 64).unwrap(), gpu.storage("y", 64).unwrap());
    for side in [0, 1, 5, 7] {
        let s = PoolShape { batch: 1, channels: 1, side };
        let Err(err) = MaxPool::new(&gpu, &k, s, &x, &y, None) else {
            panic!("side {side} was accepted");
        };
        assert!(err.contains(&format!("side {side} ")), "{err}");
    }
}
