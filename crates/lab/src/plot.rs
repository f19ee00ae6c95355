//! Plots (plotters): the gauges of a run over simulated time, and a sweep's results against the
//! swept setting. Each is written as SVG and as PNG. A plot that can't be written is an
//! [`Error::Io`] naming its file; one that can't be drawn is an [`Error::Plot`] saying why.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ColorType, ImageEncoder};

use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;
use plotters_backend::DrawingErrorKind;

use crate::series::Sample;
use crate::{Error, Result};

/// Why a plot could not be drawn (writing it is an [`Error::Io`]).
#[derive(Debug, thiserror::Error)]
pub enum PlotFailure {
    /// No font to write its text with.
    #[error("no font to write its text with ({0})")]
    Font(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The PNG encoder refused the picture.
    #[error("the PNG encoder refused it ({0})")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The picture's buffer does not match its size.
    #[error("its picture buffer does not match its size")]
    Buffer,
    /// Its charts do not fit the picture.
    #[error("its charts do not fit the picture")]
    Layout,
    /// Its picture was being drawn on by something else.
    #[error("its picture was being drawn on by something else")]
    Shared,
}

/// A plot's failure as the error naming `file`: the backend's own errors go through `backend`.
fn failure<E: std::error::Error + Send + Sync>(
    file: &Path,
    e: DrawingAreaErrorKind<E>,
    backend: impl FnOnce(&Path, E) -> Error,
) -> Error {
    let why = match e {
        DrawingAreaErrorKind::BackendError(DrawingErrorKind::DrawingError(e)) => {
            return backend(file, e);
        }
        DrawingAreaErrorKind::BackendError(DrawingErrorKind::FontError(e)) => PlotFailure::Font(e),
        DrawingAreaErrorKind::LayoutError => PlotFailure::Layout,
        DrawingAreaErrorKind::SharingError => PlotFailure::Shared,
    };
    Error::Plot {
        file: file.to_path_buf(),
        why,
    }
}

/// The PNG backend's error.
type PngError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

/// The PNG backend's error in words: an I/O error as any file's, else what the encoder said.
fn png_failure(file: &Path, e: PngError) -> Error {
    let why = match e {
        PngError::IOError(e) => return Error::io(file, &e),
        PngError::ImageError(image::ImageError::IoError(e)) => return Error::io(file, &e),
        PngError::ImageError(e) => PlotFailure::Encode(Box::new(e)),
        PngError::InvalidBuffer => PlotFailure::Buffer,
        #[allow(unreachable_patterns)]
        e => PlotFailure::Encode(Box::new(e)),
    };
    Error::Plot {
        file: file.to_path_buf(),
        why,
    }
}

/// One line of a plot.
pub struct Line {
    /// Its name in the legend (none when empty).
    pub label: String,
    /// Its points, `(x, y)`.
    pub points: Vec<(f64, f64)>,
}

/// One chart of a plot: lines over a shared x axis.
pub struct Panel {
    /// The name of the y axis.
    pub y_label: String,
    /// The lines.
    pub lines: Vec<Line>,
}

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    panels: &[Panel],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (area, panel) in areas.into_iter().zip(panels) {
        let xs = panel
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0));
        let ys = panel
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1));
        let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        let y1 = ys.fold(0f64, f64::max);
        let (x0, x1) = if x0.is_finite() && x1 > x0 {
            (x0, x1)
        } else {
            (0.0, 1.0)
        };
        let y1 = if y1 > 0.0 { y1 * 1.08 } else { 1.0 };
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, 0f64..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(panel.y_label.as_str())
            .draw()?;
        for (i, line) in panel.lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    colour.stroke_width(2),
                ))?
                .label(line.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            if line.points.len() <= 40 {
                chart.draw_series(
                    line.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, colour.filled())),
                )?;
            }
        }
        if panel.lines.len() > 1 || panel.lines.first().is_some_and(|l| !l.label.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }
    }
    root.present()
}

/// Writes `stem.svg` and `stem.png`, each whole or not at all: drawn in memory, then written
/// through a [`Partial`](crate::files::Partial) (created exclusively, renamed once whole).
pub fn write(stem: &Path, title: &str, x_label: &str, panels: &[Panel]) -> Result<()> {
    let size = (900, 300 * panels.len().max(1) as u32 + 40);
    let svg = stem.with_extension("svg");
    let mut text = String::new();
    draw(
        SVGBackend::with_string(&mut text, size).into_drawing_area(),
        title,
        x_label,
        panels,
    )
    .map_err(|e| failure(&svg, e, |file, e| Error::io(file, &e)))?;
    crate::files::write_file(&svg, text.as_bytes())?;
    let png = stem.with_extension("png");
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    draw(
        BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area(),
        title,
        x_label,
        panels,
    )
    .map_err(|e| failure(&png, e, png_failure))?;
    crate::files::write_whole(&png, |file| {
        let mut out = std::io::BufWriter::new(file);
        PngEncoder::new(&mut out)
            .write_image(&pixels, size.0, size.1, ColorType::Rgb8)
            .map_err(|e| png_failure(&png, PngError::ImageError(e)))?;
        out.flush().map_err(|e| Error::io(&png, &e))
    })
}

/// The gauges of a run over simulated time: ports in use per NAT IP, live flows, ports held,
/// SNAT failures. Writes `stem.svg` and `stem.png`.
pub fn series(stem: &Path, title: &str, series: &[Sample]) -> Result<()> {
    let t0 = series.first().map_or(0, |s| s.t.as_nanos());
    let t = |s: &Sample| (s.t.as_nanos() - t0) as f64 / 1e9;
    let mut ips: Vec<Ipv4Addr> = Vec::new();
    for s in series {
        for (ip, _) in &s.ports_in_use {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
    }
    let ports = ips
        .iter()
        .map(|ip| Line {
            label: ip.to_string(),
            points: series
                .iter()
                .map(|s| {
                    let n = s
                        .ports_in_use
                        .iter()
                        .find(|(i, _)| i == ip)
                        .map_or(0, |(_, n)| *n);
                    (t(s), n as f64)
                })
                .collect(),
        })
        .collect();
    let single = |label: &str, f: &dyn Fn(&Sample) -> u64| Panel {
        y_label: label.to_string(),
        lines: vec![Line {
            label: String::new(),
            points: series.iter().map(|s| (t(s), f(s) as f64)).collect(),
        }],
    };
    let panels = [
        Panel {
            y_label: "ports in use".into(),
            lines: ports,
        },
        single("live flows", &|s| s.live_flows),
        single("ports held", &|s| s.ports_held),
        single("SNAT failures", &|s| s.snat_failures),
    ];
    write(stem, title, "simulated time (s)", &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel() -> Panel {
        Panel {
            y_label: "y".into(),
            lines: vec![Line {
                label: String::new(),
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
        }
    }

    /// A plot that can't be written names its file and says why in words, as any file does.
    #[test]
    fn a_plot_that_cannot_be_written_says_which_and_why() {
        let dir = std::env::temp_dir().join(format!("plsim-plot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("p.partial.png")).unwrap();
        let stem = dir.join("p");
        let e = write(&stem, "t", "x", &[panel()]).unwrap_err();
        assert!(
            matches!(&e, Error::Io { path, .. } if *path == dir.join("p.png")),
            "{e:?}"
        );
        // The OS's words, no Debug dump of the encoder's error.
        let text = e.to_string();
        let reason = text
            .strip_prefix(&format!("{}: ", dir.join("p.png").display()))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(!reason.is_empty() && !reason.contains(['(', '{']), "{text}");
        // The SVG was written whole; the PNG left nothing behind but the directory in its way.
        assert!(dir.join("p.svg").is_file());
        assert!(!dir.join("p.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
