//! The Standard Load Balancer frontend forwarder of plsim: a sans-IO stage of the Private Link
//! packet path (DESIGN section 1).
//!
//! ```text
//! outbound  C:cp -> F:fp   --forward-->  C:cp -> B:bp   (then SNAT: src C:cp -> N:np)
//! return    B:bp -> C:cp   --reply---->  F:fp -> C:cp   (after SNAT restored C:cp)
//! ```
//!
//! [`Lb::forward`] matches the frontend IP and port against the [rules](Rule), picks a backend of
//! the rule's pool for a new flow and remembers it, and rewrites the destination; [`Lb::reply`]
//! finds the flow by its link id and its consumer and backend ends and rewrites the source back
//! to the frontend. No rule: [`DropReason::NoRule`]; no healthy backend:
//! [`DropReason::NoBackend`]; a reply of no flow: [`DropReason::NoFlow`]. Every drop is counted.
//!
//! # Flows
//!
//! * A flow is keyed by its link id and its consumer-side 4-tuple (C:cp -> F:fp); its **first
//!   packet, whatever its flags, picks the backend** (the SNAT stage after this one decides
//!   whether a non-SYN may open a flow). It stays on that backend for its whole life: health and
//!   pool changes only affect new flows.
//! * A flow ends when it has been idle (no packet either way) for
//!   [`LbConfig::idle_timeout`] (4 minutes by default, as Azure), when its connection's link is
//!   [forgotten](Lb::forget_link), or when its backend goes down under
//!   [`OnBackendDown::Reset`]. **FIN and RST do not end it early**: the SNAT stage owns TCP
//!   state and its closing timers, and a late retransmission must reach the same backend. Give
//!   this stage an idle timeout at least as long as the SNAT stage's longest timer.
//! * One exception to stickiness: a SYN (without ACK) for a flow whose backend is down, or in no
//!   pool any more, is a new connection reusing the tuple, and it picks a backend afresh.
//! * A backend removed from its pool keeps its flows until they end (Azure keeps them until
//!   idle).
//! * Expiry is an O(due) heap, never a scan: [`Lb::expire`] does it all, and each new flow also
//!   expires up to two due entries, so the table stays bounded even without `expire` calls.
//!   A packet that finds its flow idle past the timeout ends it too, so the verdicts do not
//!   depend on when `expire` is called.
//! * Two flows of one link may not share both their consumer end and their backend end (C:cp and
//!   B:bp): the reply could not tell them apart. That takes one consumer port to two frontend
//!   ports of rules mapping to the same backend port of one pool; the second flow is dropped as
//!   [`DropReason::NoBackend`] and counted in [`FlowStats::ambiguous`].
//!
//! The flow table is a [`plsim_flowtab::FlowTable`], the one the SNAT stage uses too: a slab of
//! 40-byte flow records, two prefetchable indexes (the consumer-side key and the return key) and
//! the lazy deadline heap.
//!
//! Everything is deterministic: the hashes have fixed seeds (built on [`plsim_wire::hash`]), so a
//! replay picks the same backends on every run and every machine. The packet path allocates
//! nothing but the amortised growth of the flow table.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod hash;
mod table;

use std::net::Ipv4Addr;

pub use config::{
    Backend, ConfigError, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAGLEV_TABLE_SIZE, Distribution, Frontend,
    Hashing, LbConfig, MAX_MAGLEV_TABLE_SIZE, OnBackendDown, Pool, Rule, RuleKind,
};
pub use plsim_wire::{DropCounts, DropReason, FlowTuple, Ipv4Tcp, LinkId, SimTime};

use table::{Flow, FlowTable};

/// The forwarder: rules, pools, backend health, the flow table and the counters.
#[derive(Debug)]
pub struct Lb {
    /// Sorted by IP.
    frontends: Vec<FrontendState>,
    pools: Vec<PoolState>,
    backends: Vec<BackendState>,
    rules: Vec<RuleState>,
    table: FlowTable,
    idle_ns: u64,
    on_down: OnBackendDown,
    drops: DropCounts,
    flow_stats: FlowStats,
}

#[derive(Debug)]
struct FrontendState {
    ip: u32,
    /// The HA-ports rule, if any (then `ports` is empty).
    ha: Option<u16>,
    /// `(frontend port, rule)`, sorted by port.
    ports: Vec<(u16, u16)>,
}

#[derive(Debug)]
struct PoolState {
    name: String,
    /// Backend ids, in pool order.
    members: Vec<u32>,
}

#[derive(Debug)]
struct BackendState {
    ip: Ipv4Addr,
    up: bool,
    /// How many pools it is in.
    memberships: u32,
    counters: BackendStats,
}

#[derive(Debug)]
struct RuleState {
    frontend: Ipv4Addr,
    kind: RuleKind,
    pool: u32,
    distribution: Distribution,
    hashing: Hashing,
    /// The healthy members of the pool (backend ids), in pool order.
    healthy: Vec<u32>,
    /// The Maglev table (backend ids), when the rule uses Maglev; empty with no healthy backend.
    maglev: Vec<u32>,
    hits: u64,
    flows: u64,
}

/// Where [`Lb::forward`] sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The backend (B), now the packet's destination.
    pub backend: Ipv4Addr,
    /// The backend port (bp), now the packet's destination port.
    pub port: u16,
    /// True when this packet opened the flow (it picked the backend).
    pub new_flow: bool,
}

/// A flow the load balancer removed because its backend went down under
/// [`OnBackendDown::Reset`]: the caller resets it (frees its SNAT port, sends RSTs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosedFlow {
    /// The connection it belonged to.
    pub link: LinkId,
    /// The flow as the consumer sent it to this stage (C:cp -> F:fp).
    pub consumer: FlowTuple,
    /// The backend it was on.
    pub backend: Ipv4Addr,
    /// The backend port.
    pub backend_port: u16,
}

impl ClosedFlow {
    /// The flow as it left this stage towards the SNAT stage (C:cp -> B:bp).
    pub fn forwarded(&self) -> FlowTuple {
        FlowTuple {
            dst: self.backend,
            dport: self.backend_port,
            ..self.consumer
        }
    }
}

/// The counters of one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendStats {
    /// The backend's address.
    pub ip: Ipv4Addr,
    /// Whether it is marked up.
    pub up: bool,
    /// Flows it was given.
    pub flows: u64,
    /// Its flows still in the table.
    pub active_flows: u64,
    /// Packets forwarded to it.
    pub packets: u64,
    /// Reply packets from it rewritten back to the frontend.
    pub reply_packets: u64,
}

/// The counters of one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleStats {
    /// The rule's frontend IP.
    pub frontend: Ipv4Addr,
    /// The rule's ports.
    pub kind: RuleKind,
    /// Packets forwarded under the rule (new and existing flows).
    pub hits: u64,
    /// Flows it opened.
    pub flows: u64,
}

/// The flow table's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows opened.
    pub created: u64,
    /// Flows ended by the idle timeout.
    pub expired: u64,
    /// Flows ended because their backend went down under [`OnBackendDown::Reset`].
    pub reset: u64,
    /// Flows ended by [`Lb::forget_link`].
    pub forgotten: u64,
    /// Flows replaced by a SYN that picked a new backend (their backend was down or out of
    /// every pool).
    pub replaced: u64,
    /// New flows refused because their reply would be ambiguous (see the crate docs).
    pub ambiguous: u64,
    /// Flows in the table now.
    pub active: u64,
}

/// A snapshot of every counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbStats {
    /// Per backend, in order of first appearance in the configuration (then of addition).
    pub backends: Vec<BackendStats>,
    /// Per rule, in configuration order.
    pub rules: Vec<RuleStats>,
    /// The flow table.
    pub flows: FlowStats,
    /// Packets dropped, by reason (`no_rule`, `no_backend`, `no_flow`).
    pub drops: DropCounts,
}

impl Lb {
    /// Builds a load balancer, every backend up and no flow.
    pub fn new(cfg: LbConfig) -> Result<Lb, ConfigError> {
        if cfg.idle_timeout.is_zero() {
            return Err(ConfigError::ZeroIdleTimeout);
        }
        if cfg.rules.len() > usize::from(u16::MAX) {
            return Err(ConfigError::TooManyRules(cfg.rules.len()));
        }
        let mut frontends: Vec<FrontendState> = Vec::with_capacity(cfg.frontends.len());
        for f in &cfg.frontends {
            if !config::usable(f.ip) {
                return Err(ConfigError::BadAddress(f.ip));
            }
            if frontends.iter().any(|s| s.ip == u32::from(f.ip)) {
                return Err(ConfigError::DuplicateFrontend(f.ip));
            }
            frontends.push(FrontendState {
                ip: u32::from(f.ip),
                ha: None,
                ports: Vec::new(),
            });
        }
        frontends.sort_by_key(|f| f.ip);

        let mut lb = Lb {
            frontends,
            pools: Vec::with_capacity(cfg.pools.len()),
            backends: Vec::new(),
            rules: Vec::with_capacity(cfg.rules.len()),
            table: FlowTable::default(),
            idle_ns: u64::try_from(cfg.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
            on_down: cfg.on_backend_down,
            drops: DropCounts::default(),
            flow_stats: FlowStats::default(),
        };
        for p in &cfg.pools {
            if lb.pools.iter().any(|s| s.name == p.name) {
                return Err(ConfigError::DuplicatePool(p.name.clone()));
            }
            let mut members = Vec::with_capacity(p.backends.len());
            for b in &p.backends {
                if !config::usable(b.ip) {
                    return Err(ConfigError::BadAddress(b.ip));
                }
                let id = lb.backend_id_or_insert(b.ip);
                if members.contains(&id) {
                    return Err(ConfigError::DuplicateBackend {
                        pool: p.name.clone(),
                        ip: b.ip,
                    });
                }
                members.push(id);
                lb.backends[id as usize].memberships += 1;
            }
            lb.pools.push(PoolState {
                name: p.name.clone(),
                members,
            });
        }
        for (i, r) in cfg.rules.iter().enumerate() {
            let Some(fe) = lb.frontend_index(r.frontend) else {
                return Err(ConfigError::UnknownFrontend {
                    rule: i,
                    ip: r.frontend,
                });
            };
            let Some(pool) = lb.pools.iter().position(|p| p.name == r.pool) else {
                return Err(ConfigError::UnknownPool(r.pool.clone()));
            };
            if let Hashing::Maglev { table_size } = r.hashing {
                Hashing::maglev(table_size)?;
            }
            let fe = &mut lb.frontends[fe];
            match r.kind {
                RuleKind::HaPorts => {
                    if fe.ha.is_some() || !fe.ports.is_empty() {
                        return Err(ConfigError::HaPortsConflict(r.frontend));
                    }
                    fe.ha = Some(i as u16);
                }
                RuleKind::Port {
                    frontend_port,
                    backend_port,
                } => {
                    if frontend_port == 0 || backend_port == 0 {
                        return Err(ConfigError::ZeroPort(i));
                    }
                    if fe.ha.is_some() {
                        return Err(ConfigError::HaPortsConflict(r.frontend));
                    }
                    match fe.ports.binary_search_by_key(&frontend_port, |&(p, _)| p) {
                        Ok(at) => {
                            return Err(ConfigError::DuplicateRule {
                                first: usize::from(fe.ports[at].1),
                                second: i,
                                frontend: r.frontend,
                                port: frontend_port,
                            });
                        }
                        Err(at) => fe.ports.insert(at, (frontend_port, i as u16)),
                    }
                }
            }
            lb.rules.push(RuleState {
                frontend: r.frontend,
                kind: r.kind,
                pool: pool as u32,
                distribution: r.distribution,
                hashing: r.hashing,
                healthy: Vec::new(),
                maglev: Vec::new(),
                hits: 0,
                flows: 0,
            });
        }
        for r in 0..lb.rules.len() {
            lb.rebuild_rule(r);
        }
        Ok(lb)
    }

    /// Forwards one consumer packet C:cp -> F:fp of connection `link`: rewrites its destination
    /// to the flow's backend B:bp (checksums updated incrementally, `view` kept in step).
    ///
    /// A packet of a known flow goes to that flow's backend. Any other packet opens a flow: it
    /// must match a rule ([`DropReason::NoRule`]) whose pool has a healthy backend
    /// ([`DropReason::NoBackend`]). A dropped packet is left unchanged.
    // Always inlined: called out of line, its `Result<Forwarded, _>` was packed through the
    // stack and read back across two stores (a stalled store-to-load forward, about a seventh
    // of the stage's time at 1M flows), even where the caller drops it.
    #[inline(always)]
    pub fn forward(
        &mut self,
        link: LinkId,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<Forwarded, DropReason> {
        let t = view.tuple();
        let (client, frontend) = (u32::from(t.src), u32::from(t.dst));
        let h = fwd_hash(link, t);
        let now_ns = now.as_nanos();
        if let Some(slot) = self
            .table
            .find_fwd(h, |f| f.fwd_is(link.0, client, t.sport, frontend, t.dport))
        {
            let f = self.table.get_mut(slot);
            let b = &mut self.backends[f.backend as usize];
            if f.deadline(self.idle_ns) <= now_ns {
                // Idle past the timeout, not yet collected: it has ended.
                self.remove_slot(slot);
                self.flow_stats.expired += 1;
            } else if !(view.is_syn() && !(b.up && b.memberships > 0)) {
                f.last_seen = f.last_seen.max(now_ns);
                b.counters.packets += 1;
                self.rules[usize::from(f.rule)].hits += 1;
                let (ip, port) = (Ipv4Addr::from(f.backend_ip), f.bport);
                view.set_destination(frame, ip, port);
                return Ok(Forwarded {
                    backend: ip,
                    port,
                    new_flow: false,
                });
            } else {
                // A new connection on the tuple of a flow whose backend is gone: pick afresh.
                self.remove_slot(slot);
                self.flow_stats.replaced += 1;
            }
        }
        self.expire_budget(now_ns, 2);
        let (rule, backend, bport) = match self.pick_inner(link.0, t, h) {
            Ok(picked) => picked,
            Err(reason) => {
                self.drops.add(reason);
                return Err(reason);
            }
        };
        let backend_ip = u32::from(self.backends[backend as usize].ip);
        let rh = hash::reply(link.0, client, t.sport, backend_ip, bport);
        if self
            .table
            .find_rev(rh, |f| f.rev_is(link.0, client, t.sport, backend_ip, bport))
            .is_some()
        {
            self.flow_stats.ambiguous += 1;
            self.drops.add(DropReason::NoBackend);
            return Err(DropReason::NoBackend);
        }
        let flow = Flow {
            link: link.0,
            client,
            frontend,
            backend,
            backend_ip,
            cport: t.sport,
            fport: t.dport,
            bport,
            rule,
            last_seen: now_ns,
            generation: 0,
        };
        self.table
            .insert_hashed(flow, h, rh, flow.deadline(self.idle_ns));
        self.flow_stats.created += 1;
        let r = &mut self.rules[usize::from(rule)];
        r.hits += 1;
        r.flows += 1;
        let c = &mut self.backends[backend as usize].counters;
        c.flows += 1;
        c.active_flows += 1;
        c.packets += 1;
        let ip = Ipv4Addr::from(backend_ip);
        view.set_destination(frame, ip, bport);
        Ok(Forwarded {
            backend: ip,
            port: bport,
            new_flow: true,
        })
    }

    /// Rewrites one reply B:bp -> C:cp of connection `link` (the SNAT stage has restored the
    /// consumer as its destination) to come from the frontend, F:fp -> C:cp, and refreshes the
    /// flow. A reply of no forwarded flow is dropped as [`DropReason::NoFlow`], unchanged.
    #[inline]
    pub fn reply(
        &mut self,
        link: LinkId,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<(), DropReason> {
        let t = view.tuple();
        let (backend_ip, client) = (u32::from(t.src), u32::from(t.dst));
        let rh = rev_hash(link, t);
        let Some(slot) = self.table.find_rev(rh, |f| {
            f.rev_is(link.0, client, t.dport, backend_ip, t.sport)
        }) else {
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        };
        let f = self.table.get_mut(slot);
        let now_ns = now.as_nanos();
        if f.deadline(self.idle_ns) <= now_ns {
            self.remove_slot(slot);
            self.flow_stats.expired += 1;
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        }
        f.last_seen = f.last_seen.max(now_ns);
        self.backends[f.backend as usize].counters.reply_packets += 1;
        view.set_source(frame, Ipv4Addr::from(f.frontend), f.fport);
        Ok(())
    }

    /// Prefetches what [`forward`](Lb::forward) of this packet will read first: the bucket of
    /// its flow in the forward index (the hash is the one `forward` computes). Call it for the
    /// packets of a batch some packets ahead of forwarding them; changes nothing.
    #[inline]
    pub fn prefetch_forward(&self, link: LinkId, view: &Ipv4Tcp) {
        self.table.prefetch_fwd(fwd_hash(link, view.tuple()));
    }

    /// Prefetches what [`reply`](Lb::reply) of this packet (B:bp -> C:cp) will read first: the
    /// bucket of its flow in the return index. Changes nothing.
    #[inline]
    pub fn prefetch_reply(&self, link: LinkId, view: &Ipv4Tcp) {
        self.table.prefetch_rev(rev_hash(link, view.tuple()));
    }

    /// Makes room for `additional` more flows without growing the table on the packet path.
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional);
    }

    /// Heap bytes of the flow table (slab, both indexes, expiry heap; capacities).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    /// The backend and port a new flow C:cp -> F:fp of `link` would get now (what
    /// [`forward`](Lb::forward) would pick for it if no flow had this tuple). Changes nothing.
    pub fn pick(&self, link: LinkId, consumer: FlowTuple) -> Result<(Ipv4Addr, u16), DropReason> {
        let h = hash::flow(
            link.0,
            u32::from(consumer.src),
            consumer.sport,
            u32::from(consumer.dst),
            consumer.dport,
        );
        self.pick_inner(link.0, consumer, h)
            .map(|(_, b, port)| (self.backends[b as usize].ip, port))
    }

    /// The backend and port of the live flow C:cp -> F:fp of `link`, if there is one.
    pub fn flow(&self, link: LinkId, consumer: FlowTuple) -> Option<(Ipv4Addr, u16)> {
        let (c, f) = (u32::from(consumer.src), u32::from(consumer.dst));
        let h = hash::flow(link.0, c, consumer.sport, f, consumer.dport);
        let slot = self.table.find_fwd(h, |x| {
            x.fwd_is(link.0, c, consumer.sport, f, consumer.dport)
        })?;
        let flow = self.table.get(slot);
        Some((Ipv4Addr::from(flow.backend_ip), flow.bport))
    }

    /// Marks a backend up or down (a health probe's verdict, or a scenario event), in every pool
    /// it is in. A down backend gets no new flow. Its existing flows continue under
    /// [`OnBackendDown::Keep`]; under [`OnBackendDown::Reset`] marking it down removes them and
    /// returns them, in table order, for the caller to reset (the list is empty otherwise).
    /// Flows idle at `now` are expired first, so none of them is returned.
    pub fn set_backend_up(
        &mut self,
        ip: Ipv4Addr,
        up: bool,
        now: SimTime,
    ) -> Result<Vec<ClosedFlow>, ConfigError> {
        let id = self.backend_id(ip).ok_or(ConfigError::UnknownBackend(ip))?;
        self.expire(now);
        let b = &mut self.backends[id as usize];
        if b.up == up {
            return Ok(Vec::new());
        }
        b.up = up;
        b.counters.up = up;
        self.rebuild_rules_with(id);
        if up || self.on_down == OnBackendDown::Keep {
            return Ok(Vec::new());
        }
        let slots = self.table.live_slots(|f| f.backend == id);
        let closed = slots
            .into_iter()
            .map(|s| {
                let f = self.remove_slot(s);
                self.flow_stats.reset += 1;
                closed_flow(&f)
            })
            .collect();
        Ok(closed)
    }

    /// Adds a backend to a pool (up, if the load balancer has not seen it before; with its
    /// current health otherwise). New flows of the pool's rules may go to it; existing flows
    /// stay where they are.
    pub fn add_backend(&mut self, pool: &str, ip: Ipv4Addr) -> Result<(), ConfigError> {
        if !config::usable(ip) {
            return Err(ConfigError::BadAddress(ip));
        }
        let p = self.pool_index(pool)?;
        let id = self.backend_id_or_insert(ip);
        if self.pools[p].members.contains(&id) {
            return Err(ConfigError::AlreadyMember {
                pool: pool.to_owned(),
                ip,
            });
        }
        self.pools[p].members.push(id);
        self.backends[id as usize].memberships += 1;
        self.rebuild_rules_of_pool(p);
        Ok(())
    }

    /// Removes a backend from a pool. It gets no new flow of the pool's rules; its existing
    /// flows continue until they end (Azure keeps them until idle). Its counters remain.
    pub fn remove_backend(&mut self, pool: &str, ip: Ipv4Addr) -> Result<(), ConfigError> {
        let p = self.pool_index(pool)?;
        let not_member = || ConfigError::NotMember {
            pool: pool.to_owned(),
            ip,
        };
        let id = self.backend_id(ip).ok_or_else(not_member)?;
        let at = self.pools[p]
            .members
            .iter()
            .position(|&m| m == id)
            .ok_or_else(not_member)?;
        self.pools[p].members.remove(at);
        self.backends[id as usize].memberships -= 1;
        self.rebuild_rules_of_pool(p);
        Ok(())
    }

    /// Ends every flow idle for the idle timeout or longer at `now`; returns how many.
    /// The work is proportional to the entries due, not to the table.
    pub fn expire(&mut self, now: SimTime) -> usize {
        self.expire_budget(now.as_nanos(), usize::MAX)
    }

    /// Ends every flow of a connection (the control plane tore it down: it left `Approved`);
    /// returns how many. This scans the table: it is a control-plane event, not a packet.
    pub fn forget_link(&mut self, link: LinkId) -> usize {
        let slots = self.table.live_slots(|f| f.link == link.0);
        for &s in &slots {
            self.remove_slot(s);
        }
        self.flow_stats.forgotten += slots.len() as u64;
        slots.len()
    }

    /// The number of flows in the table.
    pub fn active_flows(&self) -> usize {
        self.table.len()
    }

    /// The packets dropped so far, by reason.
    pub fn drops(&self) -> &DropCounts {
        &self.drops
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> LbStats {
        LbStats {
            backends: self.backends.iter().map(|b| b.counters).collect(),
            rules: self
                .rules
                .iter()
                .map(|r| RuleStats {
                    frontend: r.frontend,
                    kind: r.kind,
                    hits: r.hits,
                    flows: r.flows,
                })
                .collect(),
            flows: FlowStats {
                active: self.table.len() as u64,
                ..self.flow_stats
            },
            drops: self.drops,
        }
    }

    // ---- internals ----

    /// The rule matching F:fp, the backend id a new flow with hash `h` gets, and its port.
    #[inline]
    fn pick_inner(&self, link: u32, t: FlowTuple, h: u64) -> Result<(u16, u32, u16), DropReason> {
        let frontend = u32::from(t.dst);
        let fe = self
            .frontends
            .binary_search_by_key(&frontend, |f| f.ip)
            .map_err(|_| DropReason::NoRule)?;
        let fe = &self.frontends[fe];
        let rule = match fe.ha {
            Some(r) => r,
            None => match fe.ports.binary_search_by_key(&t.dport, |&(p, _)| p) {
                Ok(at) => fe.ports[at].1,
                Err(_) => return Err(DropReason::NoRule),
            },
        };
        let r = &self.rules[usize::from(rule)];
        let h = match r.distribution {
            Distribution::FiveTuple => h,
            Distribution::SourceIp => hash::source_ip(link, u32::from(t.src), frontend),
            Distribution::SourceIpProtocol => {
                hash::source_ip_protocol(link, u32::from(t.src), frontend)
            }
        };
        let backend = match r.hashing {
            Hashing::Plain if !r.healthy.is_empty() => r.healthy[hash::scale(h, r.healthy.len())],
            Hashing::Maglev { .. } if !r.maglev.is_empty() => {
                r.maglev[hash::scale(h, r.maglev.len())]
            }
            _ => return Err(DropReason::NoBackend),
        };
        let port = match r.kind {
            RuleKind::HaPorts => t.dport,
            RuleKind::Port { backend_port, .. } => backend_port,
        };
        Ok((rule, backend, port))
    }

    fn expire_budget(&mut self, now_ns: u64, budget: usize) -> usize {
        let (backends, idle_ns) = (&mut self.backends, self.idle_ns);
        let n = self.table.expire(
            now_ns,
            budget,
            |f| f.deadline(idle_ns),
            |_, f| backends[f.backend as usize].counters.active_flows -= 1,
        );
        self.flow_stats.expired += n as u64;
        n
    }

    fn remove_slot(&mut self, slot: u32) -> Flow {
        let f = self.table.remove(slot);
        self.backends[f.backend as usize].counters.active_flows -= 1;
        f
    }

    fn frontend_index(&self, ip: Ipv4Addr) -> Option<usize> {
        self.frontends
            .binary_search_by_key(&u32::from(ip), |f| f.ip)
            .ok()
    }

    fn pool_index(&self, name: &str) -> Result<usize, ConfigError> {
        self.pools
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| ConfigError::UnknownPool(name.to_owned()))
    }

    fn backend_id(&self, ip: Ipv4Addr) -> Option<u32> {
        self.backends
            .iter()
            .position(|b| b.ip == ip)
            .map(|i| i as u32)
    }

    fn backend_id_or_insert(&mut self, ip: Ipv4Addr) -> u32 {
        self.backend_id(ip).unwrap_or_else(|| {
            self.backends.push(BackendState {
                ip,
                up: true,
                memberships: 0,
                counters: BackendStats {
                    ip,
                    up: true,
                    flows: 0,
                    active_flows: 0,
                    packets: 0,
                    reply_packets: 0,
                },
            });
            (self.backends.len() - 1) as u32
        })
    }

    fn rebuild_rules_with(&mut self, backend: u32) {
        for p in 0..self.pools.len() {
            if self.pools[p].members.contains(&backend) {
                self.rebuild_rules_of_pool(p);
            }
        }
    }

    fn rebuild_rules_of_pool(&mut self, pool: usize) {
        for r in 0..self.rules.len() {
            if self.rules[r].pool as usize == pool {
                self.rebuild_rule(r);
            }
        }
    }

    /// Recomputes a rule's healthy list and Maglev table from its pool and the backends' health.
    fn rebuild_rule(&mut self, r: usize) {
        let rule = &mut self.rules[r];
        let pool = &self.pools[rule.pool as usize];
        rule.healthy.clear();
        rule.healthy.extend(
            pool.members
                .iter()
                .copied()
                .filter(|&id| self.backends[id as usize].up),
        );
        if let Hashing::Maglev { table_size } = rule.hashing {
            let members: Vec<(u32, Ipv4Addr)> = rule
                .healthy
                .iter()
                .map(|&id| (id, self.backends[id as usize].ip))
                .collect();
            hash::maglev_fill(&mut rule.maglev, table_size, &members);
        }
    }
}

/// The forward index's hash of a packet C:cp -> F:fp of `link` (as [`Lb::forward`] computes it).
#[inline]
fn fwd_hash(link: LinkId, t: FlowTuple) -> u64 {
    hash::flow(link.0, u32::from(t.src), t.sport, u32::from(t.dst), t.dport)
}

/// The return index's hash of a reply B:bp -> C:cp of `link` (as [`Lb::reply`] computes it).
#[inline]
fn rev_hash(link: LinkId, t: FlowTuple) -> u64 {
    hash::reply(link.0, u32::from(t.dst), t.dport, u32::from(t.src), t.sport)
}

fn closed_flow(f: &Flow) -> ClosedFlow {
    ClosedFlow {
        link: LinkId(f.link),
        consumer: FlowTuple {
            src: Ipv4Addr::from(f.client),
            sport: f.cport,
            dst: Ipv4Addr::from(f.frontend),
            dport: f.fport,
        },
        backend: Ipv4Addr::from(f.backend_ip),
        backend_port: f.bport,
    }
}

#[cfg(test)]
mod tests {
    use plsim_flowtab::Record;
    use plsim_wire::build::{TcpSegment, tuple};
    use plsim_wire::{LinkType, TcpFlags, classify};

    use super::*;

    /// The prefetch hooks hash a packet exactly as `forward` and `reply` do, so they prefetch the
    /// very bucket the lookup reads (and its first entry is the flow's); they change nothing.
    #[test]
    fn prefetch_targets_the_lookups_bucket() {
        let f = Ipv4Addr::new(10, 100, 0, 4);
        let mut lb = Lb::new(LbConfig {
            frontends: vec![Frontend { ip: f }],
            pools: vec![Pool::new(
                "p",
                (1..=4).map(|i| Ipv4Addr::new(192, 168, 1, i)),
            )],
            rules: vec![Rule::port(f, 443, 8443, "p")],
            ..LbConfig::default()
        })
        .unwrap();
        // On an empty table (no bucket at all) the hooks do nothing.
        let probe =
            TcpSegment::new(tuple(Ipv4Addr::new(10, 0, 0, 1), 1, f, 443), TcpFlags::SYN).to_vec();
        let pv = classify(LinkType::Ethernet, &probe, probe.len()).unwrap();
        lb.prefetch_forward(LinkId(1), &pv);
        lb.prefetch_reply(LinkId(1), &pv);
        for i in 0..500u16 {
            let link = LinkId(u32::from(i % 3));
            let t = tuple(Ipv4Addr::new(10, 0, (i / 100) as u8, 1), 1000 + i, f, 443);
            let mut fr = TcpSegment::new(t, TcpFlags::SYN).to_vec();
            let mut v = classify(LinkType::Ethernet, &fr, fr.len()).unwrap();
            let before = lb.stats();
            lb.prefetch_forward(link, &v);
            lb.prefetch_reply(link, &v);
            assert_eq!(lb.stats(), before);
            let h = fwd_hash(link, v.tuple());
            let fw = lb.forward(link, &mut fr, &mut v, SimTime::ZERO).unwrap();
            let slot = lb
                .table
                .find_fwd(h, |x| {
                    x.fwd_is(link.0, u32::from(t.src), t.sport, u32::from(f), 443)
                })
                .unwrap();
            let flow = *lb.table.get(slot);
            assert_eq!(h, flow.fwd_hash());
            assert_eq!(lb.table.candidate_fwd(h), Some(slot));
            // The backend's reply B:8443 -> C:cp.
            let r = tuple(fw.backend, 8443, t.src, t.sport);
            assert_eq!(fw.port, 8443);
            assert_eq!(rev_hash(link, r), flow.rev_hash());
            assert_eq!(lb.table.candidate_rev(rev_hash(link, r)), Some(slot));
        }
        assert_eq!(lb.active_flows(), 500);
        assert_eq!(size_of::<table::Flow>(), 40);
    }

    /// Under a long random mix of new flows, packets, replies, expiry, backends going down
    /// (with `Reset`) and links forgotten, the flow table keeps its invariants (both indexes,
    /// one current timer per flow never later than its idle deadline, the free list) and the
    /// backends' active counts add up to it.
    #[test]
    fn the_table_stays_consistent_under_churn() {
        use plsim_wire::hash::splitmix64;

        let f = Ipv4Addr::new(10, 100, 0, 4);
        let backend = |i: u64| Ipv4Addr::new(192, 168, 1, 1 + i as u8);
        for seed in 0..4u64 {
            let mut lb = Lb::new(LbConfig {
                frontends: vec![Frontend { ip: f }],
                pools: vec![Pool::new("p", (0..4).map(backend))],
                rules: vec![Rule::ha_ports(f, "p")],
                idle_timeout: std::time::Duration::from_secs(5),
                on_backend_down: OnBackendDown::Reset,
            })
            .unwrap();
            let mut now = SimTime::ZERO;
            for step in 0..3_000u64 {
                let r = splitmix64(seed << 32 | step);
                let link = LinkId((r % 3) as u32);
                let c = tuple(
                    Ipv4Addr::new(10, 0, 0, (r >> 8) as u8 % 4),
                    1000 + (r >> 16) as u16 % 64,
                    f,
                    443,
                );
                match (r >> 32) % 16 {
                    0..=8 => {
                        let flags = if r >> 40 & 1 == 0 {
                            TcpFlags::SYN
                        } else {
                            TcpFlags::ACK
                        };
                        let mut fr = TcpSegment::new(c, flags).to_vec();
                        let mut v = classify(LinkType::Ethernet, &fr, fr.len()).unwrap();
                        if let Ok(fw) = lb.forward(link, &mut fr, &mut v, now) {
                            let back = tuple(fw.backend, fw.port, c.src, c.sport);
                            let mut fr = TcpSegment::new(back, TcpFlags::ACK).to_vec();
                            let mut v = classify(LinkType::Ethernet, &fr, fr.len()).unwrap();
                            lb.reply(link, &mut fr, &mut v, now).unwrap();
                        }
                    }
                    9..=12 => now = now + std::time::Duration::from_millis(r >> 48 & 2047),
                    13 => {
                        lb.expire(now);
                    }
                    14 => {
                        let up = r >> 44 & 1 == 0;
                        lb.set_backend_up(backend(r >> 45 & 3), up, now).unwrap();
                    }
                    _ => {
                        lb.forget_link(link);
                    }
                }
                let idle = lb.idle_ns;
                lb.table.assert_consistent(|f| f.deadline(idle));
                let active: u64 = lb.stats().backends.iter().map(|b| b.active_flows).sum();
                assert_eq!(active, lb.active_flows() as u64);
            }
        }
    }
}
