//! Start-up autotuning: for a kernel at one shape, time its candidate variants on the
//! device for a few milliseconds, keep the fastest, and remember the choice on disk per
//! adapter, driver and shape, so that the next start-up only reads it.
//!
//! Only variants that give bit-identical results are candidates (each output value is
//! computed the same way whichever is chosen), so a choice changes speed, never a number:
//! a resumed run that tunes differently still continues exactly. The one exception is
//! asked for by name: with `--f16-storage` the f16-storage matmul joins the candidates,
//! and where it is chosen results carry its f16 rounding.
//!
//! The cache is one JSON object {"<adapter key> | <kernel key>": choice} in
//! `$GPU_TRAIN_CACHE_DIR/autotune.json`, else `$XDG_CACHE_HOME/gpu-train/`, else
//! `~/.cache/gpu-train/` (absolute paths only). A cache that cannot be read or written is
//! ignored with the choice measured again, and a candidate that fails to run is skipped:
//! tuning never stops a run.
//!
//! Timing: each candidate's kernel is submitted enough times in a row to make about 2 ms
//! of work (so submit and wait costs do not decide), candidates take turns (so a clock
//! that speeds up favours none), the median of the rounds is kept, and the default stays
//! unless another candidate is at least 5% faster.

use crate::gpu::{Gpu, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// `--autotune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TuneMode {
    /// Every kernel runs its default variant; nothing is timed or cached.
    #[default]
    Off,
    /// The usual candidates; choices are cached and read back.
    Quick,
    /// More candidates and rounds, measured again even when cached.
    Full,
}

/// One choice, for `bench` to show.
#[derive(Debug, Clone)]
pub struct TuneRecord {
    /// What was tuned: the kernel and its shape.
    pub key: String,
    pub choice: u32,
    /// "measured in 40 ms (4: 0.31 ms, 16: 0.12 ms)", "cached", "autotune off: the default".
    pub why: String,
}

pub struct Tuner {
    pub mode: TuneMode,
    /// Tests: every choice is this one wherever it is a candidate.
    forced: Option<u32>,
    /// Read cached choices but never measure or write (evaluation commands).
    read_only: bool,
    /// `--f16-storage`: the f16-storage matmul is a candidate where the device has f16.
    /// Its results differ from the f32 variants' by f16 rounding, so it is offered only
    /// when asked for, and its shapes are cached under their own keys.
    pub f16_storage: bool,
    adapter_key: String,
    path: Option<PathBuf>,
    cache: Mutex<BTreeMap<String, u32>>,
    /// Keys measured by this process: later layers of the same shape reuse the choice.
    measured: Mutex<BTreeMap<String, u32>>,
    records: Mutex<Vec<TuneRecord>>,
    /// Shapes measured and the seconds it took, for start-up reports.
    spent: Mutex<(usize, f64)>,
}

/// An absolute directory from an environment variable, else None (a relative one with a
/// note: it would name a different place from every working directory).
fn absolute_dir(var: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(var)?);
    if !dir.is_absolute() {
        note_once(format!(
            "note: ${var} ({}) is not an absolute path: ignored for the autotune cache",
            dir.display()
        ));
        return None;
    }
    Some(dir)
}

/// Where the cache lives (see the module note); None when no absolute directory is known.
pub fn cache_path() -> Option<PathBuf> {
    let dir = absolute_dir("GPU_TRAIN_CACHE_DIR")
        .or_else(|| absolute_dir("XDG_CACHE_HOME").map(|d| d.join("gpu-train")))
        .or_else(|| absolute_dir("HOME").map(|d| d.join(".cache").join("gpu-train")))?;
    Some(dir.join("autotune.json"))
}

/// The adapter, its backend and its driver with version: a choice holds for these only.
fn adapter_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!("{} ({:?}, {} {})", i.name, i.backend, i.driver, i.driver_info)
}

/// The cache file's entries as written (other programs' versions may hold other values:
/// they are kept when this one rewrites the file); None when the file exists but cannot
/// be read (it must then not be written over: its choices would be lost).
fn load_raw(path: &Option<PathBuf>) -> Option<serde_json::Map<String, serde_json::Value>> {
    let Some(path) = path else { return Some(Default::default()) };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // no file (or no directory) yet: an empty cache, written when there is a choice
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            return Some(Default::default());
        }
        Err(e) => {
            note_once(format!(
                "note: could not read the autotune cache {} ({e}); measuring again, and leaving the file as it is",
                path.display()
            ));
            return None;
        }
    };
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text) {
        Ok(map) => Some(map),
        Err(e) => {
            note_once(format!(
                "note: the autotune cache {} is not a JSON object of choices ({e}); measuring again and rewriting it",
                path.display()
            ));
            Some(Default::default())
        }
    }
}

/// A note on stderr, once per process and text: the cache never stops a run, but a user
/// should know why every start-up measures again.
fn note_once(text: String) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    if let Ok(mut seen) = SEEN.lock()
        && !seen.contains(&text)
    {
        eprintln!("{text}");
        seen.push(text);
    }
}

/// The entries that are choices (whole numbers that fit a u32).
fn choices(raw: &serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, u32> {
    raw.iter().filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_u64()?).ok()?))).collect()
}

/// A short fingerprint of a kernel's source, for cache keys: an edited shader is tuned again.
pub fn fingerprint(source: &str) -> String {
    // FNV-1a, 32 bits: stable across builds and platforms
    let hash = source.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Tuner {
    pub fn new(gpu: &Gpu, mode: TuneMode) -> Tuner {
        let path = if mode == TuneMode::Off { None } else { cache_path() };
        Tuner::with_cache(gpu, mode, path)
    }

    /// The tuner of a training or bench run: `mode`, and the f16-storage candidate where
    /// `f16_storage` asks for it and the device has f16 (a note says when it has not).
    pub fn for_run(gpu: &Gpu, mode: TuneMode, f16_storage: bool) -> Tuner {
        if f16_storage && !gpu.has_f16() {
            eprintln!(
                "note: --f16-storage: {} has no f16 support (SHADER_F16); every product stays f32",
                gpu.describe()
            );
        }
        Tuner::new(gpu, mode).with_f16_storage(f16_storage && gpu.has_f16())
    }

    /// A tuner whose cache is `path` (None: no cache at all).
    pub fn with_cache(gpu: &Gpu, mode: TuneMode, path: Option<PathBuf>) -> Tuner {
        let cache = if mode == TuneMode::Off {
            BTreeMap::new()
        } else {
            choices(&load_raw(&path).unwrap_or_default())
        };
        Tuner {
            mode,
            forced: None,
            read_only: false,
            f16_storage: false,
            adapter_key: adapter_key(gpu),
            path,
            cache: Mutex::new(cache),
            measured: Mutex::new(BTreeMap::new()),
            records: Mutex::new(Vec::new()),
            spent: Mutex::new((0, 0.0)),
        }
    }

    /// The cached choices where there are some, else the defaults; it never measures or
    /// writes (`eval`, `predict`, `report`: shapes of their own, short runs).
    pub fn cached_only(gpu: &Gpu) -> Tuner {
        Tuner { read_only: true, ..Tuner::new(gpu, TuneMode::Quick) }
    }

    /// A tuner that chooses `choice` for every key, candidate or not (the caller makes
    /// sure it fits), and neither times nor caches anything: tests run each variant with it.
    pub fn forcing(gpu: &Gpu, choice: u32) -> Tuner {
        Tuner { forced: Some(choice), ..Tuner::with_cache(gpu, TuneMode::Off, None) }
    }

    /// The same tuner with `--f16-storage` on or off.
    pub fn with_f16_storage(self, on: bool) -> Tuner {
        Tuner { f16_storage: on, ..self }
    }

    /// The choice every tunable kernel is forced to (`Tuner::forcing`), if any.
    pub fn forced(&self) -> Option<u32> {
        self.forced
    }

    /// Seconds spent measuring candidates so far.
    pub fn seconds(&self) -> f64 {
        self.spent.lock().map(|s| s.1).unwrap_or(0.0)
    }

    /// Kernel shapes measured (not read from the cache) so far.
    pub fn measured_count(&self) -> usize {
        self.spent.lock().map(|s| s.0).unwrap_or(0)
    }

    /// The choices made so far, in order.
    pub fn records(&self) -> Vec<TuneRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn record(&self, key: &str, choice: u32, why: String) {
        if let Ok(mut r) = self.records.lock()
            && !r.iter().any(|x| x.key == key)
        {
            r.push(TuneRecord { key: key.to_string(), choice, why });
        }
    }

    /// The variant `key` runs: `default` where tuning is off; where on, the cached choice
    /// (`quick`, if still a candidate) or the fastest of `candidates` (and `more` in
    /// `full`) by `time(candidate, repeats)`: the seconds `repeats` back-to-back runs take.
    /// Candidates that fail to run are left out; with none left, the default.
    pub fn choose(
        &self,
        key: &str,
        default: u32,
        candidates: &[u32],
        more: &[u32],
        time: &mut dyn FnMut(u32, u32) -> Result<f64>,
    ) -> u32 {
        if let Some(choice) = self.forced {
            self.record(key, choice, "forced".into());
            return choice;
        }
        if self.mode == TuneMode::Off {
            self.record(key, default, "autotune off: the default".into());
            return default;
        }
        let mut all: Vec<u32> = candidates.to_vec();
        if self.mode == TuneMode::Full {
            all.extend(more.iter().filter(|m| !candidates.contains(m)));
        }
        if let Some(choice) = self.measured.lock().ok().and_then(|m| m.get(key).copied()) {
            self.record(key, choice, "measured for an earlier layer of this shape".into());
            return choice;
        }
        let full_key = format!("{} | {key}", self.adapter_key);
        let cached = self.cache.lock().ok().and_then(|c| c.get(&full_key).copied());
        let valid = |c: &u32| candidates.contains(c) || more.contains(c);
        if (self.mode == TuneMode::Quick || self.read_only)
            && let Some(choice) = cached.filter(valid)
        {
            self.record(key, choice, "cached".into());
            return choice;
        }
        if self.read_only {
            self.record(key, default, "not tuned yet for this shape: the default".into());
            return default;
        }
        if all.len() < 2 {
            let choice = all.first().copied().unwrap_or(default);
            self.record(key, choice, "the only candidate".into());
            return choice;
        }
        let started = Instant::now();
        let (choice, why) = measure(default, &all, self.mode, time);
        let took = started.elapsed().as_secs_f64();
        if let Ok(mut s) = self.spent.lock() {
            *s = (s.0 + 1, s.1 + took);
        }
        let why = format!("measured in {:.0} ms ({why})", took * 1e3);
        self.record(key, choice, why);
        if let Ok(mut m) = self.measured.lock() {
            m.insert(key.to_string(), choice);
        }
        self.store(full_key, choice);
        choice
    }

    /// `choose` between candidates that are dispatches: `build(choice)` makes a candidate's
    /// dispatches and what must outlive them, at most once each (timings relaunch them),
    /// and the chosen candidate's come back. A forced choice (tests) that this shape does
    /// not offer (its loops would not fit, say) gives the default.
    pub fn choose_built<T>(
        &self,
        gpu: &Gpu,
        key: &str,
        default: u32,
        candidates: &[u32],
        more: &[u32],
        build: &mut dyn FnMut(u32) -> Result<(Vec<crate::kernels::Dispatch>, T)>,
    ) -> Result<(Vec<crate::kernels::Dispatch>, T)> {
        let mut built: Vec<(u32, Vec<crate::kernels::Dispatch>, T)> = Vec::new();
        let choice = self.choose(key, default, candidates, more, &mut |c, repeats| {
            if !built.iter().any(|b| b.0 == c) {
                let (dispatches, keep) = build(c)?;
                built.push((c, dispatches, keep));
            }
            let launches: Vec<_> = built.iter().filter(|b| b.0 == c).flat_map(|b| b.1.iter()).collect();
            time_dispatches(gpu, &launches, repeats)
        });
        let offered = candidates.contains(&choice) || more.contains(&choice);
        let choice = if offered { choice } else { default };
        match built.into_iter().find(|b| b.0 == choice) {
            Some((_, dispatches, keep)) => Ok((dispatches, keep)),
            None => build(choice),
        }
    }

    /// Adds a choice to the cache file: the file as it is now (another process may have
    /// added choices) plus this one, written to a temp file of this process and thread and
    /// renamed over it. Failures are ignored: the choice is measured again next time.
    fn store(&self, full_key: String, choice: u32) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(full_key.clone(), choice);
        }
        let Some(path) = &self.path else { return };
        let Some(dir) = path.parent() else { return };
        let Some(mut raw) = load_raw(&self.path) else { return };
        raw.insert(full_key, serde_json::Value::from(choice));
        let Ok(text) = serde_json::to_string_pretty(&raw) else { return };
        let n = TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = dir.join(format!(".autotune.json.{}.{n}", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&temp, text))
            .and_then(|_| std::fs::rename(&temp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            note_once(format!(
                "note: could not write the autotune cache {} ({e}); choices will be measured again next time (set GPU_TRAIN_CACHE_DIR to a writable directory)",
                path.display()
            ));
        }
    }
}

/// Times the candidates (see the module note) and returns the choice and the timings.
fn measure(
    default: u32,
    all: &[u32],
    mode: TuneMode,
    time: &mut dyn FnMut(u32, u32) -> Result<f64>,
) -> (u32, String) {
    // A first run of each warms it up (a driver may compile a pipeline on its first use:
    // lavapipe once took 0.9 s there), a second sizes its repeats to about 2 ms.
    let mut runnable: Vec<(u32, u32)> = Vec::new();
    let mut sizing: Vec<(u32, f64)> = Vec::new();
    for &c in all {
        if let Ok(once) = time(c, 1).and_then(|_| time(c, 1)) {
            let repeats = (0.002 / once.max(1e-6)).ceil().clamp(1.0, 64.0) as u32;
            runnable.push((c, repeats));
            sizing.push((c, once));
        }
    }
    if runnable.is_empty() {
        return (default, "no candidate ran: the default".into());
    }
    // A candidate whose sizing run took over twice the fastest one will not win by the 5%
    // a change needs: it is left out of the rounds (the GPU-shaped variants on a CPU
    // adapter), which keeps a cold start short.
    let mut notes: Vec<String> = Vec::new();
    let fastest_once = sizing.iter().map(|f| f.1).fold(f64::INFINITY, f64::min).max(1e-6);
    runnable.retain(|&(c, _)| {
        let once = sizing.iter().find(|f| f.0 == c).map_or(0.0, |f| f.1);
        let keep = c == default || once <= 2.0 * fastest_once;
        if !keep {
            notes.push(format!("{c}: {:.3} ms once, left out", once * 1e3));
        }
        keep
    });
    if let [(only, _)] = runnable[..] {
        notes.insert(0, format!("{only}: the only one left"));
        return (only, notes.join(", "));
    }
    let rounds = if mode == TuneMode::Full { 7 } else { 3 };
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); runnable.len()];
    for _ in 0..rounds {
        for (i, &(c, repeats)) in runnable.iter().enumerate() {
            if let Ok(t) = time(c, repeats) {
                samples[i].push(t / repeats as f64);
            }
        }
    }
    let mut timings: Vec<(u32, f64)> = Vec::new();
    for (i, &(c, _)) in runnable.iter().enumerate() {
        let t = &mut samples[i];
        if t.is_empty() {
            continue;
        }
        t.sort_by(f64::total_cmp);
        timings.push((c, t[t.len() / 2]));
    }
    let mut list: Vec<String> = timings.iter().map(|(c, s)| format!("{c}: {:.3} ms", s * 1e3)).collect();
    list.extend(notes);
    let best = timings.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
    let at_default = timings.iter().find(|(c, _)| *c == default).map(|t| t.1);
    let choice = match (best, at_default) {
        // the default stays unless another is clearly faster
        (Some((c, t)), Some(d)) if t < 0.95 * d => c,
        (_, Some(_)) => default,
        (Some((c, _)), None) => c,
        (None, None) => default,
    };
    (choice, list.join(", "))
}

/// Seconds `repeats` back-to-back launches of `dispatches` take, from submit to completion.
pub fn time_dispatches(gpu: &Gpu, dispatches: &[&crate::kernels::Dispatch], repeats: u32) -> Result<f64> {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for _ in 0..repeats.max(1) {
            for d in dispatches {
                d.record(&mut pass, 0);
            }
        }
    }
    let started = Instant::now();
    gpu.queue.submit([encoder.finish()]);
    let waited = gpu.wait();
    let seconds = started.elapsed().as_secs_f64();
    if let Err(e) = waited {
        // a candidate that fails is left out; the error must not outlive it
        gpu.errors.clear();
        return Err(e);
    }
    Ok(seconds)
}
