//! `plsim replay`, `plsim bench` and `plsim scenario`: flags and files around the pipeline.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use plsim_control::Scenario;
use plsim_engine::NoTaps;
use plsim_pcap::Reader;
use plsim_pipeline::bench::{BenchAddrs, bench};
use plsim_pipeline::path::{self, Overrides, Path as SimPath};
use plsim_pipeline::replay::{PacketSource, PcapTaps, WorkloadSource};
use plsim_pipeline::sim::{self, RunSpec};
use plsim_pipeline::summary::Summary;
use plsim_traffic::workload::{Workload, WorkloadSpec};
use serde::Serialize;

use crate::Failure;

/// Reads a scenario file, or the built-in scenario; applies the overrides; checks the result.
pub fn load_scenario(file: Option<&Path>, overrides: &Overrides) -> Result<Scenario, Failure> {
    let (name, mut scenario) = match file {
        None => ("the built-in scenario".to_string(), Scenario::builtin()),
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Failure::Input(format!("{}: {}", f.display(), io_reason(&e))))?;
            let s = Scenario::from_toml_str(&text)
                .map_err(|p| Failure::Input(problems(f, &p.to_string())))?;
            (f.display().to_string(), s)
        }
    };
    overrides
        .apply(&mut scenario)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    scenario.validate().map_err(|p| {
        Failure::Input(format!(
            "{name} with the flags given: {}",
            p.to_string().replace('\n', "; ")
        ))
    })?;
    Ok(scenario)
}

fn problems(file: &Path, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() == 1 {
        format!("{}: {}", file.display(), lines[0])
    } else {
        let mut s = format!("{}: {} problems:", file.display(), lines.len());
        for l in lines {
            s.push_str("\n  ");
            s.push_str(l);
        }
        s
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `plsim scenario default`.
pub fn scenario_default() -> Result<(), Failure> {
    print!("{}", Scenario::builtin().to_toml());
    Ok(())
}

/// `plsim scenario check FILE`.
pub fn scenario_check(file: &Path) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Input(format!("{}: {}", file.display(), io_reason(&e))))?;
    let s = Scenario::from_toml_str(&text)
        .map_err(|p| Failure::Input(problems(file, &p.to_string())))?;
    println!(
        "{}: ok ({} services, {} endpoints, {} timeline events)",
        file.display(),
        s.services.len(),
        s.endpoints.len(),
        s.timeline.len()
    );
    Ok(())
}

/// The replay's and the simulation's flags, as the binary parsed them.
pub struct RunFlags<'a> {
    pub scenario: Option<&'a Path>,
    pub out: Option<&'a Path>,
    pub json: bool,
    pub quiet: bool,
    pub overrides: Overrides,
    pub sample_every: Duration,
    pub engine: plsim_engine::Engine,
    pub batch: usize,
}

fn spinner(flags: &RunFlags<'_>, what: &str) -> Option<ProgressBar> {
    (!flags.json && !flags.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new_spinner();
        let template = format!("{{spinner}} {{pos}} packets {what} ({{per_sec}})");
        b.set_style(ProgressStyle::with_template(&template).expect("a valid template"));
        b.enable_steady_tick(Duration::from_millis(100));
        b
    })
}

/// Runs a source through the path and writes and prints what the flags ask for.
fn run_and_report<S: PacketSource>(
    source: &mut S,
    scenario: &Scenario,
    flags: &RunFlags<'_>,
    what: &str,
    truncated: impl FnOnce(&S) -> (bool, Option<String>),
) -> Result<(), Failure> {
    if let Some(dir) = flags.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Input(format!("{}: {}", dir.display(), io_reason(&e))))?;
    }
    let bar = spinner(
        flags,
        if what.ends_with(".pcap") || what.ends_with(".pcapng") {
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
    let spec = RunSpec {
        pickup: flags.overrides.pickup,
        sample_every: flags.out.map(|_| flags.sample_every),
        progress: Some(&progress),
        engine: flags.engine,
        batch: flags.batch,
        ..RunSpec::new(scenario)
    };
    let taps = flags.out.map(PcapTaps::in_dir);
    let (outcome, taps) =
        sim::run(source, &spec, taps).map_err(|e| Failure::Input(e.to_string()))?;
    let written = match taps {
        Some(t) => Some(t.finish().map_err(|e| Failure::Input(e.to_string()))?.0),
        None => None,
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (cut, warning) = truncated(source);
    let mut summary = outcome.summary;
    summary.input.truncated = cut;
    if let Some(w) = warning {
        eprintln!("plsim: warning: {w}");
    }
    if let Some(dir) = flags.out {
        if let Some(w) = written
            && w.skipped > 0
        {
            eprintln!(
                "plsim: warning: {} frames of another link type left out of the pcaps",
                w.skipped
            );
        }
        let json = serde_json::to_string_pretty(&summary).expect("a summary serializes") + "\n";
        write_file(&dir.join("summary.json"), json.as_bytes())?;
        write_file(
            &dir.join("timeseries.csv"),
            sim::series_csv(&outcome.series).as_bytes(),
        )?;
        if let Err(e) = plot_series(&dir.join("timeseries"), what, &outcome.series) {
            eprintln!("plsim: warning: no time series plot: {e}");
        }
    }
    if flags.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("a summary serializes")
        );
    } else {
        print_summary(what, &summary);
    }
    Ok(())
}

/// The gauges over simulated time: ports in use per NAT IP, live flows, SNAT failures.
fn plot_series(
    stem: &Path,
    what: &str,
    series: &[plsim_pipeline::stages::Sample],
) -> Result<(), String> {
    use crate::plot::{Line, Panel};
    let t0 = series.first().map_or(0, |s| s.t.as_nanos());
    let t = |s: &plsim_pipeline::stages::Sample| (s.t.as_nanos() - t0) as f64 / 1e9;
    let mut ips: Vec<std::net::Ipv4Addr> = Vec::new();
    for s in series {
        for (ip, _) in &s.ports_in_use {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
    }
    let ports = ips
        .iter()
        .map(|ip| Line {
            label: ip.to_string(),
            points: series
                .iter()
                .map(|s| {
                    (
                        t(s),
                        s.ports_in_use
                            .iter()
                            .find(|(i, _)| i == ip)
                            .map_or(0, |(_, n)| *n) as f64,
                    )
                })
                .collect(),
        })
        .collect();
    let single = |label: &str, f: &dyn Fn(&plsim_pipeline::stages::Sample) -> u64| Panel {
        y_label: label.to_string(),
        lines: vec![Line {
            label: String::new(),
            points: series.iter().map(|s| (t(s), f(s) as f64)).collect(),
        }],
    };
    let panels = [
        Panel {
            y_label: "ports in use".into(),
            lines: ports,
        },
        single("live flows", &|s| s.live_flows),
        single("ports held", &|s| s.ports_held),
        single("SNAT failures", &|s| s.snat_failures),
    ];
    crate::plot::write(stem, what, "simulated time (s)", &panels)
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes)
        .map_err(|e| Failure::Input(format!("{}: {}", path.display(), io_reason(&e))))
}

/// `plsim replay`.
pub fn replay(pcap: &Path, flags: RunFlags<'_>) -> Result<(), Failure> {
    let scenario = load_scenario(flags.scenario, &flags.overrides)?;
    let mut reader = Reader::open(pcap).map_err(|e| Failure::Input(e.to_string()))?;
    run_and_report(
        &mut reader,
        &scenario,
        &flags,
        &pcap.display().to_string(),
        |r| (r.truncated(), r.warning().map(str::to_string)),
    )
}

/// `plsim simulate` with the synthetic workload.
pub fn simulate(flags: RunFlags<'_>, workload: &WorkloadFlags) -> Result<(), Failure> {
    let scenario = load_scenario(flags.scenario, &flags.overrides)?;
    let spec = workload_of(&scenario, workload)?;
    let w = Workload::new(&spec).map_err(|e| Failure::Usage(e.to_string()))?;
    let mut source = WorkloadSource::new(w);
    let what = format!(
        "workload ({} flows max, {})",
        spec.flows.map_or("no limit".into(), |n| n.to_string()),
        spec.arrivals
    );
    run_and_report(&mut source, &scenario, &flags, &what, |_| (false, None))
}

/// `plsim simulate --workload tcp`: real TCP stacks echo through the path.
pub fn simulate_tcp(flags: RunFlags<'_>, connections: u32, bytes: u64) -> Result<(), Failure> {
    let scenario = load_scenario(flags.scenario, &flags.overrides)?;
    let (summary, _) = plsim_pipeline::tcp::echo_summary(&scenario, connections, bytes)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if let Some(dir) = flags.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Input(format!("{}: {}", dir.display(), io_reason(&e))))?;
        let json = serde_json::to_string_pretty(&summary).expect("a summary serializes") + "\n";
        write_file(&dir.join("summary.json"), json.as_bytes())?;
        eprintln!("plsim: a TCP run writes summary.json only (no pcaps, no time series)");
    }
    if flags.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("a summary serializes")
        );
    } else {
        print_summary(
            &format!("{connections} TCP connections of {bytes} bytes"),
            &summary,
        );
        if let Some(t) = summary.tcp {
            println!(
                "  tcp            {} of {} connections completed, {} bytes verified",
                t.completed, t.connections, t.bytes_verified
            );
        }
    }
    Ok(())
}

/// Workload settings from the command line, over the scenario's `[workload]`.
#[derive(Clone, Debug, Default)]
pub struct WorkloadFlags {
    pub flows: Option<u64>,
    pub arrivals: Option<String>,
    pub durations: Option<String>,
    pub close: Option<String>,
    pub hosts: Option<u32>,
    pub packets_per_flow: Option<u32>,
    pub bytes_per_flow: Option<u64>,
    pub until: Option<f64>,
    pub seed: Option<u64>,
}

/// The workload of a scenario with the flags over it.
pub fn workload_of(scenario: &Scenario, f: &WorkloadFlags) -> Result<WorkloadSpec, Failure> {
    let mut spec = path::workload_spec(scenario).map_err(|e| Failure::Input(e.to_string()))?;
    let usage =
        |flag: &str, v: &str, e: &dyn std::fmt::Display| Failure::Usage(format!("{flag} {v}: {e}"));
    if let Some(a) = &f.arrivals {
        spec.arrivals = a.parse().map_err(|e| usage("--arrivals", a, &e))?;
    }
    if let Some(d) = &f.durations {
        spec.duration = d.parse().map_err(|e| usage("--durations", d, &e))?;
    }
    if let Some(c) = &f.close {
        spec.close = c.parse().map_err(|e| usage("--close", c, &e))?;
    }
    if let Some(n) = f.flows {
        spec.flows = Some(n);
    }
    if let Some(h) = f.hosts {
        spec.hosts = h;
    }
    if let Some(p) = f.packets_per_flow {
        spec.packets_per_flow = p;
    }
    if let Some(b) = f.bytes_per_flow {
        spec.bytes_per_flow = b;
    }
    if let Some(u) = f.until {
        spec.until_secs = Some(u);
    }
    if let Some(s) = f.seed {
        spec.seed = s;
    }
    spec.validate().map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(spec)
}

/// A short plain-text summary for people.
pub fn print_summary(what: &str, s: &Summary) {
    let p = &s.packets;
    println!(
        "{what}: {} packets over {:.3} s of simulated time, run in {:.3} s ({:.2} Mpps){}",
        s.input.packets,
        s.sim_time_s,
        s.throughput.wall_s,
        s.throughput.packets_per_sec / 1e6,
        if s.input.truncated {
            ", capture cut short"
        } else {
            ""
        }
    );
    println!(
        "  consumer side  {:>10} in, {:>10} delivered to the consumer",
        p.consumer_in, p.to_consumer
    );
    println!(
        "  backend side   {:>10} in, {:>10} delivered to the backends",
        p.backend_in, p.to_backend
    );
    let d = serde_json::to_value(p.dropped).expect("drops serialize");
    let reasons: Vec<String> = d
        .as_object()
        .expect("an object")
        .iter()
        .filter(|(_, v)| v.as_u64() != Some(0))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "  dropped        {:>10}{}",
        p.dropped.total(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!("  ({})", reasons.join(", "))
        }
    );
    let f = &s.flows;
    println!(
        "  flows          {} created, {} closed, {} expired, {} torn down, records: {} at most, {} at the end (open or holding a port)",
        f.created, f.closed, f.expired, f.torn_down, f.active_peak, f.active_end
    );
    println!("  SNAT failures  {}", f.snat_failures);
    for n in &s.nat_ips {
        println!(
            "  NAT IP {:<15} {:>8} flows, {:>7} ports in use at most, {:>7} at the end",
            n.ip, n.flows, n.ports_in_use_peak, n.ports_in_use_end
        );
    }
    println!(
        "  latency        p50 {:.1} us, p99 {:.1} us, max {:.1} us (in the pipeline, wall clock)",
        s.latency_ns.p50 as f64 / 1e3,
        s.latency_ns.p99 as f64 / 1e3,
        s.latency_ns.max as f64 / 1e3
    );
}

/// What `plsim bench --json` prints.
#[derive(Serialize)]
struct BenchReport {
    mpps: f64,
    /// The single-core reference NAT loop (hash lookup, rewrite, incremental checksum) over the
    /// same frames, in the same run.
    reference_mpps: f64,
    flows: u32,
    packets: u64,
    setup_per_sec: f64,
    /// SNAT flow state per live flow (flow table, indexes, timers, port allocators).
    bytes_per_flow: f64,
    wall_s: f64,
    latency_ns: plsim_pipeline::summary::Latency,
    delivered: u64,
    dropped: u64,
    /// Time each stage spent per packet processing (not waiting), in the timed phase.
    stage_ns_per_packet: StageNs,
    batch: usize,
}

#[derive(Serialize)]
struct StageNs {
    endpoint: f64,
    lb: f64,
    snat: f64,
}

/// `plsim bench`.
pub fn bench_cmd(
    flows: u32,
    packets: u64,
    engine: plsim_engine::Engine,
    batch: usize,
    json: bool,
) -> Result<(), Failure> {
    if flows == 0 || packets == 0 {
        return Err(Failure::Usage(
            "--flows and --packets must be at least 1".into(),
        ));
    }
    let scenario = Scenario::builtin();
    let sim = SimPath::build(&scenario, false).map_err(|e| Failure::Input(e.to_string()))?;
    let (vnet, endpoint) = sim
        .replay_endpoint
        .expect("the built-in scenario has an endpoint");
    let addrs = BenchAddrs {
        clients: std::net::Ipv4Addr::new(10, 1, 0, 0),
        endpoint: (endpoint, 443),
        vnet,
    };
    let parts = plsim_engine::Parts {
        edge: sim.endpoint,
        core: (sim.lb, sim.snat),
        backend: plsim_engine::AsIs,
    };
    let (res, parts) = bench(parts, addrs, flows, packets, engine, batch);
    let snat = &parts.core.1;
    let snat_bytes: usize = snat.engines().iter().map(|e| e.memory_bytes()).sum();
    let live: u64 = snat.engines().iter().map(|e| e.stats().live).sum();
    let report = BenchReport {
        mpps: res.mpps,
        reference_mpps: res.reference_mpps,
        flows,
        packets,
        setup_per_sec: res.setup_per_sec,
        bytes_per_flow: snat_bytes as f64 / live.max(1) as f64,
        wall_s: res.stats.wall.as_secs_f64(),
        latency_ns: plsim_pipeline::summary::Latency::from(&res.stats.latency_ns),
        delivered: res.stats.to_backend,
        dropped: res.stats.dropped.total() + res.setup.dropped.total(),
        stage_ns_per_packet: {
            let per = |d: std::time::Duration| d.as_nanos() as f64 / packets as f64;
            let b = &res.stats.busy;
            StageNs {
                endpoint: per(b[0]),
                lb: per(b[1]),
                snat: per(b[2]),
            }
        },
        batch,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        println!(
            "plsim bench: {flows} live flows, {packets} frames of 64 bytes through the {engine} engine"
        );
        println!(
            "  throughput     {:.2} Mpps ({:.3} s); the single-core reference NAT loop: {:.2} Mpps ({:.2}x)",
            report.mpps,
            report.wall_s,
            report.reference_mpps,
            report.mpps / report.reference_mpps
        );
        println!(
            "  flow setup     {:.0} flows/s (SYN, SYN-ACK, ACK through the whole path)",
            report.setup_per_sec
        );
        println!(
            "  flow state     {:.1} bytes per live flow in the SNAT stage",
            report.bytes_per_flow
        );
        println!(
            "  delivered      {} (dropped {})",
            report.delivered, report.dropped
        );
        let st = &report.stage_ns_per_packet;
        println!(
            "  stage time     endpoint {:.1} ns, load balancer {:.1} ns, SNAT {:.1} ns per packet (batches of {batch})",
            st.endpoint, st.lb, st.snat
        );
    }
    Ok(())
}

/// What `plsim plan` found.
#[derive(Serialize)]
struct Plan {
    /// The fewest NAT IPs with which no flow is lost to port exhaustion; `null` when even the
    /// most the scenario has are not enough.
    nat_ips_needed: Option<usize>,
    /// The NAT IPs the scenario offers (the search goes up to these).
    nat_ips_available: usize,
    ports_per_nat_ip: u32,
    reuse: String,
    timers: plsim_control::scenario::Timers,
    /// At the answer (or at the most NAT IPs when none is enough):
    peak_concurrent_flows: u64,
    /// The most ports in use or held at once on the busiest NAT IP.
    peak_ports_per_nat_ip: u64,
    /// The ports a NAT IP can give (with `per-backend` reuse, per backend it served).
    ports_total_per_nat_ip: u64,
    /// The share of the busiest NAT IP's ports still free at the peak.
    headroom: f64,
    snat_failures: u64,
    /// Each replay the search ran.
    runs: Vec<PlanRun>,
}

#[derive(Serialize, Clone, Copy)]
struct PlanRun {
    nat_ips: usize,
    flows: u64,
    snat_failures: u64,
}

/// `plsim plan`: the fewest NAT IPs with which a capture loses no flow to port exhaustion.
pub fn plan(
    pcap: &Path,
    scenario_file: Option<&Path>,
    overrides: Overrides,
    json: bool,
) -> Result<(), Failure> {
    let base = load_scenario(scenario_file, &overrides)?;
    let service = base
        .services
        .first()
        .ok_or_else(|| Failure::Input("the scenario has no service".into()))?
        .clone();
    let available = service.nat_ips.len();
    let mut runs: Vec<PlanRun> = Vec::new();
    let mut run_with = |n: usize| -> Result<(PlanRun, Summary), Failure> {
        let mut s = base.clone();
        for svc in &mut s.services {
            svc.nat_ips.truncate(n);
        }
        let mut reader = Reader::open(pcap).map_err(|e| Failure::Input(e.to_string()))?;
        let spec = RunSpec {
            pickup: overrides.pickup,
            ..RunSpec::new(&s)
        };
        let (out, _) =
            sim::run(&mut reader, &spec, NoTaps).map_err(|e| Failure::Input(e.to_string()))?;
        let r = PlanRun {
            nat_ips: n,
            flows: out.summary.flows.created,
            snat_failures: out.summary.flows.snat_failures,
        };
        runs.push(r);
        Ok((r, out.summary))
    };
    // Fewer NAT IPs never lose fewer flows: search the smallest count with no failure.
    let (top, top_summary) = run_with(available)?;
    let (needed, at) = if top.snat_failures > 0 {
        (None, top_summary)
    } else {
        let (mut lo, mut hi, mut best) = (1usize, available, top_summary);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (r, s) = run_with(mid)?;
            if r.snat_failures == 0 {
                hi = mid;
                best = s;
            } else {
                lo = mid + 1;
            }
        }
        (Some(lo), best)
    };
    // Held ports (after a FIN or RST) are as unavailable as ports in use.
    let busiest = at.nat_ips.iter().max_by_key(|n| n.ports_busy_peak);
    let peak_ports = busiest.map_or(0, |n| n.ports_busy_peak);
    let total = busiest
        .map_or(0, |n| n.ports_total)
        .max(u64::from(service.ports.count()));
    // The bisection never runs a count twice.
    runs.sort_by_key(|r| r.nat_ips);
    let plan = Plan {
        nat_ips_needed: needed,
        nat_ips_available: available,
        ports_per_nat_ip: service.ports.count(),
        reuse: serde_json::to_value(service.reuse)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        timers: service.timers,
        peak_concurrent_flows: at.flows.active_peak,
        peak_ports_per_nat_ip: peak_ports,
        ports_total_per_nat_ip: total,
        headroom: if total == 0 {
            0.0
        } else {
            1.0 - peak_ports as f64 / total as f64
        },
        snat_failures: at.flows.snat_failures,
        runs,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("a plan serializes")
        );
        return Ok(());
    }
    match plan.nat_ips_needed {
        Some(n) => println!(
            "{}: {n} NAT IP{} lose no flow to port exhaustion",
            pcap.display(),
            if n == 1 { "" } else { "s" }
        ),
        None => println!(
            "{}: even {} NAT IPs lose {} flows to port exhaustion",
            pcap.display(),
            plan.nat_ips_available,
            plan.snat_failures
        ),
    }
    println!(
        "  ports {} per NAT IP, reuse {}, timers idle {} s, transitory {} s, FIN hold {} s, RST hold {} s",
        plan.ports_per_nat_ip,
        plan.reuse,
        plan.timers.idle,
        plan.timers.transitory,
        plan.timers.fin_hold,
        plan.timers.rst_hold
    );
    println!(
        "  peak: {} concurrent flows; busiest NAT IP {} of {} ports in use or held ({:.1}% headroom)",
        plan.peak_concurrent_flows,
        plan.peak_ports_per_nat_ip,
        plan.ports_total_per_nat_ip,
        plan.headroom * 100.0
    );
    for r in &plan.runs {
        println!(
            "  with {} NAT IPs: {} flows, {} SNAT failures",
            r.nat_ips, r.flows, r.snat_failures
        );
    }
    Ok(())
}
