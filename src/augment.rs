//! Training-time augmentation, applied by the gather kernel (shaders/gather.wgsl,
//! gather_augment) as it builds each batch: a random crop of the image zero-padded by
//! `crop` pixels, a left-right flip with probability 1/2, then random erasing: with
//! probability `erase`, a rectangle of 2% to 33% of the image, its aspect ratio
//! log-uniform in [0.3, 3.3], set to 0 after normalisation (the training mean under
//! `--normalize standard`). Every choice is a hash of (seed, optimiser update, the sample's
//! place in the epoch's order), so the same seed gives the same images and a resumed run
//! sees what an unbroken one would. Evaluation and predict never augment. `reference` is
//! the same arithmetic on the host, for the tests.
//!
//! The erased rectangle is drawn in whole numbers only (the aspect ratio from a table of
//! 32 log-spaced ratios in 1/256ths, sides by exact integer square roots rounded to nearest), so the GPU and
//! the host agree bit for bit; no log or exp is evaluated on the device.
//!
//! `--augment`: comma-separated `crop=P` (0 <= P <= 8), `flip` and `erase=P`
//! (0 <= P <= 1, in steps of 0.0001), or `none`.

use std::fmt;

/// The largest crop padding accepted: beyond it most of a 28x28 image would leave the frame.
pub const MAX_CROP: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augment {
    pub crop: u32,
    pub flip: bool,
    /// Probability of erasing a rectangle, in parts per `ERASE_SCALE`.
    pub erase: u32,
}

/// `erase` is in parts per ten thousand.
pub const ERASE_SCALE: u32 = 10_000;
/// The erased area's range, in parts per thousand of the image.
pub const ERASE_AREA_PERMILLE: (u32, u32) = (20, 330);
/// The erased rectangle's aspect ratio range (height / width), log-uniform.
pub const ERASE_RATIO: (f64, f64) = (0.3, 1.0 / 0.3);
/// How many aspect ratios the table holds.
pub const ERASE_RATIOS: usize = 32;

/// The aspect-ratio table in 1/256ths: entry i is the ratio at the middle of the i-th of
/// 32 equal steps of log ratio across `ERASE_RATIO`. The gather receives it as a uniform.
pub fn erase_ratios_q8() -> [u32; ERASE_RATIOS] {
    let (lo, hi) = (ERASE_RATIO.0.ln(), ERASE_RATIO.1.ln());
    std::array::from_fn(|i| {
        let t = (i as f64 + 0.5) / ERASE_RATIOS as f64;
        (256.0 * (lo + t * (hi - lo)).exp()).round() as u32
    })
}

/// The exact integer square root: the largest r with r * r <= n.
pub fn isqrt(n: u32) -> u32 {
    let mut r = (n as f64).sqrt() as u64;
    while r * r > n as u64 {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n as u64 {
        r += 1;
    }
    r as u32
}

/// sqrt(n) rounded to the nearest whole number.
pub fn round_sqrt(n: u32) -> u32 {
    let r = isqrt(n);
    if n - r * r > r { r + 1 } else { r }
}

/// floor(a * b / c) without overflowing u32 on the way (the shader's arithmetic).
fn mul_div(a: u32, b: u32, c: u32) -> u32 {
    (a / c) * b + (a % c) * b / c
}

/// The rectangle (top, left, height, width) erased from the output image for hash `h`,
/// or None when this sample is not erased.
pub fn erase_rect(
    erase: u32,
    side: u32,
    h: u32,
    ratios: &[u32; ERASE_RATIOS],
) -> Option<(u32, u32, u32, u32)> {
    if erase == 0 || mix(h ^ 4) % ERASE_SCALE >= erase {
        return None;
    }
    let (lo, hi) = ERASE_AREA_PERMILLE;
    let area = side * side;
    let target = mul_div(area, lo + mix(h ^ 5) % (hi - lo + 1), 1000);
    let q = ratios[(mix(h ^ 6) % ERASE_RATIOS as u32) as usize];
    let eh = round_sqrt(mul_div(target, q, 256)).clamp(1, side);
    let ew = round_sqrt(mul_div(target, 256, q)).clamp(1, side);
    let top = mix(h ^ 7) % (side - eh + 1);
    let left = mix(h ^ 8) % (side - ew + 1);
    Some((top, left, eh, ew))
}

impl Augment {
    pub fn is_none(&self) -> bool {
        self.crop == 0 && !self.flip && self.erase == 0
    }

    pub fn parse(text: &str) -> Result<Augment, String> {
        let mut a = Augment::default();
        let t = text.trim().to_ascii_lowercase();
        if t == "none" {
            return Ok(a);
        }
        let mut seen: Vec<&str> = Vec::new();
        for part in t.split(',').map(str::trim) {
            let name = part.split('=').next().unwrap_or(part);
            if seen.contains(&name) {
                return Err(format!(
                    "'{name}' is given twice in '{}'; give each augmentation once",
                    text.trim()
                ));
            }
            seen.push(name);
            if part == "flip" {
                a.flip = true;
            } else if let Some(p) = part.strip_prefix("crop=") {
                a.crop = match p.parse::<u32>() {
                    Ok(n) if n <= MAX_CROP => n,
                    _ => {
                        return Err(format!(
                            "crop padding '{p}' must be a whole number from 0 to {MAX_CROP}"
                        ));
                    }
                };
            } else if let Some(p) = part.strip_prefix("erase=") {
                a.erase = match p.parse::<f64>() {
                    Ok(x) if (0.0..=1.0).contains(&x) => {
                        let parts = (x * ERASE_SCALE as f64).round();
                        if (parts - x * ERASE_SCALE as f64).abs() > 1e-6 {
                            return Err(format!(
                                "erase probability '{p}' has more than 4 decimals; it is kept in steps of 0.0001"
                            ));
                        }
                        parts as u32
                    }
                    _ => {
                        return Err(format!("erase probability '{p}' must be a number from 0 to 1"));
                    }
                };
            } else {
                return Err(format!(
                    "unknown augmentation '{part}'; expected crop=P, flip, erase=P or none (as in crop=2,flip,erase=0.25)"
                ));
            }
        }
        Ok(a)
    }

    /// The batch `gather_augment` builds: (B, S, S) pixels in [0, 1], for a split's `pixels`
    /// (u8, image after image), its `order`, and a step at `start` with `count` valid samples.
    #[allow(clippy::too_many_arguments)]
    pub fn reference(
        &self,
        pixels: &[u8],
        side: usize,
        order: &[u32],
        start: u32,
        count: u32,
        batch: usize,
        update: u32,
        seed: u32,
    ) -> Vec<f32> {
        let area = side * side;
        let ratios = erase_ratios_q8();
        let mut out = vec![0f32; batch * area];
        for b in 0..batch {
            let pos = start + (b as u32).min(count - 1);
            let sample = order[pos as usize] as usize;
            let h = mix(seed ^ mix(update ^ mix(pos)));
            let span = 2 * self.crop + 1;
            let dy = (mix(h ^ 1) % span) as i64 - self.crop as i64;
            let dx = (mix(h ^ 2) % span) as i64 - self.crop as i64;
            let flipped = self.flip && mix(h ^ 3) & 1 == 1;
            let erased = erase_rect(self.erase, side as u32, h, &ratios);
            for yy in 0..side {
                for xx in 0..side {
                    if let Some((top, left, eh, ew)) = erased {
                        let (y, x) = (yy as u32, xx as u32);
                        if (top..top + eh).contains(&y) && (left..left + ew).contains(&x) {
                            continue; // erased: stays 0
                        }
                    }
                    let cx = if flipped { side - 1 - xx } else { xx };
                    let (sy, sx) = (yy as i64 + dy, cx as i64 + dx);
                    let s = side as i64;
                    if (0..s).contains(&sy) && (0..s).contains(&sx) {
                        let v = pixels[sample * area + sy as usize * side + sx as usize];
                        out[b * area + yy * side + xx] = v as f32 / 255.0;
                    }
                }
            }
        }
        out
    }
}

/// The shaders' 32-bit mixing hash (shaders/step.wgsl), shared with dropout.
pub use crate::layers::dropout::mix;

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        if self.crop > 0 {
            parts.push(format!("crop={}", self.crop));
        }
        if self.flip {
            parts.push("flip".to_string());
        }
        if self.erase > 0 {
            parts.push(format!("erase={}", self.erase as f64 / ERASE_SCALE as f64));
        }
        if parts.is_empty() { write!(f, "none") } else { write!(f, "{}", parts.join(",")) }
    }
}
