//! Evaluation at the largest batch that fits (`TrainConfig::large_eval`): a forward-only
//! network sharing the training network's weights and batch norm statistics gives the
//! same bits as evaluating with the training network, and its batch is chosen within the
//! adapter's binding limit and the memory budget, exactly at their edges.

mod common;
#[path = "common/idx_files.rs"]
mod idx_files;
use gpu_train::data;
use gpu_train::kernels::Kernels;
use gpu_train::layers::optim::OptimizerConfig;
use gpu_train::model::{EVAL_BATCH_MAX, EVAL_MEMORY_BUDGET, eval_batch_for};
use gpu_train::network::{batch_buffers, plan};
use gpu_train::train::{TrainConfig, Trainer};

// batch norm over channels (a plain conv) and over features, dropout, and a fused
// conv + ReLU + pool: every layer kind whose evaluation differs from its training forward
const MODEL: &str = "c8,bn,relu,pool,c16,relu,pool,fc32,bn,relu,drop0.3,fc";
const SIDE: usize = 16;
const CLASSES: usize = 4;

fn dataset(train: usize, test: usize) -> data::Dataset {
    let dir = tempfile::tempdir().unwrap();
    idx_files::write_dataset(dir.path(), SIDE, CLASSES, train, test, false);
    data::load(dir.path()).unwrap()
}

fn config(large_eval: bool) -> TrainConfig {
    let model = gpu_train::model_spec::resolve_text("custom", MODEL).unwrap();
    TrainConfig { large_eval, ..TrainConfig::basic(model, 2, 32, 5, OptimizerConfig::default()) }
}

/// Per epoch: (test loss, test accuracy) as bits, after training on 300 images.
fn test_metrics(data: &data::Dataset, large_eval: bool) -> (Vec<(u64, u64)>, usize) {
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let mut trainer = Trainer::new(&gpu, &kernels, data, config(large_eval)).unwrap();
    let mut out = Vec::new();
    for epoch in 1..=2 {
        let m = trainer.train_epoch(epoch).unwrap();
        out.push((m.test_loss.to_bits(), m.test_acc.to_bits()));
    }
    (out, trainer.eval_batch())
}

#[test]
fn evaluating_at_the_largest_batch_gives_the_training_batch_bits() {
    // 1,500 test images: a full batch of 1,024, then a short one of 476
    let data = dataset(300, 1500);
    let (small, small_batch) = test_metrics(&data, false);
    let (large, large_batch) = test_metrics(&data, true);
    println!("batch {small_batch}: {small:?}\nbatch {large_batch}: {large:?}");
    assert_eq!(small_batch, 32);
    assert_eq!(large_batch, EVAL_BATCH_MAX);
    // The shared weights and statistics change every epoch: a copy taken at start-up (or
    // the initial statistics) would give the first epoch's numbers, or others.
    assert_ne!(large[0], large[1], "the two epochs should evaluate different weights");
    assert_eq!(small, large, "evaluation at batch {large_batch} differs from batch {small_batch}");
}

#[test]
fn a_test_set_no_larger_than_the_training_batch_evaluates_with_the_training_network() {
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    for (test, expected) in [(32, 32), (33, 33), (20, 32)] {
        let trainer = Trainer::new(&gpu, &kernels, &dataset(64, test), config(true)).unwrap();
        assert_eq!(trainer.eval_batch(), expected, "{test} test images");
        assert_eq!(trainer.eval_model.is_some(), expected != 32, "{test} test images");
    }
}

#[test]
fn the_evaluation_batch_keeps_to_the_binding_limit_and_the_budget_at_their_edges() {
    let gpu = common::gpu();
    let k = Kernels::new(&gpu).unwrap();
    let model = gpu_train::model_spec::resolve_text("custom", MODEL).unwrap();
    let nodes = plan(&model.layers, 1, SIDE, CLASSES).unwrap();
    let budget = gpu.loop_budget;
    // (largest buffer, all buffers) in bytes at a batch
    let bytes = |batch: usize| {
        let words: Vec<u64> = batch_buffers(&nodes, batch, &k, budget, false)
            .unwrap()
            .into_iter()
            .map(|(_, w)| w as u64 * 4)
            .collect();
        (*words.iter().max().unwrap(), words.iter().sum::<u64>())
    };
    let choose = |train: usize, test: usize, limits: (u64, u64)| {
        eval_batch_for(&nodes, train, test, limits, &k, budget).unwrap()
    };
    let roomy = (u64::MAX, u64::MAX);
    assert_eq!(choose(32, 10_000, roomy), Some(EVAL_BATCH_MAX));
    assert_eq!(choose(32, 10_000, (u64::MAX, EVAL_MEMORY_BUDGET)), Some(EVAL_BATCH_MAX));
    // no more than the images there are; none when training's batch is as large
    assert_eq!(choose(32, 1000, roomy), Some(1000));
    assert_eq!(choose(32, 33, roomy), Some(33));
    assert_eq!(choose(32, 32, roomy), None);
    assert_eq!(choose(EVAL_BATCH_MAX - 1, 10_000, roomy), Some(EVAL_BATCH_MAX));
    assert_eq!(choose(EVAL_BATCH_MAX, 10_000, roomy), None);
    // the memory budget, at its edge: 512 fits exactly, one byte less takes 511
    let (largest_512, total_512) = bytes(512);
    assert_eq!(choose(32, 10_000, (u64::MAX, total_512)), Some(512));
    assert_eq!(choose(32, 10_000, (u64::MAX, total_512 - 1)), Some(511));
    // the binding limit, at its edge
    assert_eq!(choose(32, 10_000, (largest_512, u64::MAX)), Some(512));
    assert_eq!(choose(32, 10_000, (largest_512 - 1, u64::MAX)), Some(511));
    // both at once: the tighter decides
    let (largest_300, _) = bytes(300);
    assert_eq!(choose(32, 10_000, (largest_300, total_512)), Some(300));
    // never the training batch or below
    let (_, total_33) = bytes(33);
    assert_eq!(choose(32, 10_000, (u64::MAX, total_33)), Some(33));
    assert_eq!(choose(32, 10_000, (u64::MAX, total_33 - 1)), None);
    assert_eq!(choose(33, 10_000, (u64::MAX, total_33)), None);
    // the largest, not a power of two below the images there are
    assert_eq!(choose(100, 700, roomy), Some(700));
    let (_, total_415) = bytes(415);
    assert_eq!(choose(300, 600, (u64::MAX, total_415)), Some(415));
}

#[test]
fn with_f16_storage_evaluation_stays_at_the_training_batch() {
    let Some(gpu) = common::gpu_with_f16() else { return };
    // the tuner may choose f16 storage at one batch and not at another, which would change
    // what evaluation computes
    let tuner = gpu_train::autotune::Tuner::with_cache(&gpu, gpu_train::autotune::TuneMode::Off, None)
        .with_f16_storage(true);
    let kernels = Kernels::new(&gpu).unwrap().with_tuner(tuner);
    let trainer = Trainer::new(&gpu, &kernels, &dataset(64, 1500), config(true)).unwrap();
    assert_eq!(trainer.eval_batch(), 32);
    assert!(trainer.eval_model.is_none());
}
