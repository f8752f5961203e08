//! PNG input for `predict`: decode (any bit depth, grey, grey+alpha, RGB, RGBA, palette),
//! convert to grey, pad to a square, resize by area averaging to side x side and quantise
//! to bytes, so the GPU normalises them exactly as it does IDX pixels.

use std::path::Path;

/// A decoded image as grey levels in [0, 255], row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

/// The decoder's complaint in a user's words: its format errors print internal structures
/// (chunk types as Rust debug output), so those become one plain phrase.
fn png_problem(e: &png::DecodingError) -> String {
    match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "it ends early".into()
        }
        png::DecodingError::IoError(io) => io.to_string(),
        png::DecodingError::Format(_) => "its data does not follow the PNG format".into(),
        png::DecodingError::LimitsExceeded => "it is too large to decode".into(),
        other => other.to_string(),
    }
}

/// Decodes a PNG. Transparent pixels are laid over `background` (0 black, 255 white).
pub fn decode_png(bytes: &[u8], background: f32) -> Result<Gray, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader =
        decoder.read_info().map_err(|e| format!("not a readable PNG image ({})", png_problem(&e)))?;
    let size = reader.output_buffer_size().ok_or("the PNG image is too large to decode")?;
    let mut buf = vec![0u8; size];
    let frame =
        reader.next_frame(&mut buf).map_err(|e| format!("the PNG image is damaged ({})", png_problem(&e)))?;
    let (width, height) = (frame.width as usize, frame.height as usize);
    let channels = frame.color_type.samples();
    let line = frame.line_size;
    if width == 0 || height == 0 {
        return Err("the image has no pixels".into());
    }
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = &buf[y * line..y * line + width * channels];
        for px in row.chunks_exact(channels) {
            let f = |i: usize| px[i] as f32;
            let (grey, alpha) = match channels {
                1 => (f(0), 255.0),
                2 => (f(0), f(1)),
                3 => (luma(f(0), f(1), f(2)), 255.0),
                _ => (luma(f(0), f(1), f(2)), f(3)),
            };
            let a = alpha / 255.0;
            pixels.push(grey * a + background * (1.0 - a));
        }
    }
    Ok(Gray { width, height, pixels })
}

/// ITU-R BT.601 luma, the usual colour-to-grey weights.
fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

impl Gray {
    /// Centres the image in a square of `background`, keeping its aspect ratio.
    pub fn padded_square(&self, background: f32) -> Gray {
        let n = self.width.max(self.height);
        let (x0, y0) = ((n - self.width) / 2, (n - self.height) / 2);
        let mut pixels = vec![background; n * n];
        for y in 0..self.height {
            let src = &self.pixels[y * self.width..(y + 1) * self.width];
            pixels[(y0 + y) * n + x0..(y0 + y) * n + x0 + self.width].copy_from_slice(src);
        }
        Gray { width: n, height: n, pixels }
    }

    /// Resamples to `w` x `h`: each output pixel is the area-weighted mean of the source
    /// pixels its footprint covers (a box filter, exact for both shrinking and growing).
    pub fn resized(&self, w: usize, h: usize) -> Gray {
        let xs = spans(self.width, w);
        let ys = spans(self.height, h);
        let mut pixels = Vec::with_capacity(w * h);
        for yspan in &ys {
            for xspan in &xs {
                let mut sum = 0.0f64;
                let mut weight = 0.0f64;
                for &(sy, wy) in yspan {
                    for &(sx, wx) in xspan {
                        sum += (wy * wx) as f64 * self.pixels[sy * self.width + sx] as f64;
                        weight += (wy * wx) as f64;
                    }
                }
                pixels.push((sum / weight) as f32);
            }
        }
        Gray { width: w, height: h, pixels }
    }

    /// Grey levels rounded to bytes, optionally inverted (255 - v).
    pub fn to_bytes(&self, invert: bool) -> Vec<u8> {
        self.pixels
            .iter()
            .map(|&v| {
                let v = v.clamp(0.0, 255.0);
                (if invert { 255.0 - v } else { v }).round() as u8
            })
            .collect()
    }
}

/// For each of `n` output cells along an axis of `len` source pixels: the source pixels it
/// overlaps and by how much.
fn spans(len: usize, n: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = len as f64 / n as f64;
    (0..n)
        .map(|i| {
            let (lo, hi) = (i as f64 * scale, (i + 1) as f64 * scale);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(len);
            (first..last)
                .map(|s| {
                    let overlap = (hi.min(s as f64 + 1.0) - lo.max(s as f64)).max(0.0);
                    (s, overlap as f32)
                })
                .filter(|&(_, w)| w > 0.0)
                .collect()
        })
        .collect()
}

/// Reads a PNG file and prepares it as `side` x `side` model input bytes.
pub fn load_for_model(path: &Path, side: usize, invert: bool) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    // The background is whatever becomes black (Fashion-MNIST's background) after inversion.
    let background = if invert { 255.0 } else { 0.0 };
    let image = decode_png(&bytes, background).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(image.padded_square(background).resized(side, side).to_bytes(invert))
}
