//! The command line: exit codes, one-line errors that name the file, usage errors with
//! their reasons, adapter errors that list the adapters, label and --classes checks, the
//! data search, --save's refusal to replace another run, and a full run on a small
//! synthetic raw (uncompressed) dataset with --metrics.

#[path = "common/idx_files.rs"]
mod idx_files;
#[path = "common/run_cli.rs"]
mod run_cli;
#[path = "common/skip.rs"]
mod skip;
use run_cli::{gpu_train, gpu_train_in};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

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
fn negative_numbers_get_the_real_reason() {
    // Each numeric flag of train, bench and eval takes "-1" as its value and says what is
    // wrong with it, instead of clap's "unexpected argument '-1'".
    for (args, reason) in [
        (&["--lr", "-1"][..], "'-1' is not a positive finite number"),
        (&["--seed", "-1"], "seed must be a whole number from 0 to 18446744073709551615"),
        (&["--seed", "1.5"], "seed must be a whole number from 0 to 18446744073709551615"),
        (&["--epochs", "-1"], "-1 is not in 1..=100000"),
        (&["--batch-size", "-1"], "-1 is not in 1..=65536"),
        (&["--optimizer", "sgd", "--momentum", "-1"], "'-1' is not a number in [0, 1)"),
        (&["--limit-train", "-1"], "'-1' is not a whole number of samples"),
        (&["--limit-test", "-1"], "'-1' is not a whole number of samples"),
        (&["--classes", "-1"], "-1 is not in 2..=256"),
        (&["bench", "--steps", "-1"], "-1 is not in 1..=100000"),
        (&["bench", "--batch-size", "-1"], "-1 is not in 1..=65536"),
        (&["eval", "--checkpoint", "c", "--limit-test", "-1"], "'-1' is not a whole number of samples"),
        (&["eval", "--checkpoint", "c", "--batch-size", "-1"], "-1 is not in 1..=65536"),
        (&["report", "r", "--batch-size", "-1"], "-1 is not in 1..=65536"),
        (&["report", "r", "--batch-size", "65537"], "65537 is not in 1..=65536"),
    ] {
        let (code, _, stderr) = gpu_train(args);
        println!("{args:?} -> {code}: {stderr}");
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.contains("unexpected argument"), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: '{stderr}' should say '{reason}'");
    }
}

#[test]
fn momentum_without_sgd_is_a_usage_error() {
    for args in [&["--momentum", "0.5"][..], &["--optimizer", "adam", "--momentum", "0.5"]] {
        let (code, _, stderr) = gpu_train(args);
        println!("{args:?} -> {code}: {stderr}");
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains("--momentum") && stderr.contains("--optimizer sgd"), "{stderr}");
    }
}

#[test]
fn a_float_far_from_1_is_shown_readably() {
    // --lr 1e308 diverges at once; the messages show the rate as 1e308, not 309 digits.
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 24, 8, false);
    let (code, stdout, stderr) = gpu_train(&[
        "--data",
        s(dir.path()),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "1e308",
        "--no-save",
    ]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains("lr 1e308"), "{stdout}");
    assert!(stderr.contains("diverged in epoch 1") && stderr.contains("(now 1e308)"), "{stderr}");
    assert!(!stderr.contains("0000000000") && !stdout.contains("0000000000"), "{stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
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
        for key in
            ["train_loss", "train_acc", "test_loss", "test_acc", "seconds", "train_images_per_sec", "lr"]
        {
            assert!(v[key].as_f64().is_some(), "{key} missing in {line}");
        }
        assert_eq!(v["lr"].as_f64(), Some(1e-3), "a constant rate by default");
        for key in ["train_acc", "test_acc"] {
            let a = v[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{key} = {a} is not a fraction");
        }
    }
    let last: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    assert!(last["test_acc"].as_f64().unwrap() > 0.6, "the banded synthetic set is easy: {}", lines[2]);
}

/// The adapter lines of `--list-adapters` (one per adapter, on every backend).
fn adapter_lines(stdout: &str) -> Vec<String> {
    stdout.lines().filter(|l| l.starts_with("* ") || l.starts_with("  ")).map(String::from).collect()
}

#[test]
fn lists_adapters_on_every_backend_and_marks_the_choice() {
    let (code, stdout, stderr) = gpu_train(&["--list-adapters"]);
    println!("{stdout}");
    assert_eq!(code, 0, "{stderr}");
    let lines = adapter_lines(&stdout);
    assert_eq!(lines.iter().filter(|l| l.starts_with("* ")).count(), 1, "{stdout}");
    let chosen = lines.iter().find(|l| l.starts_with("* ")).unwrap();
    assert!(!chosen.contains("(Gl,"), "without --backend gl a GL adapter is never chosen: {stdout}");
    let gl: Vec<&String> = lines.iter().filter(|l| l.contains("(Gl,")).collect();
    if gl.is_empty() {
        assert!(stdout.contains("no GL adapter"), "the listing should say why GL is missing: {stdout}");
        return;
    }
    for l in &gl {
        assert!(l.ends_with("(only with --backend gl)"), "{l}");
    }
    let (code, stdout, stderr) = gpu_train(&["--backend", "gl", "--list-adapters"]);
    println!("{stdout}");
    assert_eq!(code, 0, "{stderr}");
    let chosen = adapter_lines(&stdout).into_iter().find(|l| l.starts_with("* ")).unwrap();
    assert!(chosen.contains("(Gl,"), "--backend gl chooses a GL adapter: {stdout}");
}

#[test]
fn adapter_errors_say_what_was_asked_and_list_the_adapters() {
    let (_, listing, _) = gpu_train(&["--list-adapters"]);
    let names: Vec<String> = adapter_lines(&listing)
        .iter()
        .filter(|l| !l.starts_with("  ("))
        .map(|l| l[2..].split(" (").next().unwrap().to_string())
        .collect();
    let data = tempfile::tempdir().unwrap();
    idx_files::write_dataset(data.path(), 8, 3, 12, 6, false);
    let os = std::env::consts::OS;
    // eval refuses an unreadable checkpoint before it opens an adapter: give it a file
    let file = data.path().join("train-labels-idx1-ubyte");
    let mut cases = vec![
        (
            vec!["--adapter", "nosuchname", "--list-adapters"],
            "no Vulkan, Metal or DX12 adapter's name contains 'nosuchname'",
        ),
        (vec!["--adapter", "nosuchname", "--data", s(data.path())], "--adapter nosuchname"),
        (vec!["eval", "--checkpoint", s(&file), "--adapter", "nosuchname"], "--adapter nosuchname"),
        (vec!["bench", "--adapter", "nosuchname"], "--adapter nosuchname"),
    ];
    if !matches!(os, "macos" | "ios") {
        cases.push((vec!["--backend", "metal", "--list-adapters"], "Metal is not available on"));
        cases.push((vec!["--backend", "metal", "--data", s(data.path())], "--backend metal"));
    }
    if os != "windows" {
        cases.push((vec!["--backend", "dx12", "--list-adapters"], "DX12 is not available on"));
    }
    for (args, needle) in cases {
        let (code, _, stderr) = gpu_train(&args);
        println!("{args:?} -> {code}:\n{stderr}");
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert_eq!(stderr.matches("error: ").count(), 1, "one error: {stderr}");
        assert!(stderr.contains(needle), "'{stderr}' should say '{needle}'");
        assert!(!stderr.contains("install mesa-vulkan-drivers") && !stderr.contains("panicked"), "{stderr}");
        if needle.contains("not available on") {
            assert!(stderr.contains(&format!("not available on {os}")), "{stderr}");
        }
        for name in &names {
            assert!(stderr.contains(name.as_str()), "the error should list {name}: {stderr}");
        }
    }
}

#[test]
fn no_command_prints_the_xdg_runtime_dir_warning() {
    // gpu-train turns Mesa's device-select layer off (NODEVICE_SELECT=1); run_cli asserts
    // on every run's stderr, here for commands that open adapters on each backend.
    for args in
        [&["--list-adapters"][..], &["--backend", "gl", "--list-adapters"], &["--adapter", "nosuchname"]]
    {
        let (_, _, stderr) = gpu_train(args);
        assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{args:?}: {stderr}");
    }
    // Set by the user, the variables are left alone.
    let cwd = tempfile::tempdir().unwrap();
    let (code, _, _) = gpu_train_in(cwd.path(), &[("NODEVICE_SELECT", "1")], &["--list-adapters"]);
    assert_eq!(code, 0);
}

#[test]
fn bench_reports_json_with_the_documented_keys() {
    let (code, stdout, stderr) = gpu_train(&["bench", "--synthetic", "--steps", "5", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    println!("{v}");
    // Exactly the steps asked for: 5 steps are one group, not rounded up to 3 groups of 8.
    assert_eq!(v["timed_steps"], 5, "{v}");
    assert_eq!(v["timed_groups"], 1, "{v}");
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
fn bench_json_names_the_machine() {
    let (code, stdout, stderr) = gpu_train(&[
        "bench",
        "--synthetic",
        "--steps",
        "1",
        "--json",
        "--model",
        "c16,bn,relu,pool,drop0.1,fc",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    let m = &v["machine"];
    for key in ["cpu", "adapter", "adapter_type", "backend", "os", "arch"] {
        assert!(m[key].as_str().is_some_and(|s| !s.is_empty()), "{key} in {m}");
    }
    // some backends name no driver: present, maybe empty
    assert!(m["driver"].is_string() && m["driver_info"].is_string(), "{m}");
    assert!(m["cpu_cores"].as_u64().unwrap() >= 1, "{m}");
    assert_eq!(m["gpu_train"], env!("CARGO_PKG_VERSION"));
    // kernels that move memory rather than compute report GB/s (where the adapter has
    // timestamp queries, as lavapipe does)
    match v["kernels"].as_array() {
        Some(kernels) => {
            let bn = kernels.iter().find(|k| k["kernel"] == "bn_forward_train").unwrap();
            assert_eq!(bn["layer"], "layer 2 (bn,relu) forward", "bn,relu fused: {bn}");
            assert_eq!(bn["bytes_per_step"].as_u64().unwrap(), 2 * 4 * 128 * 16 * 28 * 28, "{bn}");
            assert!(bn["gbytes_per_sec"].as_f64().unwrap() > 0.0, "{bn}");
            assert!(
                !kernels.iter().any(|k| k["kernel"] == "relu_forward"),
                "the ReLU has no pass of its own"
            );
            // max-pool: per pooled value 4 inputs read, the maximum and its code written;
            // dropout: each value read and written; Adam: 7 words per parameter
            let pooled = 128 * 16 * 14 * 14;
            for (name, bytes) in [
                ("maxpool_forward", 4 * 6 * pooled),
                ("maxpool_backward", 4 * 6 * pooled),
                ("dropout", 8 * pooled),
                ("softmax_xent", 128 * (8 * 10 + 12)),
            ] {
                let k = kernels.iter().find(|k| k["kernel"] == name).unwrap();
                assert_eq!(k["bytes_per_step"].as_u64().unwrap(), bytes, "{k}");
                assert!(k["gbytes_per_sec"].as_f64().unwrap() > 0.0, "{k}");
            }
            let adam = kernels.iter().find(|k| k["kernel"] == "adam").unwrap();
            assert_eq!(adam["bytes_per_step"].as_u64().unwrap() % (4 * 7), 0, "{adam}");
        }
        None => println!("no timestamp queries on this adapter: no kernel table to check"),
    }
}

#[test]
fn bench_sweep_measures_every_cell_and_reports_the_ones_that_do_not_fit() {
    // two models at two batches: three cells that fit (a tiny dense model even at 65,536)
    // and one no adapter binds (65,536 images of a 4,096-channel 8x8 value: 64 GiB)
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 40, 10, false);
    let data = s(dir.path());
    // a one-step sweep of the given cells on that data
    let sweep = |cells: &[&'static str]| -> Vec<&str> {
        let mut args = vec!["bench", "--sweep", "--data", data, "--steps", "1"];
        args.extend_from_slice(cells);
        args
    };
    let args = sweep(&[
        "--sweep-model",
        "fc8,fc",
        "--sweep-model",
        "c4096,fc",
        "--sweep-batch",
        "3",
        "--sweep-batch",
        "65536",
    ]);
    let (code, stdout, stderr) = gpu_train(&args);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("machine: "), "{stdout}");
    assert!(stdout.contains("2 model(s) x 2 batch size(s), 1 timed steps"), "{stdout}");
    let row = |model: &str, batch: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().take(2).eq([model, batch]))
            .unwrap_or_else(|| panic!("{model} {batch}: {stdout}"))
    };
    for (model, batch) in [("fc8,fc", "3"), ("fc8,fc", "65536"), ("c4096,fc", "3")] {
        let images_per_sec = row(model, batch).split_whitespace().nth(2).unwrap().parse::<f64>();
        assert!(images_per_sec.unwrap() > 0.0, "{model} at {batch}: {stdout}");
    }
    let refused = row("c4096,fc", "65536");
    assert!(refused.contains("not measured:") && refused.contains("the largest batch"), "{refused}");
    assert!(!refused.contains("--batch-size"), "the sweep has no --batch-size to change: {refused}");

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let (code, stdout, stderr) = gpu_train(&json_args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim().lines().count(), 1, "one line to paste: {stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let cells = v["sweep"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "{v}");
    assert_eq!(
        (cells[0]["model_layers"].as_str(), cells[0]["batch_size"].as_u64()),
        (Some("fc8,fc"), Some(3))
    );
    for key in ["train_images_per_sec", "train_ms_per_step", "train_gflops", "eval_images_per_sec"] {
        assert!(cells[0][key].as_f64().unwrap() > 0.0, "{key} in {v}");
    }
    assert!(
        cells[3]["error"].as_str().unwrap().contains("max_storage_buffer_binding_size")
            || cells[3]["error"].as_str().unwrap().contains("max_buffer_size"),
        "{v}"
    );
    assert!(v["machine"]["adapter"].as_str().is_some(), "{v}");

    // --sweep with the single-measurement flags, or the sweep's flags without --sweep: usage errors
    for bad in [vec!["bench", "--sweep", "--model", "mlp"], vec!["bench", "--sweep-batch", "3"]] {
        let (code, _, stderr) = gpu_train(&bad);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
    // a sweep of which no cell could be measured fails
    let none = sweep(&["--sweep-model", "c4096,fc", "--sweep-batch", "65536"]);
    let (code, stdout, stderr) = gpu_train(&none);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("not measured:") && stderr.contains("no cell of the sweep could be measured"),
        "{stderr}"
    );
    let (code, _, stderr) = gpu_train(&["bench", "--sweep", "--sweep-model", "nonsense"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--sweep-model 'nonsense'"), "{stderr}");
}

#[test]
fn a_batch_too_large_for_the_adapter_names_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 20, 10, false);
    let data = dir.path().to_str().unwrap();
    let limits = gpu_train::gpu::Gpu::new(&Default::default()).unwrap().limits;
    // 65,536 images through 4,096 channels of 8x8: 64 GiB for one value, over any binding
    // limit (a u32 number of bytes), on every adapter.
    let (code, _, stderr) =
        gpu_train(&["--data", data, "--epochs", "1", "--batch-size", "65536", "--model", "c4096,fc"]);
    println!("{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("max_storage_buffer_binding_size") || stderr.contains("max_buffer_size"),
        "{stderr}"
    );
    assert!(stderr.contains("'layer 1 (c4096) output"), "names the buffer: {stderr}");
    // 1 MiB per image for that value
    let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    assert!(stderr.contains(&format!("the largest batch that fits is {}", binding / (1 << 20))), "{stderr}");

    // ref-cnn at the same batch: conv2's pre-activation gradient alone is 256 MiB, which
    // lavapipe's 128 MiB refuses; its 4 KiB per image then give 32,768 images.
    let (code, _, stderr) = gpu_train(&["--data", data, "--epochs", "1", "--batch-size", "65536"]);
    if binding < 268_435_456 {
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("the largest batch that fits is"), "{stderr}");
        if binding == 134_217_728 {
            assert!(stderr.contains("the largest batch that fits is 32768"), "{stderr}");
        }
    } else {
        println!("this adapter binds {binding} bytes: ref-cnn at batch 65,536 fits (exit {code})");
    }
}

/// A 3-class 8x8 set whose training labels hold one stray 200 (at index 5).
fn stray_label_dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 24, 9, false);
    let path = dir.path().join("train-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8 + 5] = 200;
    std::fs::write(&path, bytes).unwrap();
    dir
}

#[test]
fn classes_without_training_images_are_refused_unless_given() {
    let data = stray_label_dataset();
    let base = ["--data", s(data.path()), "--epochs", "1", "--batch-size", "8"];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = gpu_train(&args);
        println!("{extra:?} -> {code}:\n{stdout}{stderr}");
        (code, stdout, stderr)
    };
    let (code, _, stderr) = run(&["--no-save"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for needle in [
        "train-labels-idx1-ubyte",
        "classes 3-199 have no training images",
        "200 at index 5",
        "--classes 201",
    ] {
        assert!(stderr.contains(needle), "'{stderr}' should say '{needle}'");
    }
    let (code, _, stderr) = run(&["--no-save", "--classes", "100"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("train-labels-idx1-ubyte") && stderr.contains("--classes must be at least 201"),
        "{stderr}"
    );

    // --classes says the empty classes are meant: the run trains a 201-class model, eval
    // uses the checkpoint's class count, and a resume takes it from the checkpoint.
    let save = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(&["--classes", "201", "--save", s(save.path())]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("201 classes"), "{stdout}");
    let ckpt = save.path().join("last.safetensors");
    let (code, stdout, stderr) = gpu_train(&["eval", "--checkpoint", s(&ckpt), "--data", s(data.path())]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("accuracy"), "{stdout}");
    let (code, stdout, stderr) =
        gpu_train(&["--resume", s(&ckpt), "--data", s(data.path()), "--epochs", "2", "--no-save"]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("201 classes"), "{stdout}");
}

#[test]
fn an_incomplete_default_data_directory_is_skipped_with_a_note() {
    // ./data lacks one file; the next place searched, $XDG_DATA_HOME/gpu-train/fashion-mnist,
    // is complete and is used.
    let cwd = tempfile::tempdir().unwrap();
    let local = cwd.path().join("data");
    std::fs::create_dir(&local).unwrap();
    idx_files::write_dataset(&local, 8, 3, 12, 6, false);
    std::fs::remove_file(local.join("t10k-labels-idx1-ubyte")).unwrap();
    let xdg = cwd.path().join("xdg");
    let found = xdg.join("gpu-train/fashion-mnist");
    std::fs::create_dir_all(&found).unwrap();
    idx_files::write_dataset(&found, 8, 3, 12, 6, true);
    let (code, stdout, stderr) = gpu_train_in(
        cwd.path(),
        &[("XDG_DATA_HOME", s(&xdg))],
        &["--epochs", "1", "--batch-size", "4", "--no-save"],
    );
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("note: data: skipped, missing t10k-labels-idx1-ubyte (each may end in .gz)"),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("data: {}", found.display())), "{stdout}");
}

#[test]
fn a_fresh_run_refuses_to_replace_another_runs_checkpoints() {
    let data = tempfile::tempdir().unwrap();
    idx_files::write_dataset(data.path(), 8, 3, 12, 6, false);
    let save = data.path().join("run");
    std::fs::create_dir(&save).unwrap();
    std::fs::write(save.join("best.safetensors"), b"another run's best").unwrap();
    std::fs::write(save.join("last.safetensors"), b"another run's last").unwrap();
    let args = ["--data", s(data.path()), "--epochs", "1", "--batch-size", "4", "--save", s(&save)];
    let (code, _, stderr) = gpu_train(&args);
    println!("{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let last = save.join("last.safetensors");
    for needle in [s(&save), &format!("--resume {}", s(&last)), "another --save", "--overwrite"] {
        assert!(stderr.contains(needle), "'{stderr}' should say '{needle}'");
    }
    assert_eq!(std::fs::read(save.join("best.safetensors")).unwrap(), b"another run's best");

    let mut args = args.to_vec();
    args.push("--overwrite");
    let (code, _, stderr) = gpu_train(&args);
    assert_eq!(code, 0, "{stderr}");
    for name in ["best.safetensors", "last.safetensors"] {
        let bytes = std::fs::read(save.join(name)).unwrap();
        assert!(safetensors::SafeTensors::deserialize(&bytes).is_ok(), "{name} should be this run's");
    }
}

#[test]
fn a_fresh_run_refuses_to_truncate_a_metrics_file_that_holds_lines() {
    let data = tempfile::tempdir().unwrap();
    idx_files::write_dataset(data.path(), 8, 3, 12, 6, false);
    let metrics = data.path().join("m.jsonl");
    std::fs::write(&metrics, "{\"epoch\":1}\n").unwrap();
    let args = [
        "--data",
        s(data.path()),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--no-save",
        "--metrics",
        s(&metrics),
    ];
    let (code, _, stderr) = gpu_train(&args);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(s(&metrics)) && stderr.contains("--overwrite"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap(), "{\"epoch\":1}\n", "the file must be untouched");
    let mut args = args.to_vec();
    args.push("--overwrite");
    let (code, _, stderr) = gpu_train(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read_to_string(&metrics).unwrap().contains("\"train_loss\""));
}

#[test]
fn runs_started_together_get_directories_of_their_own() {
    // Three runs in one working directory, started at once: without --save each claims
    // runs/<date-time>, with -2, -3 appended when the second is the same.
    let data = tempfile::tempdir().unwrap();
    idx_files::write_dataset(data.path(), 8, 3, 12, 6, false);
    let cwd = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..3)
        .map(|seed| {
            run_cli::command()
                .args([
                    "--data",
                    s(data.path()),
                    "--epochs",
                    "1",
                    "--batch-size",
                    "4",
                    "--seed",
                    &seed.to_string(),
                ])
                .current_dir(cwd.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let dirs: Vec<_> = std::fs::read_dir(cwd.path().join("runs")).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 3, "each run needs its own directory");
    let mut seeds: Vec<String> = dirs
        .iter()
        .map(|d| {
            let bytes = std::fs::read(d.path().join("last.safetensors")).unwrap();
            let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            meta.metadata().as_ref().unwrap()["seed"].clone()
        })
        .collect();
    seeds.sort();
    assert_eq!(seeds, ["0", "1", "2"]);
}

#[test]
fn eval_reads_only_the_test_split() {
    let data = tempfile::tempdir().unwrap();
    idx_files::write_dataset(data.path(), 8, 3, 12, 6, false);
    let save = data.path().join("run");
    let (code, _, stderr) =
        gpu_train(&["--data", s(data.path()), "--epochs", "1", "--batch-size", "4", "--save", s(&save)]);
    assert_eq!(code, 0, "{stderr}");
    let test_only = tempfile::tempdir().unwrap();
    for f in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::copy(data.path().join(f), test_only.path().join(f)).unwrap();
    }
    let ckpt = save.join("last.safetensors");
    let (code, stdout, stderr) =
        gpu_train(&["eval", "--checkpoint", s(&ckpt), "--data", s(test_only.path())]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("accuracy") && stdout.contains("(6 images)"), "{stdout}");
}

#[test]
fn autotuning_measures_once_then_reads_its_cache_and_never_fails_a_run() {
    let cache = tempfile::tempdir().unwrap();
    let dir = s(cache.path());
    let env = [("GPU_TRAIN_CACHE_DIR", dir)];
    let cwd = tempfile::tempdir().unwrap();
    let bench = |mode: &str| {
        let args =
            ["bench", "--synthetic", "--steps", "1", "--model", "c16,bn,relu,pool,fc", "--autotune", mode];
        let (code, stdout, stderr) = gpu_train_in(cwd.path(), &env, &args);
        assert_eq!(code, 0, "{stderr}");
        let line = stdout
            .lines()
            .find(|l| l.contains("batch norm + relu elementwise, 128 x 16 x 784"))
            .unwrap_or_else(|| panic!("no autotune line: {stdout}"))
            .to_string();
        println!("{mode}: {line}");
        line
    };
    let measured = bench("quick");
    assert!(
        measured.contains("measured in")
            && measured.contains("(16: ")
            && measured.contains(", 4: ")
            && measured.contains(", 64: "),
        "{measured}"
    );
    let file = cache.path().join("autotune.json");
    let cached: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let (key, choice) = cached.as_object().unwrap().iter().next().unwrap();
    assert!(
        key.contains(" | batch norm + relu elementwise, 128 x 16 x 784: values per thread [shader "),
        "{key}"
    );
    assert!(measured.contains(&format!("]: {choice} (measured")), "{measured} vs {choice}");
    // the second start-up reads the choice; full measures again, with more candidates
    assert!(bench("quick").ends_with(&format!("]: {choice} (cached)")));
    let full = bench("full");
    assert!(full.contains("measured in") && full.contains("32: "), "{full}");
    assert!(bench("off").contains("]: 16 (autotune off: the default)"));
    // quick takes a choice only full offers (32), and measures over one that is no candidate
    let seeded = |value: u32| {
        std::fs::write(&file, serde_json::json!({ key.as_str(): value }).to_string()).unwrap();
        bench("quick")
    };
    assert!(seeded(32).ends_with("]: 32 (cached)"));
    assert!(seeded(5).contains("measured in"));
    // a damaged cache is measured over, and rewritten whole
    std::fs::write(&file, "{ not json").unwrap();
    assert!(bench("quick").contains("measured in"));
    assert!(serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&file).unwrap()).is_ok());
    // a cache that cannot be written (its directory is a file) changes nothing but the speed
    let blocked = cwd.path().join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let args = ["bench", "--synthetic", "--steps", "1", "--model", "c16,bn,relu,pool,fc"];
    let (code, stdout, stderr) = gpu_train_in(cwd.path(), &[("GPU_TRAIN_CACHE_DIR", s(&blocked))], &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("measured in"), "{stdout}");
    assert!(stderr.contains("note: could not write the autotune cache"), "says why: {stderr}");
    // a cache that cannot be read (here a directory where the file should be; permissions
    // do not stop root) is measured over and left as it is, with a note
    let unreadable = tempfile::tempdir().unwrap();
    std::fs::create_dir(unreadable.path().join("autotune.json")).unwrap();
    std::fs::write(unreadable.path().join("autotune.json").join("keep"), "x").unwrap();
    let (code, stdout, stderr) =
        gpu_train_in(cwd.path(), &[("GPU_TRAIN_CACHE_DIR", s(unreadable.path()))], &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("measured in"), "{stdout}");
    assert!(stderr.contains("note: could not read the autotune cache"), "says why: {stderr}");
    assert!(unreadable.path().join("autotune.json").join("keep").exists(), "left as it was");
    // a relative cache directory is ignored with a note
    let (code, _, stderr) = gpu_train_in(cwd.path(), &[("GPU_TRAIN_CACHE_DIR", "rel/dir")], &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("GPU_TRAIN_CACHE_DIR (rel/dir) is not an absolute path"), "{stderr}");
    // bench reports the tuning time in its start-up line
    let (_, stdout, _) = gpu_train_in(cwd.path(), &env, &args);
    assert!(stdout.contains(", autotune 0.00, first step"), "a warm cache times nothing: {stdout}");
}

#[test]
fn gpu_shaped_variants_are_timed_on_a_cpu_adapter_only_by_full_tuning() {
    let cache = tempfile::tempdir().unwrap();
    let env = [("GPU_TRAIN_CACHE_DIR", s(cache.path()))];
    let cwd = tempfile::tempdir().unwrap();
    let bench = |mode: &str| {
        let args =
            ["bench", "--synthetic", "--steps", "1", "--model", "c16,relu,pool,fc", "--autotune", mode];
        let (code, stdout, stderr) = gpu_train_in(cwd.path(), &env, &args);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let line = |out: &str, needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}: {out}"))
            .to_string()
    };
    let conv_key = "conv_fwd batch 128, 1 to 16 channels, side 28: variant [shader ";
    let matmul_key =
        "matmul 128x10x3136, a strides (3136, 1), b strides (1, 3136), flags 1: variant [shader ";
    let quick = bench("quick");
    let software = quick.contains("note: this is a software adapter");
    let (conv, matmul) = (line(&quick, conv_key), line(&quick, matmul_key));
    println!("quick:\n{conv}\n{matmul}");
    if software {
        assert!(conv.ends_with("]: 0 (the only candidate)"), "{conv}");
        assert!(matmul.contains("measured in") && !matmul.contains("2: "), "{matmul}");
    } else {
        assert!(conv.contains("measured in") && conv.contains("1: "), "{conv}");
        assert!(matmul.contains("2: "), "{matmul}");
    }
    // full times every variant, here or on a GPU
    let full = bench("full");
    let (conv, matmul) = (line(&full, conv_key), line(&full, matmul_key));
    println!("full:\n{conv}\n{matmul}");
    assert!(conv.contains("measured in") && conv.contains("1: "), "{conv}");
    assert!(matmul.contains("measured in") && matmul.contains("2: "), "{matmul}");
}

#[test]
fn the_f16_storage_matmul_is_timed_only_when_asked_for() {
    for args in
        [&["--f16-storage", "--autotune", "off"][..], &["bench", "--f16-storage", "--autotune", "off"]]
    {
        let (code, _, stderr) = gpu_train(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("--f16-storage") && stderr.contains("--autotune off"), "{stderr}");
    }
    let cache = tempfile::tempdir().unwrap();
    let env = [("GPU_TRAIN_CACHE_DIR", s(cache.path()))];
    let cwd = tempfile::tempdir().unwrap();
    let matmul_line = |extra: &[&str]| {
        let mut args = vec!["bench", "--synthetic", "--steps", "1", "--model", "c16,relu,pool,fc"];
        args.extend(extra);
        let (code, stdout, stderr) = gpu_train_in(cwd.path(), &env, &args);
        assert_eq!(code, 0, "{stderr}");
        let line =
            stdout.lines().find(|l| l.contains("matmul 128x10x3136")).unwrap_or_else(|| panic!("{stdout}"));
        (line.to_string(), stderr)
    };
    let (with_flag, stderr) = matmul_line(&["--f16-storage"]);
    println!("--f16-storage: {with_flag}");
    if stderr.contains("has no f16 support") {
        skip::skip("this adapter has no SHADER_F16: only the note is checked");
        assert!(!with_flag.contains("f16 storage offered"), "{with_flag}");
    } else {
        assert!(with_flag.contains("variant (f16 storage offered) [shader "), "{with_flag}");
        assert!(with_flag.contains("measured in") && with_flag.contains("3: "), "{with_flag}");
    }
    // the same cache without the flag: its own key, and no f16 candidate
    let (without, _) = matmul_line(&[]);
    println!("without: {without}");
    assert!(without.contains("flags 1: variant [shader ") && !without.contains("3: "), "{without}");
    // training says how many products chose it (on lavapipe: none, it is 5-10x slower)
    let data = tempfile::tempdir().unwrap();
    idx_files::write_dataset(data.path(), 16, 4, 64, 16, false);
    let args = ["--data", s(data.path()), "--epochs", "1", "--no-save", "--model", "fc8,fc", "--f16-storage"];
    let (code, stdout, stderr) = gpu_train_in(cwd.path(), &env, &args);
    assert_eq!(code, 0, "{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("f16 storage: ")).unwrap_or_else(|| panic!("{stdout}"));
    println!("{line}");
    // fc8 (the first layer: forward and weight gradient) and fc (also the input gradient)
    assert!(line.contains(" of the model's 5 matrix products chose it"), "{line}");
}
