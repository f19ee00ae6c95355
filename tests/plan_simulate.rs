//! `plsim plan` and `plsim simulate` end to end.

mod common;

use std::path::Path;

use common::*;

fn shipped(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn plan_says_three_for_three_thousand_syns_and_replays_agree() {
    let pcap = shipped("syns-3000.pcap");
    let plan = json(&plsim(&[
        "plan",
        &pcap,
        "--ports",
        "1024-2023",
        "--reuse",
        "per-ip",
        "--json",
    ]));
    assert_eq!(plan["nat_ips_needed"], 3);
    assert_eq!(plan["peak_concurrent_flows"], 3000);
    assert_eq!(plan["peak_ports_per_nat_ip"], 1000);
    assert_eq!(plan["headroom"], 0.0);
    // Replays agree at that count and one fewer.
    let at = |n: &str| {
        json(&plsim(&[
            "replay",
            "--json",
            &pcap,
            "--ports",
            "1024-2023",
            "--reuse",
            "per-ip",
            "--nat-ips",
            n,
        ]))
    };
    assert_eq!(at("3")["flows"]["snat_failures"], 0);
    assert_eq!(at("2")["flows"]["snat_failures"], 1000);
}

#[test]
fn plan_when_even_eight_are_not_enough() {
    let pcap = shipped("syns-3000.pcap");
    let plan = json(&plsim(&[
        "plan",
        &pcap,
        "--ports",
        "1024-1123",
        "--reuse",
        "per-ip",
        "--json",
    ]));
    assert_eq!(plan["nat_ips_needed"], serde_json::Value::Null);
    assert_eq!(plan["snat_failures"], 3000 - 800);
}

#[test]
fn plan_on_a_real_capture_agrees_with_replays() {
    let Some(dir) = real_pcaps() else { return };
    let pcap = dir.join("pcapplusplus_example.pcap");
    let pcap = pcap.to_str().unwrap();
    // Seven ports per NAT IP and backend: the 21 concurrent flows need more than one NAT IP.
    let plan = json(&plsim(&["plan", pcap, "--ports", "1024-1030", "--json"]));
    let n = plan["nat_ips_needed"].as_u64().expect("a count") as usize;
    assert!(n > 1, "{plan}");
    let failures = |k: usize| {
        let s = json(&plsim(&[
            "replay",
            "--json",
            pcap,
            "--ports",
            "1024-1030",
            "--nat-ips",
            &k.to_string(),
        ]));
        s["flows"]["snat_failures"].as_u64().unwrap()
    };
    assert_eq!(failures(n), 0);
    assert!(failures(n - 1) > 0);
}

#[test]
fn simulate_is_deterministic_and_writes_its_outputs() {
    let dir = scratch("simulate");
    let args = [
        "simulate",
        "--json",
        "--flows",
        "3000",
        "--arrivals",
        "poisson:500",
        "--durations",
        "exp:2",
        "--seed",
        "7",
    ];
    let strip = |mut v: serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("latency_ns");
        o.remove("throughput");
        v
    };
    let a = strip(json(&plsim(&args)));
    let b = strip(json(&plsim(&args)));
    assert_eq!(a, b, "the same seed gives the same summary");
    assert_eq!(a["flows"]["created"], 3000);
    assert_eq!(a["flows"]["closed"], 3000);
    assert_eq!(a["flows"]["snat_failures"], 0);
    let p = &a["packets"];
    assert_eq!(p["consumer_in"], p["to_backend"]);
    assert_eq!(p["backend_in"], p["to_consumer"]);
    let mut other = args.to_vec();
    other[9] = "8";
    assert_ne!(
        strip(json(&plsim(&other)))["sim_time_s"],
        a["sim_time_s"],
        "another seed, another run"
    );

    let out = dir.join("out");
    let mut with_out = args.to_vec();
    with_out.extend(["--out", out.to_str().unwrap(), "--sample-every", "0.5"]);
    json(&plsim(&with_out));
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("t_s,live_flows,snat_failures,ports_held,ports_in_use_10.10.1.4,"),
        "{header}"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() > 10);
    assert!(
        rows.windows(2).all(|w| w[0][0] < w[1][0]),
        "time goes forward"
    );
    assert_eq!(
        rows.last().unwrap()[1],
        3000.0,
        "3,000 flow records at the end (closed, ports held)"
    );
    assert_eq!(rows.last().unwrap()[3], 3000.0, "their 3,000 ports held");
    for f in ["summary.json", "consumer.pcap", "backend.pcap"] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn simulate_rejects_bad_workload_flags() {
    for (flag, value) in [
        ("--arrivals", "sometimes:5"),
        ("--durations", "exp:-1"),
        ("--close", "slam"),
    ] {
        let out = plsim(&["simulate", flag, value]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
    }
}

#[test]
fn a_sweep_over_nat_ips_shows_failures_falling_to_zero_where_plan_says() {
    let dir = scratch("sweep_nat_ips");
    let pcap = shipped("syns-3000.pcap");
    let out = plsim(&[
        "sweep",
        &pcap,
        "--nat-ips",
        "1..8",
        "--ports",
        "1024-2023",
        "--reuse",
        "per-ip",
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ]);
    let rows = json(&out);
    let rows = rows.as_array().unwrap();
    let failures: Vec<u64> = rows
        .iter()
        .map(|r| r["snat_failures"].as_u64().unwrap())
        .collect();
    assert_eq!(failures, [2000, 1000, 0, 0, 0, 0, 0, 0]);
    let plan = json(&plsim(&[
        "plan",
        &pcap,
        "--ports",
        "1024-2023",
        "--reuse",
        "per-ip",
        "--json",
    ]));
    let first_zero = rows.iter().find(|r| r["snat_failures"] == 0).unwrap()["nat_ips"].clone();
    assert_eq!(first_zero, plan["nat_ips_needed"]);
    let csv = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);
    assert!(
        csv.lines()
            .nth(3)
            .unwrap()
            .starts_with("3,,1024-2023,,,,3000,0,0.000000,1000,"),
        "{csv}"
    );
    for f in ["sweep.svg", "sweep.png"] {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 1000, "{f}");
    }
}

#[test]
fn a_sweep_of_the_workload_over_load_and_allocators() {
    let dir = scratch("sweep_load");
    let rows = json(&plsim(&[
        "sweep",
        "--load",
        "1,4",
        "--allocators",
        "sequential,random",
        "--nat-ips",
        "1",
        "--ports",
        "1024-1123",
        "--reuse",
        "per-ip",
        "--flows",
        "400",
        "--arrivals",
        "poisson:200",
        "--durations",
        "fixed:1",
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert_eq!(
            r["flows"].as_u64().unwrap() + r["snat_failures"].as_u64().unwrap(),
            400,
            "{r}"
        );
        assert!(r["peak_ports_in_use"].as_u64().unwrap() <= 100);
    }
    let out = plsim(&[
        "sweep",
        shipped("mix.pcap").as_str(),
        "--load",
        "2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// A sweep over the FIN hold: ports gained against hazards, every column worked out by hand.
/// The project's generator makes six flows a second apart, each closed by the server's FIN a
/// second after its SYN (the client's FIN, the close, 0.5 ms later), to one backend, on two
/// ports of one NAT IP. With no hold, flow k + 2 takes flow k's port 0.9995 s after its close:
/// four reuses, all hazards (the backend began the close, well within its 60 s TIME_WAIT).
/// With a hold of 1 s, flow 2 finds its port held 0.5 ms more and the other in use (refused),
/// flow 3 takes flow 0's port and flow 4 flow 1's, 1.9995 s after their closes, flow 5 is
/// refused again: two reuses, two hazards. With 240 s only the first two flows get a port.
/// Whichever port the allocator picks, there are only ever the two: random gives the same.
#[test]
fn a_sweep_over_the_fin_hold_counts_every_reuse_and_hazard() {
    let dir = scratch("sweep_fin_hold");
    let builtin = stdout(&plsim(&["scenario", "default"]));
    let pool = r#"backends = ["10.10.2.4", "10.10.2.5", "10.10.2.6", "10.10.2.7"]"#;
    let at = builtin.find("[workload]").unwrap();
    assert!(builtin.contains(pool));
    let scenario = builtin[..at].replace(pool, r#"backends = ["10.10.2.4"]"#)
        + "[workload]\nhosts_per_endpoint = 1\npackets_per_flow = 2\nbytes_per_flow = 0\n\
           close = \"server-fin\"\nflows = 6\n\n[workload.arrival]\nkind = \"constant\"\n\
           rate = 1.0\n\n[workload.flow_duration]\nkind = \"fixed\"\nsecs = 1.0\n";
    let toml = dir.join("one-backend.toml");
    std::fs::write(&toml, scenario).unwrap();
    let pcap = dir.join("server-fin.pcap");
    let toml = toml.to_str().unwrap();
    let made = plsim(&[
        "generate",
        "workload",
        "--scenario",
        toml,
        "--out",
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let out = dir.join("sweep");
    let rows = json(&plsim(&[
        "sweep",
        pcap.to_str().unwrap(),
        "--scenario",
        toml,
        "--fin-hold",
        "0,1,240",
        "--allocators",
        "sequential,random",
        "--nat-ips",
        "1",
        "--ports",
        "1024-1025",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    // (flows, failures, reuses, hazards, shortest gap) at each hold, for either allocator.
    let want = [
        (6, 0, 4, 4, Some(0.9995)),
        (4, 2, 2, 2, Some(1.9995)),
        (2, 4, 0, 0, None),
    ];
    for (r, w) in rows.iter().zip(want.iter().chain(want.iter())) {
        let got = (
            r["flows"].as_u64().unwrap(),
            r["snat_failures"].as_u64().unwrap(),
            r["reuses"].as_u64().unwrap(),
            r["hazards"].as_u64().unwrap(),
            r["gap_min_s"].as_f64(),
        );
        assert_eq!(got, *w, "{r}");
        // Every gap the same: the median is the shortest, to three significant digits.
        match w.4 {
            Some(g) => {
                let p50 = r["gap_p50_s"].as_f64().unwrap();
                assert!((p50 - g).abs() <= g * 1e-3, "{r}");
            }
            None => assert!(r["gap_p50_s"].is_null(), "{r}"),
        }
    }
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].ends_with(",packets,dropped,reuses,hazards,gap_min_s,gap_p50_s"),
        "{csv}"
    );
    assert!(lines[1].ends_with(",4,4,0.999500,0.999680"), "{csv}");
    assert!(lines[2].ends_with(",2,2,1.999500,1.999360"), "{csv}");
    assert!(
        lines[3].ends_with(",2,4,0.666667,2,2,2,48,32,0,0,,"),
        "{csv}"
    );
    for f in ["sweep.svg", "sweep.png"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 1000, "{f}");
    }
    let svg = std::fs::read_to_string(out.join("sweep.svg")).unwrap();
    assert!(
        svg.contains("hazards: reuses within TIME_WAIT"),
        "the hazards panel"
    );
}

#[test]
fn simulate_real_tcp_connections() {
    let s = json(&plsim(&[
        "simulate",
        "--workload",
        "tcp",
        "--connections",
        "20",
        "--bytes",
        "10000",
        "--json",
    ]));
    assert_eq!(
        s["tcp"],
        serde_json::json!({"connections": 20, "completed": 20, "bytes_verified": 200000})
    );
    assert_eq!(s["flows"]["created"], 20);
    assert_eq!(s["flows"]["closed"], 20);
    assert_eq!(
        s["flows"]["active_end"], 0,
        "every port free after the hold"
    );
    let p = &s["packets"];
    assert_eq!(p["consumer_in"], p["to_backend"]);
    assert_eq!(p["backend_in"], p["to_consumer"]);
    // A connection that is never approved: every packet refused, nothing completed.
    let dir = scratch("simulate_tcp_pending");
    let file = dir.join("s.toml");
    let toml = stdout(&plsim(&["scenario", "default"]))
        + "\n[[timeline]]\nat = 0\naction = \"reject\"\nendpoint = \"pe-app\"\n";
    std::fs::write(&file, toml).unwrap();
    let s = json(&plsim(&[
        "simulate",
        "--workload",
        "tcp",
        "--connections",
        "3",
        "--bytes",
        "100",
        "--json",
        "--scenario",
        file.to_str().unwrap(),
    ]));
    assert_eq!(s["tcp"]["completed"], 0);
    assert_eq!(
        s["packets"]["dropped"]["not_approved"],
        s["packets"]["consumer_in"]
    );
}

#[test]
fn bench_reports_its_figures() {
    let b = json(&plsim(&[
        "bench",
        "--flows",
        "2000",
        "--packets",
        "20000",
        "--json",
    ]));
    for key in [
        "mpps",
        "reference_mpps",
        "ratio",
        "flows",
        "packets",
        "setup_per_sec",
        "peak_rss_bytes",
    ] {
        assert!(b[key].is_number(), "{key}: {b}");
    }
    assert_eq!(b["flows"], 2000);
    assert_eq!(b["packets"], 20000);
    assert_eq!(b["backends"], 4);
    assert_eq!(
        b["delivered"], 20000,
        "every frame of a live flow gets through"
    );
    assert_eq!((&b["dropped"], &b["setup_dropped"]), (&0.into(), &0.into()));
    assert_eq!(b["complete"], true);
    assert!(b["mpps"].as_f64().unwrap() > 0.0);
    // Five rounds by default, the path then the reference loop in each, 4,000 frames apiece;
    // the ratio is the path's rate over the loop's, both over all rounds.
    let ratio_is_the_quotient = |v: &serde_json::Value| {
        let (p, q) = (
            v["mpps"].as_f64().unwrap(),
            v["reference_mpps"].as_f64().unwrap(),
        );
        assert!(
            (v["ratio"].as_f64().unwrap() - p / q).abs() < 1e-9 * (p / q),
            "{v}"
        );
    };
    let rounds = b["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 5);
    for r in rounds {
        assert_eq!(r["packets"], 4000, "{r}");
        ratio_is_the_quotient(r);
    }
    ratio_is_the_quotient(&b);
    // Without the reference loop: no reference figures; rounds as asked, even when there are
    // fewer frames than rounds (a round a frame then).
    let n = json(&plsim(&[
        "bench",
        "--flows",
        "2000",
        "--packets",
        "3",
        "--rounds",
        "7",
        "--no-reference",
        "--json",
    ]));
    assert_eq!(
        (&n["reference_mpps"], &n["ratio"]),
        (&().into(), &().into())
    );
    let rounds = n["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3, "{n}");
    assert!(
        rounds
            .iter()
            .all(|r| r["packets"] == 1 && r["ratio"].is_null())
    );
    assert_eq!((&n["delivered"], &n["complete"]), (&3.into(), &true.into()));
    // Flow state per live flow: one 64-byte connection record, the load balancer's 16-byte
    // part and the SNAT's 16-byte part in it, three keys in one index, one timer.
    let lb = b["bytes_per_flow"]["lb"].as_f64().unwrap();
    let snat = b["bytes_per_flow"]["snat"].as_f64().unwrap();
    let table = b["bytes_per_flow"]["table"].as_f64().unwrap();
    assert!(lb >= 16.0 && snat >= 16.0, "{b}");
    assert!(table >= 32.0 + 3.0 * 8.0 + 16.0, "{b}");
    // The sequential engine delivers the same.
    let s = json(&plsim(&[
        "bench",
        "--flows",
        "2000",
        "--packets",
        "20000",
        "--engine",
        "sequential",
        "--json",
    ]));
    assert_eq!(
        (&s["delivered"], &s["complete"]),
        (&20000.into(), &true.into())
    );
    assert_eq!(plsim(&["bench", "--flows", "0"]).status.code(), Some(2));
    // More flows than the bench's scenario can give ports to: refused, saying how many fit.
    let out = plsim(&["bench", "--flows", "4000000000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("holds at most"), "{}", stderr(&out));
}

/// `generate workload` writes exactly the packets `simulate` feeds the path: replaying the
/// capture gives the simulation's summary.
#[test]
fn a_generated_workload_replays_as_it_simulates() {
    let dir = scratch("generate_workload");
    let pcap = dir.join("w.pcap");
    let flags = [
        "--flows",
        "500",
        "--arrivals",
        "poisson:100",
        "--durations",
        "lognormal:0,1",
        "--close",
        "rst",
        "--seed",
        "3",
    ];
    let mut generate = vec!["generate", "workload", "--out", pcap.to_str().unwrap()];
    generate.extend(flags);
    assert!(plsim(&generate).status.success());
    let strip = |mut v: serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("latency_ns");
        o.remove("throughput");
        v
    };
    let mut sim = vec!["simulate", "--json"];
    sim.extend(flags);
    let simulated = strip(json(&plsim(&sim)));
    let replayed = strip(json(&plsim(&["replay", "--json", pcap.to_str().unwrap()])));
    assert_eq!(simulated, replayed);
    assert_eq!(simulated["flows"]["created"], 500);
    assert_eq!(simulated["flows"]["closed"], 500, "closed by RST");
}

/// Ctrl-C during `simulate --workload tcp`: the real TCP stacks stop where they are, the summary
/// says `interrupted` and counts what ran, and the exit status is 130.
#[test]
#[cfg(unix)]
fn an_interrupted_tcp_run_keeps_its_summary() {
    // Far more than runs in the second before the signal.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_plsim"))
        .args(["simulate", "--workload", "tcp", "--connections", "2000"])
        .args(["--bytes", "10000000", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: the TCP run stopped"), "{err}");
    let s: serde_json::Value = serde_json::from_slice(&done.stdout).expect("the summary");
    assert_eq!(s["interrupted"], true);
    assert!(s["tcp"]["completed"].as_u64().unwrap() < 2000);
    assert!(
        s["packets"]["consumer_in"].as_u64().unwrap() > 0,
        "it ran a while"
    );
}
