//! `plsim`: a userspace packet-path simulator of the Azure Private Link data plane.
//!
//! The binary is thin: it parses flags, opens files and prints; the work is in the crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod generate;
mod inspect;
mod plot;
mod run;
mod sweep;

/// A userspace packet-path simulator of the Azure Private Link data plane.
///
/// Consumer -> private endpoint -> Standard Load Balancer frontend -> SNAT onto up to eight NAT IPs
/// -> backend, and back. Exit status: 0 when the run completed (drops are results), 1 when an input
/// can't be used, 2 for wrong usage.
#[derive(Parser)]
#[command(name = "plsim", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a capture through the path, both ways.
    Replay(ReplayArgs),
    /// Show a capture's traffic mix and what would be dropped, and why.
    Inspect(InspectArgs),
    /// Run a scenario's synthetic workload through the path.
    Simulate(SimulateArgs),
    /// Run one workload over many settings; write a CSV and a plot.
    Sweep(sweep::SweepArgs),
    /// How many NAT IPs (and which timers) a capture needs to lose no flow.
    Plan(PlanArgs),
    /// In-memory throughput of the whole pipeline.
    Bench(BenchArgs),
    /// Print the built-in scenario, or validate a scenario file.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
    /// Write one of plsim's generated captures (the ones in `pcaps/` are made this way).
    Generate(generate::GenerateArgs),
}

#[derive(Args)]
struct InspectArgs {
    /// The capture (pcap or pcapng).
    pcap: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Overrides of the scenario's NAT settings.
#[derive(Args, Clone)]
struct Overrides {
    /// Use the first N NAT IPs of the scenario (1..=8).
    #[arg(long, value_name = "N")]
    nat_ips: Option<u8>,
    /// The port range of every NAT IP, e.g. 1024-65535.
    #[arg(long, value_name = "LO-HI")]
    ports: Option<String>,
    /// The port allocator: sequential, random or block:N.
    #[arg(long, value_name = "NAME")]
    allocator: Option<String>,
    /// The port reuse scope: per-backend (Azure's) or per-ip.
    #[arg(long, value_name = "SCOPE")]
    reuse: Option<String>,
    /// Let packets of a flow whose SYN is not in the capture open it.
    #[arg(long)]
    pickup: bool,
}

impl From<Overrides> for plsim_pipeline::path::Overrides {
    fn from(o: Overrides) -> Self {
        plsim_pipeline::path::Overrides {
            nat_ips: o.nat_ips,
            ports: o.ports,
            allocator: o.allocator,
            reuse: o.reuse,
            pickup: o.pickup,
        }
    }
}

/// What `replay` and `simulate` share: the scenario, the outputs, the overrides.
#[derive(Args)]
struct RunArgs {
    /// The scenario file (TOML); the built-in scenario without it.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Write summary.json, consumer.pcap, backend.pcap and timeseries.csv (and its plot) into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// With --out: sample the gauges every SECS of simulated time.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = positive_secs)]
    sample_every: f64,
    /// Packets per batch of the threaded engine: changes how fast a run goes, never what it
    /// finds (1 to 1048576).
    #[arg(long, value_name = "N", default_value_t = plsim_engine::DEFAULT_BATCH,
          value_parser = batch_size)]
    batch: usize,
    /// threaded (the default), or sequential: the reference run, one packet at a time in input
    /// order, that defines the result; the threaded engine gives exactly the same.
    #[arg(long, value_name = "ENGINE", default_value_t = plsim_engine::Engine::Threaded)]
    engine: plsim_engine::Engine,
    #[command(flatten)]
    overrides: Overrides,
}

impl RunArgs {
    fn flags(&self) -> run::RunFlags<'_> {
        run::RunFlags {
            scenario: self.scenario.as_deref(),
            out: self.out.as_deref(),
            json: self.json,
            quiet: self.quiet,
            overrides: self.overrides.clone().into(),
            sample_every: Duration::from_secs_f64(self.sample_every),
            engine: self.engine,
            batch: self.batch,
        }
    }
}

#[derive(Args)]
struct ReplayArgs {
    /// The capture (pcap or pcapng).
    pcap: PathBuf,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    run: RunArgs,
    /// synthetic: the generator's packets (the scenario's `[workload]`, and the flags below);
    /// tcp: real TCP stacks (smoltcp) that echo --bytes on each of --connections.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Synthetic)]
    workload: WorkloadKind,
    /// With --workload tcp: connections, each from its own client socket.
    #[arg(long, value_name = "N", default_value_t = 100)]
    connections: u32,
    /// With --workload tcp: bytes each client sends and gets back.
    #[arg(long, value_name = "B", default_value_t = 100_000)]
    bytes: u64,
    #[command(flatten)]
    synthetic: WorkloadArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WorkloadKind {
    Synthetic,
    Tcp,
}

/// The synthetic workload, over the scenario's `[workload]` section.
#[derive(Args, Clone)]
pub struct WorkloadArgs {
    /// Flows to start.
    #[arg(long, value_name = "N")]
    flows: Option<u64>,
    /// Flow arrivals: constant:RATE or poisson:RATE (flows per second).
    #[arg(long, value_name = "KIND:RATE")]
    arrivals: Option<String>,
    /// Flow durations: fixed:S, exp:MEAN, lognormal:MU,SIGMA or pareto:SCALE,SHAPE (seconds).
    #[arg(long, value_name = "DIST")]
    durations: Option<String>,
    /// How flows end: fin, rst or idle.
    #[arg(long, value_name = "HOW")]
    close: Option<String>,
    /// Consumer hosts behind the endpoint.
    #[arg(long, value_name = "N")]
    hosts: Option<u32>,
    /// Data packets per flow (both directions, after the handshake).
    #[arg(long, value_name = "N")]
    packets_per_flow: Option<u32>,
    /// Payload bytes per flow (both directions).
    #[arg(long, value_name = "N")]
    bytes_per_flow: Option<u64>,
    /// Start no flow after SECS.
    #[arg(long, value_name = "SECS")]
    until: Option<f64>,
    /// The workload's seed.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

impl From<WorkloadArgs> for run::WorkloadFlags {
    fn from(a: WorkloadArgs) -> Self {
        run::WorkloadFlags {
            flows: a.flows,
            arrivals: a.arrivals,
            durations: a.durations,
            close: a.close,
            hosts: a.hosts,
            packets_per_flow: a.packets_per_flow,
            bytes_per_flow: a.bytes_per_flow,
            until: a.until,
            seed: a.seed,
        }
    }
}

fn batch_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=plsim_engine::MAX_BATCH).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a batch size: 1 to {}",
            plsim_engine::MAX_BATCH
        )),
    }
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

#[derive(Args)]
struct PlanArgs {
    /// The capture (pcap or pcapng).
    pcap: PathBuf,
    /// The scenario file (TOML); the built-in scenario (eight NAT IPs) without it.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Let packets of a flow whose SYN is not in the capture open it.
    #[arg(long)]
    pickup: bool,
    /// The port range of every NAT IP, e.g. 1024-65535.
    #[arg(long, value_name = "LO-HI")]
    ports: Option<String>,
    /// The port reuse scope: per-backend or per-ip.
    #[arg(long, value_name = "SCOPE")]
    reuse: Option<String>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Live flows to build before timing.
    #[arg(long, default_value_t = 1_000_000)]
    flows: u32,
    /// 64-byte frames to push through the pipeline.
    #[arg(long, default_value_t = 20_000_000)]
    packets: u64,
    /// Packets per batch.
    #[arg(long, default_value_t = plsim_engine::DEFAULT_BATCH, value_parser = batch_size)]
    batch: usize,
    /// threaded, or sequential (one thread, for comparison).
    #[arg(long, value_name = "ENGINE", default_value_t = plsim_engine::Engine::Threaded)]
    engine: plsim_engine::Engine,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ScenarioCommand {
    /// Print the built-in scenario as TOML.
    Default,
    /// Validate a scenario file: exit 0, or 1 with every problem and its place.
    Check {
        /// The scenario file (TOML).
        file: PathBuf,
    },
}

/// How a command ended, mapped onto the exit status contract.
pub enum Failure {
    /// An input can't be used: one line on stderr, exit 1.
    Input(String),
    /// Wrong usage: exit 2.
    Usage(String),
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Inspect(a) => inspect::run(&a.pcap, a.json),
        Command::Generate(a) => generate::run(a),
        Command::Replay(a) => run::replay(&a.pcap, a.run.flags()),
        Command::Simulate(a) if a.workload == WorkloadKind::Tcp => {
            run::simulate_tcp(a.run.flags(), a.connections, a.bytes)
        }
        Command::Simulate(a) => run::simulate(a.run.flags(), &a.synthetic.into()),
        Command::Sweep(a) => sweep::run(a),
        Command::Plan(a) => {
            let overrides = plsim_pipeline::path::Overrides {
                ports: a.ports,
                reuse: a.reuse,
                pickup: a.pickup,
                ..Default::default()
            };
            run::plan(&a.pcap, a.scenario.as_deref(), overrides, a.json)
        }
        Command::Bench(a) => run::bench_cmd(a.flows, a.packets, a.engine, a.batch, a.json),
        Command::Scenario(ScenarioCommand::Default) => run::scenario_default(),
        Command::Scenario(ScenarioCommand::Check { file }) => run::scenario_check(&file),
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`plsim replay --json x | head`), as command-line tools do,
    // instead of failing the print.
    // SAFETY: setting a signal's disposition to the default at startup, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(msg)) => {
            eprintln!("plsim: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("plsim: {msg}");
            ExitCode::from(2)
        }
    }
}
