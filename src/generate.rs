//! `plsim generate`: the project's own deterministic captures.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use plsim_traffic::captures::{self, Frame};

use crate::Failure;

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// One frame of every class plsim tells apart (TCP, UDP, ICMP, IPv6, ARP, fragments, each
    /// kind of malformed header).
    Mix,
    /// Complete TCP conversations, 8 packets each.
    Conversations,
    /// Concurrent SYNs from distinct clients, none answered.
    Syns,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// What to generate.
    kind: Kind,
    /// Conversations or SYNs to generate.
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    /// Microseconds between the starts of two conversations.
    #[arg(long, default_value_t = 1000)]
    gap_us: u64,
    /// Round-trip time of a conversation, in microseconds.
    #[arg(long, default_value_t = 20_000)]
    rtt_us: u64,
    /// The pcap to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(a: GenerateArgs) -> Result<(), Failure> {
    let frames: Vec<Frame> = match a.kind {
        Kind::Mix => captures::mix().into_iter().map(|(f, _)| f).collect(),
        Kind::Conversations => captures::conversations(a.flows, a.gap_us * 1000, a.rtt_us * 1000),
        Kind::Syns => captures::syn_burst(a.flows),
    };
    captures::write_pcap(&a.out, &frames)
        .map_err(|e| Failure::Input(format!("{}: {e}", a.out.display())))?;
    eprintln!(
        "plsim: wrote {} packets to {}",
        frames.len(),
        a.out.display()
    );
    Ok(())
}
