//! The bench's run through the engine: the flows opened, then the timed frames in rounds.

use plsim_wire::VnetId;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use plsim_engine::{AsIs, Edge, NoTaps, Options, Parts, RunStats, Stages};
use plsim_wire::TcpFlags;

use super::BenchOptions;
use super::feeders::{Setup, Traffic};
use super::frames::Template;
use crate::Event;
use crate::replay::BackendEmulation;

/// What one bench run measured.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// Million packets per second through the pipeline (wall clock).
    pub mpps: f64,
    /// Live flows.
    pub flows: u32,
    /// Frames pushed.
    pub packets: u64,
    /// Flows opened per second in the setup (three packets each).
    pub setup_per_sec: f64,
    /// The run's counts during the timed phase.
    pub stats: RunStats,
    /// The counts of the setup.
    pub setup: RunStats,
    /// Each round's packets and the time the path took for them.
    pub rounds: Vec<(u64, Duration)>,
}

/// Where the bench's flows come from and go to.
#[derive(Clone, Copy, Debug)]
pub struct BenchAddrs {
    /// The /16 the clients live in.
    pub clients: Ipv4Addr,
    /// The private endpoint and port they connect to.
    pub endpoint: (Ipv4Addr, u16),
    /// The consumer VNet of the endpoint.
    pub vnet: VnetId,
}

/// Million packets per second of `n` packets in `took`. A round of a frame or two may take less
/// than the clock can tell: a nanosecond at least, so no rate is infinite.
pub(super) fn mpps(n: u64, took: Duration) -> f64 {
    n as f64 / took.max(Duration::from_nanos(1)).as_secs_f64() / 1e6
}

/// Builds `o.flows` live flows through the path, then pushes `o.packets` 64-byte frames of them
/// through `o.engine` (the threaded one, or the sequential reference for comparison) in batches
/// of `o.batch` and `o.rounds` rounds (at most one a packet), calling `between(from, n)` after
/// each round's `n` packets (numbered from `from` in the round robin), and hands the parts back.
pub fn bench<E, C>(
    parts: Parts<E, C, AsIs>,
    addrs: BenchAddrs,
    o: &BenchOptions,
    mut between: impl FnMut(u64, u64),
) -> (BenchResult, Parts<E, C, AsIs>)
where
    E: Edge<Event>,
    C: Stages<Event>,
{
    let (flows, packets) = (o.flows, o.packets);
    let opts = Options {
        batch_size: o.batch,
        latency: true,
        stage_times: true,
        engine: o.engine,
    };
    let template =
        |flags: u8, back: bool| Template::new(addrs.clients, addrs.endpoint, flags, back);
    let t0 = Instant::now();
    let mut setup = Setup {
        syn: template(TcpFlags::SYN, false),
        syn_ack: template(TcpFlags::SYN | TcpFlags::ACK, true),
        ack: template(TcpFlags::ACK, false),
        vnet: addrs.vnet,
        flows,
        next: 0,
        seq: 0,
    };
    // The backends answer each SYN once: they forget a flow once they have answered it, so
    // they hold one chunk's flows at most.
    let with_backends = Parts {
        edge: parts.edge,
        core: parts.core,
        backend: BackendEmulation::answering_once(),
    };
    let done = plsim_engine::run(with_backends, &mut setup, NoTaps, opts);
    let setup_s = t0.elapsed().as_secs_f64();

    let mut timed = Parts {
        edge: done.parts.edge,
        core: done.parts.core,
        backend: AsIs,
    };
    let rounds = u64::from(o.rounds.max(1)).min(packets.max(1));
    // Where round `r` starts; in u128, as `packets * rounds` may pass u64 near its limit.
    let part = |r: u64| (u128::from(packets) * u128::from(r) / u128::from(rounds)) as u64;
    let mut seq = setup.seq;
    let mut stats: Option<RunStats> = None;
    let mut each = Vec::new();
    for r in 0..rounds {
        let (from, to) = (part(r), part(r + 1));
        let mut traffic = Traffic {
            ack: template(TcpFlags::ACK, false),
            vnet: addrs.vnet,
            // The round robin's flows: flow 0 alone when none was opened (its frames find no
            // flow, and the report says so).
            flows: flows.max(1),
            packets: to,
            sent: from,
            seq,
        };
        let t1 = Instant::now();
        let fin = plsim_engine::run(timed, &mut traffic, NoTaps, opts);
        each.push((to - from, t1.elapsed()));
        seq = traffic.seq;
        timed = fin.parts;
        match stats.as_mut() {
            None => stats = Some(fin.stats),
            Some(s) => s.merge(&fin.stats),
        }
        between(from, to - from);
    }
    let wall: Duration = each.iter().map(|&(_, took)| took).sum();
    let result = BenchResult {
        mpps: mpps(packets, wall),
        flows,
        packets,
        setup_per_sec: f64::from(flows) / setup_s,
        stats: stats.expect("at least one round"),
        setup: done.stats,
        rounds: each,
    };
    (result, timed)
}
