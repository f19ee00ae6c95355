use plsim_control::Scenario;
use plsim_engine::NoTaps;
use serde_json::{Value, json};

use super::*;
use crate::replay::Frames;
use crate::run::{RunSpec, run as run_path};

/// A replay of the shipped mix with a time series, and its summary's JSON.
fn mix() -> (crate::run::Outcome, Value) {
    let frames = plsim_traffic::captures::conversations(50, 5_000_000, 200_000);
    let s = Scenario::builtin();
    let spec = RunSpec {
        sample_every: Some(std::time::Duration::from_millis(10)),
        ..RunSpec::new(&s)
    };
    let (out, _) = run_path(&mut Frames::new(&frames), &spec, NoTaps).unwrap();
    let doc = serde_json::to_value(&out.summary).unwrap();
    (out, doc)
}

fn meta() -> RunMeta {
    RunMeta {
        kind: "replay".into(),
        command: "plsim replay <x>.pcap".into(),
        version: "0".into(),
        input: "a <capture> & more".into(),
        fingerprint: Some("00ff".into()),
        scenario: "service <a>".into(),
    }
}

#[test]
fn a_run_report_shows_every_figure_of_the_summary_as_it_is() {
    let (out, doc) = mix();
    let html = run(&meta(), &doc, &out.series, &out.latency);
    let n = check(&html, &doc).unwrap_or_else(|bad| panic!("{bad:#?}"));
    assert!(n > 50, "{n}");
    let figs: Vec<String> = figures(&html).into_iter().map(|f| f.pointer).collect();
    let mut want = Vec::new();
    for base in [
        "/packets",
        "/flows",
        "/input",
        "/nat_ips",
        "/backends",
        "/reuse",
        "/latency_ns",
    ] {
        page::leaves(doc.pointer(base).unwrap(), base, &mut want);
    }
    for (ptr, _) in want {
        assert!(figs.contains(&ptr), "{ptr} is not on the page");
    }
    for c in [
        "link_id",
        "flows_created",
        "to_backend",
        "to_consumer",
        "snat_failures",
    ] {
        assert!(figs.contains(&format!("/connections/0/{c}")), "{c}");
    }
    // Escaped, self-contained, with its plots.
    assert!(html.contains("a &lt;capture&gt; &amp; more") && !html.contains("<capture>"));
    assert!(html.contains("default-src 'none'"));
    for bad in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(bad), "{bad}");
    }
    assert!(html.matches("<svg").count() >= 4, "plots missing");
    assert!(html.contains("Ports per NAT IP"));
}

#[test]
fn a_table_that_disagrees_with_the_summary_is_caught() {
    let (out, doc) = mix();
    let html = run(&meta(), &doc, &out.series, &out.latency);
    let mut other = doc.clone();
    other["flows"]["created"] = json!(doc["flows"]["created"].as_u64().unwrap() + 1);
    let bad = check(&html, &other).unwrap_err();
    assert_eq!(bad.len(), 2, "{bad:#?}"); // the headline and the flows table
    assert!(bad[0].starts_with("/flows/created"), "{bad:#?}");
    other = doc.clone();
    other["packets"]["dropped"]["malformed"] = json!(12345);
    let bad = check(&html, &other).unwrap_err();
    assert!(
        bad.iter().any(|b| b.starts_with("/packets/dropped:")),
        "{bad:#?}"
    );
    other = doc.clone();
    other["latency_ns"]["p50"] = json!(doc["latency_ns"]["p50"].as_u64().unwrap() + 1);
    assert!(check(&html, &other).is_err());
    assert!(check("<html></html>", &doc).is_err());
}

#[test]
fn floats_agree_to_the_digits_shown() {
    assert!(agrees("0.1235", &json!(0.123456)));
    assert!(!agrees("0.1236", &json!(0.123456)));
    assert!(agrees("12346", &json!(12345.6)));
    assert!(!agrees("12345", &json!(12346)));
    assert!(agrees("yes", &json!(true)));
    assert!(agrees("\u{2014}", &Value::Null));
}

#[test]
fn a_plan_report_shows_every_column_of_its_runs_even_new_ones() {
    let doc = json!({
        "nat_ips_needed": 2, "nat_ips_available": 8, "ports_per_nat_ip": 64512,
        "reuse": "per-backend", "timers": {"idle": 240, "fin_hold": 0},
        "peak_concurrent_flows": 100, "peak_ports_per_nat_ip": 90, "ports_total_per_nat_ip": 1000,
        "headroom": 0.91, "snat_failures": 0, "interrupted": false, "nat_ips_enough": 2,
        "runs": [
            {"nat_ips": 1, "flows": 10, "snat_failures": 3, "erlang_b": 0.25},
            {"nat_ips": 2, "flows": 13, "snat_failures": 0, "erlang_b": 0.01}
        ]
    });
    let html = plan(&meta(), &doc);
    check(&html, &doc).unwrap_or_else(|bad| panic!("{bad:#?}"));
    let figs: Vec<String> = figures(&html).into_iter().map(|f| f.pointer).collect();
    for p in [
        "/runs/1/erlang_b",
        "/runs/0/snat_failures",
        "/nat_ips_needed",
        "/headroom",
        "/timers/idle",
    ] {
        assert!(figs.contains(&p.to_string()), "{p}");
    }
    assert!(html.contains("<svg"));
}

#[test]
fn a_sweep_report_has_every_point_and_a_plot_per_varied_setting() {
    let row = |n: u8, alloc: &str, f: u64| {
        json!({"nat_ips": n, "allocator": alloc, "ports": null, "idle": null, "fin_hold": null,
               "load": null, "flows": 100 - f, "snat_failures": f, "failure_rate": f as f64 / 100.0,
               "peak_ports_in_use": 50, "peak_ports_busy": 60, "peak_flows": 70, "packets": 900,
               "dropped": f})
    };
    let doc = json!([
        row(1, "sequential", 30),
        row(1, "random", 20),
        row(2, "sequential", 3),
        row(2, "random", 0)
    ]);
    let html = sweep(&meta(), "sweep of x", &doc);
    let n = check(&html, &doc).unwrap_or_else(|bad| panic!("{bad:#?}"));
    assert_eq!(
        n,
        4 * 10,
        "every point's settings that vary, and eight results"
    );
    assert_eq!(
        html.matches("<svg").count(),
        4,
        "two settings vary, two plots each"
    );
}
