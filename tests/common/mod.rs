//! Helpers shared by the GPU tests: a device, random data, f64 references and error checks.
#![allow(dead_code)]

pub mod skip;

use gpu_train::gpu::{AdapterOptions, Gpu};
use gpu_train::kernels::{Dispatch, Kernels, Step, StepSlots, Variant};
use rand::{Rng, SeedableRng};

pub fn gpu() -> Gpu {
    Gpu::new(&AdapterOptions::default()).expect("a wgpu adapter (install mesa-vulkan-drivers)")
}

/// A device with SHADER_F16, or None after a visible skip (a failure under CI).
pub fn gpu_with_f16() -> Option<Gpu> {
    let gpu = gpu();
    if !gpu.has_f16() {
        skip::skip_unless_ci(&format!("{} has no SHADER_F16", gpu.describe()));
        return None;
    }
    Some(gpu)
}

/// A device and kernels for every kernel configuration: Plain at this adapter's workgroup
/// size and at 64 lanes (what real GPUs get, with its own weight-gradient mapping), and
/// Subgroup8 where the adapter has 8-lane subgroups.
pub fn variants() -> Vec<(Gpu, Kernels)> {
    let mut out = Vec::new();
    for (variant, wg) in [(Variant::Plain, None), (Variant::Plain, Some(64)), (Variant::Subgroup8, Some(8))] {
        let gpu = gpu();
        let wg = wg.unwrap_or(gpu.workgroup_size());
        if variant == Variant::Plain || Variant::best_for(&gpu) == variant {
            let kernels = Kernels::with_config(&gpu, variant, wg).unwrap();
            println!("kernel variant {variant:?}, {wg}-lane workgroups, on {}", gpu.describe());
            out.push((gpu, kernels));
        }
    }
    out
}

/// Whole numbers in [-3, 3]: sums of them stay exact in f32, so a loop that a driver cut
/// short shows as a wrong value, not as rounding.
pub fn small_ints(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-3i32..=3) as f32).collect()
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Uniform in [-1, 1), never all zeros.
pub fn random(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Runs dispatches once, in order, in one pass, with step slot 0.
pub fn run(gpu: &Gpu, dispatches: &[&Dispatch]) {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.record(&mut pass, 0);
        }
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait().unwrap();
}

pub fn slots_with(gpu: &Gpu, step: Step) -> StepSlots {
    let slots = StepSlots::new(gpu, 1);
    slots.write(gpu, &[step]);
    slots
}

/// Max of |got - want| / max(1, |want|) — relative for large values, absolute near zero.
pub fn max_rel_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1.0)).fold(0.0, f64::max)
}

pub fn assert_close(name: &str, got: &[f32], want: &[f64], tol: f64) {
    let err = max_rel_error(got, want);
    println!("{name}: max relative error {err:.3e} over {} values", got.len());
    assert!(err <= tol, "{name}: max relative error {err:.3e} exceeds {tol:.1e}");
    assert!(want.iter().any(|&w| w != 0.0), "{name}: reference is all zeros, the test proves nothing");
}
