//! The train command: data, adapter, trainer, per-epoch report, checkpoints, resume, Ctrl-C.
//!
//! Checkpoints go to DIR/last.safetensors after every epoch (and on Ctrl-C, mid-epoch) and
//! DIR/best.safetensors when the test accuracy improves. A resumed run rebuilds the trainer
//! from the checkpoint's seed, batch size and optimiser, so it continues bit for bit.

use crate::checkpoint::{Checkpoint, DatasetShape, RunPlan, class_names_for};
use crate::cli::readable;
use crate::data::{self, ClassCount, Dataset};
use crate::error::CommandError;
use crate::gpu;
use crate::gpu::AdapterOptions;
use crate::gpu::open_gpu;
use crate::interrupt;
use crate::kernels::Kernels;
use crate::layers::optim::{OptimizerConfig, OptimizerKind};
use crate::model::param_align_words;
use crate::model_spec::{self, ModelDef};
use crate::normalize::{Normalize, NormalizeChoice};
use crate::progress::{Progress, RunShape, Style};
use crate::rundir::{Prior, RunRecord, Saver, Session, planned_save_dir, prepare_save_dir};
use crate::schedule::Schedule;
use crate::train::{EpochMetrics, TrainConfig, Trainer};
use clap::ValueEnum;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The train command's settings, as the command line gives them (None: not given, so the
/// default or, when resuming, the checkpoint's).
#[derive(Debug, Clone, Default)]
pub struct TrainCommand {
    pub model: Option<String>,
    /// The model already read (from a --config file); takes precedence over `model`.
    pub model_def: Option<ModelDef>,
    pub epochs: Option<u32>,
    pub batch_size: Option<u32>,
    pub lr: Option<f64>,
    pub optimizer: Option<OptimizerKind>,
    pub momentum: Option<f64>,
    pub seed: Option<u64>,
    pub data: Option<PathBuf>,
    pub limit_train: Option<u64>,
    pub limit_test: Option<u64>,
    pub classes: Option<u32>,
    pub metrics: Option<PathBuf>,
    pub profile: bool,
    pub save: Option<PathBuf>,
    pub overwrite: bool,
    pub no_save: bool,
    pub resume: Option<PathBuf>,
    pub schedule: Option<Schedule>,
    pub warmup_epochs: Option<f64>,
    pub label_smoothing: Option<f64>,
    pub weight_decay: Option<f64>,
    pub nesterov: Option<bool>,
    pub clip_grad_norm: Option<f64>,
    pub augment: Option<crate::augment::Augment>,
    pub patience: Option<u32>,
    pub normalize: Option<NormalizeChoice>,
    /// The config file the settings came from (cli::Args::with_config merged it).
    pub config: Option<PathBuf>,
    pub print_config: bool,
    pub preview_batch: Option<PathBuf>,
    pub autotune: crate::autotune::TuneMode,
    /// `--f16-storage`: the f16-storage matmul joins the autotuner's candidates.
    pub f16_storage: bool,
    /// Fetch the dataset first when it is not found.
    pub download: bool,
    /// Plain progress lines even on a terminal.
    pub quiet: bool,
    /// Seconds between plain progress lines within an epoch.
    pub log_every: Option<f64>,
    pub adapter: AdapterOptions,
    pub list_adapters: bool,
}

/// Seconds between plain progress lines (no terminal, or --quiet) unless --log-every says.
pub const DEFAULT_LOG_EVERY: f64 = 30.0;

pub fn train_command(args: TrainCommand) -> Result<u8, CommandError> {
    if args.list_adapters {
        let lines = gpu::list_adapters(&args.adapter.clone())?;
        println!("adapters (* = chosen; GL adapters are chosen only with --backend gl):");
        for line in lines {
            println!("{line}");
        }
        return Ok(0);
    }
    let started = Instant::now();
    // early, so that a Ctrl-C during start-up says what it did
    if !args.no_save {
        interrupt::install()?;
    }
    if args.resume.is_none() && args.momentum.is_some() && args.optimizer != Some(OptimizerKind::Sgd) {
        return Err(from_config(
            &args,
            "the argument '--momentum <MOMENTUM>' needs '--optimizer sgd': Adam has no momentum setting",
        ));
    }
    let nesterov = args.nesterov == Some(true);
    if args.resume.is_none() && nesterov && args.optimizer != Some(OptimizerKind::Sgd) {
        return Err(from_config(
            &args,
            "the argument '--nesterov' needs '--optimizer sgd': Nesterov momentum is SGD's",
        ));
    }
    if args.resume.is_none() && nesterov && args.momentum == Some(0.0) {
        return Err(from_config(&args, "the argument '--nesterov' needs a --momentum above 0"));
    }
    if args.resume.is_none()
        && args.weight_decay.is_some()
        && args.optimizer.unwrap_or(OptimizerKind::Adam) == OptimizerKind::Adam
    {
        return Err(from_config(
            &args,
            "the argument '--weight-decay <X>' needs '--optimizer adamw' (decoupled decay) or '--optimizer sgd': Adam takes none",
        ));
    }
    if args.schedule == Some(Schedule::OneCycle) && args.warmup_epochs.is_some_and(|w| w > 0.0) {
        return Err(from_config(
            &args,
            "the argument '--warmup-epochs' does not apply to '--schedule onecycle', which has its own warm-up (30% of the steps)",
        ));
    }
    if let Some(path) = &args.preview_batch
        && !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        return Err(CommandError::usage_line(format!(
            "--preview-batch {}: the grid is written as PNG; give a name ending in .png",
            path.display()
        )));
    }
    // A model that does not parse is a usage error before anything is opened.
    let model = match args
        .model_def
        .clone()
        .map(Ok)
        .or_else(|| args.model.as_deref().map(model_spec::resolve))
        .transpose()
    {
        Ok(m) => m,
        Err(e) => return Err(CommandError::usage_line(e)),
    };
    // --print-config writes nothing, so the save directory and metrics file do not matter
    let save_dir = if args.print_config { None } else { planned_save_dir(&args)? };
    if !args.print_config {
        check_metrics_file(&args)?;
    }

    // A resumed run takes its defaults from the checkpoint, which needs the adapter to load.
    let mut opened = None;
    let mut resumed = None;
    if let Some(path) = &args.resume {
        // --print-config prints the config alone on stdout
        let gpu = open_gpu(&args.adapter.clone(), !args.print_config)?;
        let (ckpt, plan) = Checkpoint::load_with_plan(path, param_align_words(&gpu))?;
        // (--optimizer sgd on an Adam checkpoint is a clash, reported below.)
        if args.momentum.is_some()
            && ckpt.optimizer.kind != OptimizerKind::Sgd
            && args.optimizer != Some(OptimizerKind::Sgd)
        {
            return Err(CommandError::usage(format!(
                "the argument '--momentum <MOMENTUM>' needs '--optimizer sgd': {} trained with Adam, which has no momentum setting",
                path.display()
            )));
        }
        if args.epochs.is_none() && plan.epochs.is_none() {
            return Err(CommandError::usage(format!(
                "the argument '--epochs <EPOCHS>' is required to resume {}: the checkpoint predates recording the run's --epochs; pass the total number of epochs",
                path.display()
            )));
        }
        opened = Some(gpu);
        resumed = Some((path.clone(), ckpt, plan));
    }
    let (limit_train, limit_test, classes) = match &resumed {
        Some((_, ckpt, plan)) => (
            args.limit_train.map(|n| n as usize).or(plan.limit_train.flatten()),
            args.limit_test.map(|n| n as usize).or(plan.limit_test.flatten()),
            ClassCount::Checkpoint(ckpt.dataset.classes),
        ),
        None => (
            args.limit_train.map(|n| n as usize),
            args.limit_test.map(|n| n as usize),
            args.classes.map_or(ClassCount::FromLabels, |n| ClassCount::Flag(n as usize)),
        ),
    };
    // --patience, else the resumed run's
    let patience = args.patience.map(|p| p as usize).or(match &resumed {
        Some((_, _, plan)) => plan.patience.flatten(),
        None => None,
    });
    let cfg = match &resumed {
        Some((path, ckpt, plan)) => resumed_config(&args, model.as_ref(), path, ckpt, plan)?,
        None => fresh_config(&args, model.unwrap_or_default()),
    };

    if cfg.model.train.is_some() && args.config.is_none() {
        eprintln!(
            "note: --model takes only the file's [model]; its [train] settings are used with --config {}",
            args.model.as_deref().unwrap_or("FILE")
        );
    }
    if args.print_config {
        let pending = resumed.is_none() && args.normalize == Some(NormalizeChoice::Standard);
        print!("{}", crate::config::to_toml(&cfg, patience, pending));
        return Ok(0);
    }

    if args.download {
        crate::download::ensure_dataset(args.data.as_deref())?;
    }
    let dir = data::locate(args.data.as_deref())?;
    let mut dataset = data::load_with_classes(&dir, classes)?;
    for (flag, limit, count) in [
        ("--limit-train", limit_train, dataset.train.count),
        ("--limit-test", limit_test, dataset.test.count),
    ] {
        if let Some(n) = limit.filter(|&n| n > count) {
            eprintln!("note: {flag} {n} is more than the {count} samples there are; using all {count}");
        }
    }
    dataset.train = dataset.train.truncated(limit_train);
    dataset.test = dataset.test.truncated(limit_test);
    let mut cfg = cfg;
    if resumed.is_none() && args.normalize == Some(NormalizeChoice::Standard) {
        cfg.normalize = Normalize::standard_for(&dataset.train.pixels)?;
    }
    println!(
        "data: {} ({} train, {} test, {}x{} pixels, {} classes)",
        dir.display(),
        dataset.train.count,
        dataset.test.count,
        dataset.train.side,
        dataset.train.side,
        dataset.classes
    );
    let shape = dataset_shape(&dataset);
    // A model that does not fit the data (a pool on an odd side, no final fc) is a usage
    // error, found before the adapter opens. (A resumed model fits its checkpoint's data,
    // which is checked first, below.)
    let fit = || match model_spec::infer(&cfg.model.layers, 1, shape.side, shape.classes) {
        Ok(info) => Ok(info),
        Err(e) => Err(CommandError::usage_line(format!("--model {}: {e}", cfg.model.label()))),
    };
    let early_fit = if resumed.is_none() { Some(fit()?) } else { None };
    let gpu = match opened {
        Some(gpu) => gpu,
        None => open_gpu(&args.adapter.clone(), true)?,
    };
    let align = param_align_words(&gpu);
    if let Some((path, ckpt, _)) = &resumed {
        ckpt.check_dataset(path, &shape, true)?;
        if ckpt.position.epochs_done >= cfg.epochs {
            return Err(format!(
                "{}: already holds {} epochs; --epochs is the total, so pass more than {} to continue",
                path.display(),
                ckpt.position.epochs_done,
                ckpt.position.epochs_done
            )
            .into());
        }
    }
    let layer_info = match early_fit {
        Some(info) => info,
        None => fit()?,
    };
    // Build everything that can still refuse the run before touching the save directory
    // (--overwrite removes the old run's files) or truncating the metrics file.
    let kernels = Kernels::new(&gpu)?.with_tuner(crate::autotune::Tuner::for_run(
        &gpu,
        args.autotune,
        args.f16_storage,
    ));
    // a preview never evaluates: no evaluation network
    let trainer_cfg = TrainConfig { large_eval: args.preview_batch.is_none(), ..cfg.clone() };
    let mut trainer = Trainer::new(&gpu, &kernels, &dataset, trainer_cfg)?;
    if let Some(path) = &args.preview_batch {
        let batch = trainer.preview_batch()?;
        crate::preview::write_grid(path, &batch, cfg.batch_size, shape.side, cfg.normalize)?;
        println!(
            "wrote {}: the first training batch ({} images{}), as the network sees it",
            path.display(),
            cfg.batch_size.min(dataset.train.count),
            if cfg.augment.is_none() { String::new() } else { format!(", augment {}", cfg.augment) }
        );
        return Ok(0);
    }
    // the record of the run being continued, read before the save directory changes
    let prior = match (&resumed, &save_dir) {
        (Some((path, ckpt, _)), Some(_)) => Prior::load(&checkpoint_dir(path), ckpt.position.epochs_done),
        _ => Prior::default(),
    };
    let save_dir = save_dir.as_ref().map(prepare_save_dir).transpose()?;
    // --metrics naming the record's own metrics.jsonl: the record writes it
    let metrics_path = args
        .metrics
        .as_deref()
        .filter(|m| !save_dir.as_ref().is_some_and(|d| same_path(m, &d.join("metrics.jsonl"))));
    let mut metrics_file = open_metrics(metrics_path, resumed.is_some())?;
    if let Some((path, ckpt, _)) = &resumed {
        trainer.restore(ckpt)?;
        let p = &ckpt.position;
        println!(
            "resumed {}: {} epoch(s) done, {} batch(es) into the next, {} optimiser steps",
            path.display(),
            p.epochs_done,
            p.batches_done,
            p.updates
        );
    }
    let lr = cfg.optimizer.lr;
    print!(
        "{}",
        model_spec::summary(model_spec::Shape::Image { channels: 1, side: shape.side }, &layer_info)
    );
    println!(
        "model: {} ({}), {} parameters, batch {}{}, {:?} lr {}{}; start-up {:.2} s",
        cfg.model.name,
        cfg.model.text,
        trainer.model.network.layout.count(),
        cfg.batch_size,
        match trainer.eval_batch() {
            b if b != cfg.batch_size => format!(" (evaluation {b}, forward only)"),
            _ => String::new(),
        },
        cfg.optimizer.kind,
        readable(lr),
        recipe_note(&cfg),
        started.elapsed().as_secs_f64()
    );
    let tuned = kernels.tuner.measured_count();
    if tuned > 0 {
        println!(
            "autotune: {tuned} kernel shape(s) timed in {:.2} s, cached for the next start-up (--autotune off{} skips this)",
            kernels.tuner.seconds(),
            if kernels.tuner.f16_storage { ", without --f16-storage," } else { "" }
        );
    }
    if kernels.tuner.f16_storage {
        // where it is chosen, results carry f16 rounding: say where
        let products = kernels.tuner.records().into_iter().filter(|r| r.key.starts_with("matmul "));
        let (chosen, all) = products.fold((0, 0), |(c, n), r| {
            (c + (r.choice == crate::layers::dense::MatmulVariant::TiledF16 as u32) as usize, n + 1)
        });
        println!(
            "f16 storage: {chosen} of the model's {all} matrix products chose it{}",
            if chosen == 0 { " (all stay f32)" } else { " (`gpu-train bench --f16-storage` shows which)" }
        );
    }
    match &save_dir {
        Some(d) => println!("checkpoints: {}", d.display()),
        None => println!("checkpoints: none (--no-save)"),
    }
    let started_utc = crate::rundir::utc_readable();
    let mut record = match &save_dir {
        Some(d) => {
            let session = Session {
                adapter: gpu.describe(),
                data: dir.canonicalize().unwrap_or_else(|_| dir.clone()),
                started_utc,
                from_epoch: trainer.position.epochs_done,
                from_batch: trainer.position.batches_done,
            };
            let name =
                d.canonicalize().ok().and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()));
            let title = format!("{} ({})", cfg.model.name, name.unwrap_or_else(|| d.display().to_string()));
            let settings = crate::config::to_toml(&cfg, patience, false);
            Some(RunRecord::start(d, &settings, title, &session, prior)?)
        }
        None => None,
    };
    let test_batches = dataset.test.count.div_ceil(cfg.batch_size);
    trainer.set_observer(Box::new(Progress::new(
        Style::choose(args.quiet, args.log_every.unwrap_or(DEFAULT_LOG_EVERY)),
        RunShape {
            epochs: cfg.epochs,
            first_epoch: trainer.position.epochs_done + 1,
            train_batches: dataset.train.count.div_ceil(cfg.batch_size),
            test_batches,
            eval_steps: trainer.eval_batches(dataset.test.count).len(),
            batch_size: cfg.batch_size,
            adapter: gpu.info.name.clone(),
        },
    )));
    let saver = Saver {
        dir: save_dir,
        shape,
        class_names: class_names_for(&dir, dataset.classes),
        align,
        plan: RunPlan {
            epochs: Some(cfg.epochs),
            limit_train: Some(limit_train),
            limit_test: Some(limit_test),
            patience: Some(patience),
            config: Some(crate::config::to_toml(&cfg, patience, false)),
        },
        resume_flags: resume_flags(&args),
    };
    interrupt::training_started();
    println!("epoch  train_loss  train_acc  test_loss  test_acc   seconds  train_img/s");
    let mut history: Vec<EpochMetrics> = Vec::new();
    let first_epoch = trainer.position.epochs_done + 1;
    for epoch in first_epoch..=cfg.epochs {
        let outcome =
            trainer.train_epoch_until(epoch, &interrupt::requested).map_err(|e| saver.keeping(e))?;
        let Some(m) = outcome else {
            let p = &trainer.position;
            println!("stopped in epoch {epoch} after {} of its batches", p.batches_done);
            saver.save_last(&trainer, epoch)?;
            return Ok(interrupt::EXIT_CODE);
        };
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
        if !m.test_loss.is_finite() {
            return Err(saver
                .keeping(format!(
                    "training diverged in epoch {epoch}: the test loss is {}; try a lower --lr (now {})",
                    m.test_loss,
                    readable(lr)
                ))
                .into());
        }
        if let (Some(file), Some(path)) = (metrics_file.as_mut(), metrics_path) {
            writeln!(file, "{}", m.json())
                .and_then(|_| file.flush())
                .map_err(|e| format!("{}: cannot write metrics: {e}", path.display()))?;
        }
        // the record never stops a run: the checkpoint below still gets written
        if let Some(Err(e)) = record.as_mut().map(|r| r.add(m)) {
            eprintln!("warning: {e} (the run's record lacks epoch {epoch}; training goes on)");
        }
        let improved = trainer.position.best.is_none_or(|(_, acc)| m.test_acc > acc);
        if improved {
            trainer.position.best = Some((epoch, m.test_acc));
        }
        saver.save_epoch(&trainer, epoch, improved)?;
        history.push(m);
        if let (Some(p), Some((best_epoch, best_acc))) = (patience, trainer.position.best)
            && epoch - best_epoch >= p
            && epoch < cfg.epochs
        {
            println!(
                "stopping early: no gain in test accuracy for {p} epoch(s) (best {:.2}% in epoch {best_epoch}; --patience {p})",
                100.0 * best_acc
            );
            break;
        }
        if interrupt::requested() && epoch < cfg.epochs {
            saver.announce();
            return Ok(interrupt::EXIT_CODE);
        }
    }
    if interrupt::requested() {
        println!("(interrupted after the last epoch's training: the run finished and is saved)");
    }
    if args.profile {
        let step_ms = history.last().map_or(0.0, |m| 1e3 * cfg.batch_size as f64 / m.train_images_per_sec);
        match crate::profile::profile(&gpu, &trainer.model.train_step, 3)? {
            Some(p) => println!("training step kernels:\n{}", crate::profile::format_table(&p, step_ms)),
            None => println!("this adapter has no timestamp queries: no per-kernel profile"),
        }
    }
    if let (Some(last), Some((best_epoch, best_acc))) = (history.last(), trainer.position.best) {
        println!(
            "done: final test accuracy {:.2}%, best {:.2}% (epoch {best_epoch}), total {:.1} s",
            100.0 * last.test_acc,
            100.0 * best_acc,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

/// A settings error, naming the config file when the settings came partly from one.
fn from_config(args: &TrainCommand, message: &str) -> CommandError {
    match &args.config {
        Some(file) => CommandError::usage_line(format!(
            "{message} (settings from {} and the command line)",
            file.display()
        )),
        None => CommandError::usage(message),
    }
}

/// The schedule, warm-up and label smoothing where they are not the defaults.
fn recipe_note(cfg: &TrainConfig) -> String {
    let mut parts = Vec::new();
    if cfg.schedule != Schedule::Constant {
        parts.push(format!("{} schedule", cfg.schedule));
    }
    if cfg.warmup_epochs > 0.0 {
        parts.push(format!("warm-up {} epoch(s)", readable(cfg.warmup_epochs)));
    }
    if cfg.optimizer.weight_decay > 0.0 {
        parts.push(format!("weight decay {}", readable(cfg.optimizer.weight_decay)));
    }
    if cfg.optimizer.nesterov {
        parts.push("Nesterov".to_string());
    }
    if cfg.optimizer.clip_grad_norm > 0.0 {
        parts.push(format!("gradient norm clipped at {}", readable(cfg.optimizer.clip_grad_norm)));
    }
    if let Normalize::Standard { mean, std } = cfg.normalize {
        parts.push(format!("inputs standardised (mean {mean:.4}, std {std:.4})"));
    }
    if !cfg.augment.is_none() {
        parts.push(format!("augment {}", cfg.augment));
    }
    if cfg.label_smoothing > 0.0 {
        parts.push(format!("label smoothing {}", readable(cfg.label_smoothing)));
    }
    parts.iter().map(|p| format!(", {p}")).collect()
}

fn dataset_shape(d: &Dataset) -> DatasetShape {
    DatasetShape { side: d.train.side, classes: d.classes, train: d.train.count, test: d.test.count }
}

fn fresh_config(args: &TrainCommand, model: ModelDef) -> TrainConfig {
    TrainConfig {
        model,
        epochs: args.epochs.unwrap_or(20) as usize,
        batch_size: args.batch_size.unwrap_or(128) as usize,
        seed: args.seed.unwrap_or(0),
        optimizer: {
            let kind = args.optimizer.unwrap_or(OptimizerKind::Adam);
            OptimizerConfig {
                kind,
                lr: args.lr.unwrap_or(1e-3),
                momentum: args.momentum.unwrap_or(0.9),
                // PyTorch's AdamW default; SGD and Adam take none unless given
                weight_decay: args.weight_decay.unwrap_or(if kind == OptimizerKind::AdamW {
                    0.01
                } else {
                    0.0
                }),
                nesterov: args.nesterov == Some(true),
                clip_grad_norm: args.clip_grad_norm.unwrap_or(0.0),
                ..OptimizerConfig::default()
            }
        },
        schedule: args.schedule.clone().unwrap_or(Schedule::Constant),
        warmup_epochs: args.warmup_epochs.unwrap_or(0.0),
        label_smoothing: args.label_smoothing.unwrap_or(0.0),
        augment: args.augment.unwrap_or_default(),
        // set from the training data once it is loaded (train_command)
        normalize: Normalize::Unit,
        large_eval: true,
    }
}

/// The checkpoint's settings; a flag given explicitly must agree with them, since changing
/// any would make the resumed run differ from an unbroken one. --epochs defaults to the
/// run's target (the caller has checked that one of the two exists).
fn resumed_config(
    args: &TrainCommand,
    model: Option<&ModelDef>,
    path: &Path,
    ckpt: &Checkpoint,
    plan: &RunPlan,
) -> Result<TrainConfig, String> {
    let o = &ckpt.optimizer;
    let mut clashes = Vec::new();
    let mut clash = |flag: &str, given: Option<String>, saved: String| {
        if let Some(given) = given
            && given != saved
        {
            clashes.push(format!("{flag} {given} (the checkpoint has {saved})"));
        }
    };
    clash("--batch-size", args.batch_size.map(|v| v.to_string()), ckpt.batch_size.to_string());
    clash("--seed", args.seed.map(|v| v.to_string()), ckpt.seed.to_string());
    clash("--lr", args.lr.map(readable), readable(o.lr));
    let kind = |k: OptimizerKind| format!("{k:?}").to_lowercase();
    clash("--optimizer", args.optimizer.map(kind), kind(o.kind));
    if o.kind == OptimizerKind::Sgd {
        clash("--momentum", args.momentum.map(readable), readable(o.momentum));
    }
    clash("--weight-decay", args.weight_decay.map(readable), readable(o.weight_decay));
    clash(
        "--clip-grad-norm",
        args.clip_grad_norm.map(readable),
        if o.clip_grad_norm > 0.0 { readable(o.clip_grad_norm) } else { "none".to_string() },
    );
    clash(
        "--nesterov",
        args.nesterov.map(|n| if n { "on" } else { "off" }.to_string()),
        if o.nesterov { "on" } else { "off" }.to_string(),
    );
    clash("--classes", args.classes.map(|v| v.to_string()), ckpt.dataset.classes.to_string());
    clash("--schedule", args.schedule.as_ref().map(|s| s.to_string()), ckpt.schedule.to_string());
    clash("--warmup-epochs", args.warmup_epochs.map(readable), readable(ckpt.warmup_epochs));
    clash("--label-smoothing", args.label_smoothing.map(readable), readable(ckpt.label_smoothing));
    clash("--augment", args.augment.map(|a| a.to_string()), ckpt.augment.to_string());
    let choice = |n: &Normalize| if matches!(n, Normalize::Unit) { "unit" } else { "standard" }.to_string();
    let given =
        args.normalize.map(|c| if c == NormalizeChoice::Unit { "unit" } else { "standard" }.to_string());
    clash("--normalize", given, choice(&ckpt.normalize));
    if let Some(m) = model
        && m.layers != ckpt.model.layers
    {
        clashes.push(format!("--model {} (the checkpoint has {})", m.label(), ckpt.model.label()));
    }
    if !clashes.is_empty() {
        return Err(format!(
            "{}: cannot resume with {}; leave these flags out to continue with the checkpoint's settings",
            path.display(),
            clashes.join(", ")
        ));
    }
    Ok(TrainConfig {
        model: ckpt.model.clone(),
        epochs: args.epochs.map(|e| e as usize).or(plan.epochs).unwrap_or(0),
        batch_size: ckpt.batch_size,
        seed: ckpt.seed,
        optimizer: *o,
        schedule: ckpt.schedule.clone(),
        warmup_epochs: ckpt.warmup_epochs,
        label_smoothing: ckpt.label_smoothing,
        augment: ckpt.augment,
        normalize: ckpt.normalize,
        large_eval: true,
    })
}

/// The directory a checkpoint file is in ("." for a bare file name).
pub fn checkpoint_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether two paths name the same file, whether or not it exists yet.
fn same_path(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            dir.canonicalize().map(|d| d.join(name)).unwrap_or_else(|_| p.to_path_buf())
        }
        _ => p.to_path_buf(),
    };
    canonical(a) == canonical(b)
}

/// The flags a resume needs besides --resume: where the data and metrics are, and which
/// adapter ran (a resumed run is bit-identical only on the same adapter). Everything else
/// comes from the checkpoint.
fn resume_flags(args: &TrainCommand) -> Vec<String> {
    let mut flags = Vec::new();
    let mut push = |flag: &str, value: String| {
        flags.push(flag.to_string());
        flags.push(value);
    };
    if let Some(d) = &args.data {
        push("--data", d.to_string_lossy().into_owned());
    }
    if let Some(m) = &args.metrics {
        push("--metrics", m.to_string_lossy().into_owned());
    }
    if let Some(b) = args.adapter.backend.and_then(|b| b.to_possible_value()) {
        push("--backend", b.get_name().to_string());
    }
    if let Some(a) = &args.adapter.name_filter {
        push("--adapter", a.clone());
    }
    // the f16-storage candidate changes results where it is chosen: a resume without it
    // would continue in f32
    if args.f16_storage {
        flags.push("--f16-storage".to_string());
    }
    flags
}

/// `s` as one word for a POSIX shell: unchanged when it is plain, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-+=.,:/@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A fresh run would truncate --metrics FILE: refuse one that holds lines unless
/// --overwrite (a resume appends to it).
fn check_metrics_file(args: &TrainCommand) -> Result<(), String> {
    let Some(path) = &args.metrics else { return Ok(()) };
    if path.is_dir() {
        return Err(format!("{}: --metrics needs a file, and this is a directory", path.display()));
    }
    let holds_lines = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    if args.resume.is_none() && holds_lines && !args.overwrite {
        return Err(format!(
            "{}: already holds metrics; choose another --metrics FILE, --resume the run it belongs to \
             (which appends), or pass --overwrite to replace it",
            path.display()
        ));
    }
    Ok(())
}

fn open_metrics(path: Option<&Path>, append: bool) -> Result<Option<std::fs::File>, String> {
    let Some(path) = path else { return Ok(None) };
    let file = if append {
        std::fs::OpenOptions::new().create(true).append(true).open(path)
    } else {
        std::fs::File::create(path)
    };
    file.map(Some).map_err(|e| format!("{}: cannot open metrics file: {e}", path.display()))
}
