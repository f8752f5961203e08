//! Augmentation in the gather kernel against its host reference (augment.rs) on fixed
//! seeds, in every kernel configuration: crops at the largest padding (8) and at 0, flips,
//! both, a short batch, an offset in the epoch; that it is deterministic,
//! changes with the update, the seed and the sample, and that crop=0 without flip is the
//! plain gather; random erasing (every sample, half, 30%) bit for bit, its rectangles'
//! areas and shapes over many draws, on the smallest, a large and a 2,048-pixel image; the
//! shader's constants; and the `--augment` grammar.

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
            (Augment { crop: 2, flip: true, erase: 0 }, 0, 5, 5),
            (Augment { crop: 8, flip: false, erase: 0 }, 3, 6, 6),
            (Augment { crop: 0, flip: true, erase: 0 }, 5, 3, 4),
            (Augment { crop: 1, flip: true, erase: 0 }, 7, 2, 3),
            (Augment { crop: 0, flip: false, erase: 10_000 }, 0, 9, 9),
            (Augment { crop: 2, flip: true, erase: 5_000 }, 1, 8, 8),
            (Augment { crop: 8, flip: true, erase: 3_000 }, 0, 9, 9),
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
    let aug = Augment { crop: 2, flip: true, erase: 0 };
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
fn erased_rectangles_cover_the_documented_areas_and_shapes() {
    // The host's draws (which the kernel matches bit for bit, above) over many hashes:
    // areas within 2-33% of the image up to rounding, ratios from 0.3 to 3.3, placed
    // inside the image, and both tall and wide rectangles drawn.
    let ratios = gpu_train::augment::erase_ratios_q8();
    assert_eq!(ratios.len(), 32);
    assert!(ratios.windows(2).all(|w| w[0] < w[1]), "ratios increase: {ratios:?}");
    assert!(
        (ratios[0] as f64 / 256.0 - 0.311).abs() < 0.01 && (ratios[31] as f64 / 256.0 - 3.21).abs() < 0.03
    );
    for side in [4u32, 28, 96, 1024] {
        let area = (side * side) as f64;
        let (mut tall, mut wide, mut drawn) = (0, 0, 0);
        for h in 0..4000u32 {
            let hash = gpu_train::augment::mix(h);
            let Some((top, left, eh, ew)) = gpu_train::augment::erase_rect(10_000, side, hash, &ratios)
            else {
                panic!("erase=1 erases every sample")
            };
            drawn += 1;
            assert!(
                eh >= 1 && ew >= 1 && top + eh <= side && left + ew <= side,
                "side {side}: {top},{left} {eh}x{ew}"
            );
            let frac = (eh * ew) as f64 / area;
            if side >= 96 {
                // away from the clamp at the edge (rare), within rounding of the range
                if eh < side && ew < side {
                    assert!((0.018..=0.34).contains(&frac), "side {side}: area fraction {frac}");
                    let r = eh as f64 / ew as f64;
                    assert!((0.28..=3.5).contains(&r), "side {side}: ratio {r}");
                }
            }
            if eh > ew {
                tall += 1
            }
            if ew > eh {
                wide += 1
            }
        }
        assert_eq!(drawn, 4000);
        if side >= 28 {
            assert!(tall > 1200 && wide > 1200, "side {side}: {tall} tall, {wide} wide");
        }
        // the probability is honoured: about a quarter at erase=0.25
        let hit = (0..4000u32)
            .filter(|&h| {
                gpu_train::augment::erase_rect(2_500, side, gpu_train::augment::mix(h), &ratios).is_some()
            })
            .count();
        assert!((850..1150).contains(&hit), "erase=0.25 hit {hit} of 4000");
    }
    for n in [0u32, 1, 2, 3, 4, 15, 16, 17, 65_535 * 65_535, u32::MAX, 1 << 24, (1 << 24) + 1] {
        let r = gpu_train::augment::isqrt(n) as u64;
        assert!(r * r <= n as u64 && (r + 1) * (r + 1) > n as u64, "isqrt({n}) = {r}");
    }
}

#[test]
fn erasing_matches_the_reference_on_the_smallest_and_a_large_image() {
    // side 4 (the rectangle often clamped to the whole image), 200, and 2,048 (the
    // kernel's integer square roots of numbers past 2^22, where f32 rounds), every sample
    // erased, with crops and flips.
    for (side, count) in [(4usize, 5usize), (200, 5), (2048, 2)] {
        let data = split(count, side);
        let order: Vec<u32> = (0..count as u32).rev().collect();
        for dev in variants() {
            let aug = Augment { crop: 1, flip: true, erase: 10_000 };
            let kept = Augment { erase: 0, ..aug };
            for update in [0u32, 4_000_000_000] {
                let step = Step { start: 0, count: count as u32, update, ..Default::default() };
                let (x, _) = run_gather(&dev, &data, &order, count, step, Some((aug, 77)));
                let want = aug.reference(&data.pixels, side, &order, 0, count as u32, count, update, 77);
                assert!(x == want, "side {side}, update {update}: erased pixels differ from the reference");
                // the same draws without erasing: each image lost pixels (the data has no
                // zero pixels, so a pixel zeroed by erasing differs from the unerased batch)
                let (unerased, _) = run_gather(&dev, &data, &order, count, step, Some((kept, 77)));
                let area = side * side;
                for b in 0..count {
                    let lost =
                        (b * area..(b + 1) * area).filter(|&i| x[i] == 0.0 && unerased[i] != 0.0).count();
                    // (on a 4x4 image the rectangle may fall on the crop's zero padding)
                    assert!(lost >= 1 || side == 4, "side {side}, image {b}: nothing erased");
                    assert!(
                        lost <= area * 34 / 100 + 2 * side,
                        "side {side}, image {b}: {lost} of {area} erased"
                    );
                }
            }
        }
    }
}

#[test]
fn the_shader_uses_the_hosts_erasing_constants() {
    // gather.wgsl writes augment.rs's constants as literals; the bit-for-bit tests above
    // would catch a drift too, this names it.
    use gpu_train::augment::{ERASE_AREA_PERMILLE, ERASE_RATIOS, ERASE_SCALE};
    let wgsl = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/gather.wgsl")).unwrap();
    let (lo, hi) = ERASE_AREA_PERMILLE;
    for needle in [
        format!("% {ERASE_SCALE}u >= p.erase"),
        format!("{lo}u + mix(h ^ 5u) % {}u, 1000u", hi - lo + 1),
        format!("mix(h ^ 6u) % {ERASE_RATIOS}u"),
        format!("erase_ratios: array<vec4<u32>, {}>", ERASE_RATIOS / 4),
    ] {
        assert!(wgsl.contains(&needle), "gather.wgsl lacks `{needle}`");
    }
}

#[test]
fn the_augment_grammar_round_trips_and_errors_name_the_part() {
    assert_eq!(Augment::parse("crop=2,flip").unwrap(), Augment { crop: 2, flip: true, erase: 0 });
    assert_eq!(Augment::parse(" FLIP ").unwrap(), Augment { crop: 0, flip: true, erase: 0 });
    assert_eq!(Augment::parse("none").unwrap(), Augment::default());
    assert_eq!(
        Augment::parse("crop=2,flip,erase=0.25").unwrap(),
        Augment { crop: 2, flip: true, erase: 2_500 }
    );
    assert_eq!(Augment::parse("erase=1").unwrap().erase, 10_000);
    assert!(Augment::parse("erase=0").unwrap().is_none());
    for text in ["crop=2,flip", "flip", "crop=8", "none", "crop=2,flip,erase=0.25", "erase=1", "erase=0.0001"]
    {
        assert_eq!(Augment::parse(text).unwrap().to_string(), text);
    }
    for (bad, needle) in [
        ("crop=9", "0 to 8"),
        ("crop=-1", "0 to 8"),
        ("rotate", "unknown augmentation 'rotate'"),
        ("crop", "unknown"),
        ("erase=1.5", "from 0 to 1"),
        ("erase=-0.1", "from 0 to 1"),
        ("erase=nan", "from 0 to 1"),
        ("erase=0.12345", "4 decimals"),
        ("erase", "unknown"),
        ("flip,flip", "'flip' is given twice"),
        ("crop=2,crop=3", "'crop' is given twice"),
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
    for aug in [None, Some((Augment { crop: 3, flip: true, erase: 0 }, 11))] {
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
