//! The per-invocation loop budget: what the probe measures, and the numbers a whole model
//! reports at batch sizes past the point where one invocation used to stop short: the
//! GPU's loss and accuracy equal the host's from the same logits, do not depend on the
//! batch, and start near ln(classes).

mod common;
use gpu_train::data;
use gpu_train::kernels::Kernels;
use gpu_train::layers::optim::OptimizerConfig;
use gpu_train::model::{ModelShape, check_batch_fits};
use gpu_train::train::{TrainConfig, Trainer};

fn config(batch_size: usize, lr: f64) -> TrainConfig {
    let optimizer = OptimizerConfig { lr, ..OptimizerConfig::default() };
    TrainConfig::basic(Default::default(), 1, batch_size, 3, optimizer)
}

#[test]
fn the_probe_measures_llvmpipes_loop_limit() {
    let gpu = common::gpu();
    println!("{}: loop budget {} iterations per invocation", gpu.describe(), gpu.loop_budget);
    if gpu.info.driver.to_lowercase().contains("llvmpipe") || gpu.info.name.contains("llvmpipe") {
        assert_eq!(
            gpu.loop_budget, 65_535,
            "llvmpipe's loop limiter stops an invocation at 65,535 iterations"
        );
    } else {
        assert!(gpu.loop_budget >= 65_535, "budget {} is suspiciously small", gpu.loop_budget);
    }
}

/// (mean loss, accuracy) in f64 from logits (N, classes), the argmax being the first maximum.
fn host_metrics(logits: &[f32], labels: &[u8], classes: usize) -> (f64, f64) {
    let (mut loss, mut correct) = (0f64, 0f64);
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        loss += z.ln() + max - row[label as usize] as f64;
        let arg = (0..classes).find(|&c| row[c] as f64 == max).unwrap();
        correct += (arg == label as usize) as u32 as f64;
    }
    (loss / labels.len() as f64, correct / labels.len() as f64)
}

/// Evaluates fresh weights on `classes`-class random data at several batch sizes.
fn eval_at_batches(classes: usize, batches: &[usize]) {
    let dataset = data::synthetic(2048, 3000, 8, classes, 7);
    let gpu = common::gpu();
    let kernels = Kernels::new(&gpu).unwrap();
    let ln = (classes as f64).ln();
    let mut first: Option<(f64, f64)> = None;
    for &batch in batches {
        let mut trainer = Trainer::for_eval(&gpu, &kernels, &dataset, config(batch, 1e-3)).unwrap();
        let (logits, (loss, acc)) = trainer.test_logits().unwrap();
        let (host_loss, host_acc) = host_metrics(&logits, &dataset.test.labels, classes);
        println!(
            "{classes} classes, batch {batch}: GPU loss {loss:.6} acc {acc:.4}, host loss {host_loss:.6} acc {host_acc:.4}, ln {ln:.4}"
        );
        assert!((loss - host_loss).abs() < 1e-5 * host_loss, "GPU loss {loss} vs host {host_loss}");
        assert_eq!(acc, host_acc, "GPU accuracy vs host");
        assert!((loss - ln).abs() < 0.05, "loss at initialisation {loss} is not near ln {classes} = {ln}");
        match first {
            None => first = Some((loss, acc)),
            Some(f) => assert_eq!(f, (loss, acc), "the reported numbers depend on the batch size"),
        }
    }
}

#[test]
fn reported_metrics_do_not_depend_on_the_batch_at_10_classes() {
    // 2,600 and 3,000 rows: past the ~1,986 at which the old loss kernel stopped.
    eval_at_batches(10, &[64, 128, 2600, 3000]);
}

#[test]
fn reported_metrics_do_not_depend_on_the_batch_at_200_classes() {
    eval_at_batches(200, &[64, 128, 2600]);
}

#[test]
fn training_at_a_large_batch_starts_from_ln_classes() {
    // lr so small that the epoch's loss is the initial one, at a batch past ~1,986.
    for classes in [10, 200] {
        let dataset = data::synthetic(3000, 64, 8, classes, 11);
        let gpu = common::gpu();
        let kernels = Kernels::new(&gpu).unwrap();
        let mut trainer = Trainer::new(&gpu, &kernels, &dataset, config(2674, 1e-12)).unwrap();
        let m = trainer.train_epoch(1).unwrap();
        let ln = (classes as f64).ln();
        println!("{classes} classes, batch 2674: first epoch train loss {:.4}, ln {ln:.4}", m.train_loss);
        assert!(
            (m.train_loss - ln).abs() < 0.05,
            "train loss {} is not near ln {classes} = {ln}",
            m.train_loss
        );
    }
}

#[test]
fn evaluation_accepts_batches_that_only_training_buffers_would_refuse() {
    let gpu = common::gpu();
    let k = Kernels::new(&gpu).unwrap();
    let nodes = ModelShape { side: 28, classes: 10, batch: 1 }.plan(&Default::default()).unwrap();
    let shape = |batch| batch;
    // the smallest batch training refuses
    let (mut fits, mut fails) = (1usize, 1usize << 20);
    while fails - fits > 1 {
        let mid = (fits + fails) / 2;
        if check_batch_fits(&gpu, &k, &nodes, shape(mid), true).is_ok() { fits = mid } else { fails = mid }
    }
    let err = check_batch_fits(&gpu, &k, &nodes, shape(fails), true).unwrap_err();
    println!("training refuses batch {fails}: {err}");
    assert!(err.contains(&format!("the largest batch that fits is {fits}")), "{err}");
    check_batch_fits(&gpu, &k, &nodes, shape(fails), false).unwrap();
}

#[test]
fn every_ref_cnn_dispatch_stays_inside_the_budget_up_to_the_largest_batch() {
    // The audit: each kernel's worst-case loop iterations per invocation at the default
    // batch and at the largest batch this adapter accepts for training.
    let gpu = common::gpu();
    let k = Kernels::new(&gpu).unwrap();
    let nodes = ModelShape { side: 28, classes: 10, batch: 1 }.plan(&Default::default()).unwrap();
    // 65,536 is the largest batch the command line accepts; the error names the largest that fits
    let largest = match check_batch_fits(&gpu, &k, &nodes, 65_536, true) {
        Ok(()) => 65_536,
        Err(e) => e
            .split("the largest batch that fits is ")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    };
    for batch in [128, largest] {
        let dataset = data::synthetic(batch, 16, 28, 10, 1);
        let trainer = Trainer::new(&gpu, &k, &dataset, config(batch, 1e-3)).unwrap();
        println!("ref-cnn, batch {batch}, loop budget {}:", gpu.loop_budget);
        for d in &trainer.model.train_step {
            let bound = d.loops.as_ref().expect("every dispatch has a loop bound");
            println!("  {:<16} {:<22} {:>6}  ({})", d.layer, d.name, bound.ticks, bound.size);
            assert!(bound.ticks <= gpu.loop_budget);
        }
    }
}

#[test]
fn the_probes_own_exit_is_never_reached_within_its_length() {
    // Only the driver can then stop the probe short of PROBE_LIMIT.
    use gpu_train::loop_budget::{PROBE_LIMIT, PROBE_SEED, PROBE_STOP};
    let mut x = PROBE_SEED;
    for step in 0..PROBE_LIMIT {
        assert_ne!(x, PROBE_STOP, "the probe's LCG meets its stop value at step {step}");
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    }
}
