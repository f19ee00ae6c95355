//! Theory beside the runs, end to end: on a bursty capture `plsim plan` shows the replays' loss
//! and the theory's apart, and says why.

mod common;

use common::*;
use plsim_traffic::captures::{conversations, write_pcap};

/// Bursts of a hundred conversations every ten seconds, each holding its port a second after
/// its close: ten flows a second, about ten erlangs, but a hundred at once. Erlang B loses
/// little with two NAT IPs of ten ports; the replays lose most of each burst. Both columns are
/// there, they part, and the plan says the arrivals come in bursts.
#[test]
fn a_bursty_capture_parts_from_the_theory_and_says_why() {
    let dir = scratch("theory_bursts");
    let mut frames = Vec::new();
    for b in 0..30u64 {
        frames.extend(
            conversations(100, 1_000, 1_000_000)
                .into_iter()
                .map(|mut f| {
                    f.ts_ns += b * 10_000_000_000;
                    f
                }),
        );
    }
    let pcap = dir.join("bursts.pcap");
    write_pcap(&pcap, &frames).unwrap();
    let scenario = dir.join("fin-hold-1.toml");
    let builtin = stdout(&plsim(&["scenario", "default"]));
    assert!(builtin.contains("fin_hold = 240"));
    std::fs::write(&scenario, builtin.replace("fin_hold = 240", "fin_hold = 1")).unwrap();
    let args = [
        "plan",
        pcap.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--ports",
        "1024-1033",
        "--reuse",
        "per-ip",
    ];
    let out = plsim(&[&args[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = json(&out);
    assert_eq!(plan["nat_ips_needed"], serde_json::Value::Null);
    let t = &plan["theory"];
    let off = &t["offered"];
    assert_eq!(off["flows"], 3000);
    let hold = off["hold_s"].as_f64().unwrap();
    assert!((hold - 1.0025).abs() < 1e-6, "{off}");
    let d = &off["measure"]["dispersion"];
    assert!(d["index"].as_f64().unwrap() > 50.0, "{d}");
    let counts = t["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 8);
    // The one replay (at eight NAT IPs, 80 ports: 20 of each burst of 100 lost) against the
    // theory's next to nothing.
    let eight = &counts[7];
    assert_eq!(eight["replay_loss"], 0.2);
    assert!(eight["erlang_b"].as_f64().unwrap() < 1e-20, "{eight}");
    assert_eq!(eight["parts"], true);
    assert!(counts[0]["replay_loss"].is_null());
    let reasons: Vec<&str> = t["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("arrivals come in bursts: index of dispersion")),
        "{reasons:?}"
    );
    // In words: both columns, and why.
    let text = stdout(&plsim(&args));
    assert!(
        text.contains("NAT IPs      ports   replay loss     Erlang B"),
        "{text}"
    );
    assert!(
        text.contains("        8         80      0.200000"),
        "{text}"
    );
    assert!(text.contains("they part"), "{text}");
    assert!(
        text.contains("where they part: arrivals come in bursts"),
        "{text}"
    );
}
