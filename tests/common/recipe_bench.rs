//! A small dataset and the runs made on it, for the tests of training settings
//! (recipes_cli.rs, config_cli.rs).
#![allow(dead_code, unused_imports)]

#[path = "idx_files.rs"]
mod idx_files;
#[path = "run_cli.rs"]
mod run_cli;
pub use run_cli::{gpu_train, gpu_train_in};
use std::path::{Path, PathBuf};

/// A small 3-class 8x8 dataset (4 steps an epoch at batch 16) and the runs made on it.
pub struct Bench {
    pub dir: tempfile::TempDir,
}

impl Bench {
    pub fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        idx_files::write_dataset(dir.path(), 8, 3, 64, 16, false);
        Bench { dir }
    }

    pub fn data(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Trains at batch 16 with `extra` flags, saving into `save` and writing metrics to
    /// `save`.jsonl; returns stdout and the metrics lines.
    pub fn train(&self, save: &str, extra: &[&str]) -> (String, Vec<serde_json::Value>) {
        let (dir, metrics) = (self.path(save), self.path(&format!("{save}.jsonl")));
        let common = ["--data", self.data(), "--batch-size", "16"];
        let files = ["--save", dir.to_str().unwrap(), "--metrics", metrics.to_str().unwrap()];
        let (code, stdout, stderr) = gpu_train(&[&common[..], extra, &files].concat());
        println!("{stdout}{stderr}");
        assert_eq!(code, 0, "{stderr}");
        let lines = std::fs::read_to_string(&metrics).unwrap();
        (stdout, lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    }

    pub fn last(&self, save: &str) -> PathBuf {
        self.path(save).join("last.safetensors")
    }

    /// A resume of `save`'s run with `flags` is refused (exit 1), the message saying `needle`.
    pub fn refused_on_resume(&self, save: &str, flags: &[&str], needle: &str) {
        let last = self.last(save);
        let resume = ["--data", self.data(), "--resume", last.to_str().unwrap(), "--epochs", "9"];
        let (code, _, stderr) = gpu_train(&[&resume[..], flags].concat());
        assert_eq!(code, 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
    }

    /// `flags` are a usage error (exit 2) saying `needle`.
    pub fn usage_error(&self, flags: &[&str], needle: &str) {
        let (code, _, stderr) = gpu_train(&[&["--data", self.data()][..], flags].concat());
        assert_eq!(code, 2, "{flags:?}: {stderr}");
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
    }
}

pub fn metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    header.metadata().clone().unwrap()
}

pub fn field(lines: &[serde_json::Value], key: &str) -> Vec<f64> {
    lines.iter().map(|v| v[key].as_f64().unwrap()).collect()
}
