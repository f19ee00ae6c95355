//! What a run can't serve is refused before it starts, with the limit in words and exit status
//! 2 (a flag asks too much) or 1 (a scenario file does, with its line); what it can serve but
//! takes long still stops at the first Ctrl-C.

mod common;

use std::time::{Duration, Instant};

use common::{plsim, scratch, stderr, stdout};

/// Runs plsim, killing it (and failing) when it has not ended within `limit`.
fn plsim_within(args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plsim"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs plsim and expects it refused up front with exit status `code` and `words` in its
/// error.
fn refused(args: &[&str], code: i32, words: &str) -> String {
    let o = plsim_within(args, Duration::from_secs(30));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(words), "{args:?}: {err}");
    err
}

/// The rate limit's words: what simulated time can tell apart.
const RATE_LIMIT: &str =
    "simulated time can tell apart: it counts whole nanoseconds, so at most 1e9 flows a second";

#[test]
fn an_arrival_rate_simulated_time_cant_tell_apart_is_a_usage_error() {
    for arrivals in ["poisson:1e15", "constant:1e15", "poisson:1000000001"] {
        let err = refused(&["simulate", "--arrivals", arrivals, "-q"], 2, RATE_LIMIT);
        assert!(err.contains("try '--help'"), "worded as clap's: {err}");
    }
    // One a nanosecond is the most, and runs.
    let o = plsim(&[
        "simulate",
        "--arrivals",
        "constant:1e9",
        "--flows",
        "1000",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_sweeps_load_times_the_workloads_rate_is_checked_before_any_point_runs() {
    let out = scratch("limits-sweep-load");
    // The built-in workload is poisson:100: 1e13 times that is 1e15 flows a second. A first
    // point at load 1 would run fine (and take a while): the product is refused before it.
    let err = refused(
        &["sweep", "--load", "1,1e13", "--out", out.to_str().unwrap()],
        2,
        RATE_LIMIT,
    );
    assert!(err.contains("--load 10000000000000"), "{err}");
    assert!(err.contains("try '--help'"), "a usage error: {err}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing written"
    );
    // With the flag's own rate, the product is the flag's.
    refused(
        &[
            "sweep",
            "--arrivals",
            "constant:2e8",
            "--load",
            "10",
            "--out",
            out.to_str().unwrap(),
        ],
        2,
        RATE_LIMIT,
    );
}

#[test]
fn a_scenarios_rate_is_a_problem_with_its_line() {
    let dir = scratch("limits-scenario-rate");
    let builtin = stdout(&plsim(&["scenario", "default"]));
    let text = builtin.replace(
        "kind = \"poisson\"\nrate = 100.0",
        "kind = \"poisson\"\nrate = 1e15",
    );
    assert_ne!(text, builtin, "the built-in workload is poisson:100");
    let line = text
        .lines()
        .position(|l| l == "rate = 1e15")
        .expect("the rate's line")
        + 1;
    let file = dir.join("fast.toml");
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();
    let err = refused(&["scenario", "check", f], 1, RATE_LIMIT);
    assert!(
        err.contains(&format!("line {line}: workload.arrival.rate: ")),
        "{err}"
    );
    // And a run of it is refused the same way, before it starts.
    refused(&["simulate", "--scenario", f, "-q"], 1, RATE_LIMIT);
}

/// A workload it can serve, whose every flow holds the one host's client ports for a day:
/// between two packets the generator starts (and finds no port for) a billion flows a second
/// of the gap. The first Ctrl-C still stops it, with its summary.
#[test]
#[cfg(unix)]
fn a_workload_that_starts_flows_far_ahead_of_its_next_packet_stops_at_the_first_ctrl_c() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plsim"))
        .args(["simulate", "--arrivals", "constant:1e9", "--hosts", "1"])
        .args(["--durations", "fixed:86400", "--until", "100000", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let asked = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if asked.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the first Ctrl-C did not stop the run in 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    let s: serde_json::Value = serde_json::from_slice(&done.stdout).expect("the summary");
    assert_eq!(s["interrupted"], true);
    assert!(
        s["input"]["packets"].as_u64().unwrap() > 0,
        "it ran a while"
    );
}

#[test]
fn more_tcp_connections_than_client_ports_is_a_usage_error_with_the_limit() {
    refused(
        &[
            "simulate",
            "--workload",
            "tcp",
            "--connections",
            "4294967295",
        ],
        2,
        "--connections 4294967295: a TCP run has at most 6384000 connections, one for each \
         client port (250 client hosts, ports 40000 to 65535 of each)",
    );
}

/// Runs plsim under an address-space limit of `kib` KiB (`ulimit -v`): a machine with that
/// little memory for it, whatever the machine running the test has.
#[cfg(unix)]
fn plsim_limited(kib: u64, args: &[&str]) -> std::process::Output {
    let mut sh = vec![
        "-c".to_owned(),
        format!("ulimit -v {kib} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_plsim").to_owned(),
    ];
    sh.extend(args.iter().map(|a| a.to_string()));
    let sh: Vec<&str> = sh.iter().map(String::as_str).collect();
    let mut child = std::process::Command::new("sh")
        .args(&sh)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still ran after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// What a run needs in memory is checked against what the process can have before it starts:
/// exit 2 saying both, never an abort (134) once the allocator fails.
#[test]
#[cfg(unix)]
fn runs_that_need_more_memory_than_there_is_are_refused_up_front() {
    let two_gib = 2 << 20;
    for (args, words) in [
        (
            &["bench", "--no-reference", "--flows", "100000000"][..],
            "--flows 100000000 needs about 15.0 GiB (160 bytes a flow); its address-space \
             limit (ulimit -v) leaves ",
        ),
        (
            &[
                "simulate",
                "--workload",
                "tcp",
                "--connections",
                "100000",
                "-q",
            ][..],
            "--connections 100000 needs about 12.6 GiB (132.0 KiB a connection); its \
             address-space limit (ulimit -v) leaves ",
        ),
    ] {
        let o = plsim_limited(two_gib, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
    // What fits runs.
    let o = plsim_limited(
        two_gib,
        &[
            "simulate",
            "--workload",
            "tcp",
            "--connections",
            "10",
            "--bytes",
            "1000",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = plsim_limited(two_gib, &["bench", "--flows", "1000", "--packets", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
