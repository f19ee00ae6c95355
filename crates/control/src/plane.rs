//! The control plane: services, private endpoints, connections and the approval workflow, as a
//! sans-IO state machine. Operations return the data-plane [`Effect`]s the caller must apply at
//! that simulated instant.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

use plsim_wire::{LinkId, SimTime};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::alias;
use crate::net::Prefix;
use crate::scenario::{self, Event, Scenario, Visibility};

use plsim_snat::MAX_NAT_IPS;

/// The longest request message Azure accepts.
pub const MAX_REQUEST_MESSAGE: usize = 140;

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
    /// The NAT IP configurations, in the order they were added.
    pub nat_ips: Vec<Ipv4Addr>,
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
    pub vnet_index: u32,
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
    pub vnet: u32,
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

/// A broken rule: the operation was refused and nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A name that Azure would not accept.
    #[error("invalid {what}: {problem}")]
    InvalidName {
        /// What is named.
        what: &'static str,
        /// Why it is refused.
        problem: String,
    },
    /// Two resources of one kind with the same name.
    #[error("{kind} `{name}` already exists")]
    DuplicateName {
        /// The kind (`service`, `endpoint`, `NIC`).
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// No such service.
    #[error("no service `{0}`")]
    UnknownService(String),
    /// No such endpoint.
    #[error("no private endpoint `{0}`")]
    UnknownEndpoint(String),
    /// No such load balancer frontend.
    #[error("no load balancer frontend `{0}`")]
    UnknownFrontend(String),
    /// Another service is tied to the frontend already.
    #[error("frontend `{frontend}` already serves service `{service}`")]
    FrontendInUse {
        /// The frontend.
        frontend: String,
        /// The service using it.
        service: String,
    },
    /// A service without NAT IP.
    #[error("a Private Link service needs at least one NAT IP")]
    NoNatIp,
    /// More than eight NAT IPs.
    #[error("{count} NAT IPs: a Private Link service has at most {MAX_NAT_IPS}")]
    TooManyNatIps {
        /// How many there would be.
        count: usize,
    },
    /// The same NAT IP twice on one service.
    #[error("NAT IP {0} is configured twice")]
    DuplicateNatIp(Ipv4Addr),
    /// An address already used by something else.
    #[error("{ip} is already used by {by}")]
    AddressInUse {
        /// The address.
        ip: Ipv4Addr,
        /// What uses it.
        by: String,
    },
    /// NAT IP configurations are add-only.
    #[error("NAT IP {ip} of service `{service}` can't be removed: NAT IPs are add-only")]
    NatIpsAreAddOnly {
        /// The service.
        service: String,
        /// The NAT IP.
        ip: Ipv4Addr,
    },
    /// An auto-approval subscription the service is not visible to.
    #[error(
        "auto-approval subscription `{0}` is not in the visibility (auto-approval must be a subset of visibility)"
    )]
    AutoApprovalNotVisible(String),
    /// No such VNet.
    #[error("no VNet `{0}`")]
    UnknownVnet(String),
    /// No such subnet in the VNet.
    #[error("no subnet `{subnet}` in VNet `{vnet}`")]
    UnknownSubnet {
        /// The VNet.
        vnet: String,
        /// The subnet.
        subnet: String,
    },
    /// The endpoint's subscription is not its VNet's.
    #[error(
        "subscription `{subscription}` is not the VNet's (`{vnet_subscription}`): a private endpoint lives in its VNet's subscription"
    )]
    SubscriptionMismatch {
        /// The endpoint's.
        subscription: String,
        /// The VNet's.
        vnet_subscription: String,
    },
    /// A static IP outside the subnet.
    #[error("{ip} is outside subnet {subnet}")]
    OutsideSubnet {
        /// The address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Prefix,
    },
    /// A static IP Azure reserves (the first four and the last of the subnet).
    #[error("{ip} is reserved in subnet {subnet} (the first four and the last address are)")]
    ReservedAddress {
        /// The address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Prefix,
    },
    /// A static IP another endpoint of the VNet has.
    #[error("{ip} is already the address of endpoint `{endpoint}`")]
    AddressTaken {
        /// The address.
        ip: Ipv4Addr,
        /// The endpoint holding it.
        endpoint: String,
    },
    /// No free address left for a dynamic IP.
    #[error("subnet {0} has no free address left")]
    SubnetFull(Prefix),
    /// A request message over 140 characters.
    #[error("the request message has {0} characters; at most {MAX_REQUEST_MESSAGE}")]
    RequestMessageTooLong(usize),
    /// No live service has this alias or resource id.
    #[error("no service has the alias or resource id `{0}`")]
    UnknownTarget(String),
    /// The service is not visible to the consumer's subscription: the request is refused.
    #[error("service `{service}` is not visible to subscription `{subscription}`: request refused")]
    NotVisible {
        /// The service.
        service: String,
        /// The consumer's subscription.
        subscription: String,
    },
    /// The endpoint already has a connection (an endpoint makes one request in its life).
    #[error("endpoint `{endpoint}` already has a connection ({state}); create a new endpoint")]
    AlreadyRequested {
        /// The endpoint.
        endpoint: String,
        /// Its connection's state.
        state: ConnectionState,
    },
    /// The endpoint has not requested a connection.
    #[error("endpoint `{0}` has no connection")]
    NoConnection(String),
    /// A Rejected connection can never be approved.
    #[error(
        "the connection of `{0}` was rejected and can't be approved: remove it and create a new endpoint"
    )]
    RejectedCannotBeApproved(String),
    /// The connection was removed: the endpoint is only good for deletion.
    #[error("the connection of `{0}` was removed (Disconnected): the endpoint can only be deleted")]
    ConnectionRemoved(String),
    /// A service with Pending or Approved connections can't be deleted.
    #[error("service `{service}` has {count} connection(s): reject or remove them first")]
    ServiceHasConnections {
        /// The service.
        service: String,
        /// How many Pending or Approved connections.
        count: usize,
    },
    /// No backend has this address.
    #[error("no backend {0} in any pool")]
    UnknownBackend(Ipv4Addr),
    /// A timeline event failed.
    #[error("timeline[{index}] ({action}): {source}")]
    Event {
        /// The event's index in the scenario's timeline.
        index: usize,
        /// Its action.
        action: &'static str,
        /// What went wrong.
        source: Box<ControlError>,
    },
}

/// A path to a field of a scenario, relative or absolute (`services[0].nat_ips[2]`).
pub(crate) type Path = Vec<Seg>;

/// One step of a [`Path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Name(String),
    Index(usize),
}

/// The control plane of one simulation: every service, endpoint and connection, and the
/// scenario's timeline still to come.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    rng: ChaCha8Rng,
    vnets: Vec<scenario::Vnet>,
    frontends: Vec<scenario::Frontend>,
    /// Every backend address and whether it is up.
    backends: Vec<(Ipv4Addr, bool)>,
    /// By index; `None` once deleted (indices stay stable).
    services: Vec<Option<PrivateLinkService>>,
    /// Every alias ever issued, so none is issued twice.
    aliases: HashSet<String>,
    endpoints: Vec<PrivateEndpoint>,
    next_link: u32,
    /// `(time, index in the scenario, event)`, in time order.
    timeline: Vec<(SimTime, usize, Event)>,
    cursor: usize,
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
    pub fn empty(scenario: &Scenario) -> ControlPlane {
        let mut backends: Vec<(Ipv4Addr, bool)> = Vec::new();
        for pool in &scenario.load_balancer.pools {
            for &b in &pool.backends {
                if !backends.iter().any(|&(x, _)| x == b) {
                    backends.push((b, true));
                }
            }
        }
        ControlPlane {
            rng: ChaCha8Rng::seed_from_u64(scenario.seed),
            vnets: scenario.vnets.clone(),
            frontends: scenario.load_balancer.frontends.clone(),
            backends,
            services: Vec::new(),
            aliases: HashSet::new(),
            endpoints: Vec::new(),
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
                let idx = plane.services.len() - 1;
                let svc = plane.make_service(s);
                plane.services[idx] = Some(svc);
            }
        }
        let order = scenario
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.private_ip.is_some())
            .chain(
                scenario
                    .endpoints
                    .iter()
                    .enumerate()
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

    fn check_service(&self, s: &scenario::Service) -> Vec<(Path, ControlError)> {
        let mut out = Vec::new();
        let key = |k| vec![Seg::Key(k)];
        if let Some(problem) = alias::name_problem(&s.name, true) {
            out.push((
                key("name"),
                ControlError::InvalidName {
                    what: "service name",
                    problem,
                },
            ));
        } else if self.live_services().any(|(_, x)| x.name == s.name) {
            out.push((
                key("name"),
                ControlError::DuplicateName {
                    kind: "service",
                    name: s.name.clone(),
                },
            ));
        }
        if let Some(problem) = s
            .alias_prefix
            .as_deref()
            .and_then(|p| alias::name_problem(p, false))
        {
            out.push((
                key("alias_prefix"),
                ControlError::InvalidName {
                    what: "alias prefix",
                    problem,
                },
            ));
        } else if s.alias_prefix.is_none() && s.name.contains('.') {
            out.push((
                key("alias_prefix"),
                ControlError::InvalidName {
                    what: "alias prefix",
                    problem: format!(
                        "the name `{}` has a `.`; give an alias_prefix without one",
                        s.name
                    ),
                },
            ));
        }
        if let Some(problem) = alias::region_problem(&s.region) {
            out.push((
                key("region"),
                ControlError::InvalidName {
                    what: "region",
                    problem,
                },
            ));
        }
        if let Some(problem) = alias::name_problem(&s.resource_group, true) {
            out.push((
                key("resource_group"),
                ControlError::InvalidName {
                    what: "resource group",
                    problem,
                },
            ));
        }
        if s.subscription.is_empty() {
            out.push((
                key("subscription"),
                ControlError::InvalidName {
                    what: "subscription",
                    problem: "it is empty".to_owned(),
                },
            ));
        }
        match self.frontends.iter().find(|f| f.name == s.frontend) {
            None => out.push((
                key("frontend"),
                ControlError::UnknownFrontend(s.frontend.clone()),
            )),
            Some(_) => {
                if let Some((_, other)) =
                    self.live_services().find(|(_, x)| x.frontend == s.frontend)
                {
                    out.push((
                        key("frontend"),
                        ControlError::FrontendInUse {
                            frontend: s.frontend.clone(),
                            service: other.name.clone(),
                        },
                    ));
                }
            }
        }
        if s.nat_ips.is_empty() {
            out.push((key("nat_ips"), ControlError::NoNatIp));
        } else if s.nat_ips.len() > MAX_NAT_IPS {
            out.push((
                key("nat_ips"),
                ControlError::TooManyNatIps {
                    count: s.nat_ips.len(),
                },
            ));
        }
        for (i, &ip) in s.nat_ips.iter().enumerate() {
            let at = vec![Seg::Key("nat_ips"), Seg::Index(i)];
            if s.nat_ips[..i].contains(&ip) {
                out.push((at, ControlError::DuplicateNatIp(ip)));
            } else if let Some(by) = self.address_user(ip) {
                out.push((at, ControlError::AddressInUse { ip, by }));
            }
        }
        for (i, sub) in s.auto_approval.iter().enumerate() {
            if !s.visibility.sees(sub, &s.subscription) {
                out.push((
                    vec![Seg::Key("auto_approval"), Seg::Index(i)],
                    ControlError::AutoApprovalNotVisible(sub.clone()),
                ));
            }
        }
        out
    }

    /// What in the provider's address plan uses `ip`: a frontend, a backend or a NAT IP.
    fn address_user(&self, ip: Ipv4Addr) -> Option<String> {
        if let Some(f) = self.frontends.iter().find(|f| f.ip == ip) {
            return Some(format!("frontend `{}`", f.name));
        }
        if self.backends.iter().any(|&(b, _)| b == ip) {
            return Some("a backend".to_owned());
        }
        self.live_services()
            .find(|(_, s)| s.nat_ips.contains(&ip))
            .map(|(_, s)| format!("a NAT IP of service `{}`", s.name))
    }

    fn make_service(&mut self, s: &scenario::Service) -> PrivateLinkService {
        let alias = loop {
            let a = alias::alias(s.prefix(), &alias::guid(&mut self.rng), &s.region);
            if self.aliases.insert(a.clone()) {
                break a;
            }
        };
        let frontend_ip = self
            .frontends
            .iter()
            .find(|f| f.name == s.frontend)
            .map_or(Ipv4Addr::UNSPECIFIED, |f| f.ip);
        PrivateLinkService {
            name: s.name.clone(),
            subscription: s.subscription.clone(),
            resource_id: s.resource_id(),
            alias,
            provisioning_state: ProvisioningState::Succeeded,
            visibility: s.visibility.clone(),
            auto_approval: s.auto_approval.clone(),
            frontend: s.frontend.clone(),
            frontend_ip,
            nat_ips: s.nat_ips.clone(),
            connections: Vec::new(),
        }
    }

    /// Creates a service: checks every rule (name, alias prefix, region, frontend free, 1..=8
    /// distinct unused NAT IPs, auto-approval within visibility), generates its alias, and
    /// returns its index. Fails with the first broken rule.
    pub fn create_service(&mut self, s: &scenario::Service) -> Result<usize, ControlError> {
        if let Some((_, e)) = self.check_service(s).into_iter().next() {
            return Err(e);
        }
        let svc = self.make_service(s);
        self.services.push(Some(svc));
        Ok(self.services.len() - 1)
    }

    fn live_services(&self) -> impl Iterator<Item = (usize, &PrivateLinkService)> {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    fn service_index(&self, name: &str) -> Result<usize, ControlError> {
        self.live_services()
            .find(|(_, s)| s.name == name)
            .map(|(i, _)| i)
            .ok_or_else(|| ControlError::UnknownService(name.to_owned()))
    }

    /// The live service with this name.
    pub fn service(&self, name: &str) -> Option<&PrivateLinkService> {
        self.live_services()
            .find(|(_, s)| s.name == name)
            .map(|(_, s)| s)
    }

    /// The service with this index, if it was created and not deleted.
    pub fn service_at(&self, index: usize) -> Option<&PrivateLinkService> {
        self.services.get(index).and_then(Option::as_ref)
    }

    /// The endpoint with this name.
    pub fn endpoint(&self, name: &str) -> Option<&PrivateEndpoint> {
        self.endpoints.iter().find(|e| e.name == name)
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
        self.live_services()
            .find(|(_, s)| s.alias == target || s.resource_id == target)
            .map(|(i, _)| i)
    }

    fn check_endpoint(&self, e: &scenario::Endpoint) -> Vec<(Path, ControlError)> {
        let mut out = Vec::new();
        let key = |k| vec![Seg::Key(k)];
        if let Some(problem) = alias::name_problem(&e.name, true) {
            out.push((
                key("name"),
                ControlError::InvalidName {
                    what: "endpoint name",
                    problem,
                },
            ));
        } else if self.endpoint(&e.name).is_some() {
            out.push((
                key("name"),
                ControlError::DuplicateName {
                    kind: "endpoint",
                    name: e.name.clone(),
                },
            ));
        }
        if let Some(nic) = &e.nic_name {
            if let Some(problem) = alias::name_problem(nic, true) {
                out.push((
                    key("nic_name"),
                    ControlError::InvalidName {
                        what: "NIC name",
                        problem,
                    },
                ));
            } else if self.endpoints.iter().any(|x| &x.nic_name == nic) {
                out.push((
                    key("nic_name"),
                    ControlError::DuplicateName {
                        kind: "NIC",
                        name: nic.clone(),
                    },
                ));
            }
        }
        if let Some(m) = &e.request_message {
            let n = m.chars().count();
            if n > MAX_REQUEST_MESSAGE {
                out.push((
                    key("request_message"),
                    ControlError::RequestMessageTooLong(n),
                ));
            }
        }
        if self.resolve_target(&e.target).is_none() {
            out.push((key("target"), ControlError::UnknownTarget(e.target.clone())));
        }
        match self.vnets.iter().find(|v| v.name == e.vnet) {
            None => out.push((key("vnet"), ControlError::UnknownVnet(e.vnet.clone()))),
            Some(vnet) => {
                if vnet.subscription != e.subscription {
                    out.push((
                        key("subscription"),
                        ControlError::SubscriptionMismatch {
                            subscription: e.subscription.clone(),
                            vnet_subscription: vnet.subscription.clone(),
                        },
                    ));
                }
                match vnet.subnets.iter().find(|s| s.name == e.subnet) {
                    None => out.push((
                        key("subnet"),
                        ControlError::UnknownSubnet {
                            vnet: e.vnet.clone(),
                            subnet: e.subnet.clone(),
                        },
                    )),
                    Some(sn) => {
                        if let Err(err) = self.pick_address(&e.vnet, sn.prefix, e.private_ip) {
                            let at = if e.private_ip.is_some() {
                                "private_ip"
                            } else {
                                "subnet"
                            };
                            out.push((key(at), err));
                        }
                    }
                }
            }
        }
        out
    }

    /// The endpoint's address: the static one if it is usable, else the lowest free one.
    fn pick_address(
        &self,
        vnet: &str,
        subnet: Prefix,
        ip: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, ControlError> {
        let holder = |a: Ipv4Addr| {
            self.endpoints
                .iter()
                .find(|x| x.vnet == vnet && x.private_ip == a)
        };
        match ip {
            Some(ip) => {
                if !subnet.contains(ip) {
                    Err(ControlError::OutsideSubnet { ip, subnet })
                } else if subnet.is_reserved(ip) {
                    Err(ControlError::ReservedAddress { ip, subnet })
                } else if let Some(x) = holder(ip) {
                    Err(ControlError::AddressTaken {
                        ip,
                        endpoint: x.name.clone(),
                    })
                } else {
                    Ok(ip)
                }
            }
            None => subnet
                .usable()
                .find(|&a| holder(a).is_none())
                .ok_or(ControlError::SubnetFull(subnet)),
        }
    }

    fn create_endpoint_checked(
        &mut self,
        e: &scenario::Endpoint,
    ) -> Result<(), Vec<(Path, ControlError)>> {
        let problems = self.check_endpoint(e);
        if !problems.is_empty() {
            return Err(problems);
        }
        let (vnet_index, vnet) = self
            .vnets
            .iter()
            .enumerate()
            .find(|(_, v)| v.name == e.vnet)
            .expect("checked");
        let prefix = vnet
            .subnets
            .iter()
            .find(|s| s.name == e.subnet)
            .expect("checked")
            .prefix;
        let private_ip = self
            .pick_address(&e.vnet, prefix, e.private_ip)
            .map_err(|err| vec![(Vec::new(), err)])?;
        let nic_name = match &e.nic_name {
            Some(n) => n.clone(),
            None => format!("{}.nic.{}", e.name, alias::guid(&mut self.rng)),
        };
        self.endpoints.push(PrivateEndpoint {
            name: e.name.clone(),
            subscription: e.subscription.clone(),
            vnet: e.vnet.clone(),
            vnet_index: vnet_index as u32,
            subnet: e.subnet.clone(),
            private_ip,
            static_ip: e.private_ip.is_some(),
            nic_name,
            target: e.target.clone(),
            request_message: e.request_message.clone(),
            connection: None,
        });
        Ok(())
    }

    /// Creates a private endpoint (no connection yet: see [`request`](Self::request)). Checks
    /// the name, NIC name, request message, target, VNet, subscription and subnet, and gives it
    /// its static IP (inside the subnet, not reserved, not taken) or the lowest free address.
    pub fn create_endpoint(&mut self, e: &scenario::Endpoint) -> Result<(), ControlError> {
        self.create_endpoint_checked(e)
            .map_err(|mut v| v.swap_remove(0).1)
    }

    fn endpoint_mut(&mut self, name: &str) -> Result<&mut PrivateEndpoint, ControlError> {
        self.endpoints
            .iter_mut()
            .find(|e| e.name == name)
            .ok_or_else(|| ControlError::UnknownEndpoint(name.to_owned()))
    }

    /// The endpoint requests its connection: Approved at once when its subscription has RBAC
    /// rights (the provider's own) or is in the auto-approval list, Pending when the service is
    /// visible to it, refused ([`ControlError::NotVisible`]) otherwise. The new connection gets
    /// the next link id.
    pub fn request(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        let e = self
            .endpoint(endpoint)
            .ok_or_else(|| ControlError::UnknownEndpoint(endpoint.to_owned()))?;
        if let Some(c) = e.connection {
            return Err(ControlError::AlreadyRequested {
                endpoint: endpoint.to_owned(),
                state: c.state,
            });
        }
        let service = self
            .resolve_target(&e.target)
            .ok_or_else(|| ControlError::UnknownTarget(e.target.clone()))?;
        let svc = self.service_at(service).expect("resolved");
        let sub = e.subscription.as_str();
        let state = if sub == svc.subscription || svc.auto_approval.iter().any(|s| s == sub) {
            ConnectionState::Approved
        } else if svc.visibility.sees(sub, &svc.subscription) {
            ConnectionState::Pending
        } else {
            return Err(ControlError::NotVisible {
                service: svc.name.clone(),
                subscription: sub.to_owned(),
            });
        };
        let link = LinkId(self.next_link);
        self.next_link += 1;
        let conn = Connection {
            link,
            service,
            state,
        };
        self.endpoint_mut(endpoint)?.connection = Some(conn);
        if let Some(s) = self.services[service].as_mut() {
            s.connections.push(endpoint.to_owned());
        }
        Ok(self.approved_effect(endpoint))
    }

    fn approved_effect(&self, endpoint: &str) -> Vec<Effect> {
        match self.endpoint(endpoint).and_then(|e| self.link_of(e)) {
            Some(l) if l.state == ConnectionState::Approved => vec![Effect::LinkApproved(l)],
            _ => Vec::new(),
        }
    }

    fn connection(&self, endpoint: &str) -> Result<Connection, ControlError> {
        let e = self
            .endpoint(endpoint)
            .ok_or_else(|| ControlError::UnknownEndpoint(endpoint.to_owned()))?;
        e.connection
            .ok_or_else(|| ControlError::NoConnection(endpoint.to_owned()))
    }

    fn set_state(
        &mut self,
        endpoint: &str,
        state: ConnectionState,
    ) -> Result<Vec<Effect>, ControlError> {
        let old = self.connection(endpoint)?;
        let e = self.endpoint_mut(endpoint)?;
        if let Some(c) = e.connection.as_mut() {
            c.state = state;
        }
        if old.state == ConnectionState::Approved && state != ConnectionState::Approved {
            Ok(vec![Effect::LinkClosed {
                link: old.link,
                service: old.service,
                state,
            }])
        } else {
            Ok(self.approved_effect(endpoint))
        }
    }

    /// The provider approves: Pending -> Approved ([`Effect::LinkApproved`]); Approved stays
    /// Approved (no effect); Rejected can never be approved; Disconnected can only be deleted.
    pub fn approve(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        match self.connection(endpoint)?.state {
            ConnectionState::Pending => self.set_state(endpoint, ConnectionState::Approved),
            ConnectionState::Approved => Ok(Vec::new()),
            ConnectionState::Rejected => {
                Err(ControlError::RejectedCannotBeApproved(endpoint.to_owned()))
            }
            ConnectionState::Disconnected => {
                Err(ControlError::ConnectionRemoved(endpoint.to_owned()))
            }
        }
    }

    /// The provider rejects: Pending -> Rejected; Approved -> Rejected ([`Effect::LinkClosed`]);
    /// Rejected stays Rejected (no effect); Disconnected can only be deleted.
    pub fn reject(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        match self.connection(endpoint)?.state {
            ConnectionState::Pending | ConnectionState::Approved => {
                self.set_state(endpoint, ConnectionState::Rejected)
            }
            ConnectionState::Rejected => Ok(Vec::new()),
            ConnectionState::Disconnected => {
                Err(ControlError::ConnectionRemoved(endpoint.to_owned()))
            }
        }
    }

    /// The provider removes the connection, whatever its state: it becomes Disconnected on the
    /// consumer side ([`Effect::LinkClosed`] if it was Approved) and leaves the service's list.
    /// Removing a Disconnected connection again is an error.
    pub fn remove(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        let c = self.connection(endpoint)?;
        if c.state == ConnectionState::Disconnected {
            return Err(ControlError::ConnectionRemoved(endpoint.to_owned()));
        }
        self.detach(c.service, endpoint);
        self.set_state(endpoint, ConnectionState::Disconnected)
    }

    fn detach(&mut self, service: usize, endpoint: &str) {
        if let Some(Some(s)) = self.services.get_mut(service) {
            s.connections.retain(|n| n != endpoint);
        }
    }

    /// The consumer deletes the endpoint, in any state: [`Effect::LinkClosed`] if it was
    /// Approved, then [`Effect::LinkDeleted`] if it had a connection. Its address is free again.
    pub fn delete_endpoint(&mut self, endpoint: &str) -> Result<Vec<Effect>, ControlError> {
        let pos = self
            .endpoints
            .iter()
            .position(|e| e.name == endpoint)
            .ok_or_else(|| ControlError::UnknownEndpoint(endpoint.to_owned()))?;
        let mut effects = Vec::new();
        if let Some(c) = self.endpoints[pos].connection {
            if c.state != ConnectionState::Disconnected {
                self.detach(c.service, endpoint);
            }
            if c.state == ConnectionState::Approved {
                effects.push(Effect::LinkClosed {
                    link: c.link,
                    service: c.service,
                    state: ConnectionState::Disconnected,
                });
            }
            effects.push(Effect::LinkDeleted(c.link));
        }
        self.endpoints.remove(pos);
        Ok(effects)
    }

    /// The provider deletes the service: refused while it has Pending or Approved connections
    /// (the documents: "reject all connections and delete the service"). Rejected connections
    /// left on it become Disconnected. The alias is never issued again.
    pub fn delete_service(&mut self, service: &str) -> Result<Vec<Effect>, ControlError> {
        let idx = self.service_index(service)?;
        let names = self.services[idx]
            .as_ref()
            .map(|s| s.connections.clone())
            .unwrap_or_default();
        let count = names
            .iter()
            .filter(|n| {
                matches!(
                    self.connection_state(n),
                    Some(ConnectionState::Pending | ConnectionState::Approved)
                )
            })
            .count();
        if count > 0 {
            return Err(ControlError::ServiceHasConnections {
                service: service.to_owned(),
                count,
            });
        }
        for n in &names {
            self.set_state(n, ConnectionState::Disconnected)?;
        }
        self.services[idx] = None;
        Ok(Vec::new())
    }

    /// Adds a NAT IP configuration: at most eight, distinct, not used elsewhere.
    pub fn add_nat_ip(&mut self, service: &str, ip: Ipv4Addr) -> Result<Vec<Effect>, ControlError> {
        let idx = self.service_index(service)?;
        let svc = self.service_at(idx).expect("live");
        if svc.nat_ips.contains(&ip) {
            return Err(ControlError::DuplicateNatIp(ip));
        }
        if svc.nat_ips.len() >= MAX_NAT_IPS {
            return Err(ControlError::TooManyNatIps {
                count: svc.nat_ips.len() + 1,
            });
        }
        if let Some(by) = self.address_user(ip) {
            return Err(ControlError::AddressInUse { ip, by });
        }
        if let Some(s) = self.services[idx].as_mut() {
            s.nat_ips.push(ip);
        }
        Ok(vec![Effect::NatIpAdded { service: idx, ip }])
    }

    /// NAT IP configurations are add-only: this always fails, with
    /// [`ControlError::NatIpsAreAddOnly`] (or [`ControlError::UnknownService`]).
    pub fn remove_nat_ip(
        &mut self,
        service: &str,
        ip: Ipv4Addr,
    ) -> Result<Vec<Effect>, ControlError> {
        self.service_index(service)?;
        Err(ControlError::NatIpsAreAddOnly {
            service: service.to_owned(),
            ip,
        })
    }

    /// Marks a backend down or up; an effect only when that changes its state.
    pub fn set_backend(
        &mut self,
        backend: Ipv4Addr,
        up: bool,
    ) -> Result<Vec<Effect>, ControlError> {
        let b = self
            .backends
            .iter_mut()
            .find(|(b, _)| *b == backend)
            .ok_or(ControlError::UnknownBackend(backend))?;
        if b.1 == up {
            return Ok(Vec::new());
        }
        b.1 = up;
        Ok(vec![if up {
            Effect::BackendUp(backend)
        } else {
            Effect::BackendDown(backend)
        }])
    }

    /// Applies one event now.
    pub fn apply(&mut self, event: &Event) -> Result<Vec<Effect>, ControlError> {
        match event {
            Event::Request { endpoint, .. } => self.request(endpoint),
            Event::Approve { endpoint, .. } => self.approve(endpoint),
            Event::Reject { endpoint, .. } => self.reject(endpoint),
            Event::Remove { endpoint, .. } => self.remove(endpoint),
            Event::DeleteEndpoint { endpoint, .. } => self.delete_endpoint(endpoint),
            Event::DeleteService { service, .. } => self.delete_service(service),
            Event::BackendDown { backend, .. } => self.set_backend(*backend, false),
            Event::BackendUp { backend, .. } => self.set_backend(*backend, true),
            Event::AddNatIp { service, ip, .. } => self.add_nat_ip(service, *ip),
        }
    }

    /// When the next timeline event happens, if any is left.
    pub fn next_event_at(&self) -> Option<SimTime> {
        self.timeline.get(self.cursor).map(|(t, _, _)| *t)
    }

    /// Applies every timeline event due at or before `now`, in time order (file order among
    /// equal times), and returns their effects with the instant each takes effect. An event
    /// that breaks a rule changes nothing and is reported in [`Advance::errors`] as
    /// [`ControlError::Event`]; the others still apply. (A validated scenario has none.)
    pub fn advance(&mut self, now: SimTime) -> Advance {
        let mut out = Advance::default();
        while let Some((t, index, event)) = self.timeline.get(self.cursor).cloned() {
            if t > now {
                break;
            }
            self.cursor += 1;
            match self.apply(&event) {
                Ok(effects) => out.effects.extend(effects.into_iter().map(|e| (t, e))),
                Err(e) => out.errors.push(ControlError::Event {
                    index,
                    action: event.action(),
                    source: Box::new(e),
                }),
            }
        }
        out
    }
}

/// What [`ControlPlane::advance`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advance {
    /// The effects, each with the instant of its event, in order.
    pub effects: Vec<(SimTime, Effect)>,
    /// The events that broke a rule (and changed nothing).
    pub errors: Vec<ControlError>,
}

fn prefixed(list: &'static str, i: usize, rel: Path) -> Path {
    let mut p = vec![Seg::Key(list), Seg::Index(i)];
    p.extend(rel);
    p
}
