//! Replaying a capture: the feeder that splits it into the consumer side and the backend side,
//! the backend emulation that addresses the server's packets, and the taps that write what each
//! side saw.

use std::collections::VecDeque;

// hashbrown's default hasher (foldhash) is several times faster than std's SipHash; these maps
// are keyed by addresses from the input, and a replay is not a service an attacker can slow down.
use hashbrown::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use plsim_pcap::{Reader, Writer};
use plsim_wire::{DropReason, FlowTuple, LinkType, SimTime, TcpFlags, checksum, classify};

use crate::{BackendSide, Batch, Dir, Event, Feeder, Fill, Meta, Taps};

/// Who opened a connection: the SYN's sender is the client. Keyed by both ends, lower first.
type Conn = ((Ipv4Addr, u16), (Ipv4Addr, u16));

/// What was read from the capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputStats {
    /// Packets read.
    pub packets: u64,
    /// Captured bytes read.
    pub bytes: u64,
    /// TCP packets whose checksums were wrong in the capture and were put right on entry.
    pub checksums_repaired: u64,
}

/// Where a feeder's packets come from: a capture, or a synthetic workload.
pub trait PacketSource {
    /// The next packet: capture time (ns), link type, bytes, length on the wire.
    fn next_packet(&mut self) -> Option<(u64, LinkType, &[u8], usize)>;
}

impl PacketSource for Reader {
    fn next_packet(&mut self) -> Option<(u64, LinkType, &[u8], usize)> {
        Reader::next_packet(self).map(|p| (p.ts_ns, p.link, p.data, p.wire_len))
    }
}

/// A synthetic workload as a packet source.
pub struct WorkloadSource {
    workload: plsim_traffic::workload::Workload,
    buf: Vec<u8>,
}

impl WorkloadSource {
    /// The workload's packets, in time order.
    pub fn new(workload: plsim_traffic::workload::Workload) -> WorkloadSource {
        WorkloadSource {
            workload,
            buf: Vec::with_capacity(2048),
        }
    }
    /// The workload (for its counts).
    pub fn workload(&self) -> &plsim_traffic::workload::Workload {
        &self.workload
    }
}

impl PacketSource for WorkloadSource {
    fn next_packet(&mut self) -> Option<(u64, LinkType, &[u8], usize)> {
        let m = self.workload.next_into(&mut self.buf)?;
        Some((m.ts_ns, LinkType::Ethernet, &self.buf, self.buf.len()))
    }
}

/// Feeds a capture (or a workload) into the pipeline: the client's packets enter at the consumer
/// side, addressed to the private endpoint instead of the server; the server's packets enter at
/// the backend side (the backend emulation addresses them). Simulated time is the capture's time,
/// made monotonic; scenario events are interleaved at their times (counted from the first
/// packet).
pub struct CaptureFeeder<'r, S: PacketSource = Reader> {
    reader: &'r mut S,
    st: FeedState,
    events: VecDeque<(SimTime, Event)>,
    stash: Option<(u64, LinkType, Vec<u8>, usize)>,
    done: bool,
}

struct FeedState {
    endpoint: Ipv4Addr,
    vnet: u32,
    clients: HashMap<Conn, (Ipv4Addr, u16)>,
    seq: u64,
    first_ns: Option<u64>,
    last: SimTime,
    input: InputStats,
}

impl<'r, S: PacketSource> CaptureFeeder<'r, S> {
    /// A feeder of `reader` where every server address maps to the private endpoint `endpoint`
    /// in consumer VNet `vnet`; `events` are applied at their times, counted from the first
    /// packet, in order. Events after the last packet are not applied.
    pub fn new(
        reader: &'r mut S,
        endpoint: Ipv4Addr,
        vnet: u32,
        mut events: Vec<(SimTime, Event)>,
    ) -> Self {
        events.sort_by_key(|(t, _)| *t);
        CaptureFeeder {
            reader,
            st: FeedState {
                endpoint,
                vnet,
                clients: HashMap::new(),
                seq: 0,
                first_ns: None,
                last: SimTime::ZERO,
                input: InputStats::default(),
            },
            events: events.into(),
            stash: None,
            done: false,
        }
    }

    /// What was read so far.
    pub fn input(&self) -> InputStats {
        self.st.input
    }

    /// Simulated time of the first packet: its capture time.
    pub fn first(&self) -> SimTime {
        SimTime::from_nanos(self.st.first_ns.unwrap_or(0))
    }

    /// Simulated time of the last packet (capture times, made monotonic).
    pub fn last(&self) -> SimTime {
        self.st.last
    }
}

impl FeedState {
    /// The simulated time of a capture timestamp: the timestamp, never going back.
    fn time(&self, ts_ns: u64) -> SimTime {
        SimTime::from_nanos(ts_ns).max(self.last)
    }

    fn place(
        &mut self,
        ts_ns: u64,
        link: LinkType,
        data: &[u8],
        wire_len: usize,
        fwd: &mut Batch,
        srv: &mut Batch,
    ) {
        if self.first_ns.is_none() {
            self.first_ns = Some(ts_ns);
            self.last = SimTime::from_nanos(ts_ns);
        }
        let ts = self.time(ts_ns);
        self.last = ts;
        self.input.packets += 1;
        self.input.bytes += data.len() as u64;
        let seq = self.seq;
        self.seq += 1;
        let mut meta = Meta {
            seq,
            ts,
            wire_len: wire_len as u32,
            linktype: link,
            view: None,
            link: Default::default(),
            vnet: self.vnet,
            orig: FlowTuple {
                src: Ipv4Addr::UNSPECIFIED,
                sport: 0,
                dst: Ipv4Addr::UNSPECIFIED,
                dport: 0,
            },
            dir: Dir::Forward,
            drop: None,
        };
        let view = match classify(link, data, wire_len) {
            Ok(v) => v,
            Err(r) => {
                // Not IPv4 TCP: the consumer side sent it, the first stage drops it.
                meta.drop = Some(r);
                fwd.push(data, meta);
                return;
            }
        };
        let t = view.tuple();
        meta.orig = t;
        let key = t.connection();
        let flags = view.flags();
        let from = (t.src, t.sport);
        let client = if view.is_syn() {
            self.clients.insert(key, from);
            from
        } else if let Some(&c) = self.clients.get(&key) {
            c
        } else if flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN | TcpFlags::ACK {
            // A SYN-ACK without its SYN: its receiver is the client.
            let c = (t.dst, t.dport);
            self.clients.insert(key, c);
            c
        } else {
            // Mid-stream: the first sender seen is taken as the client.
            self.clients.insert(key, from);
            from
        };
        let batch = if client == from {
            fwd.push(
                data,
                Meta {
                    view: Some(view),
                    ..meta
                },
            );
            fwd
        } else {
            srv.push(
                data,
                Meta {
                    view: Some(view),
                    dir: Dir::Return,
                    ..meta
                },
            );
            srv
        };
        let (frame, m) = batch.last_mut().expect("just pushed");
        let v = m.view.as_mut().expect("a TCP packet");
        // Captures taken where the NIC computes checksums (offload) carry wrong ones on the
        // capturing host's own packets; put them right, so what comes out is valid.
        if !checksum::verify(frame, v).ok() {
            checksum::fill(frame, v);
            self.input.checksums_repaired += 1;
        }
        if client == from {
            // The consumer addresses the private endpoint, not the server.
            v.set_destination(frame, self.endpoint, t.dport);
        }
    }
}

impl<S: PacketSource> Feeder for CaptureFeeder<'_, S> {
    fn fill(&mut self, fwd: &mut Batch, srv: &mut Batch, max: usize) -> Fill {
        if let Some((ts, link, data, wire)) = self.stash.take() {
            // An event stood before this packet; it has been applied now.
            self.st.place(ts, link, &data, wire, fwd, srv);
        }
        if self.done {
            return Fill::Done;
        }
        while fwd.len() + srv.len() < max {
            let Some((ts_ns, link, data, wire_len)) = self.reader.next_packet() else {
                self.done = true;
                return Fill::Done;
            };
            if let Some(&(at, _)) = self.events.front() {
                // Events count from the first packet, which this one may be.
                let first = SimTime::from_nanos(self.st.first_ns.unwrap_or(ts_ns));
                let due = first + at.saturating_since(SimTime::ZERO);
                if due <= self.st.time(ts_ns) {
                    // Keep the packet for after the event (rare: a copy is fine).
                    self.stash = Some((ts_ns, link, data.to_vec(), wire_len));
                    let (_, ev) = self.events.pop_front().expect("an event is due");
                    return Fill::Event(ev, due.max(self.st.last));
                }
            }
            self.st.place(ts_ns, link, data, wire_len, fwd, srv);
        }
        Fill::More
    }
}

/// The backends of a replay: each forward packet that reaches a backend teaches it the flow's
/// backend end and NAT end; each server packet of the capture is sent from that backend end to
/// that NAT end. A server packet of a flow that never reached a backend can't be sent: `no_flow`.
#[derive(Default)]
pub struct BackendEmulation {
    /// The capture's client-to-server tuple -> (backend IP:port, NAT IP:port).
    ends: HashMap<FlowTuple, (Ipv4Addr, u16, Ipv4Addr, u16)>,
    /// Flows may open mid-stream: learn from any packet, not only from SYNs.
    pickup: bool,
}

impl BackendEmulation {
    /// A backend side that learns a flow from its SYN, or, with `pickup`, from its first packet
    /// that reaches a backend.
    pub fn new(pickup: bool) -> BackendEmulation {
        BackendEmulation {
            ends: HashMap::new(),
            pickup,
        }
    }
}

impl BackendSide for BackendEmulation {
    fn delivered(&mut self, _frame: &[u8], meta: &Meta) {
        let Some(v) = meta.view else { return };
        let t = v.tuple();
        // A SYN (re)opens the connection. Without pickup, no other packet reaches a backend
        // before its flow's SYN did, so only SYNs cost a hash here.
        let ends = (t.dst, t.dport, t.src, t.sport);
        if v.is_syn() {
            self.ends.insert(meta.orig, ends);
        } else if self.pickup {
            self.ends.entry(meta.orig).or_insert(ends);
        }
    }

    fn enter(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let Some(&(b, bp, n, np)) = self.ends.get(&meta.orig.reversed()) else {
            return Err(DropReason::NoFlow);
        };
        let v = meta.view.as_mut().ok_or(DropReason::NoFlow)?;
        v.set_source(frame, b, bp);
        v.set_destination(frame, n, np);
        Ok(())
    }
}

/// Writes what each side saw to `consumer.pcap` and `backend.pcap` (classic pcap, ns
/// timestamps, the link type of the capture's first packet). Frames of another link type (a
/// pcapng capture with several) are left out and counted.
pub struct PcapTaps {
    dir: PathBuf,
    files: Option<Files>,
    skipped: u64,
    error: Option<io::Error>,
}

/// The link type of both files, the consumer's and the backend's.
type Files = (LinkType, Writer<BufWriter<File>>, Writer<BufWriter<File>>);

/// What [`PcapTaps::finish`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub consumer: u64,
    pub backend: u64,
    /// Frames left out for their link type.
    pub skipped: u64,
}

impl PcapTaps {
    /// Taps that write into `dir` (which must exist) once the first packet shows the link type.
    pub fn new(dir: &Path) -> PcapTaps {
        PcapTaps {
            dir: dir.to_path_buf(),
            files: None,
            skipped: 0,
            error: None,
        }
    }

    fn open(&self, link: LinkType) -> io::Result<Files> {
        let open = |name: &str| -> io::Result<Writer<BufWriter<File>>> {
            let path = self.dir.join(name);
            let f = File::create(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Writer::new(BufWriter::new(f), link, 262_144)
        };
        Ok((link, open("consumer.pcap")?, open("backend.pcap")?))
    }

    fn write(&mut self, consumer: bool, frame: &[u8], meta: &Meta) {
        if self.error.is_some() {
            return;
        }
        if self.files.is_none() {
            match self.open(meta.linktype) {
                Ok(f) => self.files = Some(f),
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        let Some((link, c, b)) = self.files.as_mut() else {
            return;
        };
        if *link != meta.linktype {
            self.skipped += 1;
            return;
        }
        let w = if consumer { c } else { b };
        if let Err(e) = w.write(meta.ts.as_nanos(), frame, meta.wire_len as usize) {
            self.error = Some(e);
        }
    }

    /// Flushes both files (creating empty ones if nothing was written); the first error, if any.
    pub fn finish(mut self) -> io::Result<Written> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (_, c, b) = match self.files.take() {
            Some(f) => f,
            None => self.open(LinkType::Ethernet)?,
        };
        let written = Written {
            consumer: c.packets(),
            backend: b.packets(),
            skipped: self.skipped,
        };
        c.finish()?;
        b.finish()?;
        Ok(written)
    }
}

impl Taps for PcapTaps {
    fn consumer(&mut self, frame: &[u8], meta: &Meta) {
        self.write(true, frame, meta);
    }
    fn backend(&mut self, frame: &[u8], meta: &Meta) {
        self.write(false, frame, meta);
    }
}
