//! Running the gpu-train binary from tests.

use std::process::Command;

/// Runs gpu-train in a fresh working directory (so default checkpoint directories land
/// nowhere that lasts): (exit code, stdout, stderr without lavapipe's XDG warning).
pub fn gpu_train(args: &[&str]) -> (i32, String, String) {
    let cwd = tempfile::tempdir().unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_gpu-train")).args(args).current_dir(cwd.path()).output().unwrap();
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .map(|l| format!("{l}\n"))
        .collect();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), stderr)
}
