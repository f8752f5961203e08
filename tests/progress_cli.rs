//! Progress output: plain lines without a terminal (and with --quiet), the live bar on a
//! terminal (a pty from util-linux's `script`, with its timing log), and the up-front
//! estimate of the run's duration.

mod common;
#[path = "common/idx_files.rs"]
mod idx_files;
#[path = "common/run_cli.rs"]
mod run_cli;

use common::skip::skip_unless_ci;
use run_cli::gpu_train;

/// An 8x8 3-class set of 3,072 training images: 192 steps an epoch at batch 16, about a
/// second or two on lavapipe.
fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 8, 3, 3072, 64, false);
    dir
}

fn train_args(data: &tempfile::TempDir) -> Vec<String> {
    let data = data.path().to_str().unwrap().to_string();
    ["--data", &data, "--batch-size", "16", "--epochs", "2", "--no-save"].map(String::from).to_vec()
}

#[test]
fn without_a_terminal_progress_is_plain_lines() {
    let data = dataset();
    let mut args = train_args(&data);
    args.extend(["--log-every", "0.2"].map(String::from));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let (code, stdout, stderr) = gpu_train(&refs);
    println!("{stdout}{stderr}");
    assert_eq!(code, 0, "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains('\r') && !text.contains('\x1b'),
            "no bar or escape codes off a terminal: {text:?}"
        );
    }
    let progress: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch 1/2 train: ")).collect();
    // the epoch's seconds (its row's sixth column): a fast adapter may finish before 0.2 s
    let first_epoch_secs: f64 = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|v| v.parse().ok())
        .unwrap();
    if first_epoch_secs >= 1.0 {
        assert!(!progress.is_empty(), "a line every 0.2 s of a {first_epoch_secs} s epoch: {stdout}");
    } else {
        println!("NOTE: the epoch took {first_epoch_secs} s; periodic lines are checked only if any came");
    }
    for line in &progress {
        for part in ["/192 batches (", "%), ", " images/s, loss ", ", accuracy ", "%, ETA epoch ", ", run "] {
            assert!(line.contains(part), "{line:?} lacks {part:?}");
        }
    }
    assert_eq!(stdout.lines().filter(|l| l.starts_with("estimate: about ")).count(), 1, "{stdout}");
    let rows = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("1 ") || l.trim_start().starts_with("2 "))
        .count();
    assert_eq!(rows, 2, "one row per epoch: {stdout}");

    // the default interval (30 s) prints none in so short a run; --quiet is the same path
    let mut quiet = train_args(&data);
    quiet.push("--quiet".into());
    let refs: Vec<&str> = quiet.iter().map(|s| s.as_str()).collect();
    let (code, stdout, _) = gpu_train(&refs);
    assert_eq!(code, 0);
    assert!(!stdout.contains("epoch 1/2 train: "), "{stdout}");
    assert!(stdout.contains("estimate: about "), "{stdout}");
}

#[test]
fn log_every_must_be_a_positive_number() {
    for bad in ["0", "-1", "soon"] {
        let (code, _, stderr) = gpu_train(&[&format!("--log-every={bad}")]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains("--log-every"), "{bad}: {stderr}");
    }
}

/// (seconds since start, text) of each write in `script`'s advanced timing log ("O delay
/// bytes" per output write; the log file opens with a "Script started" line of its own).
fn timed_writes(timing: &str, output: &[u8]) -> Vec<(f64, String)> {
    let mut at = 0.0;
    let mut offset = match output.starts_with(b"Script started") {
        true => output.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1),
        false => 0,
    };
    let mut out = Vec::new();
    for line in timing.lines() {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(delay), Some(len)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        at += delay.parse::<f64>().unwrap_or(0.0);
        let len: usize = len.parse().unwrap_or(0);
        if kind == "O" {
            let end = (offset + len).min(output.len());
            out.push((at, String::from_utf8_lossy(&output[offset..end]).into_owned()));
            offset = end;
        }
    }
    out
}

#[test]
fn on_a_terminal_a_live_bar_redraws_at_least_every_two_seconds() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        skip_unless_ci("util-linux's `script` is not installed (needed for a pty)");
        return;
    }
    let data = dataset();
    let dir = tempfile::tempdir().unwrap();
    let (out, timing) = (dir.path().join("out"), dir.path().join("timing"));
    let mut words = vec![env!("CARGO_BIN_EXE_gpu-train").to_string()];
    words.extend(train_args(&data));
    let command = format!("stty rows 40 cols 120; {}", words.join(" "));
    let status = std::process::Command::new("script")
        .args(["-q", "-e", "-f", "--log-out"])
        .arg(&out)
        .arg("--log-timing")
        .arg(&timing)
        .args(["--logging-format", "advanced", "-c", &command])
        .env_remove("NODEVICE_SELECT")
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    let output = std::fs::read(&out).unwrap();
    let writes = timed_writes(&std::fs::read_to_string(&timing).unwrap(), &output);
    let text = String::from_utf8_lossy(&output);
    println!("{text}");
    assert!(status.success(), "{text}");
    // the bar: phase, bar, counts, percentage, speed, both ETAs, running loss and accuracy
    let bar = writes
        .iter()
        .map(|(_, w)| w.as_str())
        .find(|w| w.contains("epoch 1/2 train [") && w.contains(" loss "))
        .expect("a drawn training bar with running metrics");
    for part in ["/192 ", "% ", " img/s ETA ", " run ", " loss ", " acc "] {
        assert!(bar.contains(part), "{bar:?} lacks {part:?}");
    }
    assert!(text.contains("epoch 1/2 test ["), "evaluation has its own bar");
    assert!(text.contains("estimate: about "), "{text}");
    // from the first bar to the last, the screen changes at least every 2 s
    let drawn: Vec<f64> = writes.iter().filter(|(_, w)| w.contains(" [")).map(|(t, _)| *t).collect();
    let gaps: Vec<f64> = drawn.windows(2).map(|w| w[1] - w[0]).collect();
    let widest = gaps.iter().cloned().fold(0.0, f64::max);
    println!(
        "{} bar draws over {:.1} s, widest gap {widest:.2} s",
        drawn.len(),
        drawn.last().unwrap_or(&0.0) - drawn[0]
    );
    let span = drawn.last().unwrap_or(&0.0) - drawn.first().unwrap_or(&0.0);
    if span >= 2.0 {
        assert!(drawn.len() >= 4, "the bar redraws as training goes");
    }
    assert!(widest <= 2.0, "the bar went {widest:.2} s without a redraw");
}

#[test]
fn durations_read_the_way_people_say_them() {
    use gpu_train::progress::{short_duration, spoken_duration};
    let cases =
        [(0.2, "0s", "1 s"), (44.6, "45s", "45 s"), (60.0, "1m00s", "1 min"), (754.0, "12m34s", "13 min")];
    for (secs, short, spoken) in cases {
        assert_eq!(
            (short_duration(secs).as_str(), spoken_duration(secs).as_str()),
            (short, spoken),
            "{secs}"
        );
    }
    assert_eq!(short_duration(9_060.0), "2h31m");
    assert_eq!(spoken_duration(9_060.0), "2 h 31 min");
    assert_eq!(spoken_duration(3_599.0), "1 h 0 min");
    assert_eq!(spoken_duration(59.6), "1 min");
    assert_eq!(short_duration(-5.0), "0s");
    assert_eq!(short_duration(f64::NAN), "0s");
}
