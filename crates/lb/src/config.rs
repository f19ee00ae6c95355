//! The load balancer's configuration and its errors.

use std::net::Ipv4Addr;
use std::time::Duration;

/// The default idle timeout of a flow: 4 minutes, as Azure's load balancer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(240);

/// The default size of a Maglev lookup table (a prime, as Maglev requires).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 65_537;

/// The largest Maglev lookup table accepted (a table costs 4 bytes a slot per rule).
pub const MAX_MAGLEV_TABLE_SIZE: u32 = 1 << 24;

/// A whole load balancer: its frontend IPs, backend pools and load-balancing rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbConfig {
    /// The frontend IP configurations (several services can share one load balancer, each on its
    /// own frontend IP).
    pub frontends: Vec<Frontend>,
    /// The backend pools, referred to by name from the rules.
    pub pools: Vec<Pool>,
    /// The load-balancing rules.
    pub rules: Vec<Rule>,
    /// A flow that sees no packet (either way) for this long is forgotten. Nonzero.
    pub idle_timeout: Duration,
    /// What happens to the flows of a backend that is marked down.
    pub on_backend_down: OnBackendDown,
}

impl Default for LbConfig {
    /// No frontend, pool or rule; a 4-minute idle timeout; flows kept on a down backend.
    fn default() -> Self {
        LbConfig {
            frontends: Vec::new(),
            pools: Vec::new(),
            rules: Vec::new(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            on_backend_down: OnBackendDown::Keep,
        }
    }
}

/// A frontend IP configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frontend {
    /// The frontend IP (F), the address the private endpoint stage sends packets to.
    pub ip: Ipv4Addr,
}

/// A backend pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// The pool's name, unique in the load balancer.
    pub name: String,
    /// Its backends, in order (the order of a plain hash's buckets). May be empty.
    pub backends: Vec<Backend>,
}

impl Pool {
    /// A pool of the given backend addresses.
    pub fn new(name: impl Into<String>, ips: impl IntoIterator<Item = Ipv4Addr>) -> Pool {
        Pool {
            name: name.into(),
            backends: ips.into_iter().map(|ip| Backend { ip }).collect(),
        }
    }
}

/// A backend (a VM's IP configuration). One address has one health state, in every pool it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The backend's address (B).
    pub ip: Ipv4Addr,
}

/// A load-balancing rule: which packets of a frontend go to which pool, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The frontend IP the rule listens on (one of [`LbConfig::frontends`]).
    pub frontend: Ipv4Addr,
    /// Which ports it matches and how it maps them.
    pub kind: RuleKind,
    /// The name of the rule's backend pool (one of [`LbConfig::pools`]).
    pub pool: String,
    /// Which fields of a new flow choose its backend.
    pub distribution: Distribution,
    /// How those fields' hash is mapped onto the pool's healthy backends.
    pub hashing: Hashing,
}

impl Rule {
    /// An HA-ports rule (every port, kept) with the default distribution and hashing.
    pub fn ha_ports(frontend: Ipv4Addr, pool: impl Into<String>) -> Rule {
        Rule {
            frontend,
            kind: RuleKind::HaPorts,
            pool: pool.into(),
            distribution: Distribution::default(),
            hashing: Hashing::default(),
        }
    }

    /// A rule for one frontend port, mapped to `backend_port`, with the default distribution
    /// and hashing.
    pub fn port(
        frontend: Ipv4Addr,
        frontend_port: u16,
        backend_port: u16,
        pool: impl Into<String>,
    ) -> Rule {
        Rule {
            kind: RuleKind::Port {
                frontend_port,
                backend_port,
            },
            ..Rule::ha_ports(frontend, pool)
        }
    }
}

/// The ports a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// Every port of the frontend; the destination port is kept. A frontend with an HA-ports
    /// rule has no other rule (as in Azure, without floating IP).
    HaPorts,
    /// One frontend port, rewritten to one backend port. Both nonzero.
    Port {
        /// The port the rule listens on.
        frontend_port: u16,
        /// The port the backends listen on.
        backend_port: u16,
    },
}

/// Azure's distribution modes: which fields of a new flow are hashed to choose its backend.
///
/// The link id of the private endpoint connection is always part of the hash: two consumer
/// VNets may use the same addresses, and they are different clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Distribution {
    /// Source IP and port, destination IP and port, protocol (Azure's default).
    #[default]
    FiveTuple,
    /// Session persistence "Client IP": source and destination IP.
    SourceIp,
    /// Session persistence "Client IP and protocol": source IP, destination IP, protocol.
    /// Private Link carries TCP only, so this places flows exactly as [`Distribution::SourceIp`]
    /// does, with a different (independent) hash.
    SourceIpProtocol,
}

/// How a new flow's hash picks one of the pool's healthy backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Hashing {
    /// The hash scaled onto the list of healthy backends (like `hash mod N`): even, but a change
    /// of the list moves most new-flow assignments.
    #[default]
    Plain,
    /// A Maglev lookup table of `table_size` slots (a prime; keep it over 100 times the pool
    /// size for an even spread), rebuilt when a backend's health changes: one of N backends
    /// going down or coming back moves about 1/N of new-flow assignments. Not an Azure feature.
    Maglev {
        /// The table's size: a prime, at most [`MAX_MAGLEV_TABLE_SIZE`].
        table_size: u32,
    },
}

impl Hashing {
    /// Maglev with the default table size, [`DEFAULT_MAGLEV_TABLE_SIZE`].
    pub const MAGLEV: Hashing = Hashing::Maglev {
        table_size: DEFAULT_MAGLEV_TABLE_SIZE,
    };

    /// Maglev with a table of `table_size` slots, which must be a prime from 3 to
    /// [`MAX_MAGLEV_TABLE_SIZE`].
    pub fn maglev(table_size: u32) -> Result<Hashing, ConfigError> {
        if (3..=MAX_MAGLEV_TABLE_SIZE).contains(&table_size) && is_prime(table_size) {
            Ok(Hashing::Maglev { table_size })
        } else {
            Err(ConfigError::MaglevTableSize(table_size))
        }
    }
}

/// What happens to a backend's flows when it is marked down, written `keep` or `reset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum OnBackendDown {
    /// They continue on it until they end (Azure's behaviour); only new flows avoid it.
    #[default]
    Keep,
    /// They are removed at once and returned to the caller (see [`crate::Lb::set_backend_up`]),
    /// which resets them.
    Reset,
}

/// A configuration the load balancer refuses, or an administrative change it can't make.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Two frontends have the same IP.
    #[error("frontend {0} is configured twice")]
    DuplicateFrontend(Ipv4Addr),
    /// A frontend or backend address is 0.0.0.0, broadcast or multicast.
    #[error("{0} is not a usable unicast address")]
    BadAddress(Ipv4Addr),
    /// Two pools have the same name.
    #[error("pool {0:?} is configured twice")]
    DuplicatePool(String),
    /// A backend appears twice in one pool.
    #[error("backend {ip} appears twice in pool {pool:?}")]
    DuplicateBackend {
        /// The pool.
        pool: String,
        /// The backend.
        ip: Ipv4Addr,
    },
    /// A rule names a frontend IP that is not configured.
    #[error("rule {rule} uses frontend {ip}, which is not configured")]
    UnknownFrontend {
        /// The rule's index in [`LbConfig::rules`].
        rule: usize,
        /// The frontend IP it names.
        ip: Ipv4Addr,
    },
    /// A rule or a change names a pool that is not configured.
    #[error("pool {0:?} is not configured")]
    UnknownPool(String),
    /// A rule has a zero frontend or backend port.
    #[error("rule {0} has a zero port")]
    ZeroPort(usize),
    /// Two rules claim the same frontend IP and port.
    #[error("rules {first} and {second} both claim {frontend}:{port}")]
    DuplicateRule {
        /// The first rule's index.
        first: usize,
        /// The second rule's index.
        second: usize,
        /// The frontend.
        frontend: Ipv4Addr,
        /// The port.
        port: u16,
    },
    /// A frontend has an HA-ports rule and another rule.
    #[error("frontend {0} has an HA-ports rule and another rule")]
    HaPortsConflict(Ipv4Addr),
    /// More rules than the flow table can index (65,535).
    #[error("{0} rules: at most 65535")]
    TooManyRules(usize),
    /// A Maglev table size that is not a prime in 3..=MAX_MAGLEV_TABLE_SIZE.
    #[error(
        "Maglev table size {0} must be a prime between 3 and {MAX_MAGLEV_TABLE_SIZE} (65537 is a good one)"
    )]
    MaglevTableSize(u32),
    /// A zero idle timeout.
    #[error("the idle timeout must be nonzero")]
    ZeroIdleTimeout,
    /// A change names a backend address the load balancer does not know.
    #[error("backend {0} is not in any pool")]
    UnknownBackend(Ipv4Addr),
}

/// True for an address a frontend or a backend can have.
pub(crate) fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

/// Trial division: table sizes are at most 2^24, so at most ~2,000 divisions.
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}
