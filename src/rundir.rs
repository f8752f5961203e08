//! A run's directory: its checkpoints and its record.
//!
//! DIR/last.safetensors after every epoch (and on Ctrl-C, mid-epoch), DIR/best.safetensors
//! when the test accuracy improves; beside them the record of the run, rewritten as it
//! goes: config.toml (the resolved settings), run.json (who ran it where: version, adapter,
//! data, command line, per session), metrics.jsonl (one line per epoch, the keys of
//! --metrics), metrics.csv (the same columns) and curves.svg (loss and accuracy curves).
//! A resumed run keeps the epochs its checkpoint holds and drops any later ones.

use crate::checkpoint::{Checkpoint, DatasetShape, RunPlan};
use crate::cli::readable;
use crate::run::{TrainCommand, shell_quote};
use crate::train::{EpochMetrics, Trainer};
use std::path::{Path, PathBuf};

const CHECKPOINT_FILES: [&str; 2] = ["last.safetensors", "best.safetensors"];
/// The record files: a run that replaces another (--overwrite) removes these too.
pub const RECORD_FILES: [&str; 6] =
    ["config.toml", "run.json", "metrics.jsonl", "metrics.csv", "curves.svg", "report.html"];

/// Where this run writes checkpoints, and whether it replaces another run's there.
pub struct SaveDir {
    dir: PathBuf,
    /// Another run's checkpoints are there and --overwrite was given: delete them first.
    replace: bool,
    /// The default runs/<UTC date-time>: claimed when created, with a suffix if another
    /// run started in the same second.
    stamped: bool,
}

/// The checkpoint directory this run will write, refusing one that holds another run's
/// checkpoints unless --overwrite allows replacing them. Nothing is created yet.
pub fn planned_save_dir(args: &TrainCommand) -> Result<Option<SaveDir>, String> {
    if args.no_save {
        return Ok(None);
    }
    let resumed_dir = args.resume.as_deref().map(crate::run::checkpoint_dir);
    let dir = match (&args.save, &resumed_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            return Ok(Some(SaveDir { dir: PathBuf::from("runs"), replace: false, stamped: true }));
        }
    };
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{}: --save needs a directory, and this is a file", dir.display()));
    }
    let held: Vec<&str> = CHECKPOINT_FILES.iter().copied().filter(|f| dir.join(f).is_file()).collect();
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    // Resuming into the checkpoint's own directory continues the run that is there.
    if held.is_empty() || resumed_dir.as_deref().is_some_and(|r| same(r, &dir)) {
        return Ok(Some(SaveDir { dir, replace: false, stamped: false }));
    }
    if args.overwrite {
        return Ok(Some(SaveDir { dir, replace: true, stamped: false }));
    }
    let (whose, resume_hint) = if resumed_dir.is_some() {
        ("another run's", String::new())
    } else if held.contains(&"last.safetensors") {
        let last = dir.join("last.safetensors");
        ("a run's", format!("continue that run with --resume {}, ", shell_quote(&last.to_string_lossy())))
    } else {
        ("a run's", String::new())
    };
    Err(format!(
        "{}: already holds {whose} checkpoints ({}); {resume_hint}choose another --save DIR, or pass --overwrite to replace them",
        dir.display(),
        held.join(", ")
    ))
}

/// Creates the checkpoint directory, removing the checkpoints of the run it replaces (so
/// none of them mixes with this run's) and temporary files of killed saves. Returns it.
pub fn prepare_save_dir(save: &SaveDir) -> Result<PathBuf, String> {
    if save.stamped {
        return claim_stamped_dir(&save.dir);
    }
    let dir = &save.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: cannot create the checkpoint directory: {e}", dir.display()))?;
    if save.replace {
        for name in CHECKPOINT_FILES.iter().chain(&RECORD_FILES) {
            let path = dir.join(name);
            if path.is_file() {
                std::fs::remove_file(&path)
                    .map_err(|e| format!("{}: cannot remove it (--overwrite): {e}", path.display()))?;
            }
        }
    }
    // A run killed while saving leaves its temporary file behind (a checkpoint's or a
    // record file's); it is never the real file.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(dir.clone())
}

/// Creates parent/<UTC date-time> (or -2, -3, ... after it when that exists): creating a
/// directory is atomic, so two runs started in the same second never share one.
fn claim_stamped_dir(parent: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("{}: cannot create the checkpoint directory: {e}", parent.display()))?;
    let stamp = utc_stamp();
    for n in 1..=1000 {
        let dir = parent.join(if n == 1 { stamp.clone() } else { format!("{stamp}-{n}") });
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{}: cannot create the checkpoint directory: {e}", dir.display())),
        }
    }
    Err(format!("{}: cannot find a free name for this run's directory ({stamp}-N)", parent.display()))
}

/// YYYYMMDD-HHMMSS in UTC.
pub fn utc_stamp() -> String {
    let (date, time) = utc_now();
    format!("{}{:02}{:02}-{:02}{:02}{:02}", date.0, date.1, date.2, time.0, time.1, time.2)
}

/// YYYY-MM-DD HH:MM:SS in UTC.
pub fn utc_readable() -> String {
    let (date, time) = utc_now();
    format!("{}-{:02}-{:02} {:02}:{:02}:{:02}", date.0, date.1, date.2, time.0, time.1, time.2)
}

/// ((year, month, day), (hour, minute, second)) now, in UTC.
fn utc_now() -> ((i64, i64, i64), (u64, u64, u64)) {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), (rem / 3600, rem % 3600 / 60, rem % 60))
}

pub struct Saver {
    pub dir: Option<PathBuf>,
    pub shape: DatasetShape,
    pub class_names: Vec<String>,
    pub align: usize,
    /// Stored in every checkpoint: what a plain --resume continues with.
    pub plan: RunPlan,
    /// What the resume command line needs besides --resume (see `resume_flags`).
    pub resume_flags: Vec<String>,
}

impl Saver {
    fn path(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// A checkpoint of the trainer, refused if anything in it is not finite.
    fn snapshot(&self, trainer: &Trainer, epoch: usize) -> Result<Checkpoint, String> {
        let ckpt = trainer.snapshot(self.shape.clone(), self.class_names.clone())?;
        if !ckpt.is_finite() {
            return Err(self.keeping(format!(
                "training diverged in epoch {epoch}: the weights are no longer finite (NaN or infinity); try a lower --lr (now {})",
                readable(ckpt.optimizer.lr)
            )));
        }
        Ok(ckpt)
    }

    pub fn save_epoch(&self, trainer: &Trainer, epoch: usize, best: bool) -> Result<(), String> {
        let ckpt = self.snapshot(trainer, epoch)?;
        let (Some(last), Some(best_path)) = (self.path("last.safetensors"), self.path("best.safetensors"))
        else {
            return Ok(());
        };
        ckpt.save_with(&last, self.align, Some(&self.plan))?;
        if best {
            ckpt.save_with(&best_path, self.align, Some(&self.plan))?;
        }
        Ok(())
    }

    pub fn save_last(&self, trainer: &Trainer, epoch: usize) -> Result<(), String> {
        let Some(last) = self.path("last.safetensors") else {
            println!("not saved (--no-save)");
            return Ok(());
        };
        self.snapshot(trainer, epoch)?.save_with(&last, self.align, Some(&self.plan))?;
        self.announce();
        Ok(())
    }

    /// Says where the run was saved and the command line that continues it.
    pub fn announce(&self) {
        match self.path("last.safetensors") {
            Some(last) => {
                println!("saved {}", last.display());
                let mut words = vec![program_name(), "--resume".to_string()];
                words.push(last.to_string_lossy().into_owned());
                words.extend(self.resume_flags.iter().cloned());
                let line: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
                println!("continue with: {}", line.join(" "));
            }
            None => println!("not saved (--no-save)"),
        }
    }

    /// `message`, plus where the last good checkpoint is, if there is one.
    pub fn keeping(&self, message: String) -> String {
        match self.path("last.safetensors").filter(|p| p.is_file()) {
            Some(p) => format!("{message}; the last good checkpoint, {}, is kept", p.display()),
            None => message,
        }
    }
}

/// How to run this program again: `gpu-train` when that name on PATH is this program,
/// else the path it was started by (`target/release/gpu-train` under `cargo run`), which
/// works from the same directory.
pub fn program_name() -> String {
    let me = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok());
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .filter_map(|d| d.join("gpu-train").canonicalize().ok())
            .any(|found| Some(&found) == me.as_ref())
    });
    if on_path {
        return "gpu-train".into();
    }
    std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "gpu-train".into())
}

/// The run's record in its directory (see the module note).
pub struct RunRecord {
    dir: PathBuf,
    history: Vec<EpochMetrics>,
    title: String,
}

/// Who ran this session, where: one entry of run.json's "sessions".
pub struct Session {
    pub adapter: String,
    pub data: PathBuf,
    pub started_utc: String,
    /// Epochs done, and batches of the next, when this session started (0, 0 when fresh).
    pub from_epoch: usize,
    pub from_batch: usize,
}

/// The record of the run a resume continues: its epochs up to the checkpoint's and its
/// sessions. Read before anything in the save directory changes; a damaged line is
/// skipped with a note (the record is a record: it never stops a run).
#[derive(Default)]
pub struct Prior {
    history: Vec<EpochMetrics>,
    sessions: Vec<serde_json::Value>,
}

impl Prior {
    pub fn load(old_dir: &Path, upto_epoch: usize) -> Prior {
        let path = old_dir.join("metrics.jsonl");
        let history = match read_metrics(&path) {
            Ok((epochs, problems)) => {
                for p in problems {
                    eprintln!("note: {p}; the line is left out of this run's record");
                }
                epochs.into_iter().filter(|m| m.epoch <= upto_epoch).collect()
            }
            Err(e) => {
                eprintln!("note: {e}; this run's record starts without the earlier epochs");
                Vec::new()
            }
        };
        Prior { history, sessions: read_sessions(&old_dir.join("run.json")) }
    }
}

impl RunRecord {
    /// Starts the record in `dir`: the settings, this session, and the epochs of the run
    /// so far (`prior`, for a resumed run), written out again in every form.
    pub fn start(
        dir: &Path,
        config_toml: &str,
        title: String,
        session: &Session,
        prior: Prior,
    ) -> Result<RunRecord, String> {
        let record = RunRecord { dir: dir.to_path_buf(), history: prior.history, title };
        record.write("config.toml", config_toml)?;
        let mut sessions = prior.sessions;
        sessions.push(serde_json::json!({
            "started_utc": session.started_utc,
            "from_epoch": session.from_epoch,
            "from_batch": session.from_batch,
            "adapter": session.adapter,
            "data": session.data.to_string_lossy(),
            "gpu_train": env!("CARGO_PKG_VERSION"),
            "command": std::env::args().collect::<Vec<_>>(),
        }));
        let run = serde_json::json!({ "sessions": sessions });
        record.write("run.json", &format!("{}\n", serde_json::to_string_pretty(&run).unwrap_or_default()))?;
        record.rewrite()?;
        Ok(record)
    }

    /// Adds a finished epoch to metrics.jsonl, metrics.csv and curves.svg.
    pub fn add(&mut self, m: EpochMetrics) -> Result<(), String> {
        self.history.push(m);
        self.rewrite()
    }

    fn rewrite(&self) -> Result<(), String> {
        let lines: String = self.history.iter().map(|m| m.json() + "\n").collect();
        self.write("metrics.jsonl", &lines)?;
        self.write("metrics.csv", &csv(&self.history))?;
        self.write("curves.svg", &crate::curves::svg(&self.history, &self.title)?)
    }

    /// Replaces DIR/name whole (a temporary file renamed over it), so that a reader never
    /// sees half a file.
    fn write(&self, name: &str, text: &str) -> Result<(), String> {
        write_whole(&self.dir.join(name), text)
    }
}

/// Replaces `path` whole: a temporary file beside it (.NAME.tmp-PID, which
/// prepare_save_dir clears after a kill) renamed over it, so a reader never sees half.
pub fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot write it: {e}", path.display())
    })
}

/// metrics.csv: a header and one row per epoch, the columns of metrics.jsonl.
pub fn csv(history: &[EpochMetrics]) -> String {
    let mut out = String::from(EpochMetrics::CSV_HEADER);
    out.push('\n');
    for m in history {
        out.push_str(&m.csv_row());
        out.push('\n');
    }
    out
}

/// The epochs of a metrics.jsonl (none when it does not exist), and a note for each line
/// that is not an epoch's metrics (naming the file and line). Unreadable: an error.
pub fn read_metrics(path: &Path) -> Result<(Vec<EpochMetrics>, Vec<String>), String> {
    let text = match std::fs::read(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(format!("{}: cannot read it: {e}", path.display())),
    };
    let mut epochs = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match EpochMetrics::from_json(line) {
            Some(m) => epochs.push(m),
            None => problems.push(format!(
                "{}: line {} is not an epoch's metrics: {}",
                path.display(),
                i + 1,
                clip(line)
            )),
        }
    }
    Ok((epochs, problems))
}

fn read_sessions(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("sessions").and_then(|s| s.as_array()).cloned())
        .unwrap_or_default()
}

fn clip(line: &str) -> String {
    let short: String = line.chars().take(60).collect();
    if short.len() < line.len() { format!("{short}...") } else { short }
}
