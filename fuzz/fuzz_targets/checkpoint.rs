//! Checkpoint reader: any bytes must give an error or a checkpoint whose tensors match
//! its declared model. Inputs whose first byte is odd are instead edits (offset, value
//! pairs) applied to a small valid checkpoint, so the fuzzer also reaches the metadata
//! and tensor checks behind the safetensors header.
#![no_main]

use gpu_train::checkpoint::{Checkpoint, DatasetShape, Position};
use gpu_train::layers::optim::OptimizerConfig;
use gpu_train::model::ParamLayout;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

fn valid() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut ckpt = Checkpoint {
            dataset: DatasetShape { side: 4, classes: 2, train: 10, test: 4 },
            class_names: vec!["no".into(), "yes".into()],
            batch_size: 4,
            seed: 1,
            optimizer: OptimizerConfig::default(),
            position: Position {
                epochs_done: 1,
                batches_done: 1,
                updates: 4,
                best: Some((1, 0.5)),
                partial_metrics: vec![1.5, 2.0],
            },
            params: Vec::new(),
            m: Vec::new(),
            v: Vec::new(),
        };
        let total = ParamLayout::new(&ckpt.shape(), 4).total;
        ckpt.params = (0..total).map(|i| (i as f32 * 0.37).sin()).collect();
        ckpt.m = vec![1e-3; total];
        ckpt.v = vec![1e-6; total];
        ckpt.to_bytes(4).expect("a valid checkpoint")
    })
}

fuzz_target!(|data: &[u8]| {
    let bytes = match data.first() {
        Some(b) if b % 2 == 1 => {
            let mut bytes = valid().to_vec();
            for edit in data[1..].chunks_exact(4) {
                let at = u32::from_le_bytes([edit[0], edit[1], edit[2], 0]) as usize % bytes.len();
                bytes[at] = edit[3];
            }
            bytes
        }
        _ => data.to_vec(),
    };
    if let Ok(c) = Checkpoint::from_bytes(Path::new("fuzz"), &bytes, 4) {
        assert_eq!(c.params.len(), ParamLayout::new(&c.shape(), 4).total);
        assert_eq!(c.class_names.len(), c.dataset.classes);
    }
});
