//! The capture feeder: a capture's client packets enter at the consumer side, its server
//! packets at the backend side, with the scenario's events at their times.

use plsim_wire::VnetId;
use std::collections::VecDeque;

// hashbrown's default hasher (foldhash) is several times faster than std's SipHash; these maps
// are keyed by addresses from the input, and a replay is not a service an attacker can slow down.
use hashbrown::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use plsim_pcap::{FrameBuf, Reader};
use plsim_wire::{DropReason, FlowKey, FlowTuple, SimTime, TcpFlags, checksum, classify};

use plsim_engine::{Batch, Dir, Feeder, Fill, Meta};

use super::{Packet, PacketSource};
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
    frame: FrameBuf,
    endpoint: Option<usize>,
}

/// A connection as the feeder tells them apart: the VLAN it was seen on, the endpoint a source
/// named, its two ends (the lower first), each end an address and a port in one word, so that
/// a key is four words to hash and compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    low: u64,
    high: u64,
    /// The endpoint a source named; `u64::MAX`: none.
    named: u64,
    /// The VLAN; `u32::MAX`: none.
    vlan: u32,
}

impl ConnKey {
    fn new(vlan: Option<u16>, named: Option<usize>, flow: FlowKey) -> ConnKey {
        let end = |(a, p): (Ipv4Addr, u16)| u64::from(a.to_bits()) << 16 | u64::from(p);
        ConnKey {
            low: end(flow.0),
            high: end(flow.1),
            named: named.map_or(u64::MAX, |n| n as u64),
            vlan: vlan.map_or(u32::MAX, u32::from),
        }
    }

    /// The connection's two ends, the lower first.
    fn ends(&self) -> FlowKey {
        let end = |w: u64| (Ipv4Addr::from_bits((w >> 16) as u32), w as u16);
        (end(self.low), end(self.high))
    }
}

/// A consumer-side tuple of an endpoint: (endpoint, client address, client port, server port).
type MappedKey = (u32, Ipv4Addr, u16, u16);

/// What the feeder knows of a connection: its client end and its endpoint.
#[derive(Clone, Copy, Debug)]
struct Conn {
    client: (Ipv4Addr, u16),
    route: Option<u32>,
}

/// A connection the feeder tracks: what it knows, the time of its last packet (ns), and its
/// handle ([`Meta::handle`]: the same for all its packets, reused once it is forgotten).
#[derive(Clone, Copy, Debug)]
struct Tracked {
    conn: Conn,
    last: u64,
    handle: u32,
}

struct FeedState {
    routes: Vec<Route>,
    /// Some endpoint has a traffic table.
    tables: bool,
    /// The provider's addresses, sorted.
    provider: Vec<Ipv4Addr>,
    /// Each connection.
    conns: HashMap<ConnKey, Tracked>,
    /// The handles of forgotten connections, for new ones to take.
    free_handles: Vec<u32>,
    /// The number of handles given out so far (the next new one).
    handles: u32,
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
                free_handles: Vec::new(),
                handles: 0,
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
        if let Some(s) = &stop {
            self.reader.stop_on(s);
        }
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

    /// The connection of a packet `t` with TCP flags `flags`: its client end and endpoint, and
    /// its handle. A packet of a known connection (not a SYN) costs one lookup.
    fn conn(
        &mut self,
        vlan: Option<u16>,
        named: Option<usize>,
        t: FlowTuple,
        flags: u8,
        syn: bool,
        now: u64,
    ) -> (Conn, u32) {
        let from = (t.src, t.sport);
        let to = (t.dst, t.dport);
        let key = ConnKey::new(vlan, named, t.flow_key());
        let known = match self.conns.get_mut(&key) {
            Some(k) => {
                k.last = now;
                if !syn {
                    return (k.conn, k.handle);
                }
                Some(*k)
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
            Some(k) if k.conn.client == client => k.conn.route,
            _ => self.route(vlan, named, client.0, server.0),
        };
        let conn = Conn { client, route };
        let handle = match known {
            Some(k) => k.handle,
            None => self.new_handle(),
        };
        self.conns.insert(
            key,
            Tracked {
                conn,
                last: now,
                handle,
            },
        );
        if let Some(r) = route
            && known.is_none_or(|k| k.conn.client != client)
        {
            self.note_mapping(r, client, server);
        }
        (conn, handle)
    }

    /// A handle no tracked connection has: a forgotten one's, else a new one
    /// ([`Meta::NO_HANDLE`] once four billion are in use).
    fn new_handle(&mut self) -> u32 {
        if let Some(h) = self.free_handles.pop() {
            return h;
        }
        if self.handles == Meta::NO_HANDLE {
            return Meta::NO_HANDLE;
        }
        self.handles += 1;
        self.handles - 1
    }

    /// Forgets the connections idle for longer than the horizon at `now`, and the tuples only
    /// they stood behind. Runs every quarter horizon of simulated time, so the tables hold the
    /// connections of the last horizon and a quarter at most.
    fn forget(&mut self, now: u64) {
        let h = self.horizon_ns;
        let free = &mut self.free_handles;
        self.conns.retain(|_, k| {
            let keep = now.saturating_sub(k.last) <= h;
            if !keep && k.handle != Meta::NO_HANDLE {
                free.push(k.handle);
            }
            keep
        });
        let live: hashbrown::HashSet<MappedKey> = self
            .conns
            .iter()
            .filter_map(|(k, &Tracked { conn: c, .. })| {
                let (a, b) = k.ends();
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
        let f = p.frame;
        if self.first_ns.is_none() {
            self.first_ns = Some(f.ts_ns);
            self.last = SimTime::from_nanos(f.ts_ns);
            self.next_forget = f.ts_ns.saturating_add((self.horizon_ns / 4).max(1));
        }
        let ts = self.time(f.ts_ns);
        self.last = ts;
        self.input.packets += 1;
        self.input.bytes += f.data.len() as u64;
        let seq = self.seq;
        self.seq += 1;
        let mut meta = Meta {
            seq,
            ts,
            wire_len: f.wire_len as u32,
            linktype: f.link,
            view: None,
            link: Default::default(),
            vnet: VnetId(0),
            orig: FlowTuple::default(),
            dir: Dir::Forward,
            drop: None,
            own: None,
            stream_start: None,
            handle: Meta::NO_HANDLE,
        };
        let view = match classify(f.link, f.data, f.wire_len) {
            Ok(v) => v,
            Err(r) => {
                // Not IPv4 TCP: the consumer side sent it, the first stage drops it.
                meta.drop = Some(r);
                batch.push(f.data, meta);
                return;
            }
        };
        let t = view.tuple();
        meta.orig = t;
        let vlan = plsim_wire::vlan(f.link, f.data);
        let now = ts.as_nanos();
        if now >= self.next_forget {
            self.forget(now);
        }
        let (conn, handle) = self.conn(vlan, p.endpoint, t, view.flags(), view.is_syn(), now);
        let forward = conn.client == (t.src, t.sport);
        let route = conn.route.map(|r| &self.routes[r as usize]);
        batch.push(
            f.data,
            Meta {
                view: Some(view),
                dir: if forward { Dir::Forward } else { Dir::Reverse },
                vnet: route.map_or(VnetId(0), |r| r.vnet),
                drop: route.is_none().then_some(DropReason::NoEndpoint),
                handle,
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
                let ts_ns = p.frame.ts_ns;
                let first = self.st.first_ns.unwrap_or(ts_ns);
                let due = self.st.due(at, first);
                if due <= self.st.time(ts_ns) {
                    let (_, ev) = self.events.pop_front().expect("an event is due");
                    return Fill::Event(ev, due);
                }
            }
        }
        if let Some(p) = self.stash.take() {
            // The events that stood before this packet have been applied now.
            let packet = Packet {
                frame: p.frame.as_frame(),
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
                let f = p.frame;
                let first = self.st.first_ns.unwrap_or(f.ts_ns);
                let due = self.st.due(at, first);
                if due <= self.st.time(f.ts_ns) {
                    // Keep the packet for after the event (rare: a copy is fine).
                    self.stash = Some(Stashed {
                        frame: f.to_owned(),
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
