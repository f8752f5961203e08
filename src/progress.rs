//! Progress of a training run: a live bar on a terminal, plain lines elsewhere.
//!
//! The trainer reports each finished group of steps as a `Tick` (batches done of the
//! phase's total, images and seconds of this call, the running training loss and accuracy
//! read back without stalling). `Progress` turns ticks into the display and the ETAs:
//! - on a terminal (stderr), an indicatif bar per phase (epoch N train, epoch N test) with
//!   percentage, images/s, running loss and accuracy, and the ETA of the epoch and the run;
//! - otherwise (or with --quiet), a plain line every `--log-every` seconds of an epoch;
//! - both print once, early in the first epoch, how long the whole run will take.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How far a call of the trainer's step loop has got.
#[derive(Debug, Clone, Copy)]
pub struct Tick<'s> {
    pub train: bool,
    pub label: &'s str,
    pub epoch: usize,
    /// Batches of the phase done (counting any done before a resume) of `total`.
    pub done: usize,
    pub total: usize,
    /// Batches and images finished, and seconds elapsed, in this call.
    pub steps: usize,
    pub images: usize,
    pub seconds: f64,
    /// Mean training loss and accuracy of this epoch's samples read so far.
    pub running: Option<(f64, f64)>,
    /// The call's last tick: the phase is over (or stopped).
    pub finished: bool,
}

pub trait StepObserver {
    fn tick(&mut self, tick: &Tick);
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// The live bar on stderr.
    Bar,
    /// A plain line every so many seconds of a training phase (never, for f64::INFINITY).
    Plain { every: f64 },
}

impl Style {
    /// The bar when stderr is a terminal and --quiet is not given; else plain lines.
    pub fn choose(quiet: bool, log_every: f64) -> Style {
        use std::io::IsTerminal;
        if !quiet && std::io::stderr().is_terminal() { Style::Bar } else { Style::Plain { every: log_every } }
    }
}

/// What the ETAs need to know about the run.
#[derive(Debug, Clone)]
pub struct RunShape {
    pub epochs: usize,
    pub first_epoch: usize,
    pub train_batches: usize,
    /// The test images in training batches: what evaluation costs, in the training step's
    /// units, until it has been timed.
    pub test_batches: usize,
    /// The evaluation's own steps (fewer at a larger evaluation batch).
    pub eval_steps: usize,
    pub batch_size: usize,
    /// The adapter's name, for the up-front estimate.
    pub adapter: String,
}

/// Evaluation steps cost about this share of a training step (forward only), until an
/// evaluation has been timed.
const EVAL_SHARE: f64 = 0.35;
/// The up-front estimate waits for this much training, or the end of the first phase.
const ESTIMATE_AFTER_SECS: f64 = 3.0;

pub struct Progress {
    style: Style,
    run: RunShape,
    bar: Option<ProgressBar>,
    /// (train, epoch) of the phase the bar or the plain lines belong to.
    phase: Option<(bool, usize)>,
    last_line: Instant,
    /// Seconds per training step and per full evaluation, as measured.
    step_seconds: Option<f64>,
    eval_seconds: Option<f64>,
    estimated: bool,
    /// The interrupt message has been shown above the bar.
    told_interrupt: bool,
}

impl Progress {
    pub fn new(style: Style, run: RunShape) -> Progress {
        Progress {
            style,
            run,
            bar: None,
            phase: None,
            last_line: Instant::now(),
            step_seconds: None,
            eval_seconds: None,
            estimated: false,
            told_interrupt: false,
        }
    }

    /// Seconds left in an epoch that has `train_left` training batches to go (and its
    /// evaluation), and in the run after it.
    fn eta(&self, epoch: usize, train_left: usize, eval_left: Option<usize>) -> Option<(f64, f64)> {
        let step = self.step_seconds?;
        let eval_full = self.eval_seconds.unwrap_or(self.run.test_batches as f64 * step * EVAL_SHARE);
        let eval = match eval_left {
            Some(left) => eval_full * left as f64 / self.run.eval_steps.max(1) as f64,
            None => eval_full,
        };
        let epoch_left = train_left as f64 * step + eval;
        let later =
            self.run.epochs.saturating_sub(epoch) as f64 * (self.run.train_batches as f64 * step + eval_full);
        Some((epoch_left, epoch_left + later))
    }

    fn start_phase(&mut self, tick: &Tick) {
        self.finish_bar();
        self.phase = Some((tick.train, tick.epoch));
        self.last_line = Instant::now();
        if self.style == Style::Bar {
            let bar = ProgressBar::with_draw_target(Some(tick.total as u64), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{prefix} [{wide_bar}] {pos}/{len} {percent}% {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!("epoch {}/{} {}", tick.epoch, self.run.epochs, tick.label));
            bar.enable_steady_tick(Duration::from_millis(500));
            self.bar = Some(bar);
            crate::interrupt::BAR_SHOWN.store(true, Ordering::SeqCst);
        }
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            crate::interrupt::BAR_SHOWN.store(false, Ordering::SeqCst);
        }
    }

    /// A line on stdout, with the bar out of the way while it is written.
    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn maybe_estimate(&mut self, tick: &Tick) {
        if self.estimated
            || !tick.train
            || tick.epoch != self.run.first_epoch
            || crate::interrupt::requested()
        {
            return;
        }
        if tick.seconds < ESTIMATE_AFTER_SECS && !tick.finished {
            return;
        }
        let Some((_, run_left)) = self.eta(tick.epoch, tick.total - tick.done, None) else { return };
        self.estimated = true;
        let epochs_left = self.run.epochs + 1 - self.run.first_epoch;
        let resumed = self.run.first_epoch > 1 || tick.done > tick.steps;
        let scope = match (resumed, epochs_left) {
            (false, 1) => "1 epoch".to_string(),
            (false, n) => format!("{n} epochs"),
            (true, _) => "the rest of the run".to_string(),
        };
        let step = self.step_seconds.unwrap_or(0.0);
        let per_step = if step >= 0.1 { format!("{step:.2} s") } else { format!("{:.1} ms", 1e3 * step) };
        let line = format!(
            "estimate: about {} for {scope} on {} ({per_step} per training step)",
            spoken_duration(tick.seconds + run_left),
            self.run.adapter
        );
        self.say(&line);
    }
}

impl StepObserver for Progress {
    fn tick(&mut self, tick: &Tick) {
        if self.phase != Some((tick.train, tick.epoch)) {
            self.start_phase(tick);
        }
        if self.bar.is_some() && !self.told_interrupt && crate::interrupt::requested() {
            self.told_interrupt = true;
            if let Some(bar) = &self.bar {
                bar.suspend(|| eprintln!("{}", crate::interrupt::FIRST_MESSAGE));
            }
        }
        let rate = tick.images as f64 / tick.seconds.max(1e-9);
        if tick.steps > 0 {
            let secs = tick.seconds / tick.steps as f64;
            if tick.train {
                self.step_seconds = Some(secs);
            } else if tick.finished && tick.done == tick.total {
                self.eval_seconds = Some(tick.seconds);
            }
        }
        self.maybe_estimate(tick);
        let eta = if tick.train {
            self.eta(tick.epoch, tick.total - tick.done, None)
        } else {
            self.eta(tick.epoch, 0, Some(tick.total - tick.done))
        };
        match self.style {
            Style::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_position(tick.done as u64);
                    bar.set_message(bar_status(tick, rate, eta));
                }
            }
            Style::Plain { every } => {
                if tick.train && !tick.finished && self.last_line.elapsed().as_secs_f64() >= every {
                    self.last_line = Instant::now();
                    println!(
                        "epoch {}/{} {}: {}/{} batches ({:.0}%), {}",
                        tick.epoch,
                        self.run.epochs,
                        tick.label,
                        tick.done,
                        tick.total,
                        100.0 * tick.done as f64 / tick.total.max(1) as f64,
                        status(tick, rate, eta)
                    );
                }
            }
        }
        if tick.finished {
            self.finish_bar();
            self.phase = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish_bar();
    }
}

/// "640 images/s, loss 0.7123, accuracy 74.21%, ETA epoch 1m10s, run 25m03s".
pub fn status(tick: &Tick, rate: f64, eta: Option<(f64, f64)>) -> String {
    let mut parts = vec![format!("{rate:.0} images/s")];
    if let Some((loss, acc)) = tick.running {
        parts.push(format!("loss {loss:.4}, accuracy {:.2}%", 100.0 * acc));
    }
    if let Some((epoch, run)) = eta {
        parts.push(format!("ETA epoch {}, run {}", short_duration(epoch), short_duration(run)));
    }
    parts.join(", ")
}

/// The bar's message, most useful first since a narrow terminal cuts its end:
/// "640 img/s ETA 1m10s run 25m03s loss 0.712 acc 74.2%".
pub fn bar_status(tick: &Tick, rate: f64, eta: Option<(f64, f64)>) -> String {
    let mut out = format!("{rate:.0} img/s");
    if let Some((epoch, run)) = eta {
        out.push_str(&format!(" ETA {} run {}", short_duration(epoch), short_duration(run)));
    }
    if let Some((loss, acc)) = tick.running {
        out.push_str(&format!(" loss {loss:.3} acc {:.1}%", 100.0 * acc));
    }
    out
}

/// 45s, 12m30s, 2h05m.
pub fn short_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// "40 s", "27 min", "2 h 31 min": rounded the way a person would say it.
pub fn spoken_duration(secs: f64) -> String {
    let s = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    let minutes = (s / 60.0).round() as u64;
    if s < 59.5 {
        format!("{:.0} s", s.max(1.0))
    } else if minutes < 60 {
        format!("{minutes} min")
    } else {
        format!("{} h {} min", minutes / 60, minutes % 60)
    }
}
