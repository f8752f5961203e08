//! Ctrl-C, SIGTERM and SIGHUP (ctrlc's `termination` feature): the first request lets
//! training finish its batch group and save; a second one exits at once. Both exit with 130
//! (128 + SIGINT), as shells expect after Ctrl-C, whichever signal came: ctrlc runs one
//! handler for all three and does not say which arrived. A second signal within 250 ms of
//! the first counts as the same request. Before training starts (the device opening,
//! kernels compiling, the autotuner timing) a request ends the run at once, saying so.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static REQUESTS: AtomicUsize = AtomicUsize::new(0);
static FIRST_AT: OnceLock<Instant> = OnceLock::new();
/// Set when the epoch loop starts: before that there is nothing to save, and a request
/// ends the run at once.
static TRAINING: AtomicBool = AtomicBool::new(false);
/// A second signal this soon after the first is the same request (no one presses Ctrl-C
/// twice within a quarter second on purpose).
const SAME_REQUEST: Duration = Duration::from_millis(250);
/// A progress bar is on the terminal: the bar prints the first request's message, since a
/// line written under it would be drawn over.
pub static BAR_SHOWN: AtomicBool = AtomicBool::new(false);

/// What the first request prints.
pub const FIRST_MESSAGE: &str = "interrupted: finishing the work in flight (the running group of steps and at most one more, or the epoch's evaluation), then saving (a second Ctrl-C or SIGTERM quits at once)";

pub const EXIT_CODE: u8 = 130;

/// Installs the handler; only the command-line program calls this.
pub fn install() -> Result<(), String> {
    ctrlc::set_handler(|| {
        if !TRAINING.load(Ordering::SeqCst) {
            eprintln!("\ninterrupted before the first training step: nothing to save; quitting");
            std::process::exit(EXIT_CODE as i32);
        }
        if REQUESTS.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = FIRST_AT.set(Instant::now());
            if !BAR_SHOWN.load(Ordering::SeqCst) {
                eprintln!("\n{FIRST_MESSAGE}");
            }
        } else if FIRST_AT.get().is_some_and(|t| t.elapsed() < SAME_REQUEST) {
            // one request delivered twice: `timeout` and job schedulers signal the
            // process and then its process group
        } else {
            eprintln!("\ninterrupted again: quitting without saving");
            std::process::exit(EXIT_CODE as i32);
        }
    })
    .map_err(|e| format!("cannot install the Ctrl-C/SIGTERM handler: {e}"))
}

/// Marks the start of training: from here a first request saves before the run ends.
pub fn training_started() {
    TRAINING.store(true, Ordering::SeqCst);
}

pub fn requested() -> bool {
    REQUESTS.load(Ordering::SeqCst) > 0
}
