//! Nothing lost, nobody in: every output file is created exclusively under its partial name and
//! renamed over its own once whole (a link planted at either name is replaced, never written
//! through); a directory in use by another run is refused; `summary.json` comes last, only when
//! every other output is whole; a signal received while a run finishes still interrupts it; a
//! damaged capture is said to be damaged by `plan` and `sweep` as by `replay`; an interrupted
//! TCP run counts no drops it did not make; `generate` leaves nothing under its file's name
//! unless the capture is whole.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};

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

/// A run that holds at `point` (the binary's test hook, `PLSIM_TEST_HOLD`) until a signal or
/// until its standard input closes; returned once it says it holds there, with the rest of its
/// stderr to read.
// The child is handed back to the caller, who waits for it ([`ended`]).
#[allow(clippy::zombie_processes)]
fn held(args: &[&str], point: &str) -> (Child, BufReader<ChildStderr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plsim"))
        .args(args)
        .env("PLSIM_TEST_HOLD", point)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("{args:?} never held at {point} ({status}): {said}");
        }
        if line.trim() == format!("plsim: test hold: {point}") {
            return (child, err);
        }
        said += &line;
    }
}

/// What a held run gave once it ended: its output, stderr from after the hold.
fn ended(child: Child, mut err: BufReader<ChildStderr>) -> (Output, String) {
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    (out, rest)
}

const RUN_OUTPUTS: [&str; 7] = [
    "backend.pcap",
    "consumer.pcap",
    "report.html",
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
        assert_eq!(
            names(dir),
            ["report.html", "sweep.csv", "sweep.png", "sweep.svg"]
        );
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

/// The second reproduction: a run into a directory another run holds is refused at
/// once, exit 1, one line naming the directory; the run holding it ends normally with whole
/// outputs. The first run holds (the test hook) once its input is read, before it writes its
/// outputs: the directory is then in use.
#[test]
fn a_directory_in_use_by_another_run_is_refused() {
    let cc = scratch("outputs-in-use").join("cc");
    let big = shipped("conversations-200.pcap");
    let (mut first, err) = held(&["replay", &big, "--out", s(&cc), "-q"], "outputs");
    let syns = shipped("syns-3000.pcap");
    for second in [
        vec!["replay", &syns, "--out", s(&cc), "-q"],
        vec!["simulate", "--out", s(&cc), "-q"],
        vec!["sweep", &syns, "--nat-ips", "1,2", "--out", s(&cc)],
        vec![
            "sweep",
            &syns,
            "--nat-ips",
            "1,2",
            "--point",
            "0",
            "--out",
            s(&cc),
        ],
        vec!["generate", "syns", "--out", &format!("{}/x.pcap", s(&cc))],
    ] {
        let o = plsim(&second);
        assert_eq!(o.status.code(), Some(1), "{second:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "plsim: {}: in use by another plsim run (a directory takes one run's outputs \
                 at a time)\n",
                cc.display()
            ),
            "{second:?}"
        );
    }
    drop(first.stdin.take());
    let (done, rest) = ended(first, err);
    assert_eq!(done.status.code(), Some(0), "{rest}");
    assert_eq!(names(&cc), RUN_OUTPUTS);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cc.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["input"]["packets"], 1600);
    assert_eq!(summary["interrupted"], false);
    for (name, packets) in [("consumer.pcap", 1600), ("backend.pcap", 1600)] {
        let mut r = plsim_pcap::Reader::open(cc.join(name)).unwrap();
        let mut n = 0;
        while r.next_frame().is_some() {
            n += 1;
        }
        assert!(!r.truncated(), "{name}");
        assert_eq!(n, packets, "{name}");
    }
}

/// `summary.json` is written last and only when every other output is whole: an output that
/// can't be written (a directory planted in its way, at its own name or at its partial name)
/// is exit 1 naming it, in words, and leaves no `summary.json`, not even a previous run's.
#[test]
fn summary_json_comes_last_and_a_failed_output_fails_the_run() {
    let root = scratch("outputs-failed");
    let cap = shipped("conversations-200.pcap");
    for (case, planted, named) in [
        ("png", "timeseries.png", "timeseries.png"),
        ("report", "report.html", "report.html"),
        ("partial-report", "report.partial.html", "report.html"),
        ("partial-png", "timeseries.partial.png", "timeseries.png"),
        ("partial-svg", "timeseries.partial.svg", "timeseries.svg"),
        ("csv", "timeseries.partial.csv", "timeseries.csv"),
        ("pcap", "backend.partial.pcap", "backend.pcap"),
    ] {
        let d = root.join(case);
        // A whole run first: its summary.json must not outlive the failed run.
        let o = plsim(&["replay", &cap, "--out", s(&d), "-q"]);
        assert_eq!(o.status.code(), Some(0), "{case}: {}", stderr(&o));
        assert!(d.join("summary.json").is_file());
        let _ = std::fs::remove_file(d.join(planted));
        std::fs::create_dir(d.join(planted)).unwrap();
        std::fs::write(d.join(planted).join("inside"), b"x").unwrap();
        let o = plsim(&["replay", &cap, "--out", s(&d), "-q"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{case}: {err}");
        assert_eq!(err.lines().count(), 1, "{case}: {err}");
        let prefix = format!("plsim: {}: ", d.join(named).display());
        assert!(err.starts_with(&prefix), "{case}: {err}");
        assert!(!err.contains(['{', '(']), "{case}: Debug text: {err}");
        assert!(
            !d.join("summary.json").exists(),
            "{case}: a summary is left"
        );
        assert!(!d.join("summary.partial.json").exists(), "{case}");
        assert!(d.join(planted).join("inside").is_file(), "{case}");
    }
    // A sweep: its plot failing is exit 1 naming it, and no sweep.csv.
    let d = root.join("sweep");
    std::fs::create_dir_all(d.join("sweep.partial.png")).unwrap();
    let o = plsim(&[
        "sweep",
        &shipped("syns-3000.pcap"),
        "--nat-ips",
        "1,2",
        "--out",
        s(&d),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!("plsim: {}: ", d.join("sweep.png").display())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!d.join("sweep.csv").exists());
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
             peak_ports_in_use,peak_ports_busy,peak_flows,packets,dropped,reuses,hazards,\
             gap_min_s,gap_p50_s"
        )
    );
}

/// An interrupted `simulate --workload tcp` counts the packets in flight as in flight: no
/// drop in a run that exhausted nothing, and every packet in is delivered or dropped.
#[test]
fn an_interrupted_tcp_run_counts_no_drops_it_did_not_make() {
    let child = Command::new(env!("CARGO_BIN_EXE_plsim"))
        .args(["simulate", "--workload", "tcp", "--connections", "2000"])
        .args(["--bytes", "1000000", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    signal(&child, libc::SIGINT);
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", stderr(&done));
    let s: serde_json::Value = serde_json::from_slice(&done.stdout).expect("the summary");
    assert_eq!(s["interrupted"], true);
    let p = &s["packets"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    assert!(n(&p["consumer_in"]) > 0, "it ran a while");
    for (reason, count) in p["dropped"].as_object().unwrap() {
        assert_eq!(n(count), 0, "{reason}: {s}");
    }
    assert_eq!(s["flows"]["snat_failures"], 0);
    assert_eq!(
        n(&p["consumer_in"]) + n(&p["backend_in"]),
        n(&p["to_backend"]) + n(&p["to_consumer"]),
        "{s}"
    );
}

/// A signal received once the input is read, while the outputs are written or the summary
/// printed, still interrupts the run: exit 130, and `summary.json` says `interrupted`, whether
/// it came before the summary was written or after.
#[test]
fn a_signal_while_the_run_finishes_still_interrupts_it() {
    let root = scratch("outputs-late-signal");
    let cap = shipped("conversations-200.pcap");
    for point in ["outputs", "summary"] {
        let d = root.join(point);
        let (child, err) = held(&["replay", &cap, "--out", s(&d), "--json"], point);
        signal(&child, libc::SIGINT);
        let (done, rest) = ended(child, err);
        assert_eq!(done.status.code(), Some(130), "{point}: {rest}");
        assert!(
            rest.contains("plsim: interrupted: the signal came once the input was read"),
            "{point}: {rest}"
        );
        let on_disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("summary.json")).unwrap()).unwrap();
        assert_eq!(on_disk["interrupted"], true, "{point}");
        // Every packet was read and went through: the results are whole.
        assert_eq!(on_disk["input"]["packets"], 1600, "{point}");
        assert_eq!(names(&d), RUN_OUTPUTS, "{point}");
        if point == "outputs" {
            // Printed after the signal: it says so too.
            let printed: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
            assert_eq!(printed["interrupted"], true);
        }
    }
    // The TCP mode too.
    let d = root.join("tcp");
    let (child, err) = held(
        &[
            "simulate",
            "--workload",
            "tcp",
            "--connections",
            "20",
            "--out",
            s(&d),
            "-q",
        ],
        "outputs",
    );
    signal(&child, libc::SIGTERM);
    let (done, rest) = ended(child, err);
    assert_eq!(done.status.code(), Some(130), "{rest}");
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk["interrupted"], true);
    assert_eq!(on_disk["tcp"]["completed"], 20);
}

/// A sweep stopped before any point ran to its end writes a `sweep.csv` of no row and says
/// there is no plot.
#[test]
fn a_sweep_stopped_before_any_point_says_it_has_no_plot() {
    let d = scratch("outputs-sweep-stopped").join("d");
    let (child, err) = held(
        &[
            "sweep",
            &shipped("syns-3000.pcap"),
            "--nat-ips",
            "1,2",
            "--out",
            s(&d),
        ],
        "start",
    );
    signal(&child, libc::SIGINT);
    let (done, rest) = ended(child, err);
    assert_eq!(done.status.code(), Some(130), "{rest}");
    assert!(!rest.contains("the plot"), "{rest}");
    assert!(
        rest.contains(&format!(
            "plsim: wrote {} (no point ran to its end: no plot)",
            d.join("sweep.csv").display()
        )),
        "{rest}"
    );
    assert_eq!(names(&d), ["report.html", "sweep.csv"]);
}
