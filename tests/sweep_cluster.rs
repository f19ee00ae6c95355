//! A sweep split into points and merged back: `--list`, `--point K`, `sweep merge`. The merge
//! of points run one by one, in any order, from any set of directories, is byte for byte the
//! sweep one machine runs; missing, doubled and foreign points are refused with their names.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The grid: 4 NAT IP counts x 2 allocators x 2 port ranges = 16 points.
const GRID: [&str; 6] = [
    "--nat-ips",
    "1..4",
    "--allocators",
    "sequential,random:7",
    "--ports",
    "1024-1033,1024-1063",
];

fn sweep(extra: &[&str]) -> std::process::Output {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/syns-3000.pcap");
    let mut args = vec!["sweep", cap.to_str().unwrap()];
    args.extend(GRID);
    args.extend(extra);
    plsim(&args)
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = ["sweep.csv", "sweep.svg", "sweep.png"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn points_merged_in_any_order_are_the_one_machine_sweep() {
    let dir = scratch("sweep_cluster");
    let whole = dir.join("whole");
    assert!(sweep(&["--out", whole.to_str().unwrap()]).status.success());

    // The grid, one point a line.
    let list = sweep(&["--list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let lines: Vec<serde_json::Value> = stdout(&list)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 16);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["index"], i);
    }
    assert_eq!(lines[0]["nat_ips"], 1);
    assert_eq!(lines[0]["allocator"], "sequential");
    assert_eq!(lines[15]["ports"], "1024-1063");

    // Every point alone, in a shuffled order, into two halves.
    let mut order: Vec<usize> = (0..16).collect();
    let mut x = 12345u64;
    for i in (1..order.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (x >> 33) as usize % (i + 1));
    }
    let halves = [dir.join("half-a"), dir.join("half-b")];
    for (n, &k) in order.iter().enumerate() {
        let out = &halves[n % 2];
        let r = sweep(&["--point", &k.to_string(), "--out", out.to_str().unwrap()]);
        assert!(r.status.success(), "point {k}: {}", stderr(&r));
    }
    // Merged from the two directories, and from one holding them all: the same files.
    let merged = dir.join("merged");
    let m = plsim(&[
        "sweep",
        "merge",
        halves[0].to_str().unwrap(),
        halves[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(m.status.success(), "{}", stderr(&m));
    assert!(
        files_of(&whole) == files_of(&merged),
        "the merge differs from the sweep"
    );
    let all = dir.join("all");
    std::fs::create_dir_all(&all).unwrap();
    for h in &halves {
        for e in std::fs::read_dir(h).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, all.join(p.file_name().unwrap())).unwrap();
        }
    }
    let merged_all = dir.join("merged-all");
    assert!(
        plsim(&[
            "sweep",
            "merge",
            all.to_str().unwrap(),
            "--out",
            merged_all.to_str().unwrap()
        ])
        .status
        .success()
    );
    assert!(files_of(&whole) == files_of(&merged_all));

    // Half the points: refused, naming those missing.
    let half = dir.join("half");
    let m = plsim(&[
        "sweep",
        "merge",
        halves[0].to_str().unwrap(),
        "--out",
        half.to_str().unwrap(),
    ]);
    assert_eq!(m.status.code(), Some(1));
    assert!(
        stderr(&m).contains("8 of the 16 points are missing: "),
        "{}",
        stderr(&m)
    );
    // A point twice: refused, naming both files.
    let m = plsim(&[
        "sweep",
        "merge",
        halves[0].to_str().unwrap(),
        halves[1].to_str().unwrap(),
        all.to_str().unwrap(),
        "--out",
        half.to_str().unwrap(),
    ]);
    assert_eq!(m.status.code(), Some(1));
    assert!(stderr(&m).contains("is there twice"), "{}", stderr(&m));
    // A point of another grid: refused.
    let other = dir.join("other");
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/syns-3000.pcap");
    assert!(
        plsim(&[
            "sweep",
            cap.to_str().unwrap(),
            "--nat-ips",
            "1..3",
            "--point",
            "0",
            "--out",
            other.to_str().unwrap()
        ])
        .status
        .success()
    );
    let m = plsim(&[
        "sweep",
        "merge",
        other.to_str().unwrap(),
        halves[0].to_str().unwrap(),
        halves[1].to_str().unwrap(),
        "--out",
        half.to_str().unwrap(),
    ]);
    assert_eq!(m.status.code(), Some(1));
    assert!(
        stderr(&m).contains("is from another sweep"),
        "{}",
        stderr(&m)
    );
    assert!(!half.join("sweep.csv").exists());
}

/// A point reads its capture from standard input as well as from the file: the same result
/// and the same fingerprint (the capture's bytes, not its path); only the name differs.
#[test]
fn a_point_streams_its_capture_from_standard_input() {
    let dir = scratch("sweep_cluster_stdin");
    let cap: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/syns-3000.pcap");
    let from_file = dir.join("file");
    assert!(
        sweep(&["--point", "5", "--out", from_file.to_str().unwrap()])
            .status
            .success()
    );
    let from_pipe = dir.join("pipe");
    let mut args = vec!["sweep", "-"];
    args.extend(GRID);
    args.extend(["--point", "5", "--out", from_pipe.to_str().unwrap()]);
    let out = Command::new(env!("CARGO_BIN_EXE_plsim"))
        .args(&args)
        .stdin(std::fs::File::open(&cap).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("point-5.json")).unwrap()).unwrap()
    };
    let (a, b) = (read(&from_file), read(&from_pipe));
    assert_eq!(a["command"], "sweep");
    assert_eq!(a["fingerprint"], b["fingerprint"]);
    assert_eq!(a["result"], b["result"]);
    assert_eq!(a["input"], "syns-3000.pcap");
    assert_eq!(b["input"], "standard input");
    // The whole sweep can't read standard input (it reads its capture once per point).
    let mut args = vec!["sweep", "-"];
    args.extend(GRID);
    args.extend(["--out", "x"]);
    assert_eq!(plsim(&args).status.code(), Some(2));
}

/// A plan split the same way: every NAT IP count replayed alone (`plan --point K`), merged
/// (`plan merge`) into the answer the bisection finds on one machine.
#[test]
fn a_plan_from_its_counts_run_apart_is_the_one_machine_plan() {
    let dir = scratch("plan_cluster");
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/syns-3000.pcap");
    let flags = ["--ports", "1024-2023", "--reuse", "per-ip"];
    let mut args = vec!["plan", cap.to_str().unwrap()];
    args.extend(flags);
    let list = plsim(&[args.clone(), vec!["--list"]].concat());
    assert!(list.status.success());
    assert_eq!(stdout(&list).lines().count(), 8);
    assert_eq!(
        stdout(&list).lines().next(),
        Some(r#"{"index":0,"nat_ips":1}"#)
    );
    let pts = dir.join("pts");
    for k in [7, 2, 0, 5, 1, 6, 3, 4] {
        let k = k.to_string();
        let r = plsim(
            &[
                args.clone(),
                vec!["--point", &k, "--out", pts.to_str().unwrap()],
            ]
            .concat(),
        );
        assert!(r.status.success(), "{}", stderr(&r));
    }
    let merged = json(&plsim(&["plan", "merge", pts.to_str().unwrap(), "--json"]));
    let alone = json(&plsim(&[args.clone(), vec!["--json"]].concat()));
    // 3,000 concurrent SYNs on 1,000 ports a NAT IP: three.
    assert_eq!(merged["nat_ips_needed"], 3);
    for key in [
        "nat_ips_needed",
        "nat_ips_enough",
        "nat_ips_available",
        "ports_per_nat_ip",
        "peak_concurrent_flows",
        "peak_ports_per_nat_ip",
        "ports_total_per_nat_ip",
        "headroom",
        "snat_failures",
        "interrupted",
    ] {
        assert_eq!(merged[key], alone[key], "{key}");
    }
    // The bisection ran 8, 4, 2, 3; the merge has every count, and agrees where both ran.
    assert_eq!(merged["runs"].as_array().unwrap().len(), 8);
    for run in alone["runs"].as_array().unwrap() {
        let n = run["nat_ips"].as_u64().unwrap() as usize;
        assert_eq!(&merged["runs"][n - 1], run);
    }
    // The theory beside it: what the replay at eight measured, the same Erlang B; the merge
    // has every count's replay beside it.
    let (mt, at) = (&merged["theory"], &alone["theory"]);
    assert_eq!(mt["offered"], at["offered"]);
    assert_eq!(mt["offered"]["flows"], 3000);
    for n in 0..8 {
        assert_eq!(mt["counts"][n]["erlang_b"], at["counts"][n]["erlang_b"]);
        assert!(mt["counts"][n]["replay_loss"].is_f64(), "{mt}");
    }
    // A count missing: refused, naming it.
    std::fs::remove_file(pts.join("plan-point-4.json")).unwrap();
    let m = plsim(&["plan", "merge", pts.to_str().unwrap()]);
    assert_eq!(m.status.code(), Some(1));
    assert!(
        stderr(&m).contains("the replays with 5 NAT IPs are missing (points 4)"),
        "{}",
        stderr(&m)
    );
    // A plan's point among a sweep's: refused, naming it and its command.
    let mixed = dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(pts.join("plan-point-0.json"), mixed.join("point-0.json")).unwrap();
    let m = plsim(&[
        "sweep",
        "merge",
        mixed.to_str().unwrap(),
        "--out",
        dir.join("never").to_str().unwrap(),
    ]);
    assert_eq!(m.status.code(), Some(1));
    assert!(
        stderr(&m).contains("point-0.json is a point of `plsim plan`, not of `plsim sweep`"),
        "{}",
        stderr(&m)
    );
}
