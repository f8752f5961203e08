//! Generic convolution (K = 3 or 5, stride 1, same padding, any channels and side): the
//! forward, weight and bias gradients and dx against f64 references on odd sizes in every
//! kernel configuration, the backward against finite differences, weight-gradient chunks
//! that end inside images (forced by a smaller budget, and at the adapter's own budget with
//! the fewest chunks), results independent of the batch chunking, the largest channel
//! counts the loop budget allows, and refusals naming the kernel and the size.

mod common;
use common::*;
use gpu_train::gpu::Gpu;
use gpu_train::kernels::Kernels;
use gpu_train::layers::conv_generic::{
    ConvGeneric, ConvGenericBuffers, ConvGenericShape, WGRAD_FILL_THREADS,
};

/// Words outside the layer's block in the parameter and gradient buffers: the kernels must
/// leave them alone.
const FILLER: f32 = 7.0;

struct Out {
    y: Vec<f32>,
    grads: Vec<f32>,
    dx: Option<Vec<f32>>,
    chunks: usize,
    chunk_rows: usize,
}

/// How the weight gradient is planned: for `fill` threads, within `budget` loop iterations
/// (None: the adapter's). A smaller budget than the adapter's forces shorter chunks; every
/// dispatch is still checked against the adapter's own budget.
#[derive(Clone, Copy)]
struct Plan {
    fill: usize,
    budget: Option<u64>,
}

const DEFAULT: Plan = Plan { fill: WGRAD_FILL_THREADS, budget: None };
const FEWEST: Plan = Plan { fill: 1, budget: None };

/// One forward and backward with the block at an aligned offset inside larger buffers;
/// the gradient buffer starts filled with FILLER, so an accumulating kernel would show.
#[allow(clippy::too_many_arguments)]
fn run_layer(
    gpu: &mut Gpu,
    k: &Kernels,
    s: ConvGenericShape,
    x: &[f32],
    block: &[f32],
    dy: &[f32],
    with_dx: bool,
    plan: Plan,
) -> Out {
    let offset = gpu_train::model::param_align_words(gpu);
    let mut params = vec![FILLER; offset];
    params.extend_from_slice(block);
    params.extend_from_slice(&[FILLER; 5]);
    let xb = gpu.storage_init("x", x).unwrap();
    let yb = gpu.storage("y", s.output_len()).unwrap();
    let pb = gpu.storage_init("params", &params).unwrap();
    let gb = gpu.storage_init("grads", &vec![FILLER; params.len()]).unwrap();
    let dyb = gpu.storage_init("dy", dy).unwrap();
    let dxb = gpu.storage("dx", s.input_len()).unwrap();
    let b = ConvGenericBuffers {
        x: &xb,
        y: &yb,
        params: &pb,
        grads: &gb,
        offset,
        dy: &dyb,
        dx: with_dx.then_some(&dxb),
    };
    let real_budget = gpu.loop_budget;
    gpu.loop_budget = plan.budget.unwrap_or(real_budget);
    let layer = ConvGeneric::with_wgrad_fill(gpu, k, s, &b, true, plan.fill).unwrap();
    // the weight gradient's two kernels keep within the budget they were planned for
    gpu_train::loop_budget::check(gpu, &layer.backward[..2]).unwrap();
    gpu.loop_budget = real_budget;
    assert_eq!(layer.backward.len(), if with_dx { 3 } else { 2 });
    for d in layer.forward.iter().chain(&layer.backward) {
        assert!(d.loops.is_some() && d.flops > 0, "{} lacks a loop bound or flops", d.name);
    }
    gpu_train::loop_budget::check(gpu, &layer.forward).unwrap();
    gpu_train::loop_budget::check(gpu, &layer.backward).unwrap();
    run(gpu, &layer.forward.iter().chain(&layer.backward).collect::<Vec<_>>());
    let all = gpu.read_f32(&gb).unwrap();
    let len = s.param_len();
    assert!(
        all[..offset].iter().chain(&all[offset + len..]).all(|&v| v == FILLER),
        "gradient words outside the layer's block changed"
    );
    let plan = layer.plan.unwrap();
    Out {
        y: gpu.read_f32(&yb).unwrap(),
        grads: all[offset..offset + len].to_vec(),
        dx: with_dx.then(|| gpu.read_f32(&dxb).unwrap()),
        chunks: plan.chunks,
        chunk_rows: plan.chunk_rows,
    }
}

struct Reference {
    y: Vec<f64>,
    grads: Vec<f64>,
    dx: Vec<f64>,
}

/// Direct f64 convolution and its gradients, written from the definitions.
fn reference(s: ConvGenericShape, x: &[f32], block: &[f32], dy: &[f32]) -> Reference {
    let (bn, ci_n, co_n, sd, k) = (s.batch, s.in_channels, s.out_channels, s.side as i64, s.kernel);
    let pad = (k / 2) as i64;
    let xi =
        |b: usize, c: usize, y: i64, x_: i64| ((b * ci_n + c) * s.side + y as usize) * s.side + x_ as usize;
    let yi =
        |b: usize, c: usize, y: i64, x_: i64| ((b * co_n + c) * s.side + y as usize) * s.side + x_ as usize;
    let wi = |co: usize, ci: usize, ky: usize, kx: usize| ((co * ci_n + ci) * k + ky) * k + kx;
    let mut r = Reference {
        y: vec![0.0; s.output_len()],
        grads: vec![0.0; s.param_len()],
        dx: vec![0.0; s.input_len()],
    };
    for b in 0..bn {
        for co in 0..co_n {
            for oy in 0..sd {
                for ox in 0..sd {
                    let g = dy[yi(b, co, oy, ox)] as f64;
                    let mut acc = if s.bias { block[s.weight_len() + co] as f64 } else { 0.0 };
                    if s.bias {
                        r.grads[s.weight_len() + co] += g;
                    }
                    for ci in 0..ci_n {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (oy + ky as i64 - pad, ox + kx as i64 - pad);
                                if iy < 0 || iy >= sd || ix < 0 || ix >= sd {
                                    continue;
                                }
                                let (xv, wv) =
                                    (x[xi(b, ci, iy, ix)] as f64, block[wi(co, ci, ky, kx)] as f64);
                                acc += xv * wv;
                                r.grads[wi(co, ci, ky, kx)] += g * xv;
                                r.dx[xi(b, ci, iy, ix)] += g * wv;
                            }
                        }
                    }
                    r.y[yi(b, co, oy, ox)] = acc;
                }
            }
        }
    }
    r
}

type Generator = fn(&mut rand::rngs::StdRng, usize) -> Vec<f32>;

struct Case {
    s: ConvGenericShape,
    x: Vec<f32>,
    block: Vec<f32>,
    dy: Vec<f32>,
}

fn case(s: ConvGenericShape, seed: u64, make: Generator) -> Case {
    let mut r = rng(seed);
    Case {
        s,
        x: make(&mut r, s.input_len()),
        block: make(&mut r, s.param_len()),
        dy: make(&mut r, s.output_len()),
    }
}

/// Runs `c` and checks every output against the reference to `tol` (0: equality).
fn check(gpu: &mut Gpu, k: &Kernels, c: &Case, with_dx: bool, plan: Plan, tol: f64) -> Out {
    let s = c.s;
    let out = run_layer(gpu, k, s, &c.x, &c.block, &c.dy, with_dx, plan);
    let want = reference(s, &c.x, &c.block, &c.dy);
    let tag = format!(
        "B={} CI={} CO={} S={} K={} bias={} ({} chunks of {} rows)",
        s.batch, s.in_channels, s.out_channels, s.side, s.kernel, s.bias, out.chunks, out.chunk_rows
    );
    assert_close(&format!("forward {tag}"), &out.y, &want.y, tol);
    let wl = s.weight_len();
    assert_close(&format!("dW {tag}"), &out.grads[..wl], &want.grads[..wl], tol);
    if s.bias {
        assert_close(&format!("db {tag}"), &out.grads[wl..], &want.grads[wl..], tol);
    }
    if let Some(dx) = &out.dx {
        assert_close(&format!("dx {tag}"), dx, &want.dx, tol);
    }
    out
}

fn shape(batch: usize, ci: usize, co: usize, side: usize, kernel: usize, bias: bool) -> ConvGenericShape {
    ConvGenericShape { batch, in_channels: ci, out_channels: co, side, kernel, bias }
}

#[test]
fn conv_generic_matches_reference() {
    // (shape, with dx)
    let cases = [
        (shape(3, 5, 7, 7, 3, true), true),
        (shape(3, 5, 7, 7, 5, true), true),
        // a first layer: one input channel, no dx
        (shape(3, 1, 7, 9, 5, true), false),
        (shape(2, 3, 4, 5, 3, false), true),
        // the kernel wider than the image: taps fall off both edges at once
        (shape(2, 3, 2, 2, 5, false), true),
        (shape(3, 2, 3, 1, 3, true), true),
    ];
    for dev in variants() {
        let (mut gpu, k) = dev;
        for (i, (s, with_dx)) in cases.into_iter().enumerate() {
            check(&mut gpu, &k, &case(s, 100 + i as u64, random), with_dx, DEFAULT, 1e-5);
        }
    }
}

#[test]
fn conv_generic_backward_matches_finite_differences() {
    // L = sum(y * g): dL/dw, dL/db and dL/dx by central differences of the forward kernel.
    let (mut gpu, k) = variants().remove(0);
    let s = shape(2, 2, 3, 4, 3, true);
    let c = case(s, 7, random);
    let analytic = run_layer(&mut gpu, &k, s, &c.x, &c.block, &c.dy, true, DEFAULT);
    let dx = analytic.dx.unwrap();
    let mut loss = |x: &[f32], block: &[f32]| -> f64 {
        let out = run_layer(&mut gpu, &k, s, x, block, &c.dy, false, DEFAULT);
        out.y.iter().zip(&c.dy).map(|(&y, &g)| y as f64 * g as f64).sum()
    };
    let h = 1e-2;
    let mut worst = 0f64;
    let mut note = |numeric: f64, analytic: f32| {
        worst = worst.max((numeric - analytic as f64).abs() / (analytic as f64).abs().max(1.0));
    };
    // weights at corner, edge and centre taps, every bias
    for i in [0, 4, 8, 13, 40, s.weight_len() - 1, s.weight_len(), s.param_len() - 1] {
        let (mut up, mut down) = (c.block.clone(), c.block.clone());
        up[i] += h;
        down[i] -= h;
        note((loss(&c.x, &up) - loss(&c.x, &down)) / (2.0 * h as f64), analytic.grads[i]);
    }
    // inputs at a corner, an edge, the centre and the last value
    for i in [0, 2, 5, 17, 30, s.input_len() - 1] {
        let (mut up, mut down) = (c.x.clone(), c.x.clone());
        up[i] += h;
        down[i] -= h;
        note((loss(&up, &c.block) - loss(&down, &c.block)) / (2.0 * h as f64), dx[i]);
    }
    println!("conv_generic backward vs finite differences: max error {worst:.3e}");
    assert!(worst < 1e-3, "finite-difference mismatch {worst:.3e}");
}

#[test]
fn conv_generic_wgrad_chunks_ending_inside_images_match_the_reference() {
    for dev in variants() {
        let (mut gpu, k) = dev;
        let real_budget = gpu.loop_budget;
        // A smaller budget than the adapter's cuts chunks to 3 or 2 rows of 7-row images:
        // chunk ends fall inside images and the last chunk is short.
        let s = shape(3, 5, 7, 7, 3, true);
        for rows in [3, 2] {
            let plan = Plan { fill: 1, budget: Some(rows * (7 + 2) + 2) };
            let out = check(&mut gpu, &k, &case(s, 40 + rows, random), false, plan, 1e-5);
            assert_eq!(out.chunk_rows, rows as usize);
            assert_eq!(out.chunks, (3 * 7usize).div_ceil(rows as usize));
        }
        // A budget one short of a single row (7 + 4) is refused, naming the kernel and side.
        gpu.loop_budget = 7 + 3;
        let bufs: Vec<_> = (0..4).map(|_| gpu.storage("b", 1024).unwrap()).collect();
        let b = ConvGenericBuffers {
            x: &bufs[0],
            y: &bufs[1],
            params: &bufs[2],
            grads: &bufs[3],
            offset: 0,
            dy: &bufs[1],
            dx: None,
        };
        let err = ConvGeneric::new(&gpu, &k, s, &b, true).err().unwrap();
        assert!(err.contains("conv_generic_wgrad") && err.contains("side = 7"), "{err}");
        gpu.loop_budget = real_budget;
        // At the adapter's own budget (llvmpipe's 65,535 where larger adapters take that
        // too), a 255-row image does not fit one chunk: the fewest chunks the budget allows
        // run 254 rows each, right under it (254 x 257 + 2). Whole numbers keep every sum exact, so a loop
        // the driver cut short would show as a mismatch.
        let budget = real_budget.min(65_535);
        let s = shape(2, 1, 1, 255, 3, true);
        let plan = Plan { fill: 1, budget: Some(budget) };
        let out = check(&mut gpu, &k, &case(s, 9, small_ints), true, plan, 0.0);
        let ticks = out.chunk_rows as u64 * (255 + 2) + 2;
        println!("{} chunks of {} rows: {ticks} loop iterations of {budget}", out.chunks, out.chunk_rows);
        assert!(out.chunk_rows < 255 && out.chunks == 3, "chunks should end inside images");
        assert!(ticks <= budget && ticks + 257 > budget, "chunks should be as long as allowed");
    }
}

#[test]
fn conv_generic_gradients_do_not_depend_on_batch_chunking() {
    let (mut gpu, k) = variants().remove(0);
    // Whole numbers: every chunking must give the exact sums, so a row lost or counted
    // twice at a chunk boundary shows.
    let s = shape(4, 3, 5, 9, 5, true);
    let c = case(s, 21, small_ints);
    let mut seen = Vec::new();
    // 36 rows per chunk, 1, then 4 and 5 (R (S + 2) + 2 iterations for R rows)
    let plans = [
        FEWEST,
        DEFAULT,
        Plan { fill: 1, budget: Some(4 * 11 + 2) },
        Plan { fill: 1, budget: Some(5 * 11 + 2) },
    ];
    for plan in plans {
        let out = check(&mut gpu, &k, &c, true, plan, 0.0);
        seen.push(out.chunk_rows);
        // and the same plan twice gives the same bits
        let again = run_layer(&mut gpu, &k, s, &c.x, &c.block, &c.dy, true, plan);
        assert_eq!(out.grads, again.grads, "weight gradient not reproducible");
    }
    println!("chunk rows tried: {seen:?}");
    assert_eq!(seen, [36, 1, 4, 5], "the chunkings should differ");

    // Random values: one image per chunk (fill = parameters x images), and a batch of two
    // copies of one sample; each chunk's partial sum is that sample's contribution, the
    // same bits wherever the sample sits, so the two-sample gradient is exactly twice the
    // one-sample gradient.
    let one = shape(1, 3, 5, 9, 5, true);
    let two = shape(2, 3, 5, 9, 5, true);
    let c1 = case(one, 22, random);
    let twice = |v: &[f32]| [v, v].concat();
    let per_image = |images: usize| Plan { fill: one.param_len() * images, budget: None };
    let g1 = run_layer(&mut gpu, &k, one, &c1.x, &c1.block, &c1.dy, false, per_image(1));
    let g2 = run_layer(&mut gpu, &k, two, &twice(&c1.x), &c1.block, &twice(&c1.dy), false, per_image(2));
    assert_eq!((g1.chunk_rows, g2.chunk_rows, g2.chunks), (9, 9, 2));
    let doubled: Vec<f32> = g1.grads.iter().map(|v| 2.0 * v).collect();
    assert_eq!(g2.grads, doubled, "a sample's contribution depends on its place in the batch");
    assert!(g1.grads.iter().any(|&v| v != 0.0));
}

#[test]
fn conv_generic_runs_at_the_largest_channel_counts_the_loop_budget_allows_and_refuses_the_next() {
    for dev in variants() {
        let (mut gpu, k) = dev;
        let budget = gpu.loop_budget.min(65_535);
        for kernel in [3usize, 5] {
            // CI ((K + 1)^2 + 2) + 3 ticks: the forward's channel loop; dx's the same in CO.
            let per_channel = (kernel as u64 + 1).pow(2) + 2;
            let most = ((budget - 3) / per_channel) as usize;
            // side K: every tap of the centre value lies inside, so its loops run in full
            let wide_in = shape(1, most, 1, kernel, kernel, true);
            let wide_out = shape(1, 1, most, kernel, kernel, false);
            for (s, seed) in [(wide_in, 3), (wide_out, 4)] {
                let ticks = [s.forward_loops().ticks, s.dx_loops().ticks].into_iter().max().unwrap();
                println!("K={kernel}, {most} channels: {ticks} loop iterations of {budget}");
                assert!(ticks <= budget && ticks + per_channel > budget);
                check(&mut gpu, &k, &case(s, seed, small_ints), true, DEFAULT, 0.0);
            }
        }
    }
    let (gpu, k) = variants().remove(0);
    if gpu.loop_budget > 65_535 {
        skip::skip(&format!("conv_generic refusal: this adapter's loop budget is {}", gpu.loop_budget));
        return;
    }
    // One more input channel than the most (3,640 at K = 3 under 65,535) passes the
    // budget: the model's check names the kernel and the size.
    let s = shape(1, 3641, 1, 3, 3, false);
    let bufs: Vec<_> = [s.input_len(), s.output_len(), s.param_len()]
        .into_iter()
        .map(|n| gpu.storage("b", n).unwrap())
        .collect();
    let b = ConvGenericBuffers {
        x: &bufs[0],
        y: &bufs[1],
        params: &bufs[2],
        grads: &bufs[2],
        offset: 0,
        dy: &bufs[1],
        dx: None,
    };
    let layer = ConvGeneric::new(&gpu, &k, s, &b, false).unwrap();
    let err = gpu_train::loop_budget::check(&gpu, &layer.forward).unwrap_err();
    assert!(err.contains("conv_generic_forward") && err.contains("3641 input channels"), "{err}");
}

#[test]
fn conv_generic_plan_refuses_sizes_no_chunk_can_hold() {
    // A row of side 65,531 needs 65,531 + 4 iterations: the widest one llvmpipe runs.
    let wide = |side| shape(1, 1, 1, side, 3, false);
    assert_eq!(wide(65_531).wgrad_plan(65_535, WGRAD_FILL_THREADS).unwrap().chunk_rows, 1);
    let err = wide(65_532).wgrad_plan(65_535, WGRAD_FILL_THREADS).unwrap_err();
    assert!(err.contains("conv_generic_wgrad") && err.contains("side = 65532"), "{err}");
    // One row per chunk at most (7 + 4 = 11), and more rows than the reduction may add.
    let err = shape(2, 1, 1, 7, 3, false).wgrad_plan(11, 1).unwrap_err();
    assert!(err.contains("conv_generic_wgrad_reduce") && err.contains("14 batch chunks"), "{err}");
    // Kernel sizes other than 3 and 5 are refused before anything is built.
    let (gpu, k) = variants().remove(0);
    let buf = gpu.storage("b", 64).unwrap();
    let b = ConvGenericBuffers { x: &buf, y: &buf, params: &buf, grads: &buf, offset: 0, dy: &buf, dx: None };
    let err = ConvGeneric::new(&gpu, &k, shape(1, 1, 1, 4, 7, false), &b, false).err().unwrap();
    assert!(err.contains("kernel size 7"), "{err}");
}
