//! Config files (`--config FILE`): a model file's [train] table trains a whole recipe, a
//! flag on the command line wins over the file, `--print-config` prints what a run would
//! use as a file that reads back to the same settings, checkpoints store it, a resume that
//! contradicts it is refused, and every bad file is a usage error naming the file and key.
//! Also `--preview-batch` (the first training batch as a PNG grid) and the shipped configs/.

#[path = "common/recipe_bench.rs"]
mod recipe_bench;
use recipe_bench::{Bench, gpu_train, gpu_train_in, metadata};

fn write(b: &Bench, name: &str, text: &str) -> String {
    let path = b.path(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn print_config(args: &[&str]) -> String {
    let (code, stdout, stderr) = gpu_train(&[args, &["--print-config"]].concat());
    assert_eq!(code, 0, "{args:?}: {stderr}");
    stdout
}

/// A printed config without its comments.
fn settings(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split("  #").next().unwrap_or(l)).collect()
}

const RECIPE: &str = r#"[model]
layers = "c8,bn,relu,pool,drop0.25,fc16,relu,fc"

[train]
epochs = 2
batch_size = 16
seed = 3
optimizer = "adamw"
lr = 2e-3
weight_decay = 5e-4
clip_grad_norm = 5
schedule = "cosine"
warmup_epochs = 1
label_smoothing = 0.1
augment = "crop=1,flip,erase=0.25"
normalize = "standard"
"#;

#[test]
fn a_config_file_trains_its_recipe_and_flags_override_it() {
    let b = Bench::new();
    let file = write(&b, "recipe.toml", RECIPE);
    let printed = print_config(&["--config", &file]);
    for line in [
        "layers = \"c8,bn,relu,pool,drop0.25,fc16,relu,fc\"",
        "epochs = 2",
        "batch_size = 16",
        "seed = 3",
        "optimizer = \"adamw\"",
        "lr = 0.002",
        "weight_decay = 0.0005",
        "clip_grad_norm = 5.0",
        "schedule = \"cosine\"",
        "warmup_epochs = 1.0",
        "label_smoothing = 0.1",
        "augment = \"crop=1,flip,erase=0.25\"",
        "normalize = \"standard\"",
    ] {
        assert!(printed.lines().any(|l| l.starts_with(line)), "missing {line}:\n{printed}");
    }
    // The printed config is itself a config: it reads back to the same text.
    let again = write(&b, "again.toml", &printed);
    assert_eq!(print_config(&["--config", &again]), printed);
    // A flag beats the file; the rest of the file stays.
    let overridden = print_config(&["--config", &file, "--lr", "0.01", "--epochs", "5", "--model", "mlp"]);
    assert!(overridden.contains("lr = 0.01\n") && overridden.contains("epochs = 5\n"), "{overridden}");
    assert!(overridden.contains("preset = \"mlp\"") && overridden.contains("seed = 3\n"), "{overridden}");

    // It trains: the start line shows the recipe, the checkpoint stores the resolved config
    // (with the training set's statistics), and a plain resume continues it.
    let (stdout, lines) = b.train("run", &["--config", &file, "--epochs", "1"]);
    assert!(
        stdout.contains("augment crop=1,flip,erase=0.25") && stdout.contains("cosine schedule"),
        "{stdout}"
    );
    assert!(stdout.contains("inputs standardised"), "{stdout}");
    assert_eq!(lines.len(), 1);
    let meta = metadata(&b.last("run"));
    let stored = &meta["config"];
    assert!(stored.contains("optimizer = \"adamw\"") && stored.contains("epochs = 1\n"), "{stored}");
    assert!(stored.contains("normalize = \"standard\"  # training set: mean"), "{stored}");
    // the stored config trains the same recipe again
    let stored_file = write(&b, "stored.toml", stored);
    assert!(print_config(&["--config", &stored_file]).contains("augment = \"crop=1,flip,erase=0.25\""));
    // a resume with the same file agrees with the checkpoint; one with another lr is refused
    b.refused_on_resume("run", &["--config", &file, "--lr", "0.5"], "--lr 0.5 (the checkpoint has 0.002)");
    let last = b.last("run");
    // a resume's --print-config is the config alone on stdout, and reads back
    let resumed = print_config(&["--data", b.data(), "--resume", last.to_str().unwrap(), "--epochs", "2"]);
    assert!(resumed.starts_with("# gpu-train") && resumed.contains("lr = 0.002"), "{resumed}");
    assert!(resumed.contains("epochs = 2\n"), "{resumed}");
    // (the settings read back; the comment on the statistics says they are computed at load)
    let resumed_file = write(&b, "resumed.toml", &resumed);
    assert_eq!(settings(&print_config(&["--config", &resumed_file])), settings(&resumed));
    // The file's epochs (2) do not stretch the resumed run (1 epoch): the run's target
    // stands, and --epochs extends it as without --config.
    let resume = ["--data", b.data(), "--resume", last.to_str().unwrap(), "--config", &file];
    let (code, _, stderr) = gpu_train(&resume);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already holds 1 epochs"), "{stderr}");
    let run_dir = b.path("run");
    let save = ["--epochs", "2", "--save", run_dir.to_str().unwrap()];
    let (code, stdout, stderr) = gpu_train(&[&resume[..], &save].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("resumed"), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("2 ")), "{stdout}");
}

#[test]
fn settings_of_a_replaced_optimiser_or_schedule_give_way_with_it() {
    let b = Bench::new();
    let file = write(&b, "recipe.toml", RECIPE);
    // AdamW's decay does not carry over to Adam (which takes none) or to SGD (whose L2
    // term defaults to 0); the file's warm-up does not carry over to onecycle.
    let adam = print_config(&["--config", &file, "--optimizer", "adam"]);
    assert!(adam.contains("optimizer = \"adam\"") && !adam.contains("weight_decay"), "{adam}");
    let sgd = print_config(&["--config", &file, "--optimizer", "sgd"]);
    assert!(sgd.contains("weight_decay = 0.0\n") && sgd.contains("momentum = 0.9\n"), "{sgd}");
    let onecycle = print_config(&["--config", &file, "--schedule", "onecycle"]);
    assert!(onecycle.contains("warmup_epochs = 0.0\n"), "{onecycle}");
    // the same optimiser or schedule named again keeps the file's settings
    let same = print_config(&["--config", &file, "--optimizer", "adamw", "--schedule", "cosine"]);
    assert!(same.contains("weight_decay = 0.0005\n") && same.contains("warmup_epochs = 1.0\n"), "{same}");
    // an SGD file's Nesterov can be turned off, and a printed SGD config reads back
    let sgd_file =
        write(&b, "sgd.toml", "[model]\npreset = \"mlp\"\n[train]\noptimizer = \"sgd\"\nnesterov = true\n");
    assert!(print_config(&["--config", &sgd_file]).contains("nesterov = true\n"));
    let off = print_config(&["--config", &sgd_file, "--nesterov", "false"]);
    assert!(off.contains("nesterov = false\n"), "{off}");
    let printed = write(&b, "sgd_printed.toml", &print_config(&["--config", &sgd_file]));
    let adamw = print_config(&["--config", &printed, "--optimizer", "adamw"]);
    assert!(!adamw.contains("nesterov") && adamw.contains("weight_decay = 0.01\n"), "{adamw}");
    // a config file named like a preset is the file, not the preset
    let (code, stdout, stderr) = gpu_train_in(b.dir.path(), &[], &["--config", "mlp", "--print-config"]);
    assert_eq!(code, 2, "no file named mlp yet: {stdout}{stderr}");
    write(&b, "mlp", "[model]\nlayers = \"fc32,relu,fc\"\n[train]\nepochs = 3\n");
    let (code, stdout, stderr) = gpu_train_in(b.dir.path(), &[], &["--config", "mlp", "--print-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("layers = \"fc32,relu,fc\"") && stdout.contains("epochs = 3\n"), "{stdout}");
    // a [train]-only file takes --model; without one it says what is missing
    let train_only = write(&b, "train_only.toml", "[train]\nepochs = 3\n");
    let printed = print_config(&["--config", &train_only, "--model", "mlp"]);
    assert!(printed.contains("preset = \"mlp\"") && printed.contains("epochs = 3\n"), "{printed}");
    b.usage_error(&["--config", &train_only], "has no [model] table");
    // floats as a person writes them, and still floats
    let tiny = print_config(&["--config", &file, "--lr", "1e-10", "--weight-decay", "1e-300"]);
    assert!(tiny.contains("lr = 1e-10\n") && tiny.contains("weight_decay = 1e-300\n"), "{tiny}");
    let tiny_file = write(&b, "tiny.toml", &tiny);
    assert_eq!(print_config(&["--config", &tiny_file]), tiny);
    // --print-config writes nothing, so an existing run directory does not stop it
    b.train("run", &["--epochs", "1"]);
    let printed = print_config(&["--data", b.data(), "--save", b.path("run").to_str().unwrap()]);
    assert!(printed.contains("[train]"));
}

#[test]
fn bad_config_files_are_usage_errors_naming_the_file_and_key() {
    let b = Bench::new();
    let model = "[model]\npreset = \"mlp\"\n";
    for (name, text, needle) in [
        ("range.toml", "[train]\nepochs = 0\n", "[train]: invalid value '0' for '--epochs <EPOCHS>'"),
        ("unknown.toml", "[train]\ndata = \"x\"\n", "[train] has an unknown key 'data'"),
        ("bool.toml", "[train]\nnesterov = 1\n", "nesterov must be true or false"),
        ("type.toml", "[train]\nlr = [1]\n", "[train] lr must be a number or a string"),
        ("aug.toml", "[train]\naugment = \"rotate\"\n", "unknown augmentation 'rotate'"),
        ("neg.toml", "[train]\nlr = -1\n", "'-1' is not a positive finite number"),
        ("adam.toml", "[train]\nweight_decay = 0.1\n", "'--weight-decay <X>' needs '--optimizer adamw'"),
        ("dashes.toml", "[train]\naugment = \"--lr\"\n", "unknown augmentation '--lr'"),
        ("whole.toml", "[train]\nepochs = 2.5\n", "[train] epochs must be a whole number, not 2.5"),
    ] {
        let file = write(&b, name, &format!("{model}{text}"));
        b.usage_error(&["--config", &file], needle);
        b.usage_error(&["--config", &file], &file);
    }
    for (name, text, needle) in [
        ("preset.toml", "[model]\npreset = \"bn\"\n", "preset 'bn' is not one of ref-cnn, mlp, bn-cnn"),
        ("both.toml", "[model]\npreset = \"mlp\"\nlayers = \"fc\"\n", "both layers and preset"),
        ("table.toml", "train = 3\n[model]\npreset = \"mlp\"\n", "'train' must be a table"),
        ("toml.toml", "[model\n", "not valid TOML (line 1)"),
    ] {
        let file = write(&b, name, text);
        b.usage_error(&["--config", &file], needle);
    }
    b.usage_error(&["--config", b.path("absent.toml").to_str().unwrap()], "absent.toml: no such file");
    b.usage_error(&["--config", b.data()], "is a directory, not a TOML file");
    let binary = b.path("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    b.usage_error(&["--config", binary.to_str().unwrap()], "is not a text file (not UTF-8)");
    // a combination the file and the flags make together is one line naming the file
    let recipe = write(&b, "recipe.toml", RECIPE);
    let (code, _, stderr) = gpu_train(&["--config", &recipe, "--optimizer", "adam", "--weight-decay", "0.1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("needs '--optimizer adamw'") && stderr.contains("settings from"), "{stderr}");
    assert!(!stderr.contains("Usage:"), "one line: {stderr}");
    // --model FILE reads only the model, and says where the [train] settings go
    let file = write(&b, "with_train.toml", &format!("{model}[train]\nepochs = 1\n"));
    let (code, _, stderr) = gpu_train(&[
        "--data",
        b.data(),
        "--model",
        &file,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-save",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("--config"), "{stderr}");
}

#[test]
fn the_preview_batch_is_the_first_batch_as_a_png_grid() {
    let b = Bench::new();
    let png_path = b.path("batch.png");
    let png_file = png_path.to_str().unwrap();
    let (code, stdout, stderr) =
        gpu_train(&["--data", b.data(), "--batch-size", "20", "--preview-batch", png_file, "--no-save"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote") && stdout.contains("20 images"), "{stdout}");
    let decoded = gpu_train::image::decode_png(&std::fs::read(&png_path).unwrap(), 0.0).unwrap();
    // 16 images a row with 2-pixel borders: 16 * (8 + 2) + 2 by 2 * 10 + 2
    assert_eq!((decoded.width, decoded.height), (162, 22));
    // Without augmentation each cell is one of the training images, exactly.
    let train = gpu_train::data::load(b.dir.path()).unwrap().train;
    let area = 64;
    let images: Vec<&[u8]> = train.pixels.chunks(area).collect();
    let mut seen = std::collections::HashSet::new();
    for cell in 0..20 {
        let (top, left) = (2 + (cell / 16) * 10, 2 + (cell % 16) * 10);
        let pixels: Vec<u8> =
            (0..area).map(|i| decoded.pixels[(top + i / 8) * decoded.width + left + i % 8] as u8).collect();
        let found = images.iter().position(|img| *img == &pixels[..]);
        assert!(found.is_some(), "cell {cell} is no training image");
        seen.insert(found);
    }
    assert_eq!(seen.len(), 20, "20 different images");
    // With augmentation too (its pixels are checked against the host in augment_kernels.rs)
    let (code, stdout, stderr) = gpu_train(&[
        "--data",
        b.data(),
        "--batch-size",
        "4",
        "--augment",
        "erase=1",
        "--preview-batch",
        png_file,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let decoded = gpu_train::image::decode_png(&std::fs::read(&png_path).unwrap(), 0.0).unwrap();
    assert_eq!((decoded.width, decoded.height), (42, 12));
    assert!(stdout.contains("augment erase=1") && !stdout.contains("train_loss"), "nothing trains: {stdout}");
    // the grid is a PNG, and its name says so
    b.usage_error(&["--preview-batch", b.path("batch.jpg").to_str().unwrap()], "give a name ending in .png");
}

#[test]
fn the_shipped_configs_read_and_match_their_promises() {
    let root = env!("CARGO_MANIFEST_DIR");
    for name in ["ref-cnn", "fast", "best"] {
        let file = format!("{root}/configs/{name}.toml");
        let printed = print_config(&["--config", &file]);
        assert!(printed.contains("epochs = 20\n") && printed.contains("seed = 0\n"), "{name}: {printed}");
    }
    // configs/ref-cnn.toml is today's defaults: the same as no flags at all
    let defaults = print_config(&[]);
    assert_eq!(print_config(&["--config", &format!("{root}/configs/ref-cnn.toml")]), defaults);
}
