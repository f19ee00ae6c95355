//! `summary.json`: what a run reports (the README describes every field). Every field but `latency_ns` and
//! `throughput` is a function of the input alone, so two runs of the same input print the same.

use std::time::Duration;

use hdrhistogram::Histogram;
use plsim_snat::{Allocator, ReuseScope};
use plsim_wire::{DropCounts, DropReason, SimTime};
use serde::Serialize;

use crate::{CoreView, Finished};

/// The whole summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// What was read.
    pub input: Input,
    /// Where every packet went.
    pub packets: Packets,
    /// Connections through the SNAT stage.
    pub flows: Flows,
    /// Every NAT IP of every service, in service order.
    pub nat_ips: Vec<NatIp>,
    /// Port reuses of whole reply tuples and TIME_WAIT hazards, over every NAT IP, with the
    /// settings they were counted under (absent from a run that keeps no reuse record:
    /// [`crate::run::RunSpec::reuse`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse: Option<ReuseTotal>,
    /// Every backend of the load balancer.
    pub backends: Vec<Backend>,
    /// Every private endpoint connection of the run, in link id order.
    pub connections: Vec<Connection>,
    /// The run was stopped early (Ctrl-C): everything here covers the packets read before it.
    pub interrupted: bool,
    /// Wall-clock time packets spent in the engine.
    pub latency_ns: Latency,
    /// How fast the run went.
    pub throughput: Throughput,
    /// Simulated time from the first packet to the last packet or event, in seconds.
    pub sim_time_s: f64,
    /// With real TCP endpoints (`simulate --workload tcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Tcp>,
}

/// Real TCP connections through the path: each client sent its bytes, a backend echoed them.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Tcp {
    /// Connections opened.
    pub connections: u32,
    /// Connections whose client verified every byte and closed cleanly.
    pub completed: u32,
    /// Bytes the clients verified.
    pub bytes_verified: u64,
    /// With a service that sends PROXY protocol v2 headers: the backend connections whose
    /// header the backend parsed (with the `ppp` crate) and found naming its client, the
    /// private endpoint and the connection's link id. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_headers_verified: Option<u32>,
}

/// What was read.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Default)]
pub struct Input {
    /// Packets read.
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
    /// Packets that entered at the consumer side (everything not IPv4 TCP counts here).
    pub consumer_in: u64,
    /// Packets that entered at the backend side.
    pub backend_in: u64,
    /// Packets delivered to the backends.
    pub to_backend: u64,
    /// Packets delivered to the consumers.
    pub to_consumer: u64,
    /// Packets dropped, by reason.
    pub dropped: Dropped,
    /// RSTs the path sent to consumers for SYNs it had no NAT port for (services with
    /// `rst_on_exhaustion`); not input packets, so outside the balance above.
    pub rst_to_consumer: u64,
    /// PROXY protocol v2 headers the path sent to backends, one per connection of a service
    /// with `enable_proxy_protocol` (each its own segment ahead of the connection's first
    /// packet after the SYN); not input packets, so outside the balance above.
    pub proxy_headers: u64,
}

/// Drops by reason: in JSON, one key per reason (every reason, zero or not), in the order of
/// [`DropReason::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dropped(pub DropCounts);

impl From<&DropCounts> for Dropped {
    fn from(c: &DropCounts) -> Dropped {
        Dropped(*c)
    }
}

impl Dropped {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.total()
    }

    /// Drops of one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0.get(reason)
    }

    /// Every reason's name and count, in the JSON's order.
    pub fn by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r.name(), self.0.get(r)))
    }
}

impl Serialize for Dropped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(DropReason::ALL.len()))?;
        for (name, n) in self.by_reason() {
            m.serialize_entry(name, &n)?;
        }
        m.end()
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
    /// Ended because their backend went down under `on_backend_down = reset`.
    pub reset: u64,
    /// The most flow records (open, or closed with the port still held) at once.
    pub active_peak: u64,
    /// Flow records at the end.
    pub active_end: u64,
    /// SYNs refused for want of a port: `snat_failures_exhausted + snat_failures_gave_up`.
    pub snat_failures: u64,
    /// Of them, refused when no NAT IP had a free port (reply tuple, under `netfilter`) for
    /// the flow: true exhaustion.
    pub snat_failures_exhausted: u64,
    /// Of them, refused while some NAT IP had one: the allocator gave up first (`netfilter`'s
    /// bounded search or its hashed NAT IP full; `block:N` with no block left for the host).
    pub snat_failures_gave_up: u64,
}

/// Port reuses: new flows on a (NAT IP, NAT port, backend address, backend port) an earlier
/// flow used, and how soon after its close (see [`plsim_snat::ReuseLog`]).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Default)]
pub struct Reuse {
    /// New flows on a tuple an earlier flow used, at most the reuse horizon (`--reuse-horizon`,
    /// ten minutes by default) after its close.
    pub reuses: u64,
    /// Reuses within the backends' TIME_WAIT (`--time-wait`, 60 s by default) of a close the
    /// backend began.
    pub hazards: u64,
    /// The shortest gap from a close to the reusing SYN, in seconds, exact (null without
    /// reuses).
    #[serde(rename = "gap_min_s", serialize_with = "secs")]
    pub gap_min: Option<Duration>,
    /// The median gap, in seconds, to three significant digits (null without reuses).
    #[serde(rename = "gap_p50_s", serialize_with = "secs")]
    pub gap_p50: Option<Duration>,
}

/// The port reuses of a whole run and the settings they were counted under.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Default)]
pub struct ReuseTotal {
    /// The counts, over every NAT IP.
    #[serde(flatten)]
    pub counts: Reuse,
    /// The backends' TIME_WAIT the hazards are counted under, in seconds.
    pub time_wait_s: f64,
    /// The longest gap counted, in seconds.
    pub horizon_s: f64,
}

impl From<plsim_snat::Reuse> for Reuse {
    fn from(r: plsim_snat::Reuse) -> Reuse {
        Reuse {
            reuses: r.reuses,
            hazards: r.hazards,
            gap_min: r.gap_min,
            gap_p50: r.gap_p50,
        }
    }
}

/// A duration as seconds (nanosecond-exact to f64's precision), or null.
fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// One NAT IP.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NatIp {
    /// Its address.
    pub ip: String,
    /// The ports it offers: its range, once per backend of the service's pools under
    /// `per-backend` reuse, once under `per-ip`.
    pub ports_total: u64,
    /// The most ports in use (open flows) at once.
    pub ports_in_use_peak: u64,
    /// The most ports in use or held (after a FIN or RST) at once: what runs out.
    pub ports_busy_peak: u64,
    /// Ports in use at the end.
    pub ports_in_use_end: u64,
    /// Ports of closed flows still held at the end.
    pub ports_held_end: u64,
    /// Connections it served.
    pub flows: u64,
    /// Its port reuses and hazards (with a reuse record, absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse: Option<Reuse>,
}

/// One private endpoint connection: what became of its consumers' packets.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Connection {
    /// Its endpoint.
    pub endpoint: String,
    /// Its service.
    pub service: String,
    /// Its 32-bit link id (what the PROXY protocol TLV carries).
    pub link_id: u32,
    /// Its state once the whole timeline has run (`Deleted` once its endpoint is).
    pub state: String,
    /// Its packets that entered at the consumer side (those refused while not Approved too).
    pub consumer_in: u64,
    /// Its packets that entered at the backend side (and found its flows).
    pub backend_in: u64,
    /// Delivered to the backends.
    pub to_backend: u64,
    /// Delivered to its consumers.
    pub to_consumer: u64,
    /// Dropped, by reason.
    pub dropped: Dropped,
    /// Flows opened.
    pub flows_created: u64,
    /// Its SYNs refused for want of a NAT port.
    pub snat_failures: u64,
}

/// One backend.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Backend {
    /// Its address.
    pub ip: String,
    /// Whether it was up at the end.
    pub up: bool,
    /// Flows it was given.
    pub flows: u64,
    /// Packets forwarded to it.
    pub packets: u64,
}

/// Wall-clock time packets spent in the engine, in nanoseconds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Default)]
pub struct Latency {
    /// The median.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The most.
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
    /// Input packets per second of wall time.
    pub packets_per_sec: f64,
    /// Wall time of the run, in seconds.
    pub wall_s: f64,
}

/// The summary of a finished run.
pub fn summarize<C: CoreView, B, T>(
    fin: &Finished<C, B, T>,
    input: Input,
    sim_time: SimTime,
    connections: &[crate::path::ConnectionInfo],
) -> Summary {
    let s = &fin.stats;
    let (lb, snat) = (fin.parts.core.lb(), fin.parts.core.snat());
    let mut flows = Flows::default();
    let mut nat_ips = Vec::new();
    let (mut gaps, mut min, mut hazards) = (Vec::new(), None::<u64>, 0);
    let mut tracked: Option<(f64, f64)> = Some((0.0, 0.0));
    for (e, &backends) in snat.engines().iter().zip(snat.backends_per_service()) {
        let st = e.stats();
        flows.created += st.created;
        flows.closed += st.closed;
        flows.expired += st.expired;
        flows.torn_down += st.torn_down;
        flows.reset += st.reset;
        flows.active_peak += st.live_peak;
        flows.active_end += st.live;
        flows.snat_failures += st.failed;
        flows.snat_failures_exhausted += st.exhausted;
        flows.snat_failures_gave_up += st.gave_up;
        let log = e.reuse();
        match log {
            Some(r) => {
                tracked = tracked.map(|_| (r.time_wait().as_secs_f64(), r.horizon().as_secs_f64()));
                let (g, m, h) = r.parts();
                gaps.extend(g);
                min = match (min, m) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                hazards += h;
            }
            None => tracked = None,
        }
        let cfg = e.config();
        nat_ips.extend(st.nat_ips.iter().enumerate().map(|(i, n)| NatIp {
            ip: n.ip.to_string(),
            // What the NAT IP offers: the range once per backend under per-backend reuse (and
            // under netfilter's, per backend on each port it is reached on).
            ports_total: u64::from(n.ports_per_scope)
                * match (cfg.allocator, cfg.reuse) {
                    (Allocator::Netfilter { .. }, _) | (_, ReuseScope::PerBackend) => backends,
                    (_, ReuseScope::PerIp) => 1,
                },
            ports_in_use_peak: n.in_use_peak,
            ports_busy_peak: n.busy_peak,
            ports_in_use_end: n.in_use,
            ports_held_end: n.held,
            flows: n.flows_created,
            reuse: log.map(|r| r.nat_ip(i).into()),
        }));
    }
    let reuse = tracked.map(|(time_wait_s, horizon_s)| ReuseTotal {
        counts: plsim_snat::Reuse::of(gaps, min, hazards).into(),
        time_wait_s,
        horizon_s,
    });
    let backends =
        lb.0.stats()
            .backends
            .iter()
            .map(|b| Backend {
                ip: b.ip.to_string(),
                up: b.up,
                flows: b.flows,
                packets: b.packets,
            })
            .collect();
    let created = snat.created_by_link();
    let connections = connections
        .iter()
        .map(|c| {
            let i = c.link.0 as usize;
            let counts = s.links.get(i).copied().unwrap_or_default();
            Connection {
                endpoint: c.endpoint.clone(),
                service: c.service.clone(),
                link_id: c.link.0,
                state: c.state.clone(),
                consumer_in: counts.consumer_in,
                backend_in: counts.backend_in,
                to_backend: counts.to_backend,
                to_consumer: counts.to_consumer,
                dropped: Dropped(counts.dropped),
                flows_created: created.get(i).copied().unwrap_or(0),
                snat_failures: counts.dropped.get(DropReason::PortExhausted),
            }
        })
        .collect();
    let latency = Latency::from(&s.latency_ns);
    let wall = s.wall.as_secs_f64();
    Summary {
        input,
        packets: Packets {
            consumer_in: s.consumer_in,
            backend_in: s.backend_in,
            to_backend: s.to_backend,
            to_consumer: s.to_consumer,
            dropped: Dropped::from(&s.dropped),
            rst_to_consumer: s.answers,
            proxy_headers: s.injected,
        },
        flows,
        nat_ips,
        reuse,
        backends,
        connections,
        latency_ns: latency,
        throughput: Throughput {
            packets_per_sec: if wall > 0.0 {
                input.packets as f64 / wall
            } else {
                0.0
            },
            wall_s: wall,
        },
        sim_time_s: sim_time.as_secs_f64(),
        interrupted: false,
        tcp: None,
    }
}
