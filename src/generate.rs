//! `plsim generate`: the project's own deterministic captures, and a scenario's synthetic
//! workload written as a capture.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use plsim_pcap::FrameBuf;
use plsim_traffic::captures;

use plsim_lab::files::{load_scenario, write_capture};
use plsim_lab::replay::Frames;
use plsim_lab::workload::{self, Workloads, specs};
use plsim_lab::{Error, Result};

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// One frame of every class plsim tells apart (TCP, UDP, ICMP, IPv6, ARP, fragments, each
    /// kind of malformed header).
    Mix,
    /// Complete TCP conversations, 8 packets each (--flows, --gap-us, --rtt-us).
    Conversations,
    /// Concurrent SYNs from distinct clients, none answered (--flows).
    Syns,
    /// The scenario's synthetic workloads, one per endpoint (with the workload flags over
    /// them), each endpoint's traffic on its VLAN: exactly the packets `plsim simulate` feeds
    /// the path, which a replay with the same scenario routes back to the same endpoints.
    Workload,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// What to generate.
    kind: Kind,
    /// Microseconds between the starts of two conversations.
    #[arg(long, default_value_t = 1000)]
    gap_us: u64,
    /// Round-trip time of a conversation, in microseconds.
    #[arg(long, default_value_t = 20_000)]
    rtt_us: u64,
    /// With `workload`: the scenario file (TOML); the built-in scenario without it.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// The pcap to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    workload: workload::Overrides,
}

impl GenerateArgs {
    /// The conversations or SYNs to make: at most `u32::MAX` (see [`GenerateArgs::check`]).
    fn flows(&self) -> Result<u32, u64> {
        let n = self.workload.flows.unwrap_or(1000);
        u32::try_from(n).map_err(|_| n)
    }

    /// The rule clap's attributes can't say: a generated capture's `--flows` fits 32 bits.
    pub fn check(&self) -> Result<(), clap::Error> {
        match (self.kind, self.flows()) {
            (Kind::Conversations | Kind::Syns, Err(n)) => Err(crate::usage_error(
                "generate",
                clap::error::ErrorKind::ValueValidation,
                format!("--flows {n}: at most {}", u32::MAX),
            )),
            _ => Ok(()),
        }
    }
}

/// Writes the capture under its partial name and renames it once whole (see
/// [`write_capture`]): a write error, a full disk or a signal (exit 130) leaves nothing under
/// the file's name. Its directory is held with the other runs that write files of their own
/// into it, and refused when a run holds it alone.
pub fn run(a: GenerateArgs) -> Result<()> {
    let stop = crate::commands::interrupts();
    let dir = match a.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A directory that isn't there: the file can't be written, and the error names it.
    let _held = crate::commands::hold_shared(dir).map_err(|e| match e {
        Error::Io { reason, .. } => Error::Io {
            path: a.out.clone(),
            reason,
        },
        e => e,
    })?;
    let flows = || a.flows().expect("checked before the run");
    let packets = match a.kind {
        Kind::Workload => {
            let scenario = load_scenario(a.scenario.as_deref(), &Default::default())?;
            let specs = specs(&scenario, &a.workload)?;
            let mut source = Workloads::new(&scenario, specs)?;
            write_capture(&a.out, &mut source, Some(&stop))?
        }
        kind => {
            let frames: Vec<FrameBuf> = match kind {
                Kind::Mix => captures::mix().into_iter().map(|(f, _)| f).collect(),
                Kind::Conversations => {
                    captures::conversations(flows(), a.gap_us * 1000, a.rtt_us * 1000)
                }
                _ => captures::syn_burst(flows()),
            };
            write_capture(&a.out, &mut Frames::new(&frames), Some(&stop))?
        }
    };
    eprintln!("plsim: wrote {packets} packets to {}", a.out.display());
    Ok(())
}
