//! Replaying a capture: the feeder that splits it into the consumer side and the backend side,
//! the backend emulation that addresses the server's packets, and the taps that write what each
//! side saw.

use std::collections::VecDeque;

// hashbrown's default hasher (foldhash) is several times faster than std's SipHash; these maps
// are keyed by addresses from the input, and a replay is not a service an attacker can slow down.
use hashbrown::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use plsim_pcap::{Reader, Writer};
use plsim_wire::{
    Connection, DropReason, FlowTuple, LinkType, SimTime, TcpFlags, checksum, classify,
};

use plsim_engine::{BackendSide, Batch, Dir, Feeder, Fill, Meta, Taps};

use crate::Event;
use crate::path::Route;

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

/// One packet of a source.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Capture time, ns.
    pub ts_ns: u64,
    /// The link layer.
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The length on the wire.
    pub wire_len: usize,
    /// The endpoint (an index of [`Path::routes`](crate::path::Path::routes)) whose consumers
    /// sent it, when the source knows (a workload does; a capture doesn't: the scenario's
    /// traffic tables say).
    pub endpoint: Option<usize>,
}

/// Where a feeder's packets come from: a capture, or a synthetic workload.
pub trait PacketSource {
    /// The next packet, in time order.
    fn next_packet(&mut self) -> Option<Packet<'_>>;
}

impl PacketSource for Reader {
    fn next_packet(&mut self) -> Option<Packet<'_>> {
        Reader::next_packet(self).map(|p| Packet {
            ts_ns: p.ts_ns,
            link: p.link,
            data: p.data,
            wire_len: p.wire_len,
            endpoint: None,
        })
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
    fn next_packet(&mut self) -> Option<Packet<'_>> {
        let f = self.frames.next()?;
        Some(Packet {
            ts_ns: f.ts_ns,
            link: self.link,
            data: &f.data,
            wire_len: f.wire_len,
            endpoint: None,
        })
    }
}

/// Feeds a capture (or a workload) into the engine: the client's packets enter at the consumer
/// side, addressed to their private endpoint instead of the server; the server's packets enter
/// at the backend side (the backend emulation addresses them). Simulated time is the capture's
/// time, made monotonic; scenario events are interleaved at their times (counted from the first
/// packet), and those after the last packet follow it, each at its own instant.
///
/// # Who is the client
///
/// The sender of a SYN (without ACK) is the client, unless it is one of the provider's
/// addresses (a backend or a NAT IP): the provider can't open a connection, so its SYN enters at
/// the backend side (and is dropped there as `no_flow`). When the SYN is not in the capture, the
/// receiver of a SYN-ACK is the client. A connection whose handshake the capture does not show
/// (it was open before the capture started) is judged by its ports, as a person reading the
/// capture would: the side on a well-known port (below 1024) when only one is, else the side on
/// the lower port, is the server; with equal ports, the first sender is the client.
///
/// # Whose traffic
///
/// A connection belongs to the endpoint the source names (a workload), or else to the first
/// endpoint, in file order, whose traffic table matches it (its frame's outer VLAN id, its
/// client, its server), or else to the first endpoint without a table; when no endpoint has a
/// table, every connection is the first endpoint's. A connection no endpoint takes is dropped
/// as `no_endpoint`. Connections are told apart by VLAN and endpoint too, so two consumers with
/// the very same addresses on two VLANs never mix.
pub struct CaptureFeeder<'r, S: PacketSource = Reader> {
    reader: &'r mut S,
    st: FeedState,
    events: VecDeque<(SimTime, Event)>,
    stash: Option<Stashed>,
    done: bool,
    /// Asked to stop early: checked before each batch.
    stop: Option<crate::stop::Stop>,
    /// It stopped early: no more input was read, and the events still to come were not applied.
    interrupted: bool,
}

/// A packet kept across an event.
struct Stashed {
    ts_ns: u64,
    link: LinkType,
    data: Vec<u8>,
    wire_len: usize,
    endpoint: Option<usize>,
}

/// A connection as the feeder tells them apart: the VLAN it was seen on, the endpoint a source
/// named, its two ends.
type ConnKey = (Option<u16>, Option<usize>, Connection);

/// A consumer-side tuple of an endpoint: (endpoint, client address, client port, server port).
type MappedKey = (u32, Ipv4Addr, u16, u16);

/// What the feeder knows of a connection: its client end and its endpoint.
#[derive(Clone, Copy, Debug)]
struct Conn {
    client: (Ipv4Addr, u16),
    route: Option<u32>,
}

struct FeedState {
    routes: Vec<Route>,
    /// Some endpoint has a traffic table.
    tables: bool,
    /// The provider's addresses, sorted.
    provider: Vec<Ipv4Addr>,
    /// Each connection, with the time of its last packet (ns).
    conns: HashMap<ConnKey, (Conn, u64)>,
    /// The server address last seen behind each consumer-side tuple (endpoint, client end,
    /// server port): the server addresses of one endpoint all map to its address, so two
    /// servers reached from one client port become one tuple.
    mapped: HashMap<MappedKey, Ipv4Addr>,
    /// A connection idle for longer than this (ns) is forgotten (see [`CaptureFeeder`]).
    horizon_ns: u64,
    /// When to look for connections to forget next (ns).
    next_forget: u64,
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
    /// A feeder of `reader` into a path whose endpoints are `routes` and whose provider-side
    /// addresses are `provider`; `events` are applied at their times, counted from the first
    /// packet, in order, including those after the last packet.
    pub fn new(
        reader: &'r mut S,
        routes: Vec<Route>,
        provider: Vec<Ipv4Addr>,
        mut events: Vec<(SimTime, Event)>,
    ) -> Self {
        events.sort_by_key(|(t, _)| *t);
        let mut provider = provider;
        provider.sort_unstable();
        CaptureFeeder {
            reader,
            st: FeedState {
                tables: routes.iter().any(|r| r.traffic.is_some()),
                routes,
                provider,
                conns: HashMap::new(),
                mapped: HashMap::new(),
                horizon_ns: u64::MAX,
                next_forget: u64::MAX,
                seq: 0,
                first_ns: None,
                last: SimTime::ZERO,
                input: InputStats::default(),
            },
            events: events.into(),
            stash: None,
            done: false,
            stop: None,
            interrupted: false,
        }
    }

    /// Forgets a connection once it has seen no packet for longer than `horizon` (the path's
    /// longest timer): see the type's docs.
    pub fn forgetting_after(mut self, horizon: Duration) -> Self {
        self.st.horizon_ns = u64::try_from(horizon.as_nanos()).unwrap_or(u64::MAX);
        self
    }

    /// Stops reading when `stop` is requested (checked before each batch): the packets read
    /// so far go through, the rest of the input and of the timeline do not.
    pub fn stop_on(mut self, stop: Option<crate::stop::Stop>) -> Self {
        self.stop = stop;
        self
    }

    /// Whether it stopped early, on request.
    pub fn interrupted(&self) -> bool {
        self.interrupted
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

    /// The endpoint of a new connection (see the type's docs).
    fn route(
        &self,
        vlan: Option<u16>,
        named: Option<usize>,
        client: Ipv4Addr,
        server: Ipv4Addr,
    ) -> Option<u32> {
        if let Some(i) = named {
            return (i < self.routes.len()).then_some(i as u32);
        }
        if !self.tables {
            return (!self.routes.is_empty()).then_some(0);
        }
        let by_table = self.routes.iter().position(|r| {
            r.traffic
                .as_ref()
                .is_some_and(|t| t.matches(vlan, client, server))
        });
        by_table
            .or_else(|| self.routes.iter().position(|r| r.traffic.is_none()))
            .map(|i| i as u32)
    }

    /// The connection of a packet `t` with TCP flags `flags`: its client end and endpoint.
    fn conn(
        &mut self,
        vlan: Option<u16>,
        named: Option<usize>,
        t: FlowTuple,
        flags: u8,
        syn: bool,
        now: u64,
    ) -> Conn {
        let from = (t.src, t.sport);
        let to = (t.dst, t.dport);
        let key = (vlan, named, t.connection());
        let known = match self.conns.get_mut(&key) {
            Some((c, last)) => {
                *last = now;
                if !syn {
                    return *c;
                }
                Some(*c)
            }
            None => None,
        };
        let client = if syn {
            // The provider never opens a connection: its SYN is the server side's.
            if self.provider.binary_search(&t.src).is_ok() {
                to
            } else {
                from
            }
        } else if flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN | TcpFlags::ACK {
            // A SYN-ACK without its SYN: its receiver is the client.
            to
        } else {
            match server_port_is_a(t.sport, t.dport) {
                Some(true) => to,
                Some(false) | None => from,
            }
        };
        let server = if client == from { to } else { from };
        let route = match known {
            // A SYN reopening a connection keeps its endpoint.
            Some(c) if c.client == client => c.route,
            _ => self.route(vlan, named, client.0, server.0),
        };
        let c = Conn { client, route };
        self.conns.insert(key, (c, now));
        if let Some(r) = route
            && known.is_none_or(|k| k.client != client)
        {
            self.note_mapping(r, client, server);
        }
        c
    }

    /// Forgets the connections idle for longer than the horizon at `now`, and the tuples only
    /// they stood behind. Runs every quarter horizon of simulated time, so the tables hold the
    /// connections of the last horizon and a quarter at most.
    fn forget(&mut self, now: u64) {
        let h = self.horizon_ns;
        self.conns
            .retain(|_, &mut (_, last)| now.saturating_sub(last) <= h);
        let live: hashbrown::HashSet<MappedKey> = self
            .conns
            .iter()
            .filter_map(|(&(_, _, (a, b)), &(c, _))| {
                let server = if a == c.client { b } else { a };
                Some((c.route?, c.client.0, c.client.1, server.1))
            })
            .collect();
        self.mapped.retain(|k, _| live.contains(k));
        self.next_forget = now.saturating_add((h / 4).max(1));
    }

    /// Notes that client end `c` of endpoint `route` reaches `server`; counts a tuple
    /// collision when the same consumer-side tuple stood for another server address before.
    fn note_mapping(&mut self, route: u32, c: (Ipv4Addr, u16), server: (Ipv4Addr, u16)) {
        let key = (route, c.0, c.1, server.1);
        match self.mapped.insert(key, server.0) {
            Some(before) if before != server.0 => self.input.tuple_collisions += 1,
            _ => {}
        }
    }

    fn place(&mut self, p: Packet<'_>, batch: &mut Batch) {
        if self.first_ns.is_none() {
            self.first_ns = Some(p.ts_ns);
            self.last = SimTime::from_nanos(p.ts_ns);
            self.next_forget = p.ts_ns.saturating_add((self.horizon_ns / 4).max(1));
        }
        let ts = self.time(p.ts_ns);
        self.last = ts;
        self.input.packets += 1;
        self.input.bytes += p.data.len() as u64;
        let seq = self.seq;
        self.seq += 1;
        let mut meta = Meta {
            seq,
            ts,
            wire_len: p.wire_len as u32,
            linktype: p.link,
            view: None,
            link: Default::default(),
            vnet: 0,
            orig: FlowTuple {
                src: Ipv4Addr::UNSPECIFIED,
                sport: 0,
                dst: Ipv4Addr::UNSPECIFIED,
                dport: 0,
            },
            dir: Dir::Forward,
            drop: None,
            own: None,
            stream_start: None,
        };
        let view = match classify(p.link, p.data, p.wire_len) {
            Ok(v) => v,
            Err(r) => {
                // Not IPv4 TCP: the consumer side sent it, the first stage drops it.
                meta.drop = Some(r);
                batch.push(p.data, meta);
                return;
            }
        };
        let t = view.tuple();
        meta.orig = t;
        let vlan = plsim_wire::vlan(p.link, p.data);
        let now = ts.as_nanos();
        if now >= self.next_forget {
            self.forget(now);
        }
        let conn = self.conn(vlan, p.endpoint, t, view.flags(), view.is_syn(), now);
        let forward = conn.client == (t.src, t.sport);
        let route = conn.route.map(|r| &self.routes[r as usize]);
        batch.push(
            p.data,
            Meta {
                view: Some(view),
                dir: if forward { Dir::Forward } else { Dir::Return },
                vnet: route.map_or(0, |r| r.vnet),
                drop: route.is_none().then_some(DropReason::NoEndpoint),
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
        if forward && let Some(r) = route {
            // The consumer addresses its private endpoint, not the server.
            v.set_destination(frame, r.address, t.dport);
        }
    }
}

impl<S: PacketSource> Feeder<Event> for CaptureFeeder<'_, S> {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        if self.interrupted || self.stop.as_ref().is_some_and(|s| s.requested()) {
            // A packet kept for after an event was read, not yet counted: it stays out.
            self.interrupted = true;
            return Fill::Done;
        }
        if let Some(p) = &self.stash {
            // Every event due by the kept packet's time goes before it, not only the first.
            if let Some(&(at, _)) = self.events.front() {
                let first = self.st.first_ns.unwrap_or(p.ts_ns);
                let due = self.st.due(at, first);
                if due <= self.st.time(p.ts_ns) {
                    let (_, ev) = self.events.pop_front().expect("an event is due");
                    return Fill::Event(ev, due);
                }
            }
        }
        if let Some(p) = self.stash.take() {
            // The events that stood before this packet have been applied now.
            let packet = Packet {
                ts_ns: p.ts_ns,
                link: p.link,
                data: &p.data,
                wire_len: p.wire_len,
                endpoint: p.endpoint,
            };
            self.st.place(packet, batch);
        }
        while !self.done && batch.len() < max {
            let Some(p) = self.reader.next_packet() else {
                self.done = true;
                break;
            };
            if let Some(&(at, _)) = self.events.front() {
                // Events count from the first packet, which this one may be.
                let first = self.st.first_ns.unwrap_or(p.ts_ns);
                let due = self.st.due(at, first);
                if due <= self.st.time(p.ts_ns) {
                    // Keep the packet for after the event (rare: a copy is fine).
                    self.stash = Some(Stashed {
                        ts_ns: p.ts_ns,
                        link: p.link,
                        data: p.data.to_vec(),
                        wire_len: p.wire_len,
                        endpoint: p.endpoint,
                    });
                    let (_, ev) = self.events.pop_front().expect("an event is due");
                    return Fill::Event(ev, due);
                }
            }
            self.st.place(p, batch);
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
pub struct BackendEmulation {
    /// The capture's client-to-server tuple -> its ends.
    ends: HashMap<(u32, FlowTuple), Ends>,
    /// Flows may open mid-stream: learn from any packet, not only from SYNs.
    pickup: bool,
    /// Forget a flow once it has sent its one packet (the bench's backends: a SYN-ACK each).
    once: bool,
    /// Forget a flow that saw no packet for longer than this (ns); `u64::MAX`: never.
    horizon_ns: u64,
    /// When to look for flows to forget next (ns).
    next_forget: u64,
    /// Flows whose backend-side stream starts with a PROXY protocol header, by their backend
    /// side (NAT end, backend end), as the SNAT stage said on their last forward packet: where
    /// the header starts, and when that packet went. Empty unless some service sends headers.
    headers: HashMap<(SocketAddrV4, SocketAddrV4), (u32, u64)>,
}

impl Default for BackendEmulation {
    /// Learns from SYNs, forgets nothing.
    fn default() -> BackendEmulation {
        BackendEmulation::new(false)
    }
}

/// Where a flow's server packets come from and go to, and when it last saw a packet.
#[derive(Clone, Copy, Debug)]
struct Ends {
    backend: (Ipv4Addr, u16),
    nat: (Ipv4Addr, u16),
    last: u64,
}

impl BackendEmulation {
    /// A backend side that learns a flow from its SYN, or, with `pickup`, from its first packet
    /// that reaches a backend.
    pub fn new(pickup: bool) -> BackendEmulation {
        BackendEmulation {
            ends: HashMap::new(),
            pickup,
            once: false,
            horizon_ns: u64::MAX,
            next_forget: u64::MAX,
            headers: HashMap::new(),
        }
    }

    /// Forgets a flow once it has seen no packet either way for longer than `horizon` (the
    /// path's longest timer: no stage holds anything of it then, and its server packets would
    /// find no flow anyway). Keeps the table to the flows of the last horizon and a quarter.
    pub fn forgetting_after(mut self, horizon: Duration) -> Self {
        self.horizon_ns = u64::try_from(horizon.as_nanos()).unwrap_or(u64::MAX);
        self.next_forget = 0;
        self
    }

    /// Forgets, at `now`, the flows idle for longer than the horizon, when it is time to.
    #[inline]
    fn forget(&mut self, now: u64) {
        if now < self.next_forget {
            return;
        }
        if self.next_forget > 0 {
            let h = self.horizon_ns;
            self.ends.retain(|_, e| now.saturating_sub(e.last) <= h);
            self.headers
                .retain(|_, &mut (_, last)| now.saturating_sub(last) <= h);
        }
        self.next_forget = now.saturating_add((self.horizon_ns / 4).max(1));
    }

    /// Backends that send one packet per flow (learnt from its SYN) and then forget it, so
    /// they hold only the flows still to be answered.
    pub fn answering_once() -> BackendEmulation {
        BackendEmulation {
            once: true,
            ..BackendEmulation::new(false)
        }
    }
}

impl BackendSide for BackendEmulation {
    fn delivered(&mut self, _frame: &[u8], meta: &Meta) {
        let Some(v) = meta.view else { return };
        let t = v.tuple();
        let now = meta.ts.as_nanos();
        self.forget(now);
        // A SYN (re)opens the connection. Without pickup, no other packet reaches a backend
        // before its flow's SYN did; without forgetting, only SYNs cost a hash here.
        let ends = Ends {
            backend: (t.dst, t.dport),
            nat: (t.src, t.sport),
            last: now,
        };
        // The SNAT stage's word on the flow's PROXY protocol header, on every forward packet
        // of a service that sends them (the flow may be a new one on the same ports).
        let flow = (
            SocketAddrV4::new(t.src, t.sport),
            SocketAddrV4::new(t.dst, t.dport),
        );
        match meta.stream_start {
            Some(start) => {
                self.headers.insert(flow, (start, now));
            }
            None if !self.headers.is_empty() => {
                self.headers.remove(&flow);
            }
            None => {}
        }
        let key = (meta.vnet, meta.orig);
        if v.is_syn() {
            self.ends.insert(key, ends);
        } else if self.pickup {
            self.ends.entry(key).or_insert(ends).last = now;
        } else if self.horizon_ns != u64::MAX
            && let Some(e) = self.ends.get_mut(&key)
        {
            e.last = now;
        }
    }

    fn enter(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let now = meta.ts.as_nanos();
        self.forget(now);
        let key = (meta.vnet, meta.orig.reversed());
        let found = if self.once {
            self.ends.remove(&key)
        } else {
            self.ends.get_mut(&key).map(|e| {
                e.last = now;
                *e
            })
        };
        let Some(Ends {
            backend: (b, bp),
            nat: (n, np),
            ..
        }) = found
        else {
            return Err(DropReason::NoFlow);
        };
        let v = meta.view.as_mut().ok_or(DropReason::NoFlow)?;
        v.set_source(frame, b, bp);
        v.set_destination(frame, n, np);
        // A backend that received a PROXY protocol header acknowledges it; the capture's
        // server never saw one, so its acknowledgements (and SACK edges) past the header's
        // start move up by its length, as the SNAT stage moves them back down.
        if !self.headers.is_empty()
            && v.has(plsim_wire::TcpFlags::ACK)
            && let Some(&(start, _)) = self
                .headers
                .get(&(SocketAddrV4::new(n, np), SocketAddrV4::new(b, bp)))
        {
            let len = plsim_snat::proxy::HEADER_LEN as u32;
            let cover = |a: u32| {
                if a.wrapping_sub(start) as i32 >= 0 {
                    a.wrapping_add(len)
                } else {
                    a
                }
            };
            v.set_ack(frame, cover(v.ack(frame)));
            v.map_sack(frame, cover);
        }
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
    /// The first error, with the name of the capture it hit.
    error: Option<(&'static str, io::Error)>,
    /// With [`PcapTaps::in_dir`], the directory.
    dir: Option<PathBuf>,
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
    /// the first packet shows the link type. Until [`finish_in_dir`](Self::finish_in_dir) they
    /// are `consumer.partial.pcap` and `backend.partial.pcap`: a run cut short leaves nothing
    /// that looks finished.
    pub fn in_dir(dir: &Path) -> Self {
        let at: PathBuf = dir.to_path_buf();
        let mut taps = PcapTaps::new(move |name| {
            let f = File::create(crate::files::partial(&at.join(name)))?;
            Ok(BufWriter::with_capacity(1 << 20, f))
        });
        taps.dir = Some(dir.to_path_buf());
        taps
    }

    /// Flushes both captures and gives them their names (`consumer.pcap`, `backend.pcap`).
    /// On an error, names the capture it hit and removes both partial files (nothing half
    /// written is left behind).
    pub fn finish_in_dir(self) -> crate::Result<Written> {
        let dir = self.dir.clone().expect("taps made by in_dir");
        let partials = CAPTURES.map(|name| crate::files::partial(&dir.join(name)));
        let error = |name: &str, e: io::Error| {
            for p in &partials {
                let _ = std::fs::remove_file(p);
            }
            crate::Error::io(&dir.join(name), &e)
        };
        let (written, c, b) = self.finish_named().map_err(|(name, e)| error(name, e))?;
        for (name, w) in CAPTURES.into_iter().zip([c, b]) {
            w.into_inner().map_err(|e| error(name, e.into_error()))?;
        }
        for (name, p) in CAPTURES.into_iter().zip(&partials) {
            std::fs::rename(p, dir.join(name)).map_err(|e| error(name, e))?;
        }
        Ok(written)
    }
}

/// The two captures the taps write.
const CAPTURES: [&str; 2] = ["consumer.pcap", "backend.pcap"];

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
            dir: None,
        }
    }

    fn open(&mut self, link: LinkType) -> Result<Files<W>, (&'static str, io::Error)> {
        let [cn, bn] = CAPTURES;
        let c = (self.open)(cn)
            .and_then(|w| Writer::new(w, link, 262_144))
            .map_err(|e| (cn, e))?;
        let b = (self.open)(bn)
            .and_then(|w| Writer::new(w, link, 262_144))
            .map_err(|e| (bn, e))?;
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
        let (w, name) = if consumer {
            (c, CAPTURES[0])
        } else {
            (b, CAPTURES[1])
        };
        if let Err(e) = w.write(meta.ts.as_nanos(), frame, meta.wire_len as usize) {
            self.error = Some((name, e));
        }
    }

    /// Flushes both captures (creating empty ones if nothing was written) and hands them back
    /// (consumer, backend); the first error, if any, with the capture it hit.
    pub fn finish(self) -> io::Result<(Written, W, W)> {
        self.finish_named()
            .map_err(|(name, e)| io::Error::new(e.kind(), format!("{name}: {e}")))
    }

    fn finish_named(mut self) -> Result<(Written, W, W), (&'static str, io::Error)> {
        if let Some(e) = self.error.take() {
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
        let [cn, bn] = CAPTURES;
        let c = c.finish().map_err(|e| (cn, e))?;
        let b = b.finish().map_err(|e| (bn, e))?;
        Ok((written, c, b))
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
