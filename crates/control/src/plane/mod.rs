//! The control plane: services, private endpoints, connections and the approval workflow, as a
//! sans-IO state machine. Operations return the data-plane [`Effect`]s the caller must apply at
//! that simulated instant.
//!
//! This module holds the state and its queries; [`errors`] the refusals, `checks` the rules a
//! new service or endpoint must meet, `workflow` the operations, `timeline` the scenario's
//! events played in time.

mod addresses;
mod checks;
mod errors;
mod index;
mod timeline;
mod workflow;

pub use errors::ControlError;
pub(crate) use errors::{Path, Seg};
pub use timeline::Advance;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;

use plsim_wire::{LinkId, SimTime, VnetId};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::alias;
use crate::net::Prefix;
use crate::scenario::{self, Event, NatIpConfig, Scenario, Visibility};

use plsim_snat::MAX_NAT_IPS;

/// The longest request message Azure accepts.
pub(crate) const MAX_REQUEST_MESSAGE: usize = 140;

/// A service's provisioning state. Operations are instantaneous in simulated time, so a live
/// service is always `Succeeded`; the others are part of the model for completeness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProvisioningState {
    /// Provisioned.
    Succeeded,
    /// Being changed.
    Updating,
    /// Being deleted.
    Deleting,
    /// Provisioning failed.
    Failed,
}

/// The state of a private endpoint connection, as the consumer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Requested, waiting for the provider.
    Pending,
    /// Approved (automatically or manually): the only state that passes traffic.
    Approved,
    /// Rejected by the provider; can never be approved again.
    Rejected,
    /// Removed by the provider; the endpoint is only good for deletion.
    Disconnected,
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionState::Pending => "Pending",
            ConnectionState::Approved => "Approved",
            ConnectionState::Rejected => "Rejected",
            ConnectionState::Disconnected => "Disconnected",
        })
    }
}

/// A Private Link service as the control plane holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivateLinkService {
    /// Its name.
    pub name: String,
    /// The provider's subscription.
    pub subscription: String,
    /// Its resource id.
    pub resource_id: String,
    /// `prefix.{GUID}.region.azure.privatelinkservice`, generated once, never changed.
    pub alias: String,
    /// Provisioning state.
    pub provisioning_state: ProvisioningState,
    /// Who may request connections.
    pub visibility: Visibility,
    /// Whose requests are approved at once.
    pub auto_approval: Vec<String>,
    /// The load balancer frontend IP configuration (its name).
    pub frontend: String,
    /// The frontend's IP address.
    pub frontend_ip: Ipv4Addr,
    /// The NAT IP configurations' addresses, in the order they were added (dynamic ones as
    /// assigned).
    pub nat_ips: Vec<Ipv4Addr>,
    /// The subnet of the provider's VNet they come from, when the scenario has one.
    pub nat_subnet: Option<Prefix>,
    /// The endpoints (names) whose connections the service lists (not removed ones).
    pub connections: Vec<String>,
}

/// A private endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivateEndpoint {
    /// Its name (also its connection's name).
    pub name: String,
    /// The consumer's subscription.
    pub subscription: String,
    /// The VNet's name.
    pub vnet: String,
    /// The VNet's index in the scenario (the endpoint stage's VNet id).
    pub vnet_index: VnetId,
    /// The subnet's name.
    pub subnet: String,
    /// The private IP, fixed for the endpoint's life.
    pub private_ip: Ipv4Addr,
    /// True when the IP was given (static), false when allocated (dynamic).
    pub static_ip: bool,
    /// The NIC name, fixed at creation.
    pub nic_name: String,
    /// The target as written: an alias or a resource id.
    pub target: String,
    /// The manual request message.
    pub request_message: Option<String>,
    /// The connection, once requested.
    pub connection: Option<Connection>,
}

/// A private endpoint connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The data-plane id of the connection.
    pub link: LinkId,
    /// The service's index (see [`ControlPlane::service_at`]).
    pub service: usize,
    /// Its state.
    pub state: ConnectionState,
}

/// What the endpoint stage needs to know of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The connection's id.
    pub id: LinkId,
    /// The consumer VNet's index in the scenario.
    pub vnet: VnetId,
    /// The private endpoint's address in that VNet.
    pub private_ip: Ipv4Addr,
    /// The service's load balancer frontend IP.
    pub frontend: Ipv4Addr,
    /// The service's index.
    pub service: usize,
    /// The connection's state.
    pub state: ConnectionState,
}

/// A change the data plane must apply at the instant it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A connection was requested and is Pending: the endpoint exists in the data plane but
    /// passes nothing yet (its refused packets count under its connection).
    LinkPending(Link),
    /// A connection became Approved: its endpoint passes traffic from now on.
    LinkApproved(Link),
    /// A connection left Approved: its endpoint stops passing traffic at this instant, and the
    /// SNAT engine of service `service` tears down every flow of `link`, freeing their ports.
    LinkClosed {
        /// The connection.
        link: LinkId,
        /// The service's index (which SNAT engine).
        service: usize,
        /// The state it went to (`Disconnected` also when the endpoint was deleted).
        state: ConnectionState,
    },
    /// The endpoint of a connection was deleted: forget the link (after its `LinkClosed`).
    LinkDeleted(LinkId),
    /// A backend went down: the load balancer skips it for new flows.
    BackendDown(Ipv4Addr),
    /// A backend came back.
    BackendUp(Ipv4Addr),
    /// A NAT IP was added to service `service`.
    NatIpAdded {
        /// The service's index.
        service: usize,
        /// The new NAT IP.
        ip: Ipv4Addr,
    },
}

/// The control plane of one simulation: every service, endpoint and connection, and the
/// scenario's timeline still to come.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    rng: ChaCha8Rng,
    vnets: Vec<scenario::Vnet>,
    /// Every backend address and whether it is up.
    backends: Vec<(Ipv4Addr, bool)>,
    /// By index; `None` once deleted (indices stay stable).
    services: Vec<Option<PrivateLinkService>>,
    /// Every alias ever issued, so none is issued twice.
    aliases: HashSet<String>,
    endpoints: Vec<PrivateEndpoint>,
    /// Endpoints deleted so far, as they were when deleted.
    deleted: Vec<PrivateEndpoint>,
    /// The provider's VNet, if the scenario has one.
    provider: Option<scenario::ProviderVnet>,
    /// Endpoints a `create-endpoint` event creates later, by name.
    later: HashMap<String, scenario::Endpoint>,
    /// Every static NAT IP the scenario names (its services' and its `add-nat-ip` events'):
    /// a dynamic NAT IP never takes one, as a dynamic endpoint IP never takes a static one.
    static_nat_ips: Vec<Ipv4Addr>,
    next_link: u32,
    /// `(time, index in the scenario, event)`, in time order.
    timeline: Vec<(SimTime, usize, Event)>,
    cursor: usize,
    /// Names, targets and addresses in use, each one lookup away.
    index: index::Index,
}

/// Every static NAT IP a scenario names, in its services and its `add-nat-ip` events.
fn static_nat_ips(scenario: &Scenario) -> Vec<Ipv4Addr> {
    let events = scenario.timeline.iter().filter_map(|ev| match ev {
        Event::AddNatIp { ip, .. } => Some(*ip),
        _ => None,
    });
    let mut ips: Vec<Ipv4Addr> = scenario
        .services
        .iter()
        .flat_map(|s| s.nat_ips.iter().copied())
        .chain(events)
        .filter_map(|c| match c {
            NatIpConfig::Static(ip) => Some(ip),
            NatIpConfig::Dynamic => None,
        })
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

/// Seconds (from a scenario) to simulated time, rounded to the nanosecond.
pub fn secs_to_time(secs: f64) -> SimTime {
    if secs.is_finite() && secs > 0.0 {
        SimTime::from_nanos((secs * 1e9).round().min(u64::MAX as f64) as u64)
    } else {
        SimTime::ZERO
    }
}

impl ControlPlane {
    /// An empty control plane over the scenario's VNets and load balancer: no services, no
    /// endpoints, no timeline. GUIDs come from `scenario.seed`.
    fn empty(scenario: &Scenario) -> ControlPlane {
        let mut backends: Vec<(Ipv4Addr, bool)> = Vec::new();
        let mut seen = HashSet::new();
        for pool in &scenario.load_balancer.pools {
            for &b in &pool.backends {
                if seen.insert(b) {
                    backends.push((b, true));
                }
            }
        }
        let static_nat_ips = static_nat_ips(scenario);
        ControlPlane {
            index: index::Index::new(scenario, &backends, &static_nat_ips),
            rng: ChaCha8Rng::seed_from_u64(scenario.seed),
            vnets: scenario.vnets.clone(),
            backends,
            services: Vec::new(),
            aliases: HashSet::new(),
            endpoints: Vec::new(),
            deleted: Vec::new(),
            provider: scenario.provider.clone(),
            later: HashMap::new(),
            static_nat_ips,
            next_link: 1,
            timeline: Vec::new(),
            cursor: 0,
        }
    }

    /// The control plane at time zero of a scenario: its services created (in file order, so
    /// service `i` is `scenario.services[i]`), its endpoints created (static IPs first, then
    /// dynamic ones, each in file order), the connections of the endpoints with `connect = true`
    /// requested (in file order: link ids 1, 2, ...), and the timeline queued for
    /// [`advance`](Self::advance). Fails with the first broken rule; [`Scenario::validate`]
    /// reports them all.
    pub fn new(scenario: &Scenario) -> Result<ControlPlane, ControlError> {
        let mut first = None;
        let plane = Self::build(scenario, &mut |_, e| {
            first.get_or_insert(e);
        });
        match first {
            Some(e) => Err(e),
            None => Ok(plane),
        }
    }

    /// Builds as [`new`](Self::new), reporting every error with its place and going on.
    pub(crate) fn build(
        scenario: &Scenario,
        report: &mut dyn FnMut(Path, ControlError),
    ) -> ControlPlane {
        let mut plane = ControlPlane::empty(scenario);
        for (i, s) in scenario.services.iter().enumerate() {
            let problems = plane.check_service(s);
            let failed = !problems.is_empty();
            for (p, e) in problems {
                report(prefixed("services", i, p), e);
            }
            // Keep indices equal to file positions even when a service is broken.
            plane.services.push(None);
            if !failed {
                match plane.resolve_nat_ips(s) {
                    Ok(nat_ips) => {
                        let idx = plane.services.len() - 1;
                        let svc = plane.make_service(s, nat_ips);
                        plane.index.service_created(idx, &svc);
                        plane.services[idx] = Some(svc);
                    }
                    Err(problems) => {
                        for (p, e) in problems {
                            report(prefixed("services", i, p), e);
                        }
                    }
                }
            }
        }
        // Endpoints a `create-endpoint` event names are created then, not now.
        let created_later: HashSet<&str> = scenario
            .timeline
            .iter()
            .filter_map(|ev| match ev {
                Event::CreateEndpoint { endpoint, .. } => Some(endpoint.as_str()),
                _ => None,
            })
            .collect();
        let later = |e: &scenario::Endpoint| created_later.contains(e.name.as_str());
        for e in scenario.endpoints.iter().filter(|e| later(e)) {
            // The first of a name, as a search in file order would find.
            plane
                .later
                .entry(e.name.clone())
                .or_insert_with(|| e.clone());
        }
        let now = |(_, e): &(usize, &scenario::Endpoint)| !later(e);
        let order = scenario
            .endpoints
            .iter()
            .enumerate()
            .filter(now)
            .filter(|(_, e)| e.private_ip.is_some())
            .chain(
                scenario
                    .endpoints
                    .iter()
                    .enumerate()
                    .filter(now)
                    .filter(|(_, e)| e.private_ip.is_none()),
            );
        let mut created = vec![false; scenario.endpoints.len()];
        for (i, e) in order {
            match plane.create_endpoint_checked(e) {
                Ok(()) => created[i] = true,
                Err(problems) => {
                    for (p, err) in problems {
                        report(prefixed("endpoints", i, p), err);
                    }
                }
            }
        }
        for (i, e) in scenario.endpoints.iter().enumerate() {
            if created[i]
                && e.connect
                && let Err(err) = plane.request(&e.name)
            {
                report(prefixed("endpoints", i, vec![Seg::Key("target")]), err);
            }
        }
        let mut events: Vec<(SimTime, usize, Event)> = scenario
            .timeline
            .iter()
            .enumerate()
            .map(|(i, ev)| (secs_to_time(ev.at()), i, ev.clone()))
            .collect();
        events.sort_by_key(|(t, i, _)| (*t, *i));
        plane.timeline = events;
        plane
    }

    fn service_index(&self, name: &str) -> Result<usize, ControlError> {
        self.index
            .service_by_name
            .get(name)
            .copied()
            .ok_or_else(|| ControlError::UnknownService(name.to_owned()))
    }

    /// The live service with this name.
    pub fn service(&self, name: &str) -> Option<&PrivateLinkService> {
        let i = *self.index.service_by_name.get(name)?;
        self.service_at(i)
    }

    /// The service with this index, if it was created and not deleted.
    pub fn service_at(&self, index: usize) -> Option<&PrivateLinkService> {
        self.services.get(index).and_then(Option::as_ref)
    }

    /// The endpoint with this name.
    pub fn endpoint(&self, name: &str) -> Option<&PrivateEndpoint> {
        self.endpoints.get(*self.index.endpoint_at.get(name)?)
    }

    /// Every endpoint that exists now, in creation order.
    pub fn endpoints(&self) -> &[PrivateEndpoint] {
        &self.endpoints
    }

    /// Every endpoint deleted so far, as it was when deleted, in deletion order.
    pub fn deleted_endpoints(&self) -> &[PrivateEndpoint] {
        &self.deleted
    }

    /// The endpoint with this name, live or deleted (the latest of that name).
    pub fn endpoint_ever(&self, name: &str) -> Option<&PrivateEndpoint> {
        self.endpoint(name)
            .or_else(|| self.deleted.iter().rev().find(|e| e.name == name))
    }

    /// The state of the endpoint's connection (`None`: no such endpoint or no request yet).
    pub fn connection_state(&self, endpoint: &str) -> Option<ConnectionState> {
        self.endpoint(endpoint)?.connection.map(|c| c.state)
    }

    /// Every connection of every endpoint, in link id order: what the endpoint stage is built from.
    pub fn links(&self) -> Vec<Link> {
        let mut v: Vec<Link> = self
            .endpoints
            .iter()
            .filter_map(|e| self.link_of(e))
            .collect();
        v.sort_by_key(|l| l.id);
        v
    }

    fn link_of(&self, e: &PrivateEndpoint) -> Option<Link> {
        let c = e.connection?;
        let frontend = self
            .service_at(c.service)
            .map_or(Ipv4Addr::UNSPECIFIED, |s| s.frontend_ip);
        Some(Link {
            id: c.link,
            vnet: e.vnet_index,
            private_ip: e.private_ip,
            frontend,
            service: c.service,
            state: c.state,
        })
    }

    fn resolve_target(&self, target: &str) -> Option<usize> {
        self.index.service_by_target.get(target).copied()
    }

    fn endpoint_mut(&mut self, name: &str) -> Result<&mut PrivateEndpoint, ControlError> {
        self.index
            .endpoint_at
            .get(name)
            .and_then(|&i| self.endpoints.get_mut(i))
            .ok_or_else(|| ControlError::UnknownEndpoint(name.to_owned()))
    }

    fn connection(&self, endpoint: &str) -> Result<Connection, ControlError> {
        let e = self
            .endpoint(endpoint)
            .ok_or_else(|| ControlError::UnknownEndpoint(endpoint.to_owned()))?;
        e.connection
            .ok_or_else(|| ControlError::NoConnection(endpoint.to_owned()))
    }
}

fn prefixed(list: &'static str, i: usize, rel: Path) -> Path {
    let mut p = vec![Seg::Key(list), Seg::Index(i)];
    p.extend(rel);
    p
}
