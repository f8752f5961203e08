//! Checkpoint reader: any bytes must give an error or a checkpoint whose tensors match
//! its declared model. Inputs whose first byte is odd are instead edits (offset, value
//! pairs) applied to a small valid checkpoint, so the fuzzer also reaches the metadata
//! and tensor checks behind the safetensors header.
#![no_main]

use gpu_train::checkpoint::Checkpoint;
use gpu_train::model::ParamLayout;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

#[path = "../../tests/common/small_checkpoint.rs"]
mod small_checkpoint;

fn valid() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(small_checkpoint::small_checkpoint)
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
