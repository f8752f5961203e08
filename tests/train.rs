//! End to end: training on the real data raises accuracy well above chance (also with every
//! dense product in f16 storage, `--f16-storage`), and the same seed gives bit-identical
//! losses and weights.

mod common;
#[path = "common/idx_files.rs"]
mod idx_files;
use gpu_train::data;
use gpu_train::kernels::Kernels;
use gpu_train::layers::dense::MatmulVariant;
use gpu_train::layers::optim::OptimizerConfig;
use gpu_train::train::{TrainConfig, Trainer};

fn config(batch_size: usize, seed: u64) -> TrainConfig {
    TrainConfig::basic(Default::default(), 1, batch_size, seed, OptimizerConfig::default())
}

/// One epoch on 6,144 real images with `kernels`, checked against chance; None where the
/// dataset is not installed (a visible skip).
fn train_real_subset(gpu: &gpu_train::gpu::Gpu, kernels: &Kernels) -> Option<Vec<&'static str>> {
    let dir = match data::locate(None) {
        Ok(dir) => dir,
        Err(e) => {
            common::skip::skip_unless_ci(&format!("Fashion-MNIST is not installed ({e})"));
            return None;
        }
    };
    let mut dataset = data::load(&dir).unwrap();
    dataset.train = dataset.train.truncated(Some(6144));
    dataset.test = dataset.test.truncated(Some(1000));
    let started = std::time::Instant::now();
    let mut trainer = Trainer::new(gpu, kernels, &dataset, config(128, 0)).unwrap();
    let (loss_before, acc_before) = trainer.evaluate(0).unwrap();
    let m = trainer.train_epoch(1).unwrap();
    println!(
        "{}: test loss {loss_before:.4} -> {:.4}, accuracy {:.2}% -> {:.2}%, {:.0} images/s, {:.1} s",
        gpu.describe(),
        m.test_loss,
        100.0 * acc_before,
        100.0 * m.test_acc,
        m.train_images_per_sec,
        started.elapsed().as_secs_f64()
    );
    assert!(m.test_loss < 0.5 * loss_before, "test loss should fall: {loss_before} -> {}", m.test_loss);
    assert!(m.test_acc > 0.70, "test accuracy {} should clear 70%", m.test_acc);
    Some(trainer.model.train_step.iter().map(|d| d.name).collect())
}

#[test]
fn real_subset_trains_well_above_chance() {
    let gpu = common::gpu();
    train_real_subset(&gpu, &Kernels::new(&gpu).unwrap());
}

#[test]
fn real_subset_trains_as_well_with_f16_storage_products() {
    let Some(gpu) = common::gpu_with_f16() else { return };
    // every dense product forced to the f16-storage variant, as --f16-storage lets the
    // autotuner choose it
    let forced =
        gpu_train::autotune::Tuner::forcing(&gpu, MatmulVariant::TiledF16 as u32).with_f16_storage(true);
    let kernels = Kernels::new(&gpu).unwrap().with_tuner(forced);
    if let Some(names) = train_real_subset(&gpu, &kernels) {
        let copies = names.iter().filter(|n| **n == "to_f16").count();
        println!("{copies} to_f16 copies per step");
        // fc1 and fc2: forward, weight gradient and input gradient, two operands each
        assert_eq!(copies, 12, "every dense product should run in f16 storage: {names:?}");
    }
}

fn synthetic(train: usize) -> data::Dataset {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), 16, 4, train, 64, true);
    data::load(dir.path()).unwrap()
}

/// Per-epoch (train loss, train acc, test loss, test acc).
type EpochLosses = Vec<(f64, f64, f64, f64)>;

fn run_twice_with(seed: u64) -> (EpochLosses, Vec<f32>) {
    // 250 samples at batch 32: the last batch of each epoch is short (26).
    let dataset = synthetic(250);
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let mut trainer = Trainer::new(&gpu, &kernels, &dataset, config(32, seed)).unwrap();
    let mut losses = Vec::new();
    for epoch in 1..=2 {
        let m = trainer.train_epoch(epoch).unwrap();
        losses.push((m.train_loss, m.train_acc, m.test_loss, m.test_acc));
    }
    (losses, trainer.model.read_params(&gpu).unwrap())
}

#[test]
fn same_seed_gives_bit_identical_runs() {
    let (losses_a, params_a) = run_twice_with(7);
    let (losses_b, params_b) = run_twice_with(7);
    println!("seed 7 losses: {losses_a:?}");
    assert_eq!(losses_a, losses_b, "per-epoch metrics differ between identical runs");
    let same = params_a.iter().zip(&params_b).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "final weights differ between identical runs");
    assert!(losses_a[1].0 < losses_a[0].0, "loss should fall on the synthetic set: {losses_a:?}");
    let (losses_c, _) = run_twice_with(8);
    assert_ne!(losses_a, losses_c, "a different seed should give a different run");
}

#[test]
fn gpu_memory_does_not_grow_from_epoch_to_epoch() {
    let dataset = synthetic(200);
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let mut trainer = Trainer::new(&gpu, &kernels, &dataset, config(32, 1)).unwrap();
    let allocated = |gpu: &gpu_train::gpu::Gpu| {
        gpu.wait().unwrap();
        gpu.device.generate_allocator_report().map(|r| r.total_allocated_bytes)
    };
    trainer.train_epoch(1).unwrap();
    let (after_one, model_one) = (allocated(&gpu), trainer.model.memory());
    trainer.train_epoch(2).unwrap();
    let (after_two, model_two) = (allocated(&gpu), trainer.model.memory());
    println!(
        "allocator total after epoch 1: {after_one:?}, after epoch 2: {after_two:?}; model {model_one:?}"
    );
    assert_eq!(model_one, model_two, "model buffers changed between epochs");
    match (after_one, after_two) {
        (Some(a), Some(b)) => assert_eq!(a, b, "GPU allocations grew between epochs"),
        _ => println!("this backend gives no allocator report; checked the model's buffers only"),
    }
}
