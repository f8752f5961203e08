//! The training loop: epochs of shuffled batches recorded in groups, evaluation, metrics.
//!
//! Per group of up to GROUP steps: one uniform write (the steps' slots), one compute pass,
//! one submit. Loss and accuracy stay on the GPU (one slot per batch) and are read back
//! once per epoch and split, then summed on the host in f64 in batch order.

use crate::data::Dataset;
use crate::gpu::{Gpu, Result};
use crate::kernels::{Kernels, Step, StepSlots};
use crate::layers::input::ResidentSplit;
use crate::layers::optim::OptimizerConfig;
use crate::model::{Model, ModelShape};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Steps recorded into one command buffer.
pub const GROUP: usize = 16;

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub optimizer: OptimizerConfig,
    pub progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
    pub train_images_per_sec: f64,
}

impl EpochMetrics {
    pub fn json(&self) -> String {
        format!(
            "{{\"epoch\":{},\"train_loss\":{},\"train_acc\":{},\"test_loss\":{},\"test_acc\":{},\"seconds\":{},\"train_images_per_sec\":{}}}",
            self.epoch,
            json_num(self.train_loss),
            json_num(self.train_acc),
            json_num(self.test_loss),
            json_num(self.test_acc),
            json_num(self.seconds),
            json_num(self.train_images_per_sec)
        )
    }
}

/// JSON has no NaN or infinity; those become null.
fn json_num(v: f64) -> String {
    if v.is_finite() { format!("{v}") } else { "null".to_string() }
}

pub struct Trainer<'a> {
    pub gpu: &'a Gpu,
    pub model: Model,
    pub train: ResidentSplit,
    pub test: ResidentSplit,
    slots: StepSlots,
    cfg: TrainConfig,
    shuffle_rng: rand::rngs::StdRng,
    updates: u64,
}

impl<'a> Trainer<'a> {
    pub fn new(gpu: &'a Gpu, kernels: &Kernels, data: &Dataset, cfg: TrainConfig) -> Result<Trainer<'a>> {
        let train = ResidentSplit::upload(gpu, "train", &data.train)?;
        let test = ResidentSplit::upload(gpu, "test", &data.test)?;
        let slots = StepSlots::new(gpu, GROUP);
        let shape = ModelShape { side: data.train.side, classes: data.classes, batch: cfg.batch_size };
        let model = Model::new(gpu, kernels, shape, &cfg.optimizer, cfg.seed, &train, &test, &slots)?;
        gpu.wait()?;
        // The shuffle stream is separate from the init stream so each is reproducible alone.
        let shuffle_rng = rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
        Ok(Trainer { gpu, model, train, test, slots, cfg, shuffle_rng, updates: 0 })
    }

    /// Runs batches (start, valid count) in groups of up to GROUP steps; `train` selects the
    /// step kind. Returns the wall time, waiting for the GPU to finish.
    pub fn run_steps(
        &mut self,
        batches: &[(u32, u32)],
        train: bool,
        label: &str,
        epoch: usize,
    ) -> Result<f64> {
        let start = Instant::now();
        let total = batches.len();
        let mut last_submit = None;
        for (group_index, group) in batches.chunks(GROUP).enumerate() {
            let mut steps = Vec::with_capacity(group.len());
            for (i, &(start, count)) in group.iter().enumerate() {
                let mut step =
                    Step { start, count, slot: (group_index * GROUP + i) as u32, ..Default::default() };
                if train {
                    self.updates += 1;
                    self.cfg.optimizer.fill_step(&mut step, self.updates);
                }
                steps.push(step);
            }
            self.slots.write(self.gpu, &steps);
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for slot in 0..steps.len() {
                    self.model.record_step(&mut pass, train, slot);
                }
            }
            let index = self.gpu.queue.submit([encoder.finish()]);
            // Keep at most one group queued behind the running one.
            if let Some(prev) = last_submit.replace(index) {
                self.gpu
                    .device
                    .poll(wgpu::PollType::Wait { submission_index: Some(prev), timeout: None })
                    .map_err(|e| format!("GPU wait failed: {e}"))?;
                self.gpu.errors.check()?;
            }
            // Only groups the GPU has finished count: every group before this one.
            if self.cfg.progress && group_index > 0 {
                let done = group_index * GROUP;
                let secs = start.elapsed().as_secs_f64();
                eprint!(
                    "\r\x1b[2Kepoch {epoch} {label}: {done}/{total} batches, {:.0} images/s",
                    (done * self.cfg.batch_size) as f64 / secs.max(1e-9)
                );
                let _ = std::io::stderr().flush();
            }
        }
        self.gpu.wait()?;
        if self.cfg.progress {
            eprint!("\r\x1b[2K");
        }
        Ok(start.elapsed().as_secs_f64())
    }

    /// Batch (start, valid count) pairs covering `n` samples.
    pub fn batches(&self, n: usize) -> Vec<(u32, u32)> {
        let b = self.cfg.batch_size;
        (0..n.div_ceil(b)).map(|i| ((i * b) as u32, (b.min(n - i * b)) as u32)).collect()
    }

    /// (mean loss, accuracy) from the per-batch slots.
    fn read_metrics(&self, buffer: &wgpu::Buffer, batches: usize, samples: usize) -> Result<(f64, f64)> {
        let raw: Vec<f32> = self.gpu.read_words(buffer, 0, batches * 2)?;
        let loss: f64 = raw.iter().step_by(2).map(|&v| v as f64).sum();
        let correct: f64 = raw.iter().skip(1).step_by(2).map(|&v| v as f64).sum();
        Ok((loss / samples as f64, correct / samples as f64))
    }

    pub fn evaluate(&mut self, epoch: usize) -> Result<(f64, f64)> {
        let batches = self.batches(self.test.count);
        self.run_steps(&batches, false, "test", epoch)?;
        self.read_metrics(&self.model.test_metrics, batches.len(), self.test.count)
    }

    /// Draws the next epoch's order from the seeded stream and uploads it.
    pub fn shuffle(&mut self) {
        let mut order: Vec<u32> = (0..self.train.count as u32).collect();
        order.shuffle(&mut self.shuffle_rng);
        self.train.set_order(self.gpu, &order);
    }

    pub fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    pub fn train_epoch(&mut self, epoch: usize) -> Result<EpochMetrics> {
        let epoch_start = Instant::now();
        self.shuffle();
        let batches = self.batches(self.train.count);
        let train_seconds = self.run_steps(&batches, true, "train", epoch)?;
        let (train_loss, train_acc) =
            self.read_metrics(&self.model.train_metrics, batches.len(), self.train.count)?;
        if !train_loss.is_finite() {
            return Err(format!(
                "training diverged in epoch {epoch}: the loss is {train_loss}; try a lower --lr"
            ));
        }
        let (test_loss, test_acc) = self.evaluate(epoch)?;
        Ok(EpochMetrics {
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            seconds: epoch_start.elapsed().as_secs_f64(),
            train_images_per_sec: self.train.count as f64 / train_seconds,
        })
    }
}

pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal()
}
