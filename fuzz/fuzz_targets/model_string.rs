//! The layer-string parser, shape inference and the network plan (fusion pass, parameter
//! layout): any bytes (as UTF-8 where they are) give an error naming a token inside the
//! string, or layers whose inference ends in an error or a model; never a panic.
#![no_main]

use gpu_train::model_spec::{infer, parse};
use gpu_train::network::{ParamLayout, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text) {
        Ok(layers) => {
            for (channels, side, classes) in [(1, 28, 10), (1, 4, 2), (3, 256, 256)] {
                if let Ok(info) = infer(&layers, channels, side, classes) {
                    assert_eq!(info.len(), layers.len());
                    let nodes = plan(&layers, channels, side, classes).expect("inference passed");
                    let layout = ParamLayout::new(&nodes, 4);
                    assert_eq!(layout.count(), info.iter().map(|l| l.params).sum::<usize>());
                }
            }
        }
        Err(e) => assert!(e.position >= 1 && e.offset <= text.len()),
    }
});
