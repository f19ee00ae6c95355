//! The counters: per backend, per rule, of the flow table, and drops by reason.

use std::net::Ipv4Addr;

use plsim_wire::DropCounts;

use crate::{Lb, RuleKind};

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
    /// Flows ended because their backend went down under [`OnBackendDown::Reset`](crate::OnBackendDown::Reset).
    pub reset: u64,
    /// Flows ended by [`Lb::forget_link`].
    pub forgotten: u64,
    /// Flows replaced by a SYN that picked a new backend (their backend was down).
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
            flows: self.flow_stats,
            drops: self.drops,
        }
    }
}
