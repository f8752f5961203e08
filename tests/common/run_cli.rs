//! Running the gpu-train binary from tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The gpu-train binary with Mesa's device-select variables removed, so that the program's
/// own handling of them (main sets NODEVICE_SELECT=1) is what runs.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-train"));
    cmd.env_remove("NODEVICE_SELECT").env_remove("MESA_VK_DEVICE_SELECT");
    cmd
}

/// Runs gpu-train in a fresh working directory (so default checkpoint directories land
/// nowhere that lasts): (exit code, stdout, stderr).
pub fn gpu_train(args: &[&str]) -> (i32, String, String) {
    let cwd = tempfile::tempdir().unwrap();
    gpu_train_in(cwd.path(), &[], args)
}

/// Runs gpu-train in `cwd` with extra environment variables. Every run checks that stderr
/// is free of the XDG_RUNTIME_DIR warning of Mesa's device-select layer.
pub fn gpu_train_in(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = command().args(args).envs(env.iter().copied()).current_dir(cwd).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{args:?} printed the XDG_RUNTIME_DIR warning: {stderr}");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), stderr)
}
