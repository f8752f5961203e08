//! Command-line interface: argument definitions and the `train` command.

use crate::data;
use crate::gpu::{self, AdapterOptions, BackendChoice, Gpu};
use crate::kernels::Kernels;
use crate::layers::optim::{OptimizerConfig, OptimizerKind};
use crate::model::MODEL_NAME;
use crate::train::{EpochMetrics, TrainConfig, Trainer, progress_wanted};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive finite number")),
    }
}

fn unit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number in [0, 1)")),
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "gpu-train",
    version,
    about = "Train a CNN on an IDX image dataset (Fashion-MNIST) on the GPU",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: Args,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Measure training and evaluation throughput, start-up time, per-kernel times and memory
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct AdapterArgs {
    /// Graphics API to use
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Use the adapter whose name contains SUBSTRING (case-insensitive)
    #[arg(long, value_name = "SUBSTRING")]
    pub adapter: Option<String>,
}

impl AdapterArgs {
    fn options(&self) -> AdapterOptions {
        AdapterOptions { backend: self.backend, name_filter: self.adapter.clone() }
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Images per step
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: u32,
    /// Timed steps for training and for evaluation (after warm-up)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub steps: u32,
    /// Dataset directory (default: the usual search; synthetic data when none is found)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use random data of Fashion-MNIST's shape even when the dataset is installed
    #[arg(long)]
    pub synthetic: bool,
    /// Print one JSON object instead of the report
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of passes over the training set
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub epochs: u32,
    /// Images per training step
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: u32,
    /// Learning rate
    #[arg(long, default_value_t = 1e-3, value_parser = positive_f64)]
    pub lr: f64,
    /// Optimiser
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// Momentum for --optimizer sgd
    #[arg(long, default_value_t = 0.9, value_parser = unit_interval)]
    pub momentum: f64,
    /// Seed for initialisation and shuffling; the same seed on the same adapter gives identical losses
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    /// t10k-labels-idx1-ubyte (each optionally .gz). Default: ./data, $XDG_DATA_HOME/gpu-train/fashion-mnist,
    /// /usr/share/datasets/fashion-mnist
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Train on the first N training samples only
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit_train: Option<u64>,
    /// Evaluate on the first N test samples only
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit_test: Option<u64>,
    /// Write per-epoch metrics as JSON Lines to FILE
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Print per-kernel GPU times (timestamp queries) after training
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// List the adapters, mark the one that would be chosen, and exit
    #[arg(long)]
    pub list_adapters: bool,
}

/// Opens the adapter and, when `log` is set, says what was chosen.
pub fn open_gpu(options: &AdapterOptions, log: bool) -> Result<Gpu, String> {
    let gpu = Gpu::new(options)?;
    if !log {
        return Ok(gpu);
    }
    println!("adapter: {}", gpu.describe());
    if gpu.is_software() {
        println!(
            "note: this is a software adapter: the GPU kernels run on the CPU. Install your GPU's Vulkan/Metal/DX12 driver for real speed."
        );
    }
    let l = &gpu.limits;
    println!(
        "limits: max_storage_buffer_binding_size {} MiB, max_storage_buffers_per_shader_stage {}, max_compute_workgroups_per_dimension {}",
        l.max_storage_buffer_binding_size / (1 << 20),
        l.max_storage_buffers_per_shader_stage,
        l.max_compute_workgroups_per_dimension
    );
    Ok(gpu)
}

pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Some(Command::Bench(b)) => crate::bench::run(crate::bench::BenchConfig {
            batch_size: b.batch_size as usize,
            steps: b.steps as usize,
            data: b.data,
            synthetic: b.synthetic,
            adapter: b.adapter.options(),
            json: b.json,
        }),
        None => train(cli.train),
    }
}

fn train(args: Args) -> Result<(), String> {
    if args.list_adapters {
        let lines = gpu::list_adapters(&args.adapter.options());
        if lines.is_empty() {
            return Err("no adapters found; on headless Linux `apt-get install mesa-vulkan-drivers` provides lavapipe".into());
        }
        println!("adapters (* = chosen):");
        for line in lines {
            println!("{line}");
        }
        return Ok(());
    }
    let started = Instant::now();
    let dir = data::locate(args.data.as_deref())?;
    let mut dataset = data::load(&dir)?;
    dataset.train = dataset.train.truncated(args.limit_train.map(|n| n as usize));
    dataset.test = dataset.test.truncated(args.limit_test.map(|n| n as usize));
    println!(
        "data: {} ({} train, {} test, {}x{} pixels, {} classes)",
        dir.display(),
        dataset.train.count,
        dataset.test.count,
        dataset.train.side,
        dataset.train.side,
        dataset.classes
    );
    let mut metrics_file = match &args.metrics {
        Some(path) => Some(
            std::fs::File::create(path)
                .map_err(|e| format!("{}: cannot create metrics file: {e}", path.display()))?,
        ),
        None => None,
    };
    let gpu = open_gpu(&args.adapter.options(), true)?;
    let kernels = Kernels::new(&gpu)?;
    let cfg = TrainConfig {
        epochs: args.epochs as usize,
        batch_size: args.batch_size as usize,
        seed: args.seed,
        optimizer: OptimizerConfig {
            kind: args.optimizer,
            lr: args.lr,
            momentum: args.momentum,
            ..OptimizerConfig::default()
        },
        progress: progress_wanted(),
    };
    let mut trainer = Trainer::new(&gpu, &kernels, &dataset, cfg.clone())?;
    println!(
        "model: {MODEL_NAME}, {} parameters, batch {}, {:?} lr {}; start-up {:.2} s",
        trainer.model.shape.blocks().iter().map(|b| b.2).sum::<usize>(),
        cfg.batch_size,
        cfg.optimizer.kind,
        cfg.optimizer.lr,
        started.elapsed().as_secs_f64()
    );
    println!("epoch  train_loss  train_acc  test_loss  test_acc   seconds  train_img/s");
    let mut history: Vec<EpochMetrics> = Vec::new();
    for epoch in 1..=cfg.epochs {
        let m = trainer.train_epoch(epoch)?;
        println!(
            "{:>5}  {:>10.4}  {:>8.2}%  {:>9.4}  {:>7.2}%  {:>8.1}  {:>11.0}",
            m.epoch,
            m.train_loss,
            100.0 * m.train_acc,
            m.test_loss,
            100.0 * m.test_acc,
            m.seconds,
            m.train_images_per_sec
        );
        if let (Some(file), Some(path)) = (metrics_file.as_mut(), args.metrics.as_ref()) {
            writeln!(file, "{}", m.json())
                .and_then(|_| file.flush())
                .map_err(|e| format!("{}: cannot write metrics: {e}", path.display()))?;
        }
        history.push(m);
    }
    if args.profile {
        let step_ms = history.last().map_or(0.0, |m| 1e3 * cfg.batch_size as f64 / m.train_images_per_sec);
        match crate::profile::profile(&gpu, &trainer.model.train_step, 3)? {
            Some(p) => println!("training step kernels:\n{}", crate::profile::format_table(&p, step_ms)),
            None => println!("this adapter has no timestamp queries: no per-kernel profile"),
        }
    }
    let last = history.last().copied();
    let best = history.iter().copied().max_by(|a, b| a.test_acc.total_cmp(&b.test_acc));
    if let (Some(last), Some(best)) = (last, best) {
        println!(
            "done: final test accuracy {:.2}%, best {:.2}% (epoch {}), total {:.1} s",
            100.0 * last.test_acc,
            100.0 * best.test_acc,
            best.epoch,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
