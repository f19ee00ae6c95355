//! `summary.json`: what a run reports (DESIGN section 4). Every field but `latency_ns` and
//! `throughput` is a function of the input alone, so two runs of the same input print the same.

use hdrhistogram::Histogram;
use plsim_wire::{DropCounts, DropReason};
use serde::Serialize;

/// The whole summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub input: Input,
    pub packets: Packets,
    pub flows: Flows,
    pub nat_ips: Vec<NatIp>,
    pub backends: Vec<Backend>,
    pub latency_ns: Latency,
    pub throughput: Throughput,
    pub sim_time_s: f64,
    /// With real TCP endpoints (`simulate --workload tcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Tcp>,
}

/// Real TCP connections through the path: each client sent its bytes, a backend echoed them.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Tcp {
    pub connections: u32,
    /// Connections whose client verified every byte and closed cleanly.
    pub completed: u32,
    /// Bytes the clients verified.
    pub bytes_verified: u64,
}

/// What was read.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Default)]
pub struct Input {
    pub packets: u64,
    /// Captured bytes.
    pub bytes: u64,
    /// The capture was cut short or damaged; it was replayed up to there.
    pub truncated: bool,
    /// TCP packets whose checksums were wrong in the capture (checksum offload on the
    /// capturing host) and were put right on entry, so the output pcaps are valid.
    pub checksums_repaired: u64,
    /// Connections of the capture that fell together with an earlier one: every server address
    /// maps to the private endpoint, so two servers on one port reached from one client port
    /// are one consumer-side tuple to the path.
    pub tuple_collisions: u64,
}

/// Where every packet went: `consumer_in + backend_in == to_backend + to_consumer + dropped`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Packets {
    pub consumer_in: u64,
    pub backend_in: u64,
    pub to_backend: u64,
    pub to_consumer: u64,
    pub dropped: Dropped,
}

/// Drops by reason.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Default)]
pub struct Dropped {
    pub ipv6: u64,
    pub non_tcp: u64,
    pub non_ip: u64,
    pub fragment: u64,
    pub malformed: u64,
    pub not_approved: u64,
    pub no_flow: u64,
    pub port_exhausted: u64,
    pub no_rule: u64,
    pub no_backend: u64,
}

impl From<&DropCounts> for Dropped {
    fn from(c: &DropCounts) -> Dropped {
        use DropReason::*;
        Dropped {
            ipv6: c.get(Ipv6),
            non_tcp: c.get(NonTcp),
            non_ip: c.get(NonIp),
            fragment: c.get(Fragment),
            malformed: c.get(Malformed),
            not_approved: c.get(NotApproved),
            no_flow: c.get(NoFlow),
            port_exhausted: c.get(PortExhausted),
            no_rule: c.get(NoRule),
            no_backend: c.get(NoBackend),
        }
    }
}

impl Dropped {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.ipv6
            + self.non_tcp
            + self.non_ip
            + self.fragment
            + self.malformed
            + self.not_approved
            + self.no_flow
            + self.port_exhausted
            + self.no_rule
            + self.no_backend
    }
}

/// Connections through the SNAT stage.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Default)]
pub struct Flows {
    /// Connections opened (a SYN, or a mid-stream packet with `--pickup`).
    pub created: u64,
    /// Ended by FIN both ways or a RST.
    pub closed: u64,
    /// Ended by the idle or transitory timeout.
    pub expired: u64,
    /// Ended because their connection left Approved.
    pub torn_down: u64,
    /// The most flow records (open, or closed with the port still held) at once.
    pub active_peak: u64,
    /// Flow records at the end.
    pub active_end: u64,
    /// SYNs refused for want of a port.
    pub snat_failures: u64,
}

/// One NAT IP.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NatIp {
    pub ip: String,
    /// Ports over every reuse scope this NAT IP served (one scope per backend with `per-backend`).
    pub ports_total: u64,
    pub ports_in_use_peak: u64,
    /// The most ports in use or held (after a FIN or RST) at once: what runs out.
    pub ports_busy_peak: u64,
    pub ports_in_use_end: u64,
    /// Ports of closed flows still held at the end.
    pub ports_held_end: u64,
    /// Connections it served.
    pub flows: u64,
}

/// One backend.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Backend {
    pub ip: String,
    pub up: bool,
    pub flows: u64,
    pub packets: u64,
}

/// Wall-clock time packets spent in the pipeline.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Default)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl From<&Histogram<u64>> for Latency {
    /// p50, p99 and max of a histogram; zeros when it is empty.
    fn from(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// How fast it ran.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Default)]
pub struct Throughput {
    pub packets_per_sec: f64,
    pub wall_s: f64,
}
