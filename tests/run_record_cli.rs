//! The run directory as the record of a run (config.toml, run.json, metrics.jsonl,
//! metrics.csv, curves.svg beside the checkpoints), `gpu-train report`, shell completions
//! and the manual page.

mod common;
#[path = "common/idx_files.rs"]
mod idx_files;
#[path = "common/run_cli.rs"]
mod run_cli;

use common::skip::skip_unless_ci;
use run_cli::gpu_train;
use std::path::Path;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_run_writes_its_record_and_a_resume_extends_it() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    idx_files::write_dataset(&data, 8, 3, 64, 16, false);
    let (run, extra) = (root.path().join("run"), root.path().join("extra.jsonl"));
    let common = ["--data", s(&data), "--batch-size", "16"];
    let (code, _, stderr) =
        gpu_train(&[&common[..], &["--epochs", "2", "--save", s(&run), "--metrics", s(&extra)]].concat());
    assert_eq!(code, 0, "{stderr}");
    for name in [
        "last.safetensors",
        "best.safetensors",
        "config.toml",
        "run.json",
        "metrics.jsonl",
        "metrics.csv",
        "curves.svg",
    ] {
        assert!(run.join(name).is_file(), "{name} is missing");
    }
    // metrics.jsonl is what --metrics writes; metrics.csv holds the same numbers
    assert_eq!(read(&run.join("metrics.jsonl")), read(&extra));
    let csv = read(&run.join("metrics.csv"));
    let header = "epoch,train_loss,train_acc,test_loss,test_acc,seconds,train_images_per_sec,lr";
    assert_eq!(csv.lines().next(), Some(header));
    for (row, line) in csv.lines().skip(1).zip(read(&extra).lines()) {
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        for (key, cell) in header.split(',').zip(row.split(',')) {
            assert_eq!(cell.parse::<f64>().unwrap(), json[key].as_f64().unwrap(), "{key} in {row}");
        }
    }
    // config.toml is --print-config's text; run.json names the adapter and the data
    let (_, printed, _) = gpu_train(&[&common[..], &["--epochs", "2", "--print-config"]].concat());
    assert_eq!(read(&run.join("config.toml")), printed);
    let info: serde_json::Value = serde_json::from_str(&read(&run.join("run.json"))).unwrap();
    let sessions = info["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(!sessions[0]["adapter"].as_str().unwrap().is_empty());
    assert_eq!(sessions[0]["data"].as_str().unwrap(), s(&data));
    let svg = read(&run.join("curves.svg"));
    assert!(svg.contains("<svg") && svg.contains("</svg>") && svg.contains("loss"), "{svg:.300}");
    assert!(svg.contains("accuracy (%)") && svg.contains("epoch"), "both panels, labelled");
    assert!(svg.matches("<circle").count() >= 8, "a marker per epoch, series and panel");

    // a resume to 3 epochs appends the third epoch to the same record
    let last = run.join("last.safetensors");
    let (code, _, stderr) = gpu_train(&["--data", s(&data), "--resume", s(&last), "--epochs", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let epochs: Vec<u64> = read(&run.join("metrics.jsonl"))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
    assert_eq!(read(&run.join("metrics.csv")).lines().count(), 4);
    let info: serde_json::Value = serde_json::from_str(&read(&run.join("run.json"))).unwrap();
    assert_eq!(info["sessions"][1]["from_epoch"], 2);

    // resuming epoch 1's checkpoint elsewhere carries epoch 1 only, then the new epochs
    let other = root.path().join("other");
    let (code, _, _) = gpu_train(&[&common[..], &["--epochs", "1", "--save", s(&other)]].concat());
    assert_eq!(code, 0);
    let branch = root.path().join("branch");
    let (code, _, stderr) = gpu_train(&[
        "--data",
        s(&data),
        "--resume",
        s(&other.join("last.safetensors")),
        "--epochs",
        "2",
        "--save",
        s(&branch),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read(&branch.join("metrics.jsonl")).lines().count(), 2);
}

#[test]
fn overwrite_replaces_the_whole_record() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    idx_files::write_dataset(&data, 8, 3, 64, 16, false);
    let run = root.path().join("run");
    let common = ["--data", s(&data), "--batch-size", "16", "--save", s(&run)];
    assert_eq!(gpu_train(&[&common[..], &["--epochs", "3"]].concat()).0, 0);
    std::fs::write(run.join("report.html"), "old").unwrap();
    assert_eq!(gpu_train(&[&common[..], &["--epochs", "1", "--overwrite"]].concat()).0, 0);
    assert_eq!(read(&run.join("metrics.jsonl")).lines().count(), 1, "the old run's epochs are gone");
    assert!(!run.join("report.html").exists(), "the old run's report is gone");
}

#[test]
fn report_writes_one_self_contained_page() {
    if !Path::new(FASHION).join("t10k-images-idx3-ubyte.gz").is_file() {
        skip_unless_ci(&format!("{FASHION} is missing (apt-get install dataset-fashion-mnist)"));
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    let args = ["--epochs", "1", "--limit-train", "512", "--limit-test", "300", "--save", s(&run)];
    let (code, _, stderr) = gpu_train(&args);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = gpu_train(&["report", s(&run)]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("on 300 test images"), "the run's --limit-test applies: {stdout}");
    let html = read(&run.join("report.html"));
    for part in [
        "<svg",           // the curves, inline
        "class=\"heat\"", // the confusion matrix
        "Ankle boot",     // with the class names
        "Per-class accuracy",
        "data:image/png;base64,", // the wrong images
        "predicted: ",
        "llvmpipe", // the adapter (CI and this machine use lavapipe)
        "time taken",
        "[train]", // the settings
        "c32",     // the model table
    ] {
        assert!(html.contains(part), "report.html lacks {part:?}");
    }
    // nothing to fetch when it opens
    for outside in ["<script", "<link", "src=\"http", "url(http", "@import"] {
        assert!(!html.contains(outside), "report.html refers outside itself: {outside:?}");
    }
    // --out, and bad input
    let out = root.path().join("elsewhere.html");
    assert_eq!(gpu_train(&["report", s(&run), "--out", s(&out)]).0, 0);
    assert!(out.is_file());
    let (code, _, stderr) = gpu_train(&["report", s(&root.path().join("nope"))]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no such run directory"), "{stderr}");
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, stderr) = gpu_train(&["report", s(&empty)]);
    assert_eq!(code, 1);
    assert!(stderr.contains("holds no checkpoint"), "{stderr}");
}

#[test]
fn completions_for_each_shell_and_a_manual_page() {
    for (shell, marker) in
        [("bash", "_gpu__train()"), ("zsh", "#compdef gpu-train"), ("fish", "complete -c gpu-train")]
    {
        let (code, stdout, stderr) = gpu_train(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: {stdout:.200}");
        for word in ["report", "download", "epochs", "config"] {
            assert!(stdout.contains(word), "{shell} completes {word}");
        }
    }
    // bash completes a subcommand's options and values (clap_complete's own script would not
    // for a hyphenated program name)
    let (_, script, _) = gpu_train(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.bash"), &script).unwrap();
    let probe = "source c.bash; \
        COMP_WORDS=(gpu-train download --dataset ''); COMP_CWORD=3; _gpu__train gpu-train '' --dataset; echo \"A: ${COMPREPLY[*]}\"; \
        COMP_WORDS=(gpu-train report --chec); COMP_CWORD=2; _gpu__train gpu-train --chec report; echo \"B: ${COMPREPLY[*]}\"";
    let out =
        std::process::Command::new("bash").args(["-c", probe]).current_dir(dir.path()).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("A: fashion-mnist mnist"), "{out}");
    assert!(out.contains("B: --checkpoint"), "{out}");
    let (code, _, stderr) = gpu_train(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, man, _) = gpu_train(&["man"]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH gpu-train"), "{man:.200}");
    for word in ["\\-\\-epochs", "report", "download"] {
        assert!(man.contains(word), "the manual page lists {word}");
    }
    // with --dir, a page per subcommand too: the pages the main one refers to
    let (code, _, stderr) = gpu_train(&["man", "--dir", s(&dir.path().join("man"))]);
    assert_eq!(code, 0, "{stderr}");
    let download = read(&dir.path().join("man/gpu-train-download.1"));
    assert!(download.contains(".TH gpu-train-download") && download.contains("mirror"), "{download:.300}");
    assert!(dir.path().join("man/gpu-train-report.1").is_file());
}

#[test]
fn training_without_data_says_how_to_get_it() {
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = gpu_train(&["--data", s(empty.path())]);
    assert_eq!(code, 1);
    assert!(stderr.contains("missing train-images-idx3-ubyte"), "{stderr}");
    assert!(stderr.contains("gpu-train download --dir"), "{stderr}");
    // --download tries to fetch into --data; with no network here the mirrors fail clearly
    // (on a machine with network access, a short run on what it fetched)
    let short = ["--download", "--epochs", "1", "--limit-train", "256", "--limit-test", "128", "--no-save"];
    let (code, stdout, stderr) = gpu_train(&[&["--data", s(empty.path())][..], &short].concat());
    println!("{stdout}{stderr}");
    if code == 0 {
        // a machine with network access fetched the data and trained
        assert!(stdout.contains("verified"), "{stdout}");
    } else {
        assert_eq!(code, 1);
        assert!(stdout.contains("fetching Fashion-MNIST into"), "{stdout}");
        assert!(stderr.contains("no mirror gave a good copy"), "{stderr}");
    }
}
