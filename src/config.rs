//! Training configs: a model file's `[train]` table holds the training flags, so one file
//! names a whole recipe (`gpu-train --config FILE`).
//!
//! The table's keys are the flags' names with underscores (`batch_size = 128` for
//! `--batch-size 128`). They are checked by the command line's own parser: `train_argv`
//! turns the table into flags, clap parses them with the same ranges and messages as typed
//! flags, and `fill_from` lets every flag given on the command line win over the file.
//! `to_toml` writes the resolved settings back as a config file, which `--print-config`
//! prints and every checkpoint stores (metadata `config`). A file's settings that belong
//! to an optimiser or schedule the command line replaces give way with it (cli.rs).

use crate::layers::optim::OptimizerKind;
use crate::model_spec::{ModelDef, preset};
use crate::normalize::Normalize;
use crate::train::TrainConfig;
use std::fmt::Write as _;

/// The `[train]` keys: the recipe's flags. Data, limits, saving and the adapter describe
/// where a run happens, not how the model is trained, so they stay on the command line.
pub const TRAIN_KEYS: [&str; 15] = [
    "epochs",
    "batch_size",
    "seed",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "clip_grad_norm",
    "schedule",
    "warmup_epochs",
    "label_smoothing",
    "augment",
    "normalize",
    "patience",
];

/// The command-line flags a `[train]` table stands for, in the table's order. `file` names
/// the config in errors.
pub fn train_argv(file: &str, table: &toml::Table) -> Result<Vec<String>, String> {
    let mut argv = Vec::new();
    for (key, value) in table {
        if !TRAIN_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "{file}: [train] has an unknown key '{key}'; it holds {}",
                TRAIN_KEYS.join(", ")
            ));
        }
        let flag = format!("--{}", key.replace('_', "-"));
        if key == "nesterov" {
            match value {
                toml::Value::Boolean(b) => argv.push(format!("{flag}={b}")),
                _ => return Err(format!("{file}: [train] nesterov must be true or false, not {value}")),
            }
            continue;
        }
        let whole = matches!(key.as_str(), "epochs" | "batch_size" | "seed" | "patience");
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) if whole => {
                return Err(format!("{file}: [train] {key} must be a whole number, not {f}"));
            }
            toml::Value::Float(f) => f.to_string(),
            _ => return Err(format!("{file}: [train] {key} must be a number or a string, not {value}")),
        };
        // one token, so a value that starts with "--" stays a value
        argv.push(format!("{flag}={text}"));
    }
    Ok(argv)
}

/// The first line of a clap error without its "error: " prefix.
pub fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// A float as TOML reads it and a person writes it: the shortest form that round-trips,
/// plain from 1e-4 to 1e6 and in exponent form beyond (`1e-10`, not ten zeros), always
/// with a decimal point or an exponent so that it stays a float.
fn float(v: f64) -> String {
    let text = crate::cli::readable(v);
    if text.contains(['.', 'e', 'n', 'i']) { text } else { format!("{text}.0") }
}

fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The resolved settings as a config file that `--config` reads back to the same run.
/// `standard_pending`: `--normalize standard` before the training data (and so its
/// statistics) is loaded.
pub fn to_toml(cfg: &TrainConfig, patience: Option<usize>, standard_pending: bool) -> String {
    let mut out = String::new();
    let model: &ModelDef = &cfg.model;
    let o = &cfg.optimizer;
    let _ = writeln!(out, "# gpu-train {}: the resolved settings of a run", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "[model]");
    if preset(&model.name).is_some_and(|text| text == model.text) {
        let _ = writeln!(out, "preset = {}", string(&model.name));
    } else {
        let _ = writeln!(out, "layers = {}", string(&model.text));
    }
    let _ = writeln!(out, "\n[train]");
    let _ = writeln!(out, "epochs = {}", cfg.epochs);
    let _ = writeln!(out, "batch_size = {}", cfg.batch_size);
    let _ = writeln!(out, "seed = {}", seed_value(cfg.seed));
    let kind = match o.kind {
        OptimizerKind::Adam => "adam",
        OptimizerKind::AdamW => "adamw",
        OptimizerKind::Sgd => "sgd",
    };
    let _ = writeln!(out, "optimizer = {}", string(kind));
    let _ = writeln!(out, "lr = {}", float(o.lr));
    if o.kind == OptimizerKind::Sgd {
        let _ = writeln!(out, "momentum = {}", float(o.momentum));
        let _ = writeln!(out, "nesterov = {}", o.nesterov);
    }
    if o.kind != OptimizerKind::Adam {
        let _ = writeln!(out, "weight_decay = {}", float(o.weight_decay));
    }
    if o.clip_grad_norm > 0.0 {
        let _ = writeln!(out, "clip_grad_norm = {}", float(o.clip_grad_norm));
    }
    let _ = writeln!(out, "schedule = {}", string(&cfg.schedule.to_string()));
    let _ = writeln!(out, "warmup_epochs = {}", float(cfg.warmup_epochs));
    let _ = writeln!(out, "label_smoothing = {}", float(cfg.label_smoothing));
    let _ = writeln!(out, "augment = {}", string(&cfg.augment.to_string()));
    match cfg.normalize {
        Normalize::Unit if standard_pending => {
            let _ = writeln!(out, "normalize = \"standard\"  # statistics computed when the data loads");
        }
        Normalize::Unit => {
            let _ = writeln!(out, "normalize = \"unit\"");
        }
        Normalize::Standard { mean, std } => {
            let _ = writeln!(out, "normalize = \"standard\"  # training set: mean {mean:.6}, std {std:.6}");
        }
    }
    if let Some(p) = patience {
        let _ = writeln!(out, "patience = {p}");
    }
    out
}

/// TOML integers are signed 64-bit: a seed above i64::MAX is written as a string, which
/// the `--seed` parser reads the same.
fn seed_value(seed: u64) -> String {
    if seed <= i64::MAX as u64 { seed.to_string() } else { string(&seed.to_string()) }
}
