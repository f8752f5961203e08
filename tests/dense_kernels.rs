//! Dense layer, softmax cross-entropy, optimisers and the batch gather against f64
//! references; the dense backward pass against finite differences.

mod common;
use common::*;
use gpu_train::kernels::Step;
use gpu_train::layers::dense::{Dense, DenseBuffers, DenseShape};
use gpu_train::layers::optim::{Optimizer, OptimizerConfig, OptimizerKind};

// 13 x 37 -> 21: no size is a multiple of the workgroup or the 8x4 tile.
const SHAPE: DenseShape = DenseShape { batch: 13, inputs: 37, outputs: 21 };
// 36 inputs: the GEMMs can read B as vec4s (matmul_cols forward, matmul_rows backward).
const ROWS_SHAPE: DenseShape = DenseShape { batch: 13, inputs: 36, outputs: 21 };

struct Fixture {
    gpu: gpu_train::gpu::Gpu,
    layer: Dense,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    dx: wgpu::Buffer,
    _keep: Vec<wgpu::Buffer>,
}

fn fixture(
    (gpu, k): (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    s: DenseShape,
    relu: bool,
    x: &[f32],
    params: &[f32],
    dy: &[f32],
    mask: Option<&[f32]>,
) -> Fixture {
    let xb = gpu.storage_init("x", x).unwrap();
    let pb = gpu.storage_init("params", params).unwrap();
    let gb = gpu.storage("grads", params.len()).unwrap();
    let y = gpu.storage("y", s.batch * s.outputs).unwrap();
    let dyb = gpu.storage_init("dy", dy).unwrap();
    let dx = gpu.storage("dx", s.batch * s.inputs).unwrap();
    let maskb = gpu.storage_init("mask", mask.unwrap_or(&[0.0])).unwrap();
    let layer = Dense::new(
        &gpu,
        &k,
        s,
        relu,
        &DenseBuffers {
            x: &xb,
            params: &pb,
            grads: &gb,
            offset: 0,
            y: &y,
            dy: &dyb,
            dx: Some(&dx),
            dx_relu_mask: mask.map(|_| &maskb),
        },
        true,
    )
    .unwrap();
    Fixture { gpu, layer, params: pb, grads: gb, x: xb, y, dx, _keep: vec![dyb, maskb] }
}

fn forward_ref(s: &DenseShape, x: &[f32], p: &[f32], relu: bool) -> Vec<f64> {
    let mut y = vec![0f64; s.batch * s.outputs];
    for b in 0..s.batch {
        for o in 0..s.outputs {
            let mut acc = p[s.weight_len() + o] as f64;
            for i in 0..s.inputs {
                acc += x[b * s.inputs + i] as f64 * p[o * s.inputs + i] as f64;
            }
            y[b * s.outputs + o] = if relu { acc.max(0.0) } else { acc };
        }
    }
    y
}

#[test]
fn dense_forward_matches_reference() {
    let mut r = rng(10);
    // SHAPE reads W through scalar loads, ROWS_SHAPE through matmul_cols' vec4 loads.
    for s in [SHAPE, ROWS_SHAPE] {
        let x = random(&mut r, s.batch * s.inputs);
        let p = random(&mut r, s.param_len());
        for relu in [false, true] {
            for dev in variants() {
                println!("{:?} {s:?}", dev.1.variant);
                let f = fixture(dev, s, relu, &x, &p, &random(&mut r, s.batch * s.outputs), None);
                run(&f.gpu, &f.layer.forward.iter().collect::<Vec<_>>());
                let name = if relu { "matmul+bias+relu" } else { "matmul+bias" };
                assert_close(name, &f.gpu.read_f32(&f.y).unwrap(), &forward_ref(&s, &x, &p, relu), 1e-4);
            }
        }
    }
}

#[test]
fn dense_backward_matches_reference() {
    let mut r = rng(11);
    for s in [SHAPE, ROWS_SHAPE] {
        let x = random(&mut r, s.batch * s.inputs);
        let p = random(&mut r, s.param_len());
        let dy = random(&mut r, s.batch * s.outputs);
        let mask = random(&mut r, s.batch * s.inputs);
        for dev in variants() {
            println!("{:?} {s:?}", dev.1.variant);
            check_dense_backward(dev, s, &x, &p, &dy, &mask, 1e-4);
        }
    }
}

fn check_dense_backward(
    dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    s: DenseShape,
    x: &[f32],
    p: &[f32],
    dy: &[f32],
    mask: &[f32],
    tol: f64,
) {
    let f = fixture(dev, s, false, x, p, dy, Some(mask));
    run(&f.gpu, &f.layer.backward.iter().collect::<Vec<_>>());
    let mut dw = vec![0f64; s.param_len()];
    let mut dx = vec![0f64; s.batch * s.inputs];
    for b in 0..s.batch {
        for o in 0..s.outputs {
            let g = dy[b * s.outputs + o] as f64;
            dw[s.weight_len() + o] += g;
            for i in 0..s.inputs {
                dw[o * s.inputs + i] += g * x[b * s.inputs + i] as f64;
                dx[b * s.inputs + i] += g * p[o * s.inputs + i] as f64;
            }
        }
    }
    for (v, m) in dx.iter_mut().zip(mask) {
        if *m <= 0.0 {
            *v = 0.0;
        }
    }
    assert_close("dense dW+db", &f.gpu.read_f32(&f.grads).unwrap(), &dw, tol);
    assert_close("dense dx (ReLU-masked)", &f.gpu.read_f32(&f.dx).unwrap(), &dx, tol);
}

/// L = sum(y * dy) for y = relu(x W^T + b); compare backward with central differences.
#[test]
fn dense_backward_matches_finite_differences() {
    let mut r = rng(12);
    let s = SHAPE;
    let x = random(&mut r, s.batch * s.inputs);
    let p = random(&mut r, s.param_len());
    let dy = random(&mut r, s.batch * s.outputs);
    let f = fixture(variants().pop().unwrap(), s, false, &x, &p, &dy, None);
    run(&f.gpu, &f.layer.backward.iter().collect::<Vec<_>>());
    let grads = f.gpu.read_f32(&f.grads).unwrap();
    let dx = f.gpu.read_f32(&f.dx).unwrap();
    let loss = |xv: &[f32], pv: &[f32]| -> f64 {
        f.gpu.queue.write_buffer(&f.x, 0, bytemuck::cast_slice(xv));
        f.gpu.queue.write_buffer(&f.params, 0, bytemuck::cast_slice(pv));
        run(&f.gpu, &f.layer.forward.iter().collect::<Vec<_>>());
        let y = f.gpu.read_f32(&f.y).unwrap();
        y.iter().zip(&dy).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let eps = 1e-2f32;
    let mut worst = 0f64;
    for (is_param, i) in
        (0..10).map(|k| (true, k * 53 % s.param_len())).chain((0..10).map(|k| (false, k * 29 % x.len())))
    {
        let (mut xp, mut pp, mut xm, mut pm) = (x.clone(), p.clone(), x.clone(), p.clone());
        if is_param {
            pp[i] += eps;
            pm[i] -= eps;
        } else {
            xp[i] += eps;
            xm[i] -= eps;
        }
        let numeric = (loss(&xp, &pp) - loss(&xm, &pm)) / (2.0 * eps as f64);
        let analytic = if is_param { grads[i] } else { dx[i] } as f64;
        worst = worst.max((numeric - analytic).abs() / analytic.abs().max(1.0));
    }
    println!("dense backward vs finite differences: max error {worst:.3e}");
    assert!(worst < 1e-2, "finite-difference mismatch {worst:.3e}");
}

/// Per-row softmax cross-entropy in f64 against the one-hot target smoothed by `eps`: the
/// gradient (divided by `count`) and each valid row's (loss, correct).
fn xent_ref(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    count: usize,
    eps: f64,
) -> (Vec<f64>, Vec<(f64, f64)>) {
    let batch = labels.len();
    let mut grad = vec![0f64; batch * classes];
    let mut rows = Vec::new();
    for b in 0..count {
        let row: Vec<f64> = logits[b * classes..(b + 1) * classes].iter().map(|&v| v as f64).collect();
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - max).exp()).sum();
        let label = labels[b] as usize;
        // the first of equal maxima, as the kernel picks it
        let arg = (0..classes).find(|&i| row[i] == max).unwrap();
        let target = |c: usize| (1.0 - eps) * (c == label) as u32 as f64 + eps / classes as f64;
        // -sum_c target_c log p_c
        let loss: f64 = (0..classes).map(|c| -target(c) * (row[c] - max - z.ln())).sum();
        rows.push((loss, (arg == label) as u32 as f64));
        for c in 0..classes {
            let prob = (row[c] - max).exp() / z;
            grad[b * classes + c] = (prob - target(c)) / count as f64;
        }
    }
    (grad, rows)
}

/// The kernel on one batch placed at `start` of the epoch's order, against xent_ref.
fn check_xent(batch: usize, classes: usize, count: u32, start: u32, smoothing: f64) {
    let (gpu, k) = variants().pop().unwrap();
    let ticks = gpu_train::layers::loss::xent_loops(classes).ticks;
    println!(
        "softmax_xent: batch {batch}, {classes} classes: {ticks} loop iterations of {}",
        gpu.loop_budget
    );
    assert!(ticks <= gpu.loop_budget);
    let mut r = rng(13 + classes as u64);
    let logits: Vec<f32> = random(&mut r, batch * classes).iter().map(|v| v * 4.0).collect();
    // every third label is the row's argmax, so some predictions are right
    let argmax = |b: usize| {
        let row = &logits[b * classes..(b + 1) * classes];
        (0..classes).fold(0, |best, c| if row[c] > row[best] { c } else { best }) as u32
    };
    let labels: Vec<u32> = (0..batch)
        .map(|i| if i % 3 == 0 { argmax(i) } else { (i as u32 * 5 + 2) % classes as u32 })
        .collect();
    let lb = gpu.storage_init("logits", &logits).unwrap();
    let yb = gpu.storage_init("labels", &labels).unwrap();
    let db = gpu.storage("d", batch * classes).unwrap();
    // sentinels show which metric slots the kernel wrote
    let slots_len = 2 * (start as usize + batch + 1);
    let mb = gpu.storage_init("metrics", &vec![-1f32; slots_len]).unwrap();
    let slots = slots_with(&gpu, Step { start, count, ..Default::default() });
    let (d, _u) = gpu_train::layers::loss::softmax_xent(
        &gpu, &k, batch, classes, &lb, &yb, &db, &mb, &slots, smoothing,
    )
    .unwrap();
    run(&gpu, &[&d]);
    let (grad, rows) = xent_ref(&logits, &labels, classes, count as usize, smoothing);
    assert_close("softmax_xent gradient", &gpu.read_f32(&db).unwrap(), &grad, 1e-4);
    let metrics = gpu.read_f32(&mb).unwrap();
    let (before, rest) = metrics.split_at(2 * start as usize);
    let (written, after) = rest.split_at(2 * count as usize);
    assert!(before.iter().chain(after).all(|&v| v == -1.0), "wrote outside the valid rows' slots");
    let losses: Vec<f32> = written.iter().step_by(2).copied().collect();
    let want: Vec<f64> = rows.iter().map(|r| r.0).collect();
    assert_close("softmax_xent per-sample loss", &losses, &want, 1e-5);
    let correct: Vec<f64> = written.iter().skip(1).step_by(2).map(|&v| v as f64).collect();
    assert_eq!(correct, rows.iter().map(|r| r.1).collect::<Vec<_>>(), "per-sample correctness");
    let right = correct.iter().sum::<f64>();
    assert!(right > 0.0 && right < count as f64, "test data should have both right and wrong predictions");
}

#[test]
fn softmax_xent_matches_reference() {
    // odd sizes, a short batch, an offset in the epoch
    check_xent(11, 7, 9, 5, 0.0);
}

#[test]
fn softmax_xent_with_label_smoothing_matches_reference() {
    check_xent(11, 7, 9, 5, 0.1);
    check_xent(33, 256, 30, 2, 0.3);
    // eps = 0 is plain cross-entropy bit for bit: the same logits, with and without
    let (gpu, k) = variants().pop().unwrap();
    let logits: Vec<f32> = random(&mut rng(5), 4 * 3);
    let labels = [0u32, 2, 1, 1];
    let run_with = |eps: f64| {
        let lb = gpu.storage_init("logits", &logits).unwrap();
        let yb = gpu.storage_init("labels", &labels).unwrap();
        let db = gpu.storage("d", 12).unwrap();
        let mb = gpu.storage("metrics", 8).unwrap();
        let slots = slots_with(&gpu, Step { start: 0, count: 4, ..Default::default() });
        let (d, _u) =
            gpu_train::layers::loss::softmax_xent(&gpu, &k, 4, 3, &lb, &yb, &db, &mb, &slots, eps).unwrap();
        run(&gpu, &[&d]);
        (gpu.read_f32(&db).unwrap(), gpu.read_f32(&mb).unwrap())
    };
    let (g0, m0) = run_with(0.0);
    let (g1, m1) = run_with(0.2);
    assert_ne!(g0, g1, "smoothing changes the gradient");
    // the smoothed loss is never below the cross-entropy's lower bound and differs from plain
    assert!(m0.iter().step_by(2).zip(m1.iter().step_by(2)).all(|(a, b)| a != b));
    let want = xent_ref(&logits, &labels, 3, 4, 0.0).0;
    assert_close("eps = 0 gradient", &g0, &want, 1e-6);
    assert!(
        gpu_train::layers::loss::softmax_xent(
            &gpu,
            &k,
            4,
            3,
            &gpu.storage("a", 12).unwrap(),
            &gpu.storage("b", 4).unwrap(),
            &gpu.storage("c", 12).unwrap(),
            &gpu.storage("m", 8).unwrap(),
            &slots_with(&gpu, Step::default()),
            1.0
        )
        .is_err(),
        "eps = 1 is refused"
    );
}

#[test]
fn softmax_xent_matches_reference_at_large_batches_and_the_most_classes() {
    // Past the ~1,986 rows at which one invocation walking the batch used to stop, at 10
    // classes and at 256 (labels are bytes: the most a dataset can have).
    check_xent(2600, 10, 2590, 37, 0.0);
    check_xent(2600, 256, 2600, 0, 0.0);
}

#[test]
fn optimizers_match_reference() {
    let mut r = rng(14);
    // 251 vec4s: not a multiple of the workgroup size
    let n = 1004;
    // weight decay applies to the first 600 words only (say, weights before biases)
    let mask: Vec<f32> = (0..n).map(|i| if i < 600 { 1.0 } else { 0.0 }).collect();
    let cases = [
        (OptimizerKind::Adam, 0.0, false),
        (OptimizerKind::AdamW, 0.05, false),
        (OptimizerKind::Sgd, 0.0, false),
        (OptimizerKind::Sgd, 0.05, false),
        (OptimizerKind::Sgd, 0.05, true),
        (OptimizerKind::Sgd, 0.0, true),
    ];
    for (kind, wd, nesterov) in cases {
        let (gpu, k) = variants().pop().unwrap();
        let cfg = OptimizerConfig {
            kind,
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            momentum: 0.9,
            weight_decay: wd,
            nesterov,
            clip_grad_norm: 0.0,
        };
        let p0 = random(&mut r, n);
        let g = random(&mut r, n);
        let pb = gpu.storage_init("params", &p0).unwrap();
        let gb = gpu.storage_init("grads", &g).unwrap();
        let mut step = Step::default();
        let slots = gpu_train::kernels::StepSlots::new(&gpu, 1);
        let opt = Optimizer::new(&gpu, &k, &cfg, &pb, &gb, n, &slots, &mask).unwrap();
        // Three updates with the same gradient exercise the bias correction and momentum,
        // the second at half the rate (a schedule's factor).
        let (mut p, mut m, mut v) =
            (p0.iter().map(|&x| x as f64).collect::<Vec<_>>(), vec![0f64; n], vec![0f64; n]);
        for t in 1..=3u64 {
            let factor = if t == 2 { 0.5 } else { 1.0 };
            let lr = 1e-2 * factor;
            cfg.fill_step(&mut step, t, factor);
            slots.write(&gpu, &[step]);
            run(&gpu, &[&opt.update]);
            for i in 0..n {
                let decays = mask[i] as f64 * wd;
                let mut gi = g[i] as f64;
                match kind {
                    OptimizerKind::Adam | OptimizerKind::AdamW => {
                        // AdamW: decoupled, the weight shrinks before the Adam step
                        p[i] *= 1.0 - lr * decays;
                        m[i] = 0.9 * m[i] + 0.1 * gi;
                        v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                        let mh = m[i] / (1.0 - 0.9f64.powi(t as i32));
                        let vh = v[i] / (1.0 - 0.999f64.powi(t as i32));
                        p[i] -= lr * mh / (vh.sqrt() + 1e-8);
                    }
                    OptimizerKind::Sgd => {
                        // L2 in the gradient, as PyTorch's SGD
                        gi += decays * p[i];
                        m[i] = 0.9 * m[i] + gi;
                        p[i] -= lr * if nesterov { gi + 0.9 * m[i] } else { m[i] };
                    }
                }
            }
        }
        let got = gpu.read_f32(&pb).unwrap();
        assert_close(&format!("{kind:?} (decay {wd}, nesterov {nesterov}) update"), &got, &p, 1e-4);
    }
}

#[test]
fn gather_unpacks_and_normalises_a_shuffled_batch() {
    use gpu_train::data::Split;
    use gpu_train::layers::input::{ResidentSplit, gather};
    let (gpu, k) = variants().pop().unwrap();
    let side = 8;
    let count = 7;
    let pixels: Vec<u8> = (0..count * side * side).map(|i| (i * 37 % 251) as u8).collect();
    let labels: Vec<u8> = (0..count as u8).map(|i| (i * 3) % 5).collect();
    let split = Split { count, side, pixels: pixels.clone(), labels: labels.clone() };
    let resident = ResidentSplit::upload(&gpu, "t", &split).unwrap();
    let order = [6u32, 2, 5, 0, 1, 3, 4];
    resident.set_order(&gpu, &order);
    let batch = 3;
    let x = gpu.storage("x", batch * side * side).unwrap();
    let y = gpu.storage("y", batch).unwrap();
    // The batch starting at 4 has 3 valid samples: order[4..7] = 1, 3, 4.
    let slots = slots_with(&gpu, Step { start: 4, count: 3, ..Default::default() });
    let (d, _u) = gather(&gpu, &k, &resident, batch, &x, &y, &slots, None, Default::default()).unwrap();
    run(&gpu, &[&d]);
    let mut want = Vec::new();
    for &s in &order[4..7] {
        want.extend(pixels[s as usize * 64..(s as usize + 1) * 64].iter().map(|&p| p as f64 / 255.0));
    }
    assert_close("gather pixels", &gpu.read_f32(&x).unwrap(), &want, 1e-6);
    let got_labels: Vec<u32> = gpu.read_words(&y, 0, batch).unwrap();
    assert_eq!(got_labels, vec![labels[1] as u32, labels[3] as u32, labels[4] as u32]);
}

/// Forward and backward of one shape against the references, on every configuration.
/// The data are small whole numbers, so every sum is exact in f32 and a loop cut short
/// shows as a mismatch, not as rounding.
fn check_dense(s: DenseShape, seed: u64) {
    let mut r = rng(seed);
    let x = small_ints(&mut r, s.batch * s.inputs);
    let p = small_ints(&mut r, s.param_len());
    let dy = small_ints(&mut r, s.batch * s.outputs);
    let mask = small_ints(&mut r, s.batch * s.inputs);
    for dev in variants() {
        let f = fixture(dev, s, true, &x, &p, &dy, None);
        println!(
            "{:?} {s:?}: {} forward and {} backward dispatches, loops {:?}",
            f.layer.forward.first().map(|d| d.name),
            f.layer.forward.len(),
            f.layer.backward.len(),
            f.layer
                .forward
                .iter()
                .chain(&f.layer.backward)
                .map(|d| d.loops.as_ref().unwrap().ticks)
                .collect::<Vec<_>>()
        );
        gpu_train::loop_budget::check(&f.gpu, &f.layer.forward).unwrap();
        gpu_train::loop_budget::check(&f.gpu, &f.layer.backward).unwrap();
        run(&f.gpu, &f.layer.forward.iter().collect::<Vec<_>>());
        assert_close("matmul+bias+relu", &f.gpu.read_f32(&f.y).unwrap(), &forward_ref(&s, &x, &p, true), 0.0);
    }
    for dev in variants() {
        check_dense_backward(dev, s, &x, &p, &dy, &mask, 0.0);
    }
}

#[test]
fn dense_runs_right_at_and_past_the_loop_budget() {
    use gpu_train::layers::dense::{BLoad, longest_slice};
    let budget = gpu().loop_budget.min(65_535);
    let cols = longest_slice(BLoad::Cols, budget) as usize;
    let rows = longest_slice(BLoad::Rows, budget) as usize;
    let scalar = longest_slice(BLoad::Scalar, budget) as usize;
    println!(
        "largest K per slice within {budget} loop iterations: cols {cols}, rows {rows}, scalar {scalar}"
    );
    // forward through matmul_cols over the longest K one slice may take, then one past it
    check_dense(DenseShape { batch: 3, inputs: cols, outputs: 5 }, 20);
    check_dense(DenseShape { batch: 3, inputs: cols + 4, outputs: 5 }, 21);
    // weight gradients sum over the batch: matmul_rows (4 inputs) and matmul (5 inputs) at
    // the longest unsplit batch, and at 65,536, the largest batch the CLI accepts
    check_dense(DenseShape { batch: rows, inputs: 4, outputs: 3 }, 22);
    check_dense(DenseShape { batch: scalar, inputs: 5, outputs: 3 }, 23);
    check_dense(DenseShape { batch: 65_536, inputs: 4, outputs: 3 }, 24);
}
