//! Replaying a capture: the feeder that splits it into the consumer side and the backend side,
//! the backend emulation that addresses the server's packets, and the taps that write what each
//! side saw.

use std::collections::VecDeque;

// hashbrown's default hasher (foldhash) is several times faster than std's SipHash; these maps
// are keyed by addresses from the input, and a replay is not a service an attacker can slow down.
use hashbrown::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use plsim_pcap::{Reader, Writer};
use plsim_wire::{
    Connection, DropReason, FlowTuple, LinkType, SimTime, TcpFlags, checksum, classify,
};

use plsim_engine::{BackendSide, Batch, Dir, Feeder, Fill, Meta, Taps};

use crate::Event;

/// What was read from the capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputStats {
    /// Packets read.
    pub packets: u64,
    /// Captured bytes read.
    pub bytes: u64,
    /// TCP packets whose checksums were wrong in the capture and were put right on entry.
    pub checksums_repaired: u64,
    /// Connections whose consumer-side tuple (client end, private endpoint, server port) stood
    /// for another server address before: the path can't tell them apart (see the README).
    pub tuple_collisions: u64,
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

/// Frames held in memory (a generated capture) as a packet source, on one link type.
pub struct FrameSource<'a> {
    frames: std::slice::Iter<'a, plsim_traffic::captures::Frame>,
    link: LinkType,
}

impl<'a> FrameSource<'a> {
    /// The frames in order, all on `link`.
    pub fn new(frames: &'a [plsim_traffic::captures::Frame], link: LinkType) -> Self {
        FrameSource {
            frames: frames.iter(),
            link,
        }
    }
}

impl PacketSource for FrameSource<'_> {
    fn next_packet(&mut self) -> Option<(u64, LinkType, &[u8], usize)> {
        let f = self.frames.next()?;
        Some((f.ts_ns, self.link, &f.data, f.wire_len))
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

/// Feeds a capture (or a workload) into the engine: the client's packets enter at the consumer
/// side, addressed to the private endpoint instead of the server; the server's packets enter at
/// the backend side (the backend emulation addresses them). Simulated time is the capture's
/// time, made monotonic; scenario events are interleaved at their times (counted from the first
/// packet), and those after the last packet follow it, each at its own instant.
///
/// # Who is the client
///
/// The sender of a SYN (without ACK) is the client; the receiver of a SYN-ACK, when the SYN is
/// not in the capture. A connection whose handshake the capture does not show (it was open
/// before the capture started) is judged by its ports, as a person reading the capture would:
/// the side on a well-known port (below 1024) when only one is, else the side on the lower
/// port, is the server; with equal ports, the first sender is the client.
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
    /// The client end of each connection.
    clients: HashMap<Connection, (Ipv4Addr, u16)>,
    /// The server address last seen behind each consumer-side tuple (client end, server port):
    /// every server address maps to the one private endpoint, so two servers reached from one
    /// client port become one tuple.
    mapped: HashMap<(Ipv4Addr, u16, u16), Ipv4Addr>,
    seq: u64,
    first_ns: Option<u64>,
    last: SimTime,
    input: InputStats,
}

/// The server side of a connection whose handshake is not in the capture, by its ports: `true`
/// when `a` is the server's port, `false` when `b` is, `None` when the ports can't tell.
fn server_port_is_a(a: u16, b: u16) -> Option<bool> {
    match (a < 1024, b < 1024) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ if a != b => Some(a < b),
        _ => None,
    }
}

impl<'r, S: PacketSource> CaptureFeeder<'r, S> {
    /// A feeder of `reader` where every server address maps to the private endpoint `endpoint`
    /// in consumer VNet `vnet`; `events` are applied at their times, counted from the first
    /// packet, in order, including those after the last packet.
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
                mapped: HashMap::new(),
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

    /// Simulated time of the first packet: its capture time (zero without packets).
    pub fn first(&self) -> SimTime {
        SimTime::from_nanos(self.st.first_ns.unwrap_or(0))
    }
}

impl FeedState {
    /// The instant a timeline event at `at` (counted from the first packet, at `first_ns`)
    /// happens: never before what came already.
    fn due(&self, at: SimTime, first_ns: u64) -> SimTime {
        (SimTime::from_nanos(first_ns) + at.saturating_since(SimTime::ZERO)).max(self.last)
    }

    /// The simulated time of a capture timestamp: the timestamp, never going back.
    fn time(&self, ts_ns: u64) -> SimTime {
        SimTime::from_nanos(ts_ns).max(self.last)
    }

    /// The client end of the connection of a packet `t` with TCP flags `flags`.
    fn client(&mut self, t: FlowTuple, flags: u8, syn: bool) -> (Ipv4Addr, u16) {
        let from = (t.src, t.sport);
        let to = (t.dst, t.dport);
        let key = t.connection();
        if syn {
            self.clients.insert(key, from);
            self.note_mapping(from, to);
            return from;
        }
        if let Some(&c) = self.clients.get(&key) {
            return c;
        }
        let c = if flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN | TcpFlags::ACK {
            // A SYN-ACK without its SYN: its receiver is the client.
            to
        } else {
            match server_port_is_a(t.sport, t.dport) {
                Some(true) => to,
                Some(false) | None => from,
            }
        };
        self.clients.insert(key, c);
        let server = if c == from { to } else { from };
        self.note_mapping(c, server);
        c
    }

    /// Notes that client end `c` reaches `server`; counts a tuple collision when the same
    /// consumer-side tuple stood for another server address before.
    fn note_mapping(&mut self, c: (Ipv4Addr, u16), server: (Ipv4Addr, u16)) {
        let key = (c.0, c.1, server.1);
        match self.mapped.insert(key, server.0) {
            Some(before) if before != server.0 => self.input.tuple_collisions += 1,
            _ => {}
        }
    }

    fn place(
        &mut self,
        ts_ns: u64,
        link: LinkType,
        data: &[u8],
        wire_len: usize,
        batch: &mut Batch,
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
                batch.push(data, meta);
                return;
            }
        };
        let t = view.tuple();
        meta.orig = t;
        let client = self.client(t, view.flags(), view.is_syn());
        let forward = client == (t.src, t.sport);
        batch.push(
            data,
            Meta {
                view: Some(view),
                dir: if forward { Dir::Forward } else { Dir::Return },
                ..meta
            },
        );
        let (frame, m) = batch.last_mut().expect("just pushed");
        let v = m.view.as_mut().expect("a TCP packet");
        // Captures taken where the NIC computes checksums (offload) carry wrong ones on the
        // capturing host's own packets; put them right, so what comes out is valid.
        if !checksum::verify(frame, v).ok() {
            checksum::fill(frame, v);
            self.input.checksums_repaired += 1;
        }
        if forward {
            // The consumer addresses the private endpoint, not the server.
            v.set_destination(frame, self.endpoint, t.dport);
        }
    }
}

impl<S: PacketSource> Feeder<Event> for CaptureFeeder<'_, S> {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        if let Some((ts, link, data, wire)) = self.stash.take() {
            // An event stood before this packet; it has been applied now.
            self.st.place(ts, link, &data, wire, batch);
        }
        while !self.done && batch.len() < max {
            let Some((ts_ns, link, data, wire_len)) = self.reader.next_packet() else {
                self.done = true;
                break;
            };
            if let Some(&(at, _)) = self.events.front() {
                // Events count from the first packet, which this one may be.
                let first = self.st.first_ns.unwrap_or(ts_ns);
                let due = self.st.due(at, first);
                if due <= self.st.time(ts_ns) {
                    // Keep the packet for after the event (rare: a copy is fine).
                    self.stash = Some((ts_ns, link, data.to_vec(), wire_len));
                    let (_, ev) = self.events.pop_front().expect("an event is due");
                    return Fill::Event(ev, due);
                }
            }
            self.st.place(ts_ns, link, data, wire_len, batch);
        }
        if !self.done {
            return Fill::More;
        }
        // The input is over: the events still to come happen at their instants.
        match self.events.pop_front() {
            Some((at, ev)) => {
                let due = self.st.due(at, self.st.first_ns.unwrap_or(0));
                self.st.last = due;
                Fill::Event(ev, due)
            }
            None => Fill::Done,
        }
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
/// timestamps, the link type of the capture's first packet), in a directory or in memory.
/// Frames of another link type (a pcapng capture with several) are left out and counted.
pub struct PcapTaps<W: Write> {
    open: Box<Open<W>>,
    files: Option<Files<W>>,
    skipped: u64,
    error: Option<io::Error>,
}

/// How a capture is opened, by its file name.
type Open<W> = dyn FnMut(&str) -> io::Result<W> + Send;

/// The link type of both files, the consumer's and the backend's.
type Files<W> = (LinkType, Writer<W>, Writer<W>);

/// What [`PcapTaps::finish`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Packets in `consumer.pcap`.
    pub consumer: u64,
    /// Packets in `backend.pcap`.
    pub backend: u64,
    /// Frames left out for their link type.
    pub skipped: u64,
}

impl PcapTaps<BufWriter<File>> {
    /// Taps that write `consumer.pcap` and `backend.pcap` into `dir` (which must exist) once
    /// the first packet shows the link type.
    pub fn in_dir(dir: &Path) -> Self {
        let dir: PathBuf = dir.to_path_buf();
        PcapTaps::new(move |name| {
            let path = dir.join(name);
            let f = File::create(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Ok(BufWriter::with_capacity(1 << 20, f))
        })
    }
}

impl PcapTaps<Vec<u8>> {
    /// Taps that keep both captures in memory.
    pub fn in_memory() -> Self {
        PcapTaps::new(|_| Ok(Vec::new()))
    }
}

impl<W: Write> PcapTaps<W> {
    /// Taps that open each capture (`consumer.pcap`, `backend.pcap`) with `open`.
    pub fn new(open: impl FnMut(&str) -> io::Result<W> + Send + 'static) -> Self {
        PcapTaps {
            open: Box::new(open),
            files: None,
            skipped: 0,
            error: None,
        }
    }

    fn open(&mut self, link: LinkType) -> io::Result<Files<W>> {
        let c = Writer::new((self.open)("consumer.pcap")?, link, 262_144)?;
        let b = Writer::new((self.open)("backend.pcap")?, link, 262_144)?;
        Ok((link, c, b))
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

    /// Flushes both captures (creating empty ones if nothing was written) and hands them back
    /// (consumer, backend); the first error, if any.
    pub fn finish(mut self) -> io::Result<(Written, W, W)> {
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
        Ok((written, c.finish()?, b.finish()?))
    }
}

impl<W: Write + Send> Taps for PcapTaps<W> {
    fn consumer(&mut self, frame: &[u8], meta: &Meta) {
        self.write(true, frame, meta);
    }
    fn backend(&mut self, frame: &[u8], meta: &Meta) {
        self.write(false, frame, meta);
    }
}

#[cfg(test)]
mod tests {
    use super::server_port_is_a;

    #[test]
    fn the_server_of_a_connection_without_handshake_is_told_by_its_ports() {
        // A well-known port against an ephemeral one: the well-known side serves.
        assert_eq!(server_port_is_a(443, 50_000), Some(true));
        assert_eq!(server_port_is_a(50_000, 22), Some(false));
        // Both high, or both low: the lower port serves.
        assert_eq!(server_port_is_a(8080, 50_001), Some(true));
        assert_eq!(server_port_is_a(50_001, 8080), Some(false));
        assert_eq!(server_port_is_a(80, 443), Some(true));
        assert_eq!(server_port_is_a(1023, 1024), Some(true));
        // Equal ports can't tell.
        assert_eq!(server_port_is_a(5000, 5000), None);
    }
}
