//! Counters and gauges: what `summary.json` reports of the SNAT stage.

use std::net::Ipv4Addr;

use plsim_wire::DropCounts;

/// A snapshot of the engine's counters and gauges ([`crate::Snat::stats`]).
///
/// Flow counters balance: `created == closed + expired + torn_down + reset + open`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Flows opened: SYNs that got a port, mid-stream pickups, and SYNs that reopened a
    /// flow whose port was still held.
    pub created: u64,
    /// Flows that ended with FINs both ways or a RST (counted at that packet; the port is
    /// held for a while after).
    pub closed: u64,
    /// Flows freed by the idle or transitory timeout.
    pub expired: u64,
    /// Flows not yet closed that a [`crate::Snat::teardown`] removed.
    pub torn_down: u64,
    /// Flows not yet closed that a [`crate::Snat::reset_flow`] removed.
    pub reset: u64,
    /// SNAT failures: SYNs refused for want of a port (`port_exhausted`), always
    /// `exhausted + gave_up`.
    pub failed: u64,
    /// SNAT failures when no NAT IP had a free port (reply tuple, with `netfilter`) for the flow:
    /// true exhaustion.
    pub exhausted: u64,
    /// SNAT failures while some NAT IP had a free port for the flow: the allocator gave up
    /// before true exhaustion (`netfilter`: its attempts ran out, or its hashed NAT IP was full
    /// while another had room; `block:N`: the host had no free block of its own, though blocks
    /// of other hosts had free ports). Never with `sequential` or `random`, which search every
    /// NAT IP's whole range.
    pub gave_up: u64,
    /// Flows open now (not closed).
    pub open: u64,
    /// Flow records now: the open ones and the closed ones whose port is still held.
    pub live: u64,
    /// The most flow records at any time.
    pub live_peak: u64,
    /// Packets this stage dropped, by reason (`no_flow`, `port_exhausted`).
    pub drops: DropCounts,
    /// One entry per NAT IP, in configuration order.
    pub nat_ips: Vec<NatIpStats>,
}

/// The gauges of one NAT IP. `free + in_use + held == ports_total` always.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatIpStats {
    /// The NAT IP.
    pub ip: Ipv4Addr,
    /// Ports in one reuse scope (the configured range).
    pub ports_per_scope: u32,
    /// Reuse scopes on this NAT IP: 1 with `per-ip`; with `per-backend`, the backends this NAT
    /// IP has served so far; with the `netfilter` allocator, the (backend address, backend
    /// port) pairs it has served so far (a port is unique per whole reply tuple).
    pub scopes: u32,
    /// `ports_per_scope * scopes`.
    pub ports_total: u64,
    /// Ports serving an open flow.
    pub in_use: u64,
    /// Ports of closed flows, held until their hold ends.
    pub held: u64,
    /// Ports free (with `block:N`, including the unused ports of blocks hosts own).
    pub free: u64,
    /// The most ports in use at any time.
    pub in_use_peak: u64,
    /// The most ports in use or held at any time: what exhausts a NAT IP.
    pub busy_peak: u64,
    /// Flow records on this NAT IP now (open or held).
    pub flows: u64,
    /// Flows this NAT IP has served in all.
    pub flows_created: u64,
}
