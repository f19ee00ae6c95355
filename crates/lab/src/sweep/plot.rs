//! The plot of a sweep's rows against the settings that vary.

use std::path::Path;

use super::Row;
use super::table::{COLUMNS, cells};
use crate::Result;
use crate::plot::{Line, Panel};

/// The plot of a sweep (`stem.svg`, `stem.png`): x is the first setting that varies (its
/// value, or its index when not a number), one line per combination of the other settings;
/// the SNAT failure rate above, the peak of busy ports below it, and the port reuses within
/// the backends' TIME_WAIT (hazards) at the bottom: ports gained against hazards.
pub fn plot(stem: &Path, title: &str, rows: &[Row]) -> Result<()> {
    let cols: Vec<[String; 6]> = rows.iter().map(|r| cells(&r.point)).collect();
    let Some(first) = cols.first() else {
        return Ok(());
    };
    let varies: Vec<usize> = (0..6)
        .filter(|&c| cols.iter().any(|r| r[c] != first[c]))
        .collect();
    let x_col = varies.first().copied().unwrap_or(0);
    let mut x_values: Vec<String> = Vec::new();
    for r in &cols {
        if !x_values.contains(&r[x_col]) {
            x_values.push(r[x_col].clone());
        }
    }
    let numeric = x_values.iter().all(|v| v.parse::<f64>().is_ok());
    let x_of = |v: &str| {
        if numeric {
            v.parse::<f64>().unwrap_or(0.0)
        } else {
            x_values.iter().position(|x| x == v).unwrap_or(0) as f64
        }
    };
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, r) in cols.iter().enumerate() {
        let key: Vec<String> = varies
            .iter()
            .skip(1)
            .map(|&c| format!("{}={}", COLUMNS[c], r[c]))
            .collect();
        let key = key.join(" ");
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let lines = |f: &dyn Fn(&Row) -> f64| -> Vec<Line> {
        groups
            .iter()
            .map(|(k, idx)| Line {
                label: k.clone(),
                points: idx
                    .iter()
                    .map(|&i| (x_of(&cols[i][x_col]), f(&rows[i])))
                    .collect(),
            })
            .collect()
    };
    let x_label = if numeric {
        COLUMNS[x_col].replace('_', " ")
    } else {
        format!(
            "{} ({})",
            COLUMNS[x_col],
            x_values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{i}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let panels = [
        Panel {
            y_label: "SNAT failure rate".into(),
            lines: lines(&|r| r.failure_rate),
        },
        Panel {
            y_label: "peak ports busy: in use or held (busiest NAT IP)".into(),
            lines: lines(&|r| r.peak_ports_busy as f64),
        },
        Panel {
            y_label: "hazards: reuses within TIME_WAIT".into(),
            lines: lines(&|r| r.hazards as f64),
        },
    ];
    crate::plot::write(stem, title, &x_label, &panels)
}
