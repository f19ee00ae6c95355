//! The Private Link control plane of plsim: services, private endpoints, connections, the
//! approval workflow, and scenario files.
//!
//! * [`Scenario`]: the plain data of a scenario file (TOML). [`Scenario::from_toml_str`] parses
//!   and validates it, reporting every [`Problem`] with its place; [`Scenario::builtin`] is the
//!   scenario used when none is given; [`Scenario::to_toml`] writes one.
//! * [`ControlPlane`]: the workflow as a sans-IO state machine, built from a scenario. Each
//!   operation enforces the rules of the Azure documents (one [`ControlError`] variant per
//!   broken rule) and returns the data-plane [`Effect`]s to apply at that simulated instant;
//!   [`ControlPlane::advance`] plays the scenario's timeline.
//!
//! The rules, from the documents: an alias `prefix.{GUID}.region.azure.privatelinkservice` is
//! generated once per service (GUIDs from the scenario's seed); a request is auto-approved for
//! the provider's own subscription (RBAC) and the auto-approval list (a subset of visibility),
//! Pending for other visible subscriptions, refused otherwise; Approve, Reject and Remove move
//! the connection as the state table says, and a Rejected connection is never approved again;
//! a service has 1 to 8 NAT IPs, add-only; a service with Pending or Approved connections can't
//! be deleted; a static private IP lies inside its subnet and off the addresses Azure reserves.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod alias;
pub mod net;
mod plane;
mod read;
pub mod scenario;
mod validate;

pub use plane::{
    Advance, Connection, ConnectionState, ControlError, ControlPlane, Effect, Link,
    PrivateEndpoint, PrivateLinkService, ProvisioningState, secs_to_time,
};
pub use scenario::Scenario;
pub use validate::{Problem, Problems};

use std::net::Ipv4Addr;

use scenario::{
    Allocator, Arrivals, Close, Distribution, Endpoint, FlowDuration, Frontend, Hashing,
    LoadBalancer, OnBackendDown, Pool, PortRange, Profile, ProviderVnet, ReuseScope, Rule,
    RuleKind, Selection, Service, Subnet, Timers, Visibility, Vnet,
};

impl Scenario {
    /// The built-in scenario (the one a run uses without a scenario file): one service `app` with eight NAT IPs
    /// (10.10.1.4 to 10.10.1.11, from the subnet `nat` of the provider's VNet 10.10.0.0/16)
    /// behind frontend 10.10.0.4, an HA-ports rule to a pool of four backends (10.10.2.4 to
    /// 10.10.2.7), and one auto-approved endpoint `pe-app` at 10.0.0.4 in the consumer VNet
    /// 10.0.0.0/16 (hosts in 10.0.1.0/24), plus a small workload.
    pub fn builtin() -> Scenario {
        let ip = Ipv4Addr::new;
        let p = |s: &str| s.parse().expect("a valid built-in prefix");
        let service = Service {
            name: "app".to_owned(),
            subscription: "sub-provider".to_owned(),
            resource_group: "rg-provider".to_owned(),
            region: "westeurope".to_owned(),
            alias_prefix: None,
            visibility: Visibility::Subscriptions(vec!["sub-consumer".to_owned()]),
            auto_approval: vec!["sub-consumer".to_owned()],
            frontend: "fe-app".to_owned(),
            nat_subnet: Some("nat".to_owned()),
            nat_ips: (4..12).map(|i| ip(10, 10, 1, i).into()).collect(),
            ports: PortRange::default(),
            allocator: Allocator::Sequential,
            reuse: ReuseScope::PerBackend,
            selection: Selection::Paired,
            timers: Timers::default(),
            rst_on_exhaustion: false,
            enable_proxy_protocol: false,
        };
        let target = service.resource_id();
        Scenario {
            seed: 42,
            vnets: vec![Vnet {
                name: "consumer".to_owned(),
                subscription: "sub-consumer".to_owned(),
                address_space: p("10.0.0.0/16"),
                subnets: vec![
                    Subnet {
                        name: "endpoints".to_owned(),
                        prefix: p("10.0.0.0/24"),
                    },
                    Subnet {
                        name: "hosts".to_owned(),
                        prefix: p("10.0.1.0/24"),
                    },
                ],
            }],
            provider: Some(ProviderVnet {
                name: "provider".to_owned(),
                address_space: p("10.10.0.0/16"),
                subnets: vec![
                    Subnet {
                        name: "frontend".to_owned(),
                        prefix: p("10.10.0.0/24"),
                    },
                    Subnet {
                        name: "nat".to_owned(),
                        prefix: p("10.10.1.0/24"),
                    },
                    Subnet {
                        name: "backends".to_owned(),
                        prefix: p("10.10.2.0/24"),
                    },
                ],
            }),
            load_balancer: LoadBalancer {
                frontends: vec![Frontend {
                    name: "fe-app".to_owned(),
                    ip: ip(10, 10, 0, 4),
                }],
                pools: vec![Pool {
                    name: "app-pool".to_owned(),
                    backends: (4..8).map(|i| ip(10, 10, 2, i)).collect(),
                }],
                rules: vec![Rule {
                    name: "ha".to_owned(),
                    frontend: "fe-app".to_owned(),
                    pool: "app-pool".to_owned(),
                    kind: RuleKind::HaPorts,
                    distribution: Distribution::FiveTuple,
                    hashing: Hashing::Plain,
                }],
                on_backend_down: OnBackendDown::Keep,
            },
            services: vec![service],
            endpoints: vec![Endpoint {
                name: "pe-app".to_owned(),
                subscription: "sub-consumer".to_owned(),
                vnet: "consumer".to_owned(),
                subnet: "endpoints".to_owned(),
                private_ip: Some(ip(10, 0, 0, 4)),
                nic_name: Some("pe-app-nic".to_owned()),
                target,
                request_message: None,
                connect: true,
                traffic: None,
                workload: None,
            }],
            workload: Some(Profile {
                hosts: 16,
                arrivals: Arrivals::Poisson { per_sec: 100.0 },
                flow_duration: FlowDuration::Exponential { mean_secs: 5.0 },
                packets_per_flow: 10,
                bytes_per_flow: 1000,
                close: Close::Fin,
                flows: None,
                until_secs: Some(60.0),
                seed: None,
            }),
            timeline: Vec::new(),
        }
    }

    /// The scenario as TOML; [`from_toml_str`](Self::from_toml_str) reads it back equal.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a scenario always serializes")
    }

    /// Parses and validates a scenario file: the scenario, or every problem with its path and
    /// line, in line order (syntax, then types, then the rules: see [`from_toml_bytes`]).
    ///
    /// [`from_toml_bytes`]: Self::from_toml_bytes
    pub fn from_toml_str(text: &str) -> Result<Scenario, Problems> {
        read::text(text)
    }

    /// Parses and validates a scenario file's bytes. Each pass reports every problem it finds,
    /// each with its line: bytes that are not UTF-8 (the rest is read with them replaced);
    /// the TOML syntax; the types (every value of the wrong type, unknown key and missing
    /// key); then, when those are right, every rule. At most [`MAX_PROBLEMS`] problems are
    /// listed; a file larger than [`MAX_FILE_BYTES`] is refused (its one problem has no line).
    ///
    /// [`MAX_PROBLEMS`]: scenario::MAX_PROBLEMS
    /// [`MAX_FILE_BYTES`]: scenario::MAX_FILE_BYTES
    pub fn from_toml_bytes(bytes: &[u8]) -> Result<Scenario, Problems> {
        read::bytes(bytes)
    }

    /// Checks every rule of a scenario built in code (no lines: there is no file).
    pub fn validate(&self) -> Result<(), Problems> {
        let found = validate::problems(self);
        if found.is_empty() {
            return Ok(());
        }
        Err(Problems(
            found
                .into_iter()
                .map(|(path, message)| Problem {
                    line: None,
                    path: validate::path_string(&path),
                    message,
                })
                .collect(),
        ))
    }
}
