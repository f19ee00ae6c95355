//! Each command: the flags handed to the library, the results printed.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use plsim_control::Scenario;
use plsim_lab::files::{self, load_scenario};
use plsim_lab::path::Overrides;
use plsim_lab::replay::{PacketSource, PcapTaps};
use plsim_lab::run::{self, RunSpec};
use plsim_lab::stop::Stop;
use plsim_lab::sweep::{Grid, Sweep};
use plsim_lab::workload::{WorkloadFlags, Workloads, specs};
use plsim_lab::{Error, Result};
use plsim_pcap::Reader;

use plsim_lab::report;

use crate::{BenchArgs, PlanArgs, RunArgs, SweepArgs};

fn json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("results serialize")
    );
}

fn warn(w: &str) {
    eprintln!("plsim: warning: {w}");
}

/// A spinner on a terminal, unless asked for JSON or quiet.
fn spinner(flags: &RunArgs, what: &str) -> Option<ProgressBar> {
    (!flags.json && !flags.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new_spinner();
        let template = format!("{{spinner}} {{pos}} packets {what} ({{per_sec}})");
        b.set_style(ProgressStyle::with_template(&template).expect("a valid template"));
        b.enable_steady_tick(Duration::from_millis(100));
        b
    })
}

/// Runs a source through the path and writes and prints what the flags ask for. `cut` says
/// whether the source was cut short, and why.
fn run_and_report<S: PacketSource>(
    source: &mut S,
    scenario: &Scenario,
    flags: &RunArgs,
    what: &str,
    cut: impl FnOnce(&S) -> (bool, Option<String>),
) -> Result<()> {
    if let Some(dir) = &flags.out {
        files::create_dir(dir)?;
    }
    let bar = spinner(
        flags,
        if what.ends_with("pcap") || what.ends_with("pcapng") {
            "replayed"
        } else {
            "simulated"
        },
    );
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let stop = interrupts();
    let spec = RunSpec {
        stop: Some(&stop),
        pickup: flags.overrides.pickup,
        sample_every: flags
            .out
            .as_ref()
            .map(|_| Duration::from_secs_f64(flags.sample_every)),
        progress: Some(&progress),
        engine: flags.engine,
        batch: flags.batch,
        ..RunSpec::new(scenario)
    };
    let taps = flags
        .out
        .as_deref()
        .filter(|_| !flags.no_pcaps)
        .map(PcapTaps::in_dir);
    let (outcome, taps) = run::run(source, &spec, taps)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (truncated, warning) = cut(source);
    let mut summary = outcome.summary;
    summary.input.truncated = truncated;
    if let Some(w) = warning {
        warn(&w);
    }
    if let Some(dir) = &flags.out {
        if let Some(taps) = taps {
            let written = taps.finish_in_dir()?;
            if written.skipped > 0 {
                warn(&format!(
                    "{} frames of another link type left out of the pcaps",
                    written.skipped
                ));
            }
        }
        if let Some(w) = files::write_run(dir, &summary, &outcome.series, what)? {
            warn(&w);
        }
    }
    if flags.json {
        json(&summary);
    } else {
        print!("{}", report::summary(what, &summary));
    }
    if summary.interrupted {
        return Err(Error::Interrupted(format!(
            "the results cover the {} packets read before it",
            summary.input.packets
        )));
    }
    Ok(())
}

/// Ctrl-C (SIGINT) and SIGTERM: the first asks the runs holding the returned [`Stop`] to stop
/// and report what they processed; a second one ends the process at once (status 130).
fn interrupts() -> Stop {
    let stop = Stop::new();
    #[cfg(unix)]
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first registration exits only when the flag is already set, which the second
        // does: the order makes the first signal a request and the second the end.
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 130, stop.flag())
            .and_then(|_| signal_hook::flag::register(signal, stop.flag()));
        if let Err(e) = registered {
            warn(&format!("Ctrl-C will end the run without its results: {e}"));
        }
    }
    stop
}

/// `plsim replay`.
pub fn replay(pcap: &Path, flags: &RunArgs) -> Result<()> {
    let scenario = load_scenario(flags.scenario.as_deref(), &flags.overrides.into())?;
    let mut reader = Reader::open(pcap)?;
    run_and_report(
        &mut reader,
        &scenario,
        flags,
        &pcap.display().to_string(),
        |r| (r.truncated(), r.warning().map(str::to_string)),
    )
}

/// `plsim simulate` with the synthetic workload.
pub fn simulate(flags: &RunArgs, workload: &WorkloadFlags) -> Result<()> {
    let scenario = load_scenario(flags.scenario.as_deref(), &flags.overrides.into())?;
    let specs = specs(&scenario, workload)?;
    let what = match &specs[..] {
        [(_, spec, _)] => format!(
            "workload ({} flows max, {})",
            spec.flows.map_or("no limit".into(), |n| n.to_string()),
            spec.arrivals
        ),
        many => format!("workloads of {} endpoints", many.len()),
    };
    let mut source = Workloads::new(&scenario, specs)?;
    run_and_report(&mut source, &scenario, flags, &what, |_| (false, None))
}

/// `plsim simulate --workload tcp`: real TCP stacks echo through the path.
pub fn simulate_tcp(flags: &RunArgs, connections: u32, bytes: u64) -> Result<()> {
    let scenario = load_scenario(flags.scenario.as_deref(), &flags.overrides.into())?;
    let (summary, _) = plsim_lab::tcp::echo_summary(&scenario, connections, bytes)?;
    if let Some(dir) = &flags.out {
        files::create_dir(dir)?;
        let text = serde_json::to_string_pretty(&summary).expect("a summary serializes") + "\n";
        files::write_file(&dir.join("summary.json"), text.as_bytes())?;
        eprintln!("plsim: a TCP run writes summary.json only (no pcaps, no time series)");
    }
    if flags.json {
        json(&summary);
    } else {
        let what = format!("{connections} TCP connections of {bytes} bytes");
        print!("{}", report::summary(&what, &summary));
    }
    Ok(())
}

/// `plsim inspect`.
pub fn inspect(pcap: &Path, as_json: bool) -> Result<()> {
    let r = plsim_lab::inspect::inspect(pcap)?;
    if let Some(w) = &r.warning {
        warn(w);
    }
    if as_json {
        json(&r);
    } else {
        print!("{}", report::inspect(&r));
    }
    Ok(())
}

/// `plsim scenario check`.
pub fn scenario_check(file: &Path) -> Result<()> {
    let s = files::read_scenario(file)?;
    println!(
        "{}: ok ({} services, {} endpoints, {} timeline events)",
        file.display(),
        s.services.len(),
        s.endpoints.len(),
        s.timeline.len()
    );
    Ok(())
}

/// `plsim scenario show`.
pub fn scenario_show(file: Option<&Path>, as_json: bool) -> Result<()> {
    let scenario = load_scenario(file, &Overrides::default())?;
    let show = plsim_lab::show::show(&scenario)?;
    if as_json {
        json(&show);
    } else {
        print!("{}", plsim_lab::show::text(&show));
    }
    Ok(())
}

/// Standard input can be read once: `command` reads its capture once per run.
fn once_is_not_enough(pcap: &std::path::Path, command: &str) -> Result<()> {
    if pcap == std::path::Path::new(plsim_pcap::STDIN) {
        return Err(Error::Usage(format!(
            "`plsim {command}` reads its capture once per run: give a file, not - (standard input)"
        )));
    }
    Ok(())
}

/// `plsim plan`.
pub fn plan(a: PlanArgs) -> Result<()> {
    // Optional for clap only, so that `plan merge` needs none.
    let Some(pcap) = a.pcap.as_deref() else {
        return Err(Error::Usage(
            "plsim plan needs a capture: plsim plan PCAP [flags]".into(),
        ));
    };
    let overrides = Overrides {
        ports: a.ports,
        reuse: a.reuse,
        pickup: a.pickup,
        ..Overrides::default()
    };
    let base = load_scenario(a.scenario.as_deref(), &overrides)?;
    let available = base.services.first().map_or(0, |s| s.nat_ips.len());
    if a.list {
        for index in 0..available {
            println!("{{\"index\":{index},\"nat_ips\":{}}}", index + 1);
        }
        return Ok(());
    }
    let stop = interrupts();
    if let Some(k) = a.point {
        let out = a.out.expect("clap requires --out with --point");
        let Some(result) = plsim_lab::plan::run_one(&base, a.pickup, Some(&stop), k, pcap)? else {
            return Err(Error::Interrupted(format!(
                "point {k} did not run to its end: no result written"
            )));
        };
        files::create_dir(&out)?;
        let file = out.join(plsim_lab::plan::point_file(k));
        let text = serde_json::to_string_pretty(&result).expect("a result serializes") + "\n";
        files::write_file(&file, text.as_bytes())?;
        if a.json {
            json(&result);
        } else {
            eprintln!("plsim: wrote {}", file.display());
        }
        return Ok(());
    }
    once_is_not_enough(pcap, "plan")?;
    let plan = plsim_lab::plan::plan(&base, a.pickup, Some(&stop), || Ok(Reader::open(pcap)?))?;
    if a.json {
        json(&plan);
    } else {
        print!(
            "{}",
            report::plan(&plsim_lab::plan::input_name(pcap), &plan)
        );
    }
    if plan.interrupted {
        return Err(Error::Interrupted(format!(
            "{} replays ran to their end",
            plan.runs.len()
        )));
    }
    Ok(())
}

/// `plsim plan merge`: every `plan-point-*.json` of `dirs` into the plan.
pub fn plan_merge(dirs: &[std::path::PathBuf], as_json: bool) -> Result<()> {
    let results = read_points(dirs, "plan-point-")?;
    let (plan, input) = plsim_lab::plan::merge(&results)?;
    if as_json {
        json(&plan);
    } else {
        print!("{}", report::plan(&input, &plan));
    }
    Ok(())
}

/// Every `PREFIX*.json` of `dirs` (partial files left out), parsed, with its path.
fn read_points<T: serde::de::DeserializeOwned>(
    dirs: &[std::path::PathBuf],
    prefix: &str,
) -> Result<Vec<(std::path::PathBuf, T)>> {
    let mut results = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, &e))?;
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(prefix) && n.ends_with(".json") && !n.contains(".partial.")
                })
            })
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, &e))?;
            let r: T = serde_json::from_str(&text)
                .map_err(|e| Error::Input(format!("{}: not a point result: {e}", f.display())))?;
            results.push((f, r));
        }
    }
    Ok(results)
}

/// `plsim sweep`.
pub fn sweep(a: SweepArgs) -> Result<()> {
    if a.pcap.is_some() && a.load.is_some() {
        return Err(Error::Usage(
            "--load multiplies a workload's arrival rate: it does not apply to a capture".into(),
        ));
    }
    if let Some(p) = &a.pcap
        && a.point.is_none()
        && !a.list
    {
        once_is_not_enough(p, "sweep")?;
    }
    let grid = Grid {
        nat_ips: a.nat_ips.map(|v| v.0).unwrap_or_default(),
        allocators: a.allocators.map(|v| v.0).unwrap_or_default(),
        ports: a.ports.map(|v| v.0).unwrap_or_default(),
        idle: a.idle.map(|v| v.0).unwrap_or_default(),
        fin_hold: a.fin_hold.map(|v| v.0).unwrap_or_default(),
        load: a.load.map(|v| v.0).unwrap_or_default(),
    };
    let sweep = Sweep {
        capture: a.pcap.clone(),
        scenario: a.scenario,
        reuse: a.reuse,
        pickup: a.pickup,
        workload: a.workload.into(),
        stop: Some(interrupts()),
    };
    let points = grid.points();
    if points.len() > plsim_lab::sweep::MAX_POINTS {
        return Err(Error::Usage(format!(
            "the grid has {} points; at most {}",
            points.len(),
            plsim_lab::sweep::MAX_POINTS
        )));
    }
    if a.list {
        for (index, p) in points.iter().enumerate() {
            let mut line = serde_json::to_value(p).expect("a point serializes");
            line["index"] = index.into();
            println!("{line}");
        }
        return Ok(());
    }
    let out = a.out.expect("clap requires --out unless --list");
    // The file's name, not its path: nodes of a cluster may mount it in different places.
    let title = match &a.pcap {
        Some(p) if p == Path::new(plsim_pcap::STDIN) => "sweep of standard input".to_string(),
        Some(p) => format!(
            "sweep of {}",
            p.file_name().map_or(p.as_os_str(), |n| n).to_string_lossy()
        ),
        None => "sweep of the synthetic workload".to_string(),
    };
    if let Some(k) = a.point {
        let Some(result) = sweep.run_one(&points, k, &title)? else {
            return Err(Error::Interrupted(format!(
                "point {k} did not run to its end: no result written"
            )));
        };
        files::create_dir(&out)?;
        let file = out.join(plsim_lab::sweep::point_file(k));
        let text = serde_json::to_string_pretty(&result).expect("a result serializes") + "\n";
        files::write_file(&file, text.as_bytes())?;
        if a.json {
            json(&result);
        } else {
            eprintln!("plsim: wrote {}", file.display());
        }
        return Ok(());
    }
    // Each run is itself two threads: one run per core at a time.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let swept = sweep.run_all(&points, workers)?;
    let rows = swept.rows;
    write_sweep(&out, &title, &rows, a.json)?;
    if swept.interrupted {
        return Err(Error::Interrupted(format!(
            "{} of the {} points ran to their end; sweep.csv holds those",
            rows.len(),
            points.len()
        )));
    }
    Ok(())
}

/// Writes `sweep.csv` and the plot into `out` and prints the rows.
fn write_sweep(
    out: &Path,
    title: &str,
    rows: &[plsim_lab::sweep::Row],
    as_json: bool,
) -> Result<()> {
    files::create_dir(out)?;
    let csv = plsim_lab::sweep::csv(rows);
    files::write_file(&out.join("sweep.csv"), csv.as_bytes())?;
    if let Err(e) = plsim_lab::sweep::plot(&out.join("sweep"), title, rows) {
        warn(&format!("no sweep plot: {e}"));
    }
    if as_json {
        json(&rows);
    } else {
        print!("{csv}");
        eprintln!(
            "plsim: wrote {} and the plot",
            out.join("sweep.csv").display()
        );
    }
    Ok(())
}

/// `plsim sweep merge`: every `point-*.json` of `dirs` into `sweep.csv` and the plot.
pub fn sweep_merge(dirs: &[std::path::PathBuf], out: &Path, as_json: bool) -> Result<()> {
    let results = read_points(dirs, "point-")?;
    let (rows, title) = plsim_lab::sweep::merge(&results)?;
    write_sweep(out, &title, &rows, as_json)
}

/// `plsim bench`.
pub fn bench(a: BenchArgs) -> Result<()> {
    let r = plsim_lab::bench::run_builtin(a.flows, a.packets, a.engine, a.batch, a.proxy_protocol)?;
    if a.json {
        json(&r);
    } else {
        print!("{}", report::bench(a.engine, &r));
    }
    if r.complete {
        Ok(())
    } else {
        // Drops are results elsewhere; here they make the figures meaningless.
        Err(plsim_lab::Error::Input(format!(
            "the bench dropped {} packets ({} while opening the flows): its figures are not throughput",
            r.dropped + r.setup_dropped,
            r.setup_dropped
        )))
    }
}
