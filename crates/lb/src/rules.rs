//! The rule set: frontends and their rules, pools, backends and their health, and the choice
//! of a backend for a new flow (the rule matching F:fp, the pool's healthy backends, the
//! distribution's hash mapped onto them plainly or through the Maglev table).

use std::net::Ipv4Addr;

use plsim_wire::{DropReason, FlowTuple};

use crate::stats::BackendStats;
use crate::{Distribution, Hashing, Lb, RuleKind, hash};

/// A frontend IP and its rules.
#[derive(Debug)]
pub(crate) struct FrontendState {
    pub(crate) ip: u32,
    /// The HA-ports rule, if any (then `ports` is empty).
    pub(crate) ha: Option<u16>,
    /// `(frontend port, rule)`, sorted by port.
    pub(crate) ports: Vec<(u16, u16)>,
}

/// A backend pool.
#[derive(Debug)]
pub(crate) struct PoolState {
    pub(crate) name: String,
    /// Backend ids, in pool order.
    pub(crate) members: Vec<u32>,
}

/// A backend: its health and its counters.
#[derive(Debug)]
pub(crate) struct BackendState {
    pub(crate) ip: Ipv4Addr,
    pub(crate) up: bool,
    pub(crate) counters: BackendStats,
}

/// A rule, with the backends a new flow of it may get.
#[derive(Debug)]
pub(crate) struct RuleState {
    pub(crate) frontend: Ipv4Addr,
    pub(crate) kind: RuleKind,
    pub(crate) pool: u32,
    pub(crate) distribution: Distribution,
    pub(crate) hashing: Hashing,
    /// The healthy members of the pool (backend ids), in pool order.
    pub(crate) healthy: Vec<u32>,
    /// The Maglev table (backend ids), when the rule uses Maglev; empty with no healthy backend.
    pub(crate) maglev: Vec<u32>,
    pub(crate) hits: u64,
    pub(crate) flows: u64,
}

impl Lb {
    /// The rule matching F:fp, the backend id a new flow with hash `h` gets, and its port.
    #[inline]
    pub(crate) fn pick_inner(
        &self,
        link: u32,
        t: FlowTuple,
        h: u64,
    ) -> Result<(u16, u32, u16), DropReason> {
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

    pub(crate) fn frontend_index(&self, ip: Ipv4Addr) -> Option<usize> {
        self.frontends
            .binary_search_by_key(&u32::from(ip), |f| f.ip)
            .ok()
    }

    pub(crate) fn backend_id(&self, ip: Ipv4Addr) -> Option<u32> {
        self.backends
            .iter()
            .position(|b| b.ip == ip)
            .map(|i| i as u32)
    }

    pub(crate) fn backend_id_or_insert(&mut self, ip: Ipv4Addr) -> u32 {
        self.backend_id(ip).unwrap_or_else(|| {
            self.backends.push(BackendState {
                ip,
                up: true,
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

    pub(crate) fn rebuild_rules_with(&mut self, backend: u32) {
        for p in 0..self.pools.len() {
            if self.pools[p].members.contains(&backend) {
                self.rebuild_rules_of_pool(p);
            }
        }
    }

    pub(crate) fn rebuild_rules_of_pool(&mut self, pool: usize) {
        for r in 0..self.rules.len() {
            if self.rules[r].pool as usize == pool {
                self.rebuild_rule(r);
            }
        }
    }

    /// Recomputes a rule's healthy list and Maglev table from its pool and the backends' health.
    pub(crate) fn rebuild_rule(&mut self, r: usize) {
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
