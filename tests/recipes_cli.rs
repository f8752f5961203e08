//! Training settings from the command line: schedules, label smoothing, AdamW and SGD
//! options, --patience, --normalize and --augment. Each is checked for bad values (usage
//! errors, exit 2), stored in the checkpoint, and refused when a resume contradicts it.

#[path = "common/recipe_bench.rs"]
mod recipe_bench;
use recipe_bench::{Bench, field, gpu_train, metadata};

#[test]
fn a_schedule_sets_each_epochs_rate_and_a_resume_keeps_it() {
    let b = Bench::new();
    // 4 steps an epoch, 3 epochs: one warm-up epoch, then a cosine over 8 steps
    let flags = ["--epochs", "3", "--schedule", "cosine", "--warmup-epochs", "1", "--lr", "0.002"];
    let (_, lines) = b.train("run", &flags);
    let lr = field(&lines, "lr");
    println!("{lr:?}");
    // end of warm-up: the full rate; then the cosine at the epochs' last steps (8 and 12)
    let cosine = |k: f64| 0.002 * 0.5 * (1.0 + (std::f64::consts::PI * k / 8.0).cos());
    assert!((lr[0] - 0.002).abs() < 1e-15);
    assert!((lr[1] - cosine(3.0)).abs() < 1e-15, "{lr:?}");
    assert!((lr[2] - cosine(7.0)).abs() < 1e-15, "{lr:?}");
    b.refused_on_resume(
        "run",
        &["--schedule", "constant"],
        "--schedule constant (the checkpoint has cosine)",
    );
    b.usage_error(&["--schedule", "onecycle", "--warmup-epochs", "1"], "has its own warm-up");
    b.usage_error(&["--schedule", "linear"], "unknown schedule 'linear'");
}

#[test]
fn label_smoothing_is_stored_and_kept_on_resume() {
    let b = Bench::new();
    let (_, plain) = b.train("a", &["--epochs", "1", "--label-smoothing", "0"]);
    let (_, smooth) = b.train("b", &["--epochs", "1", "--label-smoothing", "0.2"]);
    let (plain_train, smooth_train) = (field(&plain, "train_loss")[0], field(&smooth, "train_loss")[0]);
    println!("train loss {plain_train} plain, {smooth_train} smoothed");
    assert_ne!(plain_train, smooth_train, "smoothing changes the training loss");
    assert!(field(&smooth, "test_loss")[0].is_finite());
    b.refused_on_resume("b", &["--label-smoothing", "0.1"], "--label-smoothing 0.1 (the checkpoint has 0.2)");
    b.usage_error(&["--label-smoothing", "1"], "'1' is not a number in [0, 1)");
}

#[test]
fn adamw_and_sgd_options_are_checked_stored_and_kept_on_resume() {
    let b = Bench::new();
    for (flags, needle) in [
        (&["--weight-decay", "0.1"][..], "needs '--optimizer adamw'"),
        (&["--optimizer", "adam", "--weight-decay", "0.1"], "needs '--optimizer adamw'"),
        (&["--nesterov"], "needs '--optimizer sgd'"),
        (&["--optimizer", "adamw", "--nesterov"], "needs '--optimizer sgd'"),
        (&["--optimizer", "sgd", "--nesterov", "--momentum", "0"], "momentum above 0"),
        (&["--optimizer", "adamw", "--weight-decay", "-1"], "at least 0"),
    ] {
        b.usage_error(flags, needle);
    }
    // AdamW with its default decay trains and records it; a resume keeps it
    let (stdout, _) = b.train("run", &["--epochs", "1", "--optimizer", "adamw"]);
    assert!(stdout.contains("AdamW lr 0.001"), "{stdout}");
    let meta = metadata(&b.last("run"));
    assert_eq!((meta["optimizer"].as_str(), meta["weight_decay"].as_str()), ("adamw", "0.01"));
    b.refused_on_resume("run", &["--weight-decay", "0.1"], "--weight-decay 0.1 (the checkpoint has 0.01)");
    let last = b.last("run");
    let (code, _, stderr) =
        gpu_train(&["--data", b.data(), "--resume", last.to_str().unwrap(), "--epochs", "2"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn patience_stops_a_run_that_stopped_improving() {
    let b = Bench::new();
    // a learning rate too small to change a prediction: no epoch after the first gains
    let (stdout, lines) = b.train("run", &["--epochs", "10", "--lr", "1e-12", "--patience", "2"]);
    assert!(stdout.contains("stopping early: no gain in test accuracy for 2 epoch(s)"), "{stdout}");
    assert_eq!(lines.len(), 3, "epochs 1, 2 and 3 ran");
    b.usage_error(&["--patience", "0"], "0 is not in 1..=100000");
}

#[test]
fn standardised_inputs_are_stored_and_used_by_eval() {
    let b = Bench::new();
    let (stdout, lines) = b.train("run", &["--epochs", "2", "--normalize", "standard"]);
    assert!(stdout.contains("inputs standardised (mean"), "{stdout}");
    let last = b.last("run");
    assert!(metadata(&last)["normalize"].starts_with("standard:"));
    // eval normalises as training did: the run's last test accuracy, exactly
    let acc = field(&lines, "test_acc")[1];
    let (code, stdout, stderr) =
        gpu_train(&["eval", "--checkpoint", last.to_str().unwrap(), "--data", b.data()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("accuracy {:.2}%", 100.0 * acc)), "{stdout} vs {acc}");
    b.refused_on_resume("run", &["--normalize", "unit"], "--normalize unit (the checkpoint has standard)");
}

#[test]
fn augmentation_is_stored_and_kept_on_resume() {
    let b = Bench::new();
    let (stdout, _) = b.train("run", &["--epochs", "1", "--augment", "crop=2,flip"]);
    assert!(stdout.contains("augment crop=2,flip"), "{stdout}");
    b.refused_on_resume("run", &["--augment", "flip"], "--augment flip (the checkpoint has crop=2,flip)");
    b.usage_error(&["--augment", "rotate"], "unknown augmentation 'rotate'");
}

#[test]
fn gradient_clipping_is_stored_and_kept_on_resume() {
    let b = Bench::new();
    let (stdout, _) = b.train("run", &["--epochs", "1", "--clip-grad-norm", "0.01"]);
    assert!(stdout.contains("gradient norm clipped at 0.01"), "{stdout}");
    assert_eq!(metadata(&b.last("run"))["clip_grad_norm"], "0.01");
    b.refused_on_resume("run", &["--clip-grad-norm", "2"], "--clip-grad-norm 2 (the checkpoint has 0.01)");
    b.train("plain", &["--epochs", "1"]);
    b.refused_on_resume("plain", &["--clip-grad-norm", "1"], "--clip-grad-norm 1 (the checkpoint has none)");
    for bad in ["0", "-1", "inf", "x"] {
        b.usage_error(&["--clip-grad-norm", bad], "is not a positive finite number");
    }
    // clipping changes the run: the same seed without it ends elsewhere
    let lines = |save: &str| std::fs::read_to_string(b.path(&format!("{save}.jsonl"))).unwrap();
    let clipped: serde_json::Value = serde_json::from_str(lines("run").lines().next().unwrap()).unwrap();
    let plain: serde_json::Value = serde_json::from_str(lines("plain").lines().next().unwrap()).unwrap();
    assert_ne!(clipped["train_loss"], plain["train_loss"], "a norm of 0.01 clipped nothing");
}
