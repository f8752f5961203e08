//! Whole networks against PyTorch (tests/fixtures/network.safetensors, written by
//! scripts/make_network_fixture.py): for each model string, one training step from the same
//! initial weights on the same images must give PyTorch's logits, loss, every parameter
//! gradient, and the parameters and batch norm's running statistics after one Adam step.

mod common;
use gpu_train::data::{Dataset, Split};
use gpu_train::layers::optim::OptimizerConfig;
use gpu_train::model_spec::resolve_text;
use gpu_train::train::{TrainConfig, Trainer};
use safetensors::SafeTensors;
use std::collections::HashMap;

fn floats(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture lacks {name}"));
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Largest |got - want| over max(1, max |want|): how far off, relative to the values' scale.
fn error(name: &str, got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    let scale = want.iter().fold(1e-3f64, |m, &w| m.max(w.abs() as f64));
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w as f64).abs() / scale).fold(0.0, f64::max)
}

#[test]
fn whole_networks_match_pytorch_for_one_training_step() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/network.safetensors"))
        .expect("tests/fixtures/network.safetensors (make it with scripts/make_network_fixture.py)");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let models: Vec<String> = serde_json::from_str(&meta["models"]).unwrap();
    let side: usize = meta["side"].parse().unwrap();
    let classes: usize = meta["classes"].parse().unwrap();
    let batch: usize = meta["batch"].parse().unwrap();
    for (gpu, k) in common::variants() {
        let variant = format!("{:?}/{}", k.variant, k.workgroup_size);
        for (m, spec) in models.iter().enumerate() {
            let p = format!("{m}.");
            let pixels: Vec<u8> = floats(&st, &format!("{p}images")).iter().map(|&v| v as u8).collect();
            let labels: Vec<u8> = floats(&st, &format!("{p}labels")).iter().map(|&v| v as u8).collect();
            let split = Split { count: batch, side, pixels, labels };
            let data = Dataset { dir: Default::default(), train: split.clone(), test: split, classes };
            let cfg = TrainConfig::basic(
                resolve_text("fixture", spec).unwrap(),
                1,
                batch,
                0,
                OptimizerConfig::default(),
            );
            let mut trainer = Trainer::new(&gpu, &k, &data, cfg).unwrap();
            let layout = trainer.model.network.layout.clone();
            let mut flat = vec![0f32; layout.total];
            for t in layout.tensors.iter().filter(|t| t.exported) {
                let init = floats(&st, &format!("{p}init.{}", t.name));
                flat[t.offset..t.offset + t.len()].copy_from_slice(&init);
            }
            trainer.set_params(&flat, &[]).unwrap();
            trainer.run_steps(&[(0, batch as u32)], true, "fixture", 1).unwrap();

            let net = &trainer.model.network;
            let mut errors: HashMap<String, f64> = HashMap::new();
            let logits: Vec<f32> = gpu.read_words(&net.logits, 0, batch * classes).unwrap();
            errors.insert("logits".into(), error("logits", &logits, &floats(&st, &format!("{p}logits"))));
            let metrics: Vec<f32> = gpu.read_words(&trainer.model.train_metrics, 0, 2 * batch).unwrap();
            let loss = metrics.iter().step_by(2).map(|&v| v as f64).sum::<f64>() / batch as f64;
            errors.insert("loss".into(), error("loss", &[loss as f32], &floats(&st, &format!("{p}loss"))));
            let grads = gpu.read_f32(&net.grads).unwrap();
            let after = trainer.model.read_params(&gpu).unwrap();
            for t in layout.tensors.iter().filter(|t| t.exported) {
                let range = t.offset..t.offset + t.len();
                let want_grad = floats(&st, &format!("{p}grad.{}", t.name));
                let got_grad = &grads[range.clone()];
                errors.insert(format!("grad {}", t.name), error(&t.name, got_grad, &want_grad));
                // One Adam step (t = 1) is p - lr g / (|g| + eps): where |g| is near eps its
                // result swings with g's last bits, so it is checked three ways: ours against
                // the step from our gradient, PyTorch's against the step from its gradient
                // (the same formula), and ours against PyTorch's where |g| >= 1e-5.
                let init = floats(&st, &format!("{p}init.{}", t.name));
                let want_after = floats(&st, &format!("{p}after.{}", t.name));
                let step = |p0: f32, g: f32| p0 as f64 - 1e-3 * g as f64 / ((g as f64).abs() + 1e-8);
                let ours: Vec<f32> = init.iter().zip(got_grad).map(|(&p0, &g)| step(p0, g) as f32).collect();
                let theirs: Vec<f32> =
                    init.iter().zip(&want_grad).map(|(&p0, &g)| step(p0, g) as f32).collect();
                errors.insert(format!("adam {}", t.name), error(&t.name, &after[range.clone()], &ours));
                errors.insert(format!("torch adam {}", t.name), error(&t.name, &want_after, &theirs));
                let sure: Vec<usize> = (0..want_grad.len()).filter(|&i| want_grad[i].abs() >= 1e-5).collect();
                let pick = |v: &[f32]| sure.iter().map(|&i| v[i]).collect::<Vec<f32>>();
                errors.insert(
                    format!("after {}", t.name),
                    error(&t.name, &pick(&after[range]), &pick(&want_after)),
                );
            }
            for (name, values) in net.read_state(&gpu).unwrap() {
                let e = error(&name, &values, &floats(&st, &format!("{p}after.{name}")));
                errors.insert(format!("after {name}"), e);
            }
            let mut rows: Vec<_> = errors.into_iter().collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let worst = rows.iter().map(|r| r.1).fold(0.0, f64::max);
            println!("variant {variant}, model {spec}: worst relative error {worst:.2e}");
            for (name, e) in &rows {
                println!("  {name:<28} {e:.2e}");
            }
            for (name, e) in &rows {
                assert!(*e < 2e-4, "{spec}: {name} is off by {e:.2e} of its scale");
            }
        }
    }
}
