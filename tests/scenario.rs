//! `plsim scenario` end to end, and a connection rejected in the middle of a replay.

mod common;

use std::path::Path;

use common::*;
use plsim_pcap::Reader;
use plsim_wire::{LinkType, classify};

fn default_toml() -> String {
    let out = plsim(&["scenario", "default"]);
    assert!(out.status.success());
    stdout(&out)
}

#[test]
fn the_default_scenario_checks() {
    let dir = scratch("scenario_default");
    let file = dir.join("s.toml");
    std::fs::write(&file, default_toml()).unwrap();
    let out = plsim(&["scenario", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok (1 services, 1 endpoints"));
}

fn check_fails(name: &str, edit: impl Fn(String) -> String, field: &str) {
    let dir = scratch(&format!("scenario_{name}"));
    let file = dir.join("s.toml");
    std::fs::write(&file, edit(default_toml())).unwrap();
    let out = plsim(&["scenario", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{name}: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("plsim: {}: ", file.display())),
        "{name}: {err}"
    );
    assert!(err.contains(field), "{name}: {err} names {field}");
    // The same file is refused by a replay too.
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/mix.pcap");
    let out = plsim(&[
        "replay",
        pcap.to_str().unwrap(),
        "--scenario",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{name}");
}

#[test]
fn nine_nat_ips_are_refused() {
    check_fails(
        "nine",
        |s| {
            s.replace(
                r#"nat_ips = ["10.10.1.4","#,
                r#"nat_ips = ["10.10.1.3", "10.10.1.4","#,
            )
        },
        "services[0].nat_ips",
    );
}

#[test]
fn auto_approval_outside_visibility_is_refused() {
    check_fails(
        "auto",
        |s| {
            s.replace(
                r#"auto_approval = ["sub-consumer"]"#,
                r#"auto_approval = ["sub-consumer", "sub-stranger"]"#,
            )
        },
        "services[0].auto_approval",
    );
}

#[test]
fn static_ip_outside_its_subnet_is_refused() {
    check_fails(
        "static",
        |s| s.replace(r#"private_ip = "10.0.0.4""#, r#"private_ip = "10.0.5.4""#),
        "endpoints[0].private_ip",
    );
}

#[test]
fn unknown_keys_and_bad_files() {
    check_fails(
        "unknown",
        |s| s.replace("seed = 42", "seed = 42\ncolour = \"blue\""),
        "colour",
    );
    let out = plsim(&["scenario", "check", "/nonexistent/s.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "plsim: /nonexistent/s.toml: no such file\n");
}

/// A connection approved at the start carries flows and is rejected 100 ms into the capture:
/// from that instant no packet of it passes either way, and every port it held is free.
#[test]
fn rejected_mid_run_stops_at_that_instant_and_frees_its_ports() {
    let dir = scratch("scenario_reject");
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        default_toml() + "\n[[timeline]]\nat = 0.1\naction = \"reject\"\nendpoint = \"pe-app\"\n",
    )
    .unwrap();
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/conversations-200.pcap");
    let out_dir = dir.join("out");
    let s = json(&plsim(&[
        "replay",
        "--json",
        pcap.to_str().unwrap(),
        "--scenario",
        file.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]));

    // What the capture holds at and after the instant, by side.
    let mut r = Reader::open(&pcap).unwrap();
    let (mut first, mut client_after, mut server_after) = (None, 0u64, 0u64);
    while let Some(p) = r.next_frame() {
        let t0 = *first.get_or_insert(p.ts_ns);
        let v = classify(LinkType::Ethernet, p.data, p.wire_len).unwrap();
        if p.ts_ns - t0 >= 100_000_000 {
            if v.tuple().src.octets()[0] == 10 {
                client_after += 1
            } else {
                server_after += 1
            }
        }
    }
    assert!(
        client_after > 500 && server_after > 300,
        "the capture goes on after the instant"
    );
    let d = &s["packets"]["dropped"];
    assert_eq!(
        d["not_approved"], client_after,
        "every consumer packet from the instant on"
    );
    assert_eq!(
        d["no_flow"], server_after,
        "every backend packet: its flow is gone"
    );
    assert_eq!(
        s["packets"]["to_backend"].as_u64().unwrap() + client_after,
        1000
    );
    assert_eq!(
        s["packets"]["to_consumer"].as_u64().unwrap() + server_after,
        600
    );
    assert!(s["flows"]["torn_down"].as_u64().unwrap() > 0);
    assert_eq!(s["flows"]["active_end"], 0, "no flow record left");
    for ip in s["nat_ips"].as_array().unwrap() {
        assert_eq!(ip["ports_in_use_end"], 0, "{ip}");
        assert_eq!(
            ip["ports_held_end"], 0,
            "{ip}: torn-down flows hold no port"
        );
    }
    // Nothing reached either side from that instant.
    let epoch = {
        let mut r = Reader::open(&pcap).unwrap();
        r.next_frame().unwrap().ts_ns
    };
    for f in ["backend.pcap", "consumer.pcap"] {
        let mut r = Reader::open(out_dir.join(f)).unwrap();
        let mut after = 0;
        while let Some(p) = r.next_frame() {
            let v = classify(LinkType::Ethernet, p.data, p.wire_len).unwrap();
            // Delivered: to a consumer host (10.200/16), or to a backend from a NAT IP (10.10.1/24).
            // Backends may still send on connections they think open: those are dropped.
            let t = v.tuple();
            let delivered = if f == "consumer.pcap" {
                t.dst.octets()[..2] == [10, 200]
            } else {
                t.src.octets()[..3] == [10, 10, 1]
            };
            if p.ts_ns - epoch >= 100_000_000 && delivered {
                after += 1;
            }
        }
        assert_eq!(after, 0, "{f}: nothing delivered after the rejection");
    }
}
