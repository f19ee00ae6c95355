//! `plsim`: a userspace packet-path simulator of the Azure Private Link data plane.
//!
//! The binary is thin: clap parses the flags straight into the types of the crates they
//! configure, [`plsim_lab`] does the work, and this prints. Exit status: 0 when the run
//! completed, 1 when an input can't be used, 2 for wrong usage ([`plsim_lab::Error::exit_code`]).

// One `unsafe` call, restoring SIGPIPE's default at startup; none anywhere else.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use plsim_control::scenario::{Allocator, PortRange, ReuseScope};
use plsim_engine::{DEFAULT_BATCH, Engine};
use plsim_lab::theory::{DEFAULT_LOSS, rate};
use plsim_lab::{path, workload};
use values::{MAX_POINTS, Values};

mod commands;
mod generate;
mod values;

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
    /// Run one workload over many settings; write a CSV and a plot. On a cluster: `--list`
    /// the points, run each with `--point K`, then `sweep merge` their results.
    Sweep(SweepCommand),
    /// How many NAT IPs (and which timers) a capture needs to lose no flow, with Erlang B's loss
    /// beside each count; or, with --rate and --hold, how many a rate of flows needs in theory.
    /// On a cluster: `--list` the NAT IP counts, replay each with `--point K`, then `plan
    /// merge`.
    Plan(PlanCommand),
    /// In-memory throughput of the whole path.
    Bench(BenchArgs),
    /// Print the built-in scenario, validate a scenario file, or show what it builds.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
    /// Write one of plsim's generated captures (the ones in `pcaps/` are made this way).
    Generate(generate::GenerateArgs),
}

#[derive(Args)]
struct InspectArgs {
    /// The capture (pcap or pcapng); `-` reads it from standard input.
    pcap: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// What `replay` and `simulate` share: the scenario, the outputs, the engine, the overrides.
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
    /// With --out: leave out consumer.pcap and backend.pcap (a long run's captures may take
    /// gigabytes; the summary and the time series do not).
    #[arg(long, requires = "out")]
    no_pcaps: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// With --out: sample the gauges every SECS of simulated time.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = plsim_lab::series::parse_interval)]
    sample_every: f64,
    /// Packets per batch of the threaded engine: changes how fast a run goes, never what it
    /// finds (1 to 1048576).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH, value_parser = plsim_engine::parse_batch)]
    batch: usize,
    /// threaded (the default), or sequential: the reference run, one packet at a time in input
    /// order, that defines the result; the threaded engine gives exactly the same.
    #[arg(long, value_name = "ENGINE", default_value_t = Engine::Threaded)]
    engine: Engine,
    /// The backends' TIME_WAIT, in seconds (Linux's is 60): a NAT tuple reused within it after a
    /// close the backend began is a hazard (the summary's `reuse`).
    #[arg(long, value_name = "S", default_value_t = 60.0, value_parser = plsim_lab::series::parse_interval)]
    time_wait: f64,
    /// The longest gap from a close to a reuse of its NAT tuple that the summary counts, in
    /// seconds (at least --time-wait): the reuse record keeps a tuple's close this long.
    #[arg(long, value_name = "S", default_value_t = 600.0, value_parser = plsim_lab::series::parse_interval)]
    reuse_horizon: f64,
    #[command(flatten)]
    overrides: path::Overrides,
}

#[derive(Args)]
struct ReplayArgs {
    /// The capture (pcap or pcapng); `-` reads it from standard input (`tcpdump -w - | plsim
    /// replay -`).
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
    synthetic: workload::Overrides,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WorkloadKind {
    Synthetic,
    Tcp,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SweepCommand {
    #[command(subcommand)]
    merge: Option<SweepMerge>,
    #[command(flatten)]
    args: SweepArgs,
}

#[derive(Subcommand)]
enum SweepMerge {
    /// Merge point results (`point-K.json`, from `plsim sweep ... --point K`) into sweep.csv
    /// and the plot, exactly as one `plsim sweep` of the whole grid writes them.
    Merge(MergeArgs),
}

#[derive(Args)]
struct MergeArgs {
    /// Directories holding point results (every `point-*.json` in each).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Write sweep.csv, sweep.svg and sweep.png into DIR.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SweepArgs {
    /// A capture to sweep (`-`: standard input, with --point); without it, the scenario's
    /// synthetic workload.
    pcap: Option<PathBuf>,
    /// The scenario file (TOML); the built-in scenario without it.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// NAT IP counts (1 to 8): a list (1,2,4) or a range (1..8).
    #[arg(long, value_name = "LIST", value_parser = values::nat_ips)]
    nat_ips: Option<Values<u8>>,
    /// Port allocators, e.g. sequential,random,block:64.
    #[arg(long, value_name = "LIST", value_parser = values::allocators)]
    allocators: Option<Values<Allocator>>,
    /// Port ranges, e.g. 1024-2047,1024-65535.
    #[arg(long, value_name = "LIST", value_parser = values::ports)]
    ports: Option<Values<PortRange>>,
    /// Established idle timeouts in seconds (4 to 6000), e.g. 240,600.
    #[arg(long, value_name = "LIST", value_parser = values::idle)]
    idle: Option<Values<u64>>,
    /// Port holds after a FIN in seconds, e.g. 0,60,240.
    #[arg(long, value_name = "LIST", value_parser = values::seconds)]
    fin_hold: Option<Values<u64>>,
    /// Load multipliers of the workload's arrival rate, e.g. 0.5,1,2 (workloads only: not with
    /// a capture).
    #[arg(long, value_name = "LIST", value_parser = values::load)]
    load: Option<Values<f64>>,
    /// The port reuse scope of every run: per-backend or per-ip.
    #[arg(long, value_name = "SCOPE")]
    reuse: Option<ReuseScope>,
    /// Let packets of a flow whose SYN is not in the capture open it.
    #[arg(long)]
    pickup: bool,
    /// Write sweep.csv, sweep.svg and sweep.png into DIR (with --point: `point-K.json`).
    #[arg(long, value_name = "DIR", required_unless_present = "list")]
    out: Option<PathBuf>,
    /// Print the grid's points, one a line (JSON: index and settings), and run nothing.
    #[arg(long, conflicts_with = "point")]
    list: bool,
    /// Run point K of the grid alone and write its result to `point-K.json` in --out.
    #[arg(long, value_name = "K")]
    point: Option<usize>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    workload: workload::Overrides,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct PlanCommand {
    #[command(subcommand)]
    merge: Option<PlanMerge>,
    #[command(flatten)]
    args: PlanArgs,
}

#[derive(Subcommand)]
enum PlanMerge {
    /// Answer from replays run apart (`plan-point-K.json`, from `plsim plan ... --point K`):
    /// the fewest NAT IPs that lose no flow, with every count's run.
    Merge(PlanMergeArgs),
}

#[derive(Args)]
struct PlanMergeArgs {
    /// Directories holding point results (every `plan-point-*.json` in each).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// The most loss the theory sizes for: the fewest NAT IPs whose Erlang B loss is at most P.
    #[arg(long, value_name = "P", default_value_t = DEFAULT_LOSS, value_parser = rate::parse_loss)]
    loss: f64,
}

#[derive(Args)]
struct PlanArgs {
    /// The capture (pcap or pcapng; `-`: standard input, with --point). Without it, --rate and
    /// --hold.
    #[arg(required_unless_present = "rate")]
    pcap: Option<PathBuf>,
    /// The scenario file (TOML); the built-in scenario (eight NAT IPs) without it.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Let packets of a flow whose SYN is not in the capture open it.
    #[arg(long)]
    pickup: bool,
    /// The port range of every NAT IP, e.g. 1024-65535.
    #[arg(long, value_name = "LO-HI")]
    ports: Option<PortRange>,
    /// The port reuse scope: per-backend or per-ip.
    #[arg(long, value_name = "SCOPE")]
    reuse: Option<ReuseScope>,
    /// Print the points (NAT IP counts 1 to the scenario's), one a line (JSON), and replay
    /// nothing.
    #[arg(long, conflicts_with = "point")]
    list: bool,
    /// Replay point K alone (K + 1 NAT IPs) and write its result to `plan-point-K.json` in
    /// --out.
    #[arg(long, value_name = "K", requires = "out")]
    point: Option<usize>,
    /// Write report.html and plan.json (last) into DIR; with --point, the point's result.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// The most loss the theory sizes for: the fewest NAT IPs whose Erlang B loss is at most P.
    #[arg(long, value_name = "P", default_value_t = DEFAULT_LOSS, value_parser = rate::parse_loss)]
    loss: f64,
    /// Answer from theory alone, with no capture: R new flows per second (with --hold), each
    /// port scope offered its share (per backend, under per-backend reuse).
    #[arg(
        long,
        value_name = "R",
        requires = "hold",
        conflicts_with_all = ["pcap", "list", "point", "out", "pickup"],
        value_parser = rate::parse_positive
    )]
    rate: Option<f64>,
    /// With --rate: the mean time a flow holds its NAT port, in seconds (its life, then the FIN
    /// hold).
    #[arg(long, value_name = "S", requires = "rate", value_parser = rate::parse_positive)]
    hold: Option<f64>,
    /// With --rate: the backends the flows spread over evenly (the scenario's by default).
    #[arg(
        long,
        value_name = "N",
        requires = "rate",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    backends: Option<u32>,
    /// With --rate: run the matching Poisson workload through the path at each NAT IP count up
    /// to the answer, and print its loss beside the theory's.
    #[arg(long, requires = "rate")]
    check: bool,
    /// With --check: flows each run starts (100,000, or a hundred times the offered load in
    /// erlangs when that is more).
    #[arg(long, value_name = "N", requires = "check", value_parser = clap::value_parser!(u64).range(1..))]
    flows: Option<u64>,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    options: plsim_lab::bench::BenchOptions,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ScenarioCommand {
    /// Print the built-in scenario as TOML.
    Default,
    /// Validate a scenario file: exit 0, or 1 with every problem and its place, in line order.
    Check {
        /// The scenario file (TOML).
        file: PathBuf,
    },
    /// Show the control plane a scenario builds: services (aliases, NAT IPs, rules,
    /// backends), endpoints (addresses, connection states, link ids) and the timeline.
    Show {
        /// The scenario file (TOML); the built-in scenario without it.
        file: Option<PathBuf>,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl SweepArgs {
    /// The rules between the sweep's flags that clap's attributes can't say: `--load` is a
    /// workload's, and the grid's size.
    fn check(&self) -> Result<(), clap::Error> {
        if self.pcap.is_some() && self.load.is_some() {
            return Err(usage_error(
                "sweep",
                ErrorKind::ArgumentConflict,
                "--load multiplies a workload's arrival rate: it does not apply to a capture",
            ));
        }
        let len = |n: Option<usize>| n.unwrap_or(1).max(1) as u128;
        let points = [
            len(self.nat_ips.as_ref().map(|v| v.0.len())),
            len(self.allocators.as_ref().map(|v| v.0.len())),
            len(self.ports.as_ref().map(|v| v.0.len())),
            len(self.idle.as_ref().map(|v| v.0.len())),
            len(self.fin_hold.as_ref().map(|v| v.0.len())),
            len(self.load.as_ref().map(|v| v.0.len())),
        ]
        .into_iter()
        .fold(1u128, u128::saturating_mul);
        if points > MAX_POINTS as u128 {
            return Err(usage_error(
                "sweep",
                ErrorKind::TooManyValues,
                format!("the grid has {points} points; at most {MAX_POINTS}"),
            ));
        }
        match (&self.pcap, &self.load) {
            (None, Some(load)) => self.check_load(&load.0),
            _ => Ok(()),
        }
    }

    /// `--load` multiplies each workload's arrival rate: every product must be a rate a
    /// workload may have (at most one flow a nanosecond). The rates are the scenario's
    /// workloads' with the flags over them; a scenario that can't be used is left for the run
    /// to report.
    fn check_load(&self, load: &[f64]) -> Result<(), clap::Error> {
        let scenario =
            plsim_lab::files::load_scenario(self.scenario.as_deref(), &Default::default());
        let Ok(specs) = scenario.and_then(|s| workload::specs(&s, &self.workload)) else {
            return Ok(());
        };
        let top = load.iter().copied().fold(0.0, f64::max);
        for (_, spec, _) in &specs {
            let arrivals = spec.profile.arrivals;
            if let Err(e) = arrivals.times(top).validate() {
                return Err(usage_error(
                    "sweep",
                    ErrorKind::ValueValidation,
                    format!("--load {top} times the workload's {arrivals}: {e}"),
                ));
            }
        }
        Ok(())
    }
}

/// The rules between flags and their values that clap's attributes can't say, checked before
/// anything runs: a usage error (exit 2) is never discovered by the library.
fn check(cli: &Cli) -> Result<(), clap::Error> {
    // A capture read once per run can't come from standard input, but for one point.
    let once = |name: &str, pcap: Option<&std::path::Path>, list: bool, point: Option<usize>| {
        if pcap == Some(std::path::Path::new(plsim_pcap::STDIN)) && !list && point.is_none() {
            return Err(usage_error(
                name,
                ErrorKind::InvalidValue,
                format!(
                    "`plsim {name}` reads its capture once per run: give a file, not - (standard \
                     input), or one --point"
                ),
            ));
        }
        Ok(())
    };
    match &cli.command {
        Command::Sweep(SweepCommand { merge: None, args }) => {
            args.check()?;
            once("sweep", args.pcap.as_deref(), args.list, args.point)
        }
        Command::Plan(PlanCommand { merge: None, args }) => {
            once("plan", args.pcap.as_deref(), args.list, args.point)
        }
        Command::Generate(a) => a.check(),
        Command::Replay(ReplayArgs { run, .. }) | Command::Simulate(SimulateArgs { run, .. }) => {
            run.check()
        }
        _ => Ok(()),
    }
}

impl RunArgs {
    /// The rule between the reuse record's flags: the horizon covers the TIME_WAIT.
    fn check(&self) -> Result<(), clap::Error> {
        if self.reuse_horizon < self.time_wait {
            return Err(usage_error(
                "replay",
                ErrorKind::ValueValidation,
                format!(
                    "--reuse-horizon {} is shorter than --time-wait {}: a hazard could go uncounted",
                    self.reuse_horizon, self.time_wait
                ),
            ));
        }
        Ok(())
    }

    /// The reuse record's settings.
    fn reuse(&self) -> plsim_lab::ReuseTracking {
        plsim_lab::ReuseTracking {
            time_wait: std::time::Duration::from_secs_f64(self.time_wait),
            horizon: std::time::Duration::from_secs_f64(self.reuse_horizon),
        }
    }
}

/// A usage error of subcommand `name`, worded and ended as clap's own (exit 2).
pub(crate) fn usage_error(
    name: &str,
    kind: ErrorKind,
    message: impl std::fmt::Display,
) -> clap::Error {
    let mut cli = Cli::command();
    cli.build();
    cli.find_subcommand_mut(name)
        .expect("a subcommand of plsim")
        .error(kind, message)
}

fn run(cli: Cli) -> plsim_lab::Result<()> {
    match cli.command {
        Command::Inspect(a) => commands::inspect(&a.pcap, a.json),
        Command::Generate(a) => generate::run(a),
        Command::Replay(a) => commands::replay(&a.pcap, &a.run),
        Command::Simulate(a) if a.workload == WorkloadKind::Tcp => {
            commands::simulate_tcp(&a.run, a.connections, a.bytes)
        }
        Command::Simulate(a) => commands::simulate(&a.run, &a.synthetic),
        Command::Sweep(SweepCommand {
            merge: Some(SweepMerge::Merge(m)),
            ..
        }) => commands::sweep_merge(&m.dirs, &m.out, m.json),
        Command::Sweep(a) => commands::sweep(a.args),
        Command::Plan(PlanCommand {
            merge: Some(PlanMerge::Merge(m)),
            ..
        }) => commands::plan_merge(&m.dirs, m.json, m.loss),
        Command::Plan(a) => commands::plan(a.args),
        Command::Bench(a) => commands::bench(a),
        Command::Scenario(ScenarioCommand::Default) => {
            print!("{}", plsim_control::Scenario::builtin().to_toml());
            Ok(())
        }
        Command::Scenario(ScenarioCommand::Check { file }) => commands::scenario_check(&file),
        Command::Scenario(ScenarioCommand::Show { file, json }) => {
            commands::scenario_show(file.as_deref(), json)
        }
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`plsim replay --json x | head`), as command-line tools do,
    // instead of failing the print: Rust ignores SIGPIPE, so restore its default at startup.
    #[cfg(unix)]
    reset_sigpipe();
    let cli = Cli::parse();
    if let Err(e) = check(&cli) {
        e.exit();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plsim: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn reset_sigpipe() {
    // SAFETY: setting a signal's disposition to the default, at startup, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Clap checks its own rules (unique ids and groups, valid relations between flags) only
    /// when a command is parsed: check every command at once.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
