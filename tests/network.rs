//! The network builder without running it: the fusion pass (conv,relu,pool and fc,relu
//! wherever they appear in a row), which kernels each conv gets, PyTorch module indices,
//! the parameter layout (names, shapes, alignment, init) and the buffers that follow the
//! batch; then the built steps' dispatches for ref-cnn, the same 19 as the hand-wired
//! network of the previous release.

mod common;
use gpu_train::kernels::Kernels;
use gpu_train::model_spec::{PRESETS, parse};
use gpu_train::network::{Init, Op, ParamLayout, batch_buffers, plan, torch_indices};

fn ops(text: &str, side: usize) -> Vec<Op> {
    plan(&parse(text).unwrap(), 1, side, 10).unwrap().into_iter().map(|n| n.op).collect()
}

#[test]
fn the_fusion_pass_fuses_conv_relu_pool_and_fc_relu_wherever_they_appear() {
    let conv =
        |out_channels, relu_pool, bias| Op::Conv { out_channels, kernel: 3, bias, relu_pool, fast: true };
    assert_eq!(
        ops("c32,relu,pool,c64,relu,pool,fc128,relu,fc", 28),
        vec![
            conv(32, true, true),
            conv(64, true, true),
            Op::Dense { outputs: 128, relu: true },
            Op::Dense { outputs: 10, relu: false }
        ]
    );
    // batch norm between conv and relu: no conv fusion and no conv bias; bn,relu fuse
    assert_eq!(
        ops("c16,bn,relu,pool,fc", 8),
        vec![
            conv(16, false, false),
            Op::BatchNorm { relu: true },
            Op::Pool,
            Op::Dense { outputs: 10, relu: false }
        ]
    );
    // a relu,pool pair anywhere later still fuses with the conv before it
    assert_eq!(
        ops("c16,relu,c16,relu,pool,fc32,relu,drop0.5,fc", 8),
        vec![
            conv(16, false, true),
            Op::Relu,
            conv(16, true, true),
            Op::Dense { outputs: 32, relu: true },
            Op::Dropout { p: 0.5 },
            Op::Dense { outputs: 10, relu: false },
        ]
    );
    // the generic kernels: 5x5, channels off the 16-wide tile, odd sides; never fused
    let generic =
        |out_channels, kernel| Op::Conv { out_channels, kernel, bias: true, relu_pool: false, fast: false };
    assert_eq!(
        ops("c16k5,relu,pool,fc", 8),
        vec![generic(16, 5), Op::Relu, Op::Pool, Op::Dense { outputs: 10, relu: false }]
    );
    assert_eq!(ops("c24,relu,pool,fc", 8)[0], generic(24, 3));
    assert_eq!(ops("c16,pool,c16,gap,fc", 6)[2], generic(16, 3), "a conv on a 3x3 side");
    assert_eq!(
        ops("c16,c24,c16,fc", 4)[2],
        generic(16, 3),
        "24 input channels cannot pass gradients on the tiles"
    );
}

#[test]
fn module_indices_match_the_pytorch_sequential() {
    // Conv2d ReLU MaxPool2d Conv2d ReLU MaxPool2d Flatten Linear ReLU Linear
    let idx = torch_indices(&parse("c32,relu,pool,c64,relu,pool,fc128,relu,fc").unwrap());
    assert_eq!(idx, vec![0, 1, 2, 3, 4, 5, 7, 8, 9]);
    // AdaptiveAvgPool2d Flatten after gap; no second Flatten before the fc
    let idx = torch_indices(&parse("c16,bn,relu,gap,fc12,relu,drop0,fc").unwrap());
    assert_eq!(idx, vec![0, 1, 2, 3, 5, 6, 7, 8]);
    // a first-layer fc gets its Flatten at index 0
    assert_eq!(torch_indices(&parse("fc256,relu,fc").unwrap()), vec![1, 2, 3]);
}

#[test]
fn the_parameter_layout_names_shapes_and_aligns_every_tensor() {
    let nodes = plan(&parse("c16,bn,relu,pool,fc32,bn,relu,fc").unwrap(), 1, 8, 3).unwrap();
    let layout = ParamLayout::new(&nodes, 64);
    let row = |name: &str| layout.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(row("0.weight").dims, vec![16, 1, 3, 3]);
    assert!(!row("0.bias").exported, "a conv before batch norm has no bias in the model");
    assert_eq!(row("0.bias").init, Init::Zeros);
    assert_eq!(row("1.weight").init, Init::Ones);
    assert_eq!(row("1.bias").init, Init::Zeros);
    assert_eq!(row("5.weight").dims, vec![32, 16 * 4 * 4]);
    assert_eq!(row("5.weight").init, Init::Uniform(1.0 / 256f64.sqrt()));
    assert_eq!(row("6.weight").dims, vec![32]);
    assert_eq!(row("8.weight").dims, vec![3, 32]);
    assert!(row("5.weight").decays && !row("5.bias").decays && !row("6.weight").decays);
    // every block starts aligned, blocks do not overlap, tensors of a block are contiguous
    let mut end = 0;
    for &(offset, len) in layout.blocks.iter().filter(|b| b.1 > 0) {
        assert_eq!(offset % 64, 0);
        assert!(offset >= end);
        end = offset + len;
    }
    assert!(layout.total >= end && layout.total.is_multiple_of(64));
    assert_eq!(layout.count(), 16 * 9 + 32 + 32 * 256 + 32 + 64 + 3 * 32 + 3);
    // the same seed gives the same parameters; uniform ones stay in their bounds
    let (a, b) = (layout.init(7), layout.init(7));
    assert_eq!(a, b);
    let w = row("5.weight");
    assert!(a[w.offset..w.offset + w.len()].iter().all(|v| v.abs() <= 1.0 / 16.0));
    assert!(a[row("1.weight").offset..][..16].iter().all(|&v| v == 1.0));
}

#[test]
fn every_preset_plans_and_its_layout_holds_its_parameters() {
    for (name, text, _) in PRESETS {
        let layers = parse(text).unwrap();
        let info = gpu_train::model_spec::infer(&layers, 1, 28, 10).unwrap();
        let nodes = plan(&layers, 1, 28, 10).unwrap();
        let params: usize = info.iter().map(|l| l.params).sum();
        assert_eq!(ParamLayout::new(&nodes, 4).count(), params, "{name}");
        println!("{name}: {} tokens, {} nodes, {params} parameters", layers.len(), nodes.len());
    }
}

#[test]
fn ref_cnn_builds_the_same_dispatches_as_the_hand_wired_network() {
    let gpu = common::gpu();
    let k = Kernels::new(&gpu).unwrap();
    let data = gpu_train::data::synthetic(256, 64, 28, 10, 1);
    let cfg = gpu_train::train::TrainConfig::basic(Default::default(), 1, 128, 0, Default::default());
    let trainer = gpu_train::train::Trainer::new(&gpu, &k, &data, cfg).unwrap();
    let names: Vec<&str> = trainer.model.train_step.iter().map(|d| d.name).collect();
    println!("{names:?}");
    // conv2's weight gradient puts lanes over its 32 input channels when they fill a workgroup
    let conv2_wgrad = if 32 >= k.conv_wgrad_ic.workgroup_size { "conv_wgrad_ic" } else { "conv_wgrad" };
    let mut want = vec![
        "gather",
        "conv_weight_layout",
        "conv_fwd",
        "conv_weight_layout",
        "conv_fwd",
        "matmul_cols",
        "matmul_cols",
        "softmax_xent",
    ];
    // fc2 backward (dW, db, dx masked by fc1's ReLU), fc1 backward, conv2, conv1, optimiser
    let backward_fc = names
        .iter()
        .skip(want.len())
        .take_while(|n| !n.starts_with("conv") && **n != "maxpool_relu_backward");
    let fc: Vec<&str> = backward_fc.cloned().collect();
    assert!(fc.iter().all(|n| n.starts_with("matmul") || *n == "bias_grad"), "{fc:?}");
    want.extend(fc.iter());
    want.extend(["maxpool_relu_backward", conv2_wgrad, "conv_wgrad_reduce", "conv_dx"]);
    // conv1 reads the pooled gradient and the pool codes directly (no max-pool backward)
    want.extend(["conv_wgrad_pooled", "conv_wgrad_reduce", "adam"]);
    assert_eq!(names, want);
}

#[test]
fn buffers_that_follow_the_batch_are_named_by_layer() {
    let gpu = common::gpu();
    let k = Kernels::new(&gpu).unwrap();
    let nodes = plan(&parse("c16,bn,relu,c24k5,pool,fc").unwrap(), 1, 8, 3).unwrap();
    let train = batch_buffers(&nodes, 10, &k, gpu.loop_budget, true).unwrap();
    let eval = batch_buffers(&nodes, 10, &k, gpu.loop_budget, false).unwrap();
    for (name, words) in &train {
        println!("{name}: {words}");
    }
    let find = |v: &[(String, usize)], n: &str| v.iter().find(|(name, _)| name == n).map(|r| r.1);
    assert_eq!(find(&train, "input batch"), Some(10 * 64));
    assert_eq!(find(&train, "layer 4 (c24k5) output"), Some(10 * 24 * 64));
    assert_eq!(find(&train, "layer 4 (c24k5) output gradient"), Some(10 * 24 * 64));
    assert!(find(&train, "layer 4 (c24k5) weight-gradient partials").is_some());
    assert_eq!(find(&eval, "layer 4 (c24k5) output gradient"), None, "evaluation allocates no gradients");
}

#[test]
fn the_pytorch_throughput_script_spells_the_presets_as_they_are() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/torch_bench.py");
    let script = std::fs::read_to_string(path).unwrap();
    for (name, text, _) in PRESETS {
        let entry = format!("\"{name}\": \"{text}\"");
        assert!(script.contains(&entry), "{path} lacks {entry}");
    }
}
