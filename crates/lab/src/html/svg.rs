//! Inline SVG plots, drawn as text: lines over an axis (downsampled so that a long run's
//! plot stays small, each bucket keeping its highest point so that peaks survive) and bars.

use std::fmt::Write as _;

use super::page::{escape, float};

/// The most points a line keeps (see [`downsample`]).
pub const MAX_POINTS: usize = 1000;

const W: f64 = 520.0;
const H: f64 = 250.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 26.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

/// One line: its label and its points, in x order.
pub struct Line {
    /// What it is, for the legend.
    pub label: String,
    /// Its points.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a second measure of the same thing, e.g. in use beside busy).
    pub dashed: bool,
}

/// At most `max` points of `points` (at least 2): the points split into `max` runs of
/// consecutive points, and of each run the highest (the first of equals), so that no peak is
/// lost; the last point is always kept.
pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let max = max.max(2);
    if points.len() <= max {
        return points.to_vec();
    }
    let runs = max - 1;
    let mut out = Vec::with_capacity(max);
    for r in 0..runs {
        let lo = r * (points.len() - 1) / runs;
        let hi = ((r + 1) * (points.len() - 1) / runs).max(lo + 1);
        let best = points[lo..hi]
            .iter()
            .copied()
            .fold(None::<(f64, f64)>, |b, p| match b {
                Some(b) if b.1 >= p.1 => Some(b),
                _ => Some(p),
            });
        out.extend(best);
    }
    out.extend(points.last().copied());
    out
}

/// Ticks for the range 0..=`max`: about five round steps.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut v = Vec::new();
    while t <= hi + step * 1e-9 && v.len() < 12 {
        v.push(t);
        t += step;
    }
    v
}

/// A tick's label: short.
fn label(x: f64) -> String {
    if x.abs() >= 1e6 {
        format!("{:.3}", x / 1e6)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + "M"
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        let f = float(x);
        f.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A line plot titled `title`, with its axes' labels; the lines downsampled to
/// [`MAX_POINTS`] each. The y axis starts at 0.
pub fn lines(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> String {
    let lines: Vec<Line> = lines
        .iter()
        .map(|l| Line {
            label: l.label.clone(),
            points: downsample(&l.points, MAX_POINTS),
            dashed: l.dashed,
        })
        .collect();
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    let y1 = y1 * 1.05;
    let legend_rows = lines.len().div_ceil(3) as f64;
    let h = H + 14.0 + legend_rows * 16.0;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - y / y1 * ph;
    let mut o = svg_open(title, h);
    let _ = write!(
        o,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#9aa3b2\"/>"
    );
    for t in ticks(0.0, y1) {
        let y = sy(t);
        let _ = write!(
            o,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eceef2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + pw,
            LEFT - 4.0,
            y + 4.0,
            label(t)
        );
    }
    for t in ticks(x0, x1) {
        let x = sx(t);
        let _ = write!(
            o,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph + 14.0,
            label(t)
        );
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(12 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        LEFT + pw / 2.0,
        TOP + ph + 30.0,
        escape(x_label),
        TOP + ph / 2.0,
        escape(y_label)
    );
    for (i, l) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = if l.dashed {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let mut d = String::new();
        for (j, &(x, y)) in l.points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if j == 0 { "M" } else { "L" },
                sx(x),
                sy(y)
            );
        }
        if l.points.len() == 1 {
            let _ = write!(d, "h1");
        }
        let _ = write!(
            o,
            "<path class=\"line\" d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"{dash}/>"
        );
        let (lx, ly) = (
            LEFT + (i % 3) as f64 * (pw / 3.0),
            H + 12.0 + (i / 3) as f64 * 16.0,
        );
        let _ = write!(
            o,
            "<line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\
             <text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>",
            lx + 18.0,
            ly - 4.0,
            ly - 4.0,
            lx + 22.0,
            escape(&l.label)
        );
    }
    o.push_str("</svg>");
    o
}

/// A horizontal bar chart titled `title`: a bar per label, its value written beside it.
pub fn bars(title: &str, bars: &[(String, f64)]) -> String {
    let row = 20.0;
    let h = TOP + bars.len().max(1) as f64 * row + 10.0;
    let max = bars
        .iter()
        .map(|b| b.1)
        .fold(0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let (left, pw) = (170.0, W - 170.0 - 80.0);
    let mut o = svg_open(title, h);
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = TOP + i as f64 * row;
        let w = (v / max * pw).max(1.0);
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{left}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            left - 6.0,
            y + 14.0,
            escape(name),
            y + 3.0,
            row - 6.0,
            COLOURS[i % COLOURS.len()],
            left + w + 4.0,
            y + 14.0,
            escape(&label(*v))
        );
    }
    o.push_str("</svg>");
    o
}

/// The opening of a plot of height `h`, with its title.
fn svg_open(title: &str, h: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" role=\"img\" width=\"{W}\" \
         height=\"{h:.0}\" viewBox=\"0 0 {W} {h:.0}\" font-size=\"11\" font-family=\"sans-serif\">\
         <title>{t}</title><text x=\"{LEFT}\" y=\"16\" font-size=\"13\" font-weight=\"600\">{t}</text>",
        t = escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_every_peak_and_the_last_point() {
        let mut p: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        p[54_321].1 = 1e6;
        let d = downsample(&p, 1000);
        assert!(d.len() <= 1000, "{}", d.len());
        assert!(d.contains(&(54_321.0, 1e6)));
        assert_eq!(d.last(), p.last());
        assert_eq!(downsample(&p[..10], 1000), p[..10].to_vec());
    }

    #[test]
    fn a_plot_escapes_its_text_and_has_a_line_per_series() {
        let s = lines(
            "a <b>",
            "t",
            "y",
            &[Line {
                label: "x&y".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0)],
                dashed: false,
            }],
        );
        assert!(s.contains("a &lt;b&gt;") && s.contains("x&amp;y"), "{s}");
        assert_eq!(s.matches("class=\"line\"").count(), 1);
    }
}
