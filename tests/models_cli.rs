//! Models from the command line: `gpu-train models`, `--model` as a preset, a layer string
//! or a file; malformed strings and files, and models that do not fit the data, as one-line
//! usage errors (exit 2); a model using every token trains, saves, resumes bit-identically
//! and evaluates from its checkpoint alone.

#[path = "common/idx_files.rs"]
mod idx_files;
#[path = "common/run_cli.rs"]
mod run_cli;
#[path = "common/tensors.rs"]
mod tensors;
use run_cli::gpu_train;
use std::path::Path;
use tensors::tensors;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn assert_usage_error(args: &[&str], needles: &[&str]) {
    let (code, _, stderr) = gpu_train(args);
    println!("{args:?} -> {code}: {stderr}");
    assert_eq!(code, 2, "exit code for {args:?}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one-line error expected: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "'{stderr}' should mention '{needle}'");
    }
}

#[test]
fn models_lists_the_presets_with_their_sizes() {
    let (code, stdout, stderr) = gpu_train(&["models", "--summary"]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0);
    for needle in ["ref-cnn", "421642", "c32,relu,pool,c64,relu,pool,fc128,relu,fc", "mlp", "bn-cnn", "total"]
    {
        assert!(stdout.contains(needle), "missing {needle}");
    }
}

#[test]
fn malformed_models_are_one_line_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 20, 10, false);
    let data = s(dir.path());
    assert_usage_error(&["--model", "c32,bogus,fc", "--data", data], &["layer 2", "'bogus'", "character 5"]);
    assert_usage_error(&["--model", "c32,,fc", "--data", data], &["empty layer"]);
    assert_usage_error(&["--model", "c0,fc", "--data", data], &["at least 1"]);
    assert_usage_error(&["--model", "drop1.5,fc", "--data", data], &["probability"]);
    assert_usage_error(&["--model", "c32k7,fc", "--data", data], &["kernel size"]);
    // parses, but does not fit 8x8 images or the classes
    assert_usage_error(
        &["--model", "c16,pool,pool,pool,pool,fc", "--data", data],
        &["layer 5 (pool)", "even side"],
    );
    assert_usage_error(&["--model", "fc16,c16,fc", "--data", data], &["layer 2 (c16)", "image input"]);
    assert_usage_error(&["--model", "c16,relu", "--data", data], &["must end with a dense layer"]);
    assert_usage_error(&["--model", "c16,fc,fc", "--data", data], &["bare fc"]);
    let file = dir.path().join("model.toml");
    for (text, needle) in [
        ("[model]\nlayers = 3\n", "must be a string"),
        ("[model\nlayers = \"fc\"\n", "model.toml"),
        ("[model]\nlayer = \"fc\"\n", "unknown key 'layer'"),
        ("[model]\nlayers = \"c16,relu,nope,fc\"\n", "'nope'"),
    ] {
        std::fs::write(&file, text).unwrap();
        assert_usage_error(&["--model", s(&file), "--data", data], &[needle]);
    }
    assert_usage_error(&["bench", "--model", "c16,relu,huh,fc"], &["'huh'"]);
    assert_usage_error(
        &["bench", "--model", "c16,pool,pool,pool,pool,pool,fc", "--data", data],
        &["layer 5 (pool)"],
    );
    // more than 256 layers, and a token too long to print whole
    let deep = vec!["relu"; 300].join(",") + ",fc";
    assert_usage_error(&["--model", &deep, "--data", data], &["layer 257", "at most 256 layers"]);
    let long = format!("c{}", "9".repeat(5000));
    let (_, _, stderr) = gpu_train(&["--model", &long, "--data", data]);
    assert!(stderr.len() < 300 && stderr.contains("..."), "a long token is shortened: {stderr}");
}

#[test]
fn a_model_too_big_for_the_adapter_is_refused_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 20, 10, false);
    // 64x64 inputs... 8x8 here: fc65536 twice is 4.3e9 weights, far past any binding limit
    let (code, _, stderr) = gpu_train(&["--model", "fc65536,fc65536,fc", "--data", s(dir.path())]);
    println!("{stderr}");
    assert_eq!(code, 1);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("parameters need") && stderr.contains("max_storage_buffer_binding_size"),
        "{stderr}"
    );
    // wide convs: not even one image fits; the error names what blocks a batch of one
    let (code, _, stderr) = gpu_train(&["--model", "c4096,c4096,fc", "--data", s(dir.path())]);
    println!("{stderr}");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("even a batch of 1") && stderr.contains("too large for this adapter"),
        "{stderr}"
    );
}

#[test]
fn names_typos_and_odd_spellings_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 40, 10, false);
    let data = s(dir.path());
    // a mistyped preset or a missing file is not reported as an unknown layer only
    assert_usage_error(&["--model", "ref_cnn", "--data", data], &["not a preset (ref-cnn, mlp, bn-cnn)"]);
    assert_usage_error(&["--model", "models/my.TOML", "--data", data], &["models/my.TOML", "cannot read"]);
    // signs and exponents are no probabilities; a user's offsets count characters
    assert_usage_error(&["--model", "drop-0,fc", "--data", data], &["probability"]);
    assert_usage_error(&["--model", "\u{3000}relu,\u{3000}bogus,fc", "--data", data], &["at character 8"]);
    // newlines and spaces are read past, and the model is stored in canonical form
    let save = dir.path().join("run");
    let (code, stdout, stderr) = gpu_train(&[
        "--model",
        " C16 ,\n Relu,POOL ,fc",
        "--data",
        data,
        "--epochs",
        "1",
        "--save",
        s(&save),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("model: custom (c16,relu,pool,fc)"), "{stdout}");
    // batch norm over features cannot train on one value per feature
    let (code, _, stderr) =
        gpu_train(&["--model", "fc16,bn,relu,fc", "--data", data, "--batch-size", "1", "--no-save"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("batch of at least 2"), "{stderr}");
}

#[test]
fn model_takes_only_a_files_model_and_says_where_its_train_table_goes() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 40, 10, false);
    let file = dir.path().join("m.toml");
    std::fs::write(&file, "[model]\nlayers = \"c16,relu,pool,fc\"\n[train]\nepochs = 3\n").unwrap();
    let (code, stdout, stderr) =
        gpu_train(&["--model", s(&file), "--data", s(dir.path()), "--epochs", "1", "--no-save"]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("its [train] settings are used with --config"), "{stderr}");
    assert!(stdout.contains("model: m (c16,relu,pool,fc)"), "{stdout}");
    // --epochs 1 from the command line, not the file's 3
    assert!(!stdout.lines().any(|l| l.trim_start().starts_with("2 ")), "{stdout}");
}

fn train(args: &[&str]) -> String {
    let (code, stdout, stderr) = gpu_train(args);
    println!("{args:?} -> {code}\n{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    stdout
}

#[test]
fn a_model_using_every_token_trains_saves_resumes_exactly_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 12, 4, 150, 40, false);
    let data = s(dir.path());
    // every token: c<N>, c<N>k5, bn (after conv and after fc), relu, pool, gap, drop<P>, fc<N>, fc
    let model =
        "C16, bn, relu, c24k5, relu, pool, c16, relu, pool, drop0.2, c16, gap, fc20, bn, relu, drop0.1, fc";
    let common = ["--data", data, "--batch-size", "16", "--seed", "3"];
    let straight = dir.path().join("straight");
    let out = train(&[&common[..], &["--model", model, "--epochs", "3", "--save", s(&straight)]].concat());
    assert!(out.contains("gap") && out.contains("c24k5") && out.contains("total"), "summary table");
    let broken = dir.path().join("broken");
    train(&[&common[..], &["--model", model, "--epochs", "1", "--save", s(&broken)]].concat());
    // --resume rebuilds the network from the checkpoint alone; --epochs is the total
    let last = broken.join("last.safetensors");
    train(&["--data", data, "--resume", s(&last), "--epochs", "3"]);
    assert_eq!(tensors(&straight.join("last.safetensors")), tensors(&last), "resumed run differs");
    // a contradicting --model on resume is refused
    let (code, _, stderr) =
        gpu_train(&["--data", data, "--resume", s(&last), "--epochs", "4", "--model", "mlp"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--model"), "{stderr}");
    // eval and predict from the checkpoint alone
    let (code, stdout, stderr) = gpu_train(&["eval", "--checkpoint", s(&last), "--data", data]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("accuracy"), "{stdout}");
}

/// A 1-feature layer's output at batch 1 is shorter than one vec4: the matmuls that read
/// it must not bind it as one. It trains at batch 1 and 3, untuned and with `full` tuning
/// (a fresh cache), to the same weights. (tests/matmul_variants.rs runs every variant on
/// such sizes.)
#[test]
fn a_one_feature_dense_layer_trains_at_batch_one_tuned_or_not() {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 4, 3, 7, 3, false);
    let data = s(dir.path());
    for batch in ["1", "3"] {
        let mut weights = Vec::new();
        for tune in ["off", "full"] {
            let cache = tempfile::tempdir().unwrap();
            let save = dir.path().join(format!("b{batch}-{tune}"));
            let args = [
                "--data",
                data,
                "--model",
                "fc1,fc",
                "--batch-size",
                batch,
                "--epochs",
                "2",
                "--autotune",
                tune,
                "--save",
                s(&save),
            ];
            let (code, stdout, stderr) =
                run_cli::gpu_train_in(cache.path(), &[("GPU_TRAIN_CACHE_DIR", s(cache.path()))], &args);
            println!("{args:?} -> {code}\n{stdout}{stderr}");
            assert_eq!(code, 0, "{stderr}");
            weights.push(tensors(&save.join("last.safetensors")));
        }
        assert_eq!(
            weights[0], weights[1],
            "batch {batch}: the tuned run's weights differ from the default's"
        );
    }
}

#[test]
fn images_of_any_even_side_train_with_a_model_that_fits_them() {
    // 6x6 images: one pool fits, ref-cnn's two do not
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 6, 3, 24, 9, false);
    let data = s(dir.path());
    let save = dir.path().join("run");
    let args = ["--data", data, "--model", "c16,relu,pool,fc", "--epochs", "1", "--save", s(&save)];
    let (code, stdout, stderr) = gpu_train(&args);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(save.join("last.safetensors").exists(), "no checkpoint in {}", save.display());
    assert_usage_error(&["--data", data, "--epochs", "1"], &["--model ref-cnn: layer 6 (pool)", "even side"]);
    // refused before the adapter opens
    let (_, stdout, _) = gpu_train(&["--data", data, "--epochs", "1"]);
    assert!(!stdout.contains("adapter: "), "{stdout}");
}
