//! How pixels become inputs. `unit` (the default): byte / 255, in [0, 1]. `standard`:
//! (byte / 255 - mean) / std with the training set's mean and standard deviation, computed
//! once at load in f64 over every training pixel. The gather applies x = v * scale + shift
//! (unit: scale 1, shift 0, the plain value bit for bit); a checkpoint stores the mean and
//! std, so evaluation and predict normalise as training did.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Normalize {
    #[default]
    Unit,
    Standard {
        mean: f64,
        std: f64,
    },
}

/// What `--normalize` asks for, before the data is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NormalizeChoice {
    Unit,
    Standard,
}

impl Normalize {
    /// The training set's statistics for `standard`.
    pub fn standard_for(pixels: &[u8]) -> Result<Normalize, String> {
        let n = pixels.len().max(1) as f64;
        let mean = pixels.iter().map(|&p| p as f64 / 255.0).sum::<f64>() / n;
        let var = pixels.iter().map(|&p| (p as f64 / 255.0 - mean).powi(2)).sum::<f64>() / n;
        if var.sqrt() < 1e-6 {
            return Err(
                "--normalize standard: every training pixel has the same value (no spread to divide by)"
                    .into(),
            );
        }
        Ok(Normalize::Standard { mean, std: var.sqrt() })
    }

    /// (scale, shift) of x = v * scale + shift for v in [0, 1].
    pub fn scale_shift(&self) -> (f32, f32) {
        match *self {
            Normalize::Unit => (1.0, 0.0),
            Normalize::Standard { mean, std } => ((1.0 / std) as f32, (-mean / std) as f32),
        }
    }

    /// Parses the checkpoint form: `unit` or `standard:MEAN:STD`.
    pub fn parse(text: &str) -> Result<Normalize, String> {
        if text == "unit" {
            return Ok(Normalize::Unit);
        }
        let parts: Vec<&str> = text.split(':').collect();
        match parts[..] {
            ["standard", m, s] => match (m.parse::<f64>(), s.parse::<f64>()) {
                (Ok(mean), Ok(std)) if mean.is_finite() && std.is_finite() && std > 0.0 => {
                    Ok(Normalize::Standard { mean, std })
                }
                _ => Err(format!("'{text}' does not hold a finite mean and a positive std")),
            },
            _ => Err(format!("'{text}' is not unit or standard:MEAN:STD")),
        }
    }
}

impl fmt::Display for Normalize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Normalize::Unit => write!(f, "unit"),
            Normalize::Standard { mean, std } => write!(f, "standard:{mean}:{std}"),
        }
    }
}
