//! `gpu-train bench`: steady-state training and evaluation throughput, start-up time, a
//! per-kernel profile and memory use, for a model (default ref-cnn) at one batch size.

use crate::data::{self, Dataset};
use crate::gpu::{AdapterOptions, Result};
use crate::kernels::Kernels;
use crate::layers::optim::OptimizerConfig;
use crate::profile::{self, KernelProfile};
use crate::train::{TrainConfig, Trainer};
use std::path::PathBuf;
use std::time::Instant;

pub struct BenchConfig {
    pub model: crate::model_spec::ModelDef,
    pub batch_size: usize,
    /// Timed training steps (after warm-up), exactly; evaluation times the same number.
    pub steps: usize,
    pub data: Option<PathBuf>,
    pub synthetic: bool,
    pub adapter: AdapterOptions,
    pub json: bool,
    /// Measure every model at every batch size instead (`--sweep`).
    pub sweep: Option<Sweep>,
    pub autotune: crate::autotune::TuneMode,
    /// `--f16-storage`: the f16-storage matmul joins the autotuner's candidates.
    pub f16_storage: bool,
}

/// The table `bench --sweep` measures.
pub struct Sweep {
    pub models: Vec<crate::model_spec::ModelDef>,
    pub batch_sizes: Vec<usize>,
}

/// The batch sizes `--sweep` measures unless told others.
pub const SWEEP_BATCHES: [usize; 6] = [32, 64, 128, 256, 512, 1024];
/// Timed steps per cell of the sweep unless `--steps` says otherwise.
pub const SWEEP_STEPS: usize = 8;

/// Median, minimum and maximum of per-step milliseconds over the timed groups.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
    Spread { median, min: v[0], max: v[n - 1] }
}

/// Steps per timed group: each is timed from its first submit until the GPU finishes it,
/// so per-group costs (the final wait) spread over 8 steps. Inside a group the trainer
/// submits as in training (groups of about a quarter of a second, two in flight).
const TIMED_GROUP: usize = 8;

/// Per-step milliseconds of each timed group: exactly `steps` steps in groups of
/// TIMED_GROUP, the last group shorter when `steps` is not a multiple of it.
fn time_steps(trainer: &mut Trainer, train: bool, steps: usize) -> Result<Vec<f64>> {
    let count = if train { trainer.train.count } else { trainer.test.count };
    let all = if train { trainer.batches(count) } else { trainer.eval_batches(count) };
    let mut out = Vec::new();
    let mut done = 0;
    while done < steps {
        let n = TIMED_GROUP.min(steps - done);
        let batches: Vec<(u32, u32)> = (done..done + n).map(|i| all[i % all.len()]).collect();
        let seconds =
            trainer.run_steps(&batches, train, if train { "bench train" } else { "bench eval" }, 0)?;
        out.push(1e3 * seconds / n as f64);
        done += n;
    }
    Ok(out)
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One model at one batch size, measured.
struct Measured {
    trainer_startup: (f64, f64),
    train: Spread,
    eval: Spread,
    forward_flops: u64,
}

impl Measured {
    fn images_per_sec(&self, batch: usize) -> (f64, f64) {
        let b = batch as f64;
        (b * 1e3 / self.train.median, b * 1e3 / self.eval.median)
    }
}

/// Builds a trainer for `model` at `batch`, runs its first step (compiling what the driver
/// compiles), `warm_up` steps of each kind, then times `steps` training and evaluation steps.
fn measure<'a>(
    gpu: &'a crate::gpu::Gpu,
    kernels: &'a Kernels,
    dataset: &'a Dataset,
    model: &crate::model_spec::ModelDef,
    batch: usize,
    steps: usize,
    warm_up: usize,
) -> Result<(Measured, Trainer<'a>)> {
    let t = Instant::now();
    let train_cfg = TrainConfig::basic(model.clone(), 1, batch, 0, OptimizerConfig::default());
    let mut trainer = Trainer::new(gpu, kernels, dataset, train_cfg)?;
    trainer.shuffle();
    let upload_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let first = trainer.batches(trainer.train.count)[..1].to_vec();
    trainer.run_steps(&first, true, "first step", 0)?;
    let first_step_s = t.elapsed().as_secs_f64();
    time_steps(&mut trainer, true, warm_up)?;
    time_steps(&mut trainer, false, warm_up)?;
    let train = spread(time_steps(&mut trainer, true, steps)?);
    let eval = spread(time_steps(&mut trainer, false, steps)?);
    let forward_flops = trainer.model.forward_flops();
    Ok((Measured { trainer_startup: (upload_s, first_step_s), train, eval, forward_flops }, trainer))
}

/// The dataset bench measures on: the one asked for, else the installed one, else random
/// data of Fashion-MNIST's shape.
fn bench_data(cfg: &BenchConfig) -> std::result::Result<Dataset, crate::error::CommandError> {
    if cfg.synthetic {
        return Ok(data::synthetic(60_000, 10_000, 28, 10, 0));
    }
    match data::locate(cfg.data.as_deref()) {
        Ok(dir) => Ok(data::load_with_classes(&dir, data::ClassCount::AnyLabels)?),
        Err(e) if cfg.data.is_none() => {
            if !cfg.json {
                println!("no dataset installed ({e}); using synthetic data of the same shape");
            }
            Ok(data::synthetic(60_000, 10_000, 28, 10, 0))
        }
        Err(e) => Err(e.into()),
    }
}

/// A model that does not fit the data is a usage error, as for training; `flag` is the
/// option that named it.
fn check_fits(
    model: &crate::model_spec::ModelDef,
    dataset: &Dataset,
    flag: &str,
) -> std::result::Result<(), crate::error::CommandError> {
    match crate::model_spec::infer(&model.layers, 1, dataset.train.side, dataset.classes) {
        Ok(_) => Ok(()),
        Err(e) => Err(crate::error::CommandError::usage_line(format!("{flag} {}: {e}", model.label()))),
    }
}

pub fn run(cfg: BenchConfig) -> std::result::Result<(), crate::error::CommandError> {
    if cfg.sweep.is_some() {
        return sweep(cfg);
    }
    let t0 = Instant::now();
    let gpu = crate::gpu::open_gpu(&cfg.adapter, !cfg.json)?;
    let adapter_s = t0.elapsed().as_secs_f64();
    let machine = crate::machine::Machine::of(&gpu);

    let t = Instant::now();
    let dataset = bench_data(&cfg)?;
    let data_s = t.elapsed().as_secs_f64();
    check_fits(&cfg.model, &dataset, "--model")?;
    let t = Instant::now();
    let kernels =
        Kernels::new(&gpu)?.with_tuner(crate::autotune::Tuner::for_run(&gpu, cfg.autotune, cfg.f16_storage));
    let pipelines_s = t.elapsed().as_secs_f64();
    let steps = cfg.steps.max(1);
    let groups = steps.div_ceil(TIMED_GROUP);
    let (m, trainer) = measure(&gpu, &kernels, &dataset, &cfg.model, cfg.batch_size, steps, TIMED_GROUP)?;
    let (upload_s, first_step_s) = m.trainer_startup;
    let startup_s = adapter_s + data_s + pipelines_s + upload_s + first_step_s;
    // the model's build timed the tunable kernels' candidates: reported on its own
    let tune_s = kernels.tuner.seconds().min(upload_s);
    let upload_s = upload_s - tune_s;
    let (train, eval) = (m.train, m.eval);

    let forward_flops = m.forward_flops;
    let train_flops = 3 * forward_flops;
    let (train_ips, eval_ips) = m.images_per_sec(cfg.batch_size);
    let train_profile = profile::profile(&gpu, &trainer.model.train_step, 3)?;
    let eval_profile = profile::profile(&gpu, &trainer.model.eval_step, 3)?;
    let mem = trainer.model.memory();
    let dataset_bytes = trainer.train.bytes() + trainer.test.bytes();
    let allocated = gpu.device.generate_allocator_report().map(|r| r.total_allocated_bytes);
    let rss = peak_rss_bytes();

    if cfg.json {
        let kernels_json = |p: &Option<KernelProfile>| match p {
            None => serde_json::Value::Null,
            Some(p) => serde_json::Value::Array(
                p.kernels
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "layer": k.layer, "kernel": k.kernel, "calls_per_step": k.calls_per_step,
                            "ms_per_step": k.ms_per_step, "flops_per_step": k.flops_per_step,
                            "gflops": k.gflops(),
                            "bytes_per_step": k.bytes_per_step, "gbytes_per_sec": k.gbps(),
                        })
                    })
                    .collect(),
            ),
        };
        let out = serde_json::json!({
            "model": cfg.model.name, "model_layers": cfg.model.text,
            "machine": machine.to_json(),
            "adapter": gpu.describe(),
            "software_adapter": gpu.is_software(),
            "kernel_variant": format!("{:?}", kernels.variant),
            "data": dataset.dir.display().to_string(),
            "batch_size": cfg.batch_size,
            "timed_steps": steps,
            "timed_groups": groups,
            "train_images_per_sec": train_ips,
            "eval_images_per_sec": eval_ips,
            "train_ms_per_step": {"median": train.median, "min": train.min, "max": train.max},
            "eval_ms_per_step": {"median": eval.median, "min": eval.min, "max": eval.max},
            "train_flops_per_image": train_flops,
            "eval_flops_per_image": forward_flops,
            "train_gflops": train_flops as f64 * train_ips / 1e9,
            "eval_gflops": forward_flops as f64 * eval_ips / 1e9,
            "startup_seconds": startup_s,
            "startup": {"adapter": adapter_s, "data": data_s, "pipelines": pipelines_s, "upload": upload_s, "autotune": tune_s,
                        "first_step": first_step_s},
            "autotune": autotune_json(&kernels),
            "kernels": kernels_json(&train_profile),
            "eval_kernels": kernels_json(&eval_profile),
            "kernel_timestamps": train_profile.as_ref().map(|p| p.method),
            "gpu_bytes": {"dataset": dataset_bytes, "weights": mem.weights, "gradients": mem.gradients,
                          "optimizer": mem.optimizer, "activations": mem.activations,
                          "allocator_total": allocated},
            "peak_rss_bytes": rss,
        });
        println!("{out}");
        return Ok(());
    }
    println!("{}", machine.line());
    println!(
        "model: {} ({}), batch {}, kernels {:?}, data {}",
        cfg.model.name,
        cfg.model.text,
        cfg.batch_size,
        kernels.variant,
        dataset.dir.display()
    );
    println!(
        "start-up: {startup_s:.2} s to the first training step (adapter {adapter_s:.2}, data {data_s:.2}, pipelines {pipelines_s:.2}, upload {upload_s:.2}, autotune {tune_s:.2}, first step {first_step_s:.2})"
    );
    println!(
        "FLOPs per image: {:.2} M forward, {:.2} M training (3x forward)",
        forward_flops as f64 / 1e6,
        train_flops as f64 / 1e6
    );
    let line = |name: &str, s: Spread, ips: f64, flops: u64| {
        println!(
            "{name}: {ips:.0} images/s, {:.2} ms/step ({steps} steps; median of {groups} group(s) of up to {TIMED_GROUP}: min {:.2}, max {:.2}), {:.1} GFLOP/s",
            s.median,
            s.min,
            s.max,
            flops as f64 * ips / 1e9
        )
    };
    line("train", train, train_ips, train_flops);
    line("eval ", eval, eval_ips, forward_flops);
    let mib = |v: u64| v as f64 / (1 << 20) as f64;
    println!(
        "GPU memory: dataset {:.1} MiB, weights {:.2} MiB, gradients {:.2} MiB, optimiser {:.2} MiB, activations {:.1} MiB{}",
        mib(dataset_bytes),
        mib(mem.weights),
        mib(mem.gradients),
        mib(mem.optimizer),
        mib(mem.activations),
        allocated.map_or(String::new(), |a| format!(" (allocator total {:.1} MiB)", mib(a)))
    );
    if let Some(rss) = rss {
        println!("peak host RSS: {:.1} MiB", mib(rss));
    }
    print!("{}", autotune_lines(&kernels));
    match (&train_profile, &eval_profile) {
        (Some(tp), Some(ep)) => {
            println!("\ntraining step kernels:\n{}", profile::format_table(tp, train.median));
            println!("evaluation step kernels:\n{}", profile::format_table(ep, eval.median));
        }
        _ => println!("this adapter has no timestamp queries: no per-kernel profile"),
    }
    Ok(())
}

/// `bench --sweep`: every model at every batch size, one row each as it is measured. A
/// batch that does not fit the adapter (or fails) gets a row saying why; the rest go on.
fn sweep(cfg: BenchConfig) -> std::result::Result<(), crate::error::CommandError> {
    let Some(plan) = &cfg.sweep else { return Ok(()) };
    let gpu = crate::gpu::open_gpu(&cfg.adapter, !cfg.json)?;
    let machine = crate::machine::Machine::of(&gpu);
    let dataset = bench_data(&cfg)?;
    for model in &plan.models {
        check_fits(model, &dataset, "--sweep-model")?;
    }
    let kernels =
        Kernels::new(&gpu)?.with_tuner(crate::autotune::Tuner::for_run(&gpu, cfg.autotune, cfg.f16_storage));
    let steps = cfg.steps.max(1);
    // the first step compiles; one short group more settles the caches
    let warm_up = steps.min(2);
    if !cfg.json {
        println!("{}", machine.line());
        println!(
            "sweep: {} model(s) x {} batch size(s), {steps} timed steps each for training and for evaluation, data {}",
            plan.models.len(),
            plan.batch_sizes.len(),
            dataset.dir.display()
        );
        println!(
            "{:<10} {:>6} {:>12} {:>10} {:>8} {:>12} {:>10} {:>8}",
            "model", "batch", "train img/s", "ms/step", "GFLOP/s", "eval img/s", "ms/step", "GFLOP/s"
        );
    }
    let mut rows = Vec::new();
    for model in &plan.models {
        for &batch in &plan.batch_sizes {
            let measured = measure(&gpu, &kernels, &dataset, model, batch, steps, warm_up).map(|(m, _)| m);
            let name = model.label();
            match measured {
                Ok(m) => {
                    let (train_ips, eval_ips) = m.images_per_sec(batch);
                    let train_gflops = 3.0 * m.forward_flops as f64 * train_ips / 1e9;
                    let eval_gflops = m.forward_flops as f64 * eval_ips / 1e9;
                    if !cfg.json {
                        println!(
                            "{name:<10} {batch:>6} {train_ips:>12.1} {:>10.2} {train_gflops:>8.1} {eval_ips:>12.1} {:>10.2} {eval_gflops:>8.1}",
                            m.train.median, m.eval.median
                        );
                    }
                    rows.push(serde_json::json!({
                        "model": model.name, "model_layers": model.text, "batch_size": batch,
                        "train_images_per_sec": train_ips, "train_ms_per_step": m.train.median,
                        "train_gflops": train_gflops,
                        "eval_images_per_sec": eval_ips, "eval_ms_per_step": m.eval.median,
                        "eval_gflops": eval_gflops,
                    }));
                }
                Err(e) => {
                    // the next cell starts afresh: an out-of-memory here says nothing of it
                    gpu.errors.clear();
                    // the batch is the sweep's, not a --batch-size to change
                    let e = e.split("; pass --batch-size").next().unwrap_or_default().to_string();
                    if !cfg.json {
                        println!("{name:<10} {batch:>6}  not measured: {e}");
                    }
                    rows.push(serde_json::json!({
                        "model": model.name, "model_layers": model.text, "batch_size": batch,
                        "error": e.to_string(),
                    }));
                }
            }
        }
    }
    let measured = rows.iter().filter(|r| r.get("error").is_none()).count();
    if cfg.json {
        let out = serde_json::json!({
            "machine": machine.to_json(),
            "kernel_variant": format!("{:?}", kernels.variant),
            "data": dataset.dir.display().to_string(),
            "timed_steps": steps,
            "autotune": autotune_json(&kernels),
            "sweep": rows,
        });
        println!("{out}");
    } else {
        print!("{}", autotune_lines(&kernels));
    }
    if measured == 0 {
        return Err(crate::error::CommandError::from(
            "no cell of the sweep could be measured (each row says why)".to_string(),
        ));
    }
    Ok(())
}

/// What the autotuner chose for each tuned kernel and shape, and why (`--autotune`).
fn autotune_lines(kernels: &Kernels) -> String {
    let records = kernels.tuner.records();
    if records.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "autotune ({:?}; the family kernels: {:?}, {} lanes per workgroup, chosen by the adapter):\n",
        kernels.tuner.mode, kernels.variant, kernels.workgroup_size
    )
    .to_lowercase();
    for r in records {
        out += &format!("  {}: {} ({})\n", r.key, r.choice, r.why);
    }
    out
}

fn autotune_json(kernels: &Kernels) -> serde_json::Value {
    let records: Vec<serde_json::Value> = kernels
        .tuner
        .records()
        .into_iter()
        .map(|r| serde_json::json!({"kernel": r.key, "choice": r.choice, "why": r.why}))
        .collect();
    serde_json::json!({"mode": format!("{:?}", kernels.tuner.mode).to_lowercase(), "choices": records})
}
