//! IDX file reader (the MNIST family's format), gzip or raw.
//!
//! Layout: 2 zero bytes, a dtype byte (0x08 = u8), a dimension count byte, then one
//! big-endian u32 per dimension, then the payload in row-major order. Images are
//! (N, H, W) u8, labels are (N) u8. Every count is checked against the real payload
//! length before anything is allocated from it.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const DTYPE_U8: u8 = 0x08;

/// A parsed IDX u8 array: its dimensions and its payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct IdxError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for IdxError {}

fn err(path: &Path, problem: impl Into<String>) -> IdxError {
    IdxError { path: path.to_path_buf(), problem: problem.into() }
}

/// Reads an IDX file from disk; gzip is recognised by its magic bytes, not its name.
pub fn read_idx_file(path: &Path, expected_ndim: usize) -> Result<IdxArray, IdxError> {
    let raw = std::fs::read(path).map_err(|e| err(path, format!("cannot read file: {e}")))?;
    parse_idx(path, &raw, expected_ndim)
}

/// Parses IDX bytes (gzip or raw) that were read from `path` (used in messages only).
pub fn parse_idx(path: &Path, raw: &[u8], expected_ndim: usize) -> Result<IdxArray, IdxError> {
    if raw.starts_with(&GZIP_MAGIC) {
        let bytes = gunzip_idx(path, raw)?;
        parse_raw_idx(path, &bytes, expected_ndim)
    } else {
        parse_raw_idx(path, raw, expected_ndim)
    }
}

/// Decompresses in two steps: the header first, so that the payload size it claims can be
/// checked before a buffer of that size is reserved, then exactly that many bytes plus one
/// to detect trailing data.
fn gunzip_idx(path: &Path, raw: &[u8]) -> Result<Vec<u8>, IdxError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    let gz_err = |e: std::io::Error| err(path, format!("corrupt gzip stream: {e}"));
    let mut head = [0u8; 4];
    if !read_exactly(&mut decoder, &mut head).map_err(gz_err)? {
        return Err(err(path, "truncated: the file ends inside the 4-byte IDX header"));
    }
    let ndim = head[3] as usize;
    let mut dims_bytes = vec![0u8; ndim * 4];
    if !read_exactly(&mut decoder, &mut dims_bytes).map_err(gz_err)? {
        return Err(err(path, "truncated: the file ends inside the dimension list"));
    }
    let dims = dims_from_bytes(&dims_bytes);
    let payload = payload_len(path, &dims)?;
    // The deflate format expands at most ~1032x; a claim beyond that is a lie we can refuse
    // without reading.
    if payload as u128 > (raw.len() as u128) * 1032 + 1024 {
        return Err(err(
            path,
            format!(
                "header claims {payload} payload bytes (dims {dims:?}) but the compressed file has only {} bytes",
                raw.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(4 + dims_bytes.len() + payload);
    out.extend_from_slice(&head);
    out.extend_from_slice(&dims_bytes);
    decoder.take(payload as u64 + 1).read_to_end(&mut out).map_err(gz_err)?;
    Ok(out)
}

/// Fills `buf` completely; Ok(false) when the stream ends first.
fn read_exactly(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn dims_from_bytes(bytes: &[u8]) -> Vec<usize> {
    bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect()
}

fn payload_len(path: &Path, dims: &[usize]) -> Result<usize, IdxError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(path, format!("dimensions {dims:?} overflow the address space")))
}

fn parse_raw_idx(path: &Path, bytes: &[u8], expected_ndim: usize) -> Result<IdxArray, IdxError> {
    if bytes.len() < 4 {
        return Err(err(path, "truncated: the file ends inside the 4-byte IDX header"));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(
            path,
            format!(
                "not an IDX file: the magic starts with {:#04x} {:#04x}, expected 0x00 0x00",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != DTYPE_U8 {
        return Err(err(
            path,
            format!("unsupported IDX data type {:#04x}: only unsigned bytes (0x08) are supported", bytes[2]),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim != expected_ndim {
        return Err(err(path, format!("expected {expected_ndim} dimension(s), the header says {ndim}")));
    }
    let header_len = 4 + 4 * ndim;
    if bytes.len() < header_len {
        return Err(err(path, "truncated: the file ends inside the dimension list"));
    }
    let dims = dims_from_bytes(&bytes[4..header_len]);
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(err(path, format!("dimension {i} is zero (dims {dims:?})")));
    }
    let payload = payload_len(path, &dims)?;
    let actual = bytes.len() - header_len;
    if actual < payload {
        return Err(err(
            path,
            format!("truncated: header dims {dims:?} need {payload} payload bytes, the file has {actual}"),
        ));
    }
    if actual > payload {
        return Err(err(
            path,
            format!("{} trailing bytes after the {payload}-byte payload of dims {dims:?}", actual - payload),
        ));
    }
    Ok(IdxArray { dims, data: bytes[header_len..].to_vec() })
}
