//! Command-line interface: argument definitions, adapter opening and dispatch.

use crate::error::CommandError;
use crate::gpu::{AdapterOptions, BackendChoice};
use crate::layers::optim::OptimizerKind;
use clap::Parser;
use std::path::PathBuf;

/// A float as the user reads it: plain between 1e-4 and 1e6 in magnitude (and 0), else
/// in exponent form (`1e308`, `2.5e-7`). Both forms are the shortest that round-trip.
pub fn readable(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e6).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// A sample count for --limit-train / --limit-test.
fn sample_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{s}' is not a whole number of samples (at least 1)")),
    }
}

fn seed(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| format!("seed must be a whole number from 0 to {}", u64::MAX))
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive finite number")),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a finite number of at least 0")),
    }
}

fn warmup(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=100_000.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number of epochs from 0 to 100000")),
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
    /// Evaluate a checkpoint on the test set: loss, accuracy, per-class accuracy, confusion matrix
    Eval(EvalArgs),
    /// Classify PNG images with a checkpoint and print each one's top 3 classes
    Predict(PredictArgs),
    /// List the preset models with their layers, parameters and forward FLOPs
    Models(ModelsArgs),
    /// Write RUN_DIR/report.html: curves, confusion matrix, per-class accuracy, the most
    /// confidently wrong test images, settings, adapter and time, in one self-contained file
    Report(ReportArgs),
    /// Fetch Fashion-MNIST (or MNIST) from public mirrors, verified by the SHA-256 of each
    /// file's content
    Download(DownloadArgs),
    /// Print a shell completion script (bash: `source <(gpu-train completions bash)`)
    Completions(CompletionsArgs),
    /// Print the manual page (roff; `gpu-train man | man -l -`), or write it and one page per
    /// subcommand into a directory
    Man(ManArgs),
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write gpu-train.1 and gpu-train-SUBCOMMAND.1 for each subcommand into DIR instead
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The completion script for `shell`. clap_complete's bash script for a hyphenated name
/// spells its subcommands' case labels differently from the names it matches them
/// against (gpu__subcmd__train__subcmd__X against gpu__train__subcmd__X), so no option
/// of a subcommand would complete; the labels are put right here.
pub fn completion_script(shell: clap_complete::Shell) -> String {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "gpu-train", &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    match shell {
        clap_complete::Shell::Bash => text.replace("gpu__subcmd__train__subcmd__", "gpu__train__subcmd__"),
        _ => text,
    }
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// Directory to put the files in [default: $XDG_DATA_HOME/gpu-train/DATASET, else
    /// ~/.local/share/gpu-train/DATASET; training finds fashion-mnist there]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Which dataset
    #[arg(long, value_enum, default_value = "fashion-mnist")]
    pub dataset: crate::download::DatasetName,
    /// Base URL of another copy (a local mirror, a test server), tried instead of the public
    /// mirrors; repeat for several, tried in order
    #[arg(long = "mirror", value_name = "URL", value_parser = crate::download::mirror_url)]
    pub mirrors: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A training run's --save directory
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// The checkpoint to evaluate [default: RUN_DIR/best.safetensors, else last.safetensors]
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Where to write the page [default: RUN_DIR/report.html]
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Directory holding the test set [default: the data the run trained on, from
    /// RUN_DIR/run.json]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images per evaluation step [default: the largest that fits, up to 1024]
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: Option<u32>,
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Also print each preset's per-layer summary (for 28x28 images and 10 classes)
    #[arg(long)]
    pub summary: bool,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Checkpoint to evaluate (a .safetensors file written by training)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Dataset directory (default: the usual search, as for training)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate on the first N test samples only
    #[arg(long, allow_negative_numbers = true, value_parser = sample_count)]
    pub limit_test: Option<u64>,
    /// Images per evaluation step [default: the largest that fits, up to 1024]
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: Option<u32>,
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Checkpoint to classify with
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// PNG files (grayscale or colour, any size; scaled to the model's input)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Invert the grey levels first (for dark objects on a light background; Fashion-MNIST
    /// is light on dark)
    #[arg(long)]
    pub invert: bool,
    #[command(flatten)]
    pub adapter: AdapterArgs,
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
    pub fn options(&self) -> AdapterOptions {
        AdapterOptions { backend: self.backend, name_filter: self.adapter.clone() }
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Images per step
    #[arg(long, default_value_t = 128, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: u32,
    /// Timed steps for training and for evaluation, after warm-up: exactly N, timed in groups of
    /// 8 (the last group shorter when N is not a multiple of 8) [default: 64, with --sweep 8]
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub steps: Option<u32>,
    /// Dataset directory (default: the usual search; synthetic data when none is found)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use random data of Fashion-MNIST's shape even when the dataset is installed
    #[arg(long)]
    pub synthetic: bool,
    /// Print one JSON object instead of the report
    #[arg(long)]
    pub json: bool,
    /// Model to measure: a preset name (see `gpu-train models`), a layer string or a model file
    #[arg(long, default_value = "ref-cnn")]
    pub model: String,
    /// Measure a table instead: every preset model (or each --sweep-model) at batch sizes 32
    /// to 1024 (or each --sweep-batch), with images/s, ms/step and GFLOP/s
    #[arg(long, conflicts_with_all = ["model", "batch_size"])]
    pub sweep: bool,
    /// A model for --sweep (repeatable): a preset name, a layer string or a model file
    #[arg(long, value_name = "MODEL", requires = "sweep")]
    pub sweep_model: Vec<String>,
    /// Time the tunable kernels' variants at start-up (cached on disk): off, quick or full;
    /// the report says what each got and why
    #[arg(long, value_enum, default_value_t = crate::autotune::TuneMode::Quick)]
    pub autotune: crate::autotune::TuneMode,
    /// Experimental: the autotuner also times an f16-storage matrix multiply (f16 copies of
    /// both operands, f32 sums) where the adapter supports f16; where it wins, results carry
    /// f16 rounding. Not with --autotune off
    #[arg(long)]
    pub f16_storage: bool,
    /// A batch size for --sweep (repeatable)
    #[arg(long, value_name = "N", requires = "sweep", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub sweep_batch: Vec<u32>,
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a preset name (`gpu-train models` lists them), a layer string such as
    /// "c32,bn,relu,pool,fc128,relu,fc", or a TOML file with [model] layers = "..."
    /// [default: ref-cnn, or the resumed run's]
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Number of passes over the training set, in all [default: 20, or the resumed run's]
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub epochs: Option<u32>,
    /// Images per training step [default: 128]
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: Option<u32>,
    /// Learning rate [default: 0.001]
    #[arg(long, allow_negative_numbers = true, value_parser = positive_f64)]
    pub lr: Option<f64>,
    /// Optimiser [default: adam]
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning-rate schedule over the run's epochs: constant, cosine, onecycle, or
    /// step:E1,E2,...:GAMMA (the rate times GAMMA after each listed epoch) [default: constant]
    #[arg(long, value_name = "SCHEDULE", value_parser = crate::schedule::Schedule::parse)]
    pub schedule: Option<crate::schedule::Schedule>,
    /// Epochs of linear warm-up at the start (fractions allowed) [default: 0]
    #[arg(long, value_name = "EPOCHS", allow_negative_numbers = true, value_parser = warmup)]
    pub warmup_epochs: Option<f64>,
    /// Label smoothing of the training loss: the target is (1 - X) one-hot + X / classes
    /// [default: 0]
    #[arg(long, value_name = "X", allow_negative_numbers = true, value_parser = unit_interval)]
    pub label_smoothing: Option<f64>,
    /// Weight decay: decoupled for --optimizer adamw [default: 0.01], an L2 term for sgd
    /// [default: 0]; refused with adam. Applies to conv and dense weights only
    #[arg(long, value_name = "X", allow_negative_numbers = true, value_parser = non_negative)]
    pub weight_decay: Option<f64>,
    /// Training-time augmentation on the GPU: crop=P (random crop of the image padded by P
    /// zero pixels, 0 to 8), flip (left-right, half the images), erase=P (with probability
    /// P a rectangle of 2-33% of the image set to 0), comma-separated, or none
    /// [default: none]
    #[arg(long, value_name = "SPEC", value_parser = crate::augment::Augment::parse)]
    pub augment: Option<crate::augment::Augment>,
    /// Stop after N epochs in a row without a gain in test accuracy (best.safetensors holds
    /// the best epoch) [default: none, or the resumed run's]
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub patience: Option<u32>,
    /// Input scaling: unit (byte / 255) or standard (minus the training set's mean, over its
    /// standard deviation, computed at load) [default: unit, or the resumed run's]
    #[arg(long, value_enum)]
    pub normalize: Option<crate::normalize::NormalizeChoice>,
    /// Clip the gradients by their global 2-norm to at most X before each optimiser step
    /// (PyTorch's clip_grad_norm_) [default: no clipping]
    #[arg(long, value_name = "X", allow_negative_numbers = true, value_parser = positive_f64)]
    pub clip_grad_norm: Option<f64>,
    /// Nesterov momentum for --optimizer sgd (`--nesterov false` turns off a config
    /// file's)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = false)]
    pub nesterov: Option<bool>,
    /// Momentum for --optimizer sgd (refused with adam) [default: 0.9]
    #[arg(long, allow_negative_numbers = true, value_parser = unit_interval)]
    pub momentum: Option<f64>,
    /// Seed for initialisation and shuffling; the same seed on the same adapter gives identical
    /// losses [default: 0]
    #[arg(long, allow_negative_numbers = true, value_parser = seed)]
    pub seed: Option<u64>,
    /// Directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    /// t10k-labels-idx1-ubyte (each optionally .gz). Default: ./data, $XDG_DATA_HOME/gpu-train/fashion-mnist,
    /// /usr/share/datasets/fashion-mnist
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Train on the first N training samples only [default: all, or the resumed run's]
    #[arg(long, allow_negative_numbers = true, value_parser = sample_count)]
    pub limit_train: Option<u64>,
    /// Evaluate on the first N test samples only [default: all, or the resumed run's]
    #[arg(long, allow_negative_numbers = true, value_parser = sample_count)]
    pub limit_test: Option<u64>,
    /// Number of classes, from the largest training label + 1 to 256; needed when some class
    /// has no training image [default: the largest training label + 1, or the resumed run's]
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(2..=256))]
    pub classes: Option<u32>,
    /// Write per-epoch metrics as JSON Lines to FILE
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Print per-kernel GPU times (timestamp queries) after training
    #[arg(long)]
    pub profile: bool,
    /// Write last.safetensors after every epoch (and on Ctrl-C or SIGTERM) and best.safetensors when the
    /// test accuracy improves, into DIR [default: runs/<UTC date-time>, or the resumed
    /// checkpoint's directory]. A DIR that already holds checkpoints is refused unless
    /// --overwrite is given
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// Let this run replace the checkpoints of another run in the --save directory (they are
    /// deleted when training starts) and an existing --metrics file
    #[arg(long)]
    pub overwrite: bool,
    /// Write no checkpoints
    #[arg(long, conflicts_with = "save")]
    pub no_save: bool,
    /// Continue the run saved in FILE; --epochs, --limit-train, --limit-test and --classes
    /// default to that run's, and --epochs stays the total number of epochs
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Train the recipe in a config file: a model file whose [train] table holds training
    /// flags by name (epochs, batch_size, optimizer, lr, schedule, augment, ...; see
    /// configs/). A flag given on the command line wins over the file
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The --config file's model when --model is not given (set by `with_config`).
    #[arg(skip)]
    pub model_def: Option<crate::model_spec::ModelDef>,
    /// Print the fully resolved settings (model and [train]) as a config file and exit
    #[arg(long)]
    pub print_config: bool,
    /// Write the first training batch, as the network sees it after augmentation, to FILE as
    /// a PNG grid, and exit without training
    #[arg(long, value_name = "FILE.png", conflicts_with = "resume")]
    pub preview_batch: Option<PathBuf>,
    /// Time the tunable kernels' variants for this adapter and shape at start-up and keep
    /// the fastest (cached on disk): off, quick or full (re-measures even when cached).
    /// Never changes a result (but see --f16-storage)
    #[arg(long, value_enum, default_value_t = crate::autotune::TuneMode::Quick)]
    pub autotune: crate::autotune::TuneMode,
    /// Experimental: the autotuner also times an f16-storage matrix multiply (f16 copies of
    /// both operands, f32 sums) where the adapter supports f16; where it wins, results carry
    /// f16 rounding, and a value past f16's range (65,504) ends the run as diverged. Not
    /// with --autotune off
    #[arg(long)]
    pub f16_storage: bool,
    /// Fetch Fashion-MNIST first when no dataset is found (into --data DIR, else the
    /// per-user data directory; see `gpu-train download`)
    #[arg(long)]
    pub download: bool,
    /// Plain progress lines instead of the live bar, even on a terminal: one per epoch, plus
    /// one every --log-every seconds of a long epoch
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Seconds between plain progress lines within an epoch (without a terminal, or with
    /// --quiet) [default: 30]
    #[arg(long, value_name = "SECS", value_parser = positive_f64)]
    pub log_every: Option<f64>,
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// List the adapters, mark the one that would be chosen, and exit
    #[arg(long)]
    pub list_adapters: bool,
}

impl Args {
    /// With --config FILE: the file's model unless --model is given, and each of its
    /// [train] settings that the command line does not give. The file's settings pass
    /// through the same parser as typed flags, so they meet the same ranges.
    pub fn with_config(mut self) -> Result<Args, CommandError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = path.display().to_string();
        if !path.exists() {
            return Err(CommandError::usage_line(format!("--config {file}: no such file")));
        }
        let (def, mut table) = crate::model_spec::config_file(&path).map_err(CommandError::usage_line)?;
        if def.is_none() && self.model.is_none() {
            return Err(CommandError::usage_line(format!(
                "{file}: has no [model] table (layers = \"...\" or preset = \"NAME\"); add one or pass --model"
            )));
        }
        if self.resume.is_some() {
            // The target and the patience belong to the run being resumed (as without
            // --config): the file's would quietly stretch a run started with --epochs 2.
            table.remove("epochs");
            table.remove("patience");
        }
        let argv = crate::config::train_argv(&file, &table).map_err(CommandError::usage_line)?;
        let parsed =
            Cli::try_parse_from(std::iter::once("gpu-train".to_string()).chain(argv)).map_err(|e| {
                CommandError::usage_line(format!("{file}: [train]: {}", crate::config::clap_message(&e)))
            })?;
        let mut f = parsed.train;
        // Settings that belong to an optimiser or a schedule the command line replaces
        // give way with it: `--optimizer sgd` over an AdamW file does not inherit AdamW's
        // decay, and `--schedule onecycle` (its own warm-up) not the file's warm-up.
        if self.optimizer.is_some_and(|o| Some(o) != f.optimizer) {
            (f.momentum, f.nesterov, f.weight_decay) = (None, None, None);
        }
        if self.schedule.as_ref().is_some_and(|s| Some(s) != f.schedule.as_ref()) {
            f.warmup_epochs = None;
        }
        if self.model.is_none() {
            // the file's model as read, so that a file named like a preset stays a file
            self.model_def = def;
            self.model = Some(file);
        }
        self.epochs = self.epochs.or(f.epochs);
        self.batch_size = self.batch_size.or(f.batch_size);
        self.lr = self.lr.or(f.lr);
        self.optimizer = self.optimizer.or(f.optimizer);
        self.schedule = self.schedule.or(f.schedule);
        self.warmup_epochs = self.warmup_epochs.or(f.warmup_epochs);
        self.label_smoothing = self.label_smoothing.or(f.label_smoothing);
        self.weight_decay = self.weight_decay.or(f.weight_decay);
        self.augment = self.augment.or(f.augment);
        self.patience = self.patience.or(f.patience);
        self.normalize = self.normalize.or(f.normalize);
        self.nesterov = self.nesterov.or(f.nesterov);
        self.momentum = self.momentum.or(f.momentum);
        self.seed = self.seed.or(f.seed);
        self.clip_grad_norm = self.clip_grad_norm.or(f.clip_grad_norm);
        Ok(self)
    }
}

/// `--f16-storage` adds a candidate to the autotuner, so it is refused with tuning off.
fn f16_storage(asked: bool, autotune: crate::autotune::TuneMode) -> Result<bool, CommandError> {
    if asked && autotune == crate::autotune::TuneMode::Off {
        return Err(CommandError::usage_line(
            "--f16-storage adds a candidate for the autotuner to time, so it cannot be used with --autotune off",
        ));
    }
    Ok(asked)
}

/// Runs the command line; Ok gives the exit code (0, or 130 after Ctrl-C; predict: 1 when
/// some image failed).
pub fn run(cli: Cli) -> Result<u8, CommandError> {
    match cli.command {
        Some(Command::Models(m)) => {
            print!("{}", crate::model_spec::presets_listing(m.summary));
            Ok(0)
        }
        Some(Command::Bench(b)) => {
            let resolve = |text: &str, flag: &str| {
                // resolve's errors name --model; the sweep's name its own flag
                crate::model_spec::resolve(text)
                    .map_err(|e| CommandError::usage_line(e.replacen("--model", flag, 1)))
            };
            let sweep = if b.sweep {
                let names: Vec<String> = if b.sweep_model.is_empty() {
                    crate::model_spec::PRESETS.iter().map(|(n, _, _)| n.to_string()).collect()
                } else {
                    b.sweep_model.clone()
                };
                let models =
                    names.iter().map(|m| resolve(m, "--sweep-model")).collect::<Result<Vec<_>, _>>()?;
                let batch_sizes = if b.sweep_batch.is_empty() {
                    crate::bench::SWEEP_BATCHES.to_vec()
                } else {
                    b.sweep_batch.iter().map(|&n| n as usize).collect()
                };
                Some(crate::bench::Sweep { models, batch_sizes })
            } else {
                None
            };
            let default_steps = if b.sweep { crate::bench::SWEEP_STEPS } else { 64 };
            crate::bench::run(crate::bench::BenchConfig {
                model: if b.sweep { Default::default() } else { resolve(&b.model, "--model")? },
                batch_size: b.batch_size as usize,
                steps: b.steps.map_or(default_steps, |s| s as usize),
                data: b.data,
                synthetic: b.synthetic,
                adapter: b.adapter.options(),
                json: b.json,
                sweep,
                autotune: b.autotune,
                f16_storage: f16_storage(b.f16_storage, b.autotune)?,
            })
            .map(|_| 0)
        }
        Some(Command::Eval(e)) => {
            crate::evaluate::eval_command(&e.into()).map(|_| 0).map_err(CommandError::from)
        }
        Some(Command::Predict(p)) => crate::evaluate::predict_command(&p.into()).map_err(CommandError::from),
        Some(Command::Download(d)) => crate::download::download_command(&crate::download::DownloadCommand {
            dir: d.dir,
            dataset: d.dataset,
            mirrors: d.mirrors,
        })
        .map(|_| 0)
        .map_err(CommandError::from),
        Some(Command::Completions(c)) => {
            use std::io::Write;
            std::io::stdout()
                .write_all(completion_script(c.shell).as_bytes())
                .map_err(|e| CommandError::from(format!("cannot write the completions: {e}")))?;
            Ok(0)
        }
        Some(Command::Man(m)) => {
            crate::manual::man_command(m.dir.as_deref()).map(|_| 0).map_err(CommandError::from)
        }
        Some(Command::Report(r)) => crate::report::report_command(&crate::report::ReportCommand {
            run_dir: r.run_dir,
            checkpoint: r.checkpoint,
            out: r.out,
            data: r.data,
            batch_size: r.batch_size,
            adapter: r.adapter.options(),
        })
        .map(|_| 0)
        .map_err(CommandError::from),
        None => {
            f16_storage(cli.train.f16_storage, cli.train.autotune)?;
            crate::run::train_command(cli.train.with_config()?.into())
        }
    }
}

impl From<Args> for crate::run::TrainCommand {
    fn from(a: Args) -> Self {
        crate::run::TrainCommand {
            model: a.model,
            model_def: a.model_def,
            epochs: a.epochs,
            batch_size: a.batch_size,
            lr: a.lr,
            optimizer: a.optimizer,
            momentum: a.momentum,
            seed: a.seed,
            data: a.data,
            limit_train: a.limit_train,
            limit_test: a.limit_test,
            classes: a.classes,
            metrics: a.metrics,
            profile: a.profile,
            save: a.save,
            overwrite: a.overwrite,
            no_save: a.no_save,
            resume: a.resume,
            schedule: a.schedule,
            warmup_epochs: a.warmup_epochs,
            label_smoothing: a.label_smoothing,
            weight_decay: a.weight_decay,
            nesterov: a.nesterov,
            clip_grad_norm: a.clip_grad_norm,
            augment: a.augment,
            patience: a.patience,
            normalize: a.normalize,
            config: a.config,
            print_config: a.print_config,
            preview_batch: a.preview_batch,
            autotune: a.autotune,
            f16_storage: a.f16_storage,
            quiet: a.quiet,
            download: a.download,
            log_every: a.log_every,
            adapter: a.adapter.options(),
            list_adapters: a.list_adapters,
        }
    }
}

impl From<EvalArgs> for crate::evaluate::EvalCommand {
    fn from(a: EvalArgs) -> Self {
        crate::evaluate::EvalCommand {
            checkpoint: a.checkpoint,
            data: a.data,
            limit_test: a.limit_test,
            batch_size: a.batch_size,
            adapter: a.adapter.options(),
        }
    }
}

impl From<PredictArgs> for crate::evaluate::PredictCommand {
    fn from(a: PredictArgs) -> Self {
        crate::evaluate::PredictCommand {
            checkpoint: a.checkpoint,
            images: a.images,
            invert: a.invert,
            adapter: a.adapter.options(),
        }
    }
}
