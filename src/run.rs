//! `plsim replay`, `plsim bench` and `plsim scenario`: flags and files around the pipeline.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use plsim_control::Scenario;
use plsim_pcap::Reader;
use plsim_pipeline::bench::{BenchAddrs, bench};
use plsim_pipeline::path::{self, Overrides, Path as SimPath};
use plsim_pipeline::replay::{BackendEmulation, CaptureFeeder, PcapTaps};
use plsim_pipeline::summary::{Input, Summary};
use plsim_pipeline::{Batch, Feeder, Fill, Options};
use plsim_wire::SimTime;
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

/// A feeder that shows progress on a spinner.
struct Progress<'a, F> {
    inner: F,
    bar: Option<&'a ProgressBar>,
    packets: u64,
}

impl<F: Feeder> Feeder for Progress<'_, F> {
    fn fill(&mut self, fwd: &mut Batch, srv: &mut Batch, max: usize) -> Fill {
        let fill = self.inner.fill(fwd, srv, max);
        self.packets += (fwd.len() + srv.len()) as u64;
        if let Some(bar) = self.bar {
            bar.set_position(self.packets);
        }
        fill
    }
}

/// The replay's flags, as the binary parsed them.
pub struct ReplayRun<'a> {
    pub pcap: &'a Path,
    pub scenario: Option<&'a Path>,
    pub out: Option<&'a Path>,
    pub json: bool,
    pub quiet: bool,
    pub overrides: Overrides,
}

/// `plsim replay`.
pub fn replay(r: ReplayRun<'_>) -> Result<(), Failure> {
    let scenario = load_scenario(r.scenario, &r.overrides)?;
    let sim =
        SimPath::build(&scenario, r.overrides.pickup).map_err(|e| Failure::Input(e.to_string()))?;
    let Some((vnet, endpoint)) = sim.replay_endpoint else {
        return Err(Failure::Input(
            "the scenario has no private endpoint to replay through".into(),
        ));
    };
    let mut reader = Reader::open(r.pcap).map_err(|e| Failure::Input(e.to_string()))?;
    if let Some(dir) = r.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Input(format!("{}: {}", dir.display(), io_reason(&e))))?;
    }
    let bar = (!r.json && !r.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {pos} packets replayed ({per_sec})")
                .expect("a valid template"),
        );
        b.enable_steady_tick(Duration::from_millis(100));
        b
    });
    let taps = r.out.map(PcapTaps::new);
    let opts = Options {
        taps: taps.is_some(),
        ..Options::default()
    };
    let mut feeder = Progress {
        inner: CaptureFeeder::new(&mut reader, endpoint, vnet, sim.events),
        bar: bar.as_ref(),
        packets: 0,
    };
    let (fin, taps) = plsim_pipeline::run(
        sim.endpoint,
        sim.lb,
        sim.snat,
        &mut feeder,
        taps,
        BackendEmulation::default(),
        opts,
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let feeder = feeder.inner;
    let read = feeder.input();
    let sim_time = SimTime::ZERO + (feeder.last() - feeder.first());
    let input = Input {
        packets: read.packets,
        bytes: read.bytes,
        truncated: reader.truncated(),
        checksums_repaired: read.checksums_repaired,
    };
    let summary = path::summarize(&fin, input, sim_time);
    if let Some(w) = reader.warning() {
        eprintln!("plsim: warning: {w}");
    }
    if let Some(dir) = r.out {
        let written = taps
            .expect("taps with --out")
            .finish()
            .map_err(|e| Failure::Input(e.to_string()))?;
        if written.skipped > 0 {
            eprintln!(
                "plsim: warning: {} frames of another link type left out of the pcaps",
                written.skipped
            );
        }
        let file = dir.join("summary.json");
        let json = serde_json::to_string_pretty(&summary).expect("a summary serializes") + "\n";
        std::fs::write(&file, json)
            .map_err(|e| Failure::Input(format!("{}: {}", file.display(), io_reason(&e))))?;
    }
    if r.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("a summary serializes")
        );
    } else {
        print_summary(&r.pcap.display().to_string(), &summary);
    }
    Ok(())
}

/// A short plain-text summary for people.
pub fn print_summary(what: &str, s: &Summary) {
    let p = &s.packets;
    println!(
        "{what}: {} packets over {:.3} s of capture time, replayed in {:.3} s ({:.2} Mpps){}",
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
        "  flows          {} created, {} closed, {} expired, {} torn down, {} at most at once, {} at the end",
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
    flows: u32,
    packets: u64,
    setup_per_sec: f64,
    /// SNAT flow state per live flow (flow table, indexes, timers, port allocators).
    bytes_per_flow: f64,
    wall_s: f64,
    latency_ns: plsim_pipeline::summary::Latency,
    delivered: u64,
    dropped: u64,
}

/// `plsim bench`.
pub fn bench_cmd(flows: u32, packets: u64, json: bool) -> Result<(), Failure> {
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
    let (res, _ep, _lb, snat) = bench(sim.endpoint, sim.lb, sim.snat, addrs, flows, packets, 256);
    let snat_bytes: usize = snat.engines().iter().map(|e| e.memory_bytes()).sum();
    let live: u64 = snat.engines().iter().map(|e| e.stats().live).sum();
    let h = &res.stats.latency_ns;
    let report = BenchReport {
        mpps: res.mpps,
        flows,
        packets,
        setup_per_sec: res.setup_per_sec,
        bytes_per_flow: snat_bytes as f64 / live.max(1) as f64,
        wall_s: res.stats.wall.as_secs_f64(),
        latency_ns: plsim_pipeline::summary::Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        },
        delivered: res.stats.to_backend,
        dropped: res.stats.dropped.total() + res.setup.dropped.total(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        println!(
            "plsim bench: {flows} live flows, {packets} frames of 64 bytes through the threaded pipeline"
        );
        println!(
            "  throughput     {:.2} Mpps ({:.3} s)",
            report.mpps, report.wall_s
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
    }
    Ok(())
}
