//! Nothing lost, nobody in: every output file is created exclusively under its partial name and
//! renamed over its own once whole (a link planted at either name is replaced, never written
//! through); a damaged capture is said to be damaged by `plan` and `sweep` as by `replay`;
//! `generate` leaves nothing under its file's name unless the capture is whole.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;

fn shipped(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether `path` is a regular file (not a link to one).
fn regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// A victim outside the output directories, and links to it at `links` (paths).
fn plant(victim: &Path, links: &[PathBuf]) {
    std::fs::write(victim, b"the victim's own bytes\n").unwrap();
    for l in links {
        std::os::unix::fs::symlink(victim, l).unwrap();
    }
}

fn untouched(victim: &Path) {
    let bytes = std::fs::read(victim).unwrap();
    assert!(
        bytes == b"the victim's own bytes\n",
        "{} was written through a link: it holds {} bytes now",
        victim.display(),
        bytes.len()
    );
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

const RUN_OUTPUTS: [&str; 6] = [
    "backend.pcap",
    "consumer.pcap",
    "summary.json",
    "timeseries.csv",
    "timeseries.png",
    "timeseries.svg",
];

/// The reproduction and its kin: links planted at the partial names (and at a final
/// name) of every output pointing outside the directory. Each victim keeps its bytes; every
/// output is a regular file in the directory.
#[test]
fn links_at_output_names_are_replaced_never_written_through() {
    let root = scratch("outputs-links");
    let victim = root.join("victim");
    // replay --out
    let d = root.join("d");
    std::fs::create_dir(&d).unwrap();
    let mut links: Vec<PathBuf> = [
        "summary.partial.json",
        "backend.partial.pcap",
        "consumer.partial.pcap",
        "timeseries.partial.csv",
        "timeseries.partial.svg",
        "timeseries.partial.png",
    ]
    .iter()
    .map(|n| d.join(n))
    .collect();
    links.push(d.join("timeseries.csv"));
    plant(&victim, &links);
    let o = plsim(&[
        "replay",
        &shipped("conversations-200.pcap"),
        "--out",
        s(&d),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    untouched(&victim);
    assert_eq!(names(&d), RUN_OUTPUTS);
    for n in RUN_OUTPUTS {
        assert!(regular(&d.join(n)), "{n} is not a regular file");
    }
    // sweep --out, sweep --point, sweep merge, plan --point
    let sweep = root.join("sweep");
    let pts = root.join("pts");
    let merged = root.join("merged");
    for dir in [&sweep, &pts, &merged] {
        std::fs::create_dir(dir).unwrap();
    }
    let mut links: Vec<PathBuf> = Vec::new();
    for dir in [&sweep, &merged] {
        for n in [
            "sweep.partial.csv",
            "sweep.partial.svg",
            "sweep.partial.png",
        ] {
            links.push(dir.join(n));
        }
    }
    for n in [
        "point-0.partial.json",
        "point-1.partial.json",
        "plan-point-0.partial.json",
    ] {
        links.push(pts.join(n));
    }
    let victim2 = root.join("victim2");
    plant(&victim2, &links);
    let cap = shipped("syns-3000.pcap");
    let grid = ["--nat-ips", "1,2", "--ports", "1024-2023"];
    let run = |args: &[&str]| {
        let o = plsim(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    };
    run(&[&["sweep", &cap][..], &grid, &["--out", s(&sweep)]].concat());
    for k in ["0", "1"] {
        run(&[
            &["sweep", &cap][..],
            &grid,
            &["--point", k, "--out", s(&pts)],
        ]
        .concat());
    }
    run(&["plan", &cap, "--point", "0", "--out", s(&pts)]);
    run(&["sweep", "merge", s(&pts), "--out", s(&merged)]);
    untouched(&victim2);
    for dir in [&sweep, &merged] {
        assert_eq!(names(dir), ["sweep.csv", "sweep.png", "sweep.svg"]);
        for n in names(dir) {
            assert!(regular(&dir.join(&n)), "{n}");
        }
    }
    assert_eq!(
        names(&pts),
        ["plan-point-0.json", "point-0.json", "point-1.json"]
    );
    // generate --out FILE
    let victim3 = root.join("victim3");
    let made = root.join("made.pcap");
    plant(&victim3, &[root.join("made.partial.pcap")]);
    run(&["generate", "syns", "--flows", "10", "--out", s(&made)]);
    untouched(&victim3);
    assert!(regular(&made));
    assert!(!root.join("made.partial.pcap").exists());
}

/// `generate` writes its partial name and renames it once whole: a write error or a signal
/// leaves nothing under the file's name (a signal: exit 130), and nothing under the partial
/// name either.
#[test]
fn generate_leaves_a_whole_capture_or_none() {
    let root = scratch("outputs-generate");
    let file = root.join("c.pcap");
    let partial = root.join("c.partial.pcap");
    let o = plsim_limited(
        &["generate", "syns", "--flows", "3000", "--out", s(&file)],
        8192,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!("plsim: {}: File too large\n", file.display())
    );
    assert_eq!(names(&root), Vec::<String>::new());
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let child = Command::new(env!("CARGO_BIN_EXE_plsim"))
            .args(["generate", "conversations", "--flows", "100000"])
            .args(["--out", s(&file)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until it is writing: its partial file has grown.
        let start = std::time::Instant::now();
        while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 1 << 20 {
            assert!(start.elapsed().as_secs() < 60, "it never got going");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        signal(&child, sig);
        let done = child.wait_with_output().unwrap();
        assert_eq!(done.status.code(), Some(130), "{}", stderr(&done));
        assert_eq!(
            stderr(&done),
            format!("plsim: interrupted: {} not written\n", file.display())
        );
        assert_eq!(names(&root), Vec::<String>::new(), "signal {sig}");
    }
}

/// A capture damaged after its first packet: `plan` and `sweep` say so as `replay` does (the
/// same warning, once) and mark every result they give with `truncated`.
#[test]
fn plan_and_sweep_say_a_capture_is_damaged() {
    let root = scratch("outputs-damaged");
    let cut = root.join("cut.pcap");
    let whole = std::fs::read(shipped("conversations-200.pcap")).unwrap();
    std::fs::write(&cut, &whole[..100_000]).unwrap();
    let cut = s(&cut);
    let replay = plsim(&["replay", cut, "-q"]);
    assert_eq!(replay.status.code(), Some(0));
    let warning = stderr(&replay);
    assert!(warning.starts_with("plsim: warning: ") && warning.lines().count() == 1);
    let once = |o: &Output, what: &str| {
        assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(o));
        assert!(
            stderr(o)
                .lines()
                .filter(|l| format!("{l}\n") == warning)
                .count()
                == 1,
            "{what} says the capture is damaged once, as replay does: {}",
            stderr(o)
        );
    };
    // plan
    let o = plsim(&["plan", cut, "--json"]);
    once(&o, "plan");
    let plan = json(&o);
    assert_eq!(plan["truncated"], true, "{plan}");
    let plan_pts = root.join("plan-pts");
    for k in 0..8 {
        let k = k.to_string();
        let o = plsim(&["plan", cut, "--point", &k, "--out", s(&plan_pts)]);
        once(&o, "plan --point");
        let point: serde_json::Value = serde_json::from_slice(
            &std::fs::read(plan_pts.join(format!("plan-point-{k}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(point["result"]["point"]["truncated"], true, "{point}");
    }
    // sweep
    let out = root.join("sweep");
    let o = plsim(&["sweep", cut, "--nat-ips", "1,2", "--out", s(&out), "--json"]);
    once(&o, "sweep");
    let rows = json(&o);
    for r in rows.as_array().unwrap() {
        assert_eq!(r["truncated"], true, "{r}");
    }
    let pts = root.join("pts");
    for k in ["0", "1"] {
        let o = plsim(&[
            "sweep",
            cut,
            "--nat-ips",
            "1,2",
            "--point",
            k,
            "--out",
            s(&pts),
        ]);
        once(&o, "sweep --point");
        let point: serde_json::Value =
            serde_json::from_slice(&std::fs::read(pts.join(format!("point-{k}.json"))).unwrap())
                .unwrap();
        assert_eq!(point["result"]["truncated"], true, "{point}");
    }
    // The merges carry the mark to what they give.
    let merged = root.join("merged");
    let o = plsim(&["sweep", "merge", s(&pts), "--out", s(&merged), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for r in json(&o).as_array().unwrap() {
        assert_eq!(r["truncated"], true, "{r}");
    }
    let o = plsim(&["plan", "merge", s(&plan_pts), "--json"]);
    assert_eq!(json(&o)["truncated"], true);
    // A whole capture's results have no mark (and the same sweep.csv).
    let o = plsim(&["plan", &shipped("conversations-200.pcap"), "--json"]);
    assert!(json(&o).get("truncated").is_none());
    assert_eq!(
        std::fs::read_to_string(out.join("sweep.csv"))
            .unwrap()
            .lines()
            .next(),
        Some(
            "nat_ips,allocator,ports,idle,fin_hold,load,flows,snat_failures,failure_rate,\
             peak_ports_in_use,peak_ports_busy,peak_flows,packets,dropped"
        )
    );
}
