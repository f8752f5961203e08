//! The IDX reader and dataset loader on valid and malformed files.

#[path = "common/idx_files.rs"]
mod idx_files;
use gpu_train::data;
use gpu_train::idx::parse_idx;
use idx_files::*;
use std::path::Path;

fn parse(bytes: &[u8], ndim: usize) -> Result<Vec<usize>, String> {
    parse_idx(Path::new("f.idx"), bytes, ndim).map(|a| a.dims).map_err(|e| e.to_string())
}

fn expect_err(bytes: &[u8], ndim: usize, needle: &str) {
    for (kind, b) in [("raw", bytes.to_vec()), ("gzip", gzip(bytes))] {
        match parse(&b, ndim) {
            Ok(dims) => panic!("{kind}: expected an error containing '{needle}', got dims {dims:?}"),
            Err(e) => {
                println!("{kind}: {e}");
                assert!(e.contains(needle), "{kind}: error '{e}' should mention '{needle}'");
                assert!(e.starts_with("f.idx: "), "{kind}: error '{e}' should name the file");
            }
        }
    }
}

#[test]
fn reads_valid_raw_and_gzip_files() {
    let payload: Vec<u8> = (0..2 * 4 * 4).map(|i| i as u8).collect();
    let raw = idx_bytes(8, &[2, 4, 4], &payload);
    for bytes in [raw.clone(), gzip(&raw)] {
        let a = parse_idx(Path::new("x"), &bytes, 3).unwrap();
        assert_eq!(a.dims, vec![2, 4, 4]);
        assert_eq!(a.data, payload);
    }
}

#[test]
fn gzip_is_detected_by_magic_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let raw = idx_bytes(8, &[3], &[1, 2, 3]);
    // A gzip file without .gz and a raw file with .gz both load.
    std::fs::write(dir.path().join("a"), gzip(&raw)).unwrap();
    std::fs::write(dir.path().join("b.gz"), &raw).unwrap();
    for name in ["a", "b.gz"] {
        let a = gpu_train::idx::read_idx_file(&dir.path().join(name), 1).unwrap();
        assert_eq!(a.data, vec![1, 2, 3], "{name}");
    }
}

#[test]
fn rejects_each_malformed_header() {
    let good = idx_bytes(8, &[2, 4, 4], &[7; 32]);
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    expect_err(&bad_magic, 3, "not an IDX file");
    let mut bad_dtype = good.clone();
    bad_dtype[2] = 0x0D;
    expect_err(&bad_dtype, 3, "data type");
    expect_err(&good, 1, "expected 1 dimension");
    expect_err(&good[..3], 3, "truncated");
    expect_err(&good[..9], 3, "truncated");
    expect_err(&good[..good.len() - 1], 3, "truncated");
    let mut trailing = good.clone();
    trailing.push(0);
    expect_err(&trailing, 3, "trailing");
    expect_err(&idx_bytes(8, &[0, 4, 4], &[]), 3, "zero");
    expect_err(&[], 3, "truncated");
}

#[test]
fn huge_claimed_count_is_an_error_not_an_allocation() {
    // 4 billion 28x28 images claimed by a 1 KB file.
    let bytes = idx_bytes(8, &[4_000_000_000, 28, 28], &[0; 1024]);
    let e = parse(&bytes, 3).unwrap_err();
    assert!(e.contains("truncated") && e.contains("need"), "{e}");
    let gz = gzip(&bytes);
    let e = parse(&gz, 3).unwrap_err();
    println!("{e}");
    assert!(e.contains("header claims") || e.contains("overflow"), "{e}");
    // dims whose product overflows usize
    let e = parse(&idx_bytes(8, &[u32::MAX, u32::MAX, u32::MAX], &[0; 8]), 3).unwrap_err();
    assert!(e.contains("overflow") || e.contains("truncated"), "{e}");
}

#[test]
fn corrupt_gzip_stream_is_an_error() {
    let mut gz = gzip(&idx_bytes(8, &[2, 4, 4], &[9; 32]));
    let n = gz.len();
    for b in &mut gz[12..n - 8] {
        *b ^= 0x5a;
    }
    let e = parse(&gz, 3).unwrap_err();
    println!("{e}");
    assert!(e.starts_with("f.idx: "), "{e}");
}

fn dataset_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 8, 3, 12, 6, false);
    dir
}

#[test]
fn loads_a_raw_dataset_of_square_images() {
    let dir = dataset_dir();
    let d = data::load(dir.path()).unwrap();
    assert_eq!((d.train.count, d.test.count, d.train.side, d.classes), (12, 6, 8, 3));
}

#[test]
fn dataset_checks_counts_labels_and_shapes() {
    let check = |file: &str, bytes: Vec<u8>, needle: &str| {
        let dir = dataset_dir();
        std::fs::write(dir.path().join(file), bytes).unwrap();
        let e = data::load(dir.path()).unwrap_err();
        println!("{e}");
        assert!(e.contains(needle), "'{e}' should mention '{needle}'");
        assert!(e.contains(file), "'{e}' should name {file}");
    };
    check("train-labels-idx1-ubyte", idx_bytes(8, &[11], &[0; 11]), "11 labels for 12 images");
    check("t10k-labels-idx1-ubyte", idx_bytes(8, &[6], &[0, 1, 2, 3, 0, 1]), "outside the 3 classes");
    check("train-images-idx3-ubyte", idx_bytes(8, &[12, 8, 4], &[0; 12 * 32]), "only square");
    check("train-images-idx3-ubyte", idx_bytes(8, &[12, 5, 5], &[0; 12 * 25]), "even, non-zero side");
    check("train-images-idx3-ubyte", idx_bytes(8, &[12, 0, 0], &[]), "dimension 1 is zero");
    check("t10k-images-idx3-ubyte", idx_bytes(8, &[6, 12, 12], &[0; 6 * 144]), "test images are 12x12");
}

#[test]
fn missing_files_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let e = data::locate(Some(dir.path())).unwrap_err();
    println!("{e}");
    for f in [data::TRAIN_IMAGES, data::TRAIN_LABELS, data::TEST_IMAGES, data::TEST_LABELS] {
        assert!(e.contains(f), "{e} should list {f}");
    }
    assert!(e.contains("download --dir"), "an empty directory may take Fashion-MNIST: {e}");
    let e = data::locate(Some(&dir.path().join("nope"))).unwrap_err();
    assert!(e.contains("does not exist"), "{e}");
    // some of a set: someone's own dataset, which a download would mix with another
    std::fs::write(dir.path().join(data::TRAIN_IMAGES), b"").unwrap();
    let e = data::locate(Some(dir.path())).unwrap_err();
    println!("{e}");
    assert!(e.contains(data::TEST_LABELS) && !e.contains(data::TRAIN_IMAGES), "{e}");
    assert!(!e.contains("download"), "no download into a partial dataset: {e}");
}
