//! The command line: exit codes, one-line errors that name the file, and a full run on a
//! small synthetic raw (uncompressed) dataset with --metrics.

#[path = "common/idx_files.rs"]
mod idx_files;
#[path = "common/run_cli.rs"]
mod run_cli;
use run_cli::gpu_train;

fn assert_clean_error(args: &[&str], needle: &str) {
    let (code, _, stderr) = gpu_train(args);
    println!("{args:?} -> {code}: {stderr}");
    assert_eq!(code, 1, "exit code for {args:?}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one-line error expected: {stderr}");
    assert!(stderr.contains(needle), "'{stderr}' should mention '{needle}'");
}

#[test]
fn bad_data_directories_give_one_line_errors() {
    assert_clean_error(&["--data", "/nonexistent/gpu-train-data"], "does not exist");
    let empty = tempfile::tempdir().unwrap();
    assert_clean_error(&["--data", empty.path().to_str().unwrap()], "missing");

    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 20, 10, false);
    let path = dir.path().join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    assert_clean_error(&["--data", dir.path().to_str().unwrap()], "train-images-idx3-ubyte: truncated");

    // A header that claims billions of images in a few bytes: an error, not an allocation.
    std::fs::write(&path, idx_files::idx_bytes(8, &[3_000_000_000, 28, 28], &[1, 2, 3])).unwrap();
    assert_clean_error(&["--data", dir.path().to_str().unwrap()], "truncated");
    std::fs::write(&path, b"hello, not an idx file").unwrap();
    assert_clean_error(&["--data", dir.path().to_str().unwrap()], "not an IDX file");
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["--epochs", "0"][..],
        &["--lr", "-1"],
        &["--batch-size", "x"],
        &["--no-such-flag"],
        &["--optimizer", "rmsprop"],
    ] {
        let (code, _, stderr) = gpu_train(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn trains_a_raw_synthetic_set_and_writes_metrics() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 12, 3, 90, 30, false);
    let metrics = dir.path().join("m.jsonl");
    let (code, stdout, stderr) = gpu_train(&[
        "--data",
        dir.path().to_str().unwrap(),
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("adapter: "), "adapter line missing: {stdout}");
    assert!(stdout.contains("3 classes"), "{stdout}");
    assert!(stdout.contains("done: final test accuracy"), "{stdout}");
    let lines: Vec<String> = std::fs::read_to_string(&metrics).unwrap().lines().map(String::from).collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["epoch"], i + 1);
        for key in ["train_loss", "train_acc", "test_loss", "test_acc", "seconds", "train_images_per_sec"] {
            assert!(v[key].as_f64().is_some(), "{key} missing in {line}");
        }
        for key in ["train_acc", "test_acc"] {
            let a = v[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{key} = {a} is not a fraction");
        }
    }
    let last: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    assert!(last["test_acc"].as_f64().unwrap() > 0.6, "the banded synthetic set is easy: {}", lines[2]);
}

#[test]
fn lists_adapters_and_marks_the_choice() {
    let (code, stdout, stderr) = gpu_train(&["--list-adapters"]);
    println!("{stdout}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("* ")), "{stdout}");
    let (code, _, stderr) = gpu_train(&["--list-adapters", "--adapter", "no-such-gpu-name"]);
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn bench_reports_json_with_the_documented_keys() {
    let (code, stdout, stderr) = gpu_train(&["bench", "--synthetic", "--steps", "1", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    println!("{v}");
    for key in ["train_images_per_sec", "eval_images_per_sec", "startup_seconds"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key} in {v}");
    }
    // Adapters without timestamp queries report null kernels; lavapipe has them.
    if let Some(kernels) = v["kernels"].as_array() {
        assert!(kernels.iter().any(|k| k["kernel"] == "conv_fwd"), "{v}");
        let total: f64 = kernels.iter().map(|k| k["ms_per_step"].as_f64().unwrap()).sum();
        assert!(total > 0.0);
    }
    assert!(v["gpu_bytes"]["dataset"].as_u64().unwrap() > 0);
}

#[test]
fn a_batch_too_large_for_the_adapter_names_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 20, 10, false);
    // 65,536 images of 8x8: conv2's pre-activation gradient alone is 256 MiB.
    let limits = gpu_train::gpu::Gpu::new(&Default::default()).unwrap().limits;
    if limits.max_storage_buffer_binding_size >= 268_435_456 {
        println!(
            "SKIPPED: this adapter binds {} bytes, enough for the batch",
            limits.max_storage_buffer_binding_size
        );
        return;
    }
    let (code, _, stderr) =
        gpu_train(&["--data", dir.path().to_str().unwrap(), "--epochs", "1", "--batch-size", "65536"]);
    println!("{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("max_storage_buffer_binding_size") || stderr.contains("max_buffer_size"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // conv2's gradient is 4 KiB per image here, so 128 MiB holds 32,768 images.
    if limits.max_storage_buffer_binding_size == 134_217_728 && limits.max_buffer_size >= 134_217_728 {
        assert!(stderr.contains("the largest batch that fits is 32768"), "{stderr}");
    } else {
        assert!(stderr.contains("the largest batch that fits is"), "{stderr}");
    }
}
