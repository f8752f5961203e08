//! The input layer: a dataset split resident on the GPU and the batch gather.
//!
//! Pixels stay u8 (four per u32 word) for the whole run; each step's gather unpacks the
//! batch's images into x (B, 1, S, S) f32 in [0, 1] and its labels into y (B) u32.

use crate::data::Split;
use crate::gpu::{Gpu, Result};
use crate::kernels::{Dispatch, Kernels, StepSlots, whole};

/// Packs bytes little-endian into u32 words, zero-padding the last one.
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

#[derive(Clone)]
pub struct ResidentSplit {
    pub count: usize,
    pub side: usize,
    pub images: wgpu::Buffer,
    pub labels: wgpu::Buffer,
    /// The order samples are visited in; rewritten each epoch for training.
    pub order: wgpu::Buffer,
}

impl ResidentSplit {
    pub fn upload(gpu: &Gpu, name: &str, split: &Split) -> Result<ResidentSplit> {
        let identity: Vec<u32> = (0..split.count as u32).collect();
        Ok(ResidentSplit {
            count: split.count,
            side: split.side,
            images: gpu.storage_init(&format!("{name} images"), &pack_bytes(&split.pixels))?,
            labels: gpu.storage_init(&format!("{name} labels"), &pack_bytes(&split.labels))?,
            order: gpu.storage_init(&format!("{name} order"), &identity)?,
        })
    }

    pub fn set_order(&self, gpu: &Gpu, order: &[u32]) {
        gpu.queue.write_buffer(&self.order, 0, bytemuck::cast_slice(order));
    }

    pub fn bytes(&self) -> u64 {
        self.images.size() + self.labels.size() + self.order.size()
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct GatherParams {
    batch: u32,
    words_per_image: u32,
    side: u32,
    crop: u32,
    flip: u32,
    seed: u32,
    scale: f32,
    shift: f32,
    /// Erasing probability in parts per ten thousand (augment.rs).
    erase: u32,
    pad: [u32; 3],
    /// The erased rectangle's aspect ratios in 1/256ths, four per vec4.
    erase_ratios: [[u32; 4]; crate::augment::ERASE_RATIOS / 4],
}

/// The gather dispatch for one split into the batch buffers x and y; with `augment`
/// (training: the augmentation and the run's seed) the augmenting gather.
#[allow(clippy::too_many_arguments)]
pub fn gather(
    gpu: &Gpu,
    k: &Kernels,
    split: &ResidentSplit,
    batch: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    slots: &StepSlots,
    augment: Option<(crate::augment::Augment, u32)>,
    normalize: crate::normalize::Normalize,
) -> Result<(Dispatch, wgpu::Buffer)> {
    let (scale, shift) = normalize.scale_shift();
    let words_per_image = (split.side * split.side / 4) as u32;
    let (aug, seed) = augment.unwrap_or_default();
    let params = GatherParams {
        batch: batch as u32,
        words_per_image,
        side: split.side as u32,
        crop: aug.crop,
        flip: aug.flip as u32,
        seed,
        scale,
        shift,
        erase: aug.erase,
        pad: [0; 3],
        erase_ratios: bytemuck::cast(crate::augment::erase_ratios_q8()),
    };
    let uniform = gpu.uniform_init("gather params", &[params]);
    let common = [
        (0, whole(&uniform)),
        (1, whole(&split.images)),
        (2, whole(&split.labels)),
        (3, whole(&split.order)),
        (5, whole(y)),
    ];
    let d = if aug.is_none() {
        let mut entries = common.to_vec();
        entries.push((4, whole(x)));
        Dispatch::new(gpu, &k.gather, batch as u32 * words_per_image, &entries)?
            .with_steps(gpu, &k.gather, slots)
    } else {
        // one thread per pixel, so each may come from anywhere in the padded image
        let kernel = &k.gather_augment;
        let mut entries = common.to_vec();
        entries.push((6, whole(x)));
        let pixels = (batch * split.side * split.side) as u32;
        Dispatch::new(gpu, kernel, pixels, &entries)?.with_steps(gpu, kernel, slots)
    };
    Ok((d.with_loops(crate::loop_budget::LoopBound::none()), uniform))
}
