//! The provider-side SNAT engine of plsim: NAT IPs, port allocators, flow table, TCP timers.
//!
//! Sans-IO: no threads, no clocks, no files. The caller passes each packet (the frame, its
//! [`Ipv4Tcp`] view) and the current [`SimTime`]; the engine rewrites the frame in place (both
//! checksums updated incrementally by `plsim_wire`) or says why it drops it.
//!
//! * [`Snat::outbound`]: a consumer packet `C:cp -> B:bp` (after the load balancer chose the
//!   backend), tagged with its connection's [`LinkId`], leaves as `N:np -> B:bp`. A SYN with no
//!   flow opens one: a NAT IP (by [`Selection`]) and a port on it (by [`Allocator`], unique within
//!   the [`ReuseScope`]).
//! * [`Snat::inbound`]: a backend packet `B:bp -> N:np` goes back to `B:bp -> C:cp`; the engine
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
//! A flow is one 32-byte record in a slab indexed by `u32`; the forward table (link id, consumer
//! address and port, backend address and port) and the reverse table (NAT IP, NAT port, backend
//! address and port) are [`FlowIndex`]es holding only the slab index (8-byte buckets, at most
//! 80% full), the keys are compared in the slab. One 16-byte timer entry per flow. At 1M flows
//! that is 84.2 bytes a flow.
//!
//! # Prefetching
//!
//! At a million flows every lookup misses the cache. [`Snat::prefetch_outbound`] and
//! [`Snat::prefetch_inbound`] compute the hash the lookup will compute and prefetch its index
//! bucket. Called for every packet of a batch before the batch is translated, they overlap the
//! misses of the whole batch (3.3 times faster at 1M flows). The flow records need no prefetch
//! of their own: once the buckets are cached, the out-of-order core overlaps the record misses
//! of neighbouring packets by itself (a second pass prefetching them measured slower). They
//! change nothing.
//! Ports are bitmaps (8 KiB a scope). [`Snat::memory_bytes`] adds it all up.
//!
//! The hash is a hand-written keyed folded multiply (as in foldhash): fast, deterministic, and not
//! DoS-resistant, which a simulator fed with its user's own captures does not need.

#![warn(missing_docs)]

mod bitmap;
mod config;
mod stats;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;

use hashbrown::HashMap;
use plsim_flowtab::FlowIndex;
use plsim_wire::{DropCounts, DropReason, FlowTuple, Ipv4Tcp, LinkId, SimTime, TcpFlags};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use bitmap::Bitmap;
pub use config::{
    Allocator, ConfigError, MAX_NAT_IPS, PortRange, ReuseScope, Selection, SnatConfig, Timers,
};
pub use stats::{NatIpStats, Stats};

// Flow state bits. `LIVE` marks a used slab slot.
const LIVE: u8 = 1;
const SYN_OUT: u8 = 2;
const SYNACK_IN: u8 = 4;
const EST: u8 = 8;
const FIN_OUT: u8 = 16;
const FIN_IN: u8 = 32;
const RST: u8 = 64;
const FIN_BOTH: u8 = FIN_OUT | FIN_IN;
/// An established flow with nothing else going on: the hot path's only check.
const PLAIN_EST: u8 = LIVE | SYN_OUT | SYNACK_IN | EST;

const NONE: u32 = u32::MAX;

#[inline]
fn closed(state: u8) -> bool {
    state & RST != 0 || state & FIN_BOTH == FIN_BOTH
}

/// The TCP state of one flow, as [`Snat::flow`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// The consumer's SYN went out; no SYN-ACK yet.
    SynSent,
    /// The backend answered with a SYN-ACK; the consumer has not ACKed it yet.
    SynReceived,
    /// The handshake completed (or the flow was picked up mid-stream).
    Established,
    /// One side sent a FIN.
    HalfClosed,
    /// Both sides sent a FIN: the port is held for [`Timers::fin_hold`].
    FinHold,
    /// A RST was seen: the port is held for [`Timers::rst_hold`].
    RstHold,
}

impl TcpState {
    fn of(s: u8) -> TcpState {
        if s & RST != 0 {
            TcpState::RstHold
        } else if s & FIN_BOTH == FIN_BOTH {
            TcpState::FinHold
        } else if s & FIN_BOTH != 0 {
            TcpState::HalfClosed
        } else if s & EST != 0 {
            TcpState::Established
        } else if s & SYNACK_IN != 0 {
            TcpState::SynReceived
        } else {
            TcpState::SynSent
        }
    }
}

/// What [`Snat::flow`] tells of one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowInfo {
    /// The flow's NAT IP.
    pub nat_ip: Ipv4Addr,
    /// The flow's NAT port.
    pub nat_port: u16,
    /// Its TCP state.
    pub state: TcpState,
    /// When its timer runs out (the port is freed then).
    pub deadline: SimTime,
}

/// One flow: 32 bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Flow {
    /// Nanoseconds of the last packet (of the closing packet once closed).
    last: u64,
    /// The link id; the next free slot when the slot is free.
    link: u32,
    c_ip: u32,
    b_ip: u32,
    /// Bumped whenever the flow's timer entry is replaced and when the slot is freed; a timer
    /// entry with another generation is stale.
    gen_: u32,
    c_port: u16,
    b_port: u16,
    n_port: u16,
    nat: u8,
    /// State bits; 0 for a free slot.
    state: u8,
}

/// A timer entry: (deadline ns, slab index, generation).
type Timer = Reverse<(u64, u32, u32)>;

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline]
fn hash2(a: u64, b: u64) -> u64 {
    fold_mul(fold_mul(a ^ K0, b ^ K1), K2)
}

#[inline]
fn fwd_hash(link: u32, c_ip: u32, c_port: u16, b_ip: u32, b_port: u16) -> u64 {
    hash2(
        u64::from(link) << 32 | u64::from(c_ip),
        u64::from(c_port) << 48 | u64::from(b_port) << 32 | u64::from(b_ip),
    )
}

#[inline]
fn rev_hash(nat: u8, n_port: u16, b_ip: u32, b_port: u16) -> u64 {
    hash2(
        u64::from(nat) << 16 | u64::from(n_port),
        u64::from(b_port) << 32 | u64::from(b_ip),
    )
}

/// The forward index's hash of a consumer packet `C:cp -> B:bp` of `link`.
#[inline]
fn out_hash(link: LinkId, t: FlowTuple) -> u64 {
    fwd_hash(link.0, u32::from(t.src), t.sport, u32::from(t.dst), t.dport)
}

/// The reverse index's hash of a backend packet `B:bp -> N:np`, `N` being NAT IP `nat`.
#[inline]
fn in_hash(nat: u8, t: FlowTuple) -> u64 {
    rev_hash(nat, t.dport, u32::from(t.src), t.sport)
}

impl Flow {
    #[inline]
    fn fwd_hash(&self) -> u64 {
        fwd_hash(self.link, self.c_ip, self.c_port, self.b_ip, self.b_port)
    }
    #[inline]
    fn rev_hash(&self) -> u64 {
        rev_hash(self.nat, self.n_port, self.b_ip, self.b_port)
    }
}

/// The ports of one reuse scope: one NAT IP (and, with `per-backend`, one backend).
#[derive(Clone, Debug)]
struct Scope {
    /// Set = in use or held.
    ports: Bitmap,
    /// Next-fit position of the sequential allocator (an offset in the range).
    cursor: u32,
    in_use: u32,
    held: u32,
    blocks: Option<Blocks>,
}

/// The blocks of a `block:N` scope.
#[derive(Clone, Debug)]
struct Blocks {
    size: u32,
    /// Set = owned by a host.
    taken: Bitmap,
    /// Ports in use or held, per block.
    used: Vec<u16>,
    cursor: u32,
}

/// A NAT IP and its gauges.
#[derive(Clone, Debug)]
struct Nat {
    ip: Ipv4Addr,
    ip_u32: u32,
    in_use: u64,
    held: u64,
    peak: u64,
    /// The most ports in use or held at once: what runs out.
    busy_peak: u64,
    flows: u64,
    created: u64,
    scopes: u32,
}

impl Nat {
    fn new(ip: Ipv4Addr) -> Nat {
        Nat {
            ip,
            ip_u32: u32::from(ip),
            in_use: 0,
            held: 0,
            peak: 0,
            busy_peak: 0,
            flows: 0,
            created: 0,
            scopes: 0,
        }
    }
}

/// A consumer host under `paired` selection: its NAT IP and how many flow records it has.
#[derive(Clone, Copy, Debug)]
struct Host {
    nat: u8,
    flows: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Out,
    In,
}

/// The SNAT engine of one Private Link service.
#[derive(Debug)]
pub struct Snat {
    cfg: SnatConfig,
    range: u32,
    idle: u64,
    transitory: u64,
    fin_hold: u64,
    rst_hold: u64,
    nats: Vec<Nat>,
    slab: Vec<Flow>,
    free_head: u32,
    fwd: FlowIndex,
    rev: FlowIndex,
    timers: BinaryHeap<Timer>,
    /// Backend IP -> backend index (`per-backend` only).
    backends: HashMap<u32, u32>,
    /// `backend index * 8 + NAT index` -> index in `scopes`, or `NONE`.
    scope_slots: Vec<u32>,
    scopes: Vec<Scope>,
    /// `paired` selection: (link, consumer address) -> host.
    hosts: HashMap<(u32, u32), Host>,
    /// `block:N`: (scope, link, consumer address) -> the blocks the host owns there.
    owners: HashMap<(u32, u32, u32), Vec<u16>>,
    rng: ChaCha8Rng,
    now: u64,
    created: u64,
    closed: u64,
    expired: u64,
    torn_down: u64,
    failed: u64,
    open: u64,
    live: u64,
    live_peak: u64,
    drops: DropCounts,
    rst: Vec<u8>,
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Snat {
    /// An engine with no flows, or the reason the configuration can't be used.
    pub fn new(cfg: SnatConfig) -> Result<Snat, ConfigError> {
        cfg.validate()?;
        let seed = match cfg.allocator {
            Allocator::Random { seed } => seed,
            _ => 0,
        };
        Ok(Snat {
            range: cfg.ports.len(),
            idle: nanos(cfg.timers.idle),
            transitory: nanos(cfg.timers.transitory),
            fin_hold: nanos(cfg.timers.fin_hold),
            rst_hold: nanos(cfg.timers.rst_hold),
            nats: cfg.nat_ips.iter().map(|&ip| Nat::new(ip)).collect(),
            slab: Vec::new(),
            free_head: NONE,
            fwd: FlowIndex::new(),
            rev: FlowIndex::new(),
            timers: BinaryHeap::new(),
            backends: HashMap::new(),
            scope_slots: Vec::new(),
            scopes: Vec::new(),
            hosts: HashMap::new(),
            owners: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            created: 0,
            closed: 0,
            expired: 0,
            torn_down: 0,
            failed: 0,
            open: 0,
            live: 0,
            live_peak: 0,
            drops: DropCounts::default(),
            rst: Vec::new(),
            cfg,
        })
    }

    /// The configuration (with the NAT IPs added since).
    pub fn config(&self) -> &SnatConfig {
        &self.cfg
    }

    /// Makes room for `additional` more flows without growing the tables on the packet path.
    pub fn reserve(&mut self, additional: usize) {
        self.slab.reserve(additional);
        self.fwd.reserve(additional);
        self.rev.reserve(additional);
        self.timers.reserve(additional);
    }

    /// Adds a NAT IP at run time (the control plane may, up to eight; they are never removed).
    /// Returns its index.
    pub fn add_nat_ip(&mut self, ip: Ipv4Addr) -> Result<usize, ConfigError> {
        if self.nats.len() >= MAX_NAT_IPS {
            return Err(ConfigError::TooManyNatIps(self.nats.len() + 1));
        }
        if self.cfg.nat_ips.contains(&ip) {
            return Err(ConfigError::DuplicateNatIp(ip));
        }
        self.cfg.nat_ips.push(ip);
        self.nats.push(Nat::new(ip));
        Ok(self.nats.len() - 1)
    }

    /// Translates a consumer packet `C:cp -> B:bp` of connection `link` to `N:np -> B:bp`.
    ///
    /// A SYN with no flow opens one (any packet but a RST does with `pickup`). Errors:
    /// `no_flow` for another packet with no flow, `port_exhausted` when a SYN finds no free port
    /// (an SNAT failure; see [`Snat::rst_reply`]). The frame is only changed on `Ok`.
    #[inline]
    pub fn outbound(
        &mut self,
        link: LinkId,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<(), DropReason> {
        self.rst.clear();
        let now = self.advance(now);
        let t = view.tuple();
        let (c_ip, b_ip) = (u32::from(t.src), u32::from(t.dst));
        let h = out_hash(link, t);
        let slab = &self.slab;
        let found = self.fwd.find(h, |i| {
            let f = &slab[i as usize];
            f.link == link.0
                && f.c_ip == c_ip
                && f.c_port == t.sport
                && f.b_ip == b_ip
                && f.b_port == t.dport
        });
        let flags = view.flags();
        let idx = match found {
            Some(i) => {
                self.on_packet(i, Dir::Out, flags, now);
                i
            }
            None => {
                let syn = view.is_syn();
                if !(syn || self.cfg.pickup && flags & TcpFlags::RST == 0) {
                    self.drops.add(DropReason::NoFlow);
                    return Err(DropReason::NoFlow);
                }
                let Some(i) = self.open(link.0, t, h, now) else {
                    self.failed += 1;
                    self.drops.add(DropReason::PortExhausted);
                    if self.cfg.rst_on_exhaustion {
                        self.build_rst(frame, view);
                    }
                    return Err(DropReason::PortExhausted);
                };
                if !syn {
                    // Mid-stream pickup: take the handshake as done.
                    self.slab[i as usize].state = PLAIN_EST;
                    self.on_packet(i, Dir::Out, flags, now);
                }
                i
            }
        };
        let f = &self.slab[idx as usize];
        view.set_source(frame, self.nats[usize::from(f.nat)].ip, f.n_port);
        Ok(())
    }

    /// Translates a backend packet `B:bp -> N:np` back to `B:bp -> C:cp` and returns the flow's
    /// link id. A packet that matches no flow is `no_flow`: the provider can't open connections.
    #[inline]
    pub fn inbound(
        &mut self,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<LinkId, DropReason> {
        self.rst.clear();
        let now = self.advance(now);
        let t = view.tuple();
        let n_ip = u32::from(t.dst);
        let Some(nat) = self.nat_index(n_ip) else {
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        };
        let b_ip = u32::from(t.src);
        let h = in_hash(nat, t);
        let slab = &self.slab;
        let found = self.rev.find(h, |i| {
            let f = &slab[i as usize];
            f.nat == nat && f.n_port == t.dport && f.b_ip == b_ip && f.b_port == t.sport
        });
        let Some(idx) = found else {
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        };
        self.on_packet(idx, Dir::In, view.flags(), now);
        let f = &self.slab[idx as usize];
        view.set_destination(frame, Ipv4Addr::from(f.c_ip), f.c_port);
        Ok(LinkId(f.link))
    }

    /// Prefetches what [`outbound`](Snat::outbound) of this packet (`C:cp -> B:bp` of `link`)
    /// will read first: its bucket in the forward index (the very hash `outbound` computes).
    /// Call it for the packets of a batch some packets ahead of translating them. Changes
    /// nothing.
    #[inline]
    pub fn prefetch_outbound(&self, link: LinkId, view: &Ipv4Tcp) {
        self.fwd.prefetch(out_hash(link, view.tuple()));
    }

    /// Prefetches what [`inbound`](Snat::inbound) of this packet (`B:bp -> N:np`) will read
    /// first: its bucket in the reverse index. Does nothing for a packet to no NAT IP of this
    /// engine. Changes nothing.
    #[inline]
    pub fn prefetch_inbound(&self, view: &Ipv4Tcp) {
        let t = view.tuple();
        if let Some(nat) = self.nat_index(u32::from(t.dst)) {
            self.rev.prefetch(in_hash(nat, t));
        }
    }

    /// Frees every flow whose timer has run out by `now`; returns how many flow records went.
    /// ([`Snat::outbound`] and [`Snat::inbound`] do this first on their own.)
    pub fn expire(&mut self, now: SimTime) -> usize {
        let before = self.live;
        self.advance(now);
        (before - self.live) as usize
    }

    /// Drops every flow of connection `link` at once and frees its ports, held ones included
    /// (the control plane does it when the connection leaves `Approved`). Returns how many flow
    /// records went. It walks the flow slab: a control-plane action, not a packet-path one.
    pub fn teardown(&mut self, link: LinkId, now: SimTime) -> usize {
        self.advance(now);
        let mut n = 0;
        for i in 0..self.slab.len() {
            let f = &self.slab[i];
            if f.state != 0 && f.link == link.0 {
                if !closed(f.state) {
                    self.torn_down += 1;
                }
                self.free_flow(i as u32);
                n += 1;
            }
        }
        n
    }

    /// The RST answering the SYN the last [`Snat::outbound`] refused for port exhaustion, when
    /// [`SnatConfig::rst_on_exhaustion`] is on: a bare IPv4 packet (no link header; classify it
    /// with `classify_l3`) from the SYN's destination to its source, checksums filled in. `None`
    /// after any other call.
    pub fn rst_reply(&self) -> Option<&[u8]> {
        (!self.rst.is_empty()).then_some(&self.rst[..])
    }

    /// The flow of connection `link` whose consumer-side tuple (after the load balancer) is
    /// `consumer` (`C:cp -> B:bp`), if there is one.
    pub fn flow(&self, link: LinkId, consumer: FlowTuple) -> Option<FlowInfo> {
        let (c_ip, b_ip) = (u32::from(consumer.src), u32::from(consumer.dst));
        let h = fwd_hash(link.0, c_ip, consumer.sport, b_ip, consumer.dport);
        let i = self.fwd.find(h, |i| {
            let f = &self.slab[i as usize];
            f.link == link.0
                && f.c_ip == c_ip
                && f.c_port == consumer.sport
                && f.b_ip == b_ip
                && f.b_port == consumer.dport
        })?;
        let f = &self.slab[i as usize];
        Some(FlowInfo {
            nat_ip: self.nats[usize::from(f.nat)].ip,
            nat_port: f.n_port,
            state: TcpState::of(f.state),
            deadline: SimTime::from_nanos(self.deadline(f)),
        })
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> Stats {
        Stats {
            created: self.created,
            closed: self.closed,
            expired: self.expired,
            torn_down: self.torn_down,
            failed: self.failed,
            open: self.open,
            live: self.live,
            live_peak: self.live_peak,
            drops: self.drops,
            nat_ips: self
                .nats
                .iter()
                .map(|n| {
                    let scopes = match self.cfg.reuse {
                        ReuseScope::PerIp => 1,
                        ReuseScope::PerBackend => n.scopes,
                    };
                    let total = u64::from(self.range) * u64::from(scopes);
                    NatIpStats {
                        ip: n.ip,
                        ports_per_scope: self.range,
                        scopes,
                        ports_total: total,
                        in_use: n.in_use,
                        held: n.held,
                        free: total - n.in_use - n.held,
                        in_use_peak: n.peak,
                        busy_peak: n.busy_peak,
                        flows: n.flows,
                        flows_created: n.created,
                    }
                })
                .collect(),
        }
    }

    /// Heap bytes of all the flow state: slab, both tables, timers, port bitmaps, host and
    /// block maps (capacities, not lengths: what the allocator really handed out).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let scopes: usize = self
            .scopes
            .iter()
            .map(|s| {
                s.ports.heap_bytes()
                    + s.blocks
                        .as_ref()
                        .map_or(0, |b| b.taken.heap_bytes() + b.used.capacity() * 2)
            })
            .sum();
        let owners: usize = self.owners.values().map(|v| v.capacity() * 2).sum();
        self.slab.capacity() * size_of::<Flow>()
            + self.fwd.memory_bytes()
            + self.rev.memory_bytes()
            + self.timers.capacity() * size_of::<Timer>()
            + self.backends.allocation_size()
            + self.scope_slots.capacity() * 4
            + self.scopes.capacity() * size_of::<Scope>()
            + scopes
            + self.hosts.allocation_size()
            + self.owners.allocation_size()
            + owners
    }

    // ---- internals ----

    /// The index of NAT IP `ip` (eight at most: a scan).
    #[inline]
    fn nat_index(&self, ip: u32) -> Option<u8> {
        self.nats
            .iter()
            .position(|n| n.ip_u32 == ip)
            .map(|i| i as u8)
    }

    /// Moves the clock to `now` (never back) and runs the timers due.
    #[inline]
    fn advance(&mut self, now: SimTime) -> u64 {
        let now = now.as_nanos().max(self.now);
        self.now = now;
        if self.timers.peek().is_some_and(|t| t.0.0 <= now) {
            self.run_timers(now);
        }
        now
    }

    #[inline]
    fn deadline(&self, f: &Flow) -> u64 {
        let s = f.state;
        let d = if s & RST != 0 {
            self.rst_hold
        } else if s & FIN_BOTH == FIN_BOTH {
            self.fin_hold
        } else if s & EST != 0 && s & FIN_BOTH == 0 {
            self.idle
        } else {
            self.transitory
        };
        f.last.saturating_add(d)
    }

    fn run_timers(&mut self, now: u64) {
        while let Some(&Reverse((at, idx, gen_))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let f = &self.slab[idx as usize];
            if f.state == 0 || f.gen_ != gen_ {
                continue; // stale
            }
            let real = self.deadline(f);
            if real <= now {
                if !closed(f.state) {
                    self.expired += 1;
                }
                self.free_flow(idx);
            } else {
                self.timers.push(Reverse((real, idx, gen_)));
            }
        }
    }

    /// Updates the TCP state of flow `idx` for one packet.
    #[inline]
    fn on_packet(&mut self, idx: u32, dir: Dir, flags: u8, now: u64) {
        let f = &mut self.slab[idx as usize];
        if f.state == PLAIN_EST && flags & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) == 0 {
            f.last = now;
            return;
        }
        let old = *f;
        let old_deadline = self.deadline(&old);
        let mut s = old.state;
        if closed(s) {
            // Frozen until the consumer reopens it with a new SYN.
            if dir == Dir::Out
                && flags & (TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST) == TcpFlags::SYN
            {
                s = LIVE | SYN_OUT;
                self.created += 1;
                self.open += 1;
                self.nats[usize::from(old.nat)].created += 1;
                self.port_reopened(&old);
            } else {
                return;
            }
        } else if flags & TcpFlags::RST != 0 {
            s |= RST;
        } else {
            if dir == Dir::In
                && flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN | TcpFlags::ACK
            {
                s |= SYNACK_IN;
            }
            if dir == Dir::Out
                && flags & (TcpFlags::ACK | TcpFlags::SYN) == TcpFlags::ACK
                && s & SYNACK_IN != 0
            {
                s |= EST;
            }
            if flags & TcpFlags::FIN != 0 {
                s |= if dir == Dir::Out { FIN_OUT } else { FIN_IN };
            }
        }
        let f = &mut self.slab[idx as usize];
        f.state = s;
        f.last = now;
        if closed(s) && !closed(old.state) {
            self.closed += 1;
            self.open -= 1;
            self.port_closed(&old);
        }
        let f = self.slab[idx as usize];
        let new_deadline = self.deadline(&f);
        if new_deadline < old_deadline {
            let f = &mut self.slab[idx as usize];
            f.gen_ = f.gen_.wrapping_add(1);
            self.timers.push(Reverse((new_deadline, idx, f.gen_)));
        }
    }

    fn scope_id(&self, f: &Flow) -> u32 {
        let b = match self.cfg.reuse {
            ReuseScope::PerIp => 0,
            ReuseScope::PerBackend => self.backends[&f.b_ip] as usize,
        };
        self.scope_slots[b * MAX_NAT_IPS + usize::from(f.nat)]
    }

    fn port_closed(&mut self, f: &Flow) {
        let sid = self.scope_id(f) as usize;
        let s = &mut self.scopes[sid];
        s.in_use -= 1;
        s.held += 1;
        let n = &mut self.nats[usize::from(f.nat)];
        n.in_use -= 1;
        n.held += 1;
    }

    fn port_reopened(&mut self, f: &Flow) {
        let sid = self.scope_id(f) as usize;
        let s = &mut self.scopes[sid];
        s.in_use += 1;
        s.held -= 1;
        let n = &mut self.nats[usize::from(f.nat)];
        n.in_use += 1;
        n.held -= 1;
        n.peak = n.peak.max(n.in_use);
    }

    /// The backend index of backend `B` (0 with `per-ip`), made if new.
    fn backend_index(&mut self, b_ip: u32) -> usize {
        match self.cfg.reuse {
            ReuseScope::PerIp => {
                if self.scope_slots.is_empty() {
                    self.scope_slots.resize(MAX_NAT_IPS, NONE);
                }
                0
            }
            ReuseScope::PerBackend => {
                let next = self.backends.len() as u32;
                let b = *self.backends.entry(b_ip).or_insert(next);
                if b == next {
                    self.scope_slots
                        .resize((b as usize + 1) * MAX_NAT_IPS, NONE);
                }
                b as usize
            }
        }
    }

    /// Ports busy in the scope of backend `b` on NAT IP `nat`.
    fn load(&self, b: usize, nat: usize) -> u32 {
        match self.scope_slots[b * MAX_NAT_IPS + nat] {
            NONE => 0,
            sid => {
                let s = &self.scopes[sid as usize];
                s.in_use + s.held
            }
        }
    }

    /// The scope of backend `b` on NAT IP `nat`, made if new.
    fn scope_for(&mut self, b: usize, nat: usize) -> u32 {
        let slot = b * MAX_NAT_IPS + nat;
        if self.scope_slots[slot] == NONE {
            let blocks = match self.cfg.allocator {
                Allocator::Block(n) => {
                    let size = u32::from(n);
                    let count = self.range.div_ceil(size);
                    Some(Blocks {
                        size,
                        taken: Bitmap::new(count),
                        used: vec![0; count as usize],
                        cursor: 0,
                    })
                }
                _ => None,
            };
            self.scope_slots[slot] = self.scopes.len() as u32;
            self.scopes.push(Scope {
                ports: Bitmap::new(self.range),
                cursor: 0,
                in_use: 0,
                held: 0,
                blocks,
            });
            self.nats[nat].scopes += 1;
        }
        self.scope_slots[slot]
    }

    /// Takes a port (an offset in the range) in scope `sid` for host `(link, c_ip)`.
    fn take_port(&mut self, sid: u32, link: u32, c_ip: u32) -> Option<u32> {
        let s = &mut self.scopes[sid as usize];
        let off = match self.cfg.allocator {
            Allocator::Sequential => {
                let off = s.ports.find_from(s.cursor)?;
                s.cursor = off + 1;
                off
            }
            Allocator::Random { .. } => {
                let start = ((u64::from(self.rng.next_u32()) * u64::from(self.range)) >> 32) as u32;
                s.ports.find_from(start)?
            }
            Allocator::Block(_) => {
                let b = s.blocks.as_mut().expect("block scope");
                let range = self.range;
                let span = |blk: u16| {
                    let lo = u32::from(blk) * b.size;
                    (lo, (lo + b.size).min(range))
                };
                let key = (sid, link, c_ip);
                let mut found = None;
                if let Some(list) = self.owners.get(&key) {
                    // The newest block first (that is where fresh ports are), then the others.
                    for &blk in list.iter().rev() {
                        let (lo, hi) = span(blk);
                        if let Some(off) = s.ports.find_in(lo, hi) {
                            found = Some((blk, off));
                            break;
                        }
                    }
                }
                let (blk, off) = match found {
                    Some(x) => x,
                    None => {
                        let blk = b.taken.find_from(b.cursor)?;
                        b.taken.set(blk);
                        b.cursor = blk + 1;
                        self.owners.entry(key).or_default().push(blk as u16);
                        (blk as u16, span(blk as u16).0)
                    }
                };
                b.used[usize::from(blk)] += 1;
                off
            }
        };
        s.ports.set(off);
        s.in_use += 1;
        Some(off)
    }

    /// Returns the port of flow `f` to its scope.
    fn give_port(&mut self, f: &Flow) {
        let sid = self.scope_id(f);
        let off = u32::from(f.n_port) - u32::from(self.cfg.ports.lo);
        let s = &mut self.scopes[sid as usize];
        s.ports.clear(off);
        let n = &mut self.nats[usize::from(f.nat)];
        if closed(f.state) {
            s.held -= 1;
            n.held -= 1;
        } else {
            s.in_use -= 1;
            n.in_use -= 1;
        }
        if let Some(b) = s.blocks.as_mut() {
            let blk = off / b.size;
            let used = &mut b.used[blk as usize];
            *used -= 1;
            if *used == 0 {
                b.taken.clear(blk);
                let key = (sid, f.link, f.c_ip);
                if let Some(list) = self.owners.get_mut(&key) {
                    list.retain(|&x| u32::from(x) != blk);
                    if list.is_empty() {
                        self.owners.remove(&key);
                    }
                }
            }
        }
    }

    /// Picks a NAT IP and a port for a new flow and makes its record.
    fn open(&mut self, link: u32, t: FlowTuple, h: u64, now: u64) -> Option<u32> {
        let (c_ip, b_ip) = (u32::from(t.src), u32::from(t.dst));
        let b = self.backend_index(b_ip);
        let paired = self.cfg.selection == Selection::Paired;
        let first = if paired {
            self.hosts.get(&(link, c_ip)).map(|h| usize::from(h.nat))
        } else {
            None
        };
        // Candidates: the host's NAT IP first (paired), then by load, ties to the lowest index.
        let mut order = [(0u32, 0usize); MAX_NAT_IPS];
        let mut len = 0;
        for nat in 0..self.nats.len() {
            if Some(nat) != first {
                order[len] = (self.load(b, nat), nat);
                len += 1;
            }
        }
        order[..len].sort_unstable();
        let candidates = first
            .into_iter()
            .chain(order[..len].iter().map(|&(_, n)| n));
        let mut got = None;
        for nat in candidates {
            let sid = self.scope_for(b, nat);
            if let Some(off) = self.take_port(sid, link, c_ip) {
                got = Some((nat, off));
                break;
            }
        }
        let (nat, off) = got?;
        if paired {
            self.hosts
                .entry((link, c_ip))
                .or_insert(Host {
                    nat: nat as u8,
                    flows: 0,
                })
                .flows += 1;
        }
        let n = &mut self.nats[nat];
        n.in_use += 1;
        n.peak = n.peak.max(n.in_use);
        // Only a new port makes more busy: reopening a held one moves it from held to in use.
        n.busy_peak = n.busy_peak.max(n.in_use + n.held);
        n.flows += 1;
        n.created += 1;
        let flow = Flow {
            last: now,
            link,
            c_ip,
            b_ip,
            gen_: 0,
            c_port: t.sport,
            b_port: t.dport,
            n_port: (u32::from(self.cfg.ports.lo) + off) as u16,
            nat: nat as u8,
            state: LIVE | SYN_OUT,
        };
        let idx = if self.free_head != NONE {
            let i = self.free_head;
            let slot = &mut self.slab[i as usize];
            self.free_head = slot.link;
            *slot = Flow {
                gen_: slot.gen_,
                ..flow
            };
            i
        } else {
            self.slab.push(flow);
            (self.slab.len() - 1) as u32
        };
        self.fwd.insert(h, idx);
        let f = &self.slab[idx as usize];
        self.rev.insert(f.rev_hash(), idx);
        let dl = self.deadline(f);
        self.timers.push(Reverse((dl, idx, f.gen_)));
        self.created += 1;
        self.open += 1;
        self.live += 1;
        self.live_peak = self.live_peak.max(self.live);
        Some(idx)
    }

    /// Removes flow `idx`: tables, port, host, slot.
    fn free_flow(&mut self, idx: u32) {
        let f = self.slab[idx as usize];
        debug_assert!(f.state != 0);
        self.fwd.remove(f.fwd_hash(), idx);
        self.rev.remove(f.rev_hash(), idx);
        self.give_port(&f);
        if !closed(f.state) {
            self.open -= 1;
        }
        self.nats[usize::from(f.nat)].flows -= 1;
        if self.cfg.selection == Selection::Paired
            && let Some(h) = self.hosts.get_mut(&(f.link, f.c_ip))
        {
            h.flows -= 1;
            if h.flows == 0 {
                self.hosts.remove(&(f.link, f.c_ip));
            }
        }
        let slot = &mut self.slab[idx as usize];
        slot.state = 0;
        slot.gen_ = slot.gen_.wrapping_add(1);
        slot.link = self.free_head;
        self.free_head = idx;
        self.live -= 1;
    }

    /// Writes the RST answering the refused SYN of `frame` into `self.rst`.
    fn build_rst(&mut self, frame: &[u8], view: &Ipv4Tcp) {
        let t = view.tuple();
        let ack = view
            .seq(frame)
            .wrapping_add(1)
            .wrapping_add(view.payload_len() as u32);
        let r = &mut self.rst;
        r.clear();
        r.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        r.extend_from_slice(&t.dst.octets());
        r.extend_from_slice(&t.src.octets());
        r.extend_from_slice(&t.dport.to_be_bytes());
        r.extend_from_slice(&t.sport.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(&ack.to_be_bytes());
        r.extend_from_slice(&[0x50, TcpFlags::RST | TcpFlags::ACK, 0, 0, 0, 0, 0, 0]);
        match plsim_wire::classify_l3(r) {
            Ok(v) => plsim_wire::checksum::fill(r, &v),
            Err(_) => r.clear(),
        }
    }
}

#[cfg(test)]
mod tests;
