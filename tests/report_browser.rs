//! `report.html` in a real browser: each kind of report (replay, simulate, sweep, sweep merge,
//! plan) rendered by headless Chromium loads with no console message and no network request,
//! its tables hold the numbers of the JSON it was made from (the browser's own DOM, parsed and
//! compared figure by figure), every plot is there and drawn, and its screenshot is not blank.
//! Without Chromium the test skips with a message, unless `PLSIM_REQUIRE_BROWSER=1` (CI), when
//! it fails. With `PLSIM_BLESS=1` the replay's screenshot is written to `docs/report.png`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{plsim, scratch, stderr, stdout};
use serde_json::Value;

/// The browser: `PLSIM_CHROMIUM`, else `chromium` or `chromium-browser` on the path.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PLSIM_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|d| {
        ["chromium", "chromium-browser"]
            .iter()
            .map(|n| d.join(n))
            .find(|p| p.is_file())
    })
}

/// A TCP listener standing in for the browser's proxy: it notes the first line of every
/// request sent to it (`GET http://host/...`, `CONNECT host:443`) and answers none.
struct Trap {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

/// Hosts of Chromium's own services (its clock, component updates, accounts), which it calls
/// on its own whatever its flags: not requests of the page.
const BROWSER_HOSTS: [&str; 5] = [
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "gvt1.com",
    "gvt2.com",
];

impl Trap {
    fn new() -> Trap {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&requests);
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut buf = [0u8; 512];
                let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]);
                let line = line
                    .lines()
                    .next()
                    .unwrap_or("(no request line)")
                    .to_string();
                r.lock().unwrap().push(line);
            }
        });
        Trap { port, requests }
    }

    /// The requests that were not the browser's own.
    fn pages_requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|line| {
                let target = line.split_whitespace().nth(1).unwrap_or("");
                let host = target
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .split(['/', ':'])
                    .next()
                    .unwrap_or("");
                !BROWSER_HOSTS
                    .iter()
                    .any(|b| host == *b || host.ends_with(&format!(".{b}")))
            })
            .cloned()
            .collect()
    }
}

/// Runs the browser on `page` with `args` (`--dump-dom`, `--screenshot=..`), every request
/// sent to `trap`; its stdout and stderr.
fn browse(
    browser: &Path,
    trap: &Trap,
    profile: &Path,
    page: &Path,
    args: &[&str],
) -> (String, String) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2400",
            "--proxy-bypass-list=<-loopback>",
        ])
        .arg(format!("--proxy-server=http://127.0.0.1:{}", trap.port))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("the browser runs");
    assert!(o.status.success(), "the browser failed: {}", stderr(&o));
    (stdout(&o), stderr(&o))
}

/// What the page itself must not hold: anything that could fetch.
fn fetches_nothing(kind: &str, html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import",
    ] {
        assert!(!lower.contains(bad), "{kind}: the page holds {bad}");
    }
    assert!(html.contains("Content-Security-Policy"), "{kind}");
}

/// Every plot of the page, as its title and whether it is drawn (a line or a bar).
fn plots(dom: &str) -> Vec<(String, bool)> {
    dom.split("<svg")
        .skip(1)
        .map(|svg| {
            let svg = &svg[..svg.find("</svg>").unwrap_or(svg.len())];
            let title = svg
                .split_once("<title>")
                .and_then(|(_, t)| t.split_once("</title>"))
                .map_or(String::new(), |(t, _)| t.to_string());
            let drawn = svg.contains("class=\"bar\"")
                || svg
                    .split("class=\"line\" d=\"")
                    .skip(1)
                    .any(|d| d.starts_with('M') && d[..d.find('"').unwrap()].len() > 4);
            (title, drawn)
        })
        .collect()
}

/// Whether a PNG has more than one colour.
fn not_blank(png: &Path) -> bool {
    let img = image::open(png).expect("a PNG").to_rgba8();
    let first = *img.get_pixel(0, 0);
    img.pixels().any(|p| *p != first)
}

/// One report in the browser: loads clean, fetches nothing, its figures agree with `doc`, the
/// plots titled (in part) `want` are there and drawn, the screenshot is not blank.
fn check_report(browser: &Path, dir: &Path, kind: &str, doc: &Value, want: &[&str]) -> PathBuf {
    let page = dir.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{kind}: {e}"));
    fetches_nothing(kind, &html);
    let own = plsim_lab::html::check(&html, doc).unwrap_or_else(|b| panic!("{kind}: {b:#?}"));
    let trap = Trap::new();
    let profile = dir.join("browser-profile");
    let (dom, log) = browse(browser, &trap, &profile, &page, &["--dump-dom"]);
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Refused to"))
        .collect();
    assert!(console.is_empty(), "{kind}: console messages: {console:#?}");
    let seen = plsim_lab::html::check(&dom, doc)
        .unwrap_or_else(|b| panic!("{kind} in the browser: {b:#?}"));
    assert_eq!(
        seen, own,
        "{kind}: the browser shows every figure of the page"
    );
    let drawn = plots(&dom);
    for w in want {
        assert!(
            drawn.iter().any(|(t, d)| t.contains(w) && *d),
            "{kind}: no plot of {w:?} drawn: {drawn:?}"
        );
    }
    assert!(
        drawn.iter().all(|(_, d)| *d),
        "{kind}: an empty plot: {drawn:?}"
    );
    let shot = dir.join("screenshot.png");
    browse(
        browser,
        &trap,
        &profile,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(not_blank(&shot), "{kind}: the screenshot is one colour");
    assert_eq!(
        trap.pages_requests(),
        Vec::<String>::new(),
        "{kind}: the page made requests"
    );
    shot
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn every_kind_of_report_renders_in_a_real_browser_and_agrees_with_its_json() {
    let Some(browser) = chromium() else {
        if std::env::var_os("PLSIM_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
            panic!(
                "PLSIM_REQUIRE_BROWSER=1 and no chromium: install it (apt-get install chromium)"
            );
        }
        eprintln!("skipping: no chromium on the path (PLSIM_REQUIRE_BROWSER=1 makes this fail)");
        return;
    };
    let root = scratch("report-browser");
    // The trap sees what a page fetches: a page without the report's policy that loads an
    // image from the network and writes to the console.
    let control = root.join("control.html");
    // The log shows what a page says on the console: the control says so too.
    std::fs::write(
        &control,
        "<!DOCTYPE html><p>x<img src=\"http://plsim-trap.test/x.png\">\
         <script>console.error(\"plsim-control\")</script>",
    )
    .unwrap();
    let trap = Trap::new();
    let (_, log) = browse(
        &browser,
        &trap,
        &root.join("control-profile"),
        &control,
        &["--dump-dom"],
    );
    assert!(
        log.lines()
            .any(|l| l.contains("CONSOLE") && l.contains("plsim-control")),
        "the browser's log shows no console message of the control page: {log}"
    );
    assert!(
        trap.pages_requests()
            .iter()
            .any(|r| r.contains("plsim-trap.test")),
        "the trap saw no request of the control page: {:?}",
        trap.requests.lock().unwrap()
    );
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/conversations-200.pcap");
    let cap = cap.to_str().unwrap();
    let run_plots = [
        "Ports per NAT IP",
        "Live flows",
        "SNAT failures so far",
        "Latency distribution",
        "Drops by reason",
    ];

    // replay, as the README's first command, in the capture's directory (the screenshot in
    // docs/ shows no path of this machine)
    let d = root.join("replay");
    std::fs::copy(cap, root.join("conversations-200.pcap")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_plsim"))
        .current_dir(&root)
        .args(["replay", "conversations-200.pcap", "--out", "replay", "-q"])
        .args([
            "--nat-ips",
            "2",
            "--ports",
            "1024-1100",
            "--sample-every",
            "0.005",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .trim_end()
            .ends_with("report         replay/report.html"),
        "{}",
        stdout(&o)
    );
    let shot = check_report(
        &browser,
        &d,
        "replay",
        &read_json(&d.join("summary.json")),
        &run_plots[..4],
    );
    if std::env::var_os("PLSIM_BLESS").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.png");
        std::fs::copy(&shot, docs).unwrap();
    }

    // simulate
    let d = root.join("simulate");
    let o = plsim(&[
        "simulate",
        "--flows",
        "3000",
        "--nat-ips",
        "2",
        "--ports",
        "1024-1200",
        "--out",
        d.to_str().unwrap(),
        "-q",
        "--no-pcaps",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    check_report(
        &browser,
        &d,
        "simulate",
        &read_json(&d.join("summary.json")),
        &run_plots[..4],
    );

    // sweep, and the same grid's points merged
    let d = root.join("sweep");
    let grid = ["--nat-ips", "1,2", "--ports", "1024-1100,1024-2047"];
    let mut args = vec!["sweep", cap, "--out", d.to_str().unwrap(), "--json"];
    args.extend(grid);
    let o = plsim(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let sweep_plots = [
        "SNAT failure rate against nat ips",
        "peak busy ports (busiest NAT IP) against ports",
    ];
    check_report(&browser, &d, "sweep", &rows, &sweep_plots);
    let points = root.join("points");
    for k in 0..4 {
        let k = k.to_string();
        let mut args = vec![
            "sweep",
            cap,
            "--out",
            points.to_str().unwrap(),
            "--point",
            &k,
        ];
        args.extend(grid);
        let o = plsim(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let d = root.join("merged");
    let o = plsim(&[
        "sweep",
        "merge",
        points.to_str().unwrap(),
        "--out",
        d.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(merged, rows, "a merge's rows are the sweep's");
    check_report(&browser, &d, "sweep merge", &merged, &sweep_plots);

    // plan
    let d = root.join("plan");
    let o = plsim(&[
        "plan",
        cap,
        "--ports",
        "1024-1039",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    check_report(
        &browser,
        &d,
        "plan",
        &read_json(&d.join("plan.json")),
        &[
            "SNAT failures by NAT IP count",
            "Share of flows lost against NAT IPs",
        ],
    );
}

/// The static check itself catches what fetches.
#[test]
fn a_page_that_could_fetch_is_caught() {
    for bad in [
        "<img src=\"x.png\">",
        "<a href=\"http://x\">",
        "<style>@import 'x'</style>",
        "<div style=\"background:url(x)\">",
    ] {
        let page = format!(
            "<html><head><meta http-equiv=\"Content-Security-Policy\"></head><body>{bad}</body></html>"
        );
        assert!(
            std::panic::catch_unwind(|| fetches_nothing("test", &page)).is_err(),
            "{bad}"
        );
    }
}
