//! Golden outputs: every shipped and shared capture, the synthetic workloads and the TCP mode run
//! through the `plsim` binary give exactly the outputs they gave when these files were written:
//! the exit status and what plsim said on stderr, `summary.json` (all of it but its wall-clock
//! parts), `timeseries.csv` and a fingerprint of both output captures, under settings that
//! exercise every allocator and reuse scope. The comparison is exact: a field gained, lost or
//! changed fails, a capture that can't be read is a golden result of its own (its error), and a
//! golden file that no case writes fails too.
//!
//! A refactoring must leave them byte for byte. A change of behaviour rewrites them on purpose,
//! in a commit of its own that says why:
//!
//! ```sh
//! PLSIM_BLESS=1 cargo test --test golden
//! ```
//!
//! and `git diff tests/golden` shows what changed. The cases that read `../shared/pcaps-real`
//! need it beside the project (CI has it); without it they skip with a message, and the check
//! for orphan golden files leaves theirs alone.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{plsim, real_pcaps, scratch, stderr};
use serde_json::{Value, json};

/// The settings every capture is replayed under: a name and the flags.
const SETTINGS: [(&str, &[&str]); 3] = [
    ("default", &[]),
    (
        "per-ip-random-pickup",
        &[
            "--nat-ips",
            "2",
            "--ports",
            "1024-1033",
            "--allocator",
            "random:7",
            "--reuse",
            "per-ip",
            "--pickup",
        ],
    ),
    (
        "block",
        &[
            "--nat-ips",
            "3",
            "--ports",
            "2000-2063",
            "--allocator",
            "block:4",
        ],
    ),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    root().join("tests/golden")
}

/// FNV-1a, 64 bits: a fingerprint of an output capture's bytes.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Runs plsim with `args` and `--out DIR -q`, and gathers what it left: the exit status, its
/// stderr lines, the summary without its wall-clock parts, the time series, both captures'
/// fingerprints (each only when written).
fn run(case: &str, args: &[&str]) -> Value {
    let dir = scratch(&format!("golden-{case}"));
    let out = dir.join("out");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--out", out.to_str().unwrap(), "-q"]);
    let o = plsim(&all);
    let mut got = json!({
        "exit": o.status.code(),
        // Paths on stderr are the test's own: name them as the arguments did.
        "stderr": stderr(&o)
            .replace(out.to_str().unwrap(), "OUT")
            .replace(root().to_str().unwrap(), "ROOT")
            .lines()
            .collect::<Vec<_>>(),
    });
    if let Ok(text) = std::fs::read_to_string(out.join("summary.json")) {
        let mut summary: Value = serde_json::from_str(&text).expect("summary.json is JSON");
        let o = summary.as_object_mut().expect("the summary is an object");
        o.remove("latency_ns");
        o.remove("throughput");
        got["summary"] = summary;
    }
    if let Ok(csv) = std::fs::read_to_string(out.join("timeseries.csv")) {
        got["timeseries_csv"] = csv.into();
    }
    for side in ["consumer", "backend"] {
        if let Ok(bytes) = std::fs::read(out.join(format!("{side}.pcap"))) {
            got[format!("{side}_pcap_fnv")] = fnv(&bytes).into();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    got
}

/// Compares `got` with the golden file `name.json` exactly (or writes it, blessing), and says
/// which field differs first.
fn check(name: &str, got: &Value) {
    let file = golden_dir().join(format!("{name}.json"));
    if std::env::var_os("PLSIM_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&file, serde_json::to_string_pretty(got).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (a new case? PLSIM_BLESS=1 cargo test --test golden writes it)",
            file.display()
        )
    });
    let want: Value = serde_json::from_str(&text).unwrap();
    if let Some(diff) = first_difference(got, &want, name) {
        panic!(
            "{diff}\n(after a change of behaviour on purpose, PLSIM_BLESS=1 cargo test --test \
             golden rewrites the golden files: commit that on its own, saying why)"
        );
    }
}

/// The first place where `got` and `want` differ: a key gained or lost, an array's length, or a
/// value.
fn first_difference(got: &Value, want: &Value, at: &str) -> Option<String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for k in w.keys() {
                if !g.contains_key(k) {
                    return Some(format!("{at}.{k} is gone"));
                }
            }
            for (k, gv) in g {
                match w.get(k) {
                    None => return Some(format!("{at}.{k} is new: {gv}")),
                    Some(wv) => {
                        if let Some(d) = first_difference(gv, wv, &format!("{at}.{k}")) {
                            return Some(d);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .find_map(|(i, (gv, wv))| first_difference(gv, wv, &format!("{at}[{i}]"))),
        (Value::Array(g), Value::Array(w)) => Some(format!(
            "{at} has {} elements where it had {}",
            g.len(),
            w.len()
        )),
        _ if got == want => None,
        _ => Some(format!("{at}: {got} where it was {want}")),
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

fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The golden files of every capture in `dir` under every setting.
fn capture_cases(dir: &Path) -> Vec<String> {
    captures(dir)
        .iter()
        .flat_map(|p| {
            SETTINGS
                .iter()
                .map(move |(s, _)| format!("{}.{s}", stem(p)))
        })
        .collect()
}

fn replay_all(dir: &Path) {
    for path in captures(dir) {
        for (setting, flags) in SETTINGS {
            let mut args = vec!["replay", path.to_str().unwrap()];
            args.extend(flags);
            let name = format!("{}.{setting}", stem(&path));
            check(&name, &run(&name, &args));
        }
    }
}

#[test]
fn shipped_captures_replay_as_before() {
    replay_all(&root().join("pcaps"));
}

#[test]
fn real_captures_replay_as_before() {
    if let Some(dir) = real_pcaps() {
        replay_all(&dir);
    }
}

/// The built-in scenario with `rst_on_exhaustion` on.
fn rst_scenario(dir: &Path) -> PathBuf {
    let o = plsim(&["scenario", "default"]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap().replace(
        "selection = \"paired\"\n",
        "selection = \"paired\"\nrst_on_exhaustion = true\n",
    );
    assert!(
        text.contains("rst_on_exhaustion"),
        "the built-in scenario changed shape"
    );
    let file = dir.join("rst.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The runs that are not a capture under the three settings: the worked example's scenario,
/// the synthetic workloads, the TCP mode. Name, then arguments.
fn other_cases(dir: &Path) -> Vec<(&'static str, Vec<String>)> {
    let tenants = root().join("docs/tenants.toml").display().to_string();
    let tenants_pcap = root().join("pcaps/tenants.pcap").display().to_string();
    let rst = rst_scenario(dir).display().to_string();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "tenants.scenario",
            args(&["replay", &tenants_pcap, "--scenario", &tenants]),
        ),
        // One NAT IP of 30 ports per service: web's three consumers contend for 60 ports (30 per
        // backend) that every closed flow holds for 240 s.
        (
            "tenants.scenario-one-nat-ip",
            args(&[
                "replay",
                &tenants_pcap,
                "--scenario",
                &tenants,
                "--nat-ips",
                "1",
                "--ports",
                "1024-1053",
            ]),
        ),
        ("workload.builtin", args(&["simulate", "--flows", "3000"])),
        (
            "workload.tight",
            args(&[
                "simulate",
                "--flows",
                "3000",
                "--nat-ips",
                "1",
                "--ports",
                "1024-1279",
            ]),
        ),
        (
            "workload.tenants",
            args(&["simulate", "--scenario", &tenants, "--until", "20"]),
        ),
        (
            "workload.rst-exhausted",
            args(&[
                "simulate",
                "--scenario",
                &rst,
                "--flows",
                "400",
                "--nat-ips",
                "1",
                "--ports",
                "1024-1039",
            ]),
        ),
        (
            "tcp.builtin",
            args(&[
                "simulate",
                "--workload",
                "tcp",
                "--connections",
                "40",
                "--bytes",
                "20000",
            ]),
        ),
        (
            "tcp.per-ip-random",
            args(&[
                "simulate",
                "--workload",
                "tcp",
                "--connections",
                "30",
                "--bytes",
                "5000",
                "--nat-ips",
                "2",
                "--allocator",
                "random:3",
                "--reuse",
                "per-ip",
            ]),
        ),
        (
            "tcp.rst-exhausted",
            args(&[
                "simulate",
                "--workload",
                "tcp",
                "--scenario",
                &rst,
                "--connections",
                "40",
                "--bytes",
                "2000",
                "--nat-ips",
                "1",
                "--ports",
                "1024-1027",
                "--reuse",
                "per-ip",
            ]),
        ),
    ]
}

#[test]
fn workloads_scenarios_and_tcp_run_as_before() {
    let dir = scratch("golden-other");
    for (name, args) in other_cases(&dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        check(name, &run(name, &args));
    }
}

#[test]
fn every_golden_file_has_its_case() {
    let dir = scratch("golden-names");
    let mut cases: BTreeSet<String> = capture_cases(&root().join("pcaps")).into_iter().collect();
    cases.extend(other_cases(&dir).into_iter().map(|(n, _)| n.to_owned()));
    let real = real_pcaps();
    if let Some(real) = &real {
        cases.extend(capture_cases(real));
    }
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = stem(&path);
        if path.extension().is_some_and(|e| e == "json") && !cases.contains(&name) {
            orphans.push(name);
        }
    }
    // Without ../shared, the real captures' golden files can't be told from orphans: only
    // those of a shipped capture or another case are judged then.
    if real.is_none() {
        let shipped: BTreeSet<String> = captures(&root().join("pcaps"))
            .iter()
            .map(|p| stem(p))
            .collect();
        orphans.retain(|n| {
            let capture = n.rsplit_once('.').map_or(n.as_str(), |(c, _)| c);
            shipped.contains(capture) || n.starts_with("workload.") || n.starts_with("tcp.")
        });
    }
    assert!(
        orphans.is_empty(),
        "golden files whose capture or case is gone: {orphans:?} (delete them, or bring the \
         case back)"
    );
}
