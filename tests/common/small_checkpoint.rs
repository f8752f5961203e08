//! A small valid checkpoint (4x4 images, 2 classes) built without a GPU, for the parser's
//! mutation test and its fuzz target.

use gpu_train::checkpoint::{Checkpoint, DatasetShape, Position};
use gpu_train::layers::optim::OptimizerConfig;
use gpu_train::network::ParamLayout;

pub fn small_checkpoint() -> Vec<u8> {
    // one batch of 4 samples done: (loss, correct) each
    small_checkpoint_with(vec![1.5, 1.0, 0.25, 0.0, 2.0, 1.0, 0.75, 0.0])
}

/// The same checkpoint with `partial` as its `train_metrics.partial` values.
#[allow(dead_code)]
pub fn small_checkpoint_with(partial: Vec<f32>) -> Vec<u8> {
    let mut ckpt = Checkpoint {
        model: gpu_train::model_spec::ModelDef::default(),
        dataset: DatasetShape { side: 4, classes: 2, train: 10, test: 4 },
        class_names: vec!["no".into(), "yes".into()],
        batch_size: 4,
        seed: 1,
        optimizer: OptimizerConfig::default(),
        schedule: gpu_train::schedule::Schedule::Constant,
        warmup_epochs: 0.0,
        label_smoothing: 0.0,
        augment: Default::default(),
        normalize: Default::default(),
        position: Position {
            epochs_done: 1,
            batches_done: 1,
            updates: 4,
            best: Some((1, 0.5)),
            partial_metrics: partial,
        },
        params: Vec::new(),
        m: Vec::new(),
        v: Vec::new(),
        state: Vec::new(),
    };
    let total = ParamLayout::new(&ckpt.nodes().unwrap(), 4).total;
    ckpt.params = (0..total).map(|i| (i as f32 * 0.37).sin()).collect();
    ckpt.m = (0..total).map(|i| (i as f32 * 0.11).cos() * 1e-3).collect();
    ckpt.v = (0..total).map(|i| (i as f32 * 0.05).sin().abs() * 1e-6).collect();
    ckpt.to_bytes(4).unwrap()
}
