//! The path built from a scenario: the private endpoints (the engine's edge), the load balancer
//! and the SNAT engines (its core), and the scenario's timeline as engine events.

use std::net::Ipv4Addr;
use std::time::Duration;

use plsim_control::scenario::Scenario;
use plsim_control::{ConnectionState, ControlPlane};
use plsim_endpoint::EndpointTable;
use plsim_lb::{Lb, LbConfig, Rule};
use plsim_snat::{Allocator, PortRange, ReuseScope, ReuseTracking, Snat, SnatConfig};
use plsim_wire::{SimTime, VnetId};

use crate::stages::{EndpointStage, LbStage, SnatStage, endpoint_of};
use crate::{Error, Event, Result};

/// Overrides of a scenario's NAT settings, from the command line. They apply to every service.
/// (With the `cli` feature, clap parses the flags straight into it.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Overrides {
    /// Use the first N NAT IPs of the scenario (1..=8).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))
    )]
    pub nat_ips: Option<u8>,
    /// The port range of every NAT IP, e.g. 1024-65535.
    #[cfg_attr(feature = "cli", arg(long, value_name = "LO-HI"))]
    pub ports: Option<PortRange>,
    /// The port allocator: sequential, random, random:SEED or block:N.
    #[cfg_attr(feature = "cli", arg(long, value_name = "NAME"))]
    pub allocator: Option<Allocator>,
    /// The port reuse scope: per-backend (Azure's) or per-ip.
    #[cfg_attr(feature = "cli", arg(long, value_name = "SCOPE"))]
    pub reuse: Option<ReuseScope>,
    /// Let packets of a flow whose SYN is not in the capture open it (mid-stream pickup: not a
    /// scenario setting, the run takes it).
    #[cfg_attr(feature = "cli", arg(long))]
    pub pickup: bool,
}

impl Overrides {
    /// Applies the overrides to a scenario (before it is checked and built). A count of NAT
    /// IPs the scenario does not have is an error.
    pub fn apply(&self, scenario: &mut Scenario) -> Result<()> {
        for s in &mut scenario.services {
            if let Some(asked) = self.nat_ips {
                let n = usize::from(asked);
                if n == 0 || n > plsim_snat::MAX_NAT_IPS {
                    return Err(Error::NatIpCount { asked });
                }
                if n > s.nat_ips.len() {
                    return Err(Error::TooFewNatIps {
                        asked,
                        service: s.name.clone(),
                        has: s.nat_ips.len(),
                    });
                }
                s.nat_ips.truncate(n);
            }
            if let Some(p) = self.ports {
                s.ports = p;
            }
            if let Some(a) = self.allocator {
                s.allocator = a;
            }
            if let Some(r) = self.reuse {
                s.reuse = r;
            }
        }
        Ok(())
    }
}

/// The stages built from a scenario, ready to run.
pub struct Path {
    /// The private endpoints of every consumer VNet.
    pub endpoint: EndpointStage,
    /// The load balancer.
    pub lb: LbStage,
    /// The SNAT engines, one per service.
    pub snat: SnatStage,
    /// The timeline's effects as engine events, in time order.
    pub events: Vec<(SimTime, Event)>,
    /// Where consumers send: every endpoint the run has (those created later too), in file
    /// order.
    pub routes: Vec<Route>,
    /// The provider's addresses (backends, NAT IPs): a SYN from one of them is the provider
    /// opening a connection.
    pub provider: Vec<Ipv4Addr>,
    /// Every connection the run has, in link id order, with its final state.
    pub connections: Vec<ConnectionInfo>,
    /// The longest timer of any stage (the load balancer's idle timeout, which is at least
    /// every service's longest): a flow that saw no packet for longer has no state left in the
    /// path, so the replay may forget it too.
    pub horizon: Duration,
}

/// A private endpoint as the replay feeder sees it: where its consumers send, and which packets
/// of a capture are theirs.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// The endpoint's name.
    pub name: String,
    /// Its consumer VNet (the endpoint stage's VNet id).
    pub vnet: VnetId,
    /// Its private IP.
    pub address: Ipv4Addr,
    /// Which packets are its consumers' (`None`: whatever no other endpoint took).
    pub traffic: Option<plsim_control::scenario::Traffic>,
    /// When it is created, from the start of the run.
    pub created: SimTime,
}

/// A connection of the run, for the per-connection results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Its link id.
    pub link: plsim_wire::LinkId,
    /// Its endpoint.
    pub endpoint: String,
    /// Its service.
    pub service: String,
    /// Its state once the whole timeline has run (`Deleted` once its endpoint is).
    pub state: String,
}

/// The backends a service's NAT IPs serve: every backend of the pools its frontend's rules
/// send to.
pub fn service_backends(scenario: &Scenario, frontend: &str) -> u64 {
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

/// The SNAT configuration of each service of a scenario, with the NAT IPs the control plane
/// gave them (dynamic ones assigned), keeping no reuse record.
pub fn snat_configs(scenario: &Scenario, plane: &ControlPlane, pickup: bool) -> Vec<SnatConfig> {
    scenario
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| SnatConfig {
            nat_ips: plane
                .service_at(i)
                .map(|p| p.nat_ips.clone())
                .unwrap_or_default(),
            ports: s.ports,
            allocator: s.allocator,
            reuse: s.reuse,
            selection: s.selection,
            timers: s.timers,
            pickup,
            rst_on_exhaustion: s.rst_on_exhaustion,
            proxy_protocol: s.enable_proxy_protocol,
            track_reuse: None,
        })
        .collect()
}

/// The load balancer's configuration of a scenario. Its idle timeout is the longest timer of
/// any service, so it never forgets a flow the SNAT stage still translates.
pub fn lb_config(scenario: &Scenario) -> Result<LbConfig> {
    let lbs = &scenario.load_balancer;
    let idle = scenario
        .services
        .iter()
        .map(|s| s.timers.longest())
        .fold(plsim_lb::DEFAULT_IDLE_TIMEOUT, std::cmp::max);
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
        rules: Vec::with_capacity(lbs.rules.len()),
        idle_timeout: idle,
        on_backend_down: lbs.on_backend_down,
    };
    for r in &lbs.rules {
        let frontend = lbs
            .frontends
            .iter()
            .find(|f| f.name == r.frontend)
            .map(|f| f.ip)
            .ok_or_else(|| {
                Error::Input(format!("rule `{}`: no frontend `{}`", r.name, r.frontend))
            })?;
        cfg.rules.push(Rule {
            frontend,
            kind: r.kind,
            pool: r.pool.clone(),
            distribution: r.distribution,
            hashing: r.hashing,
        });
    }
    Ok(cfg)
}

impl Path {
    /// Builds the path of a scenario that passed validation, with `pickup` for mid-stream flows
    /// (no reuse record).
    pub fn build(scenario: &Scenario, pickup: bool) -> Result<Path> {
        Path::build_with(scenario, pickup, None)
    }

    /// [`Path::build`], with `Some(settings)` counting port reuses and TIME_WAIT hazards
    /// ([`plsim_snat::SnatConfig::track_reuse`]; its memory follows the tuples freed within
    /// the horizon).
    pub fn build_with(
        scenario: &Scenario,
        pickup: bool,
        reuse: Option<ReuseTracking>,
    ) -> Result<Path> {
        let plane = ControlPlane::new(scenario)?;
        let links = plane.links();

        let mut table = EndpointTable::new();
        for l in &links {
            table.insert(endpoint_of(l, l.state == ConnectionState::Approved))?;
        }
        let engines = snat_configs(scenario, &plane, pickup)
            .into_iter()
            .map(|cfg| {
                Snat::new(SnatConfig {
                    track_reuse: reuse,
                    ..cfg
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lb_cfg = lb_config(scenario)?;
        let horizon = lb_cfg.idle_timeout;
        let lb = Lb::new(lb_cfg)?;

        // The whole timeline, once, for its events and for what it makes of the endpoints.
        let mut timeline = plane.clone();
        let events = timeline
            .advance(SimTime::MAX)
            .effects
            .into_iter()
            .map(|(t, e)| (t, Event::Control(e)))
            .collect();
        let created = |name: &str| {
            scenario
                .timeline
                .iter()
                .find_map(|ev| match ev {
                    plsim_control::scenario::Event::CreateEndpoint { at, endpoint }
                        if endpoint == name =>
                    {
                        Some(plsim_control::secs_to_time(*at))
                    }
                    _ => None,
                })
                .unwrap_or(SimTime::ZERO)
        };
        let routes = scenario
            .endpoints
            .iter()
            .filter_map(|e| {
                let pe = timeline.endpoint_ever(&e.name)?;
                Some(Route {
                    name: e.name.clone(),
                    vnet: pe.vnet_index,
                    address: pe.private_ip,
                    traffic: e.traffic.clone(),
                    created: created(&e.name),
                })
            })
            .collect();
        let mut provider: Vec<Ipv4Addr> = scenario
            .load_balancer
            .pools
            .iter()
            .flat_map(|p| p.backends.iter().copied())
            .collect();
        for i in 0..scenario.services.len() {
            if let Some(s) = timeline.service_at(i) {
                provider.extend(&s.nat_ips);
            }
        }
        provider.sort_unstable();
        provider.dedup();
        let mut connections: Vec<ConnectionInfo> = timeline
            .endpoints()
            .iter()
            .map(|e| (e, false))
            .chain(timeline.deleted_endpoints().iter().map(|e| (e, true)))
            .filter_map(|(e, deleted)| {
                let c = e.connection?;
                Some(ConnectionInfo {
                    link: c.link,
                    endpoint: e.name.clone(),
                    service: scenario
                        .services
                        .get(c.service)
                        .map_or_else(String::new, |s| s.name.clone()),
                    state: if deleted {
                        "Deleted".to_owned()
                    } else {
                        c.state.to_string()
                    },
                })
            })
            .collect();
        connections.sort_by_key(|c| c.link);
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
                links.iter().map(|l| (l.id, l.service, l.private_ip)),
            ),
            events,
            routes,
            provider,
            connections,
            horizon,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use plsim_control::scenario::{Hashing, OnBackendDown, Selection};

    #[test]
    fn the_builtin_scenario_maps_onto_the_stages() {
        let s = Scenario::builtin();
        let plane = ControlPlane::new(&s).unwrap();
        let snat = snat_configs(&s, &plane, true);
        assert_eq!(snat.len(), 1);
        let c = &snat[0];
        assert_eq!(c.nat_ips.len(), 8);
        assert_eq!(c.nat_ips[0], Ipv4Addr::new(10, 10, 1, 4));
        assert_eq!(c.ports, PortRange::new(1024, 65535));
        assert_eq!(c.allocator, Allocator::Sequential);
        assert_eq!(c.reuse, ReuseScope::PerBackend);
        assert_eq!(c.selection, Selection::Paired);
        assert_eq!(c.timers.rst_hold, Duration::from_secs(15));
        assert!(c.pickup && !c.rst_on_exhaustion);
        let lb = lb_config(&s).unwrap();
        assert_eq!(
            lb.frontends,
            vec![plsim_lb::Frontend {
                ip: Ipv4Addr::new(10, 10, 0, 4)
            }]
        );
        assert_eq!(lb.pools[0].backends.len(), 4);
        assert_eq!(
            lb.rules,
            vec![Rule::ha_ports(Ipv4Addr::new(10, 10, 0, 4), "app-pool")]
        );
        assert_eq!(lb.idle_timeout, Duration::from_secs(240));
        assert_eq!(lb.on_backend_down, OnBackendDown::Keep);
        assert_eq!(service_backends(&s, "fe-app"), 4);
        let path = Path::build(&s, false).unwrap();
        assert_eq!(
            path.routes,
            vec![Route {
                name: "pe-app".into(),
                vnet: VnetId(0),
                address: Ipv4Addr::new(10, 0, 0, 4),
                traffic: None,
                created: SimTime::ZERO,
            }]
        );
        assert!(path.events.is_empty());
        assert_eq!(path.provider.len(), 12, "four backends and eight NAT IPs");
        assert_eq!(
            path.connections,
            vec![ConnectionInfo {
                link: plsim_wire::LinkId(1),
                endpoint: "pe-app".into(),
                service: "app".into(),
                state: "Approved".into(),
            }]
        );
    }

    #[test]
    fn settings_reach_the_stages_and_the_lb_outlives_every_snat_timer() {
        let mut s = Scenario::builtin();
        s.services[0].timers.fin_hold = Duration::from_secs(900);
        s.services[0].rst_on_exhaustion = true;
        s.load_balancer.on_backend_down = OnBackendDown::Reset;
        s.load_balancer.rules[0].hashing = Hashing::Maglev { table_size: 65_537 };
        s.load_balancer.rules[0].distribution = plsim_lb::Distribution::SourceIp;
        let lb = lb_config(&s).unwrap();
        assert_eq!(lb.idle_timeout, Duration::from_secs(900));
        assert_eq!(lb.on_backend_down, OnBackendDown::Reset);
        assert_eq!(lb.rules[0].hashing, Hashing::Maglev { table_size: 65_537 });
        assert_eq!(lb.rules[0].distribution, plsim_lb::Distribution::SourceIp);
        let plane = ControlPlane::new(&s).unwrap();
        assert!(snat_configs(&s, &plane, false)[0].rst_on_exhaustion);
        // A port rule keeps its ports.
        let port = plsim_lb::RuleKind::Port {
            frontend_port: 443,
            backend_port: 8443,
        };
        s.load_balancer.rules[0].kind = port;
        assert_eq!(lb_config(&s).unwrap().rules[0].kind, port);
    }

    #[test]
    fn overrides_apply_to_every_service_and_refuse_what_it_lacks() {
        let mut s = Scenario::builtin();
        Overrides {
            nat_ips: Some(3),
            ports: Some(PortRange::new(2000, 2099)),
            allocator: Some(Allocator::Block(10)),
            reuse: Some(ReuseScope::PerIp),
            pickup: true,
        }
        .apply(&mut s)
        .unwrap();
        let svc = &s.services[0];
        assert_eq!(svc.nat_ips.len(), 3);
        assert_eq!(svc.ports, PortRange::new(2000, 2099));
        assert_eq!(svc.allocator, Allocator::Block(10));
        assert_eq!(svc.reuse, ReuseScope::PerIp);
        let e = Overrides {
            nat_ips: Some(5),
            ..Overrides::default()
        }
        .apply(&mut s)
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "--nat-ips 5: service `app` has only 3 NAT IPs"
        );
    }
}
