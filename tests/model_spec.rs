//! The layer string: parsing (tokens, case, spaces, every error naming its token and
//! position), presets, and shape inference against the data (output shapes, parameters,
//! FLOPs; a pool on an odd side, a conv after an fc, no final fc refused by name).

use gpu_train::model_spec::{LayerSpec, PRESETS, Shape, infer, parse, preset, summary};
use gpu_train::network::{ParamLayout, plan};
use rand::{Rng, SeedableRng};

#[test]
fn ref_cnn_as_a_string_matches_the_built_in_network() {
    let layers = parse(preset("ref-cnn").unwrap()).unwrap();
    let info = infer(&layers, 1, 28, 10).unwrap();
    let params: usize = info.iter().map(|l| l.params).sum();
    let flops: u64 = info.iter().map(|l| l.flops).sum();
    // the built network's parameter layout holds exactly the inferred parameters
    assert_eq!(params, ParamLayout::new(&plan(&layers, 1, 28, 10).unwrap(), 4).count());
    assert_eq!(params, 421_642);
    // conv1 + conv2 + fc1 + fc2 multiply-adds, times 2
    let macs = 28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 7 * 7 * 64 * 128 + 128 * 10;
    assert_eq!(flops, 2 * macs as u64);
    assert_eq!(info.last().unwrap().output, Shape::Flat { features: 10 });
    let table = summary(Shape::Image { channels: 1, side: 28 }, &info);
    println!("{table}");
    assert!(table.contains("32x14x14") && table.contains("421642") && table.contains("8.482"), "{table}");
}

#[test]
fn every_preset_parses_and_fits_fashion_mnist() {
    for (name, text, _) in PRESETS {
        let layers = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = infer(&layers, 1, 28, 10).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!(
            "{name}: {} layers, {} parameters",
            info.len(),
            info.iter().map(|l| l.params).sum::<usize>()
        );
        assert_eq!(preset(&name.to_uppercase()), Some(text));
    }
}

#[test]
fn tokens_are_case_insensitive_and_spaces_are_allowed() {
    let layers = parse(" C16K5 , BN,ReLU ,pool, gap,drop0.25 , FC64,fc").unwrap();
    assert_eq!(
        layers,
        vec![
            LayerSpec::Conv { out_channels: 16, kernel: 5 },
            LayerSpec::BatchNorm,
            LayerSpec::Relu,
            LayerSpec::MaxPool,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Dropout { p: 0.25 },
            LayerSpec::Dense { outputs: Some(64) },
            LayerSpec::Dense { outputs: None },
        ]
    );
    let canonical: Vec<String> = layers.iter().map(|l| l.to_string()).collect();
    assert_eq!(canonical.join(","), "c16k5,bn,relu,pool,gap,drop0.25,fc64,fc");
    assert_eq!(parse(&canonical.join(",")).unwrap(), layers);
    // batch norm after a conv replaces its bias: 16 x 25 weights, then scale and shift
    let info = infer(&layers, 1, 8, 3).unwrap();
    assert_eq!((info[0].params, info[1].params), (400, 32));
    assert_eq!(info[4].output, Shape::Flat { features: 16 });
}

#[test]
fn a_bad_token_is_named_with_its_position() {
    for (text, position, offset, token, needle) in [
        ("c32,relu,cx", 3, 9, "cx", "whole number"),
        ("c32, relu ,  c0", 3, 13, "c0", "at least 1"),
        ("c32k7,fc", 1, 0, "c32k7", "kernel size '7'"),
        ("c32,,fc", 2, 4, "", "empty layer"),
        ("fc,", 2, 3, "", "empty layer"),
        ("drop1,fc", 1, 0, "drop1", "0 <= P < 1"),
        ("drop-0.1,fc", 1, 0, "drop-0.1", "0 <= P < 1"),
        ("dropnan,fc", 1, 0, "dropnan", "0 <= P < 1"),
        ("c99999999999999999999,fc", 1, 0, "c99999999999999999999", "at most"),
        ("conv3,fc", 1, 0, "conv3", "whole number"),
        ("max,fc", 1, 0, "max", "unknown layer"),
        ("", 1, 0, "", "empty layer"),
    ] {
        let e = parse(text).unwrap_err();
        println!("{text:?}: {e}");
        assert_eq!((e.position, e.offset, e.token.as_str()), (position, offset, token), "{text:?}: {e}");
        assert!(e.to_string().contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn a_model_that_does_not_fit_the_data_is_refused_by_layer() {
    for (text, side, needle) in [
        ("c8,pool,pool,pool,fc", 28, "layer 4 (pool): a 2x2 pool needs an even side; its input is 8x7x7"),
        ("fc32,c8,fc", 28, "layer 2 (c8): needs an image input"),
        ("gap,pool,fc", 28, "layer 2 (pool): needs an image input"),
        ("c8,relu", 28, "must end with a dense layer"),
        ("fc,fc", 28, "layer 1 (fc): a bare fc"),
        ("c8,fc12", 28, "one output per class (10), not 12"),
    ] {
        let e = infer(&parse(text).unwrap(), 1, side, 10).unwrap_err();
        println!("{text}: {e}");
        assert!(e.contains(needle), "{text}: {e}");
    }
}

#[test]
fn random_strings_never_panic() {
    // Mutations of valid strings and random bytes: an error or a model, never a panic.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let alphabet: Vec<char> = "cfkbnrelupoagdrp0123456789.,- ,CFK\u{e9}\u{1F600}".chars().collect();
    let (mut ok, mut err) = (0, 0);
    for case in 0..20_000 {
        let mut chars: Vec<char> = PRESETS[case % PRESETS.len()].1.chars().collect();
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..=chars.len());
            match rng.random_range(0..3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                _ => chars.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
            }
        }
        let text: String = chars.into_iter().collect();
        match parse(&text) {
            Ok(layers) => {
                ok += 1;
                let _ = infer(&layers, 1, 28, 10);
            }
            Err(e) => {
                err += 1;
                assert!(e.position >= 1 && e.offset <= text.len(), "{text:?}: {e:?}");
            }
        }
    }
    println!("{ok} parsed, {err} refused");
    assert!(ok > 0 && err > 0);
}

#[test]
fn a_model_value_is_a_preset_a_file_or_a_layer_string() {
    use gpu_train::model_spec::resolve;
    let m = resolve("MLP").unwrap();
    assert_eq!((m.name.as_str(), m.text.as_str()), ("mlp", preset("mlp").unwrap()));
    let m = resolve("c8, relu, pool, fc").unwrap();
    assert_eq!((m.name.as_str(), m.layers.len()), ("custom", 4));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.toml");
    std::fs::write(&file, "# a small net\n[model]\nlayers = \"c8,relu,pool,fc\"\n\n[train]\n").unwrap();
    let m = resolve(file.to_str().unwrap()).unwrap();
    assert_eq!((m.name.as_str(), m.text.as_str(), m.layers.len()), ("small", "c8,relu,pool,fc", 4));
    for (body, needle) in [
        ("[model]\nlayers = \"c8,rleu,fc\"\n", "[model] layers: layer 2 ('rleu'"),
        ("[model]\nlayers = 3\n", "must be a string"),
        ("[model]\nlayer = \"fc\"\n", "unknown key 'layer'"),
        ("[train]\nepochs = 3\n", "needs a [model] table"),
        ("[modle]\nlayers = \"fc\"\n", "unknown table or key 'modle'"),
        ("[model\nlayers = \"fc\"\n", "not valid TOML"),
    ] {
        std::fs::write(&file, body).unwrap();
        let e = resolve(file.to_str().unwrap()).unwrap_err();
        println!("{body:?}: {e}");
        assert!(e.starts_with(file.to_str().unwrap()) && e.contains(needle), "{body:?}: {e}");
    }
    let e = resolve(dir.path().join("missing.toml").to_str().unwrap()).unwrap_err();
    assert!(e.contains("cannot read it: No such file"), "{e}");
    let e = resolve("c8,relu,cx").unwrap_err();
    assert!(e.contains("--model: layer 3 ('cx'"), "{e}");
}
