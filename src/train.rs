//! The training loop: epochs of shuffled batches recorded in groups, evaluation, metrics.
//!
//! Per group of up to GROUP steps: one uniform write (the steps' slots), one compute pass,
//! one submit. Each sample's loss and correctness stay on the GPU, at its place in the
//! epoch's order, and are read back once per epoch and summed on the host in f64 in that
//! order, so how samples are batched never changes how they are added up.

use crate::checkpoint::{Checkpoint, DatasetShape, Position};
use crate::data::Dataset;
use crate::gpu::{Gpu, Result};
use crate::kernels::{Kernels, Step, StepSlots};
use crate::layers::input::ResidentSplit;
use crate::layers::optim::OptimizerConfig;
use crate::model::{Model, ModelShape};
use crate::progress::{StepObserver, Tick};
use crate::running_metrics::RunningMetrics;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::time::Instant;

/// Steps recorded into one command buffer.
pub const GROUP: usize = 16;
/// Images one group may hold: larger batches make smaller groups, so that the work queued
/// when Ctrl-C or SIGTERM comes (the running group and the one behind it) stays short.
pub const GROUP_IMAGES: usize = 4096;
/// The wall time a group of steps aims at.
const GROUP_SECONDS: f64 = 0.25;

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub model: crate::model_spec::ModelDef,
    /// The run's total epochs (a schedule spans them).
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub optimizer: OptimizerConfig,
    pub schedule: crate::schedule::Schedule,
    pub warmup_epochs: f64,
    /// Label smoothing eps of the training loss (0: none).
    pub label_smoothing: f64,
    /// Training-time augmentation in the gather (none by default).
    pub augment: crate::augment::Augment,
    /// How pixels become inputs (unit by default).
    pub normalize: crate::normalize::Normalize,
    /// Evaluate at the largest batch that fits (`model::eval_batch_for`), with a forward-only
    /// network sharing the training network's weights, instead of at the training batch.
    /// What is computed is the same either way; only the speed differs.
    pub large_eval: bool,
}

impl TrainConfig {
    /// A constant learning rate, no warm-up: what tests and tools start from.
    pub fn basic(
        model: crate::model_spec::ModelDef,
        epochs: usize,
        batch_size: usize,
        seed: u64,
        optimizer: OptimizerConfig,
    ) -> TrainConfig {
        TrainConfig {
            model,
            epochs,
            batch_size,
            seed,
            optimizer,
            schedule: crate::schedule::Schedule::Constant,
            warmup_epochs: 0.0,
            label_smoothing: 0.0,
            augment: Default::default(),
            normalize: Default::default(),
            large_eval: false,
        }
    }
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
    /// The learning rate of the epoch's last step.
    pub lr: f64,
}

impl EpochMetrics {
    /// The keys of `json`, in order: metrics.csv's columns.
    pub const CSV_HEADER: &str =
        "epoch,train_loss,train_acc,test_loss,test_acc,seconds,train_images_per_sec,lr";

    fn values(&self) -> [f64; 7] {
        [
            self.train_loss,
            self.train_acc,
            self.test_loss,
            self.test_acc,
            self.seconds,
            self.train_images_per_sec,
            self.lr,
        ]
    }

    /// One metrics.csv row (an empty field where JSON has null).
    pub fn csv_row(&self) -> String {
        let mut row = self.epoch.to_string();
        for v in self.values() {
            row.push(',');
            if v.is_finite() {
                row.push_str(&v.to_string());
            }
        }
        row
    }

    /// An epoch's line of metrics.jsonl (null for a value that was not finite).
    pub fn from_json(line: &str) -> Option<EpochMetrics> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let num = |key: &str| -> Option<f64> {
            match v.get(key)? {
                serde_json::Value::Null => Some(f64::NAN),
                x => x.as_f64(),
            }
        };
        let epoch = usize::try_from(v.get("epoch")?.as_u64()?).ok()?;
        Some(EpochMetrics {
            epoch,
            train_loss: num("train_loss")?,
            train_acc: num("train_acc")?,
            test_loss: num("test_loss")?,
            test_acc: num("test_acc")?,
            seconds: num("seconds")?,
            train_images_per_sec: num("train_images_per_sec")?,
            // older lines have no lr
            lr: num("lr").unwrap_or(f64::NAN),
        })
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"epoch\":{},\"train_loss\":{},\"train_acc\":{},\"test_loss\":{},\"test_acc\":{},\"seconds\":{},\"train_images_per_sec\":{},\"lr\":{}}}",
            self.epoch,
            json_num(self.train_loss),
            json_num(self.train_acc),
            json_num(self.test_loss),
            json_num(self.test_acc),
            json_num(self.seconds),
            json_num(self.train_images_per_sec),
            json_num(self.lr)
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
    /// The forward-only network evaluation runs on, at a larger batch than training's
    /// (`TrainConfig::large_eval`); None when the training network evaluates.
    pub eval_model: Option<Model>,
    slots: StepSlots,
    cfg: TrainConfig,
    shuffle_rng: rand::rngs::StdRng,
    /// Epochs and batches done, optimiser steps, best epoch: what a checkpoint records.
    pub position: Position,
    observer: Option<Box<dyn StepObserver + 'a>>,
    running: RunningMetrics,
    /// Measured seconds per step, training and evaluation: sizes the groups.
    step_seconds: [Option<f64>; 2],
}

/// (start, valid count) pairs covering `n` samples in batches of `b`.
fn batches_of(n: usize, b: usize) -> Vec<(u32, u32)> {
    (0..n.div_ceil(b)).map(|i| ((i * b) as u32, (b.min(n - i * b)) as u32)).collect()
}

fn shuffle_stream(seed: u64) -> rand::rngs::StdRng {
    // Separate from the init stream so each is reproducible alone.
    rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15))
}

impl<'a> Trainer<'a> {
    pub fn new(gpu: &'a Gpu, kernels: &Kernels, data: &Dataset, cfg: TrainConfig) -> Result<Trainer<'a>> {
        Trainer::build(gpu, kernels, data, cfg, true)
    }

    /// A trainer that only evaluates (eval, predict): no backward buffers or optimiser
    /// state, so the batch is limited only by what the forward pass needs.
    pub fn for_eval(
        gpu: &'a Gpu,
        kernels: &Kernels,
        data: &Dataset,
        cfg: TrainConfig,
    ) -> Result<Trainer<'a>> {
        Trainer::build(gpu, kernels, data, cfg, false)
    }

    fn build(
        gpu: &'a Gpu,
        kernels: &Kernels,
        data: &Dataset,
        cfg: TrainConfig,
        training: bool,
    ) -> Result<Trainer<'a>> {
        let test = ResidentSplit::upload(gpu, "test", &data.test)?;
        // Evaluation never reads the training split: it shares the test split's buffers
        // instead of uploading a second copy.
        let train = if training { ResidentSplit::upload(gpu, "train", &data.train)? } else { test.clone() };
        let slots = StepSlots::new(gpu, GROUP);
        let shape = ModelShape { side: data.train.side, classes: data.classes, batch: cfg.batch_size };
        let model = Model::new(
            gpu,
            kernels,
            &cfg.model,
            shape,
            &cfg.optimizer,
            cfg.seed,
            &train,
            &test,
            &slots,
            training,
            cfg.label_smoothing,
            cfg.augment,
            cfg.normalize,
            None,
        )?;
        let eval_model = if training && cfg.large_eval && !kernels.tuner.f16_storage {
            // the training network's own faults first, before a smaller evaluation batch is tried
            gpu.wait()?;
            Trainer::eval_model(gpu, kernels, &cfg, &model, &test, &slots)?
        } else {
            // f16 storage: the tuner might choose differently at another batch, and
            // evaluation would then round differently from the training batch
            None
        };
        gpu.wait()?;
        let shuffle_rng = shuffle_stream(cfg.seed);
        let position =
            Position { epochs_done: 0, batches_done: 0, updates: 0, best: None, partial_metrics: Vec::new() };
        let group_rows = (GROUP_IMAGES / cfg.batch_size).clamp(1, GROUP) * cfg.batch_size;
        let running = RunningMetrics::new(gpu, if training { group_rows } else { 1 });
        Ok(Trainer {
            gpu,
            model,
            train,
            test,
            eval_model,
            slots,
            cfg,
            shuffle_rng,
            position,
            observer: None,
            running,
            step_seconds: [None, None],
        })
    }

    /// A forward-only model at the largest evaluation batch that fits, reading `model`'s
    /// weights and batch norm statistics; None when that batch is no larger than training's.
    /// A batch the GPU has no memory left for is halved, with a note; any other failure
    /// to build it is an error.
    fn eval_model(
        gpu: &Gpu,
        kernels: &Kernels,
        cfg: &TrainConfig,
        model: &Model,
        test: &ResidentSplit,
        slots: &StepSlots,
    ) -> Result<Option<Model>> {
        let mut cap = test.count;
        loop {
            let Some(batch) =
                crate::model::eval_batch_on(gpu, kernels, &model.network.nodes, cfg.batch_size, cap)?
            else {
                return Ok(None);
            };
            // A GPU without the memory says so in this scope instead of failing the run; the
            // invalid buffers then fail validation where they are bound, which the device's
            // error log collects (autotuning needs that log too, so no scope takes those).
            let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let built = Model::new(
                gpu,
                kernels,
                &cfg.model,
                ModelShape { batch, ..model.shape },
                &cfg.optimizer,
                cfg.seed,
                test,
                test,
                slots,
                false,
                0.0,
                cfg.augment,
                cfg.normalize,
                Some(&model.network),
            );
            if pollster::block_on(oom.pop()).is_some() {
                gpu.wait().ok();
                gpu.errors.clear();
                eprintln!(
                    "note: the GPU has no memory left for evaluation at batch {batch}; trying a smaller batch"
                );
                cap = batch / 2;
                continue;
            }
            let eval = built.map_err(|e| format!("the evaluation network at batch {batch}: {e}"))?;
            return Ok(Some(eval));
        }
    }

    /// Images per evaluation step.
    pub fn eval_batch(&self) -> usize {
        self.eval_model.as_ref().map_or(self.cfg.batch_size, |m| m.shape.batch)
    }

    /// The model an evaluation step runs on.
    fn eval_runner(&self) -> &Model {
        self.eval_model.as_ref().unwrap_or(&self.model)
    }

    /// Puts a checkpoint's weights, optimiser state and position on this trainer, which must
    /// have been built with the checkpoint's seed, batch size, optimiser and dataset shape.
    /// The shuffle stream is replayed, so the coming epochs see the orders they would have.
    pub fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        let total = self.model.network.layout.total;
        if ckpt.params.len() != total || ckpt.m.len() != total || ckpt.v.len() != total {
            return Err("checkpoint: parameter layout differs from this model's".into());
        }
        let optimizer = self.optimizer()?;
        let queue = &self.gpu.queue;
        queue.write_buffer(&self.model.network.params, 0, bytemuck::cast_slice(&ckpt.params));
        self.model.network.write_state(self.gpu, &ckpt.state)?;
        queue.write_buffer(&optimizer.m, 0, bytemuck::cast_slice(&ckpt.m));
        queue.write_buffer(&optimizer.v, 0, bytemuck::cast_slice(&ckpt.v));
        self.position = ckpt.position.clone();
        self.shuffle_rng = shuffle_stream(self.cfg.seed);
        for _ in 0..self.position.epochs_done {
            self.draw_order();
        }
        if self.position.batches_done > 0 {
            self.shuffle();
            let partial = &self.position.partial_metrics;
            if partial.len() != 2 * self.rows_done() {
                return Err("checkpoint: the partial epoch's metrics do not match its batches".into());
            }
            queue.write_buffer(&self.model.train_metrics, 0, bytemuck::cast_slice(partial));
        }
        self.gpu.wait()
    }

    /// The first training batch as the augmenting gather builds it (B, S, S): the first
    /// epoch's order and step, without training. For `--preview-batch`.
    pub fn preview_batch(&mut self) -> Result<Vec<f32>> {
        let saved = self.shuffle_rng.clone();
        self.shuffle();
        self.shuffle_rng = saved;
        let count = self.cfg.batch_size.min(self.train.count) as u32;
        self.slots.write(self.gpu, &[Step { start: 0, count, update: 1, ..Default::default() }]);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            // the step's first dispatch is the gather (model.rs)
            if let Some(gather) = self.model.train_step.first() {
                gather.record(&mut pass, 0);
            }
        }
        self.gpu.queue.submit([encoder.finish()]);
        let side = self.model.shape.side;
        self.gpu.read_words(&self.model.network.input, 0, count as usize * side * side)
    }

    fn optimizer(&self) -> Result<&crate::layers::optim::Optimizer> {
        self.model.optimizer.as_ref().ok_or_else(|| "internal error: this trainer only evaluates".to_string())
    }

    /// Replaces the weights (flat layout) and batch norm's running statistics, e.g. with a
    /// checkpoint's for evaluation.
    pub fn set_params(&self, params: &[f32], state: &[(String, Vec<f32>)]) -> Result<()> {
        if params.len() != self.model.network.layout.total {
            return Err("checkpoint: parameter layout differs from this model's".into());
        }
        self.gpu.queue.write_buffer(&self.model.network.params, 0, bytemuck::cast_slice(params));
        self.model.network.write_state(self.gpu, state)?;
        self.gpu.wait()
    }

    /// Logits (test count, classes) of every test sample, one batch per submit and readback,
    /// plus the GPU's (mean loss, accuracy) over them.
    pub fn test_logits(&mut self) -> Result<(Vec<f32>, (f64, f64))> {
        let classes = self.model.shape.classes;
        let batches = self.batches(self.test.count);
        let mut logits = Vec::with_capacity(self.test.count * classes);
        for &(start, count) in &batches {
            self.slots.write(self.gpu, &[Step { start, count, ..Default::default() }]);
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.model.record_step(&mut pass, false, 0);
            }
            self.gpu.queue.submit([encoder.finish()]);
            logits.extend(self.gpu.read_words::<f32>(
                &self.model.network.logits,
                0,
                count as usize * classes,
            )?);
        }
        let metrics = self.read_metrics(&self.model.test_metrics, self.test.count)?;
        Ok((logits, metrics))
    }

    /// Everything needed to continue this run later, read back from the GPU.
    pub fn snapshot(&self, dataset: DatasetShape, class_names: Vec<String>) -> Result<Checkpoint> {
        let mut position = self.position.clone();
        position.partial_metrics = self.gpu.read_words(&self.model.train_metrics, 0, 2 * self.rows_done())?;
        Ok(Checkpoint {
            model: self.cfg.model.clone(),
            dataset,
            class_names,
            batch_size: self.cfg.batch_size,
            seed: self.cfg.seed,
            optimizer: self.cfg.optimizer,
            schedule: self.cfg.schedule.clone(),
            warmup_epochs: self.cfg.warmup_epochs,
            label_smoothing: self.cfg.label_smoothing,
            augment: self.cfg.augment,
            normalize: self.cfg.normalize,
            position,
            params: self.gpu.read_f32(&self.model.network.params)?,
            m: self.gpu.read_f32(&self.optimizer()?.m)?,
            v: self.gpu.read_f32(&self.optimizer()?.v)?,
            state: self.model.network.read_state(self.gpu)?,
        })
    }

    /// Runs batches (start, valid count) in groups of up to GROUP steps; `train` selects the
    /// step kind. Evaluation batches hold up to `eval_batch()` images (`eval_batches`).
    /// Returns the wall time, waiting for the GPU to finish.
    pub fn run_steps(
        &mut self,
        batches: &[(u32, u32)],
        train: bool,
        label: &str,
        epoch: usize,
    ) -> Result<f64> {
        Ok(self.run_steps_from(batches, 0, train, label, epoch, &|| false)?.0)
    }

    /// Runs `batches[first..]` (metrics land at each sample's place in the order), checking `stop` after each
    /// group is queued. Returns the wall time and the batches run (all of them unless stopped).
    ///
    /// Groups are sized from the measured step time to last about GROUP_SECONDS (at most
    /// `group_steps()` steps), so that progress, Ctrl-C and the running metrics stay prompt
    /// on slow adapters; how steps are grouped never changes what they compute.
    pub fn run_steps_from(
        &mut self,
        batches: &[(u32, u32)],
        first: usize,
        train: bool,
        label: &str,
        epoch: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<(f64, usize)> {
        let start = Instant::now();
        let total = batches.len();
        let kind = usize::from(!train);
        let max_group = Trainer::group_steps_for(if train { self.cfg.batch_size } else { self.eval_batch() });
        let mut next = first.min(total);
        let first_here = next;
        let mut last_submit = None;
        // (batches, images) of the group queued behind the running one
        let mut in_flight: Option<(usize, usize)> = None;
        let (mut done, mut images) = (next, 0usize);
        let mut last_wait = start;
        if train {
            self.running.reset();
            // a resumed epoch's samples so far, as its metrics will count them
            if next > 0 {
                self.running.add_pairs(&self.position.partial_metrics);
            }
        }
        while next < total {
            let steps_here = self.steps_per_group(kind, max_group);
            let group = &batches[next..(next + steps_here).min(total)];
            let mut steps = Vec::with_capacity(group.len());
            for &(start, count) in group {
                let mut step = Step { start, count, ..Default::default() };
                if train {
                    self.position.updates += 1;
                    step.update = self.position.updates as u32;
                    let factor = self.lr_factor(self.position.updates);
                    self.cfg.optimizer.fill_step(&mut step, self.position.updates, factor);
                }
                steps.push(step);
            }
            self.slots.write(self.gpu, &steps);
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                let model = if train { &self.model } else { self.eval_runner() };
                for slot in 0..steps.len() {
                    model.record_step(&mut pass, train, slot);
                }
            }
            let group_images: usize = group.iter().map(|b| b.1 as usize).sum();
            // the group's samples are contiguous in the epoch's order
            let copy = if train && self.observer.is_some() {
                let first_row = group[0].0 as usize;
                self.running
                    .record_copy(&mut encoder, &self.model.train_metrics, first_row, group_images)
                    .map(|index| (index, (group_images * 8) as u64))
            } else {
                None
            };
            let index = self.gpu.queue.submit([encoder.finish()]);
            // Keep at most one group queued behind the running one.
            if let Some(prev) = last_submit.replace(index) {
                self.gpu
                    .device
                    .poll(wgpu::PollType::Wait { submission_index: Some(prev), timeout: None })
                    .map_err(|e| format!("GPU wait failed: {e}"))?;
                self.gpu.errors.check()?;
                if let Some((b, n)) = in_flight.take() {
                    let now = Instant::now();
                    self.measured_group(kind, now - last_wait, b);
                    last_wait = now;
                    (done, images) = (done + b, images + n);
                    self.tick(train, label, epoch, (first_here, done, total), images, start, false);
                }
            }
            if let Some((index, bytes)) = copy {
                self.running.map_recorded(index, bytes);
            }
            in_flight = Some((group.len(), group_images));
            next += group.len();
            if stop() {
                break;
            }
        }
        self.gpu.wait()?;
        if let Some((b, n)) = in_flight {
            self.measured_group(kind, Instant::now() - last_wait, b);
            (done, images) = (done + b, images + n);
        }
        self.tick(train, label, epoch, (first_here, done, total), images, start, true);
        Ok((start.elapsed().as_secs_f64(), done - first.min(total)))
    }

    /// Steps for the next group: about GROUP_SECONDS of work by the step time measured so
    /// far (one step until there is a measurement), at most `max_group`.
    fn steps_per_group(&self, kind: usize, max_group: usize) -> usize {
        match self.step_seconds[kind] {
            Some(secs) => ((GROUP_SECONDS / secs.max(1e-6)).round() as usize).clamp(1, max_group),
            None => 1,
        }
    }

    /// Folds a finished group's wall time into the step time estimate.
    fn measured_group(&mut self, kind: usize, elapsed: std::time::Duration, steps: usize) {
        let per_step = elapsed.as_secs_f64() / steps.max(1) as f64;
        let estimate = &mut self.step_seconds[kind];
        *estimate = Some(estimate.map_or(per_step, |old| 0.5 * old + 0.5 * per_step));
    }

    /// Tells the observer, if any, how far this call has got.
    #[allow(clippy::too_many_arguments)]
    fn tick(
        &mut self,
        train: bool,
        label: &str,
        epoch: usize,
        (first, done, total): (usize, usize, usize),
        images: usize,
        start: Instant,
        finished: bool,
    ) {
        if self.observer.is_none() {
            return;
        }
        if train {
            self.running.collect();
        }
        let tick = Tick {
            train,
            label,
            epoch,
            done,
            total,
            steps: done - first,
            images,
            seconds: start.elapsed().as_secs_f64(),
            running: if train { self.running.value() } else { None },
            finished,
        };
        if let Some(observer) = self.observer.as_mut() {
            observer.tick(&tick);
        }
    }

    /// Sends progress reports to `observer` (the terminal bar or plain lines).
    pub fn set_observer(&mut self, observer: Box<dyn StepObserver + 'a>) {
        self.observer = Some(observer);
    }

    /// The schedule's factor at optimiser step `t` of this run.
    pub fn lr_factor(&self, t: u64) -> f64 {
        let steps_per_epoch = self.train.count.div_ceil(self.cfg.batch_size);
        self.cfg.schedule.factor(t, steps_per_epoch, self.cfg.epochs, self.cfg.warmup_epochs)
    }

    /// Training steps recorded into one submit: GROUP, or fewer at batches above
    /// GROUP_IMAGES / GROUP.
    pub fn group_steps(&self) -> usize {
        Trainer::group_steps_for(self.cfg.batch_size)
    }

    fn group_steps_for(batch: usize) -> usize {
        (GROUP_IMAGES / batch).clamp(1, GROUP)
    }

    /// Training batch (start, valid count) pairs covering `n` samples.
    pub fn batches(&self, n: usize) -> Vec<(u32, u32)> {
        batches_of(n, self.cfg.batch_size)
    }

    /// Evaluation batch (start, valid count) pairs covering `n` samples.
    pub fn eval_batches(&self, n: usize) -> Vec<(u32, u32)> {
        batches_of(n, self.eval_batch())
    }

    /// Training samples of the epoch in progress already trained on.
    fn rows_done(&self) -> usize {
        (self.position.batches_done * self.cfg.batch_size).min(self.train.count)
    }

    /// (mean loss, accuracy) from the per-sample values, summed in the epoch's order.
    fn read_metrics(&self, buffer: &wgpu::Buffer, samples: usize) -> Result<(f64, f64)> {
        let raw: Vec<f32> = self.gpu.read_words(buffer, 0, samples * 2)?;
        let loss: f64 = raw.iter().step_by(2).map(|&v| v as f64).sum();
        let correct: f64 = raw.iter().skip(1).step_by(2).map(|&v| v as f64).sum();
        Ok((loss / samples as f64, correct / samples as f64))
    }

    pub fn evaluate(&mut self, epoch: usize) -> Result<(f64, f64)> {
        let batches = self.eval_batches(self.test.count);
        self.run_steps(&batches, false, "test", epoch)?;
        self.read_metrics(&self.eval_runner().test_metrics, self.test.count)
    }

    fn draw_order(&mut self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.train.count as u32).collect();
        order.shuffle(&mut self.shuffle_rng);
        order
    }

    /// Draws the next epoch's order from the seeded stream and uploads it.
    pub fn shuffle(&mut self) {
        let order = self.draw_order();
        self.train.set_order(self.gpu, &order);
    }

    pub fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    pub fn train_epoch(&mut self, epoch: usize) -> Result<EpochMetrics> {
        match self.train_epoch_until(epoch, &|| false)? {
            Some(m) => Ok(m),
            None => Err("training stopped early".into()),
        }
    }

    /// Trains (the rest of) epoch `epoch` and evaluates; checks `stop` after each group of
    /// training steps and returns None, with the position saying how far it got, if it fired.
    pub fn train_epoch_until(
        &mut self,
        epoch: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<EpochMetrics>> {
        let epoch_start = Instant::now();
        let first = self.position.batches_done;
        if first == 0 {
            self.shuffle();
        }
        let batches = self.batches(self.train.count);
        let (train_seconds, ran) = self.run_steps_from(&batches, first, true, "train", epoch, stop)?;
        self.position.batches_done = first + ran;
        if self.position.batches_done < batches.len() {
            return Ok(None);
        }
        let (train_loss, train_acc) = self.read_metrics(&self.model.train_metrics, self.train.count)?;
        if !train_loss.is_finite() {
            return Err(format!(
                "training diverged in epoch {epoch}: the training loss is {train_loss}; try a lower --lr (now {})",
                crate::cli::readable(self.cfg.optimizer.lr)
            ));
        }
        let (test_loss, test_acc) = self.evaluate(epoch)?;
        self.position.batches_done = 0;
        self.position.partial_metrics.clear();
        self.position.epochs_done = epoch;
        let trained = batches[first.min(batches.len())..].iter().map(|b| b.1 as usize).sum::<usize>();
        Ok(Some(EpochMetrics {
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            seconds: epoch_start.elapsed().as_secs_f64(),
            train_images_per_sec: trained as f64 / train_seconds,
            lr: self.cfg.optimizer.lr * self.lr_factor(self.position.updates),
        }))
    }
}
