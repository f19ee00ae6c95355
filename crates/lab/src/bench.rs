//! `plsim bench`: builds live flows through the whole path, then times established-flow frames
//! through the engine, in memory, against a single-core NAT loop over the same frames in the
//! same order, in the same process.
//!
//! The bench can't lie: its scenario has backends enough for every flow to get a NAT port
//! (the built-in one with more backends: under per-backend reuse each backend adds 64,512
//! ports to each of the eight NAT IPs), and a run that dropped any packet says so and is not
//! a throughput figure ([`BenchReport::complete`]).
//!
//! Frames are made on the fly, never stored per flow: each is a copy of one 64-byte template
//! with its client end written in (the source rewrite with its incremental checksum update), so
//! the process holds the path's flow state and little else. The reference loop makes its frames
//! the same way.
//!
//! The timed frames go in rounds: each round pushes its share through the path, then through
//! the reference loop. A shared machine's slow minutes then hit both alike, and the ratio
//! compares like with like (on the 2-vCPU machine the README names, the reference alone varied
//! twofold between two consecutive runs).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use plsim_control::Scenario;
use plsim_control::net::Prefix;
use plsim_control::scenario::Subnet;
use plsim_wire::build::{CONSUMER_MAC, PROVIDER_MAC, TcpSegment, tuple};
use plsim_wire::{FlowTuple, Ipv4Tcp, LinkType, SimTime, TcpFlags, classify};

use plsim_engine::{
    AsIs, Batch, DEFAULT_BATCH, Dir, Edge, Engine, Feeder, Fill, Meta, NoTaps, Options, Parts,
    RunStats, Stages,
};

use serde::Serialize;

use crate::Event;
use crate::replay::BackendEmulation;
use crate::summary::Latency;

/// The frame length the bench pushes.
pub const FRAME_LEN: usize = 64;

/// The ports each NAT IP of the built-in scenario offers per backend (1024-65535).
const PORTS_PER_NAT_IP: u64 = 64_512;

/// The NAT IPs of the built-in scenario.
const NAT_IPS: u64 = 8;

/// The fewest backends the bench uses (the built-in scenario's four).
const MIN_BACKENDS: u64 = 4;

/// The most backends the bench's scenario has room for (its backend subnet, a /22).
const MAX_BACKENDS: u64 = 1_000;

/// How full the bench lets a backend's ports get: flows spread over backends by hash, so a
/// backend gets its share give or take a little; 90% leaves room for that.
const FILL: f64 = 0.9;

/// How `plsim bench` runs. (With the `cli` feature, clap parses the flags straight into it.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct BenchOptions {
    /// Live flows to build before timing.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1_000_000))]
    pub flows: u32,
    /// 64-byte frames to push through the path.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 20_000_000))]
    pub packets: u64,
    /// Packets per batch.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = DEFAULT_BATCH, value_parser = plsim_engine::parse_batch)
    )]
    pub batch: usize,
    /// threaded, or sequential (one thread, for comparison).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "ENGINE", default_value_t = Engine::Threaded)
    )]
    pub engine: Engine,
    /// Split the timed frames into N rounds, each through the path and then through the
    /// reference loop, so that a shared machine's slow spells hit both alike (1 to 100).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", default_value_t = 5,
            value_parser = clap::value_parser!(u32).range(1..=100))
    )]
    pub rounds: u32,
    /// Leave out the reference loop: its table would count in the peak memory
    /// (`scripts/memory.sh` measures the path alone).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_reference: bool,
    /// The service sends PROXY protocol v2 headers (one per flow as it opens; every timed
    /// frame then has its sequence number shifted): what the option costs.
    #[cfg_attr(feature = "cli", arg(long))]
    pub proxy_protocol: bool,
}

impl Default for BenchOptions {
    /// The command's defaults: 1M flows, 20M frames, five rounds, the threaded engine.
    fn default() -> Self {
        BenchOptions {
            flows: 1_000_000,
            packets: 20_000_000,
            batch: DEFAULT_BATCH,
            engine: Engine::Threaded,
            rounds: 5,
            no_reference: false,
            proxy_protocol: false,
        }
    }
}

/// The most flows the bench's scenario can hold.
pub fn max_flows() -> u64 {
    (MAX_BACKENDS as f64 * (NAT_IPS * PORTS_PER_NAT_IP) as f64 * FILL) as u64
}

/// The bench's scenario for `flows` flows: the built-in one, with backends enough that every
/// flow gets a NAT port (in a /22 of the provider's VNet of their own), or an error that says
/// how many it can hold.
pub fn scenario_for(flows: u64) -> crate::Result<Scenario> {
    let per_backend = (NAT_IPS * PORTS_PER_NAT_IP) as f64 * FILL;
    let backends = ((flows as f64 / per_backend).ceil() as u64).max(MIN_BACKENDS);
    if backends > MAX_BACKENDS {
        return Err(crate::Error::Usage(format!(
            "--flows {flows}: the bench's scenario holds at most {} flows ({MAX_BACKENDS} backends, \
             each with 8 NAT IPs of 64,512 ports, filled to {:.0}%)",
            max_flows(),
            FILL * 100.0
        )));
    }
    let mut s = Scenario::builtin();
    let subnet: Prefix = "10.10.4.0/22".parse().expect("a prefix");
    if let Some(p) = s.provider.as_mut() {
        p.subnets.push(Subnet {
            name: "bench-backends".into(),
            prefix: subnet,
        });
    }
    let first = u32::from(Ipv4Addr::new(10, 10, 4, 4));
    s.load_balancer.pools[0].backends = (0..backends as u32)
        .map(|i| Ipv4Addr::from(first + i))
        .collect();
    s.validate().map_err(|problems| crate::Error::Scenario {
        name: "the bench's scenario".into(),
        problems,
    })?;
    Ok(s)
}

/// The address and port of bench client `i`: 65,536 hosts in `base`/16, ports from 1024 up.
fn client(base: Ipv4Addr, i: u32) -> (Ipv4Addr, u16) {
    let b = u32::from(base) & 0xffff_0000;
    (Ipv4Addr::from(b | (i & 0xffff)), 1024 + (i >> 16) as u16)
}

/// One frame of every flow, as a template and its view: flow `i`'s frame is the template
/// with flow `i`'s client end written in.
#[derive(Clone)]
struct Template {
    frame: Vec<u8>,
    view: Ipv4Tcp,
    clients: Ipv4Addr,
}

impl Template {
    /// A frame of `flags` from client 0 to the endpoint (`back`: from the endpoint to it).
    fn new(clients: Ipv4Addr, endpoint: (Ipv4Addr, u16), flags: u8, back: bool) -> Template {
        let (c, cp) = client(clients, 0);
        let t = tuple(c, cp, endpoint.0, endpoint.1);
        let (t, src_mac, dst_mac) = if back {
            (t.reversed(), PROVIDER_MAC, CONSUMER_MAC)
        } else {
            (t, CONSUMER_MAC, PROVIDER_MAC)
        };
        let mut frame = Vec::with_capacity(FRAME_LEN);
        TcpSegment {
            payload: &[0; 10],
            seq: 2,
            ack: 2,
            src_mac,
            dst_mac,
            ..TcpSegment::new(t, flags)
        }
        .write(&mut frame);
        debug_assert_eq!(frame.len(), FRAME_LEN);
        let view = classify(LinkType::Ethernet, &frame, frame.len()).expect("a built frame");
        Template {
            frame,
            view,
            clients,
        }
    }

    /// Writes flow `i`'s frame into `buf` (the template's length) and returns its view.
    #[inline]
    fn write(&self, i: u32, buf: &mut [u8], back: bool) -> Ipv4Tcp {
        buf.copy_from_slice(&self.frame);
        self.write_in_place(i, buf, back)
    }

    /// Appends flow `i`'s frame to `batch`.
    #[inline]
    fn push(&self, batch: &mut Batch, i: u32, seq: u64, vnet: u32, dir: Dir) {
        batch.push(&self.frame, meta(seq, self.view, dir, vnet));
        let (frame, m) = batch.last_mut().expect("just pushed");
        let v = self.write_in_place(i, frame, dir == Dir::Return);
        m.view = Some(v);
        m.orig = v.tuple();
    }

    /// Writes flow `i`'s client end into a copy of the template's frame.
    #[inline]
    fn write_in_place(&self, i: u32, frame: &mut [u8], back: bool) -> Ipv4Tcp {
        let mut v = self.view;
        let (c, cp) = client(self.clients, i);
        if back {
            v.set_destination(frame, c, cp);
        } else {
            v.set_source(frame, c, cp);
        }
        v
    }
}

/// The metadata of a bench packet; simulated time is 10 ns a packet.
fn meta(seq: u64, view: Ipv4Tcp, dir: Dir, vnet: u32) -> Meta {
    Meta {
        seq,
        ts: SimTime::from_nanos(seq * 10),
        wire_len: FRAME_LEN as u32,
        linktype: LinkType::Ethernet,
        view: Some(view),
        link: Default::default(),
        vnet,
        orig: view.tuple(),
        dir,
        drop: None,
        own: None,
        stream_start: None,
    }
}

/// Opens the flows: for each chunk of flows, their SYNs, their SYN-ACKs (from the backend
/// side) and their ACKs.
struct Setup {
    syn: Template,
    syn_ack: Template,
    ack: Template,
    vnet: u32,
    flows: u32,
    next: u32,
    seq: u64,
}

impl Feeder<Event> for Setup {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        let chunk = (max / 3).max(1) as u32;
        let end = self.next.saturating_add(chunk).min(self.flows);
        for (t, dir) in [
            (&self.syn, Dir::Forward),
            (&self.syn_ack, Dir::Return),
            (&self.ack, Dir::Forward),
        ] {
            for i in self.next..end {
                t.push(batch, i, self.seq, self.vnet, dir);
                self.seq += 1;
            }
        }
        self.next = end;
        if self.next == self.flows {
            Fill::Done
        } else {
            Fill::More
        }
    }
}

/// Established-flow ACKs, one frame per flow, the flows round robin.
struct Traffic {
    ack: Template,
    vnet: u32,
    flows: u32,
    packets: u64,
    sent: u64,
    /// The next packet's place in the whole run (the setup's packets came first).
    seq: u64,
}

impl Feeder<Event> for Traffic {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        let end = (self.sent + max as u64).min(self.packets);
        for k in self.sent..end {
            let i = (k % u64::from(self.flows)) as u32;
            self.ack.push(batch, i, self.seq, self.vnet, Dir::Forward);
            self.seq += 1;
        }
        self.sent = end;
        if self.sent == self.packets {
            Fill::Done
        } else {
            Fill::More
        }
    }
}

/// What `plsim bench --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Million packets per second through the engine (wall clock); a throughput figure only
    /// when `complete`.
    pub mpps: f64,
    /// The single-core reference NAT loop over the same frames, in the same run (`None` with
    /// `--no-reference`).
    pub reference_mpps: Option<f64>,
    /// `mpps / reference_mpps`: the path's time against the loop's over all rounds.
    pub ratio: Option<f64>,
    /// Each round's figures, in order.
    pub rounds: Vec<Round>,
    /// Live flows built before timing.
    pub flows: u32,
    /// Frames pushed.
    pub packets: u64,
    /// Backends of the bench's scenario (enough for every flow to get a NAT port).
    pub backends: usize,
    /// Every packet of the setup and of the timed phase was delivered: the figures are
    /// throughput. False: something was dropped, and the run says so.
    pub complete: bool,
    /// Frames of the timed phase delivered to the backends.
    pub delivered: u64,
    /// Packets dropped in the timed phase.
    pub dropped: u64,
    /// Packets dropped while the flows were opened (SYNs without a port, say).
    pub setup_dropped: u64,
    /// Flows opened per second in the setup (SYN, SYN-ACK, ACK through the whole path).
    pub setup_per_sec: f64,
    /// Flow state per live flow, by stage.
    pub bytes_per_flow: StateBytes,
    /// The process's peak resident memory, in bytes (Linux; 0 where unknown).
    pub peak_rss_bytes: u64,
    /// Wall time of the timed phase.
    pub wall_s: f64,
    /// In-engine latency of the timed phase.
    pub latency_ns: Latency,
    /// Time each stage spent per packet processing (not waiting), in the timed phase.
    pub stage_ns_per_packet: StageNs,
    /// Packets per batch.
    pub batch: usize,
    /// The service sent PROXY protocol v2 headers (`--proxy-protocol`): the timed frames were
    /// shifted past them.
    pub proxy_protocol: bool,
    /// PROXY protocol headers sent while the flows were opened (one per flow when on).
    pub proxy_headers: u64,
}

/// One round of the timed phase: its share of the frames through the path, then through the
/// reference loop.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Round {
    /// Frames in the round.
    pub packets: u64,
    /// Million packets per second through the path.
    pub mpps: f64,
    /// Million packets per second through the reference loop (`None` without it).
    pub reference_mpps: Option<f64>,
    /// `mpps / reference_mpps`.
    pub ratio: Option<f64>,
}

/// Heap bytes of flow state per live flow (capacities: what the allocator handed out).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StateBytes {
    /// The load balancer's flow table.
    pub lb: f64,
    /// The SNAT engines: flow table and port allocators.
    pub snat: f64,
}

/// Nanoseconds per packet each stage spent processing.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StageNs {
    /// The private endpoint (on the driver thread).
    pub endpoint: f64,
    /// The load balancer.
    pub lb: f64,
    /// The SNAT stage.
    pub snat: f64,
}

/// The process's peak resident set size (`VmHWM`), in bytes; 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl BenchReport {
    /// Ok when every packet was delivered; otherwise the error that says its figures are not
    /// throughput (drops are results elsewhere; here they make the figures meaningless).
    pub fn check(&self) -> crate::Result<()> {
        if self.complete {
            return Ok(());
        }
        Err(crate::Error::Input(format!(
            "the bench dropped {} packets ({} while opening the flows): its figures are not throughput",
            self.dropped + self.setup_dropped,
            self.setup_dropped
        )))
    }
}

/// `plsim bench`: `flows` live flows on [`scenario_for`]'s scenario (its service sending PROXY
/// protocol v2 headers with `proxy_protocol`), then `packets` frames.
pub fn run_builtin(o: &BenchOptions) -> crate::Result<BenchReport> {
    if o.flows == 0 || o.packets == 0 {
        return Err(crate::Error::Usage(
            "--flows and --packets must be at least 1".into(),
        ));
    }
    let mut scenario = scenario_for(u64::from(o.flows))?;
    scenario.services[0].enable_proxy_protocol = o.proxy_protocol;
    run_on(&scenario, o)
}

/// The bench on `scenario` (its first endpoint's VNet and address; its first pool's backends).
/// A scenario that can't give every flow a port makes an incomplete report, not an error.
pub fn run_on(scenario: &Scenario, o: &BenchOptions) -> crate::Result<BenchReport> {
    let (flows, packets, batch) = (o.flows, o.packets, o.batch);
    let backends = scenario.load_balancer.pools[0].backends.len();
    let mut sim = crate::path::Path::build(scenario, false)?;
    // The tables take every flow without growing on the packet path.
    sim.lb.0.reserve(flows as usize);
    sim.snat.reserve(flows as usize);
    let proxy_protocol = scenario.services[0].enable_proxy_protocol;
    let route = &sim.routes[0];
    let addrs = BenchAddrs {
        clients: Ipv4Addr::new(10, 1, 0, 0),
        endpoint: (route.address, 443),
        vnet: route.vnet,
    };
    let parts = Parts {
        edge: sim.endpoint,
        core: (sim.lb, sim.snat),
        backend: AsIs,
    };
    // The reference's table is built before the rounds, so both run on warm, built state.
    let mut reference = (!o.no_reference).then(|| Reference::new(addrs, flows));
    let mut reference_times = Vec::new();
    let (res, parts) = bench(parts, addrs, o, |from, n| {
        if let Some(r) = reference.as_mut() {
            reference_times.push(r.run(from, n));
        }
    });
    let (lb, snat) = &parts.core;
    let live: u64 = snat.engines().iter().map(|e| e.stats().live).sum();
    let per_flow = |bytes: usize| bytes as f64 / live.max(1) as f64;
    let bytes_per_flow = StateBytes {
        lb: per_flow(lb.0.memory_bytes()),
        snat: per_flow(snat.engines().iter().map(|e| e.memory_bytes()).sum()),
    };
    drop(parts);
    let reference_mpps = reference
        .is_some()
        .then(|| mpps(packets, reference_times.iter().sum()));
    let rounds = res
        .rounds
        .iter()
        .enumerate()
        .map(|(i, &(n, path))| {
            let (path, reference) = (mpps(n, path), reference_times.get(i).map(|&d| mpps(n, d)));
            Round {
                packets: n,
                mpps: path,
                reference_mpps: reference,
                ratio: reference.map(|r| path / r),
            }
        })
        .collect();
    let per = |d: std::time::Duration| d.as_nanos() as f64 / packets as f64;
    let busy = |i: usize| res.stats.busy.get(i).copied().unwrap_or_default();
    let dropped = res.stats.dropped.total();
    let setup_dropped = res.setup.dropped.total();
    Ok(BenchReport {
        mpps: res.mpps,
        reference_mpps,
        ratio: reference_mpps.map(|r| res.mpps / r),
        rounds,
        flows,
        packets,
        backends,
        complete: dropped == 0 && setup_dropped == 0 && res.stats.to_backend == packets,
        delivered: res.stats.to_backend,
        dropped,
        setup_dropped,
        setup_per_sec: res.setup_per_sec,
        bytes_per_flow,
        peak_rss_bytes: peak_rss_bytes(),
        wall_s: res.stats.wall.as_secs_f64(),
        latency_ns: Latency::from(&res.stats.latency_ns),
        stage_ns_per_packet: StageNs {
            endpoint: per(busy(0)),
            lb: per(busy(1)),
            snat: per(busy(2)),
        },
        batch,
        proxy_protocol,
        proxy_headers: res.setup.injected,
    })
}

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

/// The hand-written single-core NAT loop the engine must beat, with the same access pattern:
/// for each packet, flow after flow round robin, make its frame as the bench's feeder does
/// (copy the template, write the client end in), one hash lookup of its flow (`hashbrown`
/// with its default hasher, foldhash), the source rewrite with the incremental checksum
/// update.
pub struct Reference {
    ack: Template,
    table: hashbrown::HashMap<FlowTuple, (Ipv4Addr, u16)>,
    flows: u32,
}

impl Reference {
    /// The loop's table of `flows` flows, each with a NAT end.
    pub fn new(addrs: BenchAddrs, flows: u32) -> Reference {
        let ack = Template::new(addrs.clients, addrs.endpoint, TcpFlags::ACK, false);
        let mut table = hashbrown::HashMap::with_capacity(flows as usize);
        let mut buf = [0u8; FRAME_LEN];
        for i in 0..flows {
            let t = ack.write(i, &mut buf, false).tuple();
            table.insert(
                t,
                (
                    Ipv4Addr::from(0x0a0a_0104 + (i & 7)),
                    1024 + ((i >> 3) % 64_512) as u16,
                ),
            );
        }
        Reference {
            ack,
            table,
            flows: flows.max(1),
        }
    }

    /// Runs packets `from .. from + n` of the round robin (packet `k` is flow `k % flows`'s);
    /// returns the time they took.
    pub fn run(&mut self, from: u64, n: u64) -> Duration {
        let mut buf = [0u8; FRAME_LEN];
        let mut sum = 0u64;
        let start = Instant::now();
        let mut i = (from % u64::from(self.flows)) as u32;
        for _ in 0..n {
            let mut v = self.ack.write(i, &mut buf, false);
            if let Some(&(ip, port)) = self.table.get(&v.tuple()) {
                v.set_source(&mut buf, ip, port);
            }
            sum = sum.wrapping_add(u64::from(buf[24]));
            i += 1;
            if i == self.flows {
                i = 0;
            }
        }
        let wall = start.elapsed();
        std::hint::black_box(sum);
        wall
    }
}

/// Where the bench's flows come from and go to.
#[derive(Clone, Copy, Debug)]
pub struct BenchAddrs {
    /// The /16 the clients live in.
    pub clients: Ipv4Addr,
    /// The private endpoint and port they connect to.
    pub endpoint: (Ipv4Addr, u16),
    /// The consumer VNet of the endpoint.
    pub vnet: u32,
}

/// Million packets per second of `n` packets in `took`. A round of a frame or two may take less
/// than the clock can tell: a nanosecond at least, so no rate is infinite.
fn mpps(n: u64, took: Duration) -> f64 {
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
            flows,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_frames_are_what_the_builder_makes() {
        let clients = Ipv4Addr::new(10, 1, 0, 0);
        let endpoint = (Ipv4Addr::new(10, 0, 0, 4), 443);
        for (flags, back) in [
            (TcpFlags::SYN, false),
            (TcpFlags::SYN | TcpFlags::ACK, true),
            (TcpFlags::ACK, false),
        ] {
            let t = Template::new(clients, endpoint, flags, back);
            for i in [0, 1, 65_535, 65_536, 9_999_999] {
                let mut buf = [0u8; FRAME_LEN];
                let v = t.write(i, &mut buf, back);
                let (c, cp) = client(clients, i);
                let up = tuple(c, cp, endpoint.0, endpoint.1);
                let want_t = if back { up.reversed() } else { up };
                let (src_mac, dst_mac) = if back {
                    (PROVIDER_MAC, CONSUMER_MAC)
                } else {
                    (CONSUMER_MAC, PROVIDER_MAC)
                };
                let mut want = Vec::new();
                TcpSegment {
                    payload: &[0; 10],
                    seq: 2,
                    ack: 2,
                    src_mac,
                    dst_mac,
                    ..TcpSegment::new(want_t, flags)
                }
                .write(&mut want);
                assert_eq!(&buf[..], &want[..], "flow {i}, flags {flags:#x}");
                assert_eq!(v.tuple(), want_t);
                let mut batch = Batch::new();
                t.push(
                    &mut batch,
                    i,
                    7,
                    0,
                    if back { Dir::Return } else { Dir::Forward },
                );
                let (f, m) = batch.get(0);
                assert_eq!(f, &want[..]);
                assert_eq!(m.orig, want_t);
            }
        }
    }

    #[test]
    fn a_bench_that_dropped_anything_is_incomplete() {
        let o = BenchOptions {
            flows: 500,
            packets: 2_000,
            batch: 64,
            rounds: 3,
            ..BenchOptions::default()
        };
        let ok = run_on(&Scenario::builtin(), &o).unwrap();
        assert!(ok.complete);
        assert_eq!((ok.delivered, ok.dropped, ok.setup_dropped), (2_000, 0, 0));
        // One NAT IP of 10 ports to 4 backends: 40 flows get a port, 460 SYNs are refused,
        // and so are their SYN-ACKs (no flow) and ACKs (no flow at the SNAT).
        let mut tight = Scenario::builtin();
        crate::path::Overrides {
            nat_ips: Some(1),
            ports: Some(plsim_control::scenario::PortRange::new(1024, 1033)),
            ..Default::default()
        }
        .apply(&mut tight)
        .unwrap();
        let r = run_on(&tight, &o).unwrap();
        assert!(!r.complete);
        assert_eq!(r.setup_dropped, 3 * 460);
        // Round robin over 500 flows, 40 of them live: 4 frames each of the live ones.
        assert_eq!((r.delivered, r.dropped), (160, 1_840));
    }

    #[test]
    fn the_scenario_has_backends_enough_or_says_how_many_flows_fit() {
        assert_eq!(
            scenario_for(1_000_000).unwrap().load_balancer.pools[0]
                .backends
                .len(),
            4
        );
        // 10M flows over backends of 8 x 64,512 ports filled to 90%: 22 backends.
        assert_eq!(
            scenario_for(10_000_000).unwrap().load_balancer.pools[0]
                .backends
                .len(),
            22
        );
        let e = scenario_for(max_flows() + 1).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("holds at most"), "{e}");
    }
}
