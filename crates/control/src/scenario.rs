//! The scenario file: plain data, read from and written to TOML with serde.
//!
//! Every table refuses unknown keys. [`Scenario::from_toml_str`] parses and then validates,
//! reporting every problem with its place. The settings of a stage are that stage's own types
//! (the SNAT engine's [`PortRange`], [`Allocator`], [`ReuseScope`], [`Selection`], [`Timers`];
//! the load balancer's [`RuleKind`], [`Distribution`], [`Hashing`] and [`OnBackendDown`]; the
//! workload generator's [`Profile`], with its [`Arrivals`], [`FlowDuration`] and [`Close`]),
//! re-exported here: one definition of each concept.

use std::fmt;
use std::net::Ipv4Addr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use plsim_lb::{Distribution, Hashing, OnBackendDown, RuleKind};
pub use plsim_snat::{Allocator, PortRange, ReuseScope, Selection, Timers};
pub use plsim_traffic::workload::{Arrivals, Close, FlowDuration, Profile};

pub use crate::read::{MAX_FILE_BYTES, MAX_PROBLEMS};

use crate::net::Prefix;

mod load_balancer;

pub use load_balancer::{Frontend, LoadBalancer, Pool, Rule};

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
    /// The provider's virtual network, where the NAT IPs come from (optional: without it, NAT
    /// IPs are static private addresses checked on their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderVnet>,
    /// The Standard Load Balancer in front of the provider's backends.
    pub load_balancer: LoadBalancer,
    /// The Private Link services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// The private endpoints, created at time zero (but those a `create-endpoint` event
    /// creates later).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The synthetic workload of `plsim simulate`, for every endpoint without its own
    /// (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Profile>,
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

/// The provider's virtual network: its address space and subnets. A service's NAT IPs are
/// addresses of one of these subnets (its `nat_subnet`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderVnet {
    /// Its name.
    #[serde(default = "default_provider_name")]
    pub name: String,
    /// The address space, e.g. `10.10.0.0/16`.
    pub address_space: Prefix,
    /// Its subnets.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
}

fn default_provider_name() -> String {
    "provider".to_owned()
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

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
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
    /// The subnet of the provider's VNet the NAT IPs come from (required with `[provider]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_subnet: Option<String>,
    /// The NAT IP configurations, 1 to 8: each a static address or `"dynamic"` (the lowest
    /// free address of `nat_subnet`).
    pub nat_ips: Vec<NatIpConfig>,
    /// The NAT port range of every NAT IP.
    #[serde(default)]
    pub ports: PortRange,
    /// The port allocator: `sequential`, `random`, `random:SEED` or `block:N`.
    #[serde(default)]
    pub allocator: Allocator,
    /// What a NAT port is unique within.
    #[serde(default)]
    pub reuse: ReuseScope,
    /// How a NAT IP is chosen for a new flow.
    #[serde(default)]
    pub selection: Selection,
    /// The flow timers.
    #[serde(default)]
    pub timers: Timers,
    /// Answer a SYN refused for want of a NAT port with a RST (Azure drops it silently: the
    /// default).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rst_on_exhaustion: bool,
    /// Start the backend side of every connection with a PROXY protocol v2 header (the
    /// consumer's address and the connection's link id; Azure's "TCP proxy v2"). Off by
    /// default: the seed documents of 2019 say the service did not offer it then.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_proxy_protocol: bool,
}

fn default_resource_group() -> String {
    "rg".to_owned()
}
fn default_region() -> String {
    "westeurope".to_owned()
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

/// A NAT IP configuration: a static address, or `"dynamic"`: the control plane gives it the
/// lowest free address of the service's NAT subnet when the service (or the configuration) is
/// created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatIpConfig {
    /// This address.
    Static(Ipv4Addr),
    /// The lowest free address of the NAT subnet.
    Dynamic,
}

impl From<Ipv4Addr> for NatIpConfig {
    fn from(ip: Ipv4Addr) -> NatIpConfig {
        NatIpConfig::Static(ip)
    }
}

impl fmt::Display for NatIpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatIpConfig::Static(ip) => write!(f, "{ip}"),
            NatIpConfig::Dynamic => f.write_str("dynamic"),
        }
    }
}

/// A text that is no NAT IP configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a NAT IP: an IPv4 address or \"dynamic\"")]
pub struct BadNatIp(pub String);

impl std::str::FromStr for NatIpConfig {
    type Err = BadNatIp;
    fn from_str(s: &str) -> Result<NatIpConfig, BadNatIp> {
        if s == "dynamic" {
            return Ok(NatIpConfig::Dynamic);
        }
        s.parse()
            .map(NatIpConfig::Static)
            .map_err(|_| BadNatIp(s.to_owned()))
    }
}

impl Serialize for NatIpConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NatIpConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NatIpConfig, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
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
    /// Request the connection when the endpoint is created (default); `false`: wait for a
    /// `request` event.
    #[serde(default = "default_true")]
    pub connect: bool,
    /// Which packets of a replayed capture are this endpoint's consumers' traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
    /// This endpoint's own synthetic workload (the scenario's `[workload]` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Profile>,
}

/// Which packets of a capture belong to an endpoint: every key given must match. Endpoints are
/// tried in file order; one without this table takes what no other took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// The frame's outer 802.1Q VLAN id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The consumer hosts: the connection's client (the sender of its SYN) is in one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<Prefix>,
    /// The server addresses of the capture that stand for this endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Prefix>,
}

impl Traffic {
    /// Whether a connection from `client` to `server`, seen on VLAN `vlan`, matches.
    pub fn matches(&self, vlan: Option<u16>, client: Ipv4Addr, server: Ipv4Addr) -> bool {
        self.vlan.is_none_or(|v| vlan == Some(v))
            && (self.clients.is_empty() || self.clients.iter().any(|p| p.contains(client)))
            && (self.servers.is_empty() || self.servers.iter().any(|p| p.contains(server)))
    }
}

fn default_true() -> bool {
    true
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
    /// The consumer creates the endpoint (defined in `[[endpoints]]`; not created at time
    /// zero then), which requests its connection unless `connect = false`.
    CreateEndpoint {
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
        /// The new NAT IP: an address, or `"dynamic"`.
        ip: NatIpConfig,
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
            | Event::CreateEndpoint { at, .. }
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
            Event::CreateEndpoint { .. } => "create-endpoint",
            Event::DeleteEndpoint { .. } => "delete-endpoint",
            Event::DeleteService { .. } => "delete-service",
            Event::BackendDown { .. } => "backend-down",
            Event::BackendUp { .. } => "backend-up",
            Event::AddNatIp { .. } => "add-nat-ip",
        }
    }
}
