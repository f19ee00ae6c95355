//! The engine's configuration: NAT IPs, port range, allocator, reuse scope, selection, timers.
//!
//! These types are the one definition of each concept in plsim: scenario files (with the
//! `serde` feature) and command-line flags (through [`FromStr`]) use them as they are.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

/// The most NAT IPs one Private Link service may have.
pub const MAX_NAT_IPS: usize = 8;

/// Everything the SNAT engine is configured with. [`Default`] gives Azure's values (with one NAT
/// IP, 10.255.0.1, which a real run replaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnatConfig {
    /// The NAT IPs, 1..=8 of them, all different. Their order is their index in [`crate::Stats`].
    pub nat_ips: Vec<Ipv4Addr>,
    /// The port range of every NAT IP (default 1024-65535).
    pub ports: PortRange,
    /// How ports are picked on a NAT IP.
    pub allocator: Allocator,
    /// What a port is unique within.
    pub reuse: ReuseScope,
    /// How a new flow's NAT IP is chosen.
    pub selection: Selection,
    /// Idle timeouts and port holds.
    pub timers: Timers,
    /// Let a non-SYN packet with no flow open one (mid-stream pickup, for captures that start
    /// after the handshake). A RST never opens a flow.
    pub pickup: bool,
    /// Answer a SYN refused for port exhaustion with a RST to the consumer (see
    /// [`crate::Snat::rst_reply`]). Azure drops it silently, which is the default.
    pub rst_on_exhaustion: bool,
    /// Start the backend side of every connection with a PROXY protocol v2 header carrying the
    /// consumer's address and the connection's link id (Azure's "TCP proxy v2"; see
    /// [`crate::proxy`] and [`crate::Snat::proxy_segment`]). Off by default.
    pub proxy_protocol: bool,
    /// Count port reuses and TIME_WAIT hazards ([`crate::Snat::reuse`]) under these settings
    /// (the backends' TIME_WAIT: a reuse whose gap is shorter, after a close the backend began,
    /// is a hazard; the horizon). `None` (the default) keeps no record. It costs memory per
    /// tuple freed within the horizon, not per live flow, so a benchmark leaves it off.
    pub track_reuse: Option<crate::ReuseTracking>,
}

/// Linux's TIME_WAIT (`TCP_TIMEWAIT_LEN`, 60 s): how long a backend that closed first keeps a
/// 4-tuple.
pub const DEFAULT_TIME_WAIT: Duration = Duration::from_secs(60);

impl Default for SnatConfig {
    fn default() -> Self {
        SnatConfig {
            nat_ips: vec![Ipv4Addr::new(10, 255, 0, 1)],
            ports: PortRange::default(),
            allocator: Allocator::Sequential,
            reuse: ReuseScope::PerBackend,
            selection: Selection::Paired,
            timers: Timers::default(),
            pickup: false,
            rst_on_exhaustion: false,
            proxy_protocol: false,
            track_reuse: None,
        }
    }
}

impl SnatConfig {
    /// Checks the configuration; [`crate::Snat::new`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nat_ips.is_empty() {
            return Err(ConfigError::NoNatIp);
        }
        if self.nat_ips.len() > MAX_NAT_IPS {
            return Err(ConfigError::TooManyNatIps(self.nat_ips.len()));
        }
        for (i, ip) in self.nat_ips.iter().enumerate() {
            if self.nat_ips[..i].contains(ip) {
                return Err(ConfigError::DuplicateNatIp(*ip));
            }
        }
        if self.ports.lo > self.ports.hi {
            return Err(ConfigError::EmptyPortRange(self.ports));
        }
        if self.ports.lo == 0 {
            return Err(ConfigError::PortZero);
        }
        self.allocator.check(self.ports)?;
        if self.timers.idle.is_zero() {
            return Err(ConfigError::ZeroTimer("idle"));
        }
        if self.timers.transitory.is_zero() {
            return Err(ConfigError::ZeroTimer("transitory"));
        }
        Ok(())
    }
}

/// An inclusive range of ports, `lo..=hi`, written `LO-HI` with `1 <= LO <= HI <= 65535`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub struct PortRange {
    /// The first port.
    pub lo: u16,
    /// The last port (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// `lo..=hi`.
    pub const fn new(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }
    /// How many ports (0 if `lo > hi`).
    pub const fn len(&self) -> u32 {
        if self.lo > self.hi {
            0
        } else {
            self.hi as u32 - self.lo as u32 + 1
        }
    }
    /// True when the range holds no port.
    pub const fn is_empty(&self) -> bool {
        self.lo > self.hi
    }
}

impl Default for PortRange {
    /// Azure's 1024-65535 (64,512 ports).
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

impl FromStr for PortRange {
    type Err = ConfigError;
    /// Parses `LO-HI` with `1 <= LO <= HI <= 65535`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::BadPortRange(s.to_owned());
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
    type Error = ConfigError;
    fn try_from(s: String) -> Result<PortRange, ConfigError> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> String {
        p.to_string()
    }
}

/// How ports are picked on a NAT IP (within one reuse scope), written `sequential`, `random`,
/// `random:SEED`, `block:N`, `netfilter` or `netfilter:SEED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub enum Allocator {
    /// `sequential`: next-fit, the first free port at or after the last one handed out
    /// (wrapping), so a freed port is reused as late as possible.
    #[default]
    Sequential,
    /// `random` or `random:SEED`: RFC 6056 algorithm 1 (a random start, then the next free
    /// port), the randomness from ChaCha8 seeded with `seed`. A bitmap summary keeps the search
    /// O(1) near exhaustion.
    Random {
        /// The seed; the same seed and packets give the same ports.
        seed: u64,
    },
    /// `block:N`: each consumer host gets blocks of `N` consecutive ports (per scope), handed
    /// out sequentially; a block goes back to the NAT IP when its last port is free again.
    Block(u16),
    /// `netfilter` or `netfilter:SEED`: Linux's SNAT (`net/netfilter/nf_nat_core.c`, see the
    /// crate docs, "Linux's allocator"): the client's own port when its reply tuple is free,
    /// the NAT IP by a hash of the client and backend addresses, otherwise at most 248 linear
    /// attempts from random starts, then a drop. A port is unique per whole reply tuple (NAT
    /// IP, port, backend address and port) whatever [`ReuseScope`] says, and the NAT IP is the
    /// hash's whatever [`Selection`] says, as in the kernel. The random starts come from
    /// ChaCha8 seeded with `seed`.
    Netfilter {
        /// The seed of the random starts; the same seed and packets give the same ports.
        seed: u64,
    },
}

impl fmt::Display for Allocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allocator::Sequential => f.write_str("sequential"),
            Allocator::Random { seed: 0 } => f.write_str("random"),
            Allocator::Random { seed } => write!(f, "random:{seed}"),
            Allocator::Block(n) => write!(f, "block:{n}"),
            Allocator::Netfilter { seed: 0 } => f.write_str("netfilter"),
            Allocator::Netfilter { seed } => write!(f, "netfilter:{seed}"),
        }
    }
}

impl FromStr for Allocator {
    type Err = ConfigError;
    /// `sequential`, `random` (seed 0), `random:SEED`, `block:N`, `netfilter` (seed 0),
    /// `netfilter:SEED`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::Parse {
            what: "allocator (sequential, random[:SEED], block:N, netfilter[:SEED])",
            input: s.to_owned(),
        };
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        match (name, arg) {
            ("sequential", None) => Ok(Allocator::Sequential),
            ("random", None) => Ok(Allocator::Random { seed: 0 }),
            ("random", Some(a)) => Ok(Allocator::Random {
                seed: a.parse().map_err(|_| bad())?,
            }),
            ("netfilter", None) => Ok(Allocator::Netfilter { seed: 0 }),
            ("netfilter", Some(a)) => Ok(Allocator::Netfilter {
                seed: a.parse().map_err(|_| bad())?,
            }),
            ("block", Some(a)) => match a.parse::<u16>() {
                Ok(0) | Err(_) => Err(bad()),
                Ok(n) => Ok(Allocator::Block(n)),
            },
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for Allocator {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Allocator, ConfigError> {
        s.parse()
    }
}

impl From<Allocator> for String {
    fn from(a: Allocator) -> String {
        a.to_string()
    }
}

impl Allocator {
    /// Checks the allocator against the port range it allocates from: a block holds at most
    /// the whole range.
    pub fn check(&self, ports: PortRange) -> Result<(), ConfigError> {
        match *self {
            Allocator::Block(n) if n == 0 || u32::from(n) > ports.len() => {
                Err(ConfigError::BlockSize {
                    block: n,
                    range: ports.len(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// What a NAT port is unique within, written `per-backend` or `per-ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum ReuseScope {
    /// `per-backend` (the default, as Azure documents: 64k ports per NAT IP per backend VM):
    /// unique per NAT IP and backend address, so each NAT IP has the whole range for every
    /// backend, whatever ports the backend is reached on.
    #[default]
    PerBackend,
    /// `per-ip`: a port serves one flow on its NAT IP, whatever the backend.
    PerIp,
}

impl fmt::Display for ReuseScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReuseScope::PerBackend => "per-backend",
            ReuseScope::PerIp => "per-ip",
        })
    }
}

impl FromStr for ReuseScope {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "per-backend" => Ok(ReuseScope::PerBackend),
            "per-ip" => Ok(ReuseScope::PerIp),
            _ => Err(ConfigError::Parse {
                what: "reuse scope (per-backend, per-ip)",
                input: s.to_owned(),
            }),
        }
    }
}

/// How the NAT IP of a new flow is chosen, written `paired` or `least-loaded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Selection {
    /// `paired` (RFC 4787 "IP address pooling: paired"): a consumer host (link id and address)
    /// keeps one NAT IP while it has flows; a new host gets the least loaded NAT IP; when its NAT
    /// IP has no port for a flow, the flow falls over to the least loaded of the others.
    #[default]
    Paired,
    /// `least-loaded`: every new flow goes to the NAT IP with the fewest busy ports in its scope
    /// (ties to the lowest index).
    LeastLoaded,
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Selection::Paired => "paired",
            Selection::LeastLoaded => "least-loaded",
        })
    }
}

impl FromStr for Selection {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "paired" => Ok(Selection::Paired),
            "least-loaded" => Ok(Selection::LeastLoaded),
            _ => Err(ConfigError::Parse {
                what: "selection (paired, least-loaded)",
                input: s.to_owned(),
            }),
        }
    }
}

/// The flow timers. Defaults: Azure's load balancer and RFC 5382. In a scenario file they are
/// whole seconds: `{ idle = 240, transitory = 240, fin_hold = 240, rst_hold = 15 }`, each
/// optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields, default)
)]
pub struct Timers {
    /// Idle timeout of an established flow (default 4 min; Azure allows 4 s to 100 min).
    #[cfg_attr(feature = "serde", serde(with = "whole_secs"))]
    pub idle: Duration,
    /// Idle timeout of a half-open or half-closed flow (default 4 min, RFC 5382).
    #[cfg_attr(feature = "serde", serde(with = "whole_secs"))]
    pub transitory: Duration,
    /// How long a port stays held after the flow closed with FINs both ways (default 240 s).
    #[cfg_attr(feature = "serde", serde(with = "whole_secs"))]
    pub fin_hold: Duration,
    /// How long a port stays held after a RST (default 15 s).
    #[cfg_attr(feature = "serde", serde(with = "whole_secs"))]
    pub rst_hold: Duration,
}

/// The shortest and longest idle timeout Azure allows.
const AZURE_IDLE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(4)..=Duration::from_secs(6000);

impl Timers {
    /// Checks Azure's limits, which a scenario must meet: an idle timeout of 4 s to 100 min and
    /// a transitory timeout of at least 1 s. (The engine itself runs with any nonzero timers.)
    pub fn validate_azure(&self) -> Result<(), ConfigError> {
        if !AZURE_IDLE.contains(&self.idle) {
            return Err(ConfigError::AzureIdle(self.idle));
        }
        if self.transitory < Duration::from_secs(1) {
            return Err(ConfigError::AzureTransitory(self.transitory));
        }
        Ok(())
    }

    /// The longest of the timers: how long a flow record may outlive its last packet.
    pub fn longest(&self) -> Duration {
        self.idle
            .max(self.transitory)
            .max(self.fin_hold)
            .max(self.rst_hold)
    }
}

/// Durations as whole seconds (the scenario file's unit for timers).
#[cfg(feature = "serde")]
mod whole_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            idle: Duration::from_secs(240),
            transitory: Duration::from_secs(240),
            fin_hold: Duration::from_secs(240),
            rst_hold: Duration::from_secs(15),
        }
    }
}

/// A configuration the engine can't run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No NAT IP at all.
    #[error("a Private Link service needs at least one NAT IP")]
    NoNatIp,
    /// More than [`MAX_NAT_IPS`].
    #[error("{0} NAT IPs: a Private Link service has at most 8")]
    TooManyNatIps(usize),
    /// The same NAT IP twice.
    #[error("NAT IP {0} is configured twice")]
    DuplicateNatIp(Ipv4Addr),
    /// `lo > hi`.
    #[error("empty port range {0}")]
    EmptyPortRange(PortRange),
    /// A range that starts at port 0.
    #[error("port 0 is not a NAT port")]
    PortZero,
    /// Text that is not a port range.
    #[error("`{0}` is not a port range `lo-hi` with 1 <= lo <= hi <= 65535")]
    BadPortRange(String),
    /// An idle timeout Azure does not allow.
    #[error("{} s: the idle timeout is 4 to 6000 seconds", .0.as_secs_f64())]
    AzureIdle(Duration),
    /// A transitory timeout below a second.
    #[error("{} s: the transitory timeout must be at least 1 second", .0.as_secs_f64())]
    AzureTransitory(Duration),
    /// A block size of zero or larger than the port range.
    #[error("block size {block} does not fit a port range of {range} ports")]
    BlockSize {
        /// The block size asked for.
        block: u16,
        /// The ports in the range.
        range: u32,
    },
    /// An idle timeout of zero.
    #[error("the {0} timeout must not be zero")]
    ZeroTimer(&'static str),
    /// A name or number that does not parse.
    #[error("not a valid {what}: {input:?}")]
    Parse {
        /// What was expected.
        what: &'static str,
        /// What was given.
        input: String,
    },
}
