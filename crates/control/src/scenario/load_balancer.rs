//! The scenario's `[load_balancer]`: frontends, pools and rules, each rule holding the load
//! balancer's own kind, distribution and hashing.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Distribution, Hashing, OnBackendDown, RuleKind, is_default, is_false};

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
    /// What happens to a backend's flows when it goes down: `keep` (Azure's: they go on) or
    /// `reset` (they end at once and their NAT ports are freed).
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_backend_down: OnBackendDown,
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

/// A load-balancing rule: the load balancer's own [`RuleKind`], [`Distribution`] and
/// [`Hashing`], on a frontend and a pool named in the file.
///
/// In the file, the kind is `ha_ports = true` (every port, kept), or a `frontend_port` and a
/// `backend_port` (the frontend port when left out); the hashing is `maglev = SIZE`, or plain
/// without it. A rule with `ha_ports` and a port, or with neither, is malformed: a type error of
/// the file, reported with its line. A zero port or a Maglev size that is no usable prime is a problem
/// of the scenario ([`Scenario::validate`](super::Scenario::validate)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RuleFile", into = "RuleFile")]
pub struct Rule {
    /// Its name, unique among rules.
    pub name: String,
    /// The frontend it matches (a name from `load_balancer.frontends`).
    pub frontend: String,
    /// The pool it sends to.
    pub pool: String,
    /// Which ports it matches and how it maps them.
    pub kind: RuleKind,
    /// How a backend is chosen.
    pub distribution: Distribution,
    /// How the chosen fields' hash maps onto the pool's healthy backends.
    pub hashing: Hashing,
}

/// A rule as the file writes it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    frontend: String,
    pool: String,
    #[serde(default, skip_serializing_if = "is_false")]
    ha_ports: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frontend_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend_port: Option<u16>,
    #[serde(default)]
    distribution: Distribution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maglev: Option<u32>,
}

impl TryFrom<RuleFile> for Rule {
    type Error = &'static str;
    fn try_from(f: RuleFile) -> Result<Rule, &'static str> {
        let kind = match (f.ha_ports, f.frontend_port, f.backend_port) {
            (true, Some(_), _) => {
                return Err("an HA-ports rule matches every port: no frontend_port");
            }
            (true, None, Some(_)) => {
                return Err("an HA-ports rule keeps the port: no backend_port");
            }
            (true, None, None) => RuleKind::HaPorts,
            (false, Some(frontend_port), backend_port) => RuleKind::Port {
                frontend_port,
                backend_port: backend_port.unwrap_or(frontend_port),
            },
            (false, None, _) => return Err("set a frontend_port, or ha_ports = true"),
        };
        Ok(Rule {
            name: f.name,
            frontend: f.frontend,
            pool: f.pool,
            kind,
            distribution: f.distribution,
            hashing: f
                .maglev
                .map_or(Hashing::Plain, |table_size| Hashing::Maglev { table_size }),
        })
    }
}

impl From<Rule> for RuleFile {
    fn from(r: Rule) -> RuleFile {
        let (ha_ports, frontend_port, backend_port) = match r.kind {
            RuleKind::HaPorts => (true, None, None),
            RuleKind::Port {
                frontend_port,
                backend_port,
            } => (
                false,
                Some(frontend_port),
                (backend_port != frontend_port).then_some(backend_port),
            ),
        };
        RuleFile {
            name: r.name,
            frontend: r.frontend,
            pool: r.pool,
            ha_ports,
            frontend_port,
            backend_port,
            distribution: r.distribution,
            maglev: match r.hashing {
                Hashing::Plain => None,
                Hashing::Maglev { table_size } => Some(table_size),
            },
        }
    }
}
