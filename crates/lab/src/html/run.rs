//! The report of a replay or a simulation: what ran, the headline, the tables of
//! `summary.json` (from its very values), and plots over simulated time.

use serde_json::Value;

use super::page::{Cell, Page, leaves, objects, table};
use super::svg::{self, Line};
use super::{MAX_ROWS, RunMeta, ran};
use crate::series::Sample;

/// The report of a run whose summary serializes to `summary`, with its time series and its
/// latency distribution ((quantile, ns), as [`crate::run::Outcome::latency`]).
pub fn run(meta: &RunMeta, summary: &Value, series: &[Sample], latency: &[(f64, u64)]) -> String {
    let title = format!("plsim {}: {}", meta.kind, meta.input);
    let mut p = Page::new(&title);
    ran(&mut p, meta);
    let doc = summary;
    let j = |ptr: &str| Cell::Json(ptr.to_string());
    let h = |t: &str| Cell::Head(t.to_string());
    if doc.pointer("/interrupted") == Some(&Value::Bool(true)) {
        p.text(
            "bad",
            "Interrupted: the results cover the input read before the signal.",
        );
    }
    if doc.pointer("/input/truncated") == Some(&Value::Bool(true)) {
        p.text(
            "bad",
            "The capture was cut short or damaged: replayed up to there.",
        );
    }

    p.section("Headline");
    let mut head = vec![
        vec![
            h("packets in"),
            j("/packets/consumer_in"),
            Cell::Text("consumer side".into()),
            j("/packets/backend_in"),
            Cell::Text("backend side".into()),
        ],
        vec![
            h("delivered"),
            j("/packets/to_backend"),
            Cell::Text("to the backends".into()),
            j("/packets/to_consumer"),
            Cell::Text("to the consumers".into()),
        ],
        vec![
            h("dropped"),
            Cell::Sum("/packets/dropped".into()),
            Cell::Text("every reason (below)".into()),
        ],
        vec![
            h("flows"),
            j("/flows/created"),
            Cell::Text("created".into()),
            j("/flows/active_peak"),
            Cell::Text("records at most".into()),
        ],
        vec![
            h("SNAT failures"),
            j("/flows/snat_failures"),
            Cell::Text("SYNs refused for want of a port".into()),
        ],
    ];
    if let Some(i) = busiest(doc) {
        head.push(vec![
            h("peak busy ports"),
            j(&format!("/nat_ips/{i}/ports_busy_peak")),
            Cell::Text("of".into()),
            j(&format!("/nat_ips/{i}/ports_total")),
            Cell::Text("on the busiest NAT IP:".into()),
            j(&format!("/nat_ips/{i}/ip")),
        ]);
    }
    p.raw(&table(doc, "head", &head));

    p.section("Over simulated time");
    if series.is_empty() {
        p.text("note", "No time series was taken in this run.");
    } else {
        p.raw(&plots(series));
    }

    p.section("Drops by reason");
    p.raw(&leaf_row(doc, "/packets/dropped", &|_| true));
    let drops: Vec<(String, f64)> = doc
        .pointer("/packets/dropped")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_u64().filter(|&n| n > 0).map(|n| (k.clone(), n as f64)))
                .collect()
        })
        .unwrap_or_default();
    if drops.is_empty() {
        p.text("note", "Nothing was dropped.");
    } else {
        p.raw(&svg::bars("Drops by reason", &drops));
    }

    p.section("Per NAT IP");
    p.text(
        "note",
        "Busy ports are ports in use plus ports held after a FIN or RST: what runs out.",
    );
    let n_ips = len(doc, "/nat_ips");
    p.raw(&objects(
        doc,
        "/nat_ips",
        &(0..n_ips.min(MAX_ROWS)).collect::<Vec<_>>(),
        &[
            "ip",
            "flows",
            "ports_total",
            "ports_in_use_peak",
            "ports_busy_peak",
            "ports_in_use_end",
            "ports_held_end",
        ],
        &|_| false,
    ));
    if n_ips > MAX_ROWS {
        p.text("note", &format!("The first {MAX_ROWS} of {n_ips} NAT IPs."));
    }
    if doc.pointer("/reuse").is_some() {
        p.section("Port reuse");
        p.raw(&leaf_row(doc, "/reuse", &|_| true));
    }

    p.section("Per connection");
    connections(&mut p, doc);

    p.section("Packets");
    p.raw(&leaf_row(doc, "/packets", &|ptr| {
        !ptr.starts_with("/packets/dropped")
    }));
    p.section("Input and flows");
    p.raw(&leaf_row(doc, "/input", &|_| true));
    p.raw(&leaf_row(doc, "/flows", &|_| true));

    p.section("Backends");
    let n_backends = len(doc, "/backends");
    p.raw(&objects(
        doc,
        "/backends",
        &(0..n_backends.min(MAX_ROWS)).collect::<Vec<_>>(),
        &["ip"],
        &|_| false,
    ));
    if doc.pointer("/tcp").is_some() {
        p.section("TCP");
        p.raw(&leaf_row(doc, "/tcp", &|_| true));
    }

    p.section("Latency and speed");
    p.text(
        "note",
        "Wall-clock time packets spent in the engine, in nanoseconds (the plot in \
         microseconds): it varies from run to run.",
    );
    p.raw(&leaf_row(doc, "/latency_ns", &|_| true));
    p.raw(&leaf_row(doc, "/throughput", &|_| true));
    p.raw(&table(
        doc,
        "kv",
        &[vec![h("sim_time_s"), j("/sim_time_s")]],
    ));
    if !latency.is_empty() {
        let points = latency
            .iter()
            .map(|&(q, ns)| (q * 100.0, ns as f64 / 1e3))
            .collect();
        p.raw(&svg::lines(
            "Latency distribution",
            "percentile",
            "microseconds",
            &[Line {
                label: "latency".into(),
                points,
                dashed: false,
            }],
        ));
    }
    p.finish(&title)
}

/// The index of the NAT IP with the most busy ports (the first of equals).
fn busiest(doc: &Value) -> Option<usize> {
    let ips = doc.pointer("/nat_ips")?.as_array()?;
    let peak = |i: usize| {
        ips[i]
            .pointer("/ports_busy_peak")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    (0..ips.len()).rev().max_by_key(|&i| peak(i))
}

/// The length of the array at `ptr` (0 when none).
pub(super) fn len(doc: &Value, ptr: &str) -> usize {
    doc.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// A two-column table of the leaves under `base` that `keep` keeps: name, figure.
pub(super) fn leaf_table(doc: &Value, base: &str, keep: &dyn Fn(&str) -> bool) -> String {
    let Some(v) = doc.pointer(base) else {
        return String::new();
    };
    let mut l = Vec::new();
    leaves(v, base, &mut l);
    let rows: Vec<Vec<Cell>> = l
        .into_iter()
        .filter(|(ptr, _)| keep(ptr))
        .map(|(ptr, _)| {
            let name = ptr[base.len()..].trim_start_matches('/').replace('_', " ");
            vec![Cell::Head(name), Cell::Json(ptr)]
        })
        .collect();
    table(doc, "kv", &rows)
}

/// A table of the leaves under `base` that `keep` keeps, side by side: a row of names, a row
/// of figures.
fn leaf_row(doc: &Value, base: &str, keep: &dyn Fn(&str) -> bool) -> String {
    let Some(v) = doc.pointer(base) else {
        return String::new();
    };
    let mut l = Vec::new();
    leaves(v, base, &mut l);
    let l: Vec<String> = l.into_iter().map(|(p, _)| p).filter(|p| keep(p)).collect();
    let names = l
        .iter()
        .map(|p| Cell::Head(p[base.len()..].trim_start_matches('/').replace('_', " ")))
        .collect();
    let figures = l.iter().map(|p| Cell::Json(p.clone())).collect();
    table(doc, "rows", &[names, figures])
}

/// The per-connection table: every connection, or the [`MAX_ROWS`] that opened the most flows
/// (in link id order) and a line for the rest. Drop reasons no connection counted are left
/// out.
fn connections(p: &mut Page, doc: &Value) {
    let Some(conns) = doc.pointer("/connections").and_then(Value::as_array) else {
        return;
    };
    let flows = |c: &Value| {
        c.pointer("/flows_created")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let mut shown: Vec<usize> = (0..conns.len()).collect();
    if conns.len() > MAX_ROWS {
        shown.sort_by_key(|&i| (std::cmp::Reverse(flows(&conns[i])), i));
        shown.truncate(MAX_ROWS);
        shown.sort_unstable();
    }
    let zero_drops = |col: &str| {
        col.starts_with("dropped/")
            && conns
                .iter()
                .all(|c| c.pointer(&format!("/{col}")).and_then(Value::as_u64) == Some(0))
    };
    p.raw(&objects(
        doc,
        "/connections",
        &shown,
        &[
            "link_id",
            "endpoint",
            "service",
            "state",
            "flows_created",
            "snat_failures",
        ],
        &zero_drops,
    ));
    if conns.len() > MAX_ROWS {
        let rest: u64 = (0..conns.len())
            .filter(|i| shown.binary_search(i).is_err())
            .map(|i| flows(&conns[i]))
            .sum();
        p.text(
            "note",
            &format!(
                "The {MAX_ROWS} connections that opened the most flows, of {}; the other {} opened {rest} flows (summary.json has every one).",
                conns.len(),
                conns.len() - MAX_ROWS
            ),
        );
    }
}

/// The plots of the time series: busy and in-use ports per NAT IP, live flows, SNAT failures.
fn plots(series: &[Sample]) -> String {
    let t0 = series.first().map_or(0.0, |s| s.t.as_secs_f64());
    let t = |s: &Sample| s.t.as_secs_f64() - t0;
    let mut ips = Vec::new();
    for s in series {
        for (ip, _) in &s.ports_in_use {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
    }
    let of =
        |v: &[(std::net::Ipv4Addr, u64)], ip| v.iter().find(|(i, _)| *i == ip).map_or(0, |x| x.1);
    let mut ports = Vec::new();
    for &ip in &ips {
        ports.push(Line {
            label: format!("{ip} busy"),
            points: series
                .iter()
                .map(|s| {
                    (
                        t(s),
                        (of(&s.ports_in_use, ip) + of(&s.ports_held_by_ip, ip)) as f64,
                    )
                })
                .collect(),
            dashed: false,
        });
        ports.push(Line {
            label: format!("{ip} in use"),
            points: series
                .iter()
                .map(|s| (t(s), of(&s.ports_in_use, ip) as f64))
                .collect(),
            dashed: true,
        });
    }
    let one = |label: &str, f: &dyn Fn(&Sample) -> u64| {
        vec![Line {
            label: label.into(),
            points: series.iter().map(|s| (t(s), f(s) as f64)).collect(),
            dashed: false,
        }]
    };
    format!(
        "<div class=\"plots\">{}{}{}</div>",
        svg::lines(
            "Ports per NAT IP: busy (in use + held), in use (dashed)",
            "simulated seconds",
            "ports",
            &ports
        ),
        svg::lines(
            "Live flows",
            "simulated seconds",
            "flow records",
            &one("live flows", &|s| s.live_flows)
        ),
        svg::lines(
            "SNAT failures so far",
            "simulated seconds",
            "failures",
            &one("SNAT failures", &|s| s.snat_failures)
        ),
    )
}
