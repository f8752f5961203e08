//! conv3x3 + ReLU + max-pool: forward and backward kernels against f64 references, and
//! the backward pass against finite differences of the forward kernel.

mod common;
use common::*;
use gpu_train::autotune::Tuner;
use gpu_train::layers::conv::{
    Conv3x3ReluPool, ConvBuffers, ConvMode, ConvShape, ConvVariant, WgradLanes, conv_block_loops,
    conv_tiled_loops,
};

/// Reference conv3x3 (pad 1) + bias, f64, NCHW.
fn conv_ref(s: &ConvShape, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f64> {
    let n = s.side;
    let mut out = vec![0f64; s.pre_len()];
    for b in 0..s.batch {
        for o in 0..s.out_channels {
            for y in 0..n {
                for xx in 0..n {
                    let mut acc = bias[o] as f64;
                    for i in 0..s.in_channels {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                if iy < 0 || ix < 0 || iy >= n as isize || ix >= n as isize {
                                    continue;
                                }
                                let xv =
                                    x[((b * s.in_channels + i) * n + iy as usize) * n + ix as usize] as f64;
                                acc += xv * w[((o * s.in_channels + i) * 3 + ky) * 3 + kx] as f64;
                            }
                        }
                    }
                    out[((b * s.out_channels + o) * n + y) * n + xx] = acc;
                }
            }
        }
    }
    out
}

/// Reference ReLU + 2x2 max-pool: pooled values and the winning window position.
fn pool_ref(s: &ConvShape, pre: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let (n, h) = (s.side, s.side / 2);
    let mut pooled = vec![0f64; s.pooled_len()];
    let mut arg = vec![4usize; s.pooled_len()];
    for plane in 0..s.batch * s.out_channels {
        for py in 0..h {
            for px in 0..h {
                let mut best = f64::NEG_INFINITY;
                let mut at = 0;
                for k in 0..4 {
                    let v = pre[(plane * n + 2 * py + k / 2) * n + 2 * px + k % 2];
                    if v > best {
                        best = v;
                        at = k;
                    }
                }
                let i = (plane * h + py) * h + px;
                if best > 0.0 {
                    pooled[i] = best;
                    arg[i] = at;
                }
            }
        }
    }
    (pooled, arg)
}

struct Fixture {
    gpu: gpu_train::gpu::Gpu,
    layer: Conv3x3ReluPool,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    x: wgpu::Buffer,
    pooled: wgpu::Buffer,
    code: wgpu::Buffer,
    dx: wgpu::Buffer,
    _keep: Vec<wgpu::Buffer>,
}

fn fixture(
    dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    shape: ConvShape,
    x: &[f32],
    params: &[f32],
    d_pooled: &[f32],
    with_dx: bool,
) -> Fixture {
    fixture_in(dev, shape, ConvMode::FUSED, x, params, d_pooled, with_dx)
}

/// `fixture` in any mode; without ReLU and pool, `pooled` holds the conv's output and
/// `d_pooled` its gradient (both B x CO x S x S), which is then uploaded as `d_pre`, where
/// the layer reads it.
fn fixture_in(
    (gpu, k): (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    shape: ConvShape,
    mode: ConvMode,
    x: &[f32],
    params: &[f32],
    d_pooled: &[f32],
    with_dx: bool,
) -> Fixture {
    let out_len = if mode.relu_pool { shape.pooled_len() } else { shape.pre_len() };
    let xb = gpu.storage_init("x", x).unwrap();
    let pb = gpu.storage_init("params", params).unwrap();
    let gb = gpu.storage("grads", params.len()).unwrap();
    let pooled = gpu.storage("pooled", out_len).unwrap();
    let code = gpu.storage("code", shape.code_len()).unwrap();
    let dpb = gpu.storage_init("d_pooled", d_pooled).unwrap();
    // plain: the layer reads the output's gradient from d_pre
    let d_pre = if mode.relu_pool {
        gpu.storage("d_pre", shape.pre_len()).unwrap()
    } else {
        gpu.storage_init("d_pre", d_pooled).unwrap()
    };
    let plan = shape.wgrad_plan(shape.fuses_unpool(with_dx, &k), gpu.loop_budget).unwrap();
    let partial = gpu.storage("partial", shape.partial_len(&plan)).unwrap();
    let dx = gpu.storage("dx", shape.input_len()).unwrap();
    let layer = Conv3x3ReluPool::with_mode(
        &gpu,
        &k,
        shape,
        mode,
        &ConvBuffers {
            x: &xb,
            params: &pb,
            grads: &gb,
            offset: 0,
            pooled: &pooled,
            code: &code,
            d_pooled: &dpb,
            d_pre: &d_pre,
            partial: &partial,
            dx: with_dx.then_some(&dx),
        },
        true,
    )
    .unwrap();
    Fixture { gpu, layer, params: pb, grads: gb, x: xb, pooled, code, dx, _keep: vec![d_pre, partial, dpb] }
}

// Sizes that are not multiples of the workgroup size or the tiles: 3 images of 10x10
// (75 pooled positions per channel), 16 input channels.
const SHAPE: ConvShape = ConvShape { batch: 3, in_channels: 16, out_channels: 32, side: 10 };

// A first layer: one input channel, so the weight gradient takes the batch-chunk path.
const FIRST: ConvShape = ConvShape { batch: 5, in_channels: 1, out_channels: 16, side: 6 };

// For the tiled variant's 16x16-pixel tiles: 17x17 pooled positions (3x3 tiles, the last
// row and column of tiles one block wide), input channels not a multiple of its stage (4).
const ODD_TILES: ConvShape = ConvShape { batch: 2, in_channels: 5, out_channels: 32, side: 34 };

#[test]
fn conv_forward_matches_reference() {
    for s in [SHAPE, FIRST] {
        for dev in variants() {
            check_forward(dev, s);
        }
    }
}

/// Random inputs in [-1, 1), checked to 1e-4; or, `exact`, whole numbers whose sums f32
/// holds exactly, checked for equality.
type Generator = fn(&mut rand::rngs::StdRng, usize) -> Vec<f32>;

fn inputs(exact: bool) -> (Generator, f64) {
    if exact { (small_ints, 0.0) } else { (random, 1e-4) }
}

fn check_forward(dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels), s: ConvShape) {
    check_forward_with(dev, s, false)
}

fn check_forward_with(dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels), s: ConvShape, exact: bool) {
    println!("{:?} {s:?}", dev.1.variant);
    let (make, tol) = inputs(exact);
    let mut r = rng(1);
    let x = make(&mut r, s.input_len());
    let params = make(&mut r, s.param_len());
    let forced = dev.1.tuner.forced();
    let f = fixture(dev, s, &x, &params, &make(&mut r, s.pooled_len()), false);
    assert_variant(&f.layer.forward[1], forced, s.in_channels);
    run(&f.gpu, &f.layer.forward.iter().collect::<Vec<_>>());
    let (w, bias) = params.split_at(s.weight_len());
    let (want, arg) = pool_ref(&s, &conv_ref(&s, &x, w, bias));
    let got = f.gpu.read_f32(&f.pooled).unwrap();
    assert_close("conv_fwd pooled", &got, &want, tol);
    let words: Vec<u32> = f.gpu.read_words(&f.code, 0, s.code_len()).unwrap();
    let plane = s.side * s.side / 4;
    let codes: Vec<usize> = (0..s.pooled_len())
        .map(|i| {
            let (b, c, rem) = (i / plane / s.out_channels, i / plane % s.out_channels, i % plane);
            let word = words[(b * s.out_channels / 8 + c / 8) * plane + rem];
            (word >> (4 * (c % 8)) & 15) as usize
        })
        .collect();
    let mismatched = codes.iter().zip(&arg).filter(|&(c, a)| c != a).count();
    println!("conv_fwd codes: {mismatched} of {} differ", codes.len());
    assert!(mismatched == 0, "{mismatched} pool codes differ from the reference");
    assert!(arg.contains(&4) && arg.iter().any(|&a| a < 4), "inputs must exercise both ReLU branches");
}

#[test]
fn conv_backward_matches_reference() {
    for s in [SHAPE, FIRST] {
        for dev in variants() {
            check_backward(dev, s);
        }
    }
}

fn check_backward(dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels), s: ConvShape) {
    check_backward_with(dev, s, false)
}

fn check_backward_with(dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels), s: ConvShape, exact: bool) {
    println!("{:?} {s:?}", dev.1.variant);
    let (make, tol) = inputs(exact);
    let with_dx = s.in_channels.is_multiple_of(gpu_train::layers::conv::OUT_TILE);
    let mut r = rng(2);
    let x = make(&mut r, s.input_len());
    let params = make(&mut r, s.param_len());
    let d_pooled = make(&mut r, s.pooled_len());
    let forced = dev.1.tuner.forced();
    let f = fixture(dev, s, &x, &params, &d_pooled, with_dx);
    assert_variant(&f.layer.forward[1], forced, s.in_channels);
    if with_dx {
        let dx = f.layer.backward.iter().find(|d| d.name == "conv_dx").expect("a conv_dx dispatch");
        assert_variant(dx, forced, s.out_channels);
    }
    let mut all: Vec<_> = f.layer.forward.iter().collect();
    all.extend(f.layer.backward.iter());
    run(&f.gpu, &all);

    // Reference: route d_pooled to the winners, then the conv's three gradients.
    let n = s.side;
    let (w, bias) = params.split_at(s.weight_len());
    let (_, arg) = pool_ref(&s, &conv_ref(&s, &x, w, bias));
    let mut d_pre = vec![0f64; s.pre_len()];
    for (i, &a) in arg.iter().enumerate() {
        if a < 4 {
            let (plane, rem) = (i / (n / 2 * n / 2), i % (n / 2 * n / 2));
            let (py, px) = (rem / (n / 2), rem % (n / 2));
            d_pre[(plane * n + 2 * py + a / 2) * n + 2 * px + a % 2] = d_pooled[i] as f64;
        }
    }
    let mut dw = vec![0f64; s.param_len()];
    let mut dx = vec![0f64; s.input_len()];
    for b in 0..s.batch {
        for o in 0..s.out_channels {
            for y in 0..n {
                for xx in 0..n {
                    let g = d_pre[((b * s.out_channels + o) * n + y) * n + xx];
                    dw[s.weight_len() + o] += g;
                    for i in 0..s.in_channels {
                        for t in 0..9 {
                            let (iy, ix) =
                                (y as isize + (t / 3) as isize - 1, xx as isize + (t % 3) as isize - 1);
                            if iy < 0 || ix < 0 || iy >= n as isize || ix >= n as isize {
                                continue;
                            }
                            let xi = ((b * s.in_channels + i) * n + iy as usize) * n + ix as usize;
                            let wi = (o * s.in_channels + i) * 9 + t;
                            dw[wi] += g * x[xi] as f64;
                            dx[xi] += g * params[wi] as f64;
                        }
                    }
                }
            }
        }
    }
    assert_close("conv_wgrad weights+bias", &f.gpu.read_f32(&f.grads).unwrap(), &dw, tol);
    if with_dx {
        assert_close("conv_dx", &f.gpu.read_f32(&f.dx).unwrap(), &dx, tol);
    }
}

/// L = sum(pooled * d_pooled): its gradient is what backward computes from d_pooled.
#[test]
fn conv_backward_matches_finite_differences() {
    let mut r = rng(3);
    let s = ConvShape { batch: 2, in_channels: 16, out_channels: 16, side: 6 };
    let x = random(&mut r, s.input_len());
    let params = random(&mut r, s.param_len());
    let d_pooled = random(&mut r, s.pooled_len());
    let dev = variants().pop().unwrap();
    println!("{:?}", dev.1.variant);
    let f = fixture(dev, s, &x, &params, &d_pooled, true);
    let mut all: Vec<_> = f.layer.forward.iter().collect();
    all.extend(f.layer.backward.iter());
    run(&f.gpu, &all);
    let grads = f.gpu.read_f32(&f.grads).unwrap();
    let dx = f.gpu.read_f32(&f.dx).unwrap();

    let loss = |xv: &[f32], pv: &[f32]| -> f64 {
        f.gpu.queue.write_buffer(&f.x, 0, bytemuck::cast_slice(xv));
        f.gpu.queue.write_buffer(&f.params, 0, bytemuck::cast_slice(pv));
        run(&f.gpu, &f.layer.forward.iter().collect::<Vec<_>>());
        let pooled = f.gpu.read_f32(&f.pooled).unwrap();
        pooled.iter().zip(&d_pooled).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let eps = 1e-2f32;
    let mut worst = 0f64;
    let mut checked = 0;
    // A sample of weights, biases and inputs (every index would take minutes on lavapipe).
    for (is_param, i) in (0..12)
        .map(|k| (true, k * 97 % s.param_len()))
        .chain((0..12).map(|k| (false, k * 31 % s.input_len())))
    {
        let (mut xp, mut pp) = (x.clone(), params.clone());
        let (mut xm, mut pm) = (x.clone(), params.clone());
        if is_param {
            pp[i] += eps;
            pm[i] -= eps;
        } else {
            xp[i] += eps;
            xm[i] -= eps;
        }
        let numeric = (loss(&xp, &pp) - loss(&xm, &pm)) / (2.0 * eps as f64);
        let analytic = if is_param { grads[i] } else { dx[i] } as f64;
        let err = (numeric - analytic).abs() / analytic.abs().max(1.0);
        worst = worst.max(err);
        checked += 1;
    }
    println!("conv backward vs finite differences: max error {worst:.3e} over {checked} entries");
    assert!(worst < 2e-2, "finite-difference mismatch {worst:.3e}");
}

/// The largest channel count (a multiple of `multiple`) whose conv_fwd / conv_dx loops fit
/// `budget` iterations per invocation.
fn largest_channels(budget: u64, multiple: usize) -> usize {
    largest_within(budget, multiple, conv_block_loops)
}

/// The largest channel count (a multiple of `multiple`) whose `bound` fits `budget`.
fn largest_within(
    budget: u64,
    multiple: usize,
    bound: fn(usize) -> gpu_train::loop_budget::LoopBound,
) -> usize {
    let mut c = multiple;
    while bound(c + multiple).ticks <= budget {
        c += multiple;
    }
    c
}

/// This adapter's loop budget, capped where an adapter has none worth the name (the
/// shapes below grow with it).
fn edge_budget(gpu: &gpu_train::gpu::Gpu) -> u64 {
    gpu.loop_budget.min(65_535)
}

#[test]
fn conv_forward_and_dx_run_right_at_the_loop_budget() {
    for dev in variants() {
        let budget = edge_budget(&dev.0);
        let ci = largest_channels(budget, 1);
        println!(
            "conv_fwd over {ci} input channels: {} loop iterations of {budget}",
            conv_block_loops(ci).ticks
        );
        check_forward_with(dev, ConvShape { batch: 1, in_channels: ci, out_channels: 16, side: 2 }, true);
    }
    for dev in variants() {
        let budget = edge_budget(&dev.0);
        let co = largest_channels(budget, 16);
        println!("conv_dx over {co} channels: {} loop iterations of {budget}", conv_block_loops(co).ticks);
        check_backward_with(dev, ConvShape { batch: 1, in_channels: 16, out_channels: co, side: 2 }, true);
    }
}

#[test]
fn conv_weight_gradient_runs_right_with_chunks_at_the_loop_budget() {
    // 256x256 images: one image's rows need more loops than one invocation may run, so
    // the chunks end inside images and each holds as many rows as the budget allows.
    // FIRST-like (one input channel, pooled gradients read directly) and a layer with dx.
    for s in [
        ConvShape { batch: 2, in_channels: 1, out_channels: 16, side: 256 },
        ConvShape { batch: 1, in_channels: 16, out_channels: 16, side: 256 },
    ] {
        for dev in variants() {
            let has_dx = s.in_channels.is_multiple_of(16);
            let plan = s.wgrad_plan(s.fuses_unpool(has_dx, &dev.1), dev.0.loop_budget).unwrap();
            let one_more = s.wgrad_plan(s.fuses_unpool(has_dx, &dev.1), dev.0.loop_budget + 100_000).unwrap();
            println!(
                "{s:?}: {} chunks of {} rows, {} loop iterations of {}",
                plan.chunks,
                plan.chunk_rows,
                plan.loops().ticks,
                dev.0.loop_budget
            );
            assert!(plan.loops().ticks <= dev.0.loop_budget, "the plan exceeds the budget");
            if dev.0.loop_budget <= 65_535 {
                assert!(plan.chunk_rows < s.side, "this shape should split images into row chunks");
                assert!(
                    one_more.chunk_rows > plan.chunk_rows,
                    "the chunks are not as long as the budget allows"
                );
            }
            check_backward_with(dev, s, true);
        }
    }
}

#[test]
fn conv_past_the_loop_budget_is_refused_by_name() {
    let (gpu, k) = variants().remove(0);
    if gpu.loop_budget > 65_535 {
        common::skip::skip(&format!("conv refusal: this adapter's loop budget is {}", gpu.loop_budget));
        return;
    }
    let s = ConvShape {
        batch: 1,
        in_channels: largest_channels(gpu.loop_budget, 1) + 1,
        out_channels: 16,
        side: 2,
    };
    let mut r = rng(3);
    let f = fixture(
        (gpu, k),
        s,
        &random(&mut r, s.input_len()),
        &random(&mut r, s.param_len()),
        &random(&mut r, s.pooled_len()),
        false,
    );
    let err = gpu_train::loop_budget::check(&f.gpu, &f.layer.forward).unwrap_err();
    println!("{err}");
    assert!(
        err.contains("conv_fwd") && err.contains(&format!("input channels = {}", s.in_channels)),
        "{err}"
    );
}

/// Asserts that `d` (conv_fwd or conv_dx over `inputs` channels) is the variant `forced`
/// asked for (the default when none): the variants' loop bounds tell them apart.
fn assert_variant(d: &gpu_train::kernels::Dispatch, forced: Option<u32>, inputs: usize) {
    let want = match forced.and_then(ConvVariant::from_choice) {
        Some(ConvVariant::Tiled) => conv_tiled_loops(inputs),
        _ => conv_block_loops(inputs),
    };
    assert_eq!(d.loops.as_ref().unwrap().ticks, want.ticks, "{} is not the variant asked for", d.name);
}

/// `dev` with every tuned choice forced to the tiled conv variant (conv_tiled.wgsl).
fn tiled(
    dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
) -> (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels) {
    let tuner = Tuner::forcing(&dev.0, ConvVariant::Tiled as u32);
    (dev.0, dev.1.with_tuner(tuner))
}

#[test]
fn conv_tiled_variant_matches_reference() {
    for s in [SHAPE, FIRST, ODD_TILES] {
        for dev in variants() {
            check_forward(tiled(dev), s);
        }
        for dev in variants() {
            check_backward(tiled(dev), s);
        }
    }
}

/// The bits every kernel of a layer writes: output, pool codes, gradients and dx.
fn layer_bits(
    dev: (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    s: ConvShape,
    mode: ConvMode,
    expect_tiled: bool,
) -> Vec<Vec<u32>> {
    let mut r = rng(7);
    let out_len = if mode.relu_pool { s.pooled_len() } else { s.pre_len() };
    let with_dx = s.in_channels.is_multiple_of(16);
    let (x, params, d_out) =
        (random(&mut r, s.input_len()), random(&mut r, s.param_len()), random(&mut r, out_len));
    let f = fixture_in(dev, s, mode, &x, &params, &d_out, with_dx);
    let expect = Some(if expect_tiled { ConvVariant::Tiled } else { ConvVariant::Direct } as u32);
    assert_variant(&f.layer.forward[1], expect, s.in_channels);
    if with_dx {
        let dx = f.layer.backward.iter().find(|d| d.name == "conv_dx").expect("a conv_dx dispatch");
        assert_variant(dx, expect, s.out_channels);
    }
    let mut all: Vec<_> = f.layer.forward.iter().collect();
    all.extend(f.layer.backward.iter());
    run(&f.gpu, &all);
    let words = |b: &wgpu::Buffer, n: usize| f.gpu.read_words(b, 0, n).unwrap();
    let mut out = vec![words(&f.pooled, out_len), words(&f.grads, s.param_len())];
    if mode.relu_pool {
        out.push(words(&f.code, s.code_len()));
    }
    if with_dx {
        out.push(words(&f.dx, s.input_len()));
    }
    out
}

#[test]
fn conv_variants_give_the_same_bits() {
    let plain = ConvMode { relu_pool: false, bias: true };
    for s in [SHAPE, FIRST, ODD_TILES, ConvShape { batch: 3, in_channels: 16, out_channels: 16, side: 18 }] {
        for mode in [ConvMode::FUSED, plain] {
            for (direct, other) in variants().into_iter().zip(variants()) {
                let family = direct.1.variant;
                let a = layer_bits(direct, s, mode, false);
                let b = layer_bits(tiled(other), s, mode, true);
                // every output (values, gradients, codes, dx) holds something to compare
                assert!(a.iter().all(|out| out.iter().any(|w| *w != 0)), "{s:?}: an output is all zeros");
                let differing: Vec<usize> =
                    a.iter().zip(&b).map(|(x, y)| x.iter().zip(y).filter(|(p, q)| p != q).count()).collect();
                println!(
                    "{family:?} {s:?} relu_pool {}: differing words per output {differing:?}",
                    mode.relu_pool
                );
                assert!(differing.iter().all(|&d| d == 0), "the tiled variant changed bits: {differing:?}");
            }
        }
    }
}

/// The weight gradient's grads words and its kernel's name, with every tuned choice forced
/// to `choice` (for the weight gradient: 0 lanes over chunks, 1 over input channels; 1 also
/// forces the tiled conv forward and dx, which `conv_variants_give_the_same_bits` shows
/// change no bit).
fn wgrad_bits(
    (gpu, k): (gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    s: ConvShape,
    mode: ConvMode,
    choice: u32,
) -> (Vec<u32>, &'static str) {
    let mut r = rng(11);
    let out_len = if mode.relu_pool { s.pooled_len() } else { s.pre_len() };
    let with_dx = s.in_channels.is_multiple_of(16);
    let (x, params, d_out) =
        (random(&mut r, s.input_len()), random(&mut r, s.param_len()), random(&mut r, out_len));
    let tuner = Tuner::forcing(&gpu, choice);
    let f = fixture_in((gpu, k.with_tuner(tuner)), s, mode, &x, &params, &d_out, with_dx);
    let wgrad =
        f.layer.backward.iter().find(|d| d.name.starts_with("conv_wgrad") && d.name != "conv_wgrad_reduce");
    let name = wgrad.expect("a weight-gradient dispatch").name;
    let mut all: Vec<_> = f.layer.forward.iter().collect();
    all.extend(f.layer.backward.iter());
    run(&f.gpu, &all);
    (f.gpu.read_words(&f.grads, 0, s.param_len()).unwrap(), name)
}

/// Both lane mappings of the weight gradient write the same bits wherever the tuner may
/// choose between them (every layer but a first one that reads the pooled gradient):
/// input channels that fill several workgroups, part of one, or one channel; with and
/// without bias.
#[test]
fn weight_gradient_lane_mappings_give_the_same_bits() {
    let plain = ConvMode { relu_pool: false, bias: true };
    let no_bias = ConvMode { relu_pool: false, bias: false };
    let shapes = [
        SHAPE,
        ODD_TILES,
        ConvShape { batch: 2, in_channels: 1, out_channels: 16, side: 6 },
        ConvShape { batch: 2, in_channels: 80, out_channels: 16, side: 6 },
    ];
    for s in shapes {
        for mode in [plain, no_bias, ConvMode::FUSED] {
            for (a, b) in variants().into_iter().zip(variants()) {
                let family = a.1.variant;
                let (chunks, chunk_kernel) = wgrad_bits(a, s, mode, WgradLanes::Chunks as u32);
                let (channels, channel_kernel) = wgrad_bits(b, s, mode, WgradLanes::InputChannels as u32);
                let differing = chunks.iter().zip(&channels).filter(|(p, q)| p != q).count();
                let nonzero = chunks.iter().filter(|w| f32::from_bits(**w) != 0.0).count();
                assert!(nonzero > chunks.len() / 2, "{s:?} {mode:?}: only {nonzero} gradients are nonzero");
                println!(
                    "{family:?} {s:?} {mode:?}: {chunk_kernel} and {channel_kernel}: {differing} words differ"
                );
                assert_eq!(differing, 0, "{chunk_kernel} and {channel_kernel} differ");
                if chunk_kernel == "conv_wgrad_pooled" {
                    // reads the pooled gradient: nothing to choose
                    assert_eq!(channel_kernel, chunk_kernel);
                } else {
                    assert_eq!((chunk_kernel, channel_kernel), ("conv_wgrad", "conv_wgrad_ic"));
                }
            }
        }
    }
}

#[test]
fn conv_tiled_runs_right_at_the_most_channels_its_loop_bound_allows_and_is_not_offered_past_them() {
    for dev in variants() {
        let budget = edge_budget(&dev.0);
        let ci = largest_within(budget, 1, conv_tiled_loops);
        println!(
            "conv_tiled over {ci} input channels: {} loop iterations of {budget}",
            conv_tiled_loops(ci).ticks
        );
        let s = ConvShape { batch: 1, in_channels: ci, out_channels: 16, side: 2 };
        check_forward_with(tiled(dev), s, true);
    }
    // dx reads the layer's output channels: the most (a multiple of 16) the bound allows
    for dev in variants() {
        let budget = edge_budget(&dev.0);
        let co = largest_within(budget, 16, conv_tiled_loops);
        println!(
            "conv_tiled dx over {co} channels: {} loop iterations of {budget}",
            conv_tiled_loops(co).ticks
        );
        check_backward_with(
            tiled(dev),
            ConvShape { batch: 1, in_channels: 16, out_channels: co, side: 2 },
            true,
        );
    }
    // one channel more: the tuner does not offer the tiled variant, forced or not
    let dev = variants().remove(0);
    let budget = edge_budget(&dev.0);
    if dev.0.loop_budget > 65_535 {
        common::skip::skip(&format!(
            "conv_tiled refusal: this adapter's loop budget is {}",
            dev.0.loop_budget
        ));
        return;
    }
    let ci = largest_within(budget, 1, conv_tiled_loops) + 1;
    let s = ConvShape { batch: 1, in_channels: ci, out_channels: 16, side: 2 };
    layer_bits(tiled(dev), s, ConvMode::FUSED, false);
}
