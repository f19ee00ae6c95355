//! The provider-side SNAT engine of plsim: NAT IPs, port allocators, flow table, TCP timers.
//! It is the last stage of the Private Link path on the way to the backend and the first on the
//! way back (`docs/architecture.md`, section 1):
//!
//! ```text
//! forward   C:cp -> B:bp   (after the load balancer)   --forward--->  N:np -> B:bp
//! reverse   B:bp -> N:np   (from the backend)          --reverse--->  B:bp -> C:cp
//! ```
//!
//! Sans-IO: no threads, no clocks, no files. The caller passes each packet (the frame, its
//! [`Ipv4Tcp`](plsim_wire::Ipv4Tcp) view) and the current [`SimTime`]; the engine rewrites the
//! frame in place (both checksums updated incrementally by `plsim_wire`) or says why it drops
//! it.
//!
//! * [`Snat::forward`]: a consumer packet `C:cp -> B:bp` (after the load balancer chose the
//!   backend), tagged with its connection's [`LinkId`], leaves as `N:np -> B:bp`. A SYN with no
//!   flow opens one: a NAT IP (by [`Selection`]) and a port on it (by [`Allocator`], unique within
//!   the [`ReuseScope`]).
//! * [`Snat::reverse`]: a backend packet `B:bp -> N:np` goes back to `B:bp -> C:cp`; the engine
//!   tells the caller the flow's link id. Anything that matches no flow is `no_flow`.
//! * Timers run on the times the caller passes: every call first frees what is due, and
//!   [`Snat::expire`] does only that. Expiry is a min-heap of deadlines, re-armed lazily (a packet
//!   only writes the flow's last-seen time), so the work is O(log n) per due item, never a scan.
//!
//! # Timers and the port lifecycle
//!
//! A flow is *transitory* (timeout [`Timers::transitory`]) until the consumer ACKs the backend's
//! SYN-ACK, then *established* ([`Timers::idle`]), transitory again once one side sent a FIN. A
//! FIN from both sides or a RST closes it: it keeps translating stray packets, but its port is
//! *held* for [`Timers::fin_hold`] or [`Timers::rst_hold`] from the closing packet, then returns
//! to the allocator. A new SYN from the consumer on a held flow reopens it on the same port. An
//! idle or transitory timeout frees the port at once (no hold): nothing is left in flight. The
//! deadline is exact: a flow last seen at `t` is gone at `t + timeout`, not a tick later.
//!
//! Time never runs backwards: a `now` earlier than one seen before counts as the latest one.
//!
//! # Memory
//!
//! The flow table is a [`plsim_flowtab::FlowTable`] (the load balancer's too): a flow is one
//! 32-byte record in a slab indexed by `u32`, the free slots threaded through the records; the
//! forward index (link id, consumer address and port, backend address and port) and the
//! reverse index (NAT IP, NAT port, backend address and port) are
//! [`FlowIndex`](plsim_flowtab::FlowIndex)es holding only the slot (8-byte buckets, at most 80%
//! full), the keys are compared in the slab. One 16-byte timer entry per flow. At 1M flows that
//! is 84.2 bytes a flow. Ports are bitmaps (8 KiB a scope). [`Snat::memory_bytes`] adds it all
//! up. The `netfilter` allocator adds a map from each source (link, consumer address and port)
//! to its live mappings; [`SnatConfig::track_reuse`] adds the reuse record, whose size follows
//! the reply tuples freed within its horizon (see "Port reuse").
//!
//! # Linux's allocator
//!
//! [`Allocator::Netfilter`] picks ports as Linux's SNAT does (`get_unique_tuple` in
//! `net/netfilter/nf_nat_core.c`; the steps are in `ports/netfilter.rs`): the consumer's own
//! port when its reply tuple is free, the NAT IP by the kernel's `jhash2` of the addresses,
//! otherwise rounds of 128, 64, 32, 16 and 8 linear tries from random offsets, then a drop.
//! So it can refuse a SYN while ports are free: [`Stats::gave_up`] counts those apart from
//! [`Stats::exhausted`].
//!
//! # Port reuse
//!
//! With [`SnatConfig::track_reuse`], [`Snat::reuse`] counts every new flow record whose reply
//! tuple (NAT IP, NAT port, backend address and port) an earlier record used, the gap from that
//! record's close to the new SYN, and the hazards: gaps under the backends' TIME_WAIT after a
//! close the backend began (it sent the first FIN), when the backend may still hold the 4-tuple.
//! The bookkeeping runs when records are made and freed, never per packet.
//!
//! # Prefetching
//!
//! At a million flows every lookup misses the cache. [`Snat::prefetch_forward`] and
//! [`Snat::prefetch_reverse`] compute the hash the lookup will compute and prefetch its index
//! bucket. Called for every packet of a batch before the batch is translated, they overlap the
//! misses of the whole batch (3.3 times faster at 1M flows). The flow records need no prefetch
//! of their own: once the buckets are cached, the out-of-order core overlaps the record misses
//! of neighbouring packets by itself (a second pass prefetching them measured slower). They
//! change nothing.
//!
//! The index hashes are [`plsim_wire::hash::fold2`], a keyed folded multiply (as in foldhash):
//! fast, deterministic, and not DoS-resistant, which a simulator fed with its user's own
//! captures does not need.
//!
//! # Layout of the crate
//!
//! `translate` is the packet path ([`Snat::forward`], [`Snat::reverse`] and their prefetch
//! hooks), `tcp` the TCP state machine and its timeouts, `ports` the NAT IPs, reuse scopes and
//! port allocators (`ports/netfilter.rs` Linux's), `flow` the flow record and its keys, `reuse`
//! the reuse record; this file holds the engine, its timers and its control-plane calls.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod bitmap;
mod config;
mod flow;
mod part;
mod ports;
pub mod proxy;
mod reuse;
mod stats;
mod tcp;
mod translate;

use std::net::Ipv4Addr;

use plsim_wire::{DropCounts, FlowTuple, LinkId, SimTime};

pub use config::{
    Allocator, ConfigError, DEFAULT_TIME_WAIT, MAX_NAT_IPS, PortRange, ReuseScope, Selection,
    SnatConfig, Timers,
};
pub use part::{Gone, SnatFlow, SnatKey};
pub use reuse::{DEFAULT_REUSE_HORIZON, Reuse, ReuseLog, ReuseTracking};
pub use stats::{NatIpStats, Stats};
pub use tcp::FlowState;
#[cfg(test)]
pub(crate) use tcp::TcpState;

use flow::{FlowTable, fwd_hash};
use ports::Ports;
use tcp::Timeouts;

/// What `Snat::flow` tells of one flow (the tests look flows up; no command does).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlowInfo {
    /// The flow's NAT IP.
    pub nat_ip: Ipv4Addr,
    /// The flow's NAT port.
    pub nat_port: u16,
    /// Its TCP state.
    pub state: TcpState,
    /// When its timer runs out (the port is freed then).
    pub deadline: SimTime,
}

/// The SNAT engine of one Private Link service.
#[derive(Debug)]
pub struct Snat {
    cfg: SnatConfig,
    timeouts: Timeouts,
    /// The flows: slab, both indexes, timers.
    table: FlowTable,
    /// NAT IPs, scopes, allocators.
    ports: Ports,
    now: u64,
    created: u64,
    closed: u64,
    expired: u64,
    torn_down: u64,
    /// SNAT failures with no free port for the flow anywhere.
    exhausted: u64,
    /// SNAT failures while a free port existed (see [`Stats::gave_up`]).
    gave_up: u64,
    open: u64,
    /// Flow records (parts) live now: the open ones and the closed ones whose port is held.
    live: u64,
    live_peak: u64,
    /// Flows ended because the load balancer reset them (their backend went down).
    reset: u64,
    /// Flow records per connection, indexed by link id.
    live_by_link: Vec<u32>,
    /// Flows opened per connection, indexed by link id.
    created_by_link: Vec<u64>,
    drops: DropCounts,
    rst: Vec<u8>,
    /// With [`SnatConfig::proxy_protocol`]: the PROXY protocol state of every flow.
    proxy: Option<proxy::Proxy>,
    /// With [`SnatConfig::track_reuse`]: the last close of every reply tuple, and the reuses.
    reuse: Option<ReuseLog>,
    /// The records its own table let go at the last expiry (reused, so expiry allocates
    /// nothing once warm).
    gone: Vec<flow::Flow>,
}

impl Snat {
    /// An engine with no flows, or the reason the configuration can't be used.
    pub fn new(cfg: SnatConfig) -> Result<Snat, ConfigError> {
        cfg.validate()?;
        Ok(Snat {
            timeouts: Timeouts::new(&cfg.timers),
            table: FlowTable::new(),
            ports: Ports::new(&cfg),
            now: 0,
            created: 0,
            closed: 0,
            expired: 0,
            torn_down: 0,
            reset: 0,
            live_by_link: Vec::new(),
            created_by_link: Vec::new(),
            exhausted: 0,
            gave_up: 0,
            open: 0,
            live: 0,
            live_peak: 0,
            drops: DropCounts::default(),
            rst: Vec::new(),
            proxy: cfg.proxy_protocol.then(proxy::Proxy::default),
            reuse: cfg
                .track_reuse
                .map(|tw| ReuseLog::new(tw, cfg.nat_ips.len())),
            gone: Vec::new(),
            cfg,
        })
    }

    /// The configuration (with the NAT IPs added since).
    pub fn config(&self) -> &SnatConfig {
        &self.cfg
    }

    /// Makes room for `additional` more flows without growing the tables on the packet path.
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional);
        if let Some(p) = self.proxy.as_mut() {
            p.reserve(self.table.len() + additional);
        }
    }

    /// Makes room for the per-flow state kept beside parts that a shared table holds under
    /// slots below `slots` (the PROXY protocol's, when on), without growing on the packet path.
    pub fn reserve_slots(&mut self, slots: usize) {
        if let Some(p) = self.proxy.as_mut() {
            p.reserve(slots);
        }
    }

    /// Adds a NAT IP at run time (the control plane may, up to eight; they are never removed).
    /// Returns its index.
    pub fn add_nat_ip(&mut self, ip: Ipv4Addr) -> Result<usize, ConfigError> {
        if self.ports.nats.len() >= MAX_NAT_IPS {
            return Err(ConfigError::TooManyNatIps(self.ports.nats.len() + 1));
        }
        if self.cfg.nat_ips.contains(&ip) {
            return Err(ConfigError::DuplicateNatIp(ip));
        }
        self.cfg.nat_ips.push(ip);
        self.ports.add_nat(ip);
        if let Some(r) = self.reuse.as_mut() {
            r.add_nat();
        }
        Ok(self.ports.nats.len() - 1)
    }

    /// Frees every flow whose timer has run out by `now`; returns how many flow records went.
    /// ([`Snat::forward`] and [`Snat::reverse`] do this first on their own.)
    pub fn expire(&mut self, now: SimTime) -> usize {
        let before = self.table.len();
        self.advance(now);
        before - self.table.len()
    }

    /// Drops every flow of connection `link` at once and frees its ports, held ones included
    /// (the control plane does it when the connection leaves `Approved`). Returns how many flow
    /// records went. It walks the flow slab: a control-plane action, not a packet-path one.
    pub fn teardown(&mut self, link: LinkId, now: SimTime) -> usize {
        let now = self.advance(now);
        let slots = self.table.live_slots(|f| f.link == link.0);
        for &slot in &slots {
            let f = self.table.remove(slot);
            self.gone(f.key(), &f.part(), Gone::TornDown, now);
        }
        slots.len()
    }

    /// Ends one flow at once and frees its port, held or not: the load balancer reset it (its
    /// backend went down under `on_backend_down = reset`). `consumer` is the flow as it left
    /// the load balancer (`C:cp -> B:bp`). Returns whether there was such a flow.
    pub fn reset_flow(&mut self, link: LinkId, consumer: FlowTuple, now: SimTime) -> bool {
        let now = self.advance(now);
        let (c_ip, b_ip) = (u32::from(consumer.src), u32::from(consumer.dst));
        let h = fwd_hash(link.0, c_ip, consumer.sport, b_ip, consumer.dport);
        let Some(slot) = self.table.find_fwd(h, |f| {
            f.out_is(link.0, c_ip, consumer.sport, b_ip, consumer.dport)
        }) else {
            return false;
        };
        let f = self.table.remove(slot);
        self.gone(f.key(), &f.part(), Gone::Reset, now);
        true
    }

    /// Flows opened so far (new ones, and held ones a SYN reopened): a counter, cheap to read.
    #[inline]
    pub fn created(&self) -> u64 {
        self.created
    }

    /// Flow records of each connection now (open, or closed with the port held), indexed by
    /// link id.
    pub fn live_by_link(&self) -> &[u32] {
        &self.live_by_link
    }

    /// Flows opened per connection so far, indexed by link id.
    pub fn created_by_link(&self) -> &[u64] {
        &self.created_by_link
    }

    /// A flow of connection `link` was opened (`new`: with a record of its own).
    pub(crate) fn opened(&mut self, link: u32, new: bool) {
        let i = link as usize;
        if self.created_by_link.len() <= i {
            self.created_by_link.resize(i + 1, 0);
            self.live_by_link.resize(i + 1, 0);
        }
        self.created_by_link[i] += 1;
        if new {
            self.live_by_link[i] += 1;
        }
    }

    /// The RST answering the SYN the last [`Snat::forward`] refused for port exhaustion, when
    /// [`SnatConfig::rst_on_exhaustion`] is on: a bare IPv4 packet (no link header; classify it
    /// with `classify_l3`) from the SYN's destination to its source, checksums filled in. `None`
    /// after any other call.
    pub fn rst_reply(&self) -> Option<&[u8]> {
        (!self.rst.is_empty()).then_some(&self.rst[..])
    }

    /// With [`SnatConfig::proxy_protocol`]: when the flow of the packet the last
    /// [`Snat::forward`] passed has sent its PROXY protocol header (with this packet or
    /// before), where the header starts in its backend-side stream (ISN + 1; the header is
    /// [`proxy::HEADER_LEN`] bytes). A backend acknowledges the header: its acknowledgements
    /// past that point are `HEADER_LEN` higher than the consumer's. `None` otherwise.
    pub fn proxy_sent(&self) -> Option<u32> {
        self.proxy.as_ref()?.sent()
    }

    /// With [`SnatConfig::proxy_protocol`]: when the packet the last [`Snat::forward`] passed
    /// (`frame`, as it left, and its view) is the first of its connection after the SYN, writes
    /// the PROXY protocol v2 segment the backend gets with it into `out` (the same link layer;
    /// see [`proxy`]) and says whether it goes just before or just after the packet.
    /// `endpoint` is the private endpoint's address and port as the consumer addressed them.
    /// `None` after any other call.
    pub fn proxy_segment(
        &self,
        endpoint: std::net::SocketAddrV4,
        frame: &[u8],
        view: &plsim_wire::Ipv4Tcp,
        out: &mut Vec<u8>,
    ) -> Option<plsim_wire::Place> {
        self.proxy.as_ref()?.segment(endpoint, frame, view, out)
    }

    /// The flow of connection `link` whose consumer-side tuple (after the load balancer) is
    /// `consumer` (`C:cp -> B:bp`), if there is one.
    #[cfg(test)]
    pub(crate) fn flow(&self, link: LinkId, consumer: FlowTuple) -> Option<FlowInfo> {
        let (c_ip, b_ip) = (u32::from(consumer.src), u32::from(consumer.dst));
        let h = fwd_hash(link.0, c_ip, consumer.sport, b_ip, consumer.dport);
        let i = self.table.find_fwd(h, |f| {
            f.out_is(link.0, c_ip, consumer.sport, b_ip, consumer.dport)
        })?;
        let f = self.table.get(i);
        Some(FlowInfo {
            nat_ip: self.ports.nat_ip(f.nat),
            nat_port: f.n_port,
            state: TcpState::of(f.state),
            deadline: SimTime::from_nanos(self.timeouts.deadline(f)),
        })
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> Stats {
        Stats {
            created: self.created,
            closed: self.closed,
            expired: self.expired,
            torn_down: self.torn_down,
            reset: self.reset,
            failed: self.exhausted + self.gave_up,
            exhausted: self.exhausted,
            gave_up: self.gave_up,
            open: self.open,
            live: self.live,
            live_peak: self.live_peak,
            drops: self.drops,
            nat_ips: self.ports.nat_stats(),
        }
    }

    /// With [`SnatConfig::track_reuse`]: the port reuses so far, overall and per NAT IP.
    pub fn reuse(&self) -> Option<&ReuseLog> {
        self.reuse.as_ref()
    }

    /// Heap bytes of all the flow state: slab, both tables, timers, port bitmaps, host and
    /// block maps, the reuse record (capacities, not lengths: what the allocator really handed
    /// out).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
            + self.ports.memory_bytes()
            + self.proxy.as_ref().map_or(0, proxy::Proxy::memory_bytes)
            + self.reuse.as_ref().map_or(0, ReuseLog::memory_bytes)
    }

    // ---- timers ----

    /// Moves the clock to `now` (never back) and runs the timers due.
    #[inline]
    pub(crate) fn advance(&mut self, now: SimTime) -> u64 {
        let now = now.as_nanos().max(self.now);
        self.now = now;
        if self.table.next_deadline().is_some_and(|at| at <= now) {
            self.run_timers(now);
        }
        now
    }

    /// Frees every flow whose real deadline is at or before `now` (the table re-arms the
    /// entries of flows that saw packets since).
    fn run_timers(&mut self, now: u64) {
        let timeouts = &self.timeouts;
        let mut gone = std::mem::take(&mut self.gone);
        self.table.expire(
            now,
            usize::MAX,
            |f| timeouts.deadline(f),
            |_, f| gone.push(f),
        );
        for f in gone.drain(..) {
            self.gone(f.key(), &f.part(), Gone::Expired, now);
        }
        self.gone = gone;
    }
}

#[cfg(test)]
mod tests;
