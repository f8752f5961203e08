//! A checkpoint's tensors as (name, raw bytes), sorted by name: for comparing two
//! checkpoints bit for bit.

use std::path::Path;

pub fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, t)| (n, t.data().to_vec())).collect();
    out.sort();
    out
}
