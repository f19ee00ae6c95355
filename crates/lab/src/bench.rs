//! `plsim bench`: builds live flows through the whole path, then times established-flow frames
//! through the threaded pipeline, in memory.

use std::net::Ipv4Addr;
use std::time::Instant;

use plsim_wire::build::{CONSUMER_MAC, PROVIDER_MAC, TcpSegment, tuple};
use plsim_wire::{FlowTuple, Ipv4Tcp, LinkType, SimTime, TcpFlags, classify};

use plsim_engine::{
    AsIs, Batch, Dir, Edge, Feeder, Fill, Meta, NoTaps, Options, Parts, RunStats, Stages,
};

use serde::Serialize;

use crate::Event;
use crate::replay::BackendEmulation;
use crate::summary::Latency;

/// The frame length the bench pushes.
pub const FRAME_LEN: usize = 64;

/// The address and port of bench client `i`: 65,536 hosts in `base`/16, ports from 1024 up.
fn client(base: Ipv4Addr, i: u32) -> (Ipv4Addr, u16) {
    let b = u32::from(base) & 0xffff_0000;
    (Ipv4Addr::from(b | (i & 0xffff)), 1024 + (i >> 16) as u16)
}

/// The consumer-side tuple of bench flow `i`: a client to the private endpoint.
fn flow(clients: Ipv4Addr, endpoint: (Ipv4Addr, u16), i: u32) -> FlowTuple {
    let (c, cp) = client(clients, i);
    tuple(c, cp, endpoint.0, endpoint.1)
}

fn meta(seq: u64, ts: SimTime, view: Ipv4Tcp, dir: Dir, orig: FlowTuple, vnet: u32) -> Meta {
    Meta {
        seq,
        ts,
        wire_len: FRAME_LEN as u32,
        linktype: LinkType::Ethernet,
        view: Some(view),
        link: Default::default(),
        vnet,
        orig,
        dir,
        drop: None,
    }
}

/// Opens `flows` flows: SYN, SYN-ACK (from the backend side), ACK, 64 flows at a time.
struct Setup {
    clients: Ipv4Addr,
    endpoint: (Ipv4Addr, u16),
    vnet: u32,
    flows: u32,
    next: u32,
    seq: u64,
}

impl Feeder<Event> for Setup {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        let chunk = (max / 3).max(1) as u32;
        let end = (self.next + chunk).min(self.flows);
        let mut frame = Vec::with_capacity(FRAME_LEN);
        for step in 0..3 {
            for i in self.next..end {
                let up = flow(self.clients, self.endpoint, i);
                let (t, flags, dir) = match step {
                    0 => (up, TcpFlags::SYN, Dir::Forward),
                    1 => (up.reversed(), TcpFlags::SYN | TcpFlags::ACK, Dir::Return),
                    _ => (up, TcpFlags::ACK, Dir::Forward),
                };
                frame.clear();
                TcpSegment {
                    payload: &[0; 10],
                    seq: 1,
                    ack: 1,
                    ..TcpSegment::new(t, flags)
                }
                .write(&mut frame);
                let view =
                    classify(LinkType::Ethernet, &frame, frame.len()).expect("a built frame");
                let m = meta(
                    self.seq,
                    SimTime::from_nanos(self.seq * 10),
                    view,
                    dir,
                    t,
                    self.vnet,
                );
                self.seq += 1;
                batch.push(&frame, m);
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

/// Established-flow ACKs, flow after flow, from frames built once.
struct Traffic<'a> {
    frames: &'a [u8],
    views: &'a [Ipv4Tcp],
    origs: &'a [FlowTuple],
    vnet: u32,
    packets: u64,
    sent: u64,
    seq: u64,
    /// Simulated time goes on from the setup's: packet k is at `(t0 + k) * 10` ns.
    t0: u64,
}

impl Feeder<Event> for Traffic<'_> {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        let n = self.views.len() as u64;
        let end = (self.sent + max as u64).min(self.packets);
        for k in self.sent..end {
            let i = (k % n) as usize;
            let frame = &self.frames[i * FRAME_LEN..(i + 1) * FRAME_LEN];
            batch.push(
                frame,
                meta(
                    self.seq,
                    SimTime::from_nanos((self.t0 + self.seq) * 10),
                    self.views[i],
                    Dir::Forward,
                    self.origs[i],
                    self.vnet,
                ),
            );
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
    /// Million packets per second through the engine (wall clock).
    pub mpps: f64,
    /// The single-core reference NAT loop over the same frames, in the same run.
    pub reference_mpps: f64,
    /// Live flows built before timing.
    pub flows: u32,
    /// Frames pushed.
    pub packets: u64,
    /// Flows opened per second in the setup (SYN, SYN-ACK, ACK through the whole path).
    pub setup_per_sec: f64,
    /// SNAT flow state per live flow (flow table, indexes, timers, port allocators).
    pub bytes_per_flow: f64,
    /// Wall time of the timed phase.
    pub wall_s: f64,
    /// In-engine latency of the timed phase.
    pub latency_ns: Latency,
    /// Frames delivered to the backends.
    pub delivered: u64,
    /// Packets dropped, setup and timed phase together.
    pub dropped: u64,
    /// Time each stage spent per packet processing (not waiting), in the timed phase.
    pub stage_ns_per_packet: StageNs,
    /// Packets per batch.
    pub batch: usize,
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

/// `plsim bench`: the built-in scenario, `flows` live flows, `packets` frames.
pub fn run_builtin(
    flows: u32,
    packets: u64,
    engine: plsim_engine::Engine,
    batch: usize,
) -> crate::Result<BenchReport> {
    if flows == 0 || packets == 0 {
        return Err(crate::Error::Usage(
            "--flows and --packets must be at least 1".into(),
        ));
    }
    let scenario = plsim_control::Scenario::builtin();
    let sim = crate::path::Path::build(&scenario, false)?;
    let route = &sim.routes[0];
    let (vnet, endpoint) = (route.vnet, route.address);
    let addrs = BenchAddrs {
        clients: Ipv4Addr::new(10, 1, 0, 0),
        endpoint: (endpoint, 443),
        vnet,
    };
    let parts = Parts {
        edge: sim.endpoint,
        core: (sim.lb, sim.snat),
        backend: AsIs,
    };
    let (res, parts) = bench(parts, addrs, flows, packets, engine, batch);
    let snat = &parts.core.1;
    let snat_bytes: usize = snat.engines().iter().map(|e| e.memory_bytes()).sum();
    let live: u64 = snat.engines().iter().map(|e| e.stats().live).sum();
    let per = |d: std::time::Duration| d.as_nanos() as f64 / packets as f64;
    let busy = |i: usize| res.stats.busy.get(i).copied().unwrap_or_default();
    Ok(BenchReport {
        mpps: res.mpps,
        reference_mpps: res.reference_mpps,
        flows,
        packets,
        setup_per_sec: res.setup_per_sec,
        bytes_per_flow: snat_bytes as f64 / live.max(1) as f64,
        wall_s: res.stats.wall.as_secs_f64(),
        latency_ns: Latency::from(&res.stats.latency_ns),
        delivered: res.stats.to_backend,
        dropped: res.stats.dropped.total() + res.setup.dropped.total(),
        stage_ns_per_packet: StageNs {
            endpoint: per(busy(0)),
            lb: per(busy(1)),
            snat: per(busy(2)),
        },
        batch,
    })
}

/// What one bench run measured.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// Million packets per second through the pipeline (wall clock).
    pub mpps: f64,
    /// Million packets per second of the single-core reference NAT loop over the same frames,
    /// measured in the same run (see [`reference_loop`]).
    pub reference_mpps: f64,
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
}

/// The hand-written single-core NAT loop the pipeline must beat: for each packet, copy the frame
/// into a buffer (as the pipeline's driver does), one hash lookup of its flow, the source rewrite
/// with the incremental checksum update. Same frames, same order as the pipeline's run.
pub fn reference_loop(frames: &[u8], views: &[Ipv4Tcp], origs: &[FlowTuple], packets: u64) -> f64 {
    let n = views.len();
    let mut table: hashbrown::HashMap<FlowTuple, (Ipv4Addr, u16)> =
        hashbrown::HashMap::with_capacity(n);
    for (i, t) in origs.iter().enumerate() {
        table.insert(
            *t,
            (
                Ipv4Addr::from(0x0a0a_0104 + (i as u32 & 7)),
                1024 + (i >> 3) as u16,
            ),
        );
    }
    let mut buf = [0u8; FRAME_LEN];
    let mut sum = 0u64;
    let start = Instant::now();
    for k in 0..packets {
        let i = (k % n as u64) as usize;
        buf.copy_from_slice(&frames[i * FRAME_LEN..(i + 1) * FRAME_LEN]);
        let mut v = views[i];
        if let Some(&(ip, port)) = table.get(&v.tuple()) {
            v.set_source(&mut buf, ip, port);
        }
        sum = sum.wrapping_add(u64::from(buf[24]));
    }
    let wall = start.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    packets as f64 / wall / 1e6
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

/// Builds `flows` live flows through the path, then pushes `packets` 64-byte frames of them
/// through `engine` (the threaded one, or the sequential reference for comparison), and hands
/// the parts back.
pub fn bench<E, C>(
    parts: Parts<E, C, AsIs>,
    addrs: BenchAddrs,
    flows: u32,
    packets: u64,
    engine: plsim_engine::Engine,
    batch_size: usize,
) -> (BenchResult, Parts<E, C, AsIs>)
where
    E: Edge<Event>,
    C: Stages<Event>,
{
    let opts = Options {
        batch_size,
        latency: true,
        stage_times: true,
        engine,
    };
    let t0 = Instant::now();
    let mut setup = Setup {
        clients: addrs.clients,
        endpoint: addrs.endpoint,
        vnet: addrs.vnet,
        flows,
        next: 0,
        seq: 0,
    };
    let with_backends = Parts {
        edge: parts.edge,
        core: parts.core,
        backend: BackendEmulation::default(),
    };
    let done = plsim_engine::run(with_backends, &mut setup, NoTaps, opts);
    let setup_s = t0.elapsed().as_secs_f64();

    let mut frames = Vec::with_capacity(flows as usize * FRAME_LEN);
    let mut views = Vec::with_capacity(flows as usize);
    let mut origs = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let t = flow(addrs.clients, addrs.endpoint, i);
        let at = frames.len();
        TcpSegment {
            payload: &[0; 10],
            seq: 2,
            ack: 2,
            src_mac: CONSUMER_MAC,
            dst_mac: PROVIDER_MAC,
            ..TcpSegment::new(t, TcpFlags::ACK)
        }
        .write(&mut frames);
        views.push(classify(LinkType::Ethernet, &frames[at..], FRAME_LEN).expect("a built frame"));
        origs.push(t);
    }
    let mut traffic = Traffic {
        frames: &frames,
        views: &views,
        origs: &origs,
        vnet: addrs.vnet,
        packets,
        sent: 0,
        seq: 0,
        t0: setup.seq,
    };
    let timed = Parts {
        edge: done.parts.edge,
        core: done.parts.core,
        backend: AsIs,
    };
    let t1 = Instant::now();
    let fin = plsim_engine::run(timed, &mut traffic, NoTaps, opts);
    let wall = t1.elapsed().as_secs_f64();
    let reference_mpps = reference_loop(&frames, &views, &origs, packets);
    let result = BenchResult {
        mpps: packets as f64 / wall / 1e6,
        reference_mpps,
        flows,
        packets,
        setup_per_sec: f64::from(flows) / setup_s,
        stats: fin.stats,
        setup: done.stats,
    };
    (result, fin.parts)
}
