//! Probability timeline of one video against its ground truth, as a PNG: for each class shown, the
//! predicted probability is a line and the ground-truth frames are a band of the same colour.
//!
//! Text needs a TrueType font: `ACTIOND_FONT` names one, else common system locations are tried.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("no TrueType font found for plot text (tried {tried}); set ACTIOND_FONT to a .ttf file")]
    NoFont { tried: String },
    #[error("{path}: cannot draw the plot: {message}")]
    Draw { path: PathBuf, message: String },
}

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

static FONT: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();

fn ensure_font() -> Result<(), PlotError> {
    let font = FONT.get_or_init(|| {
        let mut candidates: Vec<String> = std::env::var("ACTIOND_FONT").into_iter().collect();
        candidates.extend(FONT_CANDIDATES.iter().map(|s| s.to_string()));
        for path in &candidates {
            if let Ok(bytes) = std::fs::read(path) {
                return Ok(bytes);
            }
        }
        Err(candidates.join(", "))
    });
    match font {
        Ok(bytes) => {
            // Registering again is harmless (it replaces the same entry).
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.as_slice())
                .map_err(|_| PlotError::NoFont { tried: "a font file that ab_glyph cannot parse".into() })
        }
        Err(tried) => Err(PlotError::NoFont { tried: tried.clone() }),
    }
}

/// One video's scores [len × classes] and targets [len × classes].
pub struct Timeline<'a> {
    pub video: &'a str,
    pub scores: &'a [f32],
    pub targets: &'a [f32],
    pub classes: usize,
    pub labels: &'a [String],
    pub fps: f64,
    /// Class not to draw (the ignore class).
    pub ignore_class: Option<usize>,
}

/// Draws the classes present in the ground truth plus the most confidently predicted ones (at most 6,
/// background left out) and writes a PNG atomically.
pub fn draw_timeline(path: &Path, timeline: &Timeline) -> Result<(), PlotError> {
    ensure_font()?;
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw { path: path.to_path_buf(), message: e.to_string() };
    let c = timeline.classes;
    let len = timeline.scores.len() / c.max(1);
    let column = |data: &[f32], class: usize| -> Vec<f32> { (0..len).map(|t| data[t * c + class]).collect() };
    let mut ranked: Vec<(bool, f32, usize)> = (1..c)
        .filter(|&k| Some(k) != timeline.ignore_class)
        .map(|k| {
            let present = column(timeline.targets, k).iter().any(|&v| v > 0.5);
            let peak = column(timeline.scores, k).into_iter().fold(0.0f32, f32::max);
            (present, peak, k)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let shown: Vec<usize> = ranked.iter().take(6).map(|r| r.2).collect();

    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp.png");
    let tmp = PathBuf::from(tmp_name);
    {
        let root = BitMapBackend::new(&tmp, (1400, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let seconds = len as f64 / timeline.fps;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: predicted probability (lines) vs ground truth (bands)", timeline.video), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..seconds.max(1e-3), 0.0..1.05)
            .map_err(|e| draw_err(&e))?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("probability")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| draw_err(&e))?;
        let dt = 1.0 / timeline.fps;
        for (i, &class) in shown.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let truth = column(timeline.targets, class);
            let bands = truth.iter().enumerate().filter(|(_, &v)| v > 0.5).map(|(t, _)| {
                let x = t as f64 * dt;
                Rectangle::new([(x, 0.0), (x + dt, 1.0)], color.mix(0.15).filled())
            });
            chart.draw_series(bands).map_err(|e| draw_err(&e))?;
            let scores = column(timeline.scores, class);
            let name = timeline.labels.get(class).cloned().unwrap_or_else(|| format!("class {class}"));
            chart
                .draw_series(LineSeries::new(scores.iter().enumerate().map(|(t, &p)| ((t as f64 + 0.5) * dt, p as f64)), color.stroke_width(2)))
                .map_err(|e| draw_err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| draw_err(&e))?;
        root.present().map_err(|e| draw_err(&e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| draw_err(&e))
}
