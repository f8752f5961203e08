//! Models as data, the first half: the layer string a user writes (`c32,relu,pool,fc`),
//! its presets, and shape inference over an input of (channels, side, side) with a class
//! count, giving each layer's output shape, parameters and forward FLOPs.
//!
//! Grammar: comma-separated tokens, case-insensitive, spaces allowed.
//! `c<N>` conv 3x3 (N outputs), `c<N>k5` conv 5x5, `bn`, `relu`, `pool` (2x2 max, stride
//! 2), `gap` (global average pool), `drop<P>` (0 <= P < 1), `fc<N>`, and `fc` (one output
//! per class; must come last). Flatten is implicit before the first fc.

use std::fmt;

/// One layer as written.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    Conv { out_channels: usize, kernel: usize },
    BatchNorm,
    Relu,
    MaxPool,
    GlobalAvgPool,
    Dropout { p: f64 },
    Dense { outputs: Option<usize> },
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LayerSpec::Conv { out_channels, kernel: 3 } => write!(f, "c{out_channels}"),
            LayerSpec::Conv { out_channels, kernel } => write!(f, "c{out_channels}k{kernel}"),
            LayerSpec::BatchNorm => write!(f, "bn"),
            LayerSpec::Relu => write!(f, "relu"),
            LayerSpec::MaxPool => write!(f, "pool"),
            LayerSpec::GlobalAvgPool => write!(f, "gap"),
            LayerSpec::Dropout { p } => write!(f, "drop{p}"),
            LayerSpec::Dense { outputs: Some(n) } => write!(f, "fc{n}"),
            LayerSpec::Dense { outputs: None } => write!(f, "fc"),
        }
    }
}

/// Named models; the first is the default.
pub const PRESETS: [(&str, &str, &str); 3] = [
    (
        "ref-cnn",
        "c32,relu,pool,c64,relu,pool,fc128,relu,fc",
        "the v1 network: two conv blocks and two dense layers",
    ),
    ("mlp", "fc256,relu,fc128,relu,fc", "three dense layers"),
    (
        "bn-cnn",
        "c32,bn,relu,c32,bn,relu,pool,c64,bn,relu,c64,bn,relu,pool,fc256,bn,relu,drop0.3,fc",
        "four conv layers with batch norm, dropout before the classifier",
    ),
];

/// The largest channel or output count a token may ask for.
pub const MAX_WIDTH: usize = 65_536;

/// A token that does not parse: its 1-based position among the tokens, its 0-based
/// character offset in the string (shown 1-based), the token and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub offset: usize,
    pub token: String,
    pub problem: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "layer {} ('{}', at character {}): {}",
            self.position,
            self.token,
            self.offset + 1,
            self.problem
        )
    }
}

fn whole(digits: &str, what: &str) -> Result<usize, String> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number of {what} after the letters"));
    }
    match digits.parse::<usize>() {
        Ok(0) => Err(format!("{what} must be at least 1")),
        Ok(n) if n <= MAX_WIDTH => Ok(n),
        _ => Err(format!("{what} must be at most {MAX_WIDTH}")),
    }
}

fn parse_token(token: &str) -> Result<LayerSpec, String> {
    let t = token.to_ascii_lowercase();
    match t.as_str() {
        "bn" => return Ok(LayerSpec::BatchNorm),
        "relu" => return Ok(LayerSpec::Relu),
        "pool" => return Ok(LayerSpec::MaxPool),
        "gap" => return Ok(LayerSpec::GlobalAvgPool),
        "fc" => return Ok(LayerSpec::Dense { outputs: None }),
        _ => {}
    }
    if let Some(rest) = t.strip_prefix("fc") {
        return Ok(LayerSpec::Dense { outputs: Some(whole(rest, "outputs")?) });
    }
    if let Some(rest) = t.strip_prefix("drop") {
        return match rest.parse::<f64>() {
            // digits and one point only: no sign, exponent, inf or nan
            Ok(p) if (0.0..1.0).contains(&p) && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                Ok(LayerSpec::Dropout { p })
            }
            _ => Err("dropout needs a probability P with 0 <= P < 1, as in drop0.3".into()),
        };
    }
    if let Some(rest) = t.strip_prefix('c') {
        let (channels, kernel) = match rest.split_once('k') {
            Some((c, k)) => (c, Some(k)),
            None => (rest, None),
        };
        let out_channels = whole(channels, "output channels")?;
        let kernel = match kernel {
            None => 3,
            Some("3") => 3,
            Some("5") => 5,
            Some(k) => return Err(format!("kernel size '{k}' is not supported (3 or 5)")),
        };
        return Ok(LayerSpec::Conv { out_channels, kernel });
    }
    Err("unknown layer; expected c<N>, c<N>k5, bn, relu, pool, gap, drop<P>, fc<N> or fc".into())
}

/// The most layers a model may have: far beyond any useful stack, and a bound on what a
/// string (or a checkpoint's metadata) can make the program build.
pub const MAX_LAYERS: usize = 256;

/// Parses a layer string. Empty tokens (",,", a trailing comma) are errors.
pub fn parse(text: &str) -> Result<Vec<LayerSpec>, ParseError> {
    let mut layers = Vec::new();
    let mut offset = 0;
    for (i, raw) in text.split(',').enumerate() {
        // offsets count characters, as a user counts them
        let lead = raw.chars().count() - raw.trim_start().chars().count();
        if i == MAX_LAYERS {
            return Err(ParseError {
                position: i + 1,
                offset,
                token: raw.trim().chars().take(20).collect(),
                problem: format!("a model has at most {MAX_LAYERS} layers"),
            });
        }
        let token = raw.trim();
        // a long token is shown by its start, so that an error stays one readable line
        let shown: String = if token.chars().count() > 40 {
            token.chars().take(40).chain("...".chars()).collect()
        } else {
            token.to_string()
        };
        let fail = |problem: String| ParseError {
            position: i + 1,
            offset: offset + lead,
            token: shown.clone(),
            problem,
        };
        if token.is_empty() {
            return Err(fail("empty layer (two commas in a row, or a comma at an end)".into()));
        }
        layers.push(parse_token(token).map_err(fail)?);
        offset += raw.chars().count() + 1;
    }
    Ok(layers)
}

/// A preset's layer string, by case-insensitive name.
pub fn preset(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name.trim())).map(|(_, s, _)| *s)
}

/// A value's shape: (channels, side, side) before the first fc, then (features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Image { channels: usize, side: usize },
    Flat { features: usize },
}

impl Shape {
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image { channels, side } => channels * side * side,
            Shape::Flat { features } => features,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Shape::Image { channels, side } => write!(f, "{channels}x{side}x{side}"),
            Shape::Flat { features } => write!(f, "{features}"),
        }
    }
}

/// One layer after shape inference.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    pub spec: LayerSpec,
    pub output: Shape,
    /// Trainable parameters (weights, biases, batch norm's scale and shift).
    pub params: usize,
    /// Forward floating-point operations per image (a multiply-add counts 2).
    pub flops: u64,
}

/// Infers every layer's output from an input of `channels` x `side` x `side` and `classes`
/// classes, refusing what cannot be built: a pool on an odd side, a conv or pool after an
/// fc, a model that does not end in `fc`, a bare `fc` anywhere else.
pub fn infer(
    layers: &[LayerSpec],
    channels: usize,
    side: usize,
    classes: usize,
) -> Result<Vec<LayerInfo>, String> {
    if !matches!(layers.last(), Some(LayerSpec::Dense { .. })) {
        return Err("the model must end with a dense layer (fc, one output per class)".into());
    }
    let mut shape = Shape::Image { channels, side };
    let mut out = Vec::with_capacity(layers.len());
    for (i, spec) in layers.iter().enumerate() {
        let at = |problem: String| format!("layer {} ({spec}): {problem}", i + 1);
        let n = shape.len();
        let (output, params, flops) = match (spec, shape) {
            (LayerSpec::Conv { out_channels, kernel }, Shape::Image { channels, side }) => {
                let taps = channels * kernel * kernel;
                let output = Shape::Image { channels: *out_channels, side };
                // the bias is dropped where batch norm follows
                let bias =
                    if matches!(layers.get(i + 1), Some(LayerSpec::BatchNorm)) { 0 } else { *out_channels };
                (output, out_channels * taps + bias, 2 * (output.len() * taps) as u64)
            }
            (LayerSpec::MaxPool, Shape::Image { channels, side }) => {
                if side % 2 != 0 || side == 0 {
                    return Err(at(format!("a 2x2 pool needs an even side; its input is {shape}")));
                }
                (Shape::Image { channels, side: side / 2 }, 0, 0)
            }
            (LayerSpec::GlobalAvgPool, Shape::Image { channels, .. }) => {
                (Shape::Flat { features: channels }, 0, n as u64)
            }
            (LayerSpec::Conv { .. } | LayerSpec::MaxPool | LayerSpec::GlobalAvgPool, Shape::Flat { .. }) => {
                return Err(at(format!(
                    "needs an image input, but its input is flat ({shape} features, after an fc or gap)"
                )));
            }
            (LayerSpec::BatchNorm, _) => {
                let per = match shape {
                    Shape::Image { channels, .. } => channels,
                    Shape::Flat { features } => features,
                };
                (shape, 2 * per, 2 * n as u64)
            }
            (LayerSpec::Relu | LayerSpec::Dropout { .. }, _) => (shape, 0, 0),
            (LayerSpec::Dense { outputs }, _) => {
                let last = i + 1 == layers.len();
                let outputs = match outputs {
                    Some(o) => *o,
                    None if last => classes,
                    None => return Err(at("a bare fc (one output per class) must be the last layer".into())),
                };
                if last && outputs != classes {
                    return Err(at(format!(
                        "the last layer must have one output per class ({classes}), not {outputs}"
                    )));
                }
                (Shape::Flat { features: outputs }, outputs * n + outputs, 2 * (outputs * n) as u64)
            }
        };
        shape = output;
        out.push(LayerInfo { spec: spec.clone(), output, params, flops });
    }
    Ok(out)
}

/// A preset's summary table for single-channel `side` x `side` images and `classes`.
pub fn preset_summary(name: &str, side: usize, classes: usize) -> Result<String, String> {
    let text = preset(name).ok_or_else(|| format!("no preset named '{name}'"))?;
    let layers = parse(text).map_err(|e| e.to_string())?;
    let info = infer(&layers, 1, side, classes)?;
    Ok(summary(Shape::Image { channels: 1, side }, &info))
}

/// What `gpu-train models` prints: each preset's name, layer string, parameters and
/// forward MFLOP per image for Fashion-MNIST's 28x28 images and 10 classes, and with
/// `summary` its per-layer table.
pub fn presets_listing(summary: bool) -> String {
    let mut out =
        String::from("presets (parameters and forward MFLOP per image for 28x28 images, 10 classes):\n");
    for (name, text, about) in PRESETS {
        let info = parse(text).map_err(|e| e.to_string()).and_then(|layers| infer(&layers, 1, 28, 10));
        match info {
            Ok(info) => {
                let params: usize = info.iter().map(|l| l.params).sum();
                let flops: u64 = info.iter().map(|l| l.flops).sum();
                out +=
                    &format!("  {name:<8} {params:>9} params  {:>7.2} MFLOP  {about}\n", flops as f64 / 1e6);
                out += &format!("           {text}\n");
                if summary {
                    for line in self::summary(Shape::Image { channels: 1, side: 28 }, &info).lines() {
                        out += &format!("           {line}\n");
                    }
                }
            }
            Err(e) => out += &format!("  {name}: {e}\n"),
        }
    }
    out += "use one with --model NAME, or write your own: --model \"c32,bn,relu,pool,fc128,relu,fc\"\n";
    out
}

/// The table printed before training: one row per layer (output shape, parameters,
/// forward FLOPs per image, bytes of its output per image) and the totals.
pub fn summary(input: Shape, layers: &[LayerInfo]) -> String {
    let kib = |shape: Shape| format!("{:.1}", (shape.len() * 4) as f64 / 1024.0);
    let mut rows: Vec<[String; 5]> =
        vec![["layer".into(), "output".into(), "params".into(), "MFLOP/image".into(), "KiB/image".into()]];
    rows.push(["input".into(), input.to_string(), String::new(), String::new(), kib(input)]);
    for l in layers {
        rows.push([
            l.spec.to_string(),
            l.output.to_string(),
            l.params.to_string(),
            format!("{:.3}", l.flops as f64 / 1e6),
            kib(l.output),
        ]);
    }
    let params: usize = layers.iter().map(|l| l.params).sum();
    let flops: u64 = layers.iter().map(|l| l.flops).sum();
    let bytes: usize = input.len() * 4 + layers.iter().map(|l| l.output.len() * 4).sum::<usize>();
    rows.push([
        "total".into(),
        String::new(),
        params.to_string(),
        format!("{:.3}", flops as f64 / 1e6),
        format!("{:.1}", bytes as f64 / 1024.0),
    ]);
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            let line = format!(
                "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4]
            );
            format!("{}\n", line.trim_end())
        })
        .collect()
}

/// A model as `--model` names it: a preset, a model file or a layer string.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDef {
    /// The preset's name, the file's stem, or "custom".
    pub name: String,
    /// The layer string it stands for.
    pub text: String,
    pub layers: Vec<LayerSpec>,
    /// A model file's `[train]` table: the training settings `--config` reads (config.rs).
    pub train: Option<toml::Table>,
}

/// Resolves a `--model` value: a preset name, else an existing file (TOML with
/// `[model] layers = "..."` or `preset = "NAME"`; a `[train]` table is kept for the caller), else a
/// layer string. Errors name the file, the key or the token.
pub fn resolve(arg: &str) -> Result<ModelDef, String> {
    if let Some(text) = preset(arg) {
        let layers = parse(text).map_err(|e| format!("preset '{arg}': {e}"))?;
        return Ok(ModelDef { name: arg.trim().to_lowercase(), text: text.to_string(), layers, train: None });
    }
    let path = std::path::Path::new(arg);
    let looks_like_path = arg.contains(['/', '\\']) || arg.to_lowercase().ends_with(".toml");
    if path.is_file() || (looks_like_path && !arg.contains(',')) {
        return model_file(path);
    }
    let layers = parse(arg).map_err(|e| {
        if arg.contains(',') {
            format!("--model: {e}")
        } else {
            // one word that is no layer: most likely a mistyped preset or file name
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            format!(
                "--model '{}' is not a preset ({}), a model file or a layer string: {e}",
                shorten(arg.trim()),
                names.join(", ")
            )
        }
    })?;
    Ok(ModelDef { name: "custom".into(), text: canonical(&layers), layers, train: None })
}

/// The layer string as the program writes it back: canonical tokens, no spaces.
pub fn canonical(layers: &[LayerSpec]) -> String {
    layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",")
}

/// A user's text shortened for an error line.
pub fn shorten(text: &str) -> String {
    if text.chars().count() > 60 {
        text.chars().take(60).chain("...".chars()).collect()
    } else {
        text.to_string()
    }
}

impl ModelDef {
    /// How errors name the model: its preset or file name, or its (shortened) string.
    pub fn label(&self) -> String {
        if self.name == "custom" { shorten(&self.text) } else { self.name.clone() }
    }
}

impl Default for ModelDef {
    /// ref-cnn, the default model.
    fn default() -> ModelDef {
        let (name, text, _) = PRESETS[0];
        ModelDef {
            name: name.to_string(),
            text: text.to_string(),
            layers: parse(text).unwrap_or_default(),
            train: None,
        }
    }
}

/// A model from its name and layer string, as a checkpoint records them.
pub fn resolve_text(name: &str, text: &str) -> Result<ModelDef, String> {
    let layers = parse(text).map_err(|e| e.to_string())?;
    Ok(ModelDef { name: name.to_string(), text: text.to_string(), layers, train: None })
}

/// A model file (TOML): `[model]` with `layers` or `preset`, and an optional `[train]` table.
pub fn model_file(path: &std::path::Path) -> Result<ModelDef, String> {
    match config_file(path)? {
        (Some(def), _) => Ok(def),
        (None, _) => Err(format!(
            "{}: needs a [model] table with layers = \"...\" or preset = \"NAME\"",
            path.display()
        )),
    }
}

/// A config or model file: its model when it has a `[model]` table, and its `[train]`
/// table (empty when it has none). Errors name the file, the table and the key.
pub fn config_file(path: &std::path::Path) -> Result<(Option<ModelDef>, toml::Table), String> {
    let fail = |problem: String| format!("{}: {problem}", path.display());
    if path.is_dir() {
        return Err(fail("is a directory, not a TOML file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let source =
        String::from_utf8(bytes).map_err(|_| fail("is not a text file (not UTF-8); expected TOML".into()))?;
    let table: toml::Table = source.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(String::new(), |s| {
            format!(
                " (line {})",
                source.as_bytes()[..s.start.min(source.len())].iter().filter(|&&b| b == b'\n').count() + 1
            )
        });
        fail(format!("not valid TOML{line}: {}", e.message()))
    })?;
    for key in table.keys() {
        if key != "model" && key != "train" {
            return Err(fail(format!("unknown table or key '{key}' (a model file has [model] and [train])")));
        }
    }
    let train = match table.get("train") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => return Err(fail("'train' must be a table: [train]".into())),
        None => toml::Table::new(),
    };
    let model = match table.get("model") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(fail("'model' must be a table: [model]".into())),
        None => return Ok((None, train)),
    };
    if let Some(key) = model.keys().find(|k| *k != "layers" && *k != "preset") {
        return Err(fail(format!(
            "[model] has an unknown key '{key}' (it holds layers = \"...\" or preset = \"NAME\")"
        )));
    }
    let (name, text) = match (model.get("layers"), model.get("preset")) {
        (Some(_), Some(_)) => return Err(fail("[model] has both layers and preset; keep one".into())),
        (Some(toml::Value::String(s)), None) => {
            (path.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned()), s.clone())
        }
        (None, Some(toml::Value::String(name))) => match preset(name) {
            Some(text) => (name.trim().to_lowercase(), text.to_string()),
            None => {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                return Err(fail(format!("[model] preset '{name}' is not one of {}", names.join(", "))));
            }
        },
        (Some(_), None) => {
            return Err(fail("[model] layers must be a string, as in layers = \"c32,relu,pool,fc\"".into()));
        }
        (None, Some(_)) => {
            return Err(fail("[model] preset must be a string, as in preset = \"bn-cnn\"".into()));
        }
        (None, None) => return Err(fail("[model] needs layers = \"...\" or preset = \"NAME\"".into())),
    };
    let layers = parse(&text).map_err(|e| fail(format!("[model] layers: {e}")))?;
    let kept = train.clone();
    let train = (!train.is_empty()).then_some(train);
    // a preset keeps its own text; a layer string is written canonically
    let text = if preset(&name).is_some_and(|t| t == text) { text } else { canonical(&layers) };
    Ok((Some(ModelDef { name, text, layers, train }), kept))
}
