//! Plots (plotters): the gauges of a run over simulated time, and a sweep's results against the
//! swept setting. Each is written as SVG and as PNG.

use std::net::Ipv4Addr;
use std::path::Path;

use plotters::prelude::*;

use crate::series::Sample;

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
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
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
            .build_cartesian_2d(x0..x1, 0f64..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(panel.y_label.as_str())
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, line) in panel.lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(line.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            if line.points.len() <= 40 {
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|&p| Circle::new(p, 3, colour.filled())),
                    )
                    .map_err(|e| e.to_string())?;
            }
        }
        if panel.lines.len() > 1 || panel.lines.first().is_some_and(|l| !l.label.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// Writes `stem.svg` and `stem.png`.
pub fn write(stem: &Path, title: &str, x_label: &str, panels: &[Panel]) -> Result<(), String> {
    let height = 300 * panels.len().max(1) as u32 + 40;
    // Each file is drawn under its partial name and renamed once whole.
    let svg = stem.with_extension("svg");
    crate::files::write_whole(&svg, |tmp| {
        draw(
            SVGBackend::new(tmp, (900, height)).into_drawing_area(),
            title,
            x_label,
            panels,
        )
        .map_err(|reason| crate::Error::Io {
            path: svg.clone(),
            reason,
        })
    })
    .map_err(|e| e.to_string())?;
    let png = stem.with_extension("png");
    crate::files::write_whole(&png, |tmp| {
        draw(
            BitMapBackend::new(tmp, (900, height)).into_drawing_area(),
            title,
            x_label,
            panels,
        )
        .map_err(|reason| crate::Error::Io {
            path: png.clone(),
            reason,
        })
    })
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The gauges of a run over simulated time: ports in use per NAT IP, live flows, ports held,
/// SNAT failures. Writes `stem.svg` and `stem.png`.
pub fn series(stem: &Path, title: &str, series: &[Sample]) -> Result<(), String> {
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
