//! `gpu-train report RUN_DIR`: one self-contained HTML page about a run (report.html).
//!
//! The page holds the settings and the model's layer table, the curves (curves.svg's
//! drawing, inline), the confusion matrix of the run's best checkpoint on the test set as a
//! heat map with the class names, per-class accuracy, the most confidently wrong test
//! images (PNG data URLs, 3x), the adapter and the time taken. Nothing is fetched when it
//! opens: no scripts, fonts or links to other files.

use crate::checkpoint::{Checkpoint, DatasetShape};
use crate::data;
use crate::evaluate::{argmax, logits_of, softmax};
use crate::gpu::open_gpu;
use crate::model::param_align_words;
use crate::train::EpochMetrics;
use base64::Engine;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Wrong test images shown, most confident first.
const WRONG_SHOWN: usize = 24;
const IMAGE_SCALE: usize = 3;

#[derive(Debug, Clone)]
pub struct ReportCommand {
    pub run_dir: PathBuf,
    pub checkpoint: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub data: Option<PathBuf>,
    /// None: the largest batch that fits
    pub batch_size: Option<u32>,
    pub adapter: crate::gpu::AdapterOptions,
}

/// What the page shows, computed before any HTML is written.
struct Findings {
    names: Vec<String>,
    /// confusion[true][predicted]
    confusion: Vec<Vec<u64>>,
    loss: f64,
    accuracy: f64,
    /// (test index, true class, predicted class, predicted probability), most confident first
    wrong: Vec<(usize, usize, usize, f64)>,
}

pub fn report_command(args: &ReportCommand) -> Result<(), String> {
    let dir = &args.run_dir;
    if dir.is_file() {
        return Err(format!(
            "{}: a file; give the run's directory (a --save DIR of a training run)",
            dir.display()
        ));
    }
    if !dir.is_dir() {
        return Err(format!("{}: no such run directory (a --save DIR of a training run)", dir.display()));
    }
    let checkpoint = match &args.checkpoint {
        Some(c) => c.clone(),
        None => ["best.safetensors", "last.safetensors"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "{}: holds no checkpoint (best.safetensors or last.safetensors); is it a run's --save directory?",
                    dir.display()
                )
            })?,
    };
    let gpu = open_gpu(&args.adapter.clone(), false)?;
    let (ckpt, plan) = Checkpoint::load_with_plan(&checkpoint, param_align_words(&gpu))?;
    let sessions = sessions(&dir.join("run.json"));
    // the data the run trained on (run.json), unless --data says otherwise
    let recorded = sessions.last().map(|s| PathBuf::from(&s.3));
    if args.data.is_none()
        && let Some(d) = recorded.as_ref().filter(|d| !d.is_dir())
    {
        // another dataset of the same shape would give a plausible, wrong report
        return Err(format!(
            "{}: the run's data directory (from {}) is gone; pass --data DIR with the same test set",
            d.display(),
            dir.join("run.json").display()
        ));
    }
    let data_dir = data::locate_test(args.data.as_deref().or(recorded.as_deref()))?;
    let limit = plan.limit_test.flatten();
    let test = data::load_test(&data_dir, ckpt.dataset.classes)?.truncated(limit);
    let shape = DatasetShape {
        side: test.side,
        classes: ckpt.dataset.classes,
        train: ckpt.dataset.train,
        test: test.count,
    };
    ckpt.check_dataset(&checkpoint, &shape, false)?;
    let (history, problems) = crate::rundir::read_metrics(&dir.join("metrics.jsonl"))?;
    for p in problems {
        eprintln!("note: {p}; left out of the curves");
    }
    let config = std::fs::read_to_string(dir.join("config.toml")).ok().or(plan.config.clone());

    let (logits, (loss, accuracy)) = logits_of(&gpu, &ckpt, &test, args.batch_size.map(|b| b as usize))?;
    let findings = findings(&ckpt, &test.labels, &logits, loss, accuracy);
    let html = page(&PageParts {
        dir,
        checkpoint: &checkpoint,
        ckpt: &ckpt,
        history: &history,
        config: config.as_deref(),
        sessions: &sessions,
        findings: &findings,
        data: &data_dir,
        train_count: ckpt.dataset.train,
        pixels: &test.pixels,
        side: test.side,
    })?;
    let out = args.out.clone().unwrap_or_else(|| dir.join("report.html"));
    crate::rundir::write_whole(&out, &html)?;
    println!(
        "wrote {}: {} on {} test image{}, accuracy {:.2}%, {} epoch{} of metrics",
        out.display(),
        checkpoint.display(),
        test.count,
        if test.count == 1 { "" } else { "s" },
        100.0 * accuracy,
        history.len(),
        if history.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

fn findings(ckpt: &Checkpoint, labels: &[u8], logits: &[f32], loss: f64, accuracy: f64) -> Findings {
    let classes = ckpt.dataset.classes;
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut wrong = Vec::new();
    for (i, (row, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let predicted = argmax(row);
        confusion[label as usize][predicted] += 1;
        if predicted != label as usize {
            wrong.push((i, label as usize, predicted, softmax(row)[predicted]));
        }
    }
    wrong.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
    wrong.truncate(WRONG_SHOWN);
    Findings { names: ckpt.class_names.clone(), confusion, loss, accuracy, wrong }
}

/// (started, adapter, from epoch, data directory) of each session in run.json.
fn sessions(path: &Path) -> Vec<(String, String, u64, String)> {
    let Some(v) =
        std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return Vec::new();
    };
    let text = |s: &serde_json::Value, k: &str| s.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_string();
    v.get("sessions")
        .and_then(|s| s.as_array())
        .map(|list| {
            list.iter()
                .map(|s| {
                    (
                        text(s, "started_utc"),
                        text(s, "adapter"),
                        s.get("from_epoch").and_then(|x| x.as_u64()).unwrap_or(0),
                        text(s, "data"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

struct PageParts<'a> {
    dir: &'a Path,
    checkpoint: &'a Path,
    ckpt: &'a Checkpoint,
    history: &'a [EpochMetrics],
    config: Option<&'a str>,
    sessions: &'a [(String, String, u64, String)],
    findings: &'a Findings,
    data: &'a Path,
    train_count: usize,
    pixels: &'a [u8],
    side: usize,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1040px;color:#222}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
pre{background:#f6f6f6;padding:10px;overflow-x:auto;font-size:12px}\
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 7px;text-align:right}\
th{font-weight:600}.heat td{width:44px;height:30px;text-align:center;border:1px solid #fff}\
.facts td{text-align:left}.bar{display:inline-block;height:10px;background:#1f77b4}\
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid figure{margin:0;width:120px;font-size:11px}\
.grid img{image-rendering:pixelated;border:1px solid #ccc}";

fn page(p: &PageParts) -> Result<String, String> {
    let f = p.findings;
    let mut h = String::new();
    let title = format!("gpu-train run {}", p.dir.display());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", esc(&title));
    facts(&mut h, p);
    let _ = writeln!(h, "<h2>Curves</h2>");
    if p.history.is_empty() {
        let _ = writeln!(h, "<p>No epochs in metrics.jsonl yet.</p>");
    } else {
        let svg = crate::curves::svg(p.history, &p.ckpt.model.label())?;
        // the drawing, without any XML prologue
        let start = svg.find("<svg").unwrap_or(0);
        let _ = writeln!(h, "<div>{}</div>", &svg[start..]);
    }
    let _ = writeln!(
        h,
        "<h2>Confusion matrix</h2><p>{} on the {} test images: loss {:.4}, accuracy {:.2}%. Rows: true class; columns: predicted class.</p>",
        esc(&p.checkpoint.display().to_string()),
        f.confusion.iter().flatten().sum::<u64>(),
        f.loss,
        100.0 * f.accuracy
    );
    heat_map(&mut h, f);
    let _ = writeln!(h, "<h2>Per-class accuracy</h2>");
    per_class(&mut h, f);
    let _ = writeln!(h, "<h2>Most confidently wrong</h2>");
    wrong_grid(&mut h, p)?;
    let _ = writeln!(
        h,
        "<h2>Settings</h2><pre>{}</pre>",
        esc(p.config.unwrap_or("(no config.toml in the run directory)"))
    );
    let _ = writeln!(h, "<h2>Model</h2><pre>{}</pre>", esc(&model_table(p.ckpt)));
    let _ = writeln!(
        h,
        "<p style=\"color:#888\">Written by gpu-train {}.</p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    Ok(h)
}

fn facts(h: &mut String, p: &PageParts) {
    let mut rows: Vec<(String, String)> = Vec::new();
    rows.push(("model".into(), format!("{} ({})", p.ckpt.model.name, p.ckpt.model.text)));
    if let (Some(last), Some(best)) = (
        p.history.last(),
        p.history.iter().max_by(|a, b| a.test_acc.total_cmp(&b.test_acc).then(b.epoch.cmp(&a.epoch))),
    ) {
        rows.push((
            "final test accuracy".into(),
            format!("{:.2}% (epoch {})", 100.0 * last.test_acc, last.epoch),
        ));
        rows.push((
            "best test accuracy".into(),
            format!("{:.2}% (epoch {})", 100.0 * best.test_acc, best.epoch),
        ));
        let secs: f64 = p.history.iter().map(|m| m.seconds).sum();
        let images: f64 =
            p.history.iter().map(|m| m.train_images_per_sec).sum::<f64>() / p.history.len() as f64;
        rows.push((
            "time taken".into(),
            format!(
                "{} for {} epochs (training and evaluation), {:.0} training images/s on average",
                crate::progress::spoken_duration(secs),
                p.history.len(),
                images
            ),
        ));
    }
    let tested: u64 = p.findings.confusion.iter().flatten().sum();
    rows.push((
        "data".into(),
        format!("{} ({} training images, {} test images)", p.data.display(), p.train_count, tested),
    ));
    for (i, (started, adapter, from, _)) in p.sessions.iter().enumerate() {
        let when = if *from == 0 { "started".to_string() } else { format!("resumed after epoch {from}") };
        let label = if p.sessions.len() > 1 { format!("session {}", i + 1) } else { "adapter".into() };
        rows.push((label, format!("{adapter} ({when} {started} UTC)")));
    }
    h.push_str("<table class=\"facts\">");
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
    }
    h.push_str("</table>\n");
}

/// Cells shaded by their share of the true class's images: blue on the diagonal, red off it.
fn heat_map(h: &mut String, f: &Findings) {
    h.push_str("<table class=\"heat\"><tr><th></th>");
    for name in &f.names {
        let _ =
            write!(h, "<th style=\"writing-mode:vertical-rl;transform:rotate(180deg)\">{}</th>", esc(name));
    }
    h.push_str("</tr>\n");
    for (t, row) in f.confusion.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        let _ = write!(h, "<tr><th>{}</th>", esc(&f.names[t]));
        for (c, &n) in row.iter().enumerate() {
            let share = n as f64 / total as f64;
            let (r, g, b) = if t == c { (31, 119, 180) } else { (214, 39, 40) };
            let alpha = if n == 0 { 0.0 } else { 0.08 + 0.92 * share.sqrt() };
            let ink = if alpha > 0.55 { "#fff" } else { "#222" };
            let _ = write!(
                h,
                "<td style=\"background:rgba({r},{g},{b},{alpha:.3});color:{ink}\" title=\"true {} / predicted {}: {n}\">{n}</td>",
                esc(&f.names[t]),
                esc(&f.names[c])
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

fn per_class(h: &mut String, f: &Findings) {
    h.push_str(
        "<table><tr><th style=\"text-align:left\">class</th><th>accuracy</th><th></th><th>images</th></tr>\n",
    );
    for (c, row) in f.confusion.iter().enumerate() {
        let n: u64 = row.iter().sum();
        let (acc, width) = match n {
            0 => ("-".to_string(), 0.0),
            _ => {
                let a = row[c] as f64 / n as f64;
                (format!("{:.2}%", 100.0 * a), 200.0 * a)
            }
        };
        let _ = writeln!(
            h,
            "<tr><td style=\"text-align:left\">{}</td><td>{acc}</td><td style=\"text-align:left\"><span class=\"bar\" style=\"width:{width:.0}px\"></span></td><td>{n}</td></tr>",
            esc(&f.names[c])
        );
    }
    h.push_str("</table>\n");
}

fn wrong_grid(h: &mut String, p: &PageParts) -> Result<(), String> {
    let f = p.findings;
    if f.wrong.is_empty() {
        h.push_str("<p>Every test image is classified correctly.</p>\n");
        return Ok(());
    }
    let _ = writeln!(
        h,
        "<p>The {} test images the model got wrong with the highest probability for its wrong answer.</p><div class=\"grid\">",
        f.wrong.len()
    );
    let side = p.side;
    for &(i, truth, predicted, prob) in &f.wrong {
        let image = &p.pixels[i * side * side..(i + 1) * side * side];
        let big = upscale(image, side, IMAGE_SCALE);
        let png = crate::preview::encode_grey_png(side * IMAGE_SCALE, side * IMAGE_SCALE, &big)?;
        let data = base64::engine::general_purpose::STANDARD.encode(png);
        let _ = write!(
            h,
            "<figure><img alt=\"test image {i}\" src=\"data:image/png;base64,{data}\"><figcaption>#{i}<br>true: {}<br>predicted: {} ({:.1}%)</figcaption></figure>",
            esc(&f.names[truth]),
            esc(&f.names[predicted]),
            100.0 * prob
        );
    }
    h.push_str("</div>\n");
    Ok(())
}

/// Each pixel as a `scale` x `scale` block.
fn upscale(image: &[u8], side: usize, scale: usize) -> Vec<u8> {
    let wide = side * scale;
    (0..wide * wide).map(|k| image[(k / wide / scale) * side + (k % wide) / scale]).collect()
}

fn model_table(ckpt: &Checkpoint) -> String {
    let input = crate::model_spec::Shape::Image { channels: 1, side: ckpt.dataset.side };
    match crate::model_spec::infer(&ckpt.model.layers, 1, ckpt.dataset.side, ckpt.dataset.classes) {
        Ok(info) => crate::model_spec::summary(input, &info),
        Err(e) => format!("(cannot lay out the model: {e})"),
    }
}

/// Text for HTML: & < > " ' escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
