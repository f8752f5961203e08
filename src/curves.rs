//! curves.svg: the run's training and test loss (left) and accuracy (right) per epoch.
//!
//! Drawn with plotters' SVG backend from the epochs' metrics; text is left to the viewer's
//! fonts, so the file needs nothing else to open.

use crate::train::EpochMetrics;
use plotters::prelude::*;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 380;
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TEST: RGBColor = RGBColor(214, 39, 40);

/// The SVG text of the curves (a "no epochs yet" frame when `history` is empty).
pub fn svg(history: &[EpochMetrics], title: &str) -> Result<String, String> {
    let mut out = String::new();
    draw(&mut out, history, title).map_err(|e| format!("cannot draw the curves: {e}"))?;
    Ok(out)
}

type Fallible = Result<(), Box<dyn std::error::Error>>;

fn draw(out: &mut String, history: &[EpochMetrics], title: &str) -> Fallible {
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    if history.is_empty() {
        let style = ("sans-serif", 16).into_font().color(&BLACK.mix(0.6));
        root.draw_text("no finished epoch yet", &style, ((WIDTH / 2 - 80) as i32, (HEIGHT / 2 - 20) as i32))?;
        root.present()?;
        return Ok(());
    }
    let (left, right) = root.split_horizontally(WIDTH / 2);
    let finite = |v: f64| if v.is_finite() { Some(v) } else { None };
    let loss: Vec<(f64, f64, f64)> = history
        .iter()
        .filter_map(|m| Some((m.epoch as f64, finite(m.train_loss)?, finite(m.test_loss)?)))
        .collect();
    let acc: Vec<(f64, f64, f64)> =
        history.iter().map(|m| (m.epoch as f64, 100.0 * m.train_acc, 100.0 * m.test_acc)).collect();
    let last_epoch = history.iter().map(|m| m.epoch).max().unwrap_or(1) as f64;
    let loss_top = loss.iter().map(|p| p.1.max(p.2)).fold(0.0, f64::max).max(1e-3) * 1.08;
    panel(&left, "loss", &loss, last_epoch, (0.0, loss_top), false)?;
    let acc_low = acc.iter().map(|p| p.1.min(p.2)).fold(100.0, f64::min);
    let acc_low = (acc_low - 2.0).clamp(0.0, 99.0).floor();
    let acc_high = acc.iter().map(|p| p.1.max(p.2)).fold(0.0, f64::max);
    let acc_high = (acc_high + 1.5).ceil().clamp(acc_low + 1.0, 100.0);
    panel(&right, "accuracy (%)", &acc, last_epoch, (acc_low, acc_high), true)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    caption: &str,
    points: &[(f64, f64, f64)],
    last_epoch: f64,
    (low, high): (f64, f64),
    legend_low: bool,
) -> Fallible {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.5..last_epoch + 0.5, low..high)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels((last_epoch as usize).clamp(1, 20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (name, color, pick) in [("train", TRAIN, 0), ("test", TEST, 1)] {
        let series: Vec<(f64, f64)> =
            points.iter().map(|p| (p.0, if pick == 0 { p.1 } else { p.2 })).collect();
        chart
            .draw_series(LineSeries::new(series.iter().copied(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(series.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(if legend_low { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight })
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
