//! Skipping a test visibly. libtest captures only the print!/eprint! macros, so the line
//! is written to stderr directly and shows in `cargo test`'s output.
#![allow(dead_code)]

use std::io::Write;

/// Whether this is a CI run (CI=true), where .ci/run has installed what tests need.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports that the calling test skips, and why; the test then returns.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// `skip`, except under CI=true, where .ci/run installs what is missing: there it fails.
pub fn skip_unless_ci(reason: &str) {
    if in_ci() {
        panic!("CI=true, but this test would skip: {reason} (.ci/run should have installed it)");
    }
    skip(reason);
}
