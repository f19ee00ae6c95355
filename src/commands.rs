//! Each command: the flags handed to the library, the results printed.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use plsim_control::Scenario;
use plsim_lab::files::{self, OutDir, load_scenario};
use plsim_lab::html::{self, RunMeta};
use plsim_lab::path::Overrides;
use plsim_lab::points::fingerprint::InputHash;
use plsim_lab::points::{self, Command, Ran};
use plsim_lab::replay::{PacketSource, PcapTaps};
use plsim_lab::run::{self, RunSpec};
use plsim_lab::stop::Stop;
use plsim_lab::summary::Summary;
use plsim_lab::sweep::{Grid, Input, Sweep};
use plsim_lab::workload::{self, Workloads, specs};
use plsim_lab::{Error, Result};
use plsim_pcap::Reader;
use serde::Serialize;

use plsim_lab::report;

use crate::{BenchArgs, PlanArgs, RunArgs, SweepArgs};

fn json<T: Serialize>(v: &T) {
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
    (what, verb): (&str, &str),
    mut meta: RunMeta,
    hash: Option<&InputHash>,
    cut: impl FnOnce(&S) -> (bool, Option<String>),
) -> Result<()> {
    let stop = interrupts();
    let _held = hold_outputs(flags.out.as_deref())?;
    let bar = spinner(flags, verb);
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
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
        reuse: Some(flags.reuse()),
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
    test_hold("outputs", &stop);
    if let Some(dir) = &flags.out {
        for w in files::write_run(dir, taps, &outcome.series, what)? {
            warn(&w);
        }
    }
    meta.fingerprint = hash.map(InputHash::digest);
    let print = |s: &Summary| print_summary(flags, what, s);
    let report = |dir: &Path, s: &Summary| {
        let doc = serde_json::to_value(s).expect("results serialize");
        files::write_report(
            dir,
            &html::run(&meta, &doc, &outcome.series, &outcome.latency),
        )
        .map(|_| ())
    };
    finish(
        summary,
        flags.out.as_deref(),
        print,
        report,
        &stop,
        |s, cut| {
            if cut {
                format!(
                    "the results cover the {} packets read before it",
                    s.input.packets
                )
            } else {
                format!(
                    "the signal came once the input was read: the results cover all {} packets",
                    s.input.packets
                )
            }
        },
    )
}

fn print_summary(flags: &RunArgs, what: &str, summary: &Summary) {
    if flags.json {
        json(summary);
    } else {
        print!("{}", report::summary(what, summary));
        if let Some(dir) = &flags.out {
            println!("  report         {}", dir.join("report.html").display());
        }
    }
}

/// What ran, for a report: the command line as given, plsim's version, the input, and the
/// scenario as `plsim scenario show` prints it (left out if it can't be shown).
fn meta(kind: &str, input: &str, scenario: Option<&Scenario>) -> RunMeta {
    // The program as `plsim`, not the path it was started by.
    let command = std::iter::once("plsim".to_owned())
        .chain(std::env::args().skip(1))
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    RunMeta {
        kind: kind.into(),
        command,
        version: env!("CARGO_PKG_VERSION").into(),
        input: input.into(),
        fingerprint: None,
        scenario: scenario
            .and_then(|s| plsim_lab::show::show(s).ok())
            .map_or_else(String::new, |s| plsim_lab::show::text(&s)),
    }
}

/// With `--out DIR`: holds DIR for this run alone (see [`OutDir`]) and clears what a previous
/// run left there, so that the directory holds one run's outputs, `summary.json` last.
fn hold_outputs(out: Option<&Path>) -> Result<Option<OutDir>> {
    out.map(|dir| hold_alone(dir, &files::RUN_OUTPUTS))
        .transpose()
}

/// Holds `dir` for this run alone (refused when another run holds it, created if needed) and
/// removes what a previous run left under the names of `outputs`.
fn hold_alone(dir: &Path, outputs: &[&str]) -> Result<OutDir> {
    let (held, warning) = OutDir::alone(dir)?;
    if let Some(w) = warning {
        warn(&w);
    }
    held.clear(outputs)?;
    Ok(held)
}

/// Holds `dir` (which must exist) with the other runs that write files of their own into it;
/// refused when a run holds it alone.
pub(crate) fn hold_shared(dir: &Path) -> Result<OutDir> {
    let (held, warning) = OutDir::shared(dir)?;
    if let Some(w) = warning {
        warn(&w);
    }
    Ok(held)
}

/// The end of a run whose results are one summary: `summary.json` written (with `--out`,
/// after every other output: its presence means they are whole), the summary printed, and the
/// exit status, all agreeing on whether a signal came. A signal counts until the last look at
/// the stop flag here, whenever it came: while the input was read (the run stopped reading:
/// `interrupted` from the run), or after (its results are whole, but the status is 130 and
/// the summary says `interrupted` all the same). One that came while `summary.json` was
/// written or the summary printed has `summary.json` written again, so that the file and the
/// status agree (what was printed may say otherwise). After the last look, a first signal
/// changes nothing: the process ends with the status decided there, which the file says. `why`
/// words the interrupt: whether the run itself was cut short.
fn finish(
    mut summary: Summary,
    out: Option<&Path>,
    print: impl Fn(&Summary),
    report: impl Fn(&Path, &Summary) -> Result<()>,
    stop: &Stop,
    why: impl Fn(&Summary, bool) -> String,
) -> Result<()> {
    let cut = summary.interrupted;
    summary.interrupted |= stop.requested();
    if let Some(dir) = out {
        report(dir, &summary)?;
        files::write_summary(dir, &summary)?;
    }
    print(&summary);
    test_hold("summary", stop);
    if !summary.interrupted && stop.requested() {
        summary.interrupted = true;
        if let Some(dir) = out {
            report(dir, &summary)?;
            files::write_summary(dir, &summary)?;
        }
    }
    if summary.interrupted {
        return Err(Error::Interrupted(why(&summary, cut)));
    }
    Ok(())
}

/// For the tests only: with `PLSIM_TEST_HOLD=POINT` in the environment, a run says
/// `plsim: test hold: POINT` on stderr when it reaches `point` and waits there until a signal
/// asks it to stop or its standard input closes (at most a minute), so that a test can send a
/// signal, or start another run, at that very point instead of after a guessed sleep. The
/// points: `start` (a sweep, before its first point), `outputs` (a replay or simulation, its
/// input read and run through, before it writes anything) and `summary` (after `summary.json`
/// is written and the summary printed, before the exit status is decided). Never on the packet
/// path.
fn test_hold(point: &str, stop: &Stop) {
    if std::env::var_os("PLSIM_TEST_HOLD").is_none_or(|p| p != point) {
        return;
    }
    eprintln!("plsim: test hold: {point}");
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&released);
    std::thread::spawn(move || {
        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let start = std::time::Instant::now();
    while !stop.requested()
        && !released.load(std::sync::atomic::Ordering::Relaxed)
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The stop Ctrl-C and SIGTERM request (see [`Stop::on_signals`]).
pub(crate) fn interrupts() -> Stop {
    let (stop, failed) = Stop::on_signals();
    if let Some(w) = failed {
        warn(&w);
    }
    stop
}

/// `plsim replay`.
pub fn replay(pcap: &Path, flags: &RunArgs) -> Result<()> {
    let scenario = load_scenario(flags.scenario.as_deref(), &flags.overrides)?;
    let hash = InputHash::default();
    let mut reader = hash.open(pcap)?;
    let name = pcap.display().to_string();
    run_and_report(
        &mut reader,
        &scenario,
        flags,
        (&name, "replayed"),
        meta("replay", &name, Some(&scenario)),
        Some(&hash),
        |r| (r.truncated(), r.warning().map(str::to_string)),
    )
}

/// `plsim simulate` with the synthetic workload.
pub fn simulate(flags: &RunArgs, over: &workload::Overrides) -> Result<()> {
    let scenario = load_scenario(flags.scenario.as_deref(), &flags.overrides)?;
    let specs = specs(&scenario, over)?;
    let what = workload::describe(&specs);
    let mut source = Workloads::new(&scenario, specs)?;
    let meta = meta("simulate", &what, Some(&scenario));
    run_and_report(
        &mut source,
        &scenario,
        flags,
        (&what, "simulated"),
        meta,
        None,
        |_| (false, None),
    )
}

/// `plsim simulate --workload tcp`: real TCP stacks echo through the path.
pub fn simulate_tcp(flags: &RunArgs, connections: u32, bytes: u64) -> Result<()> {
    let scenario = load_scenario(flags.scenario.as_deref(), &flags.overrides)?;
    let stop = interrupts();
    let _held = hold_outputs(flags.out.as_deref())?;
    let (summary, _) =
        plsim_lab::tcp::echo_summary(&scenario, connections, bytes, flags.reuse(), Some(&stop))?;
    test_hold("outputs", &stop);
    if flags.out.is_some() {
        eprintln!(
            "plsim: a TCP run writes summary.json and report.html only (no pcaps, no time series)"
        );
    }
    let what = format!("{connections} TCP connections of {bytes} bytes");
    let print = |s: &Summary| print_summary(flags, &what, s);
    let meta = meta("simulate", &what, Some(&scenario));
    let report = |dir: &Path, s: &Summary| {
        let doc = serde_json::to_value(s).expect("results serialize");
        files::write_report(dir, &html::run(&meta, &doc, &[], &[])).map(|_| ())
    };
    finish(
        summary,
        flags.out.as_deref(),
        print,
        report,
        &stop,
        |_, cut| {
            if cut {
                "the TCP run stopped where it was".into()
            } else {
                "the signal came once the TCP run was over: its results are whole".into()
            }
        },
    )
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
    print!(
        "{}",
        report::scenario_ok(file, &files::read_scenario(file)?)
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

/// `plsim plan`.
pub fn plan(a: PlanArgs) -> Result<()> {
    let overrides = Overrides {
        ports: a.ports,
        reuse: a.reuse,
        pickup: a.pickup,
        ..Overrides::default()
    };
    let base = load_scenario(a.scenario.as_deref(), &overrides)?;
    if let (Some(rate), Some(hold)) = (a.rate, a.hold) {
        return plan_rate(&base, rate, hold, &a);
    }
    let pcap = a
        .pcap
        .as_deref()
        .expect("clap requires the capture without --rate, outside `plan merge`");
    let available = base.services.first().map_or(0, |s| s.nat_ips.len());
    if a.list {
        print!("{}", plsim_lab::plan::list(available));
        return Ok(());
    }
    let stop = interrupts();
    if let Some(k) = a.point {
        let out = a.out.expect("clap requires --out with --point");
        files::create_dir(&out)?;
        let _held = hold_shared(&out)?;
        let ran = plsim_lab::plan::run_one(&base, a.pickup, Some(&stop), k, pcap)?;
        return point_out(ran, k, &out, a.json);
    }
    let held = a
        .out
        .as_deref()
        .map(|out| hold_alone(out, &PLAN_OUTPUTS))
        .transpose()?;
    let mut plan = plsim_lab::plan::plan(&base, a.pickup, Some(&stop), || Ok(Reader::open(pcap)?))?;
    plan.size_for(a.loss);
    if let Some(w) = &plan.warning {
        warn(w);
    }
    let input = plsim_lab::points::input_name(pcap);
    if let Some(out) = a.out.as_deref() {
        let doc = serde_json::to_value(&plan).expect("a plan serializes");
        let meta = meta("plan", &input, Some(&base));
        files::write_report(out, &html::plan(&meta, &doc))?;
        files::write_json(out, "plan.json", &plan)?;
    }
    drop(held);
    if a.json {
        json(&plan);
    } else {
        print!("{}", report::plan(&input, &plan));
        if let Some(out) = &a.out {
            println!("  report: {}", out.join("report.html").display());
        }
    }
    plan.check_whole()
}

/// What `plan --out` writes, `plan.json` (written last) first.
const PLAN_OUTPUTS: [&str; 2] = ["plan.json", "report.html"];

/// `plsim plan --rate R --hold S`: the theory's answer, checked through the path with
/// `--check`.
fn plan_rate(base: &Scenario, rate_per_s: f64, hold_s: f64, a: &PlanArgs) -> Result<()> {
    use plsim_lab::theory::rate::{self, Question};
    let service = base
        .services
        .first()
        .ok_or_else(|| Error::Input("the scenario has no service".into()))?;
    let q = Question {
        rate_per_s,
        hold_s,
        backends: a.backends.unwrap_or_else(|| rate::backends(base)),
        ports_per_nat_ip: service.ports.len(),
        reuse: service.reuse,
        loss: a.loss,
    };
    let stop = a.check.then(interrupts);
    let answer = match &stop {
        Some(stop) => {
            let flows = a.flows.unwrap_or_else(|| rate::default_check_flows(&q));
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            rate::check(base, &q, flows, Some(stop), workers)?
        }
        None => rate::answer(&q),
    };
    if a.json {
        json(&answer);
    } else {
        print!("{}", report::plan_rate(&answer));
    }
    match stop {
        Some(stop) if stop.requested() => Err(Error::Interrupted(
            "the check's runs that ran to their end are shown".into(),
        )),
        _ => Ok(()),
    }
}

/// `plsim plan merge`: every `plan-point-*.json` of `dirs` into the plan, its theory sized for
/// `loss`.
pub fn plan_merge(dirs: &[std::path::PathBuf], as_json: bool, loss: f64) -> Result<()> {
    let (mut plan, input) = plsim_lab::plan::merge(points::read(Command::Plan, dirs)?)?;
    plan.size_for(loss);
    if plan.truncated {
        warn(DAMAGED_POINTS);
    }
    if as_json {
        json(&plan);
    } else {
        print!("{}", report::plan(&input, &plan));
    }
    Ok(())
}

/// `plsim sweep`.
pub fn sweep(a: SweepArgs) -> Result<()> {
    let grid = Grid {
        nat_ips: a.nat_ips.map(|v| v.0).unwrap_or_default(),
        allocators: a.allocators.map(|v| v.0).unwrap_or_default(),
        ports: a.ports.map(|v| v.0).unwrap_or_default(),
        idle: a.idle.map(|v| v.0).unwrap_or_default(),
        fin_hold: a.fin_hold.map(|v| v.0).unwrap_or_default(),
    };
    // --load with a capture is refused before (SweepArgs::check).
    let input = match a.pcap {
        Some(pcap) => Input::Capture(pcap),
        None => Input::Workload {
            flags: a.workload,
            load: a.load.map(|v| v.0).unwrap_or_default(),
        },
    };
    let sweep = Sweep {
        input,
        grid,
        scenario: a.scenario,
        reuse: a.reuse,
        pickup: a.pickup,
        stop: Some(interrupts()),
    };
    if a.list {
        print!("{}", points::list(&sweep.points()));
        return Ok(());
    }
    let out = a.out.expect("clap requires --out unless --list");
    if let Some(k) = a.point {
        files::create_dir(&out)?;
        let _held = hold_shared(&out)?;
        return point_out(sweep.run_one(k)?, k, &out, a.json);
    }
    let _held = hold_alone(&out, &plsim_lab::sweep::OUTPUTS)?;
    // Each run is itself two threads: one run per core at a time.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(stop) = &sweep.stop {
        test_hold("start", stop);
    }
    let swept = sweep.run_all(workers)?;
    if let Some(w) = &swept.warning {
        warn(w);
    }
    let meta = meta("sweep", &sweep.input.name(), None);
    write_sweep(&out, &sweep.title(), &swept.rows, &meta, a.json)?;
    swept.check_whole(sweep.points().len())
}

/// Writes point `k`'s result into `dir` (none: the point was interrupted) and prints it or
/// where it went, after the capture's warning, if any.
fn point_out<R: Serialize>(ran: Ran<R>, k: usize, dir: &Path, as_json: bool) -> Result<()> {
    if let Some(w) = &ran.warning {
        warn(w);
    }
    let Some(result) = ran.result else {
        let why = format!("point {k} did not run to its end: no result written");
        return Err(Error::Interrupted(why));
    };
    let file = result.write(dir)?;
    if as_json {
        json(&result);
    } else {
        eprintln!("plsim: wrote {}", file.display());
    }
    Ok(())
}

/// What a merge says of points that read a damaged capture.
const DAMAGED_POINTS: &str = "the points read a capture cut short or damaged after its first \
                              packet, each up to the damage (their results say `truncated`)";

/// Writes the plot and `sweep.csv` into `out` (the CSV last) and prints the rows.
fn write_sweep(
    out: &Path,
    title: &str,
    rows: &[plsim_lab::sweep::Row],
    meta: &RunMeta,
    as_json: bool,
) -> Result<()> {
    let (csv, plotted) = plsim_lab::sweep::write(out, title, rows, meta)?;
    let csv_file = out.join("sweep.csv");
    if as_json {
        json(&rows);
    } else {
        print!("{csv}");
    }
    if !as_json {
        let plot = if plotted {
            " and the plot"
        } else {
            " (no point ran to its end: no plot)"
        };
        eprintln!("plsim: wrote {}{plot}", csv_file.display());
    }
    Ok(())
}

/// `plsim sweep merge`: every `point-*.json` of `dirs` into `sweep.csv` and the plot.
pub fn sweep_merge(dirs: &[std::path::PathBuf], out: &Path, as_json: bool) -> Result<()> {
    let (rows, title) = plsim_lab::sweep::merge(points::read(Command::Sweep, dirs)?)?;
    let _held = hold_alone(out, &plsim_lab::sweep::OUTPUTS)?;
    if rows.iter().any(|r| r.truncated) {
        warn(DAMAGED_POINTS);
    }
    let meta = meta("sweep merge", &title, None);
    write_sweep(out, &title, &rows, &meta, as_json)
}

/// `plsim bench`.
pub fn bench(a: BenchArgs) -> Result<()> {
    let r = plsim_lab::bench::run_builtin(&a.options)?;
    if a.json {
        json(&r);
    } else {
        print!("{}", report::bench(a.options.engine, &r));
    }
    r.check()
}
