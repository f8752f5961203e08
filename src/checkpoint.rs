//! Checkpoints: one safetensors file holding a run's weights, optimiser state and position.
//!
//! Tensors, f32 little-endian, named as the equivalent PyTorch nn.Sequential names its
//! state_dict (network::torch_indices), so that `load_state_dict` takes them:
//! - `<i>.weight`, `<i>.bias` of each conv (CO, CI, K, K), fc (O, I) over NCHW-flattened
//!   inputs and batch norm (gamma, beta); batch norm's `<i>.running_mean`, `<i>.running_var`
//!   and `<i>.num_batches_tracked` (an i64 scalar: the optimiser steps);
//! - Adam: `optimizer.exp_avg.<tensor>` and `optimizer.exp_avg_sq.<tensor>`; SGD:
//!   `optimizer.momentum_buffer.<tensor>`;
//! - a run stopped inside an epoch: `train_metrics.partial` (samples done, 2), each trained
//!   sample's loss and correctness (0 or 1) in the epoch's order, so the resumed epoch
//!   reports what an unbroken one would.
//!
//! The metadata (string to string) carries the model (`model`: its name; `model_layers`:
//! the layer string the network is rebuilt from), shapes, position (epochs done,
//! batches done, optimiser steps), seed, batch size, optimiser hyper-parameters, the
//! dataset's shape and class names, and the best test accuracy so far. Checkpoints written
//! by training add the run's plan (`RunPlan`: target epochs, sample limits), which a plain
//! `--resume` continues with.
//!
//! Format version 1 (the release that trained ref-cnn only) named ref-cnn's tensors
//! `conv1`, `conv2`, `fc1`, `fc2`; such files still load, as ref-cnn.

use crate::layers::optim::{OptimizerConfig, OptimizerKind};
use crate::model::ModelShape;
use crate::model_spec::ModelDef;
use crate::network::{Node, Op, ParamLayout, plan};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

const FORMAT: &str = "gpu-train checkpoint";
const VERSION: &str = "2";
/// ref-cnn's tensor names in version 1 files, and the nn.Sequential names they now have.
const LEGACY_NAMES: [(&str, &str); 4] = [("conv1.", "0."), ("conv2.", "3."), ("fc1.", "7."), ("fc2.", "9.")];
/// Larger images or class counts are refused before anything is allocated.
const MAX_SIDE: usize = 256;
const MAX_CLASSES: usize = 256;

pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// What a checkpoint requires of the data it is used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetShape {
    pub side: usize,
    pub classes: usize,
    pub train: usize,
    pub test: usize,
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub epochs_done: usize,
    /// Training batches of the next epoch already run (0 at an epoch boundary).
    pub batches_done: usize,
    /// Optimiser steps so far (Adam's t).
    pub updates: u64,
    /// (epoch, test accuracy) of the best epoch so far.
    pub best: Option<(usize, f64)>,
    /// Loss and correctness (0 or 1) of each sample of the epoch in progress trained so
    /// far, in the epoch's order.
    pub partial_metrics: Vec<f32>,
}

struct TensorSlot {
    name: String,
    dims: Vec<usize>,
    offset: usize,
    len: usize,
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub model: ModelDef,
    pub dataset: DatasetShape,
    pub class_names: Vec<String>,
    pub batch_size: usize,
    pub seed: u64,
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule and warm-up (checkpoints without them: constant, none).
    pub schedule: crate::schedule::Schedule,
    pub warmup_epochs: f64,
    /// The training loss's label smoothing (checkpoints without it: 0).
    pub label_smoothing: f64,
    /// Training-time augmentation (checkpoints without it: none).
    pub augment: crate::augment::Augment,
    /// Input normalisation (checkpoints without it: unit).
    pub normalize: crate::normalize::Normalize,
    pub position: Position,
    /// Parameters and optimiser state in the GPU's flat layout (see model::ParamLayout for
    /// a batch of `batch_size`); `m`/`v` are Adam's moments or SGD's velocity (v unused).
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Batch norm's running statistics by name (`3.running_mean`), in model order.
    pub state: Vec<(String, Vec<f32>)>,
}

/// The running statistics of each batch-norm node: (name, values).
pub fn state_slots(nodes: &[Node]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for n in nodes {
        if matches!(n.op, Op::BatchNorm { .. }) {
            let c = crate::network::channels_of(n.input);
            out.push((format!("{}.running_mean", n.torch_index), c));
            out.push((format!("{}.running_var", n.torch_index), c));
        }
    }
    out
}

impl Checkpoint {
    pub fn shape(&self) -> ModelShape {
        ModelShape { side: self.dataset.side, classes: self.dataset.classes, batch: self.batch_size }
    }

    /// The model's nodes for the checkpoint's data.
    pub fn nodes(&self) -> Result<Vec<Node>, String> {
        plan(&self.model.layers, 1, self.dataset.side, self.dataset.classes)
    }

    /// Each exported tensor's place in the flat layout, in parameter order.
    fn tensor_slots(&self, align_words: usize) -> Result<(ParamLayout, Vec<TensorSlot>), String> {
        let layout = ParamLayout::new(&self.nodes()?, align_words);
        let slots = layout
            .tensors
            .iter()
            .filter(|t| t.exported)
            .map(|t| TensorSlot {
                name: t.name.clone(),
                dims: t.dims.clone(),
                offset: t.offset,
                len: t.len(),
            })
            .collect();
        Ok((layout, slots))
    }

    fn state_prefixes(&self) -> Vec<&'static str> {
        match self.optimizer.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => vec!["optimizer.exp_avg.", "optimizer.exp_avg_sq."],
            OptimizerKind::Sgd => vec!["optimizer.momentum_buffer."],
        }
    }

    /// The safetensors bytes. `align_words` is the flat layout's block alignment.
    pub fn to_bytes(&self, align_words: usize) -> Result<Vec<u8>, String> {
        self.to_bytes_with(align_words, None)
    }

    /// The safetensors bytes, with the run's plan (what `--resume` defaults to) in the
    /// metadata when given.
    pub fn to_bytes_with(&self, align_words: usize, plan: Option<&RunPlan>) -> Result<Vec<u8>, String> {
        let (_, slots) = self.tensor_slots(align_words)?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = Vec::new();
        let sources: Vec<(&str, &Vec<f32>)> = std::iter::once(("", &self.params))
            .chain(self.state_prefixes().into_iter().zip([&self.m, &self.v]))
            .collect();
        for (prefix, flat) in sources {
            for t in &slots {
                let values =
                    flat.get(t.offset..t.offset + t.len).ok_or("checkpoint: parameter buffer too short")?;
                tensors.push((format!("{prefix}{}", t.name), t.dims.clone(), le_bytes(values), Dtype::F32));
            }
        }
        for (name, values) in &self.state {
            tensors.push((name.clone(), vec![values.len()], le_bytes(values), Dtype::F32));
            if let Some(layer) = name.strip_suffix(".running_var") {
                // PyTorch counts the batches its statistics saw: one per optimiser step
                let count = self.position.updates as i64;
                tensors.push((
                    format!("{layer}.num_batches_tracked"),
                    vec![],
                    count.to_le_bytes().to_vec(),
                    Dtype::I64,
                ));
            }
        }
        let partial = &self.position.partial_metrics;
        if !partial.is_empty() {
            tensors.push((
                "train_metrics.partial".into(),
                vec![partial.len() / 2, 2],
                le_bytes(partial),
                Dtype::F32,
            ));
        }
        let views = tensors
            .iter()
            .map(|(name, dims, bytes, dtype)| {
                TensorView::new(*dtype, dims.clone(), bytes).map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("checkpoint: {e}"))?;
        let mut metadata = self.metadata();
        if let Some(plan) = plan {
            plan.write(&mut metadata);
        }
        safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| format!("checkpoint: {e}"))
    }

    fn metadata(&self) -> HashMap<String, String> {
        let o = &self.optimizer;
        let p = &self.position;
        let shapes: BTreeMap<String, Vec<usize>> = self
            .nodes()
            .map(|nodes| ParamLayout::new(&nodes, 4).tensors)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.exported)
            .map(|t| (t.name, t.dims))
            .collect();
        let mut m: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("format_version", VERSION.to_string()),
            ("model", self.model.name.clone()),
            ("model_layers", self.model.text.clone()),
            ("shapes", serde_json::to_string(&shapes).unwrap_or_default()),
            ("epoch", p.epochs_done.to_string()),
            ("batches_done", p.batches_done.to_string()),
            ("step", p.updates.to_string()),
            ("seed", self.seed.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("optimizer", format!("{:?}", o.kind).to_lowercase()),
            ("lr", o.lr.to_string()),
            ("beta1", o.beta1.to_string()),
            ("beta2", o.beta2.to_string()),
            ("eps", o.eps.to_string()),
            ("momentum", o.momentum.to_string()),
            ("weight_decay", o.weight_decay.to_string()),
            ("nesterov", o.nesterov.to_string()),
            ("clip_grad_norm", o.clip_grad_norm.to_string()),
            ("schedule", self.schedule.to_string()),
            ("warmup_epochs", self.warmup_epochs.to_string()),
            ("label_smoothing", self.label_smoothing.to_string()),
            ("augment", self.augment.to_string()),
            ("normalize", self.normalize.to_string()),
            ("dataset_side", self.dataset.side.to_string()),
            ("dataset_classes", self.dataset.classes.to_string()),
            ("dataset_train", self.dataset.train.to_string()),
            ("dataset_test", self.dataset.test.to_string()),
            ("class_names", serde_json::to_string(&self.class_names).unwrap_or_default()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some((epoch, acc)) = p.best {
            m.insert("best_epoch".into(), epoch.to_string());
            m.insert("best_test_acc".into(), acc.to_string());
        }
        m
    }

    /// Parses and validates a checkpoint; `origin` names it in errors.
    pub fn from_bytes(origin: &Path, bytes: &[u8], align_words: usize) -> Result<Checkpoint, String> {
        let fail = |problem: String| format!("{}: {problem}", origin.display());
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
            fail(format!("not a readable safetensors file ({e}); is it truncated or corrupt?"))
        })?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(fail("not a gpu-train checkpoint (no 'format' metadata)".into()));
        }
        let legacy = match meta.get("format_version").map(String::as_str) {
            Some(VERSION) => false,
            Some("1") => true,
            other => {
                return Err(fail(format!(
                    "checkpoint format version {other:?} is not supported (this build reads 1 and {VERSION})"
                )));
            }
        };
        let text = |key: &str| meta.get(key).ok_or_else(|| fail(format!("metadata lacks '{key}'")));
        let number = |key: &str| -> Result<u64, String> {
            text(key)?.parse::<u64>().map_err(|_| fail(format!("metadata '{key}' is not a whole number")))
        };
        let real = |key: &str| -> Result<f64, String> {
            match text(key)?.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(fail(format!("metadata '{key}' is not a finite number"))),
            }
        };
        let name = text("model")?;
        let model = if legacy {
            if name != "ref-cnn" {
                return Err(fail(format!("model '{name}' is not one a version 1 checkpoint can hold")));
            }
            crate::model_spec::resolve_text(
                "ref-cnn",
                crate::model_spec::preset("ref-cnn").unwrap_or_default(),
            )
        } else {
            crate::model_spec::resolve_text(name, text("model_layers")?)
        }
        .map_err(|e| fail(format!("metadata 'model_layers': {e}")))?;
        let side = number("dataset_side")? as usize;
        let classes = number("dataset_classes")? as usize;
        if side == 0 || side > MAX_SIDE {
            return Err(fail(format!("image side {side} is invalid (1 to {MAX_SIDE})")));
        }
        if !(2..=MAX_CLASSES).contains(&classes) {
            return Err(fail(format!("class count {classes} is invalid (2 to {MAX_CLASSES})")));
        }
        let batch_size = number("batch_size")? as usize;
        if !(1..=65_536).contains(&batch_size) {
            return Err(fail(format!("batch size {batch_size} is invalid")));
        }
        let kind = match text("optimizer")?.as_str() {
            "adam" => OptimizerKind::Adam,
            "adamw" => OptimizerKind::AdamW,
            "sgd" => OptimizerKind::Sgd,
            other => return Err(fail(format!("optimizer '{other}' is unknown"))),
        };
        let optimizer = OptimizerConfig {
            kind,
            lr: real("lr")?,
            beta1: real("beta1")?,
            beta2: real("beta2")?,
            eps: real("eps")?,
            momentum: real("momentum")?,
            // checkpoints written before these existed had neither
            weight_decay: if meta.contains_key("weight_decay") {
                real("weight_decay")?.max(0.0)
            } else {
                0.0
            },
            nesterov: match meta.get("nesterov").map(String::as_str) {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(fail(format!("metadata 'nesterov' is '{other}', not true or false")));
                }
            },
            clip_grad_norm: match meta.get("clip_grad_norm") {
                None => 0.0,
                Some(_) => match real("clip_grad_norm")? {
                    v if v >= 0.0 => v,
                    v => return Err(fail(format!("metadata 'clip_grad_norm' {v} is negative"))),
                },
            },
        };
        let class_names: Vec<String> = serde_json::from_str(text("class_names")?)
            .map_err(|_| fail("metadata 'class_names' is not a JSON list of strings".into()))?;
        if class_names.len() != classes {
            return Err(fail(format!("{} class names for {classes} classes", class_names.len())));
        }
        let best = match (meta.get("best_epoch"), meta.get("best_test_acc")) {
            (Some(_), Some(_)) => Some((number("best_epoch")? as usize, real("best_test_acc")?)),
            _ => None,
        };
        let dataset = DatasetShape {
            side,
            classes,
            train: number("dataset_train")? as usize,
            test: number("dataset_test")? as usize,
        };
        let batches_done = number("batches_done")? as usize;
        if batches_done > dataset.train.div_ceil(batch_size) {
            return Err(fail(format!("batches_done {batches_done} exceeds the batches in an epoch")));
        }
        let schedule = match meta.get("schedule") {
            None => crate::schedule::Schedule::Constant,
            Some(s) => {
                crate::schedule::Schedule::parse(s).map_err(|e| fail(format!("metadata 'schedule': {e}")))?
            }
        };
        let warmup_epochs = match meta.get("warmup_epochs") {
            None => 0.0,
            Some(_) => real("warmup_epochs")?.max(0.0),
        };
        let label_smoothing = match meta.get("label_smoothing") {
            None => 0.0,
            Some(_) => match real("label_smoothing")? {
                v if (0.0..1.0).contains(&v) => v,
                v => return Err(fail(format!("metadata 'label_smoothing' {v} is not in [0, 1)"))),
            },
        };
        let augment = match meta.get("augment") {
            None => Default::default(),
            Some(a) => {
                crate::augment::Augment::parse(a).map_err(|e| fail(format!("metadata 'augment': {e}")))?
            }
        };
        let normalize = match meta.get("normalize") {
            None => Default::default(),
            Some(n) => crate::normalize::Normalize::parse(n)
                .map_err(|e| fail(format!("metadata 'normalize': {e}")))?,
        };
        let mut ckpt = Checkpoint {
            model,
            normalize,
            schedule,
            warmup_epochs,
            label_smoothing,
            augment,
            dataset,
            class_names,
            batch_size,
            seed: number("seed")?,
            optimizer,
            position: Position {
                epochs_done: number("epoch")? as usize,
                batches_done,
                updates: number("step")?,
                best,
                partial_metrics: Vec::new(),
            },
            params: Vec::new(),
            m: Vec::new(),
            v: Vec::new(),
            state: Vec::new(),
        };

        let tensors = SafeTensors::deserialize(bytes).map_err(|e| {
            fail(format!("not a readable safetensors file ({e}); is it truncated or corrupt?"))
        })?;
        let stored_name = |name: &str| -> String {
            if legacy {
                for (old, new) in LEGACY_NAMES {
                    if let Some(i) = name.find(new).filter(|&i| i == 0 || name[..i].ends_with('.')) {
                        return format!("{}{old}{}", &name[..i], &name[i + new.len()..]);
                    }
                }
            }
            name.to_string()
        };
        let read = |name: &str, dims: &[usize]| -> Result<Vec<f32>, String> {
            let name = &stored_name(name);
            let t = tensors.tensor(name).map_err(|_| fail(format!("tensor '{name}' is missing")))?;
            if t.dtype() != Dtype::F32 || t.shape() != dims {
                return Err(fail(format!(
                    "tensor '{name}' is {:?} {:?}; expected F32 {dims:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        let nodes = ckpt.nodes().map_err(|e| fail(format!("model '{}': {e}", ckpt.model.text)))?;
        let (layout, slots) = ckpt.tensor_slots(align_words).map_err(&fail)?;
        let states = state_slots(&nodes);
        let prefixes: Vec<&str> = std::iter::once("").chain(ckpt.state_prefixes()).collect();
        // The header's shapes decide the allocations below: check that the file can hold them.
        let needed = (slots.iter().map(|t| t.len).sum::<usize>() * prefixes.len()
            + states.iter().map(|s| s.1).sum::<usize>())
            * 4;
        if needed > bytes.len() {
            return Err(fail(format!(
                "a {side}x{side} {classes}-class model needs {needed} bytes of tensors; the file has {}",
                bytes.len()
            )));
        }
        let mut flats = Vec::new();
        for prefix in prefixes {
            let mut flat = vec![0f32; layout.total];
            for t in &slots {
                let values = read(&format!("{prefix}{}", t.name), &t.dims)?;
                flat[t.offset..t.offset + t.len].copy_from_slice(&values);
            }
            flats.push(flat);
        }
        for (name, len) in &states {
            let values = read(name, &[*len])?;
            if name.ends_with(".running_var") && values.iter().any(|&v| v < 0.0) {
                return Err(fail(format!("tensor '{name}' holds a negative variance")));
            }
            ckpt.state.push((name.clone(), values));
        }
        let mut flats = flats.into_iter();
        ckpt.params = flats.next().unwrap_or_default();
        ckpt.m = flats.next().unwrap_or_default();
        ckpt.v = flats.next().unwrap_or_else(|| vec![0f32; layout.total]);
        if batches_done > 0 {
            let rows = batches_done.saturating_mul(batch_size).min(ckpt.dataset.train);
            let per_batch =
                tensors.tensor("train_metrics.partial").is_ok_and(|t| t.shape() == [batches_done, 2]);
            ckpt.position.partial_metrics = if per_batch && rows != batches_done {
                // Written before metrics were kept per sample: one (loss sum, correct count)
                // per batch. Each batch's sums stand in for its first sample, zeros for the
                // rest, which adds up to the same epoch totals.
                let sums = read("train_metrics.partial", &[batches_done, 2])?;
                // the file does not back this allocation: bound it (2^27 samples, 1 GiB)
                if rows > 1 << 27 {
                    return Err(fail(format!("claims {rows} training samples done in one epoch")));
                }
                let mut per_sample = vec![0f32; 2 * rows];
                for (b, pair) in sums.chunks_exact(2).enumerate() {
                    per_sample[2 * b * batch_size..2 * b * batch_size + 2].copy_from_slice(pair);
                }
                per_sample
            } else {
                read("train_metrics.partial", &[rows, 2])?
            };
        }
        if !ckpt.is_finite() {
            return Err(fail("holds non-finite (NaN or infinite) weights or optimiser state".into()));
        }
        Ok(ckpt)
    }

    /// Whether every weight and optimiser value is a finite number.
    pub fn is_finite(&self) -> bool {
        let state = self.state.iter().flat_map(|(_, v)| v);
        self.params.iter().chain(&self.m).chain(&self.v).chain(state).all(|x| x.is_finite())
    }

    pub fn load(path: &Path, align_words: usize) -> Result<Checkpoint, String> {
        Checkpoint::from_bytes(path, &read_file(path)?, align_words)
    }

    /// The checkpoint and the plan of the run that wrote it.
    pub fn load_with_plan(path: &Path, align_words: usize) -> Result<(Checkpoint, RunPlan), String> {
        let bytes = read_file(path)?;
        let ckpt = Checkpoint::from_bytes(path, &bytes, align_words)?;
        Ok((ckpt, RunPlan::from_bytes(path, &bytes)?))
    }

    /// Writes the checkpoint so that a crash at any moment leaves the old file or the new
    /// one: a temporary file in the same directory, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path, align_words: usize) -> Result<(), String> {
        self.save_with(path, align_words, None)
    }

    /// `save`, with the run's plan in the metadata.
    pub fn save_with(&self, path: &Path, align_words: usize, plan: Option<&RunPlan>) -> Result<(), String> {
        let bytes = self.to_bytes_with(align_words, plan)?;
        write_atomically(path, &bytes)
    }

    /// Checks that `data` has this checkpoint's image size and classes and, for a resume
    /// (`need_counts`), its sample counts too.
    pub fn check_dataset(&self, origin: &Path, data: &DatasetShape, need_counts: bool) -> Result<(), String> {
        let ours = &self.dataset;
        let mut problems = Vec::new();
        if ours.side != data.side {
            problems
                .push(format!("images are {0}x{0} here but {1}x{1} in the checkpoint", data.side, ours.side));
        }
        if ours.classes != data.classes {
            problems.push(format!("{} classes here but {} in the checkpoint", data.classes, ours.classes));
        }
        if need_counts && ours.train != data.train {
            problems.push(format!(
                "{} training samples here but {} in the checkpoint (check --limit-train)",
                data.train, ours.train
            ));
        }
        if need_counts && ours.test != data.test {
            problems.push(format!(
                "{} test samples here but {} in the checkpoint (check --limit-test)",
                data.test, ours.test
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: does not match the dataset: {}", origin.display(), problems.join("; ")))
        }
    }
}

/// How the run was started, beyond what the checkpoint needs to continue it: what a plain
/// `--resume FILE` defaults to. Metadata keys `target_epochs` (the total `--epochs`),
/// `limit_train` and `limit_test` (a sample count, or "none"); checkpoints written before
/// these keys existed lack them, and then each field is None.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunPlan {
    pub epochs: Option<usize>,
    /// `Some(None)`: the run used every sample.
    pub limit_train: Option<Option<usize>>,
    pub limit_test: Option<Option<usize>>,
    /// `--patience`: `Some(None)` when the run had none.
    pub patience: Option<Option<usize>>,
    /// The resolved settings as a config file (config::to_toml), for the record: `--resume`
    /// reads the settings from their own keys.
    pub config: Option<String>,
}

/// The largest `--epochs`.
pub const MAX_EPOCHS: usize = 100_000;

impl RunPlan {
    fn write(&self, meta: &mut HashMap<String, String>) {
        let limit = |l: Option<usize>| l.map_or("none".to_string(), |n| n.to_string());
        if let Some(e) = self.epochs {
            meta.insert("target_epochs".into(), e.to_string());
        }
        if let Some(l) = self.limit_train {
            meta.insert("limit_train".into(), limit(l));
        }
        if let Some(l) = self.limit_test {
            meta.insert("limit_test".into(), limit(l));
        }
        if let Some(p) = self.patience {
            meta.insert("patience".into(), limit(p));
        }
        if let Some(c) = &self.config {
            meta.insert("config".into(), c.clone());
        }
    }

    /// The plan in a checkpoint's metadata; `origin` names it in errors.
    pub fn from_bytes(origin: &Path, bytes: &[u8]) -> Result<RunPlan, String> {
        let fail = |problem: String| format!("{}: {problem}", origin.display());
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
            fail(format!("not a readable safetensors file ({e}); is it truncated or corrupt?"))
        })?;
        let meta = header.metadata().clone().unwrap_or_default();
        let count = |key: &str, max: usize| -> Result<Option<usize>, String> {
            match meta.get(key).map(|v| v.parse::<usize>()) {
                None => Ok(None),
                Some(Ok(n)) if (1..=max).contains(&n) => Ok(Some(n)),
                Some(_) => Err(fail(format!("metadata '{key}' is not a whole number from 1 to {max}"))),
            }
        };
        let limit = |key: &str| -> Result<Option<Option<usize>>, String> {
            match meta.get(key).map(String::as_str) {
                Some("none") => Ok(Some(None)),
                _ => Ok(count(key, usize::MAX)?.map(Some)),
            }
        };
        Ok(RunPlan {
            epochs: count("target_epochs", MAX_EPOCHS)?,
            limit_train: limit("limit_train")?,
            limit_test: limit("limit_test")?,
            patience: match meta.get("patience").map(String::as_str) {
                Some("none") => Some(None),
                _ => count("patience", MAX_EPOCHS)?.map(Some),
            },
            config: meta.get("config").cloned(),
        })
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read checkpoint: {e}", path.display()))
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |what: &str, e: std::io::Error| format!("{}: cannot {what}: {e}", path.display());
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| fail("create a temporary file", e))?;
        file.write_all(bytes).map_err(|e| fail("write", e))?;
        file.sync_all().map_err(|e| fail("sync", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| fail("rename the temporary file into place", e))?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Class names for a dataset: Fashion-MNIST's when its directory says so and it has 10
/// classes, else the class numbers.
pub fn class_names_for(dir: &Path, classes: usize) -> Vec<String> {
    let fashion = dir.to_string_lossy().to_lowercase().contains("fashion");
    if fashion && classes == FASHION_MNIST_CLASSES.len() {
        FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..classes).map(|c| c.to_string()).collect()
    }
}
