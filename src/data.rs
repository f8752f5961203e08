//! Finding and loading an IDX image-classification set (train + test).
//!
//! Images are (N, H, W) u8 with H == W and H even (the GPU holds them 4 pixels to a word);
//! whether a model fits that side is the model's check (model.rs), naming the layer;
//! labels are (N) u8. Classes = largest train label + 1 (at least 2), and every class must
//! have a training image, unless the count is given (`--classes`, or a checkpoint's).

use crate::idx::{IdxArray, read_idx_file};
use std::path::{Path, PathBuf};

pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
const FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// One split: `count` images of `side` x `side` pixels, row-major, and their labels.
#[derive(Debug, Clone)]
pub struct Split {
    pub count: usize,
    pub side: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    /// The first `n` samples (or all of them).
    pub fn truncated(mut self, n: Option<usize>) -> Split {
        if let Some(n) = n {
            let n = n.min(self.count);
            self.count = n;
            self.pixels.truncate(n * self.side * self.side);
            self.labels.truncate(n);
        }
        self
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub train: Split,
    pub test: Split,
    pub classes: usize,
}

/// $XDG_DATA_HOME, else ~/.local/share.
pub fn user_data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
}

/// Where the data is looked for when `--data` is not given, in order.
pub fn default_search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("data")];
    if let Some(base) = user_data_dir() {
        dirs.push(base.join("gpu-train/fashion-mnist"));
    }
    dirs.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
    dirs
}

/// The path of a standard file in `dir`, raw or `.gz`, if either exists.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [name.to_string(), format!("{name}.gz")].iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn missing_files<'a>(dir: &Path, files: &[&'a str]) -> Vec<&'a str> {
    files.iter().copied().filter(|f| find_file(dir, f).is_none()).collect()
}

/// Resolves the data directory: the explicit one, or the first default that holds all four files.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    locate_with(explicit, &FILES)
}

/// Whether `locate` would find the four files (in `explicit`, or a default directory),
/// without its notes.
pub fn locate_quietly(explicit: Option<&Path>) -> bool {
    match explicit {
        Some(dir) => dir.is_dir() && missing_files(dir, &FILES).is_empty(),
        None => default_search_dirs().iter().any(|d| missing_files(d, &FILES).is_empty()),
    }
}

/// The same for `eval`, which reads only the test split.
pub fn locate_test(explicit: Option<&Path>) -> Result<PathBuf, String> {
    locate_with(explicit, &[TEST_IMAGES, TEST_LABELS])
}

fn locate_with(explicit: Option<&Path>, files: &[&str]) -> Result<PathBuf, String> {
    if let Some(dir) = explicit {
        if dir.is_file() {
            return Err(format!("{}: --data needs a directory, and this is a file", dir.display()));
        }
        if !dir.is_dir() {
            return Err(format!("{}: data directory does not exist", dir.display()));
        }
        let missing = missing_files(dir, files);
        if missing.len() == files.len() {
            return Err(format!(
                "{}: missing {} (each may also end in .gz); fetch Fashion-MNIST into it with \
                 `gpu-train download --dir {}`, or train with --download",
                dir.display(),
                missing.join(", "),
                crate::run::shell_quote(&dir.to_string_lossy())
            ));
        }
        // some of a set are there: someone's own dataset, which a download must not touch
        if !missing.is_empty() {
            return Err(format!(
                "{}: missing {} (each may also end in .gz); a dataset needs all four files",
                dir.display(),
                missing.join(", ")
            ));
        }
        return Ok(dir.to_path_buf());
    }
    let dirs = default_search_dirs();
    for dir in &dirs {
        let missing = missing_files(dir, files);
        if missing.is_empty() {
            return Ok(dir.clone());
        }
        if dir.is_dir() {
            eprintln!(
                "note: {}: skipped, missing {} (each may end in .gz)",
                dir.display(),
                missing.join(", ")
            );
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "no dataset found; searched {} for {} (optionally .gz). Fetch Fashion-MNIST with \
         `gpu-train download` (or train with --download), install it with \
         `apt-get install dataset-fashion-mnist`, put the four files in ./data, or pass --data DIR",
        searched.join(", "),
        files.join(", ")
    ))
}

/// The test split alone, for a model with `classes` classes (eval).
pub fn load_test(dir: &Path, classes: usize) -> Result<Split, String> {
    let path_of = |name: &str| {
        find_file(dir, name).ok_or_else(|| format!("{}: missing {name} (or {name}.gz)", dir.display()))
    };
    let labels_path = path_of(TEST_LABELS)?;
    let test = load_split(&path_of(TEST_IMAGES)?, &labels_path)?;
    if let Some(bad) = test.labels.iter().position(|&l| l as usize >= classes) {
        return Err(format!(
            "{}: label {} at index {bad} is outside the checkpoint's {classes} classes",
            labels_path.display(),
            test.labels[bad]
        ));
    }
    Ok(test)
}

/// Where the number of classes comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassCount {
    /// The largest training label + 1 (at least 2); every class needs a training image.
    FromLabels,
    /// `--classes N`: at least the largest training label + 1; classes may lack images.
    Flag(usize),
    /// A checkpoint's class count (eval, resume).
    Checkpoint(usize),
    /// The largest training label + 1 (at least 2), classes may lack images: for `bench`,
    /// which measures speed and trains nothing that lasts.
    AnyLabels,
}

/// Loads and validates both splits from `dir`; classes from the training labels.
pub fn load(dir: &Path) -> Result<Dataset, String> {
    load_with_classes(dir, ClassCount::FromLabels)
}

/// "3, 5-9, 12": sorted class numbers as ranges, cut short after a few ranges.
fn class_ranges(classes: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &c in classes {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == c => *end = c,
            _ => ranges.push((c, c)),
        }
    }
    const SHOWN: usize = 6;
    let mut parts: Vec<String> = ranges
        .iter()
        .take(SHOWN)
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect();
    if ranges.len() > SHOWN {
        parts.push(format!("... ({} classes in all)", classes.len()));
    }
    parts.join(", ")
}

/// Loads and validates both splits from `dir`, with the class count from `classes`.
pub fn load_with_classes(dir: &Path, classes: ClassCount) -> Result<Dataset, String> {
    let path_of = |name: &str| {
        find_file(dir, name).ok_or_else(|| format!("{}: missing {name} (or {name}.gz)", dir.display()))
    };
    let train_labels = path_of(TRAIN_LABELS)?;
    let train = load_split(&path_of(TRAIN_IMAGES)?, &train_labels)?;
    let test_images = path_of(TEST_IMAGES)?;
    let test = load_split(&test_images, &path_of(TEST_LABELS)?)?;
    if test.side != train.side {
        return Err(format!(
            "{}: test images are {}x{} but training images are {}x{}",
            test_images.display(),
            test.side,
            test.side,
            train.side,
            train.side
        ));
    }
    let largest = train.labels.iter().enumerate().max_by_key(|&(i, &l)| (l, std::cmp::Reverse(i)));
    let max_label = largest.map_or(0, |(_, &l)| l as usize);
    let (classes, outside) = match classes {
        ClassCount::FromLabels => {
            let classes = (max_label + 1).max(2);
            let mut seen = vec![false; classes];
            for &l in &train.labels {
                seen[l as usize] = true;
            }
            let empty: Vec<usize> = (0..classes).filter(|&c| !seen[c]).collect();
            if !empty.is_empty() {
                let biggest = match largest {
                    Some((i, &l)) => format!("the largest label, {l} at index {i}, makes {classes} classes"),
                    None => format!("there are no labels, and a model needs {classes} classes"),
                };
                let (noun, verb) = if empty.len() == 1 { ("class", "has") } else { ("classes", "have") };
                return Err(format!(
                    "{}: {noun} {} {verb} no training images ({biggest}); fix the labels if one is wrong, \
                     or pass --classes {classes} (or more) to train with classes that have no images",
                    train_labels.display(),
                    class_ranges(&empty),
                ));
            }
            (classes, format!("the {classes} classes seen in training"))
        }
        ClassCount::AnyLabels => {
            let classes = (max_label + 1).max(2);
            (classes, format!("the {classes} classes seen in training"))
        }
        ClassCount::Flag(n) | ClassCount::Checkpoint(n) => {
            let (what, hint) = match classes {
                ClassCount::Flag(_) => (
                    format!("the {n} classes of --classes {n}"),
                    format!(
                        "; --classes must be at least {} (the largest training label + 1)",
                        max_label + 1
                    ),
                ),
                _ => (format!("the checkpoint's {n} classes"), String::new()),
            };
            if let Some((i, &l)) = largest.filter(|&(_, &l)| l as usize >= n) {
                return Err(format!(
                    "{}: label {l} at index {i} is outside {what}{hint}",
                    train_labels.display()
                ));
            }
            (n, what)
        }
    };
    if let Some(bad) = test.labels.iter().position(|&l| l as usize >= classes) {
        return Err(format!(
            "{}: label {} at index {bad} is outside {outside}",
            path_of(TEST_LABELS)?.display(),
            test.labels[bad]
        ));
    }
    Ok(Dataset { dir: dir.to_path_buf(), train, test, classes })
}

/// Loads one images/labels pair and checks that they belong together.
pub fn load_split(images_path: &Path, labels_path: &Path) -> Result<Split, String> {
    let images = read_idx_file(images_path, 3).map_err(|e| e.to_string())?;
    let labels = read_idx_file(labels_path, 1).map_err(|e| e.to_string())?;
    split_from_arrays(images_path, images, labels_path, labels)
}

pub fn split_from_arrays(
    images_path: &Path,
    images: IdxArray,
    labels_path: &Path,
    labels: IdxArray,
) -> Result<Split, String> {
    let (count, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if h != w {
        return Err(format!(
            "{}: images are {h}x{w}; only square images are supported",
            images_path.display()
        ));
    }
    // the batch gather reads each image as whole u32 words of 4 pixels: an even side
    if h % 2 != 0 || h == 0 {
        return Err(format!(
            "{}: images are {h}x{h}; gpu-train needs an even, non-zero side (it stores 4 pixels to a word)",
            images_path.display()
        ));
    }
    if labels.dims[0] != count {
        return Err(format!(
            "{}: {} labels for {count} images in {}",
            labels_path.display(),
            labels.dims[0],
            images_path.display()
        ));
    }
    Ok(Split { count, side: h, pixels: images.data, labels: labels.data })
}

/// Random pixels and labels of Fashion-MNIST's shape, for benchmarks when no data is installed.
pub fn synthetic(train: usize, test: usize, side: usize, classes: usize, seed: u64) -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut split = |count: usize| Split {
        count,
        side,
        pixels: (0..count * side * side).map(|_| rng.random()).collect(),
        labels: (0..count).map(|_| rng.random_range(0..classes as u8)).collect(),
    };
    let (train, test) = (split(train), split(test));
    Dataset { dir: PathBuf::from("(synthetic)"), train, test, classes }
}
