//! `--preview-batch FILE.png`: a batch as the network sees it, drawn as a grid of images
//! for a person to look at (augmentation, normalisation). Input: the batch (B, S, S) as the
//! gather wrote it; each value is mapped back to its byte through the normalisation and
//! drawn as grey, up to 16 images a row with a 2-pixel mid-grey border between them.

use crate::normalize::Normalize;
use std::path::Path;

/// Images in one row of the grid.
const COLUMNS: usize = 16;
const BORDER: usize = 2;
const BORDER_GREY: u8 = 128;

/// The grid's (width, height, grey bytes) for `count` images of `side` x `side`.
pub fn grid(batch: &[f32], count: usize, side: usize, normalize: Normalize) -> (usize, usize, Vec<u8>) {
    let columns = count.clamp(1, COLUMNS);
    let rows = count.div_ceil(columns).max(1);
    let cell = side + BORDER;
    let (width, height) = (columns * cell + BORDER, rows * cell + BORDER);
    let mut pixels = vec![BORDER_GREY; width * height];
    let (mean, std) = match normalize {
        Normalize::Unit => (0.0, 1.0),
        Normalize::Standard { mean, std } => (mean, std),
    };
    for b in 0..count {
        let (top, left) = (BORDER + (b / columns) * cell, BORDER + (b % columns) * cell);
        for y in 0..side {
            for x in 0..side {
                let v = batch[(b * side + y) * side + x] as f64 * std + mean;
                pixels[(top + y) * width + left + x] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    (width, height, pixels)
}

/// Writes the first `batch` images (fewer when the split is smaller) as a PNG grid.
pub fn write_grid(
    path: &Path,
    values: &[f32],
    batch: usize,
    side: usize,
    normalize: Normalize,
) -> Result<(), String> {
    let count = batch.min(values.len() / (side * side).max(1));
    let (width, height, pixels) = grid(values, count, side, normalize);
    let png = encode_grey_png(width, height, &pixels)?;
    std::fs::write(path, png).map_err(|e| format!("{}: cannot write the preview: {e}", path.display()))
}

/// An 8-bit grey PNG of `pixels` (row-major, width x height) in memory.
pub fn encode_grey_png(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let fail = |e: png::EncodingError| format!("cannot encode a PNG image: {e}");
    let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(pixels).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}
