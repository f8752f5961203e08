//! `gpu-train download` against a local HTTP server on 127.0.0.1 that serves Debian's
//! Fashion-MNIST files as they are, recompressed, truncated, corrupted, absent, or cut off
//! part way (then resumed with a range request).

mod common;
#[path = "common/run_cli.rs"]
mod run_cli;

use common::skip::skip_unless_ci;
use run_cli::gpu_train;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SOURCE: &str = "/usr/share/datasets/fashion-mnist";
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];
/// Requests to /flaky/ that are cut off part way before it serves whole files.
const FLAKY_CUTS: usize = 3;

/// Every request's (path, Range header).
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Server {
    base: String,
    log: RequestLog,
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn gzip_with(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Serves /good/ (the files as they are), /recompressed/ (same content, gzip level 1), and
/// prefixes where train-images is bad: /truncated/ (its first half, sent whole),
/// /corrupted/ (one content byte changed, recompressed: valid gzip, wrong content),
/// /damaged/ (one byte of the compressed stream flipped), /absent/ (404), /flaky/ (cut
/// off after 40% FLAKY_CUTS times, then whole, honouring ranges).
fn serve() -> Option<Server> {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for name in FILES {
        let bytes = std::fs::read(Path::new(SOURCE).join(name)).ok()?;
        for prefix in ["good", "truncated", "corrupted", "damaged", "absent", "flaky"] {
            files.insert(format!("/{prefix}/{name}"), bytes.clone());
        }
        files.insert(format!("/recompressed/{name}"), gzip_with(&gunzip(&bytes), 1));
    }
    let images = files["/good/train-images-idx3-ubyte.gz"].clone();
    files.insert("/truncated/train-images-idx3-ubyte.gz".into(), images[..images.len() / 2].to_vec());
    let mut content = gunzip(&images);
    content[1000] ^= 0x55;
    files.insert("/corrupted/train-images-idx3-ubyte.gz".into(), gzip_with(&content, 6));
    let mut damaged = images.clone();
    damaged[images.len() / 3] ^= 0xff;
    files.insert("/damaged/train-images-idx3-ubyte.gz".into(), damaged);
    files.remove("/absent/train-images-idx3-ubyte.gz");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let flaky_cuts = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &files, &seen, &flaky_cuts);
        }
    });
    Some(Server { base, log })
}

fn answer(
    mut stream: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    log: &RequestLog,
    flaky_cuts: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let Some(body) = files.get(&path) else {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|&f| f < body.len());
    let (status, part) = match from {
        Some(f) => ("206 Partial Content", &body[f..]),
        None => ("200 OK", &body[..]),
    };
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", part.len());
    if let Some(f) = from {
        head += &format!("Content-Range: bytes {f}-{}/{}\r\n", body.len() - 1, body.len());
    }
    stream.write_all(head.as_bytes())?;
    stream.write_all(b"\r\n")?;
    let cut =
        path.starts_with("/flaky/train-images") && flaky_cuts.fetch_add(1, Ordering::SeqCst) < FLAKY_CUTS;
    if cut {
        // 40% of what is left, then the connection drops
        stream.write_all(&part[..part.len() * 2 / 5])?;
        return stream.shutdown(std::net::Shutdown::Both);
    }
    stream.write_all(part)
}

fn server_or_skip() -> Option<Server> {
    let server = serve();
    if server.is_none() {
        skip_unless_ci(&format!("{SOURCE} is missing (apt-get install dataset-fashion-mnist)"));
    }
    server
}

fn download(server: &Server, dir: &Path, prefixes: &[&str]) -> (i32, String, String) {
    let mut args = vec!["download".to_string(), "--dir".into(), dir.to_str().unwrap().into()];
    for p in prefixes {
        args.push("--mirror".into());
        args.push(format!("{}/{p}/", server.base));
    }
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let (code, stdout, stderr) = gpu_train(&refs);
    println!("{prefixes:?}: exit {code}\n{stdout}{stderr}");
    (code, stdout, stderr)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_good_mirror_gives_four_verified_files_that_train() {
    let Some(server) = server_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = download(&server, dir.path(), &["good"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.matches(", verified").count(), 4, "{stdout}");
    for name in FILES {
        let got = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(got, std::fs::read(Path::new(SOURCE).join(name)).unwrap(), "{name}");
    }
    assert_eq!(names_in(dir.path()), {
        let mut f: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
        f.sort();
        f
    });
    // a second run finds them and fetches nothing
    let before = server.log.lock().unwrap().len();
    let (code, stdout, _) = download(&server, dir.path(), &["good"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.matches("already there, verified").count(), 4, "{stdout}");
    assert_eq!(server.log.lock().unwrap().len(), before, "no request for files already there");
    // the downloaded directory is a dataset training reads
    let data = dir.path().to_str().unwrap();
    let short = ["--epochs", "1", "--limit-train", "256", "--limit-test", "128", "--no-save"];
    let (code, stdout, stderr) = gpu_train(&[&["--data", data][..], &short].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("60000 train") || stdout.contains("256 train"), "{stdout}");
}

#[test]
fn recompressed_copies_of_the_same_content_pass() {
    let Some(server) = server_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = download(&server, dir.path(), &["recompressed"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.matches(", verified").count(), 4, "{stdout}");
}

#[test]
fn truncated_corrupted_damaged_and_absent_files_are_clear_errors_and_leave_nothing() {
    let Some(server) = server_or_skip() else { return };
    // a flipped bit in the compressed stream shows as whichever check it trips first
    let damage: &[&str] =
        &["is not intact gzip data", "holds more than", "holds ", "ends early", "wrong content"];
    for (prefix, needles) in [
        ("truncated", &["ends early: it is truncated"][..]),
        ("corrupted", &["has the wrong content: SHA-256"][..]),
        ("damaged", damage),
        ("absent", &["not found there (HTTP 404)"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, _, stderr) = download(&server, dir.path(), &[prefix]);
        assert_eq!(code, 1, "{prefix}");
        assert!(
            stderr.contains("train-images-idx3-ubyte.gz: no mirror gave a good copy"),
            "{prefix}: {stderr}"
        );
        assert!(needles.iter().any(|n| stderr.contains(n)), "{prefix}: {stderr}");
        assert!(stderr.contains(&format!("{}/{prefix}/train-images-idx3-ubyte.gz", server.base)), "{stderr}");
        assert_eq!(names_in(dir.path()), Vec::<String>::new(), "{prefix}: no file, whole or partial");
    }
}

#[test]
fn a_bad_mirror_falls_back_to_the_next() {
    let Some(server) = server_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = download(&server, dir.path(), &["absent", "corrupted", "good"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("from {}/good/train-images-idx3-ubyte.gz, verified", server.base)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("from {}/absent/train-labels-idx1-ubyte.gz, verified", server.base)),
        "{stdout}"
    );
}

#[test]
fn a_download_cut_off_part_way_resumes_on_the_next_run() {
    let Some(server) = server_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    // the first run resumes twice by itself and is cut off all three times
    let (code, stdout, stderr) = download(&server, dir.path(), &["flaky"]);
    assert_eq!(code, 1);
    assert_eq!(stdout.matches("; resuming").count(), 2, "{stdout}");
    assert!(stderr.contains("broke off after") && stderr.contains("the same command resumes it"), "{stderr}");
    // the part, and the URL it came from (a part is resumed only from there)
    let kept = [".train-images-idx3-ubyte.gz.part", ".train-images-idx3-ubyte.gz.part.from"];
    assert_eq!(names_in(dir.path()), kept.map(String::from));
    let (code, stdout, _) = download(&server, dir.path(), &["flaky"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.matches(", verified").count(), 4, "{stdout}");
    let log = server.log.lock().unwrap();
    let ranges: Vec<&Option<String>> =
        log.iter().filter(|(p, _)| p == "/flaky/train-images-idx3-ubyte.gz").map(|(_, r)| r).collect();
    println!("requests for train-images: {ranges:?}");
    // one fresh request, then every later one continues where the part ended
    assert_eq!(ranges.len(), 4);
    assert!(ranges[0].is_none());
    assert!(ranges[1..].iter().all(|r| r.as_deref().is_some_and(|r| r.starts_with("bytes="))));
    assert_eq!(
        std::fs::read(dir.path().join(FILES[0])).unwrap(),
        std::fs::read(Path::new(SOURCE).join(FILES[0])).unwrap()
    );
}

#[test]
fn no_mirror_answering_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // port 1 on the loopback: nothing listens there
    let (code, _, stderr) =
        gpu_train(&["download", "--dir", dir.path().to_str().unwrap(), "--mirror", "http://127.0.0.1:1/"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(stderr.contains("pass --mirror URL of another copy"), "{stderr}");
    let (code, _, stderr) = gpu_train(&["download", "--mirror", "ftp://example.org/"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not an http:// or https:// URL"), "{stderr}");
}
