//! The synthetic workload of a scenario, with the command line's workload flags over it.

use std::net::{Ipv4Addr, SocketAddrV4};

use plsim_control::{ControlPlane, Scenario};
use plsim_traffic::workload::{Arrivals, Close, FlowDuration, WorkloadSpec};

use crate::{Error, Result};

/// Workload settings from the command line, each over the scenario's `[workload]`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkloadFlags {
    /// Flows to start.
    pub flows: Option<u64>,
    /// How flows arrive.
    pub arrivals: Option<Arrivals>,
    /// How long flows last.
    pub durations: Option<FlowDuration>,
    /// How flows end.
    pub close: Option<Close>,
    /// Consumer hosts behind the endpoint.
    pub hosts: Option<u32>,
    /// Data packets per flow.
    pub packets_per_flow: Option<u32>,
    /// Payload bytes per flow.
    pub bytes_per_flow: Option<u64>,
    /// Start no flow after this many seconds.
    pub until: Option<f64>,
    /// The workload's seed.
    pub seed: Option<u64>,
}

/// The synthetic workload of a scenario: its `[workload]` section (or the traffic crate's
/// defaults), sent by the hosts of the first endpoint's VNet to that endpoint, port 443.
///
/// The hosts take addresses from the first subnet of that VNet that is not the endpoint's
/// (after the four addresses Azure reserves), or else from the second /24 of its address space.
pub fn spec(scenario: &Scenario) -> Result<WorkloadSpec> {
    let e = scenario
        .endpoints
        .first()
        .ok_or_else(|| Error::Input("the scenario has no private endpoint".into()))?;
    let plane = ControlPlane::new(scenario)?;
    let pe = plane
        .endpoint(&e.name)
        .ok_or_else(|| Error::Input(format!("no endpoint `{}`", e.name)))?;
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
    let mut spec = WorkloadSpec {
        client_base: Ipv4Addr::from(hosts_net),
        server: SocketAddrV4::new(pe.private_ip, 443),
        seed: scenario.seed,
        ..WorkloadSpec::default()
    };
    if let Some(w) = &scenario.workload {
        spec.hosts = w.hosts_per_endpoint;
        spec.arrivals = w.arrival;
        spec.duration = w.flow_duration;
        spec.packets_per_flow = w.packets_per_flow;
        spec.bytes_per_flow = w.bytes_per_flow;
        spec.close = w.close;
        spec.flows = w.flows;
        spec.until_secs = w.duration;
        spec.seed = w.seed.unwrap_or(scenario.seed);
    }
    Ok(spec)
}

/// The scenario's workload with the flags over it, checked.
pub fn spec_with(scenario: &Scenario, f: &WorkloadFlags) -> Result<WorkloadSpec> {
    let mut spec = spec(scenario)?;
    if let Some(a) = f.arrivals {
        spec.arrivals = a;
    }
    if let Some(d) = f.durations {
        spec.duration = d;
    }
    if let Some(c) = f.close {
        spec.close = c;
    }
    if let Some(n) = f.flows {
        spec.flows = Some(n);
    }
    if let Some(h) = f.hosts {
        spec.hosts = h;
    }
    if let Some(p) = f.packets_per_flow {
        spec.packets_per_flow = p;
    }
    if let Some(b) = f.bytes_per_flow {
        spec.bytes_per_flow = b;
    }
    if let Some(u) = f.until {
        spec.until_secs = Some(u);
    }
    if let Some(s) = f.seed {
        spec.seed = s;
    }
    spec.validate()?;
    Ok(spec)
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
        assert_eq!(w.hosts, 16);
        assert_eq!(w.arrivals, Arrivals::Poisson { per_sec: 100.0 });
        assert_eq!(w.duration, FlowDuration::Exponential { mean_secs: 5.0 });
        assert_eq!((w.packets_per_flow, w.bytes_per_flow), (10, 1000));
        assert_eq!((w.flows, w.until_secs, w.seed), (None, Some(60.0), 42));
    }

    #[test]
    fn flags_go_over_the_scenario_and_are_checked() {
        let s = Scenario::builtin();
        let f = WorkloadFlags {
            flows: Some(7),
            arrivals: Some(Arrivals::Constant { per_sec: 3.0 }),
            close: Some(Close::Rst),
            seed: Some(9),
            ..WorkloadFlags::default()
        };
        let w = spec_with(&s, &f).unwrap();
        assert_eq!(w.flows, Some(7));
        assert_eq!(w.arrivals, Arrivals::Constant { per_sec: 3.0 });
        assert_eq!((w.close, w.seed), (Close::Rst, 9));
        let bad = WorkloadFlags {
            bytes_per_flow: Some(1_000_000),
            packets_per_flow: Some(1),
            ..WorkloadFlags::default()
        };
        let e = spec_with(&s, &bad).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
