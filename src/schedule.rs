//! Learning-rate schedules: the factor the base learning rate is multiplied by at each
//! optimiser step, computed on the host into the per-step uniform (kernels::Step), so a
//! schedule costs the GPU nothing and a resumed run recomputes the same values.
//!
//! `--schedule`: `constant`, `step:E1,E2,...:GAMMA` (times GAMMA after each listed epoch),
//! `cosine` (half a cosine from the base rate down to 0 over the run) and `onecycle`
//! (PyTorch's OneCycleLR defaults: from lr/25 up to lr over the first 30% of the steps,
//! then down to lr/25/1e4, both along cosines). `--warmup-epochs W` ramps linearly up to
//! the schedule's value over the first W epochs (constant, step and cosine; onecycle has
//! its own ramp). Steps count from 1; epoch e's steps are ((e-1) S, e S] for S steps an
//! epoch.

use std::f64::consts::PI;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` once each listed epoch has ended.
    Step {
        milestones: Vec<usize>,
        gamma: f64,
    },
    Cosine,
    OneCycle,
}

/// The most warm-up epochs and step milestones accepted.
pub const MAX_MILESTONES: usize = 64;

impl Schedule {
    /// Parses a `--schedule` value; the error says what is wrong and what is accepted.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "constant" => return Ok(Schedule::Constant),
            "cosine" => return Ok(Schedule::Cosine),
            "onecycle" => return Ok(Schedule::OneCycle),
            _ => {}
        }
        let usage = "expected constant, cosine, onecycle or step:E1,E2,...:GAMMA (as in step:10,15:0.1)";
        let Some(rest) = t.strip_prefix("step:") else {
            return Err(format!("unknown schedule '{}'; {usage}", text.trim()));
        };
        let Some((epochs, gamma)) = rest.rsplit_once(':') else {
            return Err(format!("'{}' lacks its factor; {usage}", text.trim()));
        };
        let gamma: f64 = match gamma.parse() {
            Ok(g) if g > 0.0 && f64::is_finite(g) => g,
            _ => return Err(format!("step schedule factor '{gamma}' must be a positive number")),
        };
        let mut milestones = Vec::new();
        for e in epochs.split(',') {
            match e.trim().parse::<usize>() {
                Ok(n) if n >= 1 && milestones.last().is_none_or(|&last| n > last) => milestones.push(n),
                _ => {
                    return Err(format!(
                        "step schedule epoch '{}' must be a whole number of at least 1, each larger than the one before",
                        e.trim()
                    ));
                }
            }
        }
        if milestones.len() > MAX_MILESTONES {
            return Err(format!("a step schedule takes at most {MAX_MILESTONES} epochs"));
        }
        Ok(Schedule::Step { milestones, gamma })
    }

    /// The factor at optimiser step `t` (1-based) of a run of `epochs` epochs of
    /// `steps_per_epoch` steps, after `warmup_epochs` of linear warm-up.
    pub fn factor(&self, t: u64, steps_per_epoch: usize, epochs: usize, warmup_epochs: f64) -> f64 {
        let s = steps_per_epoch.max(1) as f64;
        let total = (epochs.max(1) as f64 * s).max(1.0);
        let t = (t.max(1) as f64).min(total);
        let warm = (warmup_epochs * s).min(total);
        let ramp = if warm > 0.0 && t <= warm { t / warm } else { 1.0 };
        match self {
            Schedule::Constant => ramp,
            Schedule::Step { milestones, gamma } => {
                // epoch e has ended once step e * S has been taken; step t belongs to epoch ceil(t / S)
                let epoch_of_t = (t / s).ceil() as usize;
                let passed = milestones.iter().filter(|&&m| m < epoch_of_t).count();
                ramp * gamma.powi(passed as i32)
            }
            Schedule::Cosine => {
                if t <= warm {
                    return ramp;
                }
                // as PyTorch's per-step cosine: the first step after warm-up runs at the full
                // rate, the last just above 0
                let progress = (t - warm - 1.0) / (total - warm).max(1.0);
                0.5 * (1.0 + (PI * progress).cos())
            }
            Schedule::OneCycle => {
                // PyTorch OneCycleLR: pct_start 0.3, div_factor 25, final_div_factor 1e4
                let (start, peak, end) = (1.0 / 25.0, 1.0, 1.0 / 25.0 / 1e4);
                let up = (0.3 * total).max(1.0);
                let cos = |from: f64, to: f64, x: f64| to + (from - to) * 0.5 * (1.0 + (PI * x).cos());
                if t <= up {
                    cos(start, peak, (t - 1.0) / (up - 1.0).max(1.0))
                } else {
                    cos(peak, end, (t - up) / (total - up).max(1.0))
                }
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Cosine => write!(f, "cosine"),
            Schedule::OneCycle => write!(f, "onecycle"),
            Schedule::Step { milestones, gamma } => {
                let list: Vec<String> = milestones.iter().map(|m| m.to_string()).collect();
                write!(f, "step:{}:{gamma}", list.join(","))
            }
        }
    }
}
