//! Running training loss and accuracy for the progress display, read back without stalling.
//!
//! Each group of steps ends with a copy of its samples' (loss, correct) pairs (2 f32 per
//! sample, at the samples' places in the epoch's order) into one of two mappable staging
//! buffers. The copy of group k is mapped just before the trainer waits for group k, so
//! the map completes inside that wait and never holds back the group queued behind it.
//! The sums are for display only: the epoch's reported metrics are still read once, in
//! order, by the trainer.

use crate::gpu::Gpu;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// The map callback's state: waiting, mapped, failed.
const WAITING: u8 = 0;
const MAPPED: u8 = 1;

pub struct RunningMetrics {
    staging: [wgpu::Buffer; 2],
    /// (staging index, byte length, map state) of a copy submitted but not yet read.
    pending: Option<(usize, u64, Arc<AtomicU8>)>,
    loss_sum: f64,
    correct_sum: f64,
    rows: usize,
}

impl RunningMetrics {
    /// Staging for groups of up to `max_rows` samples.
    pub fn new(gpu: &Gpu, max_rows: usize) -> RunningMetrics {
        let make = |label| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (max_rows.max(1) * 8) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        RunningMetrics {
            staging: [make("running metrics 0"), make("running metrics 1")],
            pending: None,
            loss_sum: 0.0,
            correct_sum: 0.0,
            rows: 0,
        }
    }

    /// Starts a new epoch's sums.
    pub fn reset(&mut self) {
        self.loss_sum = 0.0;
        self.correct_sum = 0.0;
        self.rows = 0;
    }

    /// Adds (loss, correct) pairs already on the host (a resumed epoch's first part).
    pub fn add_pairs(&mut self, values: &[f32]) {
        for pair in values.chunks_exact(2) {
            self.loss_sum += pair[0] as f64;
            self.correct_sum += pair[1] as f64;
        }
        self.rows += values.len() / 2;
    }

    /// Records the copy of samples [first_row, first_row + rows) of `metrics` at the end of
    /// a group's encoder, into the staging buffer that is not pending. Returns its index;
    /// the caller submits the encoder, collects the pending copy, then calls `map_recorded`.
    pub fn record_copy(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        metrics: &wgpu::Buffer,
        first_row: usize,
        rows: usize,
    ) -> Option<usize> {
        let bytes = (rows * 8) as u64;
        let index = self.pending.as_ref().map_or(0, |p| 1 - p.0);
        if rows == 0 || bytes > self.staging[index].size() {
            return None;
        }
        encoder.copy_buffer_to_buffer(metrics, (first_row * 8) as u64, &self.staging[index], 0, bytes);
        Some(index)
    }

    /// Asks for the map of a copy just submitted; it completes when the GPU has run it and
    /// the device is polled (the trainer's wait for that group).
    pub fn map_recorded(&mut self, index: usize, bytes: u64) {
        self.discard();
        let state = Arc::new(AtomicU8::new(WAITING));
        let seen = state.clone();
        self.staging[index].slice(..bytes).map_async(wgpu::MapMode::Read, move |r| {
            seen.store(if r.is_ok() { MAPPED } else { MAPPED + 1 }, Ordering::Release);
        });
        self.pending = Some((index, bytes, state));
    }

    /// Adds the pending copy to the sums if its map has completed (the group it belongs to
    /// has been waited for); otherwise leaves it for later.
    pub fn collect(&mut self) {
        let Some((index, bytes, state)) = &self.pending else { return };
        let (index, bytes) = (*index, *bytes);
        match state.load(Ordering::Acquire) {
            WAITING => return,
            MAPPED => {}
            // a failed map leaves nothing to read; the display just skips these samples
            _ => {
                self.pending = None;
                return;
            }
        }
        let slice = self.staging[index].slice(..bytes);
        let Ok(view) = slice.get_mapped_range() else {
            self.discard();
            return;
        };
        let values: Vec<f32> = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        self.staging[index].unmap();
        self.pending = None;
        self.add_pairs(&values);
    }

    /// Drops a pending copy unread (unmapping it so the staging buffer can be reused).
    pub fn discard(&mut self) {
        if let Some((index, _, _)) = self.pending.take() {
            self.staging[index].unmap();
        }
    }

    /// (mean loss, accuracy) over the samples read so far this epoch, if any.
    pub fn value(&self) -> Option<(f64, f64)> {
        (self.rows > 0).then(|| (self.loss_sum / self.rows as f64, self.correct_sum / self.rows as f64))
    }
}
