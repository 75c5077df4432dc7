//! SVG pictures of a run: the training curves of all networks, and one test
//! confusion-matrix heatmap per network.
//!
//! Written by hand rather than with a plotting crate: SVG's `text-anchor`
//! aligns labels for us, so no font metrics are needed (plotters can only
//! guess them without system font libraries), and the whole picture is a
//! few dozen elements. Pictures are rendered to a `String` and written
//! atomically.

use super::{correct_and_total, ConfusionMatrix, NetLog, TrainLog};
use crate::error::Result;
use files::atomic::write_atomic;
use shared::arch::CLASSES;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// File name of the training-curves picture.
pub const CURVES_FILE: &str = "training_curves.svg";

/// File name of a network's confusion-matrix picture.
pub fn confusion_file(net: &str) -> String {
    format!("confusion_{net}.svg")
}

/// One colour per network, in log order (colour-blind-safe Tableau hues).
const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// Writes [`CURVES_FILE`] (if any network has epochs) and one
/// [`confusion_file`] per network that has a confusion matrix into `dir`.
/// Returns the paths written.
pub fn write_plots(dir: &Path, log: &TrainLog) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if log.nets.iter().any(|n| !n.epochs.is_empty()) {
        let path = dir.join(CURVES_FILE);
        write_atomic(&path, training_curves_svg(&log.nets).as_bytes())?;
        written.push(path);
    }
    for n in &log.nets {
        if let Some(m) = &n.confusion {
            let path = dir.join(confusion_file(n.net.name()));
            write_atomic(&path, confusion_svg(n.net.name(), m).as_bytes())?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Two panels side by side: mean training loss per epoch (log scale) and
/// test accuracy per epoch, one coloured line per network.
pub fn training_curves_svg(nets: &[NetLog]) -> String {
    const W: f64 = 960.0;
    const H: f64 = 420.0;
    let mut svg = Svg::new(W, H);
    svg.text(
        W / 2.0,
        28.0,
        18.0,
        "middle",
        "font-weight=\"bold\"",
        "Training curves",
    );

    // Legend, centred; SVG cannot measure text, so widths are estimated.
    let labels: Vec<String> = nets
        .iter()
        .map(|n| match n.last() {
            Some(e) => format!("{} (final {:.2}%)", n.net.name(), 100.0 * e.test_accuracy),
            None => n.net.name().to_owned(),
        })
        .collect();
    let item_w = |l: &String| 34.0 + 7.0 * l.chars().count() as f64;
    let mut x = (W - labels.iter().map(item_w).sum::<f64>()) / 2.0;
    for (i, l) in labels.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        svg.line(x, 50.0, x + 22.0, 50.0, c, 2.5);
        svg.circle(x + 11.0, 50.0, 3.0, c);
        svg.text(x + 28.0, 54.5, 13.0, "start", "", l);
        x += item_w(l);
    }

    let max_epoch = nets
        .iter()
        .flat_map(|n| n.epochs.iter().map(|e| e.epoch))
        .max()
        .unwrap_or(1);
    let x_ticks = epoch_ticks(max_epoch);
    let x_range = (0.5, max_epoch as f64 + 0.5);
    let series = |f: fn(&super::EpochRecord) -> f64| -> Vec<Vec<(f64, f64)>> {
        nets.iter()
            .map(|n| n.epochs.iter().map(|e| (e.epoch as f64, f(e))).collect())
            .collect()
    };

    let loss = series(|e| e.train_loss);
    let positive: Vec<f64> = loss
        .iter()
        .flatten()
        .map(|p| p.1)
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let loss_axis = if positive.is_empty() {
        linear_axis(0.0, 1.0)
    } else {
        log_axis(min(&positive), max(&positive))
    };
    let frame = Frame {
        x: 80.0,
        y: 90.0,
        w: 360.0,
        h: 260.0,
        x_range,
        x_ticks: x_ticks.clone(),
    };
    frame.draw(
        &mut svg,
        "training loss (mean cross-entropy, log scale)",
        &loss_axis,
        &loss,
    );

    let acc: Vec<Vec<(f64, f64)>> = series(|e| 100.0 * e.test_accuracy);
    let finite: Vec<f64> = acc
        .iter()
        .flatten()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    let acc_axis = if finite.is_empty() {
        linear_axis(0.0, 100.0)
    } else {
        linear_axis(min(&finite), max(&finite).min(100.0))
    };
    let frame = Frame { x: 560.0, ..frame };
    frame.draw(&mut svg, "test accuracy (%)", &acc_axis, &acc);
    svg.finish()
}

/// A 10x10 heatmap of `m[true][predicted]` with the count in each cell and
/// each class's recall beside its row. Correct cells are blue (shade:
/// recall); errors are red on a log scale, so that a handful of mistakes
/// still shows next to a thousand correct answers.
pub fn confusion_svg(net: &str, m: &ConfusionMatrix) -> String {
    const CELL: f64 = 44.0;
    const GX: f64 = 110.0;
    const GY: f64 = 110.0;
    let side = CELL * CLASSES as f64;
    let (w, h) = (GX + side + 100.0, GY + side + 60.0);
    let mut svg = Svg::new(w, h);

    let (correct, total) = correct_and_total(m);
    let summary = if total == 0 {
        "no test images".to_string()
    } else {
        format!(
            "{correct} of {total} correct ({:.2}%)",
            100.0 * correct as f64 / total as f64
        )
    };
    let centre = GX + side / 2.0;
    svg.text(
        centre,
        30.0,
        18.0,
        "middle",
        "font-weight=\"bold\"",
        &format!("{net}: test confusion matrix"),
    );
    svg.text(centre, 52.0, 13.0, "middle", "fill=\"#444\"", &summary);
    svg.text(
        centre,
        GY - 30.0,
        13.0,
        "middle",
        "font-weight=\"bold\"",
        "predicted digit",
    );
    let ty = GY + side / 2.0;
    let rotate = format!(
        "font-weight=\"bold\" transform=\"rotate(-90 {:.1} {ty:.1})\"",
        GX - 44.0
    );
    svg.text(GX - 44.0, ty, 13.0, "middle", &rotate, "true digit");
    svg.text(
        GX + side + 48.0,
        GY - 10.0,
        12.0,
        "middle",
        "font-weight=\"bold\"",
        "recall",
    );

    let max_error = (0..CLASSES)
        .flat_map(|i| (0..CLASSES).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| m[i][j])
        .max()
        .unwrap_or(0);
    for (i, row) in m.iter().enumerate() {
        let y = GY + CELL * i as f64;
        let digit = i.to_string();
        svg.text(GX - 12.0, y + CELL / 2.0 + 5.0, 13.0, "end", "", &digit);
        svg.text(
            GX + CELL * (i as f64 + 0.5),
            GY - 10.0,
            13.0,
            "middle",
            "",
            &digit,
        );
        let row_total: u32 = row.iter().sum();
        let recall = if row_total == 0 {
            0.0
        } else {
            f64::from(row[i]) / f64::from(row_total)
        };
        let recall_text = if row_total == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * recall)
        };
        svg.text(
            GX + side + 48.0,
            y + CELL / 2.0 + 5.0,
            12.0,
            "middle",
            "",
            &recall_text,
        );
        for (j, &count) in row.iter().enumerate() {
            let x = GX + CELL * j as f64;
            let (fill, ink) = if i == j {
                let t = recall;
                (
                    mix([0xde, 0xeb, 0xf7], [0x08, 0x51, 0x9c], t),
                    if t > 0.5 { "#fff" } else { "#222" },
                )
            } else if count == 0 {
                ("#fafafa".to_string(), "#bbb")
            } else {
                let t = (1.0 + f64::from(count)).ln() / (1.0 + f64::from(max_error)).ln();
                (
                    mix([0xfe, 0xe0, 0xd2], [0xcb, 0x18, 0x1d], t),
                    if t > 0.6 { "#fff" } else { "#222" },
                )
            };
            svg.rect(
                x,
                y,
                CELL,
                CELL,
                &fill,
                "stroke=\"#fff\" stroke-width=\"1\"",
            );
            let size = if count == 0 { 11.0 } else { 13.0 };
            svg.text(
                x + CELL / 2.0,
                y + CELL / 2.0 + 4.5,
                size,
                "middle",
                &format!("fill=\"{ink}\""),
                &count.to_string(),
            );
        }
    }
    svg.rect(
        GX,
        GY,
        side,
        side,
        "none",
        "stroke=\"#333\" stroke-width=\"1\"",
    );
    svg.text(
        centre,
        GY + side + 32.0,
        12.0,
        "middle",
        "fill=\"#555\"",
        "blue: correct (shade = recall) · red: errors (shade = log of count)",
    );
    svg.finish()
}

/// A value axis: data range, tick positions and their labels.
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    /// Where `v` falls between `lo` (0) and `hi` (1).
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// A linear axis from a "nice" value below `lo` to one above `hi`, with
/// about five ticks at multiples of 1, 2 or 5 times a power of ten.
fn linear_axis(lo: f64, hi: f64) -> Axis {
    let (lo, hi) = if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let step = nice_step((hi - lo) / 5.0);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let n = ((hi - lo) / step).round() as usize;
    let ticks = (0..=n)
        .map(|k| lo + k as f64 * step)
        .map(|v| (v, format!("{v:.decimals$}")))
        .collect();
    Axis {
        lo,
        hi,
        log: false,
        ticks,
    }
}

/// A log axis between 1-2-5 values around `[lo, hi]`, ticked at each 1-2-5
/// value (only at powers of ten when it spans more than two decades).
fn log_axis(lo: f64, hi: f64) -> Axis {
    let decade = |v: f64| v.log10().floor() as i32;
    let candidates: Vec<f64> = (decade(lo) - 1..=decade(hi) + 1)
        .flat_map(|d| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(d)))
        .collect();
    let a_lo = candidates
        .iter()
        .copied()
        .filter(|&c| c <= lo * (1.0 + 1e-9))
        .fold(f64::NAN, f64::max);
    let mut a_hi = candidates
        .iter()
        .copied()
        .find(|&c| c >= hi * (1.0 - 1e-9))
        .unwrap_or(hi);
    if a_hi <= a_lo {
        a_hi = candidates
            .iter()
            .copied()
            .find(|&c| c > a_lo * (1.0 + 1e-9))
            .unwrap_or(a_lo * 2.0);
    }
    let wide = a_hi / a_lo > 100.0;
    let ticks = candidates
        .into_iter()
        .filter(|&c| c >= a_lo * (1.0 - 1e-9) && c <= a_hi * (1.0 + 1e-9))
        .filter(|&c| !wide || (c.log10() - c.log10().round()).abs() < 1e-9)
        .map(|c| (c, short_number(c)))
        .collect();
    Axis {
        lo: a_lo,
        hi: a_hi,
        log: true,
        ticks,
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

/// Integer epoch ticks, about ten at most.
fn epoch_ticks(max_epoch: usize) -> Vec<(f64, String)> {
    let step = nice_step(max_epoch as f64 / 10.0).max(1.0) as usize;
    let first = if step == 1 { 1 } else { step };
    (first..=max_epoch)
        .step_by(step)
        .map(|e| (e as f64, e.to_string()))
        .collect()
}

/// `0.05` rather than `0.05000000000000001`.
fn short_number(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// One chart panel: a frame, grid, ticks, a title, and one line per series.
#[derive(Clone)]
struct Frame {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    x_range: (f64, f64),
    x_ticks: Vec<(f64, String)>,
}

impl Frame {
    fn draw(&self, svg: &mut Svg, title: &str, y_axis: &Axis, series: &[Vec<(f64, f64)>]) {
        let px =
            |x: f64| self.x + self.w * (x - self.x_range.0) / (self.x_range.1 - self.x_range.0);
        let py = |y: f64| self.y + self.h * (1.0 - y_axis.frac(y));
        svg.text(
            self.x + self.w / 2.0,
            self.y - 12.0,
            14.0,
            "middle",
            "font-weight=\"bold\"",
            title,
        );
        for (v, label) in &y_axis.ticks {
            let y = py(*v);
            svg.line(self.x, y, self.x + self.w, y, "#e3e3e3", 1.0);
            svg.text(self.x - 8.0, y + 4.0, 12.0, "end", "", label);
        }
        for (v, label) in &self.x_ticks {
            let x = px(*v);
            svg.line(x, self.y + self.h, x, self.y + self.h + 5.0, "#333", 1.0);
            svg.text(x, self.y + self.h + 19.0, 12.0, "middle", "", label);
        }
        svg.text(
            self.x + self.w / 2.0,
            self.y + self.h + 40.0,
            13.0,
            "middle",
            "",
            "epoch",
        );
        svg.rect(
            self.x,
            self.y,
            self.w,
            self.h,
            "none",
            "stroke=\"#333\" stroke-width=\"1\"",
        );
        for (i, points) in series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            // A diverged epoch (NaN or non-positive loss on a log axis)
            // breaks the line rather than dragging it off the chart.
            let drawable = |v: f64| v.is_finite() && (!y_axis.log || v > 0.0);
            let mut run: Vec<(f64, f64)> = Vec::new();
            for &(x, y) in points.iter().chain([(f64::NAN, f64::NAN)].iter()) {
                if drawable(y) && x.is_finite() {
                    run.push((px(x), py(y)));
                } else if !run.is_empty() {
                    svg.polyline(&run, colour, 2.0);
                    for &(cx, cy) in &run {
                        svg.circle(cx, cy, 3.0, colour);
                    }
                    run.clear();
                }
            }
        }
    }
}

/// `a` blended towards `b` by `t` in [0, 1], as `#rrggbb`.
fn mix(a: [u8; 3], b: [u8; 3], t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let c = |k: usize| (f64::from(a[k]) + (f64::from(b[k]) - f64::from(a[k])) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", c(0), c(1), c(2))
}

/// A minimal SVG writer: coordinates with one decimal, text escaped.
struct Svg {
    out: String,
}

impl Svg {
    fn new(w: f64, h: f64) -> Self {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">"
        );
        let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>");
        Svg { out }
    }

    fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, extra: &str, s: &str) {
        let _ = writeln!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"{anchor}\" {extra}>{}</text>",
            escape(s)
        );
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) {
        let _ = writeln!(
            self.out,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{stroke}\" stroke-width=\"{width}\"/>"
        );
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, extra: &str) {
        let _ = writeln!(
            self.out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\" {extra}/>"
        );
    }

    fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64) {
        let mut pts = String::new();
        for (x, y) in points {
            let _ = write!(pts, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            self.out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"{width}\" stroke-linejoin=\"round\"/>",
            pts.trim_end()
        );
    }

    fn circle(&mut self, x: f64, y: f64, r: f64, fill: &str) {
        let _ = writeln!(
            self.out,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" fill=\"{fill}\"/>"
        );
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// Escapes text for SVG element content.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::report::tests::sample_log;

    /// Parses `svg` with an independent XML parser and returns its text nodes.
    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg)
            .unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn curves_are_well_formed_and_labelled() {
        let log = sample_log();
        let svg = training_curves_svg(&log.nets);
        assert!(svg.starts_with("<svg"));
        let texts = texts(&svg);
        assert!(
            texts.contains(&"inception (final 98.87%)".to_string()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"resnet (final 98.80%)".to_string()),
            "{texts:?}"
        );
        assert_eq!(svg.matches("<polyline").count(), 4, "two nets x two panels");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn curves_survive_degenerate_logs() {
        let mut log = sample_log();
        log.nets[0].epochs.truncate(1);
        log.nets[1].epochs[2].train_loss = f64::NAN;
        let svg = training_curves_svg(&log.nets);
        texts(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // One net broken by the NaN into two runs, one single-epoch run.
        assert_eq!(svg.matches("<polyline").count(), 5);
        texts(&training_curves_svg(&[NetLog::new(
            shared::NetId::ResNet,
            0,
        )]));
    }

    #[test]
    fn confusion_heatmap_shows_counts_and_escapes_names() {
        let log = sample_log();
        let m = log.nets[0].confusion.unwrap();
        let shown = texts(&confusion_svg("a<b&c", &m));
        assert!(
            shown.contains(&"a<b&c: test confusion matrix".to_string()),
            "{shown:?}"
        );
        for count in ["980", "989", "2", "0"] {
            assert!(shown.iter().any(|t| t == count), "{count} not shown");
        }
        let (correct, total) = correct_and_total(&m);
        let summary = format!(
            "{correct} of {total} correct ({:.2}%)",
            100.0 * correct as f64 / total as f64
        );
        assert!(shown.contains(&summary), "{shown:?}");
        texts(&confusion_svg("empty", &[[0; CLASSES]; CLASSES]));
    }

    #[test]
    fn write_plots_writes_only_the_pictures() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_plots(dir.path(), &sample_log()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "confusion_inception.svg",
                "confusion_resnet.svg",
                "training_curves.svg"
            ]
        );
        assert_eq!(written.len(), 3);
        for p in written {
            let svg = std::fs::read_to_string(p).unwrap();
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        }
    }

    #[test]
    fn axes_pick_round_ticks() {
        let a = linear_axis(97.9, 98.93);
        assert_eq!((a.lo, a.hi), (97.5, 99.0));
        assert_eq!(
            a.ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
            ["97.5", "98.0", "98.5", "99.0"]
        );
        let l = log_axis(0.03, 0.232);
        assert_eq!((l.lo, l.hi), (0.02, 0.5));
        let labels: Vec<&str> = l.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0.02", "0.05", "0.1", "0.2", "0.5"]);
        assert_eq!(epoch_ticks(3).len(), 3);
        assert_eq!(
            epoch_ticks(40)
                .iter()
                .map(|t| t.1.as_str())
                .collect::<Vec<_>>(),
            ["5", "10", "15", "20", "25", "30", "35", "40"]
        );
    }
}
