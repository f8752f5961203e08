//! Writing IDX files and whole datasets for tests.

use std::io::Write;
use std::path::Path;

/// IDX bytes: magic (0, 0, dtype, ndim), big-endian dims, payload.
pub fn idx_bytes(dtype: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, dtype, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A learnable synthetic set: class c images are bright in horizontal band c.
pub fn synthetic_split(count: usize, side: usize, classes: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut pixels = vec![0u8; count * side * side];
    let mut labels = vec![0u8; count];
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    for i in 0..count {
        let c = i % classes;
        labels[i] = c as u8;
        for y in 0..side {
            for x in 0..side {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = (state >> 58) as u8;
                let band = y * classes / side == c;
                pixels[(i * side + y) * side + x] = if band { 180 + noise } else { noise };
            }
        }
    }
    (pixels, labels)
}

/// Writes the four standard files for a synthetic set into `dir`.
pub fn write_dataset(dir: &Path, side: usize, classes: usize, train: usize, test: usize, gz: bool) {
    for (prefix, count, seed) in [("train", train, 1u64), ("t10k", test, 2)] {
        let (pixels, labels) = synthetic_split(count, side, classes, seed);
        let images = idx_bytes(8, &[count as u32, side as u32, side as u32], &pixels);
        let labels = idx_bytes(8, &[count as u32], &labels);
        let (images, labels, ext) =
            if gz { (gzip(&images), gzip(&labels), ".gz") } else { (images, labels, "") };
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), labels).unwrap();
    }
}
