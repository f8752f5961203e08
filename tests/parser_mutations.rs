//! Seeded mutation testing of the two parsers that read user files: thousands of damaged
//! IDX files (raw and gzip) and checkpoints must each give an Err or a valid result, never
//! a panic. The cargo-fuzz targets in fuzz/ explore the same entry points open-endedly.

#[path = "common/idx_files.rs"]
mod idx_files;
#[path = "common/small_checkpoint.rs"]
mod small_checkpoint;
use gpu_train::checkpoint::Checkpoint;
use gpu_train::data;
use gpu_train::idx::parse_idx;
use gpu_train::network::ParamLayout;
use rand::{Rng, SeedableRng};
use small_checkpoint::small_checkpoint;
use std::path::Path;

/// One random edit: flip, overwrite, insert, delete, truncate, duplicate a run, or set a
/// header word to an extreme value.
fn mutate(rng: &mut rand::rngs::StdRng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.push(rng.random());
        return;
    }
    let at = rng.random_range(0..bytes.len());
    match rng.random_range(0..7) {
        0 => bytes[at] ^= 1 << rng.random_range(0..8),
        1 => bytes[at] = rng.random(),
        2 => bytes.insert(at, rng.random()),
        3 => {
            bytes.remove(at);
        }
        4 => bytes.truncate(at),
        5 => {
            let end = (at + rng.random_range(1..64)).min(bytes.len());
            let run: Vec<u8> = bytes[at..end].to_vec();
            bytes.splice(at..at, run);
        }
        _ => {
            // Header words: the IDX dims live at 4..4+4n, safetensors' length at 0..8.
            let word = [0u32, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000][rng.random_range(0..5)];
            let at = rng.random_range(0..bytes.len().min(24));
            for (i, b) in word.to_be_bytes().iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
    }
}

#[test]
fn mutated_idx_files_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1d5);
    let (pixels, labels) = idx_files::synthetic_split(5, 8, 3, 1);
    let images = idx_files::idx_bytes(8, &[5, 8, 8], &pixels);
    let labels = idx_files::idx_bytes(8, &[5], &labels);
    let seeds = [
        (images.clone(), 3),
        (idx_files::gzip(&images), 3),
        (labels.clone(), 1),
        (idx_files::gzip(&labels), 1),
    ];
    let path = Path::new("mutated");
    let (mut ok, mut err) = (0, 0);
    for case in 0..6000 {
        let (seed, ndim) = &seeds[case % seeds.len()];
        let mut bytes = seed.clone();
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut rng, &mut bytes);
        }
        match parse_idx(path, &bytes, *ndim) {
            Ok(a) => {
                ok += 1;
                assert_eq!(a.dims.len(), *ndim);
                assert_eq!(a.data.len(), a.dims.iter().product::<usize>(), "payload must match dims");
            }
            Err(e) => {
                err += 1;
                assert!(e.to_string().starts_with("mutated: "), "{e}");
            }
        }
    }
    println!("6000 mutated IDX files: {ok} parsed, {err} refused");
    assert!(err > 1000 && ok > 0, "the mutations should exercise both outcomes");
    // Whole datasets whose files were damaged: an error naming a file, or a valid set.
    let dir = tempfile::tempdir().unwrap();
    for case in 0..200 {
        idx_files::write_dataset(dir.path(), 8, 3, 6, 4, case % 2 == 0);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        let victim = &names[rng.random_range(0..names.len())];
        let mut bytes = std::fs::read(victim).unwrap();
        mutate(&mut rng, &mut bytes);
        std::fs::write(victim, &bytes).unwrap();
        if let Ok(d) = data::load(dir.path()) {
            assert_eq!(d.train.pixels.len(), d.train.count * d.train.side * d.train.side);
            assert!(d.test.labels.iter().all(|&l| (l as usize) < d.classes));
        }
        for n in &names {
            std::fs::remove_file(n).unwrap();
        }
    }
}

#[test]
fn mutated_checkpoints_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xc4e);
    let valid = small_checkpoint();
    assert!(Checkpoint::from_bytes(Path::new("c"), &valid, 4).is_ok());
    let header_len = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let path = Path::new("mutated.safetensors");
    let (mut ok, mut err) = (0, 0);
    for case in 0..4000 {
        let mut bytes = valid.clone();
        // Half the cases aim at the header (JSON and metadata), where the parsing is.
        let edits = rng.random_range(1..4);
        for _ in 0..edits {
            if case % 2 == 0 {
                let mut header = bytes[8..8 + header_len.min(bytes.len() - 8)].to_vec();
                mutate(&mut rng, &mut header);
                let rest = bytes[(8 + header_len).min(bytes.len())..].to_vec();
                bytes = [&(header.len() as u64).to_le_bytes()[..], &header, &rest].concat();
            } else {
                mutate(&mut rng, &mut bytes);
            }
        }
        match Checkpoint::from_bytes(path, &bytes, 4) {
            Ok(c) => {
                ok += 1;
                assert_eq!(c.params.len(), ParamLayout::new(&c.nodes().unwrap(), 4).total);
                assert!(c.params.iter().all(|v| v.is_finite()));
                assert_eq!(c.class_names.len(), c.dataset.classes);
            }
            Err(e) => {
                err += 1;
                assert!(e.starts_with("mutated.safetensors: "), "{e}");
            }
        }
    }
    println!("4000 mutated checkpoints: {ok} parsed, {err} refused");
    assert!(err > 1000 && ok > 0, "the mutations should exercise both outcomes");
}
