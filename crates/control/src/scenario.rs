//! The scenario file: plain data, read from and written to TOML with serde.
//!
//! Every table refuses unknown keys. [`Scenario::from_toml_str`] parses and then validates,
//! reporting every problem with its place; the pipeline turns the data into stage configs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::net::Prefix;

/// A whole scenario: the networks, the load balancer, the services, the endpoints, the workload
/// and the timeline of provider actions. See `docs/scenario.md` for every field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The seed of everything random: alias GUIDs, NIC names, the workload (unless it has its own).
    #[serde(default)]
    pub seed: u64,
    /// Consumer virtual networks (the private endpoints live in their subnets).
    #[serde(default)]
    pub vnets: Vec<Vnet>,
    /// The Standard Load Balancer in front of the provider's backends.
    pub load_balancer: LoadBalancer,
    /// The Private Link services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// The private endpoints, all created at time zero.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The synthetic workload for `plsim simulate` (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// Provider actions and backend events at simulated times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Event>,
}

/// A consumer virtual network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vnet {
    /// Its name, unique among VNets.
    pub name: String,
    /// The subscription that holds it (a private endpoint must be in the same one).
    pub subscription: String,
    /// The address space, e.g. `10.0.0.0/16`. Two VNets may use the same space.
    pub address_space: Prefix,
    /// Its subnets.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
}

/// A subnet of a VNet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// Its name, unique in its VNet.
    pub name: String,
    /// Its prefix, inside the VNet's address space, /29 or larger, not overlapping another subnet.
    pub prefix: Prefix,
}

/// The Standard Load Balancer: frontend IPs, backend pools and rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    /// Frontend IP configurations.
    pub frontends: Vec<Frontend>,
    /// Backend pools.
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// Load-balancing rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A frontend IP configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frontend {
    /// Its name, unique among frontends.
    pub name: String,
    /// Its IP address.
    pub ip: Ipv4Addr,
}

/// A backend pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Its name, unique among pools.
    pub name: String,
    /// The backends' IP addresses, in order.
    pub backends: Vec<Ipv4Addr>,
}

/// A load-balancing rule: an HA-ports rule (every port, kept) or one frontend port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its name, unique among rules.
    pub name: String,
    /// The frontend it matches (a name from `load_balancer.frontends`).
    pub frontend: String,
    /// The pool it sends to.
    pub pool: String,
    /// Match every port and keep it (exclusive with `frontend_port`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub ha_ports: bool,
    /// The frontend port matched (when not `ha_ports`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend_port: Option<u16>,
    /// The backend port; defaults to `frontend_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_port: Option<u16>,
    /// How a backend is chosen.
    #[serde(default)]
    pub distribution: Distribution,
    /// Use a Maglev table of this many slots (a prime) instead of a plain hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<u32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The load balancer's distribution mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    /// Hash of the 5-tuple (and the link id): the default.
    #[default]
    FiveTuple,
    /// Session persistence on the client IP (2-tuple).
    SourceIp,
    /// Session persistence on client IP and protocol (3-tuple).
    SourceIpProtocol,
}

/// A Private Link service and its NAT settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Its name, unique among services.
    pub name: String,
    /// The provider's subscription (consumers in it have RBAC rights: visible and auto-approved).
    pub subscription: String,
    /// The resource group, part of the resource id.
    #[serde(default = "default_resource_group")]
    pub resource_group: String,
    /// The region, part of the alias.
    #[serde(default = "default_region")]
    pub region: String,
    /// The alias prefix; defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_prefix: Option<String>,
    /// Who may request a connection.
    #[serde(default)]
    pub visibility: Visibility,
    /// Subscriptions whose requests are approved at once (a subset of `visibility`).
    #[serde(default)]
    pub auto_approval: Vec<String>,
    /// The load balancer frontend the service is tied to (a name).
    pub frontend: String,
    /// The NAT IP configurations, 1 to 8 distinct addresses.
    pub nat_ips: Vec<Ipv4Addr>,
    /// The NAT port range of every NAT IP.
    #[serde(default)]
    pub ports: PortRange,
    /// The port allocator: `sequential`, `random`, `random:SEED` or `block:N`.
    #[serde(default = "default_allocator")]
    pub allocator: String,
    /// What a NAT port is unique within.
    #[serde(default)]
    pub reuse: Reuse,
    /// How a NAT IP is chosen for a new flow.
    #[serde(default)]
    pub selection: Selection,
    /// The flow timers.
    #[serde(default)]
    pub timers: Timers,
}

fn default_resource_group() -> String {
    "rg".to_owned()
}
fn default_region() -> String {
    "westeurope".to_owned()
}
fn default_allocator() -> String {
    "sequential".to_owned()
}

impl Service {
    /// The resource id consumers may target:
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/privateLinkServices/{name}`.
    pub fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/privateLinkServices/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    /// The alias prefix: `alias_prefix`, or the name.
    pub fn prefix(&self) -> &str {
        self.alias_prefix.as_deref().unwrap_or(&self.name)
    }
}

/// A service's visibility: `"rbac"`, `"all"`, or a list of subscriptions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Visibility {
    /// Only subscriptions with RBAC rights on the service (here: the provider's own).
    #[default]
    Rbac,
    /// Every subscription.
    All,
    /// These subscriptions (and the RBAC ones).
    Subscriptions(Vec<String>),
}

impl Visibility {
    /// True when `subscription` sees a service owned by `owner`.
    pub fn sees(&self, subscription: &str, owner: &str) -> bool {
        subscription == owner
            || match self {
                Visibility::Rbac => false,
                Visibility::All => true,
                Visibility::Subscriptions(list) => list.iter().any(|s| s == subscription),
            }
    }
}

impl Serialize for Visibility {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Visibility::Rbac => s.serialize_str("rbac"),
            Visibility::All => s.serialize_str("all"),
            Visibility::Subscriptions(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Visibility {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Visibility, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Visibility;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"rbac\", \"all\" or a list of subscriptions")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Visibility, E> {
                match v {
                    "rbac" => Ok(Visibility::Rbac),
                    "all" => Ok(Visibility::All),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Visibility, A::Error> {
                let mut list = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    list.push(s);
                }
                Ok(Visibility::Subscriptions(list))
            }
        }
        d.deserialize_any(V)
    }
}

/// A port range `lo-hi`, inclusive; the default is `1024-65535`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    /// The first port.
    pub lo: u16,
    /// The last port.
    pub hi: u16,
}

impl PortRange {
    /// The number of ports in the range.
    pub fn count(&self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            lo: 1024,
            hi: 65535,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// A string that is not a port range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a port range `lo-hi` with 1 <= lo <= hi <= 65535")]
pub struct PortRangeError(String);

impl FromStr for PortRange {
    type Err = PortRangeError;
    fn from_str(s: &str) -> Result<PortRange, PortRangeError> {
        let bad = || PortRangeError(s.to_owned());
        let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
        if lo == 0 || lo > hi {
            return Err(bad());
        }
        Ok(PortRange { lo, hi })
    }
}

impl TryFrom<String> for PortRange {
    type Error = PortRangeError;
    fn try_from(s: String) -> Result<PortRange, PortRangeError> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> String {
        p.to_string()
    }
}

/// The scope a NAT port is unique within.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reuse {
    /// Unique per (NAT IP, backend): Azure's 64k ports per NAT IP per backend VM.
    #[default]
    PerBackend,
    /// Unique per NAT IP.
    PerIp,
}

/// How the SNAT engine picks a NAT IP for a new flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Every flow of one consumer host on the same NAT IP (hash of the host).
    #[default]
    Paired,
    /// The NAT IP with the fewest ports in use.
    LeastLoaded,
}

/// The flow timers, in whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timers {
    /// Idle timeout of an established flow: 4 to 6000, default 240.
    pub idle: u64,
    /// Idle timeout of a half-open or half-closed flow: default 240.
    pub transitory: u64,
    /// How long a port stays held after FINs both ways: default 240.
    pub fin_hold: u64,
    /// How long a port stays held after a RST: default 15.
    pub rst_hold: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            idle: 240,
            transitory: 240,
            fin_hold: 240,
            rst_hold: 15,
        }
    }
}

/// A private endpoint in a consumer VNet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Its name, unique among endpoints (also the name of its connection).
    pub name: String,
    /// The consumer's subscription (the VNet's).
    pub subscription: String,
    /// The VNet (a name from `vnets`).
    pub vnet: String,
    /// The subnet of that VNet.
    pub subnet: String,
    /// A static private IP; absent: allocated from the subnet (lowest free address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<Ipv4Addr>,
    /// The NIC name; absent: `{name}.nic.{GUID}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_name: Option<String>,
    /// The service: its alias or its resource id.
    pub target: String,
    /// The message sent with a manual request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_message: Option<String>,
    /// Request the connection at time zero (default); `false`: wait for a `request` event.
    #[serde(default = "default_true")]
    pub connect: bool,
}

fn default_true() -> bool {
    true
}

/// The synthetic workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Consumer hosts behind each endpoint (distinct addresses of its VNet).
    #[serde(default = "default_hosts")]
    pub hosts_per_endpoint: u32,
    /// Flow arrivals.
    pub arrival: Arrival,
    /// Flow durations.
    pub flow_duration: FlowDuration,
    /// Packets per flow, both directions, handshake and close included.
    #[serde(default = "default_packets")]
    pub packets_per_flow: u32,
    /// Payload bytes per flow.
    #[serde(default = "default_bytes")]
    pub bytes_per_flow: u64,
    /// How flows end.
    #[serde(default)]
    pub close: Close,
    /// Stop after this many flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<u64>,
    /// Stop arrivals after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// The workload's own seed; defaults to the scenario's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_hosts() -> u32 {
    16
}
fn default_packets() -> u32 {
    10
}
fn default_bytes() -> u64 {
    1000
}

/// Flow arrivals: `{ kind = "constant" | "poisson", rate = flows per second }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    /// The process.
    pub kind: ArrivalKind,
    /// New flows per second (all endpoints together).
    pub rate: f64,
}

/// The arrival process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArrivalKind {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps.
    Poisson,
}

/// The distribution of flow durations, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FlowDuration {
    /// Always `secs`.
    Fixed {
        /// The duration.
        secs: f64,
    },
    /// Exponential with mean `mean`.
    Exponential {
        /// The mean.
        mean: f64,
    },
    /// Log-normal: ln(duration) is normal with mean `mu` and deviation `sigma`.
    Lognormal {
        /// Mean of the logarithm.
        mu: f64,
        /// Standard deviation of the logarithm.
        sigma: f64,
    },
    /// Pareto with minimum `scale` and tail index `shape`.
    Pareto {
        /// The minimum duration.
        scale: f64,
        /// The tail index.
        shape: f64,
    },
}

/// How a flow ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Close {
    /// FIN both ways.
    #[default]
    Fin,
    /// A RST from the client.
    Rst,
    /// No close: the flow goes quiet and idles out.
    Idle,
}

/// One event of the timeline, at `at` seconds of simulated time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Event {
    /// The endpoint requests its connection (it was created with `connect = false`).
    Request {
        /// Seconds.
        at: f64,
        /// The endpoint.
        endpoint: String,
    },
    /// The provider approves the endpoint's connection.
    Approve {
        /// Seconds.
        at: f64,
        /// The endpoint.
        endpoint: String,
    },
    /// The provider rejects the endpoint's connection.
    Reject {
        /// Seconds.
        at: f64,
        /// The endpoint.
        endpoint: String,
    },
    /// The provider removes the endpoint's connection (the endpoint becomes Disconnected).
    Remove {
        /// Seconds.
        at: f64,
        /// The endpoint.
        endpoint: String,
    },
    /// The consumer deletes the endpoint.
    DeleteEndpoint {
        /// Seconds.
        at: f64,
        /// The endpoint.
        endpoint: String,
    },
    /// The provider deletes the service.
    DeleteService {
        /// Seconds.
        at: f64,
        /// The service.
        service: String,
    },
    /// A backend fails its health probe.
    BackendDown {
        /// Seconds.
        at: f64,
        /// The backend's IP.
        backend: Ipv4Addr,
    },
    /// A backend passes its health probe again.
    BackendUp {
        /// Seconds.
        at: f64,
        /// The backend's IP.
        backend: Ipv4Addr,
    },
    /// The provider adds a NAT IP configuration to a service.
    AddNatIp {
        /// Seconds.
        at: f64,
        /// The service.
        service: String,
        /// The new NAT IP.
        ip: Ipv4Addr,
    },
}

impl Event {
    /// When the event happens, in seconds.
    pub fn at(&self) -> f64 {
        match self {
            Event::Request { at, .. }
            | Event::Approve { at, .. }
            | Event::Reject { at, .. }
            | Event::Remove { at, .. }
            | Event::DeleteEndpoint { at, .. }
            | Event::DeleteService { at, .. }
            | Event::BackendDown { at, .. }
            | Event::BackendUp { at, .. }
            | Event::AddNatIp { at, .. } => *at,
        }
    }

    /// The action's name as written in the file (`"approve"`, `"add-nat-ip"`, ...).
    pub fn action(&self) -> &'static str {
        match self {
            Event::Request { .. } => "request",
            Event::Approve { .. } => "approve",
            Event::Reject { .. } => "reject",
            Event::Remove { .. } => "remove",
            Event::DeleteEndpoint { .. } => "delete-endpoint",
            Event::DeleteService { .. } => "delete-service",
            Event::BackendDown { .. } => "backend-down",
            Event::BackendUp { .. } => "backend-up",
            Event::AddNatIp { .. } => "add-nat-ip",
        }
    }
}
