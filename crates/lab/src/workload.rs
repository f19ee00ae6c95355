//! The synthetic workloads of a scenario, one per private endpoint (its own `[workload]`, or
//! the scenario's), with the command line's workload flags over them, and their packets merged
//! in time order as one source.

use std::net::{Ipv4Addr, SocketAddrV4};

use plsim_control::{ControlPlane, Scenario};
use plsim_pcap::Frame;
use plsim_traffic::workload::{Arrivals, Close, FlowDuration, Profile, Workload, WorkloadSpec};
use plsim_wire::{LinkType, SimTime};

use crate::replay::{Packet, PacketSource};
use crate::{Error, Result};

/// The command line's workload flags, each over the [`Profile`] of every endpoint's workload
/// (its `[workload]` table, or the scenario's). With the `cli` feature, clap parses the flags
/// straight into it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args), group(id = "workload_overrides"))]
pub struct Overrides {
    /// Flows to start.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub flows: Option<u64>,
    /// Flow arrivals: constant:RATE or poisson:RATE (flows per second).
    #[cfg_attr(feature = "cli", arg(long, value_name = "KIND:RATE"))]
    pub arrivals: Option<Arrivals>,
    /// Flow durations: fixed:S, exp:MEAN, lognormal:MU,SIGMA or pareto:SCALE,SHAPE (seconds).
    #[cfg_attr(feature = "cli", arg(long = "durations", value_name = "DIST"))]
    pub flow_duration: Option<FlowDuration>,
    /// How flows end: fin (the client's FIN first), server-fin (the server's first: it keeps
    /// TIME_WAIT), rst or idle.
    #[cfg_attr(feature = "cli", arg(long, value_name = "HOW"))]
    pub close: Option<Close>,
    /// Consumer hosts behind the endpoint.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub hosts: Option<u32>,
    /// Data packets per flow (both directions, after the handshake).
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub packets_per_flow: Option<u32>,
    /// Payload bytes per flow (both directions).
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub bytes_per_flow: Option<u64>,
    /// Start no flow after SECS.
    #[cfg_attr(feature = "cli", arg(long = "until", value_name = "SECS"))]
    pub until_secs: Option<f64>,
    /// The workload's seed.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub seed: Option<u64>,
}

impl Overrides {
    /// Puts the flags over a profile (the workload is checked once placed: see [`specs`]).
    pub fn apply(&self, p: &mut Profile) {
        if let Some(n) = self.flows {
            p.flows = Some(n);
        }
        if let Some(a) = self.arrivals {
            p.arrivals = a;
        }
        if let Some(d) = self.flow_duration {
            p.flow_duration = d;
        }
        if let Some(c) = self.close {
            p.close = c;
        }
        if let Some(h) = self.hosts {
            p.hosts = h;
        }
        if let Some(n) = self.packets_per_flow {
            p.packets_per_flow = n;
        }
        if let Some(b) = self.bytes_per_flow {
            p.bytes_per_flow = b;
        }
        if let Some(u) = self.until_secs {
            p.until_secs = Some(u);
        }
        if let Some(s) = self.seed {
            p.seed = Some(s);
        }
    }
}

/// What a run of these workloads is, in plain words: one endpoint's flows, how they arrive and
/// how long they last, or how many endpoints run theirs.
pub fn describe(specs: &[(usize, WorkloadSpec, SimTime)]) -> String {
    match specs {
        [(_, spec, _)] => {
            let p = &spec.profile;
            let count = match (p.flows, p.until_secs) {
                (Some(n), Some(t)) => format!("{n} flows (none started after {t} s)"),
                (Some(n), None) => format!("{n} flows"),
                (None, Some(t)) => format!("flows started for {t} s"),
                (None, None) => "flows without end".to_owned(),
            };
            let arrivals = match p.arrivals {
                Arrivals::Constant { per_sec } => {
                    format!("{per_sec} a second, evenly spaced")
                }
                Arrivals::Poisson { per_sec } => {
                    format!("{per_sec} a second on average (Poisson)")
                }
            };
            let lasting = match p.flow_duration {
                FlowDuration::Fixed { secs } => format!("{secs} s each"),
                FlowDuration::Exponential { mean_secs } => {
                    format!("{mean_secs} s on average (exponential)")
                }
                FlowDuration::LogNormal { mu, sigma } => {
                    format!("log-normal seconds (mu {mu}, sigma {sigma})")
                }
                FlowDuration::Pareto { scale_secs, shape } => {
                    format!("Pareto seconds (scale {scale_secs} s, shape {shape})")
                }
            };
            let close = match p.close {
                Close::Fin => "closed by FIN",
                Close::ServerFin => "closed by FIN, the server's first",
                Close::Rst => "closed by RST",
                Close::Idle => "left idle to expire",
            };
            format!("workload of {count}, {arrivals}, lasting {lasting}, {close}")
        }
        many => format!("workloads of {} endpoints", many.len()),
    }
}

/// The synthetic workload of the first endpoint of a scenario (see [`spec_of`]).
pub fn spec(scenario: &Scenario) -> Result<WorkloadSpec> {
    let e = scenario
        .endpoints
        .first()
        .ok_or_else(|| Error::Input("the scenario has no private endpoint".into()))?;
    let mut plane = ControlPlane::new(scenario)?;
    plane.advance(SimTime::MAX);
    spec_of(scenario, &plane, &e.name)
}

/// The synthetic workload of one endpoint, not yet checked: its `[workload]`, else the
/// scenario's (else the default [`Profile`]), sent by the hosts of the endpoint's VNet to the
/// endpoint, port 443, seeded by the scenario's seed unless it has its own. `plane` has run the
/// whole timeline (for endpoints created later).
///
/// The hosts take addresses from the first subnet of that VNet that is not the endpoint's
/// (after the four addresses Azure reserves), or else from the second /24 of its address space.
pub fn spec_of(scenario: &Scenario, plane: &ControlPlane, endpoint: &str) -> Result<WorkloadSpec> {
    let e = scenario
        .endpoints
        .iter()
        .find(|e| e.name == endpoint)
        .ok_or_else(|| Error::Input(format!("no endpoint `{endpoint}`")))?;
    let pe = plane
        .endpoint_ever(&e.name)
        .ok_or_else(|| Error::Input(format!("endpoint `{}` is never created", e.name)))?;
    let vnet = scenario
        .vnets
        .iter()
        .find(|v| v.name == e.vnet)
        .ok_or_else(|| Error::Input(format!("no VNet `{}`", e.vnet)))?;
    let hosts_net = vnet
        .subnets
        .iter()
        .find(|s| s.name != e.subnet)
        .map(|s| u32::from(s.prefix.network()) + 4)
        .unwrap_or(u32::from(vnet.address_space.network()) + 256 + 4);
    let profile = e.workload.as_ref().or(scenario.workload.as_ref());
    Ok(WorkloadSpec {
        client_base: Ipv4Addr::from(hosts_net),
        server: SocketAddrV4::new(pe.private_ip, 443),
        default_seed: scenario.seed,
        ..WorkloadSpec::from(profile.cloned().unwrap_or_default())
    })
}

/// Every endpoint's workload of a scenario, with the flags over each, checked, in endpoint
/// (file) order: the endpoint's index, its workload, and when it starts (its endpoint's
/// creation).
pub fn specs(scenario: &Scenario, over: &Overrides) -> Result<Vec<(usize, WorkloadSpec, SimTime)>> {
    let mut plane = ControlPlane::new(scenario)?;
    plane.advance(SimTime::MAX);
    let routes = crate::path::Path::build(scenario, false)?.routes;
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let mut spec = spec_of(scenario, &plane, &r.name)?;
        over.apply(&mut spec.profile);
        spec.validate()?;
        out.push((i, spec, r.created));
    }
    if out.is_empty() {
        return Err(Error::Input("the scenario has no private endpoint".into()));
    }
    Ok(out)
}

/// The workloads of every endpoint as one source: their packets merged in time order (ties in
/// endpoint order), each named with its endpoint, each tagged with its endpoint's VLAN (from
/// its traffic table, when it has one), each workload starting at its endpoint's creation.
pub struct Workloads {
    lanes: Vec<Lane>,
    current: Vec<u8>,
}

struct Lane {
    endpoint: usize,
    workload: Workload,
    vlan: Option<u16>,
    offset_ns: u64,
    /// The lane's next packet: its time and bytes, once read.
    next: Option<u64>,
    buf: Vec<u8>,
}

impl Lane {
    fn pull(&mut self) {
        self.next = self.workload.next_into(&mut self.buf).map(|m| {
            if let Some(v) = self.vlan {
                self.buf
                    .splice(12..12, [0x81, 0x00, (v >> 8) as u8, v as u8]);
            }
            m.ts_ns + self.offset_ns
        });
    }
}

impl Workloads {
    /// The workloads of `specs` (from [`specs`]) for the endpoints of `scenario`.
    pub fn new(
        scenario: &Scenario,
        specs: Vec<(usize, WorkloadSpec, SimTime)>,
    ) -> Result<Workloads> {
        let routes = crate::path::Path::build(scenario, false)?.routes;
        let mut lanes = Vec::new();
        for (endpoint, spec, start) in specs {
            let vlan = routes
                .get(endpoint)
                .and_then(|r| r.traffic.as_ref())
                .and_then(|t| t.vlan);
            let mut lane = Lane {
                endpoint,
                workload: Workload::new(&spec)?,
                vlan,
                offset_ns: start.as_nanos(),
                next: None,
                buf: Vec::with_capacity(2048),
            };
            lane.pull();
            lanes.push(lane);
        }
        Ok(Workloads {
            lanes,
            current: Vec::with_capacity(2048),
        })
    }

    /// The packets each endpoint's workload made so far.
    pub fn packets(&self) -> Vec<(usize, u64)> {
        self.lanes
            .iter()
            .map(|l| (l.endpoint, l.workload.stats().packets))
            .collect()
    }
}

impl PacketSource for Workloads {
    /// Each endpoint's generator starts no more flows once the run is asked to stop (see
    /// [`Workload::stop_on`]), so a stop is seen even while one looks far ahead for its next
    /// packet.
    fn stop_on(&mut self, stop: &crate::stop::Stop) {
        for lane in &mut self.lanes {
            lane.workload.stop_on(stop.flag());
        }
    }

    fn next_packet(&mut self) -> Option<Packet<'_>> {
        let i = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.next.map(|t| (t, i)))
            .min()?
            .1;
        let lane = &mut self.lanes[i];
        let ts_ns = lane.next.expect("the lane has a packet");
        std::mem::swap(&mut self.current, &mut lane.buf);
        let endpoint = lane.endpoint;
        lane.pull();
        Some(Packet {
            frame: Frame {
                ts_ns,
                link: LinkType::Ethernet,
                data: &self.current,
                wire_len: self.current.len(),
            },
            endpoint: Some(endpoint),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_workload_comes_from_the_hosts_subnet_to_the_endpoint() {
        let s = Scenario::builtin();
        let w = spec(&s).unwrap();
        assert_eq!(w.client_base, Ipv4Addr::new(10, 0, 1, 4));
        assert_eq!(w.server, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 443));
        let p = &w.profile;
        assert_eq!(p.hosts, 16);
        assert_eq!(p.arrivals, Arrivals::Poisson { per_sec: 100.0 });
        assert_eq!(
            p.flow_duration,
            FlowDuration::Exponential { mean_secs: 5.0 }
        );
        assert_eq!((p.packets_per_flow, p.bytes_per_flow), (10, 1000));
        assert_eq!((p.flows, p.until_secs, w.seed()), (None, Some(60.0), 42));
    }

    #[test]
    fn flags_go_over_the_scenario_and_are_checked() {
        let s = Scenario::builtin();
        let f = Overrides {
            flows: Some(7),
            arrivals: Some(Arrivals::Constant { per_sec: 3.0 }),
            close: Some(Close::Rst),
            seed: Some(9),
            ..Overrides::default()
        };
        let [(0, w, _)] = &specs(&s, &f).unwrap()[..] else {
            panic!("one endpoint, one workload");
        };
        assert_eq!(w.profile.flows, Some(7));
        assert_eq!(w.profile.arrivals, Arrivals::Constant { per_sec: 3.0 });
        assert_eq!((w.profile.close, w.seed()), (Close::Rst, 9));
        let bad = Overrides {
            bytes_per_flow: Some(1_000_000),
            packets_per_flow: Some(1),
            ..Overrides::default()
        };
        let e = specs(&s, &bad).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
