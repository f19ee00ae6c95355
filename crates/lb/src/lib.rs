//! The Standard Load Balancer frontend forwarder of plsim: a sans-IO stage of the Private Link
//! packet path (`docs/architecture.md`, section 1).
//!
//! ```text
//! forward   C:cp -> F:fp   --forward-->  C:cp -> B:bp   (then SNAT: src C:cp -> N:np)
//! reverse   B:bp -> C:cp   --reverse-->  F:fp -> C:cp   (after SNAT restored C:cp)
//! ```
//!
//! [`Lb::forward`] matches the frontend IP and port against the [rules](Rule), picks a backend of
//! the rule's pool for a new flow and remembers it, and rewrites the destination; [`Lb::reverse`]
//! finds the flow by its link id and its consumer and backend ends and rewrites the source back
//! to the frontend. No rule: [`DropReason::NoRule`]; no healthy backend:
//! [`DropReason::NoBackend`]; a reply of no flow: [`DropReason::NoFlow`]. Every drop is counted.
//!
//! # Flows
//!
//! * A flow is keyed by its link id and its consumer-side 4-tuple (C:cp -> F:fp); its **first
//!   packet, whatever its flags, picks the backend** (the SNAT stage after this one decides
//!   whether a non-SYN may open a flow). It stays on that backend for its whole life: health
//!   changes only affect new flows.
//! * A flow ends when it has been idle (no packet either way) for
//!   [`LbConfig::idle_timeout`] (4 minutes by default, as Azure), when its connection's link is
//!   [forgotten](Lb::forget_link), or when its backend goes down under
//!   [`OnBackendDown::Reset`]. **FIN and RST do not end it early**: the SNAT stage owns TCP
//!   state and its closing timers, and a late retransmission must reach the same backend. Give
//!   this stage an idle timeout at least as long as the SNAT stage's longest timer.
//! * One exception to stickiness: a SYN (without ACK) for a flow whose backend is down is a new
//!   connection reusing the tuple, and it picks a backend afresh.
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
//!
//! # Layout of the crate
//!
//! `forward` is the packet path ([`Lb::forward`], [`Lb::reverse`] and their prefetch hooks),
//! `rules` the rule set (frontends, pools, backends and their health, the choice of a backend
//! for a new flow), `table` the flow record, `hash` the hashes and the Maglev table, `stats`
//! the counters, `config` the configuration; this file holds the forwarder, its construction
//! and its control-plane calls.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod forward;
mod hash;
mod part;
mod rules;
mod stats;
mod table;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

pub use config::{
    Backend, ConfigError, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAGLEV_TABLE_SIZE, Distribution, Frontend,
    Hashing, LbConfig, MAX_MAGLEV_TABLE_SIZE, OnBackendDown, Pool, Rule, RuleKind,
};
pub use forward::Forwarded;
pub use part::{Choice, Ended, LbFlow};
pub use plsim_wire::{DropCounts, DropReason, FlowTuple, Ipv4Tcp, LinkId, SimTime};
pub use stats::{BackendStats, FlowStats, LbStats, RuleStats};

use rules::{BackendState, FrontendState, PoolState, RuleState};
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

    /// Makes room for `additional` more flows without growing the table on the packet path.
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional);
    }

    /// Heap bytes of the flow table (slab, both indexes, expiry heap; capacities).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
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
        if self.backend_id(ip).is_none() {
            return Err(ConfigError::UnknownBackend(ip));
        }
        self.expire(now);
        let Some(id) = self.set_health(ip, up)? else {
            return Ok(Vec::new());
        };
        let slots = self.table.live_slots(|f| f.backend == id);
        let closed = slots
            .into_iter()
            .map(|s| {
                let f = self.table.remove(s);
                self.reset(&f.part());
                closed_flow(&f)
            })
            .collect();
        Ok(closed)
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
            let f = self.table.remove(s);
            self.forgotten(&f.part());
        }
        slots.len()
    }

    // ---- internals ----

    fn expire_budget(&mut self, now_ns: u64, budget: usize) -> usize {
        let (backends, stats, idle_ns) = (&mut self.backends, &mut self.flow_stats, self.idle_ns);
        let n = self.table.expire(
            now_ns,
            budget,
            |f| f.deadline(idle_ns),
            |_, f| part::ended(backends, stats, &f.part()),
        );
        self.flow_stats.expired += n as u64;
        n
    }
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
