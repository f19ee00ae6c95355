//! Every shipped and shared capture (and the built-in workload) replays to the very results it
//! gave when these files were written: the summary (but its wall-clock parts), the time series
//! and both output captures, under a few settings that exercise every allocator and reuse scope.
//! A refactoring must leave them byte for byte; a change of behaviour rewrites them on purpose:
//! `PLSIM_BLESS=1 cargo test -p plsim-lab --test golden`, and the diff shows what changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plsim_control::Scenario;
use plsim_control::scenario::{Allocator, PortRange, ReuseScope};
use plsim_lab::path::Overrides;
use plsim_lab::replay::{PacketSource, PcapTaps};
use plsim_lab::run::{self as sim, RunSpec};
use plsim_lab::series::series_csv;
use plsim_lab::workload::{WorkloadFlags, Workloads};
use plsim_pcap::Reader;

/// The settings each capture is replayed under: a name and the overrides.
fn settings() -> Vec<(&'static str, Overrides, bool)> {
    vec![
        ("default", Overrides::default(), false),
        (
            "per-ip-random-pickup",
            Overrides {
                nat_ips: Some(2),
                ports: Some(PortRange::new(1024, 1033)),
                allocator: Some(Allocator::Random { seed: 7 }),
                reuse: Some(ReuseScope::PerIp),
                pickup: true,
            },
            true,
        ),
        (
            "block",
            Overrides {
                nat_ips: Some(3),
                ports: Some(PortRange::new(2000, 2063)),
                allocator: Some(Allocator::Block(4)),
                ..Overrides::default()
            },
            false,
        ),
    ]
}

/// FNV-1a, 64 bits: a fingerprint of a capture's bytes.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn run<S: PacketSource>(source: &mut S, scenario: &Scenario, pickup: bool) -> serde_json::Value {
    let spec = RunSpec {
        pickup,
        sample_every: Some(Duration::from_secs(1)),
        ..RunSpec::new(scenario)
    };
    let (out, taps) = sim::run(source, &spec, PcapTaps::in_memory()).expect("the run starts");
    let (_, consumer, backend) = taps.finish().expect("in memory");
    let mut summary = serde_json::to_value(&out.summary).unwrap();
    let o = summary.as_object_mut().unwrap();
    o.remove("latency_ns");
    o.remove("throughput");
    serde_json::json!({
        "summary": summary,
        "timeseries_csv": series_csv(&out.series),
        "consumer_pcap_fnv": fnv(&consumer),
        "backend_pcap_fnv": fnv(&backend),
    })
}

/// `got` must hold every key of `want` with the same value (new keys may come).
fn covers(got: &serde_json::Value, want: &serde_json::Value, at: &str) -> Result<(), String> {
    match (got, want) {
        (serde_json::Value::Object(g), serde_json::Value::Object(w)) => {
            for (k, wv) in w {
                let gv = g.get(k).ok_or_else(|| format!("{at}.{k} is gone"))?;
                covers(gv, wv, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (serde_json::Value::Array(g), serde_json::Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                covers(gv, wv, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        _ if got == want => Ok(()),
        _ => Err(format!("{at}: {got} where it was {want}")),
    }
}

fn check(name: &str, got: serde_json::Value) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("PLSIM_BLESS").is_some() {
        std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
    )
    .unwrap();
    if let Err(e) = covers(&got, &want, name) {
        panic!("{e}\n(PLSIM_BLESS=1 rewrites the golden files after a change on purpose)");
    }
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    v
}

fn replay_all(dir: &Path) {
    for path in captures(dir) {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for (setting, overrides, pickup) in settings() {
            let mut scenario = Scenario::builtin();
            overrides.apply(&mut scenario).unwrap();
            let Ok(mut reader) = Reader::open(&path) else {
                continue; // not a capture at all (the exit-code tests cover those)
            };
            let mut got = run(&mut reader, &scenario, pickup);
            got["summary"]["input"]["truncated"] = reader.truncated().into();
            check(&format!("{stem}.{setting}"), got);
        }
    }
}

#[test]
fn shipped_captures_replay_as_before() {
    replay_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pcaps"));
}

#[test]
fn real_captures_replay_as_before() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps-real");
    if !dir.is_dir() {
        eprintln!(
            "skipping: {} is absent (it sits beside the project in CI)",
            dir.display()
        );
        return;
    }
    replay_all(&dir);
}

#[test]
fn the_builtin_workload_runs_as_before() {
    let scenario = Scenario::builtin();
    let flags = WorkloadFlags {
        flows: Some(3_000),
        ..WorkloadFlags::default()
    };
    let mut specs = plsim_lab::workload::specs(&scenario, &flags).unwrap();
    specs[0].1.until_secs = None;
    let mut source = Workloads::new(&scenario, specs.clone()).unwrap();
    check("workload.builtin", run(&mut source, &scenario, false));
    let mut tight = scenario.clone();
    Overrides {
        nat_ips: Some(1),
        ports: Some(PortRange::new(1024, 1279)),
        ..Overrides::default()
    }
    .apply(&mut tight)
    .unwrap();
    let mut source = Workloads::new(&tight, specs).unwrap();
    check("workload.tight", run(&mut source, &tight, false));
}

#[test]
fn the_worked_example_replays_as_before() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("docs/tenants.toml")).unwrap();
    let scenario = Scenario::from_toml_str(&text).unwrap();
    let mut reader = Reader::open(root.join("pcaps/tenants.pcap")).unwrap();
    check("tenants.scenario", run(&mut reader, &scenario, false));
    // A tight run: one NAT IP of 30 ports per service, so web's three consumers contend for
    // 60 ports (30 per backend) that every closed flow holds for 240 s.
    let mut tight = scenario.clone();
    Overrides {
        nat_ips: Some(1),
        ports: Some(PortRange::new(1024, 1053)),
        ..Overrides::default()
    }
    .apply(&mut tight)
    .unwrap();
    let mut reader = Reader::open(root.join("pcaps/tenants.pcap")).unwrap();
    check(
        "tenants.scenario-one-nat-ip",
        run(&mut reader, &tight, false),
    );
}
