//! The layer-string parser and shape inference: any bytes (as UTF-8 where they are) give
//! an error naming a token inside the string, or layers whose inference ends in an error
//! or a model; never a panic.
#![no_main]

use gpu_train::model_spec::{infer, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text) {
        Ok(layers) => {
            for (channels, side, classes) in [(1, 28, 10), (1, 4, 2), (3, 256, 256)] {
                if let Ok(info) = infer(&layers, channels, side, classes) {
                    assert_eq!(info.len(), layers.len());
                }
            }
        }
        Err(e) => assert!(e.position >= 1 && e.offset <= text.len()),
    }
});
