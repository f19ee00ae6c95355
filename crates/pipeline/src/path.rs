//! The whole path built from a scenario: the stages, the timeline as pipeline events, and the
//! summary of a finished run.

use std::net::Ipv4Addr;
use std::time::Duration;

use plsim_control::scenario::{Distribution as ScDistribution, Reuse, Scenario};
use plsim_control::{ConnectionState, ControlPlane, Effect};
use plsim_endpoint::{Endpoint, EndpointTable, VnetId};
use plsim_lb::{Distribution, Hashing, Lb, LbConfig, Rule};
use plsim_snat::{Allocator, ReuseScope, Selection, Snat, SnatConfig, Timers};
use plsim_wire::SimTime;

use crate::stages::{EndpointStage, LbStage, SnatStage};
use crate::summary::{
    Backend, Dropped, Flows, Input, Latency, NatIp, Packets, Summary, Throughput,
};
use crate::{Event, Finished};

/// The backends a service's NAT IPs serve: every backend of the pools its frontend's rules
/// send to.
fn service_backends(scenario: &Scenario, frontend: &str) -> u64 {
    let lbs = &scenario.load_balancer;
    let mut ips: Vec<Ipv4Addr> = lbs
        .rules
        .iter()
        .filter(|r| r.frontend == frontend)
        .flat_map(|r| lbs.pools.iter().filter(move |p| p.name == r.pool))
        .flat_map(|p| p.backends.iter().copied())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips.len() as u64
}

/// Overrides of a scenario's NAT settings, from the command line. They apply to every service.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Use the first N NAT IPs of each service.
    pub nat_ips: Option<u8>,
    /// The port range of every NAT IP, `LO-HI`.
    pub ports: Option<String>,
    /// The port allocator (`sequential`, `random`, `random:SEED`, `block:N`).
    pub allocator: Option<String>,
    /// The port reuse scope: `per-backend` or `per-ip`.
    pub reuse: Option<String>,
    /// Mid-stream pickup.
    pub pickup: bool,
}

/// A flag or setting that can't be used, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSetting(pub String);

impl std::fmt::Display for BadSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Overrides {
    /// Applies the overrides to a scenario (before it is built).
    pub fn apply(&self, scenario: &mut Scenario) -> Result<(), BadSetting> {
        for s in &mut scenario.services {
            if let Some(n) = self.nat_ips {
                let n = usize::from(n);
                if n == 0 || n > 8 {
                    return Err(BadSetting(format!(
                        "--nat-ips {n}: a service has 1 to 8 NAT IPs"
                    )));
                }
                if n > s.nat_ips.len() {
                    return Err(BadSetting(format!(
                        "--nat-ips {n}: service `{}` has only {} NAT IPs",
                        s.name,
                        s.nat_ips.len()
                    )));
                }
                s.nat_ips.truncate(n);
            }
            if let Some(p) = &self.ports {
                s.ports = p
                    .parse()
                    .map_err(|e| BadSetting(format!("--ports {p}: {e}")))?;
            }
            if let Some(a) = &self.allocator {
                a.parse::<Allocator>()
                    .map_err(|e| BadSetting(format!("--allocator {a}: {e}")))?;
                s.allocator = a.clone();
            }
            if let Some(r) = &self.reuse {
                s.reuse = match r.as_str() {
                    "per-backend" => Reuse::PerBackend,
                    "per-ip" => Reuse::PerIp,
                    _ => {
                        return Err(BadSetting(format!(
                            "--reuse {r}: expected per-backend or per-ip"
                        )));
                    }
                };
            }
        }
        Ok(())
    }
}

/// The stages built from a scenario, ready to run.
pub struct Path {
    pub endpoint: EndpointStage,
    pub lb: LbStage,
    pub snat: SnatStage,
    /// The timeline's effects as pipeline events, in time order.
    pub events: Vec<(SimTime, Event)>,
    /// The first endpoint's connection: where a replay's consumer sends (its VNet and address).
    pub replay_endpoint: Option<(u32, Ipv4Addr)>,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn event_of(e: Effect) -> Option<Event> {
    Some(match e {
        Effect::LinkApproved(l) => Event::LinkApproved {
            link: l.id,
            vnet: l.vnet,
            endpoint: l.private_ip,
            frontend: l.frontend,
            service: l.service,
        },
        Effect::LinkClosed { link, service, .. } => Event::LinkClosed { link, service },
        Effect::LinkDeleted(_) => return None,
        Effect::BackendDown(ip) => Event::BackendDown(ip),
        Effect::BackendUp(ip) => Event::BackendUp(ip),
        Effect::NatIpAdded { service, ip } => Event::NatIpAdded { service, ip },
    })
}

impl Path {
    /// Builds the path of a scenario that passed validation, with `pickup` for mid-stream flows.
    pub fn build(scenario: &Scenario, pickup: bool) -> Result<Path, BadSetting> {
        let plane = ControlPlane::new(scenario).map_err(|e| BadSetting(e.to_string()))?;
        let links = plane.links();

        let mut table = EndpointTable::new();
        for l in &links {
            let ep = Endpoint {
                link: l.id,
                vnet: VnetId(l.vnet),
                address: l.private_ip,
                frontend: l.frontend,
                approved: l.state == ConnectionState::Approved,
            };
            table.insert(ep).map_err(|e| BadSetting(e.to_string()))?;
        }

        let lbs = &scenario.load_balancer;
        let frontend_ip = |name: &str| lbs.frontends.iter().find(|f| f.name == name).map(|f| f.ip);
        let mut idle = Duration::from_secs(240);
        let mut engines = Vec::new();
        for s in &scenario.services {
            let timers = Timers {
                idle: secs(s.timers.idle),
                transitory: secs(s.timers.transitory),
                fin_hold: secs(s.timers.fin_hold),
                rst_hold: secs(s.timers.rst_hold),
            };
            idle = idle
                .max(timers.idle)
                .max(timers.transitory)
                .max(timers.fin_hold);
            let cfg = SnatConfig {
                nat_ips: s.nat_ips.clone(),
                ports: plsim_snat::PortRange::new(s.ports.lo, s.ports.hi),
                allocator: s
                    .allocator
                    .parse()
                    .map_err(|e| BadSetting(format!("services `{}`: {e}", s.name)))?,
                reuse: match s.reuse {
                    Reuse::PerBackend => ReuseScope::PerBackend,
                    Reuse::PerIp => ReuseScope::PerIp,
                },
                selection: match s.selection {
                    plsim_control::scenario::Selection::Paired => Selection::Paired,
                    plsim_control::scenario::Selection::LeastLoaded => Selection::LeastLoaded,
                },
                timers,
                pickup,
                rst_on_exhaustion: false,
            };
            engines.push(
                Snat::new(cfg).map_err(|e| BadSetting(format!("service `{}`: {e}", s.name)))?,
            );
        }

        let mut cfg = LbConfig {
            frontends: lbs
                .frontends
                .iter()
                .map(|f| plsim_lb::Frontend { ip: f.ip })
                .collect(),
            pools: lbs
                .pools
                .iter()
                .map(|p| plsim_lb::Pool::new(p.name.clone(), p.backends.iter().copied()))
                .collect(),
            rules: Vec::new(),
            // Never forget a flow the SNAT stage still translates.
            idle_timeout: idle,
            ..LbConfig::default()
        };
        for r in &lbs.rules {
            let f = frontend_ip(&r.frontend).ok_or_else(|| {
                BadSetting(format!("rule `{}`: no frontend `{}`", r.name, r.frontend))
            })?;
            let mut rule = match (r.ha_ports, r.frontend_port) {
                (true, _) | (false, None) => Rule::ha_ports(f, r.pool.clone()),
                (false, Some(fp)) => {
                    Rule::port(f, fp, r.backend_port.unwrap_or(fp), r.pool.clone())
                }
            };
            rule.distribution = match r.distribution {
                ScDistribution::FiveTuple => Distribution::FiveTuple,
                ScDistribution::SourceIp => Distribution::SourceIp,
                ScDistribution::SourceIpProtocol => Distribution::SourceIpProtocol,
            };
            if let Some(size) = r.maglev {
                rule.hashing = Hashing::Maglev { table_size: size };
            }
            cfg.rules.push(rule);
        }
        let lb = Lb::new(cfg).map_err(|e| BadSetting(format!("load_balancer: {e}")))?;

        let mut timeline = plane.clone();
        let advance = timeline.advance(SimTime::MAX);
        let events = advance
            .effects
            .into_iter()
            .filter_map(|(t, e)| Some((t, event_of(e)?)))
            .collect();

        let replay_endpoint = scenario
            .endpoints
            .first()
            .and_then(|e| plane.endpoint(&e.name))
            .map(|pe| (pe.vnet_index, pe.private_ip));
        Ok(Path {
            endpoint: EndpointStage(table),
            lb: LbStage(lb),
            snat: SnatStage::new(
                engines,
                scenario
                    .services
                    .iter()
                    .map(|s| service_backends(scenario, &s.frontend))
                    .collect(),
                links.iter().map(|l| (l.id, l.service)),
            ),
            events,
            replay_endpoint,
        })
    }
}

/// The summary of a finished run.
pub fn summarize<B, T>(fin: &Finished<B, T>, input: Input, sim_time: SimTime) -> Summary {
    let s = &fin.stats;
    let (lb, snat) = &fin.parts.core;
    let mut flows = Flows::default();
    let mut nat_ips = Vec::new();
    for (e, &backends) in snat.engines().iter().zip(snat.backends_per_service()) {
        let st = e.stats();
        flows.created += st.created;
        flows.closed += st.closed;
        flows.expired += st.expired;
        flows.torn_down += st.torn_down;
        flows.active_peak += st.live_peak;
        flows.active_end += st.live;
        flows.snat_failures += st.failed;
        nat_ips.extend(st.nat_ips.iter().map(|n| NatIp {
            ip: n.ip.to_string(),
            // What the NAT IP offers: the range once per backend under per-backend reuse.
            ports_total: u64::from(n.ports_per_scope)
                * match e.config().reuse {
                    ReuseScope::PerIp => 1,
                    ReuseScope::PerBackend => backends,
                },
            ports_in_use_peak: n.in_use_peak,
            ports_busy_peak: n.busy_peak,
            ports_in_use_end: n.in_use,
            ports_held_end: n.held,
            flows: n.flows_created,
        }));
    }
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
        },
        flows,
        nat_ips,
        backends,
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
        tcp: None,
    }
}

/// The synthetic workload of a scenario: its `[workload]` section (or the traffic crate's
/// defaults), sent by the hosts of the first endpoint's VNet to that endpoint, port 443.
///
/// The hosts take addresses from the first subnet of that VNet that is not the endpoint's
/// (after the four addresses Azure reserves), or else from the second /24 of its address space.
pub fn workload_spec(
    scenario: &Scenario,
) -> Result<plsim_traffic::workload::WorkloadSpec, BadSetting> {
    use plsim_control::scenario::{ArrivalKind, Close as ScClose, FlowDuration as ScDuration};
    use plsim_traffic::workload::{Arrivals, Close, FlowDuration, WorkloadSpec};

    let e = scenario
        .endpoints
        .first()
        .ok_or_else(|| BadSetting("the scenario has no private endpoint".into()))?;
    let plane = ControlPlane::new(scenario).map_err(|err| BadSetting(err.to_string()))?;
    let pe = plane
        .endpoint(&e.name)
        .ok_or_else(|| BadSetting(format!("no endpoint `{}`", e.name)))?;
    let vnet = scenario
        .vnets
        .iter()
        .find(|v| v.name == e.vnet)
        .ok_or_else(|| BadSetting(format!("no VNet `{}`", e.vnet)))?;
    let hosts_net = vnet
        .subnets
        .iter()
        .find(|s| s.name != e.subnet)
        .map(|s| u32::from(s.prefix.network()) + 4)
        .unwrap_or(u32::from(vnet.address_space.network()) + 256 + 4);
    let mut spec = WorkloadSpec {
        client_base: Ipv4Addr::from(hosts_net),
        server: std::net::SocketAddrV4::new(pe.private_ip, 443),
        seed: scenario.seed,
        ..WorkloadSpec::default()
    };
    if let Some(w) = &scenario.workload {
        spec.hosts = w.hosts_per_endpoint;
        spec.arrivals = match w.arrival.kind {
            ArrivalKind::Constant => Arrivals::Constant {
                per_sec: w.arrival.rate,
            },
            ArrivalKind::Poisson => Arrivals::Poisson {
                per_sec: w.arrival.rate,
            },
        };
        spec.duration = match w.flow_duration {
            ScDuration::Fixed { secs } => FlowDuration::Fixed { secs },
            ScDuration::Exponential { mean } => FlowDuration::Exponential { mean_secs: mean },
            ScDuration::Lognormal { mu, sigma } => FlowDuration::LogNormal { mu, sigma },
            ScDuration::Pareto { scale, shape } => FlowDuration::Pareto {
                scale_secs: scale,
                shape,
            },
        };
        spec.packets_per_flow = w.packets_per_flow;
        spec.bytes_per_flow = w.bytes_per_flow;
        spec.close = match w.close {
            ScClose::Fin => Close::Fin,
            ScClose::Rst => Close::Rst,
            ScClose::Idle => Close::Idle,
        };
        spec.flows = w.flows;
        spec.until_secs = w.duration;
        spec.seed = w.seed.unwrap_or(scenario.seed);
    }
    Ok(spec)
}
