//! Augmentation in the gather kernel against its host reference (augment.rs) on fixed
//! seeds, in every kernel configuration: crops at the largest padding (8) and at 0, flips,
//! both, a short batch, an offset in the epoch; that it is deterministic,
//! changes with the update, the seed and the sample, and that crop=0 without flip is the
//! plain gather; and the `--augment` grammar.

mod common;
use common::*;
use gpu_train::augment::Augment;
use gpu_train::data::Split;
use gpu_train::kernels::Step;
use gpu_train::layers::input::{ResidentSplit, gather};
use gpu_train::normalize::Normalize;

/// The augmenting gather's batch for `aug`, as read back.
#[allow(clippy::too_many_arguments)]
fn run_gather(
    dev: &(gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    split: &Split,
    order: &[u32],
    batch: usize,
    step: Step,
    aug: Option<(Augment, u32)>,
) -> (Vec<f32>, Vec<u32>) {
    run_gather_norm(dev, split, order, batch, step, aug, Normalize::Unit)
}

#[allow(clippy::too_many_arguments)]
fn run_gather_norm(
    dev: &(gpu_train::gpu::Gpu, gpu_train::kernels::Kernels),
    split: &Split,
    order: &[u32],
    batch: usize,
    step: Step,
    aug: Option<(Augment, u32)>,
    norm: Normalize,
) -> (Vec<f32>, Vec<u32>) {
    let (gpu, k) = dev;
    let resident = ResidentSplit::upload(gpu, "t", split).unwrap();
    resident.set_order(gpu, order);
    let x = gpu.storage("x", batch * split.side * split.side).unwrap();
    let y = gpu.storage("y", batch).unwrap();
    let slots = slots_with(gpu, step);
    let (d, _u) = gather(gpu, k, &resident, batch, &x, &y, &slots, aug, norm).unwrap();
    run(gpu, &[&d]);
    (gpu.read_f32(&x).unwrap(), gpu.read_words(&y, 0, batch).unwrap())
}

fn split(count: usize, side: usize) -> Split {
    let pixels: Vec<u8> = (0..count * side * side).map(|i| (i * 37 % 251) as u8 + 1).collect();
    let labels: Vec<u8> = (0..count as u8).map(|i| (i * 3) % 7).collect();
    Split { count, side, pixels, labels }
}

#[test]
fn augmented_batches_match_the_host_reference() {
    let data = split(9, 12);
    let order = [4u32, 8, 0, 6, 2, 7, 1, 3, 5];
    for dev in variants() {
        for (aug, start, count, batch) in [
            (Augment { crop: 2, flip: true }, 0, 5, 5),
            (Augment { crop: 8, flip: false }, 3, 6, 6),
            (Augment { crop: 0, flip: true }, 5, 3, 4),
            (Augment { crop: 1, flip: true }, 7, 2, 3),
        ] {
            for (update, seed) in [(1u32, 0u32), (977, 12345)] {
                let step = Step { start, count, update, ..Default::default() };
                let (x, y) = run_gather(&dev, &data, &order, batch, step, Some((aug, seed)));
                let want = aug.reference(&data.pixels, 12, &order, start, count, batch, update, seed);
                assert_eq!(x, want, "{aug}, update {update}, seed {seed}: pixels differ from the reference");
                for (b, &label) in y.iter().enumerate() {
                    let sample = order[(start + (b as u32).min(count - 1)) as usize] as usize;
                    assert_eq!(label, data.labels[sample] as u32, "labels are not augmented");
                }
            }
        }
    }
}

#[test]
fn crops_and_flips_change_with_the_update_the_seed_and_the_sample() {
    let data = split(16, 28);
    let order: Vec<u32> = (0..16).collect();
    let dev = variants().remove(0);
    let aug = Augment { crop: 2, flip: true };
    let at = |update, seed| {
        run_gather(
            &dev,
            &data,
            &order,
            16,
            Step { start: 0, count: 16, update, ..Default::default() },
            Some((aug, seed)),
        )
        .0
    };
    let a = at(3, 7);
    assert_eq!(a, at(3, 7), "the same (seed, update) gives the same batch");
    assert_ne!(a, at(4, 7), "another update draws other crops");
    assert_ne!(a, at(3, 8), "another seed draws other crops");
    // over 16 samples some are flipped and some are not, and crops vary
    let plain =
        run_gather(&dev, &data, &order, 16, Step { start: 0, count: 16, ..Default::default() }, None).0;
    let area = 28 * 28;
    let unchanged =
        (0..16).filter(|&b| a[b * area..(b + 1) * area] == plain[b * area..(b + 1) * area]).count();
    assert!(unchanged < 8, "{unchanged} of 16 images came through untouched");
    // crop=0 without flip is the plain gather, bit for bit
    let none = run_gather(
        &dev,
        &data,
        &order,
        16,
        Step { start: 0, count: 16, update: 5, ..Default::default() },
        Some((Augment::default(), 9)),
    )
    .0;
    assert_eq!(none, plain);
}

#[test]
fn the_augment_grammar_round_trips_and_errors_name_the_part() {
    assert_eq!(Augment::parse("crop=2,flip").unwrap(), Augment { crop: 2, flip: true });
    assert_eq!(Augment::parse(" FLIP ").unwrap(), Augment { crop: 0, flip: true });
    assert_eq!(Augment::parse("none").unwrap(), Augment::default());
    for text in ["crop=2,flip", "flip", "crop=8", "none"] {
        assert_eq!(Augment::parse(text).unwrap().to_string(), text);
    }
    for (bad, needle) in [
        ("crop=9", "0 to 8"),
        ("crop=-1", "0 to 8"),
        ("rotate", "unknown augmentation 'rotate'"),
        ("crop", "unknown"),
    ] {
        let e = Augment::parse(bad).unwrap_err();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn standardised_inputs_are_the_unit_values_shifted_and_scaled() {
    // --normalize standard: x = (v - mean) / std with the training set's statistics, for
    // the plain and the augmenting gather alike (crop padding is a zero byte, normalised).
    let data = split(6, 12);
    let norm = Normalize::standard_for(&data.pixels).unwrap();
    let Normalize::Standard { mean, std } = norm else { panic!("standard expected") };
    let n = data.pixels.len() as f64;
    let want_mean = data.pixels.iter().map(|&p| p as f64 / 255.0).sum::<f64>() / n;
    assert!((mean - want_mean).abs() < 1e-12 && std > 0.0);
    let order: Vec<u32> = (0..6).collect();
    let dev = variants().remove(0);
    let step = Step { start: 0, count: 6, update: 3, ..Default::default() };
    for aug in [None, Some((Augment { crop: 3, flip: true }, 11))] {
        let unit = run_gather_norm(&dev, &data, &order, 6, step, aug, Normalize::Unit).0;
        let standard = run_gather_norm(&dev, &data, &order, 6, step, aug, norm).0;
        let want: Vec<f64> = unit.iter().map(|&v| (v as f64 - mean) / std).collect();
        assert_close("standardised inputs", &standard, &want, 1e-5);
    }
    // no spread: refused, not divided by zero
    assert!(Normalize::standard_for(&[7u8; 64]).unwrap_err().contains("same value"));
    // the checkpoint form round-trips
    assert_eq!(Normalize::parse(&norm.to_string()).unwrap(), norm);
    assert!(Normalize::parse("standard:0.3:0").is_err());
}
