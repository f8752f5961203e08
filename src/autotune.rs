//! Start-up autotuning: for a kernel at one shape, time its candidate variants on the
//! device for a few milliseconds, keep the fastest, and remember the choice on disk per
//! adapter, driver and shape, so that the next start-up only reads it.
//!
//! Only variants that give bit-identical results are candidates (each output value is
//! computed the same way whichever is chosen), so a choice changes speed, never a number:
//! a resumed run that tunes differently still continues exactly.
//!
//! The cache is one JSON object {"<adapter key> | <kernel key>": choice} in
//! `$GPU_TRAIN_CACHE_DIR/autotune.json`, else `$XDG_CACHE_HOME/gpu-train/`, else
//! `~/.cache/gpu-train/`. A cache that cannot be read or written is ignored with the choice
//! measured again; tuning never stops a run.

use crate::gpu::{Gpu, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// `--autotune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TuneMode {
    /// Every kernel runs its default variant; nothing is timed or cached.
    Off,
    /// The usual candidates, a few repetitions each; choices are cached.
    #[default]
    Quick,
    /// More candidates and repetitions, measured again even when cached.
    Full,
}

/// One choice, for `bench` to show.
#[derive(Debug, Clone)]
pub struct TuneRecord {
    /// What was tuned: the kernel and its shape.
    pub key: String,
    pub choice: u32,
    /// "measured: 4: 0.31 ms, 16: 0.12 ms", "cached", "autotune off".
    pub why: String,
}

pub struct Tuner {
    pub mode: TuneMode,
    /// Tests: every choice is this one wherever it is a candidate.
    forced: Option<u32>,
    adapter_key: String,
    path: Option<PathBuf>,
    cache: Mutex<BTreeMap<String, u32>>,
    records: Mutex<Vec<TuneRecord>>,
}

/// Where the cache lives (see the module note); None when no directory is known.
pub fn cache_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("GPU_TRAIN_CACHE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => match std::env::var_os("XDG_CACHE_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("gpu-train"),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache").join("gpu-train"),
        },
    };
    Some(dir.join("autotune.json"))
}

/// The adapter, its backend and its driver with version: a choice holds for these only.
fn adapter_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!("{} ({:?}, {} {})", i.name, i.backend, i.driver, i.driver_info)
}

fn load(path: &Option<PathBuf>) -> BTreeMap<String, u32> {
    let Some(path) = path else { return BTreeMap::new() };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<BTreeMap<String, u32>>(&text).ok())
        .unwrap_or_default()
}

impl Tuner {
    pub fn new(gpu: &Gpu, mode: TuneMode) -> Tuner {
        Tuner::with_cache(gpu, mode, cache_path())
    }

    /// A tuner whose cache is `path` (None: no cache at all).
    pub fn with_cache(gpu: &Gpu, mode: TuneMode, path: Option<PathBuf>) -> Tuner {
        let cache = if mode == TuneMode::Off { BTreeMap::new() } else { load(&path) };
        Tuner {
            mode,
            forced: None,
            adapter_key: adapter_key(gpu),
            path,
            cache: Mutex::new(cache),
            records: Mutex::new(Vec::new()),
        }
    }

    /// A tuner that chooses `choice` wherever it is a candidate (quick or full), and
    /// neither times nor caches anything: tests run each variant with it.
    pub fn forcing(gpu: &Gpu, choice: u32) -> Tuner {
        Tuner { forced: Some(choice), ..Tuner::with_cache(gpu, TuneMode::Off, None) }
    }

    /// The choices made so far, in order.
    pub fn records(&self) -> Vec<TuneRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn record(&self, key: &str, choice: u32, why: String) {
        if let Ok(mut r) = self.records.lock() {
            if !r.iter().any(|x| x.key == key) {
                r.push(TuneRecord { key: key.to_string(), choice, why });
            }
        }
    }

    /// The fastest of `candidates` (`quick`) or of `candidates` and `more` (`full`) for
    /// `key`, by `time(candidate)`: the seconds of one run, called `reps` times per
    /// candidate after one warm-up, the median kept. `default` where tuning is off, and
    /// the cached choice where there is one (`quick`) and it is still a candidate.
    pub fn choose(
        &self,
        key: &str,
        default: u32,
        candidates: &[u32],
        more: &[u32],
        time: &mut dyn FnMut(u32) -> Result<f64>,
    ) -> Result<u32> {
        if let Some(choice) = self.forced {
            if !candidates.contains(&choice) && !more.contains(&choice) {
                return Err(format!("internal error: {choice} is not a candidate for {key}"));
            }
            self.record(key, choice, "forced".into());
            return Ok(choice);
        }
        if self.mode == TuneMode::Off {
            self.record(key, default, "autotune off: the default".into());
            return Ok(default);
        }
        let mut all: Vec<u32> = candidates.to_vec();
        if self.mode == TuneMode::Full {
            all.extend(more.iter().filter(|m| !candidates.contains(m)));
        }
        let full_key = format!("{} | {key}", self.adapter_key);
        let cached = self.cache.lock().ok().and_then(|c| c.get(&full_key).copied());
        if self.mode == TuneMode::Quick
            && let Some(choice) = cached.filter(|c| all.contains(c) || more.contains(c))
        {
            self.record(key, choice, "cached".into());
            return Ok(choice);
        }
        let reps = if self.mode == TuneMode::Full { 7 } else { 3 };
        let started = Instant::now();
        let mut timings = Vec::new();
        for &c in &all {
            time(c)?;
            let mut t: Vec<f64> = (0..reps).map(|_| time(c)).collect::<Result<_>>()?;
            t.sort_by(f64::total_cmp);
            timings.push((c, t[t.len() / 2]));
        }
        let &(choice, _) = timings
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .ok_or_else(|| format!("internal error: no candidates to tune {key}"))?;
        let list: Vec<String> = timings.iter().map(|(c, s)| format!("{c}: {:.3} ms", s * 1e3)).collect();
        let why = format!("measured in {:.0} ms ({})", started.elapsed().as_secs_f64() * 1e3, list.join(", "));
        self.record(key, choice, why);
        self.store(full_key, choice);
        Ok(choice)
    }

    /// Adds a choice to the cache file (temp file + rename; failures are ignored: the
    /// choice is simply measured again next time).
    fn store(&self, full_key: String, choice: u32) {
        let Ok(mut cache) = self.cache.lock() else { return };
        if cache.get(&full_key) == Some(&choice) {
            return;
        }
        // another process may have added its own choices since this one read the file
        let mut merged = load(&self.path);
        merged.insert(full_key.clone(), choice);
        cache.insert(full_key, choice);
        let Some(path) = &self.path else { return };
        let Some(dir) = path.parent() else { return };
        let Ok(text) = serde_json::to_string_pretty(&merged) else { return };
        let temp = dir.join(format!(".autotune.json.{}", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&temp, text))
            .and_then(|_| std::fs::rename(&temp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }
}

/// Seconds one submit of `dispatches` takes, from submit to completion.
pub fn time_dispatches(gpu: &Gpu, dispatches: &[&crate::kernels::Dispatch]) -> Result<f64> {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.record(&mut pass, 0);
        }
    }
    let started = Instant::now();
    gpu.queue.submit([encoder.finish()]);
    gpu.wait()?;
    Ok(started.elapsed().as_secs_f64())
}
