//! The packets of a workload: a k-way merge over the open flows, each made one packet at a time.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{self, AtomicBool};

use plsim_pcap::Writer;
use plsim_wire::build::{CONSUMER_MAC, PROVIDER_MAC, TcpSegment, tuple};
use plsim_wire::{Dir, LinkType, TcpFlags};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::schedule::{ISN_STREAM, stream};
use super::{CLIENT_PORTS, Close, FlowPlan, MSS, Schedule, SpecError, WorkloadSpec};
use plsim_pcap::FrameBuf;

/// What [`Workload::next_into`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// The packet's time, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Which way it goes.
    pub dir: Dir,
    /// Its flow's number ([`FlowPlan::id`]).
    pub flow: u64,
}

/// One packet of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The Ethernet frame (never snapped: `wire_len == data.len()`) and its time.
    pub frame: FrameBuf,
    /// Which way it goes.
    pub dir: Dir,
    /// Its flow's number ([`FlowPlan::id`]).
    pub flow: u64,
}

/// Counts of what a workload has made so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Flows started (their SYN is made or due).
    pub flows_started: u64,
    /// Flows not started because no host had a free client port.
    pub flows_unplaced: u64,
    /// Flows whose last packet has been made.
    pub flows_done: u64,
    /// Packets made.
    pub packets: u64,
    /// Payload bytes made.
    pub bytes: u64,
    /// The most flows open at once (started, last packet not yet made).
    pub open_peak: u64,
}

/// The settings every flow shares.
#[derive(Clone, Debug)]
struct Shape {
    server: Ipv4Addr,
    server_port: u16,
    client_base: u32,
    /// Half the round-trip time, ns.
    half_rtt: u64,
    /// Data packets per flow.
    data: u64,
    /// Payload of each data packet: `base`, plus one for the first `extra`.
    base: u64,
    extra: u64,
    close: Close,
}

impl Shape {
    fn steps(&self) -> u64 {
        3 + self.data + u64::from(self.close.packets())
    }

    fn payload_len(&self, i: u64) -> usize {
        (self.base + u64::from(i < self.extra)) as usize
    }
}

/// One open flow: where it is, and when its next packet is due.
#[derive(Clone, Debug)]
struct Open {
    /// When the next packet is due.
    ts: u64,
    id: u64,
    /// The next packet: 0 SYN, 1 SYN-ACK, 2 ACK, then the data packets, then the close.
    step: u64,
    start: u64,
    /// The time between the starts of two request/response pairs.
    gap: u64,
    /// When the close starts.
    close_at: u64,
    host: u32,
    port: u16,
    /// The next sequence number of the client and of the server.
    client_seq: u32,
    server_seq: u32,
}

impl Open {
    fn key(&self) -> (u64, u64) {
        (self.ts, self.id)
    }

    /// When packet `step` is due.
    fn due(&self, shape: &Shape, step: u64) -> u64 {
        let h = shape.half_rtt;
        match step {
            0..=2 => self.start.saturating_add(step * h),
            s if s < 3 + shape.data => {
                let i = s - 3;
                self.start
                    .saturating_add(2 * h)
                    .saturating_add((i / 2).saturating_mul(self.gap))
                    .saturating_add((i % 2) * h)
            }
            s => self
                .close_at
                .saturating_add((s - 3 - shape.data).saturating_mul(h)),
        }
    }
}

// A min-heap on (ts, id) through the max-heap `BinaryHeap`.
impl Ord for Open {
    fn cmp(&self, other: &Open) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl PartialOrd for Open {
    fn partial_cmp(&self, other: &Open) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Open {
    fn eq(&self, other: &Open) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Open {}

const PORTS: u32 = (*CLIENT_PORTS.end() as u32) - (*CLIENT_PORTS.start() as u32) + 1;

/// The client ports of every host: which 4-tuples are in use, and where each host goes next.
#[derive(Clone, Debug)]
struct Ports {
    next_host: u32,
    /// The next port each host tries.
    cursor: Vec<u16>,
    /// Ports in use per host.
    used: Vec<u32>,
    /// `host << 16 | port` of every 4-tuple in use (open, or in its reuse delay).
    busy: HashSet<u64>,
    /// Tuples in their reuse delay, with when they are free: in time order.
    delayed: VecDeque<(u64, u64)>,
    delay_ns: u64,
}

impl Ports {
    fn new(hosts: u32, delay_ns: u64) -> Ports {
        Ports {
            next_host: 0,
            cursor: vec![*CLIENT_PORTS.start(); hosts as usize],
            used: vec![0; hosts as usize],
            busy: HashSet::new(),
            delayed: VecDeque::new(),
            delay_ns,
        }
    }

    /// A free (host, port) for a flow starting at `now`, hosts in turn.
    fn take(&mut self, now: u64) -> Option<(u32, u16)> {
        while let Some(&(free_at, key)) = self.delayed.front() {
            if free_at > now {
                break;
            }
            self.delayed.pop_front();
            self.busy.remove(&key);
            self.used[(key >> 16) as usize] -= 1;
        }
        let hosts = self.cursor.len() as u32;
        let first = self.next_host;
        self.next_host = (first + 1) % hosts;
        for k in 0..hosts {
            let host = (first + k) % hosts;
            if self.used[host as usize] == PORTS {
                continue;
            }
            // A free port exists, so this ends within PORTS tries.
            let mut port = self.cursor[host as usize];
            loop {
                let next = if port == *CLIENT_PORTS.end() {
                    *CLIENT_PORTS.start()
                } else {
                    port + 1
                };
                let key = u64::from(host) << 16 | u64::from(port);
                if self.busy.insert(key) {
                    self.cursor[host as usize] = next;
                    self.used[host as usize] += 1;
                    return Some((host, port));
                }
                port = next;
            }
        }
        None
    }

    /// The flow on (host, port) sent its last packet at `last`.
    fn release(&mut self, host: u32, port: u16, last: u64) {
        let key = u64::from(host) << 16 | u64::from(port);
        self.delayed
            .push_back((last.saturating_add(self.delay_ns), key));
    }
}

/// The packets of a [`WorkloadSpec`], in nondecreasing timestamp order (ties: by flow number),
/// made lazily: only the open flows are held, a few dozen bytes each.
///
/// Iterate it for [`Packet`]s, or call [`Workload::next_into`] to reuse one buffer.
#[derive(Clone, Debug)]
pub struct Workload {
    shape: Shape,
    schedule: Schedule,
    /// The next flow to start, taken from the schedule ahead of time.
    pending: Option<FlowPlan>,
    isn: ChaCha8Rng,
    open: BinaryHeap<Open>,
    ports: Ports,
    stats: WorkloadStats,
    /// When raised, start no more flows: what is open goes on (see [`Workload::stop_on`]).
    stop: Option<Arc<AtomicBool>>,
}

/// SYN options: MSS 1460.
const SYN_OPTIONS: [u8; 4] = [2, 4, (MSS >> 8) as u8, MSS as u8];

/// The payload bytes every data packet takes a prefix of.
static PAYLOAD: [u8; MSS] = {
    let mut p = [0u8; MSS];
    let mut i = 0;
    while i < MSS {
        p[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    p
};

impl Workload {
    /// The workload of `spec`, or why the spec is wrong.
    pub fn new(spec: &WorkloadSpec) -> Result<Workload, SpecError> {
        let mut schedule = spec.schedule()?;
        let data = u64::from(spec.profile.packets_per_flow);
        let (base, extra) = match data {
            0 => (0, 0),
            n => (
                spec.profile.bytes_per_flow / n,
                spec.profile.bytes_per_flow % n,
            ),
        };
        let half_rtt = (spec.rtt_ms * 1e6 / 2.0).round() as u64;
        let delay_ns = (spec.reuse_delay_secs * 1e9).round() as u64;
        Ok(Workload {
            shape: Shape {
                server: *spec.server.ip(),
                server_port: spec.server.port(),
                client_base: u32::from(spec.client_base),
                half_rtt,
                data,
                base,
                extra,
                close: spec.profile.close,
            },
            pending: schedule.next(),
            schedule,
            isn: stream(spec.seed(), ISN_STREAM),
            open: BinaryHeap::new(),
            ports: Ports::new(spec.profile.hosts, delay_ns),
            stats: WorkloadStats::default(),
            stop: None,
        })
    }

    /// Starts no more flows once `flag` is raised (a Ctrl-C handler's, say): the flows open
    /// then still make their packets, and the workload ends after them.
    ///
    /// Without it, a workload whose flows hold every client port for long can start flows (and
    /// find no port for them) for as long as the gap to the next packet of an open flow, which
    /// can be hours of the wall clock at a high rate: [`next_into`](Self::next_into) looks at
    /// the flag before each flow it starts while a packet is waiting, and returns that packet.
    pub fn stop_on(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|f| f.load(atomic::Ordering::Relaxed))
    }

    /// What has been made so far.
    pub fn stats(&self) -> WorkloadStats {
        self.stats
    }

    /// The number of flows open now (started, last packet not yet made).
    pub fn open_flows(&self) -> usize {
        self.open.len()
    }

    /// Opens `plan`'s flow, unless no client port is free.
    fn start(&mut self, plan: FlowPlan) {
        // Drawn for every flow, placed or not, so placement never shifts the others.
        let client_seq: u32 = self.isn.random();
        let server_seq: u32 = self.isn.random();
        let Some((host, port)) = self.ports.take(plan.start_ns) else {
            self.stats.flows_unplaced += 1;
            return;
        };
        let shape = &self.shape;
        let h = shape.half_rtt;
        let pairs = shape.data.div_ceil(2);
        let d = plan.duration_ns;
        // Pairs at least half an RTT apart, spread over what the handshake leaves of `d`.
        let (gap, busy) = match d.saturating_sub(2 * h).checked_div(pairs) {
            None => (0, 2 * h),
            Some(spread) => {
                let gap = spread.max(h);
                (gap, (2 * h).saturating_add(pairs.saturating_mul(gap)))
            }
        };
        self.open.push(Open {
            ts: plan.start_ns,
            id: plan.id,
            step: 0,
            start: plan.start_ns,
            gap,
            close_at: plan.start_ns.saturating_add(d.max(busy)),
            host,
            port,
            client_seq,
            server_seq,
        });
        self.stats.flows_started += 1;
        self.stats.open_peak = self.stats.open_peak.max(self.open.len() as u64);
    }

    /// Clears `buf`, writes the next packet's Ethernet frame into it and says what it is; `None`
    /// when the workload is over. Allocates nothing once `buf` is large enough (1514 bytes).
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<PacketMeta> {
        // Start every flow due no later than the earliest open flow's next packet; once asked
        // to stop, start none (and end when the open ones are done).
        if self.stopped() {
            self.pending = None;
        }
        while let Some(plan) = self.pending {
            match self.open.peek() {
                Some(o) if o.ts < plan.start_ns => break,
                // A packet is waiting: look at the flag before each flow started ahead of it.
                Some(_) if self.stopped() => {
                    self.pending = None;
                    break;
                }
                _ => {}
            }
            self.pending = self.schedule.next();
            self.start(plan);
        }
        let mut top = self.open.peek_mut()?;
        let shape = &self.shape;
        let o = &mut *top;
        let client = Ipv4Addr::from(shape.client_base + o.host);
        let up = tuple(client, o.port, shape.server, shape.server_port);
        let (a, f) = (TcpFlags::ACK, o.step);
        let data_end = 3 + shape.data;
        // (from the client, flags, payload length, options)
        let (from_client, flags, len, options): (bool, u8, usize, &[u8]) = match f {
            0 => (true, TcpFlags::SYN, 0, &SYN_OPTIONS),
            1 => (false, TcpFlags::SYN | a, 0, &SYN_OPTIONS),
            2 => (true, a, 0, &[]),
            s if s < data_end => {
                let len = shape.payload_len(s - 3);
                let flags = if len > 0 { a | TcpFlags::PSH } else { a };
                ((s - 3) % 2 == 0, flags, len, &[])
            }
            s => match (shape.close, s - data_end) {
                (Close::Fin, 0) => (true, TcpFlags::FIN | a, 0, &[]),
                (Close::Fin, 1) => (false, TcpFlags::FIN | a, 0, &[]),
                (Close::ServerFin, 0) => (false, TcpFlags::FIN | a, 0, &[]),
                (Close::ServerFin, 1) => (true, TcpFlags::FIN | a, 0, &[]),
                (Close::ServerFin, _) => (false, a, 0, &[]),
                (Close::Rst, 0) => (true, TcpFlags::RST | a, 0, &[]),
                _ => (true, a, 0, &[]),
            },
        };
        let (seg_tuple, seq, ack) = if from_client {
            (up, o.client_seq, o.server_seq)
        } else {
            (up.reversed(), o.server_seq, o.client_seq)
        };
        let ack = if f == 0 { 0 } else { ack };
        let (src_mac, dst_mac) = if from_client {
            (CONSUMER_MAC, PROVIDER_MAC)
        } else {
            (PROVIDER_MAC, CONSUMER_MAC)
        };
        buf.clear();
        TcpSegment {
            seq,
            ack,
            options,
            payload: &PAYLOAD[..len],
            src_mac,
            dst_mac,
            ..TcpSegment::new(seg_tuple, flags)
        }
        .write(buf);
        let used = len as u32 + u32::from(flags & (TcpFlags::SYN | TcpFlags::FIN) != 0);
        if from_client {
            o.client_seq = o.client_seq.wrapping_add(used);
        } else {
            o.server_seq = o.server_seq.wrapping_add(used);
        }
        let meta = PacketMeta {
            ts_ns: o.ts,
            dir: if from_client {
                Dir::Forward
            } else {
                Dir::Reverse
            },
            flow: o.id,
        };
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        o.step += 1;
        if o.step == shape.steps() {
            let (host, port, last) = (o.host, o.port, o.ts);
            PeekMut::pop(top);
            self.ports.release(host, port, last);
            self.stats.flows_done += 1;
        } else {
            o.ts = o.due(shape, o.step);
            // Dropping `top` moves the flow to its place in the heap.
        }
        Some(meta)
    }

    /// Streams the rest of the workload to `out` as a classic pcap (Ethernet), returning `out`
    /// and the final counts.
    pub fn write_pcap_to<W: Write>(mut self, out: W) -> io::Result<(W, WorkloadStats)> {
        let mut w = Writer::new(out, LinkType::Ethernet, 65535)?;
        let mut buf = Vec::with_capacity(2048);
        while let Some(meta) = self.next_into(&mut buf) {
            w.write(meta.ts_ns, &buf, buf.len())?;
        }
        Ok((w.finish()?, self.stats))
    }

    /// Streams the rest of the workload to a new pcap file at `path` (as
    /// [`captures::write_pcap`](crate::captures::write_pcap) would write the same frames).
    pub fn write_pcap(self, path: &Path) -> io::Result<WorkloadStats> {
        let file = io::BufWriter::new(std::fs::File::create(path)?);
        let (file, stats) = self.write_pcap_to(file)?;
        file.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(stats)
    }
}

impl Iterator for Workload {
    type Item = Packet;

    fn next(&mut self) -> Option<Packet> {
        let mut data = Vec::with_capacity(64);
        let meta = self.next_into(&mut data)?;
        Some(Packet {
            frame: FrameBuf::new(meta.ts_ns, LinkType::Ethernet, data),
            dir: meta.dir,
            flow: meta.flow,
        })
    }
}
