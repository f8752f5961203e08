//! The eval and predict commands: a checkpoint's model run forward on the GPU over the
//! test set or over PNG files, with the logits (N, classes) read back for the report.

use crate::checkpoint::{Checkpoint, DatasetShape};
use crate::data::{self, Dataset, Split};
use crate::gpu::{Gpu, open_gpu};
use crate::kernels::Kernels;
use crate::model::param_align_words;
use crate::train::{TrainConfig, Trainer};
use std::path::{Path, PathBuf};

/// Logits of every sample of `split` under the checkpoint's weights, and the GPU's
/// (mean loss, accuracy), `batch` images per step: by default the largest batch that fits
/// (`model::eval_batch_for`). The numbers are the same at every batch.
pub fn logits_of(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    split: &Split,
    batch: Option<usize>,
) -> Result<(Vec<f32>, (f64, f64)), String> {
    // the choices training made for this adapter where the shapes match; nothing timed
    let kernels = Kernels::new(gpu)?.with_tuner(crate::autotune::Tuner::cached_only(gpu));
    // The trainer wants a training split; the evaluated one serves, as nothing trains.
    let dataset = Dataset {
        dir: PathBuf::new(),
        train: split.clone(),
        test: split.clone(),
        classes: ckpt.dataset.classes,
    };
    let used = match batch {
        // a batch beyond the images to evaluate would only hold padding
        Some(batch) => batch.min(split.count).max(1),
        None => largest_batch(gpu, &kernels, ckpt, split)?,
    };
    let cfg = TrainConfig {
        normalize: ckpt.normalize,
        ..TrainConfig::basic(ckpt.model.clone(), 0, used, ckpt.seed, ckpt.optimizer)
    };
    let mut trainer = Trainer::for_eval(gpu, &kernels, &dataset, cfg).map_err(|e| match batch {
        Some(batch) if used < batch => {
            format!("--batch-size {batch} (cut to the {} images evaluated): {e}", split.count)
        }
        _ => e,
    })?;
    trainer.set_params(&ckpt.params, &ckpt.state)?;
    trainer.test_logits()
}

/// The largest batch up to EVAL_BATCH_MAX (and the images in `split`) whose activations
/// fit the adapter's binding limit and the evaluation memory budget; 1 if none does, so
/// that building it names what is too large.
fn largest_batch(gpu: &Gpu, kernels: &Kernels, ckpt: &Checkpoint, split: &Split) -> Result<usize, String> {
    let nodes = crate::network::plan(&ckpt.model.layers, 1, split.side, ckpt.dataset.classes)?;
    Ok(crate::model::eval_batch_on(gpu, kernels, &nodes, 0, split.count.max(1))?.unwrap_or(1))
}

/// Softmax probabilities in f64 from one sample's logits.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The first index of the largest logit, as the GPU's metric picks it.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (k, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = k;
        }
    }
    best
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    pub loss: f64,
    pub accuracy: f64,
    /// confusion[true class][predicted class]
    pub confusion: Vec<Vec<u64>>,
}

impl EvalReport {
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let n: u64 = row.iter().sum();
                (n > 0).then(|| row[c] as f64 / n as f64)
            })
            .collect()
    }

    pub fn format(&self, names: &[String]) -> String {
        let mut out =
            format!("loss {:.4}, accuracy {:.2}%\n\nper-class accuracy:\n", self.loss, 100.0 * self.accuracy);
        let width = names.iter().map(|n| n.len()).max().unwrap_or(1).max(5);
        for (c, acc) in self.per_class_accuracy().iter().enumerate() {
            let n: u64 = self.confusion[c].iter().sum();
            let acc = acc.map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
            out += &format!("  {c:>3} {:<width$}  {acc:>7}  of {n}\n", names[c]);
        }
        out += "\nconfusion matrix (rows: true class, columns: predicted class):\n";
        let cell = self.confusion.iter().flatten().max().map_or(1, |m| m.to_string().len()).max(3);
        out += &format!("  {:>3} {:<width$} ", "", "");
        for c in 0..self.confusion.len() {
            out += &format!(" {c:>cell$}");
        }
        out += "\n";
        for (c, row) in self.confusion.iter().enumerate() {
            out += &format!("  {c:>3} {:<width$} ", names[c]);
            for v in row {
                out += &format!(" {v:>cell$}");
            }
            out += "\n";
        }
        out
    }
}

/// Evaluates the checkpoint on `split`.
pub fn evaluate_split(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    split: &Split,
    batch: Option<usize>,
) -> Result<EvalReport, String> {
    let classes = ckpt.dataset.classes;
    let (logits, (loss, accuracy)) = logits_of(gpu, ckpt, split, batch)?;
    let mut confusion = vec![vec![0u64; classes]; classes];
    for (row, &label) in logits.chunks_exact(classes).zip(&split.labels) {
        confusion[label as usize][argmax(row)] += 1;
    }
    Ok(EvalReport { loss, accuracy, confusion })
}

/// The eval command's settings.
#[derive(Debug, Clone)]
pub struct EvalCommand {
    pub checkpoint: PathBuf,
    pub data: Option<PathBuf>,
    pub limit_test: Option<u64>,
    /// None: the largest batch that fits
    pub batch_size: Option<u32>,
    pub adapter: crate::gpu::AdapterOptions,
}

/// The predict command's settings.
#[derive(Debug, Clone)]
pub struct PredictCommand {
    pub checkpoint: PathBuf,
    pub images: Vec<PathBuf>,
    pub invert: bool,
    pub adapter: crate::gpu::AdapterOptions,
}

pub fn eval_command(args: &EvalCommand) -> Result<(), String> {
    // A checkpoint that cannot be read fails before the adapter opens (and prints its lines).
    std::fs::File::open(&args.checkpoint)
        .map_err(|e| format!("{}: cannot read checkpoint: {e}", args.checkpoint.display()))?;
    // The checkpoint first: its class count applies to the data (it may have been trained
    // with --classes, beyond the largest label).
    let gpu = open_gpu(&args.adapter.clone(), true)?;
    let ckpt = Checkpoint::load(&args.checkpoint, param_align_words(&gpu))?;
    let dir = data::locate_test(args.data.as_deref())?;
    let test = data::load_test(&dir, ckpt.dataset.classes)?;
    if let Some(n) = args.limit_test.filter(|&n| n > test.count as u64) {
        eprintln!(
            "note: --limit-test {n} is more than the {} samples there are; using all {}",
            test.count, test.count
        );
    }
    let test = test.truncated(args.limit_test.map(|n| n as usize));
    // eval reads only the test split: the training count is the checkpoint's own
    let shape = DatasetShape {
        side: test.side,
        classes: ckpt.dataset.classes,
        train: ckpt.dataset.train,
        test: test.count,
    };
    ckpt.check_dataset(&args.checkpoint, &shape, false)?;
    println!(
        "checkpoint: {} (epoch {}{})",
        args.checkpoint.display(),
        ckpt.position.epochs_done,
        match ckpt.position.batches_done {
            0 => String::new(),
            b => format!(" and {b} batches"),
        }
    );
    println!("test set: {} ({} images)", dir.display(), test.count);
    let report = evaluate_split(&gpu, &ckpt, &test, args.batch_size.map(|b| b as usize))?;
    print!("{}", report.format(&ckpt.class_names));
    Ok(())
}

/// The top `k` (class, probability) pairs, most likely first.
pub fn top_classes(logits: &[f32], k: usize) -> Vec<(usize, f64)> {
    let mut ranked: Vec<(usize, f64)> = softmax(logits).into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

/// Prints each image's top 3; returns exit code 1 if any image could not be read.
pub fn predict_command(args: &PredictCommand) -> Result<u8, String> {
    let gpu = open_gpu(&args.adapter.clone(), false)?;
    let ckpt = Checkpoint::load(&args.checkpoint, param_align_words(&gpu))?;
    let side = ckpt.dataset.side;
    let mut ok: Vec<&Path> = Vec::new();
    let mut pixels = Vec::new();
    let mut failed = 0;
    for path in &args.images {
        match crate::image::load_for_model(path, side, args.invert) {
            Ok(bytes) => {
                ok.push(path);
                pixels.extend(bytes);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if !ok.is_empty() {
        let split = Split { count: ok.len(), side, pixels, labels: vec![0; ok.len()] };
        let (logits, _) = logits_of(&gpu, &ckpt, &split, None)?;
        let classes = ckpt.dataset.classes;
        for (path, row) in ok.iter().zip(logits.chunks_exact(classes)) {
            let top: Vec<String> = top_classes(row, 3)
                .iter()
                .map(|&(c, p)| format!("{} {:.1}%", ckpt.class_names[c], 100.0 * p))
                .collect();
            println!("{}: {}", path.display(), top.join(", "));
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
