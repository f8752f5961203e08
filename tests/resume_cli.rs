//! The command line around checkpoints: --save/--resume give the run an unbroken run would,
//! Ctrl-C and SIGTERM save, exit 130 and print the command line that continues the run
//! exactly, contradicting or damaged input is a one-line error, older checkpoints still
//! resume, a diverging run keeps the last good checkpoint, and eval/predict read what
//! training wrote.

#[path = "common/idx_files.rs"]
mod idx_files;
#[path = "common/png_file.rs"]
mod png_file;
#[path = "common/run_cli.rs"]
mod run_cli;
#[path = "common/skip.rs"]
mod skip;
#[path = "common/tensors.rs"]
mod tensors;
use png_file::png_bytes;
use run_cli::gpu_train;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use tensors::tensors;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Per-epoch metrics without the timings, which differ between runs.
fn metrics(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("train_images_per_sec");
            v.to_string()
        })
        .collect()
}

/// Rewrites a checkpoint's metadata in place (tensors unchanged).
fn edit_metadata(path: &Path, edit: impl FnOnce(&mut HashMap<String, String>)) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    edit(&mut meta);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    std::fs::write(path, safetensors::tensor::serialize(st.tensors(), Some(meta)).unwrap()).unwrap();
}

fn train(data: &Path, save: &Path, metrics_file: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args =
        vec!["--data", s(data), "--batch-size", "16", "--save", s(save), "--metrics", s(metrics_file)];
    args.extend_from_slice(extra);
    gpu_train(&args)
}

#[test]
fn resuming_from_the_command_line_matches_an_unbroken_run() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    idx_files::write_dataset(&data, 12, 3, 150, 30, false);
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let (ma, mb) = (root.path().join("a.jsonl"), root.path().join("b.jsonl"));

    let (code, _, stderr) = train(&data, &a, &ma, &["--epochs", "4", "--seed", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = train(&data, &b, &mb, &["--epochs", "2", "--seed", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let resume = b.join("last.safetensors");
    let (code, stdout, stderr) =
        gpu_train(&["--data", s(&data), "--resume", s(&resume), "--epochs", "4", "--metrics", s(&mb)]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("resumed"), "{stdout}");
    assert_eq!(metrics(&ma), metrics(&mb), "metrics of the resumed run differ");
    assert_eq!(metrics(&mb).len(), 4);
    assert_eq!(tensors(&a.join("last.safetensors")), tensors(&b.join("last.safetensors")));
    assert!(a.join("best.safetensors").is_file());

    // eval reads the checkpoint and reproduces the run's final test accuracy.
    let last: serde_json::Value = serde_json::from_str(&metrics(&ma)[3]).unwrap();
    let (code, stdout, stderr) = gpu_train(&["eval", "--checkpoint", s(&resume), "--data", s(&data)]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    let want = format!("accuracy {:.2}%", 100.0 * last["test_acc"].as_f64().unwrap());
    assert!(stdout.contains(&want), "eval should report '{want}': {stdout}");
    assert!(stdout.contains("confusion matrix"), "{stdout}");
    assert!(stdout.contains("per-class accuracy"), "{stdout}");
    // its default batch is the largest that fits (all 30 images); 7 a step (a short last
    // one) and 1 a step print the same report
    for batch in ["7", "1"] {
        let (code, other, stderr) =
            gpu_train(&["eval", "--checkpoint", s(&resume), "--data", s(&data), "--batch-size", batch]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(other, stdout, "eval at --batch-size {batch} differs from the default batch");
    }
    // a limit beyond the test set uses it all, with a note as in training
    let (code, other, stderr) =
        gpu_train(&["eval", "--checkpoint", s(&resume), "--data", s(&data), "--limit-test", "1000"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(other, stdout);
    assert!(
        stderr.contains("--limit-test 1000 is more than the 30 samples there are; using all 30"),
        "{stderr}"
    );

    // Contradicting the checkpoint is an error naming the mismatch.
    for (extra, needle) in [
        (&["--lr", "0.01"][..], "--lr 0.01"),
        (&["--lr", "1e-7"][..], "--lr 1e-7 (the checkpoint has 0.001)"),
        (&["--batch-size", "8"], "--batch-size 8"),
        (&["--classes", "5"], "--classes 5 (the checkpoint has 3)"),
        (&["--limit-train", "100"], "training samples"),
        (&["--epochs", "4"], "already holds 4 epochs"),
    ] {
        let mut args = vec!["--data", s(&data), "--resume", s(&resume), "--no-save"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--epochs") {
            args.extend_from_slice(&["--epochs", "6"]);
        }
        let (code, _, stderr) = gpu_train(&args);
        println!("{extra:?}: {stderr}");
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(needle), "'{stderr}' should mention '{needle}'");
        assert!(stderr.contains("last.safetensors"), "{stderr}");
    }
    // --momentum with the checkpoint's Adam is a usage error.
    let (code, _, stderr) =
        gpu_train(&["--data", s(&data), "--resume", s(&resume), "--no-save", "--momentum", "0.5"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--momentum") && stderr.contains("--optimizer sgd"), "{stderr}");

    // A checkpoint written before the run's plan was stored still resumes; --epochs is then
    // required, since the run's own total is unknown.
    let old = root.path().join("old.safetensors");
    std::fs::copy(b.join("last.safetensors"), &old).unwrap();
    edit_metadata(&old, |m| {
        for key in ["target_epochs", "limit_train", "limit_test"] {
            assert!(m.remove(key).is_some(), "{key} should be stored");
        }
    });
    let (code, _, stderr) = gpu_train(&["--data", s(&data), "--resume", s(&old), "--no-save"]);
    println!("{stderr}");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("'--epochs <EPOCHS>' is required") && stderr.contains("old.safetensors"),
        "{stderr}"
    );
    let (code, stdout, stderr) =
        gpu_train(&["--data", s(&data), "--resume", s(&old), "--no-save", "--epochs", "5"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("done: final"), "{stdout}");

    let other = root.path().join("other");
    std::fs::create_dir(&other).unwrap();
    idx_files::write_dataset(&other, 16, 3, 150, 30, false);
    let (code, _, stderr) = gpu_train(&["eval", "--checkpoint", s(&resume), "--data", s(&other)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("16x16 here but 12x12 in the checkpoint"), "{stderr}");
}

#[test]
fn damaged_or_missing_checkpoints_are_one_line_errors() {
    let root = tempfile::tempdir().unwrap();
    idx_files::write_dataset(root.path(), 8, 3, 20, 10, false);
    let file = root.path().join("bad.safetensors");
    for contents in [&b""[..], b"garbage that is not a checkpoint", &[0xff; 64]] {
        std::fs::write(&file, contents).unwrap();
        for cmd in [&["--resume", s(&file), "--no-save"][..], &["eval", "--checkpoint", s(&file)]] {
            let mut args = cmd.to_vec();
            args.extend_from_slice(&["--data", s(root.path())]);
            let (code, _, stderr) = gpu_train(&args);
            println!("{stderr}");
            assert_eq!(code, 1, "{stderr}");
            assert!(stderr.contains("bad.safetensors: "), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        }
    }
    let missing = root.path().join("missing.safetensors");
    let (code, _, stderr) = gpu_train(&["--resume", s(&missing), "--data", s(root.path()), "--no-save"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.safetensors: cannot read checkpoint"), "{stderr}");
    // eval says so before it opens the adapter (and prints nothing else)
    let (code, stdout, stderr) = gpu_train(&["eval", "--checkpoint", s(&missing)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("missing.safetensors: cannot read checkpoint"), "{stderr}");
    assert_eq!(stdout, "", "{stdout}");
}

/// The shell command line a run printed after "continue with: ".
fn continue_line(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| l.strip_prefix("continue with: ")).map(String::from)
}

/// `s` quoted for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Trains 5 epochs straight on a sample-limited set, then again with `signal` sent inside
/// epoch 2 and a resume: the command line the run printed, run as it stands (with the test
/// binary for `gpu-train`), or for a killed run, which prints nothing, a bare --resume.
/// Returns the interrupted run's exit code and output after checking that the two agree.
fn stop_and_resume(signal: &str) -> (Option<i32>, String) {
    stop_and_resume_with(signal, &[])
}

/// `stop_and_resume` with `extra` flags on both runs (not on the resume: the printed
/// command line must carry what it needs).
fn stop_and_resume_with(signal: &str, extra: &[&str]) -> (Option<i32>, String) {
    let root = tempfile::tempdir().unwrap();
    // A space in the path: the printed command line must quote it.
    let data = root.path().join("my data");
    std::fs::create_dir(&data).unwrap();
    idx_files::write_dataset(&data, 16, 4, 1300, 60, false);
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let (ma, mb) = (root.path().join("a.jsonl"), root.path().join("b.jsonl"));
    let mut common = vec![
        "--batch-size",
        "4",
        "--epochs",
        "5",
        "--seed",
        "9",
        "--limit-train",
        "1200",
        "--limit-test",
        "40",
    ];
    common.extend_from_slice(extra);
    let mut args = vec!["--data", s(&data), "--save", s(&a), "--metrics", s(&ma)];
    args.extend_from_slice(&common);
    let (code, _, stderr) = gpu_train(&args);
    assert_eq!(code, 0, "{stderr}");

    let mut child = run_cli::command()
        .args(["--data", s(&data), "--save", s(&b), "--metrics", s(&mb)])
        .args(&common)
        .current_dir(root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Epochs take about 2 s here; the pause aims inside epoch 2. Landing on an epoch end
    // instead is also valid: the signal then saves that epoch and exits 130.
    let stdout = signal_after_epoch_1(&mut child, 800, &format!("kill {signal} \"$0\""));
    let code = child.wait().unwrap().code();
    println!("{signal}: exit {code:?}\n{stdout}");
    assert!(!stdout.contains("done: final"), "the run should have stopped early: {stdout}");
    assert!(b.join("last.safetensors").is_file(), "epoch 1's checkpoint should exist");

    let resume = match continue_line(&stdout) {
        Some(line) => {
            // the program as the run was started (gpu-train when that is on PATH); the test
            // binary either way
            let (_, rest) = line.split_once(" --resume ").expect("the line has --resume");
            format!("{} --resume {rest}", sh_quote(env!("CARGO_BIN_EXE_gpu-train")))
        }
        None => {
            let last = b.join("last.safetensors");
            let words = [
                env!("CARGO_BIN_EXE_gpu-train"),
                "--resume",
                s(&last),
                "--data",
                s(&data),
                "--metrics",
                s(&mb),
            ];
            words.map(sh_quote).join(" ")
        }
    };
    println!("resuming with: {resume}");
    let out = std::process::Command::new("sh")
        .args(["-c", &resume])
        .env_remove("NODEVICE_SELECT")
        .env_remove("MESA_VK_DEVICE_SELECT")
        .current_dir(root.path())
        .output()
        .unwrap();
    let (out_text, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{out_text}{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out_text.contains("(1200 train, 40 test"), "the run's limits apply again: {out_text}");
    assert_eq!(metrics(&ma), metrics(&mb), "the interrupted and resumed run differs");
    // the run directory's record: every epoch once, in order, as in the straight run
    assert_eq!(metrics(&b.join("metrics.jsonl")), metrics(&ma), "the run directory's metrics.jsonl");
    assert_eq!(metrics(&a.join("metrics.jsonl")), metrics(&ma));
    let csv = std::fs::read_to_string(b.join("metrics.csv")).unwrap();
    let epochs: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(epochs, ["1", "2", "3", "4", "5"], "{csv}");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["sessions"].as_array().unwrap().len(), 2, "a fresh session and the resumed one: {run}");
    assert_eq!(tensors(&a.join("last.safetensors")), tensors(&b.join("last.safetensors")));
    (code, stdout)
}

/// Reads the run's stdout to its end, running `shell` (with the run's process id as $0)
/// `pause_ms` after epoch 1's line.
fn signal_after_epoch_1(child: &mut std::process::Child, pause_ms: u64, shell: &str) -> String {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout += &format!("{line}\n");
        if line.trim_start().starts_with("1 ") {
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            let pid = child.id().to_string();
            let status = std::process::Command::new("sh").args(["-c", shell, &pid]).status().unwrap();
            assert!(status.success(), "{shell}");
            break;
        }
    }
    for line in lines {
        stdout += &format!("{}\n", line.unwrap());
    }
    stdout
}

/// The checks common to Ctrl-C and SIGTERM: saved, and one full command line printed.
fn check_saved(stdout: &str) {
    assert!(stdout.contains("saved "), "{stdout}");
    let line = continue_line(stdout).expect("a 'continue with: ' line");
    let (program, _) = line.split_once(" --resume ").expect("the line has --resume");
    // not on PATH here, so the program as it was started: the test binary's path
    assert!(program == "gpu-train" || program.trim_matches('\'').ends_with("gpu-train"), "{line}");
    assert!(line.contains("--data '") && line.contains("my data'"), "the data path needs quoting: {line}");
    assert!(line.contains("--metrics "), "{line}");
}

#[test]
fn ctrl_c_saves_exits_130_and_resumes_exactly() {
    let (code, stdout) = stop_and_resume("-INT");
    assert_eq!(code, Some(130), "Ctrl-C should exit with 130");
    check_saved(&stdout);
}

#[test]
fn sigterm_saves_exits_130_and_resumes_exactly() {
    // Batch schedulers and containers stop jobs with SIGTERM; it is handled like Ctrl-C.
    // With --f16-storage, which the printed command line must carry: where the tuner
    // chose the f16 variant, a resume without it would continue in f32.
    let (code, stdout) = stop_and_resume_with("-TERM", &["--f16-storage"]);
    let line = continue_line(&stdout).expect("a 'continue with: ' line");
    assert!(line.ends_with(" --f16-storage"), "{line}");
    assert_eq!(code, Some(130), "SIGTERM should exit with 130, as Ctrl-C does");
    check_saved(&stdout);
}

#[test]
fn kill_9_loses_at_most_the_epoch_in_progress() {
    // Killed outright, the run keeps epoch 1's checkpoint; resuming redoes epoch 2 and
    // still ends where a straight run does.
    let (code, _) = stop_and_resume("-KILL");
    assert_eq!(code, None, "kill -9 leaves no exit code");
}

#[test]
fn a_diverging_run_stops_naming_the_epoch_and_keeps_the_last_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    idx_files::write_dataset(root.path(), 8, 3, 40, 10, false);
    let save = root.path().join("run");
    let m = root.path().join("m.jsonl");
    let (code, _, stderr) = train(root.path(), &save, &m, &["--epochs", "1"]);
    assert_eq!(code, 0, "{stderr}");
    // The run goes on at a learning rate it cannot survive (set in its checkpoint).
    let last = save.join("last.safetensors");
    edit_metadata(&last, |meta| {
        meta.insert("lr".into(), "1e30".into());
    });
    let good = std::fs::read(&last).unwrap();
    let (code, _, stderr) =
        gpu_train(&["--data", s(root.path()), "--resume", s(&last), "--epochs", "2", "--metrics", s(&m)]);
    println!("{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("diverged in epoch 2"), "{stderr}");
    assert!(stderr.contains("lower --lr (now 1e30)"), "{stderr}");
    assert!(stderr.contains("is kept"), "{stderr}");
    assert_eq!(std::fs::read(&last).unwrap(), good, "the good checkpoint was overwritten");
}

#[test]
fn predict_classifies_pngs_and_reports_bad_files_separately() {
    let root = tempfile::tempdir().unwrap();
    idx_files::write_dataset(root.path(), 12, 3, 150, 30, false);
    let save = root.path().join("run");
    let m = root.path().join("m.jsonl");
    let (code, _, stderr) = train(root.path(), &save, &m, &["--epochs", "4"]);
    assert_eq!(code, 0, "{stderr}");
    let ckpt = save.join("best.safetensors");

    // Class c is bright in horizontal band c (of 3): a grey 12x12 image of class 2 and a
    // colour 48x48 image of class 0.
    let (pixels, labels) = idx_files::synthetic_split(3, 12, 3, 11);
    assert_eq!(labels[2], 2);
    let grey = root.path().join("two.png");
    std::fs::write(&grey, png_bytes(12, 12, png::ColorType::Grayscale, &pixels[2 * 144..3 * 144])).unwrap();
    let mut rgb = Vec::new();
    for y in 0..48 {
        for _ in 0..48 {
            let v = if y < 16 { 220 } else { 10 };
            rgb.extend_from_slice(&[v, v, v]);
        }
    }
    let colour = root.path().join("zero.png");
    std::fs::write(&colour, png_bytes(48, 48, png::ColorType::Rgb, &rgb)).unwrap();
    let junk = root.path().join("junk.png");
    std::fs::write(&junk, "not a png").unwrap();

    let (code, stdout, stderr) =
        gpu_train(&["predict", "--checkpoint", s(&ckpt), s(&grey), s(&junk), s(&colour)]);
    println!("{stdout}{stderr}");
    assert_eq!(code, 1, "a bad file should make the exit code 1");
    assert!(stderr.contains("junk.png: not a readable PNG"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let answer = |name: &str| stdout.lines().find(|l| l.contains(name)).unwrap_or("").to_string();
    assert!(answer("two.png").contains(": 2 "), "two.png should be class 2 first: {stdout}");
    assert!(answer("zero.png").contains(": 0 "), "zero.png should be class 0 first: {stdout}");
    assert_eq!(answer("two.png").matches('%').count(), 3, "top 3 expected: {stdout}");
}

#[test]
fn one_interrupt_delivered_twice_still_saves() {
    // `timeout` and some schedulers signal the process and then its process group: two
    // SIGINTs close together are one request, which saves and exits 130. (50 ms apart, so
    // that the kernel does not merge them into one delivery.)
    let root = tempfile::tempdir().unwrap();
    idx_files::write_dataset(root.path(), 16, 4, 1300, 60, false);
    let save = root.path().join("run");
    let mut child = run_cli::command()
        .args(["--data", s(root.path()), "--save", s(&save), "--batch-size", "64", "--epochs", "5"])
        .current_dir(root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // inside epoch 2, whose groups of 16 steps take about half a second here
    let stdout = signal_after_epoch_1(&mut child, 200, "kill -INT \"$0\"; sleep 0.05; kill -INT \"$0\"");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("interrupted again"), "{stderr}");
    assert!(stdout.contains("saved ") && save.join("last.safetensors").is_file(), "{stdout}");
}

#[test]
fn ctrl_c_during_start_up_quits_at_once_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    idx_files::write_dataset(root.path(), 16, 4, 1300, 60, false);
    let save = root.path().join("run");
    let mut child = run_cli::command()
        .args(["--data", s(root.path()), "--save", s(&save), "--epochs", "2"])
        .current_dir(root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    // the data line comes after the handler is installed and before the device opens
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout += &format!("{line}\n");
        if line.starts_with("data: ") {
            let pid = child.id().to_string();
            assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
            break;
        }
    }
    for line in lines {
        stdout += &format!("{}\n", line.unwrap());
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    // an adapter that opens and compiles in a flash may already be training: it then saves
    let quit = stderr.contains("interrupted before the first training step: nothing to save; quitting");
    assert!(quit || stdout.contains("saved "), "{stdout}{stderr}");
    if quit {
        assert!(!save.join("last.safetensors").exists(), "nothing was trained, nothing saved");
    } else {
        skip::skip("start-up was over before the signal came: the run trained and saved");
    }
}
