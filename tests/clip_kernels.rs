//! Gradient clipping by global norm (clip.rs) against an f64 reference: the norm and the
//! scaled gradients at small odd lengths, a norm within bounds leaving every gradient bit
//! for bit, the largest buffer lavapipe binds (chunked within the loop budget), the same
//! bits at every run, refusal of bad sizes; and a whole training run with clipping.

mod common;
use common::*;
use gpu_train::layers::clip::{EPS, GradClip, plan};

/// The clipped gradients and (coef, norm) the GPU gives for `grads`.
fn clip_on_gpu(
    dev: &(gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    grads: &[f32],
    max_norm: f64,
) -> (Vec<f32>, Vec<f32>) {
    let (gpu, k) = dev;
    let buffer = gpu.storage_init("grads", grads).unwrap();
    let clip = GradClip::new(gpu, k, &buffer, grads.len(), max_norm).unwrap();
    run(gpu, &clip.dispatches.iter().collect::<Vec<_>>());
    (gpu.read_f32(&buffer).unwrap(), gpu.read_words(&clip.clip, 0, 2).unwrap())
}

fn reference(grads: &[f32], max_norm: f64) -> (Vec<f64>, f64, f64) {
    let norm = grads.iter().map(|&g| (g as f64).powi(2)).sum::<f64>().sqrt();
    let coef = (max_norm / (norm + EPS)).min(1.0);
    (grads.iter().map(|&g| g as f64 * coef).collect(), coef, norm)
}

#[test]
fn clipping_matches_the_f64_reference_at_odd_sizes() {
    let mut r = rng(11);
    for dev in variants() {
        for len in [4usize, 12, 1_004, 65_540] {
            let grads = random(&mut r, len);
            for max_norm in [0.5, 3.0, 1e6] {
                let (got, coef_norm) = clip_on_gpu(&dev, &grads, max_norm);
                let (want, coef, norm) = reference(&grads, max_norm);
                assert!(
                    ((coef_norm[1] as f64) - norm).abs() <= 1e-5 * norm,
                    "len {len}: norm {} vs {norm}",
                    coef_norm[1]
                );
                assert!(
                    ((coef_norm[0] as f64) - coef).abs() <= 1e-5,
                    "len {len}: coef {} vs {coef}",
                    coef_norm[0]
                );
                assert_close(
                    &format!("clipped gradients, len {len}, max norm {max_norm}"),
                    &got,
                    &want,
                    1e-5,
                );
                if coef >= 1.0 {
                    // within bounds: multiplied by exactly 1, every bit kept
                    assert_eq!(got, grads, "len {len}: a norm within bounds changed a gradient");
                } else {
                    let clipped = got.iter().map(|&g| (g as f64).powi(2)).sum::<f64>().sqrt();
                    assert!(
                        (clipped - max_norm).abs() <= 1e-4 * max_norm,
                        "len {len}: clipped norm {clipped}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_largest_gradient_buffer_is_summed_in_chunks_within_the_loop_budget() {
    // 128 MiB of gradients (lavapipe's largest binding): 8M vec4s in chunks of 4,096, then
    // 2,048 chunks added by one thread; twice, with the same bits.
    let dev = variants().remove(0);
    let budget = dev.0.loop_budget;
    let len = (dev.0.limits.max_storage_buffer_binding_size as usize / 4).min(1 << 25);
    let (chunks, chunk_len) = plan(len / 4, budget);
    println!("{len} gradients: {chunks} chunks of {chunk_len} vec4s, budget {budget}");
    assert!((chunk_len as u64) < budget && (chunks as u64) < budget);
    let grads: Vec<f32> = (0..len).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
    let (got, coef_norm) = clip_on_gpu(&dev, &grads, 1.0);
    let (want, _, norm) = reference(&grads, 1.0);
    assert!(((coef_norm[1] as f64) - norm).abs() <= 1e-4 * norm, "norm {} vs {norm}", coef_norm[1]);
    assert_close("clipped gradients, the largest buffer", &got, &want, 1e-4);
    let (again, _) = clip_on_gpu(&dev, &grads, 1.0);
    assert!(got == again, "two runs differ");
    // the plan at any length keeps both loops within the budget
    for len4 in [1usize, 2_047, 2_048, 2_049, 1 << 20, 1 << 26] {
        let (chunks, chunk_len) = plan(len4, 65_535);
        assert!(chunks * chunk_len >= len4 && (chunks - 1) * chunk_len < len4, "{len4}");
        assert!(chunk_len < 65_535 && chunks < 65_535, "{len4}: {chunks} x {chunk_len}");
    }
}

#[test]
fn bad_sizes_and_norms_are_refused() {
    let dev = variants().remove(0);
    let (gpu, k) = &dev;
    let buffer = gpu.storage("grads", 8).unwrap();
    for (len, max_norm, needle) in [
        (6, 1.0, "multiple of 4"),
        (0, 1.0, "multiple of 4"),
        (8, 0.0, "positive"),
        (8, f64::NAN, "positive"),
    ] {
        let e = GradClip::new(gpu, k, &buffer, len, max_norm).err().unwrap();
        assert!(e.contains(needle), "{len}, {max_norm}: {e}");
    }
}
