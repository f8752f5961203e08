//! A checkpoint in PyTorch, the way the README shows it: its Python block (marked
//! `# gpu-train checkpoint -> PyTorch`) builds the nn.Sequential from the model string in
//! the checkpoint (scripts/torch_model.py), load_state_dict takes every tensor, and the
//! model's evaluation logits match gpu-train's on the same images.
//!
//! Needs Python with torch and safetensors: $GPU_TRAIN_TORCH_PYTHON or the benchmark's
//! virtual environment (../shared/bench/setup-pytorch.sh). CI does not install PyTorch (a
//! 5 GB wheel), so there the test skips with that reason printed; the whole-network
//! comparison with PyTorch (tests/network_fixture.rs) runs everywhere from its fixture.

mod common;
#[path = "common/idx_files.rs"]
mod idx_files;
use gpu_train::checkpoint::DatasetShape;
use gpu_train::kernels::Kernels;
use gpu_train::train::{TrainConfig, Trainer};

fn torch_python() -> Option<String> {
    let venv = std::env::var("HOME").ok().map(|h| format!("{h}/.cache/gpu-train-bench/venv/bin/python"));
    [std::env::var("GPU_TRAIN_TORCH_PYTHON").ok(), venv].into_iter().flatten().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import torch, safetensors.torch"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The README's Python block that loads a checkpoint into PyTorch.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks: Vec<&str> =
        readme.split("```python\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    blocks
        .into_iter()
        .find(|b| b.contains("# gpu-train checkpoint -> PyTorch"))
        .expect("README has a python block marked '# gpu-train checkpoint -> PyTorch'")
        .to_string()
}

#[test]
fn the_readmes_python_loads_a_checkpoint_into_pytorch_and_gets_the_same_logits() {
    let block = readme_block();
    assert!(block.contains("runs/my-run/best.safetensors"), "the block names the example path");
    let Some(python) = torch_python() else {
        common::skip::skip(
            "no Python with torch and safetensors (CI does not install the 5 GB PyTorch wheel)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 120, 24, false);
    let data = gpu_train::data::load(dir.path()).unwrap();
    let gpu = common::gpu();
    let k = Kernels::new(&gpu).unwrap();
    // every kind of tensor: conv with and without bias, batch norm 2-d and 1-d with running
    // statistics, dense; dropout and pooling in between
    let model = gpu_train::model_spec::resolve("c16,bn,relu,c8k5,relu,pool,drop0.2,fc12,bn,relu,fc").unwrap();
    let cfg = TrainConfig::basic(model, 2, 16, 4, Default::default());
    let mut trainer = Trainer::new(&gpu, &k, &data, cfg).unwrap();
    trainer.train_epoch(1).unwrap();
    trainer.train_epoch(2).unwrap();
    let (logits, _) = trainer.test_logits().unwrap();
    let shape = DatasetShape { side: 8, classes: 3, train: 120, test: 24 };
    let ckpt = trainer.snapshot(shape, vec!["a".into(), "b".into(), "c".into()]).unwrap();
    let path = dir.path().join("best.safetensors");
    ckpt.save(&path, gpu_train::model::param_align_words(&gpu)).unwrap();
    let images = dir.path().join("images.u8");
    std::fs::write(&images, &data.test.pixels).unwrap();

    let root = env!("CARGO_MANIFEST_DIR");
    let script = format!(
        "import os, sys\nos.chdir({root:?})\n{}\nimport json, numpy, torch\n\
         x = torch.tensor(numpy.fromfile({:?}, dtype=numpy.uint8)).float().reshape(-1, 1, 8, 8) / 255\n\
         with torch.no_grad():\n    print(json.dumps(model(x).flatten().tolist()))\n",
        block.replace("runs/my-run/best.safetensors", path.to_str().unwrap()),
        images.to_str().unwrap()
    );
    let out = std::process::Command::new(&python).args(["-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the README's Python failed");
    let theirs: Vec<f64> = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(theirs.len(), logits.len());
    let worst = logits.iter().zip(&theirs).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
    println!("PyTorch's evaluation logits differ from gpu-train's by at most {worst:.2e}");
    assert!(worst < 1e-4, "logits differ by {worst}");
}
