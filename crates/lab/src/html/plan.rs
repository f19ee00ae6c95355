//! The report of a plan: the answer, and each NAT IP count's replay, its columns whatever the
//! plan's JSON holds for a run (so that columns added to a run appear without a change here).

use serde_json::Value;

use super::page::{Cell, Page, objects, table};
use super::run::{leaf_table, len};
use super::svg::{self, Line};
use super::{RunMeta, ran};

/// The report of a plan whose JSON is `plan` (as `plan.json` holds it).
pub fn plan(meta: &RunMeta, plan: &Value) -> String {
    let title = format!("plsim plan: {}", meta.input);
    let mut p = Page::new(&title);
    ran(&mut p, meta);
    p.section("The answer");
    let get = |k: &str| plan.get(k).filter(|v| !v.is_null());
    let answer = match (get("nat_ips_needed"), get("nat_ips_enough")) {
        (Some(_), _) => "/nat_ips_needed",
        (None, Some(_)) => "/nat_ips_enough",
        (None, None) => "/nat_ips_available",
    };
    let words = match answer {
        "/nat_ips_needed" => "NAT IPs: the fewest that lose no flow to port exhaustion",
        "/nat_ips_enough" => "NAT IPs lose no flow (interrupted: fewer were not all tried)",
        _ => "NAT IPs, every one the scenario has, are not enough: flows lost",
    };
    let mut head = vec![vec![Cell::Json(answer.into()), Cell::Text(words.into())]];
    if answer == "/nat_ips_available" {
        head.push(vec![
            Cell::Json("/snat_failures".into()),
            Cell::Text("SNAT failures".into()),
        ]);
    }
    p.raw(&table(plan, "head", &head));
    p.raw(&leaf_table(plan, "", &|ptr| {
        !ptr.starts_with("/runs") && !ptr.starts_with("/theory/counts")
    }));

    p.section("Each NAT IP count's replay");
    let n = len(plan, "/runs");
    p.raw(&objects(
        plan,
        "/runs",
        &(0..n).collect::<Vec<_>>(),
        &["nat_ips", "flows", "snat_failures"],
        &|_| false,
    ));
    let runs = plan
        .get("runs")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut points: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|r| {
            Some((
                r.get("nat_ips")?.as_f64()?,
                r.get("snat_failures")?.as_f64()?,
            ))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !points.is_empty() {
        let bars: Vec<(String, f64)> = points
            .iter()
            .map(|&(n, f)| (format!("{n} NAT IPs"), f))
            .collect();
        p.raw(&format!(
            "<div class=\"plots\">{}{}</div>",
            svg::bars("SNAT failures by NAT IP count", &bars),
            svg::lines(
                "SNAT failures against NAT IPs",
                "NAT IPs",
                "SNAT failures",
                &[Line {
                    label: "replay".into(),
                    points,
                    dashed: false
                }]
            ),
        ));
    }
    theory(&mut p, plan);
    p.finish(&title)
}

/// The theory beside the replays, where the plan has it: each NAT IP count's Erlang B loss for
/// the load the capture offered, beside the replay's loss, and the plot of both.
fn theory(p: &mut Page, plan: &Value) {
    let n = len(plan, "/theory/counts");
    if n == 0 {
        return;
    }
    p.section("Theory beside the replays: Erlang B");
    p.text(
        "note",
        "Each NAT IP count's share of flows lost by Erlang B, for the load the capture offered \
         (its rate of new flows times the mean time a flow holds its port, per port scope), \
         beside the replay's loss where that count was replayed; parts says where the two \
         differ by more than the theory explains.",
    );
    p.raw(&objects(
        plan,
        "/theory/counts",
        &(0..n).collect::<Vec<_>>(),
        &["nat_ips", "ports", "replay_loss", "erlang_b", "parts"],
        &|_| false,
    ));
    let counts = plan
        .pointer("/theory/counts")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let line = |key: &str| -> Vec<(f64, f64)> {
        counts
            .iter()
            .filter_map(|c| Some((c.get("nat_ips")?.as_f64()?, c.get(key)?.as_f64()?)))
            .collect()
    };
    p.raw(&format!(
        "<div class=\"plots\">{}</div>",
        svg::lines(
            "Share of flows lost against NAT IPs",
            "NAT IPs",
            "loss",
            &[
                Line {
                    label: "replay".into(),
                    points: line("replay_loss"),
                    dashed: false,
                },
                Line {
                    label: "Erlang B".into(),
                    points: line("erlang_b"),
                    dashed: true,
                },
            ]
        ),
    ));
}
