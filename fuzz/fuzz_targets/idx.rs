//! IDX reader: any bytes, raw or gzip, as images (3 dims) and labels (1 dim), must give
//! an error or an array whose payload matches its dimensions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for ndim in [1, 3] {
        if let Ok(array) = gpu_train::idx::parse_idx(Path::new("fuzz"), data, ndim) {
            assert_eq!(array.dims.len(), ndim);
            assert_eq!(array.data.len(), array.dims.iter().product::<usize>());
        }
    }
});
