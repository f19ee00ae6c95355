//! The report of a sweep: the grid, a table of every point (its figures the rows' JSON, as
//! `plsim sweep --json` prints them), and the results against each varied setting.

use serde_json::Value;

use super::page::{Page, objects, shown};
use super::svg::{self, Line};
use super::{MAX_ROWS, RunMeta, ran};

/// The settings of a point, in the CSV's order.
const SETTINGS: [&str; 6] = ["nat_ips", "allocator", "ports", "idle", "fin_hold", "load"];

/// The report of a sweep whose rows serialize to `rows` (an array).
pub fn sweep(meta: &RunMeta, title: &str, rows: &Value) -> String {
    let mut p = Page::new(&format!("plsim {title}"));
    ran(&mut p, meta);
    let items = rows.as_array().map_or(&[][..], Vec::as_slice);
    let value = |r: &Value, k: &str| {
        r.get(k).map_or_else(String::new, |v| {
            if v.is_null() { String::new() } else { shown(v) }
        })
    };
    let varies: Vec<&str> = SETTINGS
        .iter()
        .copied()
        .filter(|k| {
            items
                .iter()
                .any(|r| value(r, k) != items.first().map_or_else(String::new, |f| value(f, k)))
        })
        .collect();

    p.section("The grid");
    if items.is_empty() {
        p.text("bad", "No point ran to its end.");
    }
    for k in SETTINGS {
        let mut vals: Vec<String> = Vec::new();
        for r in items {
            let v = value(r, k);
            if !v.is_empty() && !vals.contains(&v) {
                vals.push(v);
            }
        }
        if !vals.is_empty() {
            p.text("", &format!("{}: {}", k.replace('_', " "), vals.join(", ")));
        }
    }
    p.text("note", &format!("{} points ran to their end.", items.len()));

    p.section("Every point");
    let shown_rows: Vec<usize> = (0..items.len().min(MAX_ROWS)).collect();
    let first: Vec<&str> = SETTINGS
        .iter()
        .copied()
        .chain([
            "flows",
            "snat_failures",
            "failure_rate",
            "peak_ports_in_use",
            "peak_ports_busy",
            "peak_flows",
            "packets",
            "dropped",
        ])
        .collect();
    p.raw(&objects(rows, "", &shown_rows, &first, &|c| {
        SETTINGS.contains(&c) && items.iter().all(|r| r.get(c).is_none_or(Value::is_null))
    }));
    if items.len() > MAX_ROWS {
        p.text(
            "note",
            &format!(
                "The first {MAX_ROWS} of {} points (sweep.csv has every one).",
                items.len()
            ),
        );
    }

    p.section("Against each varied setting");
    if varies.is_empty() && !items.is_empty() {
        p.text("note", "No setting varies: one point.");
    }
    let mut plots = String::new();
    for &x in &varies {
        let others: Vec<&str> = varies.iter().copied().filter(|k| *k != x).collect();
        let mut xs: Vec<String> = Vec::new();
        for r in items {
            let v = value(r, x);
            if !xs.contains(&v) {
                xs.push(v);
            }
        }
        let numeric = xs.iter().all(|v| v.parse::<f64>().is_ok());
        let x_of = |v: &str| {
            if numeric {
                v.parse().unwrap_or(0.0)
            } else {
                xs.iter().position(|s| s == v).unwrap_or(0) as f64
            }
        };
        let x_label = if numeric {
            x.replace('_', " ")
        } else {
            format!(
                "{} ({})",
                x.replace('_', " "),
                xs.iter()
                    .enumerate()
                    .map(|(i, v)| format!("{i}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        for (y, y_label) in [
            ("failure_rate", "SNAT failure rate"),
            ("peak_ports_busy", "peak busy ports (busiest NAT IP)"),
        ] {
            let mut lines: Vec<Line> = Vec::new();
            for r in items {
                let key = others
                    .iter()
                    .map(|k| format!("{k}={}", value(r, k)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let pt = (
                    x_of(&value(r, x)),
                    r.get(y).and_then(Value::as_f64).unwrap_or(0.0),
                );
                match lines.iter_mut().find(|l| l.label == key) {
                    Some(l) => l.points.push(pt),
                    None => lines.push(Line {
                        label: key,
                        points: vec![pt],
                        dashed: false,
                    }),
                }
            }
            for l in &mut lines {
                l.points.sort_by(|a, b| a.0.total_cmp(&b.0));
                if l.label.is_empty() {
                    l.label = y_label.into();
                }
            }
            lines.truncate(10);
            plots.push_str(&svg::lines(
                &format!("{y_label} against {}", x.replace('_', " ")),
                &x_label,
                y_label,
                &lines,
            ));
        }
    }
    p.raw(&format!("<div class=\"plots\">{plots}</div>"));
    p.finish(&format!("plsim {title}"))
}
