//! Batch norm against an f64 reference (PyTorch's rules: biased variance to normalise,
//! unbiased in the running estimate, momentum 0.1, eps 1e-5) on image and feature shapes
//! in every kernel configuration, training and evaluation forward, dgamma, dbeta and dx,
//! and dx against finite differences; and with a ReLU fused in, against the reference's
//! max(y, 0) and its masked gradient.

mod common;
use common::*;
use gpu_train::layers::batchnorm::{BatchNorm, BnBuffers, BnShape, EPS, MOMENTUM};

struct Run {
    y: Vec<f32>,
    stats: Vec<f32>,
    grads: Vec<f32>,
    dx: Vec<f32>,
    eval_y: Vec<f32>,
    /// The autotuner's choices while building the layer.
    choices: Vec<u32>,
    span_ticks: u64,
}

/// One training forward + backward, then an evaluation forward, from fresh statistics.
fn run_bn(
    dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    s: BnShape,
    x: &[f32],
    pg: &[f32],
    dy: &[f32],
) -> Run {
    run_bn_rows(dev, s, false, x, pg, dy, s.batch)
}

/// `run_bn` with only the first `rows` of the batch valid (a short last batch).
fn run_bn_rows(
    dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    s: BnShape,
    relu: bool,
    x: &[f32],
    pg: &[f32],
    dy: &[f32],
    rows: usize,
) -> Run {
    let (gpu, k) = dev;
    // the layer's block sits at an offset in a larger parameter buffer
    let offset = 4;
    let mut params = vec![9.0f32; offset];
    params.extend_from_slice(pg);
    let xb = gpu.storage_init("x", x).unwrap();
    let yb = gpu.storage("y", s.len()).unwrap();
    let pb = gpu.storage_init("params", &params).unwrap();
    let gb = gpu.storage("grads", params.len()).unwrap();
    let sb = gpu.storage_init("stats", &s.initial_stats()).unwrap();
    let dyb = gpu.storage_init("dy", dy).unwrap();
    let dxb = gpu.storage("dx", s.len()).unwrap();
    let b =
        BnBuffers { x: &xb, y: &yb, params: &pb, grads: &gb, offset, stats: &sb, dy: &dyb, dx: Some(&dxb) };
    let slots = slots_with(&gpu, gpu_train::kernels::Step { count: rows as u32, ..Default::default() });
    let layer = BatchNorm::new(&gpu, &k, s, relu, &b, true, &slots).unwrap();
    for step in [&layer.train_forward, &layer.eval_forward, &layer.backward] {
        gpu_train::loop_budget::check(&gpu, step).unwrap();
    }
    run(&gpu, &layer.train_forward.iter().chain(&layer.backward).collect::<Vec<_>>());
    let (y, stats, grads, dx) = (
        gpu.read_f32(&yb).unwrap(),
        gpu.read_f32(&sb).unwrap(),
        gpu.read_f32(&gb).unwrap(),
        gpu.read_f32(&dxb).unwrap(),
    );
    run(&gpu, &layer.eval_forward.iter().collect::<Vec<_>>());
    let choices = k.tuner.records().iter().map(|r| r.choice).collect();
    // the elementwise kernels' loop bound: values per thread + 1
    let span_ticks = layer.eval_forward[0].loops.as_ref().unwrap().ticks;
    Run {
        y,
        stats,
        grads: grads[offset..].to_vec(),
        dx,
        eval_y: gpu.read_f32(&yb).unwrap(),
        choices,
        span_ticks,
    }
}

struct Reference {
    y: Vec<f64>,
    stats: Vec<f64>,
    grads: Vec<f64>,
    dx: Vec<f64>,
    eval_y: Vec<f64>,
}

fn reference(s: BnShape, x: &[f32], pg: &[f32], dy: &[f32]) -> Reference {
    reference_relu(s, false, x, pg, dy)
}

/// With `relu`, y and the evaluation output are max(., 0) and dy is masked by y > 0
/// before batch norm's own backward.
fn reference_relu(s: BnShape, relu: bool, x: &[f32], pg: &[f32], dy: &[f32]) -> Reference {
    let (c_n, n) = (s.channels, (s.batch * s.plane) as f64);
    let at = |c: usize, j: usize| ((j / s.plane) * c_n + c) * s.plane + j % s.plane;
    let mut r = Reference {
        y: vec![0.0; s.len()],
        stats: vec![0.0; 4 * c_n],
        grads: vec![0.0; 2 * c_n],
        dx: vec![0.0; s.len()],
        eval_y: vec![0.0; s.len()],
    };
    for c in 0..c_n {
        let idx: Vec<usize> = (0..s.batch * s.plane).map(|j| at(c, j)).collect();
        let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / n;
        let sq = idx.iter().map(|&i| (x[i] as f64 - mean).powi(2)).sum::<f64>();
        let inv_std = 1.0 / (sq / n + EPS).sqrt();
        let (rm, rv) = (MOMENTUM * mean, (1.0 - MOMENTUM) + MOMENTUM * sq / (n - 1.0));
        r.stats[c] = mean;
        r.stats[c_n + c] = inv_std;
        r.stats[2 * c_n + c] = rm;
        r.stats[3 * c_n + c] = rv;
        let (gamma, beta) = (pg[c] as f64, pg[c_n + c] as f64);
        let (mut dgamma, mut dbeta) = (0.0, 0.0);
        let clip = |v: f64| if relu { v.max(0.0) } else { v };
        let mut g = vec![0.0; s.len()];
        for &i in &idx {
            let xhat = (x[i] as f64 - mean) * inv_std;
            let y = gamma * xhat + beta;
            r.y[i] = clip(y);
            r.eval_y[i] = clip(gamma * (x[i] as f64 - rm) / (rv + EPS).sqrt() + beta);
            g[i] = if relu && y <= 0.0 { 0.0 } else { dy[i] as f64 };
            dgamma += g[i] * xhat;
            dbeta += g[i];
        }
        r.grads[c] = dgamma;
        r.grads[c_n + c] = dbeta;
        for &i in &idx {
            let xhat = (x[i] as f64 - mean) * inv_std;
            r.dx[i] = gamma * inv_std * (g[i] - (dbeta + xhat * dgamma) / n);
        }
    }
    r
}

#[test]
fn batchnorm_matches_reference() {
    // images (3 x 5 channels x 7x7) and features (13 x 6); offsets and scales so the mean
    // and variance are far from 0 and 1
    for s in [BnShape { batch: 3, channels: 5, plane: 49 }, BnShape { batch: 13, channels: 6, plane: 1 }] {
        let mut r = rng(61 + s.plane as u64);
        let x: Vec<f32> =
            random(&mut r, s.len()).iter().enumerate().map(|(i, v)| 3.0 * v + (i % 7) as f32).collect();
        let pg = random(&mut r, s.param_len());
        let dy = random(&mut r, s.len());
        let want = reference(s, &x, &pg, &dy);
        for dev in variants() {
            println!("{:?} {s:?}", dev.1.variant);
            let got = run_bn(dev, s, &x, &pg, &dy);
            assert_close("bn forward (train)", &got.y, &want.y, 1e-4);
            assert_close("bn statistics", &got.stats, &want.stats, 1e-4);
            assert_close("bn dgamma, dbeta", &got.grads, &want.grads, 1e-4);
            assert_close("bn dx", &got.dx, &want.dx, 1e-4);
            assert_close("bn forward (eval)", &got.eval_y, &want.eval_y, 1e-4);
        }
    }
}

#[test]
fn batchnorm_dx_matches_finite_differences() {
    // L = sum(y * w) in training mode: x moves the batch statistics too.
    let s = BnShape { batch: 4, channels: 3, plane: 5 };
    let mut r = rng(62);
    let x = random(&mut r, s.len());
    let pg = random(&mut r, s.param_len());
    let w = random(&mut r, s.len());
    let loss = |x: &[f32]| -> f64 {
        let got = run_bn(variants().remove(0), s, x, &pg, &w);
        got.y.iter().zip(&w).map(|(&y, &w)| y as f64 * w as f64).sum()
    };
    let analytic = run_bn(variants().remove(0), s, &x, &pg, &w).dx;
    let mut worst = 0f64;
    for i in [0, 9, 17, 30, s.len() - 1] {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += 1e-2;
        down[i] -= 1e-2;
        let numeric = (loss(&up) - loss(&down)) / 2e-2;
        worst = worst.max((numeric - analytic[i] as f64).abs() / (analytic[i] as f64).abs().max(1.0));
    }
    println!("bn dx vs finite differences: max error {worst:.3e}");
    assert!(worst < 1e-2, "finite-difference mismatch {worst:.3e}");
}

#[test]
fn a_short_batch_normalises_over_its_valid_rows_only() {
    // The last batch of an epoch holds `count` samples and padding: the statistics, the
    // running estimates and the gradients must be those of the valid rows alone, and the
    // padding rows get no gradient.
    for (s, valid) in
        [(BnShape { batch: 7, channels: 3, plane: 10 }, 4), (BnShape { batch: 6, channels: 5, plane: 1 }, 2)]
    {
        let mut r = rng(90 + valid as u64);
        let per_row = s.channels * s.plane;
        let x = random(&mut r, s.len());
        let mut dy = random(&mut r, s.len());
        // the loss gives padding rows a zero gradient
        dy[valid * per_row..].fill(0.0);
        let pg: Vec<f32> = (0..2 * s.channels).map(|i| 0.5 + 0.1 * i as f32).collect();
        let short = BnShape { batch: valid, ..s };
        let want = reference(short, &x[..valid * per_row], &pg, &dy[..valid * per_row]);
        for dev in variants() {
            let got = run_bn_rows(dev, s, false, &x, &pg, &dy, valid);
            assert_close("short batch y", &got.y[..valid * per_row], &want.y, 1e-5);
            assert_close("short batch statistics", &got.stats, &want.stats, 1e-5);
            assert_close("short batch dgamma, dbeta", &got.grads, &want.grads, 1e-5);
            assert_close("short batch dx", &got.dx[..valid * per_row], &want.dx, 1e-5);
            assert!(got.dx[valid * per_row..].iter().all(|&v| v == 0.0), "padding rows get no gradient");
        }
    }
}

#[test]
fn batchnorm_with_a_fused_relu_matches_reference() {
    // planes that fill whole threads (32 = 2 x the default 16 values per thread), end in a
    // partial one (7x7 = 49, 8, 3) and features (1); short batches too, whose padding rows get no gradient; and
    // shapes with several values per chunk of the statistics, so their walk crosses
    // from one sample's plane to the next (features: every step)
    let shapes = [
        (BnShape { batch: 5, channels: 3, plane: 32 }, 5),
        (BnShape { batch: 5, channels: 3, plane: 8 }, 4),
        (BnShape { batch: 3, channels: 5, plane: 49 }, 3),
        (BnShape { batch: 6, channels: 4, plane: 3 }, 4),
        (BnShape { batch: 13, channels: 6, plane: 1 }, 13),
        (BnShape { batch: 100, channels: 64, plane: 1 }, 97),
        (BnShape { batch: 40, channels: 64, plane: 49 }, 40),
    ];
    for (s, valid) in shapes {
        let mut r = rng(300 + s.plane as u64);
        let per_row = s.channels * s.plane;
        let x: Vec<f32> =
            random(&mut r, s.len()).iter().enumerate().map(|(i, v)| 2.0 * v + (i % 5) as f32).collect();
        let pg = random(&mut r, s.param_len());
        let mut dy = random(&mut r, s.len());
        dy[valid * per_row..].fill(0.0);
        let short = BnShape { batch: valid, ..s };
        let want = reference_relu(short, true, &x[..valid * per_row], &pg, &dy[..valid * per_row]);
        let negative = want.y.iter().filter(|&&v| v == 0.0).count();
        assert!(negative > 0 && negative < want.y.len(), "the ReLU must clip some values and not all");
        let (chunks, chunk_len) = s.plan(65_535);
        println!("{s:?}: statistics in {chunks} chunks of {chunk_len} values per channel");
        for dev in variants() {
            println!("{:?} {s:?}, {valid} valid rows", dev.1.variant);
            let got = run_bn_rows(dev, s, true, &x, &pg, &dy, valid);
            let v = valid * per_row;
            assert_close("bn+relu forward (train)", &got.y[..v], &want.y, 1e-4);
            assert!(got.y.iter().all(|&y| y >= 0.0 && !y.is_sign_negative()), "ReLU output is +0 or more");
            assert_close("bn+relu statistics", &got.stats, &want.stats, 1e-4);
            assert_close("bn+relu dgamma, dbeta", &got.grads, &want.grads, 1e-4);
            assert_close("bn+relu dx", &got.dx[..v], &want.dx, 1e-4);
            assert!(got.dx[v..].iter().all(|&d| d == 0.0), "padding rows get no gradient");
            assert_close("bn+relu forward (eval)", &got.eval_y[..v], &want.eval_y, 1e-4);
        }
    }
}

#[test]
fn every_values_per_thread_the_autotuner_may_choose_gives_identical_results() {
    use gpu_train::layers::batchnorm::{PER_THREAD_CANDIDATES, PER_THREAD_MORE};
    // planes of 49 and 196 (partial spans at most sizes, several full ones at 64), 1 and
    // 64; with the ReLU fused and without
    let shapes = [
        BnShape { batch: 6, channels: 5, plane: 49 },
        BnShape { batch: 3, channels: 2, plane: 196 },
        BnShape { batch: 37, channels: 3, plane: 1 },
        BnShape { batch: 3, channels: 4, plane: 64 },
    ];
    for s in shapes {
        for relu in [false, true] {
            let mut r = rng(400 + s.plane as u64);
            let x = random(&mut r, s.len());
            let pg = random(&mut r, s.param_len());
            let dy = random(&mut r, s.len());
            let mut first: Option<(u32, Run)> = None;
            for pt in PER_THREAD_CANDIDATES.into_iter().chain(PER_THREAD_MORE) {
                let gpu = gpu();
                let k = gpu_train::kernels::Kernels::new(&gpu).unwrap();
                let k = k.with_tuner(gpu_train::autotune::Tuner::forcing(&gpu, pt));
                let got = run_bn_rows((gpu, k), s, relu, &x, &pg, &dy, s.batch - 1);
                assert_eq!(got.choices, vec![pt], "the layer ran {pt} values per thread");
                assert_eq!(
                    got.span_ticks,
                    pt as u64 + 1,
                    "the dispatches were built for {pt} values per thread"
                );
                match &first {
                    None => first = Some((pt, got)),
                    Some((p0, want)) => {
                        let same =
                            |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same(&got.y, &want.y),
                            "{s:?} relu {relu}: y differs, {pt} vs {p0} per thread"
                        );
                        assert!(same(&got.dx, &want.dx), "{s:?} relu {relu}: dx differs, {pt} vs {p0}");
                        assert!(
                            same(&got.eval_y, &want.eval_y),
                            "{s:?} relu {relu}: eval differs, {pt} vs {p0}"
                        );
                        assert!(same(&got.grads, &want.grads) && same(&got.stats, &want.stats));
                    }
                }
            }
        }
    }
}
