//! Dropout: the GPU's keep decisions equal the host's hash of (seed, update, index)
//! exactly, about 1 - p of the values survive, scaled by 1 / (1 - p); the backward pass
//! drops the same values; another update or seed draws another mask; p = 0 keeps all.

mod common;
use common::*;
use gpu_train::kernels::Step;
use gpu_train::layers::dropout::{Dropout, keeps};

/// (y, dx) of one forward and backward at optimiser update `update`.
fn run_dropout(n: usize, p: f64, seed: u32, update: u32, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (gpu, k) = variants().pop().unwrap();
    let (xb, yb) = (gpu.storage_init("x", x).unwrap(), gpu.storage("y", n).unwrap());
    let (dyb, dxb) = (gpu.storage_init("dy", dy).unwrap(), gpu.storage("dx", n).unwrap());
    let slots = slots_with(&gpu, Step { update, ..Default::default() });
    let layer = Dropout::new(&gpu, &k, n, p, seed, &xb, &yb, Some((&dyb, &dxb)), &slots).unwrap();
    gpu_train::loop_budget::check(&gpu, &layer.forward).unwrap();
    run(&gpu, &layer.forward.iter().chain(&layer.backward).collect::<Vec<_>>());
    (gpu.read_f32(&yb).unwrap(), gpu.read_f32(&dxb).unwrap())
}

#[test]
fn dropout_matches_the_host_hash_exactly() {
    // multiples of 4 take the vec4 path, the others the scalar loop; 1 and 3 are shorter
    // than one vec4
    for n in [1, 3, 4, 10_007, 10_008] {
        let (p, seed, update) = (0.3, 42, 17);
        let mut r = rng(8 + n as u64);
        let x = random(&mut r, n);
        let dy = random(&mut r, n);
        let (y, dx) = run_dropout(n, p, seed, update, &x, &dy);
        let scale = (1.0 / (1.0 - p)) as f32;
        let mut kept = 0;
        for i in 0..n {
            let keep = keeps(seed, update, i as u32, p);
            kept += keep as usize;
            let want = if keep { x[i] * scale } else { 0.0 };
            let want_dx = if keep { dy[i] * scale } else { 0.0 };
            assert_eq!((y[i], dx[i]), (want, want_dx), "n = {n}, value {i}");
        }
        if n < 1000 {
            continue;
        }
        let frac = kept as f64 / n as f64;
        println!("n = {n}: kept {kept} ({frac:.4}), expected {:.4}", 1.0 - p);
        // binomial: 5 standard deviations
        assert!((frac - (1.0 - p)).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt(), "kept fraction {frac}");
    }
}

#[test]
fn another_update_or_seed_draws_another_mask_and_p_zero_keeps_everything() {
    let n = 4096;
    let x = vec![1.0f32; n];
    let mask = |seed, update, p| run_dropout(n, p, seed, update, &x, &x).0;
    let a = mask(1, 5, 0.5);
    assert_eq!(a, mask(1, 5, 0.5), "the same counters must give the same mask");
    for (name, other) in [("update", mask(1, 6, 0.5)), ("seed", mask(2, 5, 0.5))] {
        let differ = a.iter().zip(&other).filter(|(u, v)| u != v).count();
        println!("another {name}: {differ} of {n} decisions differ");
        assert!(differ > n / 4, "another {name} should draw another mask");
    }
    assert!(mask(1, 5, 0.0).iter().all(|&v| v == 1.0), "p = 0 keeps every value unscaled");
}

#[test]
fn a_probability_outside_0_to_1_is_refused() {
    let (gpu, k) = variants().pop().unwrap();
    let b = gpu.storage("b", 4).unwrap();
    let slots = slots_with(&gpu, Step::default());
    for p in [1.0, -0.1, f64::NAN] {
        let err = Dropout::new(&gpu, &k, 4, p, 0, &b, &b, None, &slots).err().expect("refused");
        assert!(err.contains("dropout probability"), "{err}");
    }
}
