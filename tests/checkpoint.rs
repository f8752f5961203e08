//! Checkpoints: exact resume (at an epoch boundary and inside an epoch), the file format's
//! round trip, the run's plan in the metadata, clear errors for damaged files, and loading
//! in Python's safetensors.

mod common;
#[path = "common/idx_files.rs"]
mod idx_files;
#[path = "common/small_checkpoint.rs"]
mod small_checkpoint;
use gpu_train::checkpoint::{Checkpoint, DatasetShape, RunPlan};
use gpu_train::data;
use gpu_train::kernels::Kernels;
use gpu_train::layers::optim::{OptimizerConfig, OptimizerKind};
use gpu_train::model::param_align_words;
use gpu_train::train::{EpochMetrics, TrainConfig, Trainer};
use std::path::Path;

fn config(optimizer: OptimizerKind) -> TrainConfig {
    config_for(optimizer, "ref-cnn")
}

fn config_for(optimizer: OptimizerKind, model: &str) -> TrainConfig {
    let optimizer = OptimizerConfig { kind: optimizer, ..OptimizerConfig::default() };
    let model = gpu_train::model_spec::resolve(model).unwrap();
    // 250 samples at batch 8: 32 batches (grouped by step time), the last batch short (2).
    TrainConfig::basic(model, 4, 8, 5, optimizer)
}

fn dataset() -> data::Dataset {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 250, 40, false);
    data::load(dir.path()).unwrap()
}

fn shape_of(d: &data::Dataset) -> DatasetShape {
    DatasetShape { side: d.train.side, classes: d.classes, train: d.train.count, test: d.test.count }
}

fn names() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn losses(ms: &[EpochMetrics]) -> Vec<(f64, f64, f64, f64)> {
    ms.iter().map(|m| (m.train_loss, m.train_acc, m.test_loss, m.test_acc)).collect()
}

/// 4 epochs straight versus stops after epoch 2 and inside epoch 3, each through a
/// checkpoint's bytes into a fresh trainer.
fn check_exact_resume(kind: OptimizerKind) {
    check_exact_resume_of(kind, "ref-cnn");
}

fn check_exact_resume_of(kind: OptimizerKind, model: &str) {
    check_exact_resume_with(kind, &|kind| config_for(kind, model));
}

fn check_exact_resume_with(kind: OptimizerKind, config: &dyn Fn(OptimizerKind) -> TrainConfig) {
    let data = dataset();
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let align = param_align_words(&gpu);

    let mut straight = Trainer::new(&gpu, &kernels, &data, config(kind)).unwrap();
    let want: Vec<EpochMetrics> = (1..=4).map(|e| straight.train_epoch(e).unwrap()).collect();
    let want_params = straight.model.read_params(&gpu).unwrap();
    let want_state = straight.model.network.read_state(&gpu).unwrap();

    let mut first = Trainer::new(&gpu, &kernels, &data, config(kind)).unwrap();
    let mut got: Vec<EpochMetrics> = (1..=2).map(|e| first.train_epoch(e).unwrap()).collect();
    let bytes = first.snapshot(shape_of(&data), names()).unwrap().to_bytes(align).unwrap();
    drop(first);

    // Resume at the epoch boundary, then stop again after the first group of epoch 3 (its
    // size follows the measured step time: one step before any measurement).
    let ckpt = Checkpoint::from_bytes(Path::new("mem"), &bytes, align).unwrap();
    assert_eq!(ckpt.position.epochs_done, 2);
    let mut second = Trainer::new(&gpu, &kernels, &data, config(kind)).unwrap();
    second.restore(&ckpt).unwrap();
    assert!(second.train_epoch_until(3, &|| true).unwrap().is_none(), "the stop should fire inside epoch 3");
    let stopped_at = second.position.batches_done;
    let epoch_batches = second.batches(second.train.count).len();
    assert!(stopped_at >= 1 && stopped_at < epoch_batches, "stopped after {stopped_at} of {epoch_batches}");
    let bytes = second.snapshot(shape_of(&data), names()).unwrap().to_bytes(align).unwrap();
    drop(second);

    let ckpt = Checkpoint::from_bytes(Path::new("mem"), &bytes, align).unwrap();
    assert_eq!((ckpt.position.epochs_done, ckpt.position.batches_done), (2, stopped_at));
    // (loss, correct) for each of the batches' 8 samples
    assert_eq!(ckpt.position.partial_metrics.len(), 2 * stopped_at * 8);
    let mut third = Trainer::new(&gpu, &kernels, &data, config(kind)).unwrap();
    third.restore(&ckpt).unwrap();
    got.push(third.train_epoch(3).unwrap());
    got.push(third.train_epoch(4).unwrap());
    let got_params = third.model.read_params(&gpu).unwrap();
    let got_state = third.model.network.read_state(&gpu).unwrap();
    for ((name, want), (_, got)) in want_state.iter().zip(&got_state) {
        assert_eq!(bits(want), bits(got), "{name} differs after resuming");
    }
    assert_eq!(want_state.len(), got_state.len());

    println!("{kind:?} straight: {:?}\n{kind:?} resumed:  {:?}", losses(&want), losses(&got));
    assert_eq!(losses(&want), losses(&got), "per-epoch metrics differ after resuming");
    assert_eq!(bits(&want_params), bits(&got_params), "final weights differ after resuming");
    assert_eq!(third.position.updates, 4 * 32);
}

#[test]
fn resuming_adam_is_bit_identical_to_an_unbroken_run() {
    check_exact_resume(OptimizerKind::Adam);
}

#[test]
fn resuming_sgd_is_bit_identical_to_an_unbroken_run() {
    check_exact_resume(OptimizerKind::Sgd);
}

#[test]
fn resuming_a_cosine_schedule_with_warm_up_is_bit_identical() {
    // The rate of every step comes from (step, steps per epoch, total epochs), so a resumed
    // run recomputes it; the checkpoint carries the schedule.
    check_exact_resume_with(OptimizerKind::Adam, &|kind| TrainConfig {
        schedule: gpu_train::schedule::Schedule::Cosine,
        warmup_epochs: 1.5,
        ..config(kind)
    });
}

#[test]
fn resuming_adamw_and_nesterov_sgd_with_weight_decay_is_bit_identical() {
    for (kind, nesterov) in [(OptimizerKind::AdamW, false), (OptimizerKind::Sgd, true)] {
        check_exact_resume_with(kind, &|kind| {
            let mut c = config_for(kind, "c16,bn,relu,pool,fc16,relu,fc");
            c.optimizer.weight_decay = 5e-3;
            c.optimizer.nesterov = nesterov;
            c
        });
    }
}

#[test]
fn resuming_an_augmented_run_is_bit_identical() {
    // Crops, flips and erasing hash (seed, update, place in the order): a resumed run
    // redraws them.
    check_exact_resume_with(OptimizerKind::Adam, &|kind| TrainConfig {
        augment: gpu_train::augment::Augment { crop: 2, flip: true, erase: 5_000 },
        ..config(kind)
    });
}

#[test]
fn resuming_the_whole_recipe_at_once_is_bit_identical() {
    // What a best-preset run turns on together: batch norm, dropout, AdamW's decoupled
    // decay, gradient clipping, cosine with warm-up, label smoothing, crop + flip + erase,
    // standardised inputs.
    // 2 epochs + resume to 4, and a stop inside epoch 3, equal 4 straight.
    let standard = gpu_train::normalize::Normalize::standard_for(&dataset().train.pixels).unwrap();
    check_exact_resume_with(OptimizerKind::AdamW, &|kind| {
        let mut c = config_for(kind, "c16,bn,relu,pool,drop0.25,fc16,bn,relu,drop0.25,fc");
        c.optimizer.lr = 2e-3;
        c.optimizer.weight_decay = 5e-4;
        c.optimizer.clip_grad_norm = 0.05;
        c.schedule = gpu_train::schedule::Schedule::Cosine;
        c.warmup_epochs = 1.0;
        c.label_smoothing = 0.1;
        c.augment = gpu_train::augment::Augment { crop: 2, flip: true, erase: 2_500 };
        c.normalize = standard;
        c
    });
}

#[test]
fn resuming_a_model_with_batch_norm_and_dropout_is_bit_identical() {
    // Dropout masks hash (seed, step, index) and batch norm's running statistics travel
    // in the checkpoint, so a resumed run continues exactly.
    check_exact_resume_of(OptimizerKind::Adam, "c16,bn,relu,pool,drop0.3,fc16,bn,relu,drop0.2,fc");
}

#[test]
fn a_model_with_batch_norm_and_dropout_trains_the_same_twice_and_differs_by_seed() {
    let data = dataset();
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let model = "c16,bn,relu,c16k5,relu,pool,drop0.25,fc16,bn,relu,drop0.5,fc";
    let run = |seed: u64| {
        let cfg = TrainConfig { seed, epochs: 1, ..config_for(OptimizerKind::Adam, model) };
        let mut t = Trainer::new(&gpu, &kernels, &data, cfg).unwrap();
        let m = t.train_epoch(1).unwrap();
        (bits(&t.model.read_params(&gpu).unwrap()), m.train_loss)
    };
    let (a, loss_a) = run(5);
    let (b, loss_b) = run(5);
    let (c, _) = run(6);
    assert_eq!(a, b, "the same seed must give bit-identical weights");
    assert_eq!(loss_a.to_bits(), loss_b.to_bits());
    assert_ne!(a, c, "another seed must give other weights");
    assert!(loss_a.is_finite());
}

/// A checkpoint after one epoch, as bytes.
fn sample_checkpoint() -> (Vec<u8>, usize) {
    let data = dataset();
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let align = param_align_words(&gpu);
    let mut trainer = Trainer::new(&gpu, &kernels, &data, config(OptimizerKind::Adam)).unwrap();
    trainer.train_epoch(1).unwrap();
    let ckpt = trainer.snapshot(shape_of(&data), names()).unwrap();
    (ckpt.to_bytes(align).unwrap(), align)
}

#[test]
fn a_checkpoint_round_trips_and_names_its_tensors_like_pytorch() {
    let (bytes, align) = sample_checkpoint();
    let ckpt = Checkpoint::from_bytes(Path::new("mem"), &bytes, align).unwrap();
    let again = ckpt.to_bytes(align).unwrap();
    let reread = Checkpoint::from_bytes(Path::new("mem"), &again, align).unwrap();
    assert_eq!(bits(&ckpt.params), bits(&reread.params));
    assert_eq!(bits(&ckpt.m), bits(&reread.m));
    assert_eq!(bits(&ckpt.v), bits(&reread.v));
    assert_eq!(ckpt.position, reread.position);

    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<&str> = st.names();
    names.sort();
    println!("{names:?}");
    for (name, shape) in [
        // nn.Sequential(Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, MaxPool2d, Flatten, Linear, ReLU, Linear)
        ("0.weight", vec![32, 1, 3, 3]),
        ("0.bias", vec![32]),
        ("3.weight", vec![64, 32, 3, 3]),
        ("7.weight", vec![128, 64 * 2 * 2]),
        ("9.weight", vec![3, 128]),
        ("9.bias", vec![3]),
        ("optimizer.exp_avg.7.weight", vec![128, 256]),
        ("optimizer.exp_avg_sq.3.bias", vec![64]),
    ] {
        assert_eq!(st.tensor(name).unwrap().shape(), &shape[..], "{name}");
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    for (key, value) in [
        ("model", "ref-cnn"),
        ("model_layers", "c32,relu,pool,c64,relu,pool,fc128,relu,fc"),
        ("epoch", "1"),
        ("step", "32"),
        ("seed", "5"),
        ("optimizer", "adam"),
    ] {
        assert_eq!(meta[key], value, "metadata {key}");
    }
}

#[test]
fn a_version_1_checkpoint_with_ref_cnn_names_still_loads() {
    // The release before models as data wrote format version 1 with conv1/conv2/fc1/fc2.
    let (bytes, align) = sample_checkpoint();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    meta.insert("format_version".into(), "1".into());
    meta.remove("model_layers");
    let rename = |n: &str| {
        let mut n = n.to_string();
        for (new, old) in [("0.", "conv1."), ("3.", "conv2."), ("7.", "fc1."), ("9.", "fc2.")] {
            if let Some(rest) = n.strip_prefix(new) {
                n = format!("{old}{rest}");
            } else if let Some(i) = n.find(&format!(".{new}")) {
                n = format!("{}.{old}{}", &n[..i], &n[i + 1 + new.len()..]);
            }
        }
        n
    };
    let renamed: Vec<(String, _)> = st.tensors().into_iter().map(|(n, v)| (rename(&n), v)).collect();
    assert!(renamed.iter().any(|(n, _)| n == "optimizer.exp_avg.fc1.weight"));
    let old = safetensors::tensor::serialize(renamed, Some(meta)).unwrap();
    let legacy = Checkpoint::from_bytes(Path::new("old"), &old, align).unwrap();
    let current = Checkpoint::from_bytes(Path::new("new"), &bytes, align).unwrap();
    assert_eq!(legacy.model.text, "c32,relu,pool,c64,relu,pool,fc128,relu,fc");
    assert_eq!(bits(&legacy.params), bits(&current.params));
    assert_eq!(bits(&legacy.m), bits(&current.m));
    assert_eq!(bits(&legacy.v), bits(&current.v));
}

#[test]
fn the_run_plan_round_trips_in_the_metadata() {
    let ckpt = Checkpoint::from_bytes(Path::new("mem"), &small_checkpoint::small_checkpoint(), 4).unwrap();
    let origin = Path::new("run/last.safetensors");
    // Written without a plan (or by an older build): every field unknown.
    let plain = ckpt.to_bytes(4).unwrap();
    assert_eq!(RunPlan::from_bytes(origin, &plain).unwrap(), RunPlan::default());
    for plan in [
        RunPlan {
            epochs: Some(7),
            limit_train: Some(Some(100)),
            limit_test: Some(None),
            patience: Some(Some(3)),
            config: Some("[train]\nepochs = 7\n".into()),
        },
        RunPlan {
            epochs: Some(1),
            limit_train: Some(None),
            limit_test: Some(Some(3)),
            patience: Some(None),
            config: None,
        },
    ] {
        let bytes = ckpt.to_bytes_with(4, Some(&plan)).unwrap();
        assert_eq!(RunPlan::from_bytes(origin, &bytes).unwrap(), plan);
        // The rest of the checkpoint reads as before.
        let again = Checkpoint::from_bytes(origin, &bytes, 4).unwrap();
        assert_eq!(bits(&again.params), bits(&ckpt.params));
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(&plain).unwrap();
    let st = safetensors::SafeTensors::deserialize(&plain).unwrap();
    for (key, value) in
        [("target_epochs", "0"), ("target_epochs", "x"), ("limit_train", "-3"), ("limit_test", "")]
    {
        let mut meta = header.metadata().clone().unwrap();
        meta.insert(key.into(), value.into());
        let bytes = safetensors::tensor::serialize(st.tensors(), Some(meta)).unwrap();
        let err = RunPlan::from_bytes(origin, &bytes).unwrap_err();
        println!("{err}");
        assert!(err.starts_with("run/last.safetensors: ") && err.contains(key), "{err}");
    }
}

#[test]
fn damaged_checkpoints_are_clear_errors() {
    let (bytes, align) = sample_checkpoint();
    let origin = Path::new("run/last.safetensors");
    let check = |data: &[u8], needle: &str| {
        let err = Checkpoint::from_bytes(origin, data, align).unwrap_err();
        println!("{err}");
        assert!(err.starts_with("run/last.safetensors: "), "{err}");
        assert!(err.contains(needle), "'{err}' should mention '{needle}'");
    };
    check(&[], "truncated or corrupt");
    check(&bytes[..bytes.len() / 2], "truncated or corrupt");
    check(&bytes[..bytes.len() - 1], "truncated or corrupt");
    check(b"\x00\x00\x00\x00\x00\x00\x00\x00", "truncated or corrupt");
    check(&idx_files::idx_bytes(8, &[2, 2], &[1, 2, 3, 4]), "truncated or corrupt");
    // Valid safetensors, but not ours.
    let data = vec![0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    let foreign = safetensors::tensor::serialize([("w", view)], None).unwrap();
    check(&foreign, "not a gpu-train checkpoint");
    // A tensor dropped or of the wrong shape.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone();
    let without: Vec<_> = st.tensors().into_iter().filter(|(n, _)| n != "7.bias").collect();
    check(&safetensors::tensor::serialize(without, meta.clone()).unwrap(), "'7.bias' is missing");
    let mut bad_meta = meta.clone().unwrap();
    bad_meta.insert("dataset_classes".into(), "4".into());
    let all = st.tensors();
    let err =
        Checkpoint::from_bytes(origin, &safetensors::tensor::serialize(all, Some(bad_meta)).unwrap(), align)
            .unwrap_err();
    assert!(err.contains("class names") || err.contains("9."), "{err}");
    // A layer string that does not parse, or does not fit the data, names the key.
    for (layers, needle) in [("c32,bogus,fc", "bogus"), ("c32,pool,pool,pool,pool,fc", "even side")] {
        let mut m = meta.clone().unwrap();
        m.insert("model_layers".into(), layers.into());
        check(&safetensors::tensor::serialize(st.tensors(), Some(m)).unwrap(), needle);
    }
    // NaN weights are refused rather than resumed from.
    let mut nan = bytes.clone();
    let header_len = u64::from_le_bytes(nan[..8].try_into().unwrap()) as usize;
    for b in &mut nan[8 + header_len..8 + header_len + 8] {
        *b = 0xff;
    }
    check(&nan, "non-finite");
}

#[test]
fn saves_are_atomic_and_leave_no_temporary_files() {
    let (bytes, align) = sample_checkpoint();
    let ckpt = Checkpoint::from_bytes(Path::new("mem"), &bytes, align).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    std::fs::write(&path, b"an older checkpoint").unwrap();
    ckpt.save(&path, align).unwrap();
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(entries, vec!["last.safetensors".to_string()]);
    assert!(Checkpoint::load(&path, align).is_ok());
    // Writing into a directory that does not exist fails cleanly and names the file.
    let err = ckpt.save(&dir.path().join("no/such/dir/last.safetensors"), align).unwrap_err();
    assert!(err.contains("last.safetensors") && err.contains("cannot"), "{err}");
}

/// The Python interpreter for the PyTorch-side check: $GPU_TRAIN_PYTHON, the benchmark's
/// virtual environment, or python3.
fn python() -> Option<String> {
    let venv = std::env::var("HOME").ok().map(|h| format!("{h}/.cache/gpu-train-bench/venv/bin/python"));
    let candidates = [std::env::var("GPU_TRAIN_PYTHON").ok(), venv, Some("python3".into())];
    candidates.into_iter().flatten().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import safetensors.numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn a_checkpoint_opens_in_python_safetensors() {
    let Some(python) = python() else {
        // .ci/run installs numpy and safetensors (enough for this test) in a virtual
        // environment and points GPU_TRAIN_PYTHON at it, so under CI=true this fails.
        common::skip::skip_unless_ci(
            "no Python with the safetensors and numpy packages (set GPU_TRAIN_PYTHON)",
        );
        return;
    };
    let (bytes, align) = sample_checkpoint();
    let ckpt = Checkpoint::from_bytes(Path::new("mem"), &bytes, align).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let script = r#"
import sys, json
from safetensors import safe_open
with safe_open(sys.argv[1], framework="numpy") as f:
    meta = f.metadata()
    t = {k: f.get_tensor(k) for k in f.keys()}
try:
    import torch
    from safetensors.torch import load_file
    state = load_file(sys.argv[1])
    conv = torch.nn.Conv2d(1, 32, 3, padding=1)
    conv.load_state_dict({"weight": state["0.weight"], "bias": state["0.bias"]})
    via = "torch"
except ImportError:
    via = "numpy"
print(json.dumps({"via": via, "model": meta["model"], "0.weight": list(t["0.weight"].shape),
                  "9.bias": [float(x) for x in t["9.bias"]]}))
"#;
    let out =
        std::process::Command::new(&python).args(["-c", script, path.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{python}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["model"], "ref-cnn");
    assert_eq!(v["0.weight"], serde_json::json!([32, 1, 3, 3]));
    let layout = gpu_train::network::ParamLayout::new(&ckpt.nodes().unwrap(), align);
    let fc2 = layout.tensors.iter().find(|t| t.name == "9.bias").unwrap();
    let fc2_bias = &ckpt.params[fc2.offset..fc2.offset + 3];
    let from_python: Vec<f32> =
        v["9.bias"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(bits(fc2_bias), bits(&from_python));
}

#[test]
fn a_mid_epoch_checkpoint_with_per_batch_metrics_still_loads() {
    // Written before metrics were kept per sample: one (loss sum, correct count) for the one
    // batch of 4 done. It loads as the same totals, on the batch's first sample.
    let old = small_checkpoint::small_checkpoint_with(vec![4.5, 2.0]);
    let ckpt = Checkpoint::from_bytes(Path::new("old"), &old, 4).unwrap();
    assert_eq!(ckpt.position.partial_metrics, vec![4.5, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    // the current per-sample form reads back as written
    let new = small_checkpoint::small_checkpoint();
    let ckpt = Checkpoint::from_bytes(Path::new("new"), &new, 4).unwrap();
    assert_eq!(ckpt.position.partial_metrics, vec![1.5, 1.0, 0.25, 0.0, 2.0, 1.0, 0.75, 0.0]);
    // any other length is refused, naming the tensor
    let bad = small_checkpoint::small_checkpoint_with(vec![1.0, 0.0, 2.0, 1.0]);
    let err = Checkpoint::from_bytes(Path::new("bad"), &bad, 4).unwrap_err();
    assert!(err.contains("train_metrics.partial"), "{err}");
}
