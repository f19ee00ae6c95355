//! Theory beside the runs, end to end: `plsim plan --rate R --hold S` answers by Erlang B, and
//! `--check` runs the matching Poisson workload through the path, whose loss agrees with the
//! theory's; on a bursty capture `plsim plan` shows the replays' loss and the theory's apart,
//! and says why.

mod common;

use common::*;
use plsim_traffic::captures::{conversations, write_pcap};

/// Poisson arrivals long enough: 150,000 flows each of 30 ports per NAT IP (per-ip reuse),
/// 0.256 flows a second each holding its port 250 s (lives of 10 s on average and the FIN
/// hold of 240 s), 64 erlangs. Erlang B: 0.5438 with one NAT IP, 0.1343 with two, 0.00039 with
/// three; the simulated loss is within 5% of each above 0.1%.
#[test]
fn simulated_loss_agrees_with_erlang_b() {
    let out = plsim(&[
        "plan",
        "--rate",
        "0.256",
        "--hold",
        "250",
        "--ports",
        "1024-1053",
        "--reuse",
        "per-ip",
        "--loss",
        "0.01",
        "--check",
        "--flows",
        "150000",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let a = json(&out);
    assert_eq!(a["nat_ips_needed"], 3);
    assert!((a["load_erlangs"].as_f64().unwrap() - 64.0).abs() < 1e-9);
    let counts = a["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 8);
    let mut compared = 0;
    for c in counts {
        let b = c["erlang_b"].as_f64().unwrap();
        let Some(sim) = c.get("simulated") else {
            assert!(c["nat_ips"].as_u64().unwrap() > 3, "{c}");
            continue;
        };
        assert_eq!(
            sim["flows"].as_u64().unwrap() + sim["snat_failures"].as_u64().unwrap(),
            150_000
        );
        let loss = sim["loss"].as_f64().unwrap();
        if b > 0.001 {
            assert!((loss - b).abs() <= 0.05 * b, "{c}");
            compared += 1;
        }
    }
    assert_eq!(compared, 2, "{a}");
    // The workload as it ran: the rate and the hold asked for.
    let m = &a["check"]["measured"];
    let rate = m["flows"].as_f64().unwrap() / m["span_s"].as_f64().unwrap();
    assert!((rate / 0.256 - 1.0).abs() < 0.01, "{m}");
    assert!(
        (m["hold_s"].as_f64().unwrap() / 250.0 - 1.0).abs() < 0.01,
        "{m}"
    );
}

/// A capture of Poisson arrivals, long enough: the worked example's workload
/// (`docs/allocators.toml`: one flow a second, each holding its port 40 s, 60,000 flows, 1,500
/// mean holds) on four ports per NAT IP, so that every count loses a quarter of the flows or
/// more. Each count replayed apart (`plan --point K`, then `plan merge`, so every count has its
/// replay): the replays' loss agrees with Erlang B for the load the capture offered within 5%
/// at every count, and no count parts; the plan of the one machine, whose one replay at eight
/// NAT IPs loses, agrees there too.
#[test]
fn a_plan_of_a_poisson_capture_agrees_with_erlang_b() {
    let dir = scratch("theory_poisson_capture");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/allocators.toml");
    let example = std::fs::read_to_string(example).unwrap();
    assert!(example.contains(r#"ports = "1024-1031""#));
    let scenario = dir.join("four-ports.toml");
    std::fs::write(
        &scenario,
        example.replace(r#"ports = "1024-1031""#, r#"ports = "1024-1027""#),
    )
    .unwrap();
    let scenario = scenario.to_str().unwrap();
    let pcap = dir.join("poisson.pcap");
    let pcap = pcap.to_str().unwrap();
    let made = plsim(&[
        "generate",
        "workload",
        "--scenario",
        scenario,
        "--out",
        pcap,
    ]);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let pts = dir.join("pts");
    for k in 0..8 {
        let k = k.to_string();
        let args = ["plan", pcap, "--scenario", scenario, "--point", &k, "--out"];
        let r = plsim(&[&args[..], &[pts.to_str().unwrap()]].concat());
        assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    }
    let check = |t: &serde_json::Value, replayed: usize| {
        let off = &t["offered"];
        assert_eq!(off["flows"], 60_000, "{off}");
        let load = off["load_erlangs"].as_f64().unwrap();
        assert!((load / 40.0 - 1.0).abs() < 0.02, "{off}");
        let d = off["measure"]["dispersion"]["index"].as_f64().unwrap();
        assert!((d - 1.0).abs() < 0.1, "{off}");
        let mut compared = 0;
        for c in t["counts"].as_array().unwrap() {
            let Some(replay) = c["replay_loss"].as_f64() else {
                continue;
            };
            let theory = c["erlang_b"].as_f64().unwrap();
            assert!(theory > 0.2, "{c}");
            assert!((replay - theory).abs() <= 0.05 * theory, "{c}");
            assert_eq!(c["parts"], false, "{c}");
            compared += 1;
        }
        assert_eq!(compared, replayed, "{t}");
        assert_eq!(t["reasons"].as_array().unwrap().len(), 0, "{t}");
    };
    let merged = json(&plsim(&["plan", "merge", pts.to_str().unwrap(), "--json"]));
    check(&merged["theory"], 8);
    let alone = json(&plsim(&["plan", pcap, "--scenario", scenario, "--json"]));
    assert_eq!(alone["nat_ips_needed"], serde_json::Value::Null);
    check(&alone["theory"], 1);
    for n in 0..8 {
        let (a, m) = (
            &alone["theory"]["counts"][n],
            &merged["theory"]["counts"][n],
        );
        assert_eq!(a["erlang_b"], m["erlang_b"]);
    }
}

/// Per-backend reuse: each of two backends offered half the flows, each its own 30 ports per
/// NAT IP: the same 64 erlangs a scope as above, the same loss with one NAT IP.
#[test]
fn per_backend_scopes_each_take_their_share() {
    let out = plsim(&[
        "plan",
        "--rate",
        "0.512",
        "--hold",
        "250",
        "--ports",
        "1024-1053",
        "--backends",
        "2",
        "--loss",
        "0.6",
        "--check",
        "--flows",
        "80000",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let a = json(&out);
    assert_eq!(
        (a["reuse"].as_str(), a["backends"].as_u64()),
        (Some("per-backend"), Some(2))
    );
    let one = &a["counts"][0];
    let b = one["erlang_b"].as_f64().unwrap();
    assert!((b - 0.543_766).abs() < 1e-6, "{one}");
    let loss = one["simulated"]["loss"].as_f64().unwrap();
    assert!((loss - b).abs() <= 0.05 * b, "{one}");
    assert!(a["counts"][1].get("simulated").is_none());
}

/// Without a capture: Erlang B at every count, the fewest for the loss asked, in words and in
/// JSON; the flags' rules.
#[test]
fn plan_from_a_rate_and_a_hold() {
    let out = plsim(&[
        "plan",
        "--rate",
        "2.5",
        "--hold",
        "245",
        "--ports",
        "1024-1535",
        "--reuse",
        "per-ip",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("2.5 flows a second holding their ports 245 s: 612 erlangs"),
        "{text}"
    );
    assert!(text.contains("      1        512     0.171596"), "{text}");
    assert!(
        text.contains("at most 0.001 of flows lost with 2 NAT IPs"),
        "{text}"
    );
    let a = json(&plsim(&[
        "plan",
        "--rate",
        "2.5",
        "--hold",
        "245",
        "--ports",
        "1024-1535",
        "--reuse",
        "per-ip",
        "--loss",
        "1e-60",
        "--json",
    ]));
    assert_eq!(a["nat_ips_needed"], 3);
    assert!((a["loss_target"].as_f64().unwrap() / 1e-60 - 1.0).abs() < 1e-9);
    assert!(a.get("check").is_none());
    // The built-in scenario: per-backend reuse over its four backends, 64,512 ports each.
    // 2,000 flows a second held 245 s: 122,500 erlangs a backend, too many for one NAT IP.
    let a = json(&plsim(&[
        "plan", "--rate", "2000", "--hold", "245", "--json",
    ]));
    assert_eq!(
        (a["backends"].as_u64(), a["ports_per_nat_ip"].as_u64()),
        (Some(4), Some(64_512))
    );
    assert_eq!(a["nat_ips_needed"], 2);
    assert!((a["counts"][0]["erlang_b"].as_f64().unwrap() - 0.473_381).abs() < 1e-6);
    for bad in [
        &["plan", "--rate", "1"][..],
        &["plan", "--hold", "1"],
        &["plan", "--rate", "0", "--hold", "1"],
        &["plan", "--rate", "1", "--hold", "1", "--loss", "1"],
        &["plan", "--rate", "1", "--hold", "1", "--list"],
        &["plan", "pcaps/mix.pcap", "--rate", "1", "--hold", "1"],
        &["plan", "pcaps/mix.pcap", "--check"],
        &["plan", "--rate", "1", "--hold", "1", "--flows", "10"],
    ] {
        let out = plsim(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}

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
