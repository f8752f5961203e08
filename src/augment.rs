//! Training-time augmentation, applied by the gather kernel (shaders/gather.wgsl,
//! gather_augment) as it builds each batch: a random crop of the image zero-padded by
//! `crop` pixels and a left-right flip with probability 1/2. Every choice is a hash of
//! (seed, optimiser update, the sample's place in the epoch's order), so the same seed
//! gives the same images and a resumed run sees what an unbroken one would. Evaluation and
//! predict never augment. `reference` is the same arithmetic on the host, for the tests.
//!
//! `--augment`: comma-separated `crop=P` (0 <= P <= 8) and `flip`, or `none`.

use std::fmt;

/// The largest crop padding accepted: beyond it most of a 28x28 image would leave the frame.
pub const MAX_CROP: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augment {
    pub crop: u32,
    pub flip: bool,
}

impl Augment {
    pub fn is_none(&self) -> bool {
        self.crop == 0 && !self.flip
    }

    pub fn parse(text: &str) -> Result<Augment, String> {
        let mut a = Augment::default();
        let t = text.trim().to_ascii_lowercase();
        if t == "none" {
            return Ok(a);
        }
        for part in t.split(',').map(str::trim) {
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
            } else {
                return Err(format!(
                    "unknown augmentation '{part}'; expected crop=P, flip or none (as in crop=2,flip)"
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
        let mut out = vec![0f32; batch * area];
        for b in 0..batch {
            let pos = start + (b as u32).min(count - 1);
            let sample = order[pos as usize] as usize;
            let h = mix(seed ^ mix(update ^ mix(pos)));
            let span = 2 * self.crop + 1;
            let dy = (mix(h ^ 1) % span) as i64 - self.crop as i64;
            let dx = (mix(h ^ 2) % span) as i64 - self.crop as i64;
            let flipped = self.flip && mix(h ^ 3) & 1 == 1;
            for yy in 0..side {
                for xx in 0..side {
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

/// The shader's 32-bit mixing hash.
pub fn mix(v: u32) -> u32 {
    let mut x = v;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        if self.crop > 0 {
            parts.push(format!("crop={}", self.crop));
        }
        if self.flip {
            parts.push("flip".to_string());
        }
        if parts.is_empty() { write!(f, "none") } else { write!(f, "{}", parts.join(",")) }
    }
}
