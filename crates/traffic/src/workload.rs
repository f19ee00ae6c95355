//! Synthetic workloads: many TCP flows from consumer hosts to one server (a private endpoint),
//! seeded and deterministic, generated lazily in timestamp order.
//!
//! A [`WorkloadSpec`] says how many consumer hosts there are, how flows arrive ([`Arrivals`]),
//! how long they last ([`FlowDuration`]), how many data packets and bytes each carries and how it
//! ends ([`Close`]). From it:
//!
//! * [`Workload::new`] gives an iterator of [`Packet`]s (a [`Frame`] plus its direction and flow),
//!   in nondecreasing timestamp order, made lazily by a k-way merge over the open flows, so only
//!   the open flows are in memory. [`Workload::next_into`] writes into a caller's buffer instead
//!   (no allocation per packet), and [`Workload::write_pcap`] streams the workload to a capture.
//! * [`WorkloadSpec::schedule`] gives the flows' start times and durations alone ([`FlowPlan`]),
//!   cheaply: the same ones the workload uses.
//!
//! The flag forms `poisson:1000`, `constant:500`, `fixed:30`, `exp:30`, `lognormal:3,1`,
//! `pareto:1,1.5` and `fin` / `rst` / `idle` parse with [`str::parse`] ([`FromStr`]) and print
//! back the same way ([`fmt::Display`]), so the CLI and the scenario file share them.
//!
//! ```
//! use plsim_traffic::workload::{Direction, Workload, WorkloadSpec};
//!
//! let spec = WorkloadSpec {
//!     arrivals: "poisson:1000".parse()?,
//!     duration: "exp:30".parse()?,
//!     close: "fin".parse()?,
//!     flows: Some(100),
//!     ..WorkloadSpec::default()
//! };
//! let mut workload = Workload::new(&spec)?;
//! let mut frame = Vec::new();
//! while let Some(meta) = workload.next_into(&mut frame) {
//!     // `frame` is an Ethernet II frame: a client's packet enters at the consumer side, a
//!     // server's at the provider side, at `SimTime::from_nanos(meta.ts_ns)`.
//!     let _consumer_side = meta.dir == Direction::ToServer;
//! }
//! assert_eq!(workload.stats().flows_done, 100);
//! # Ok::<(), plsim_traffic::workload::SpecError>(())
//! ```
//!
//! # One flow
//!
//! With `h` half the round-trip time and `t0` the flow's start:
//!
//! * the handshake: SYN at `t0` (client), SYN-ACK at `t0 + h` (server), ACK at `t0 + 2h`
//!   (client); the SYN and SYN-ACK carry an MSS option of 1460;
//! * `packets_per_flow` data packets in request/response pairs: the client's packets are the
//!   even ones (0, 2, ...), each answered by the server `h` later; pairs are spread evenly over
//!   the flow's duration (at least `h` apart). The `bytes_per_flow` payload bytes are the total of
//!   **both directions**, split as evenly as possible over the data packets (the first
//!   `bytes % packets` carry one byte more); a packet with no payload is a pure ACK;
//! * the close at `t0 + duration` (later if the packets need more time: the handshake and `h` per
//!   pair): [`Close::Fin`] sends FIN-ACK from the client, FIN-ACK from the server `h` later and
//!   the client's last ACK `h` after that; [`Close::Rst`] sends one RST-ACK from the client;
//!   [`Close::Idle`] sends nothing (the flow just goes quiet after its last data packet).
//!
//! Sequence and acknowledgement numbers are those a real TCP stack would send: random initial
//! sequence numbers, every byte and every SYN and FIN counted, every packet after the SYN
//! acknowledging all the other side has sent.
//!
//! # Clients
//!
//! Consumer host `i` (0-based) has the address `client_base + i`. Flows take the hosts in turn
//! (round robin); each host takes its client ports 1024..=65535 in turn, wrapping around, and
//! skips a port whose 4-tuple is still in use: from its SYN to its last packet, plus
//! [`WorkloadSpec::reuse_delay_secs`]. A flow whose host has no free port goes to the next host
//! with one; when no host has a free port the flow is not started and counted in
//! [`WorkloadStats::flows_unplaced`] (the other flows are unchanged).
//!
//! # Randomness
//!
//! `ChaCha8Rng::seed_from_u64(seed)` on three streams: 0 for the arrivals, 1 for the durations,
//! 2 for the initial sequence numbers. Exponential, log-normal (Box-Muller) and Pareto samples
//! are inverse transforms of `rng.random::<f64>()`. The same spec always gives the same bytes.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

mod generator;
mod schedule;

pub use generator::{Direction, Packet, PacketMeta, Workload, WorkloadStats};
pub use schedule::{FlowPlan, Schedule};

#[cfg(doc)]
use crate::captures::Frame;

/// The client ports each consumer host uses, in turn.
pub const CLIENT_PORTS: std::ops::RangeInclusive<u16> = 1024..=65535;

/// The largest payload of one data packet (the MSS the SYNs announce).
pub const MSS: usize = 1460;

/// The most consumer hosts one workload may have (a /8).
pub const MAX_HOSTS: u32 = 1 << 24;

/// The longest round-trip time a workload accepts, in ms (an hour).
pub const MAX_RTT_MS: f64 = 3_600_000.0;

/// The longest flow duration, in ns (about 146 years): longer samples are cut to this.
pub const MAX_DURATION_NS: u64 = 1 << 62;

/// A mistake in a workload's settings or in one of the flag forms.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// A flag form that does not parse.
    #[error("bad {what} `{input}`: expected {expected}")]
    Syntax {
        /// What was being parsed (`"arrivals"`, `"duration"`, `"close"`).
        what: &'static str,
        /// The text given.
        input: String,
        /// The forms accepted.
        expected: &'static str,
    },
    /// A number outside its range.
    #[error("{what} must be {rule}, got {value}")]
    OutOfRange {
        /// The setting.
        what: &'static str,
        /// The range it must be in, in words.
        rule: &'static str,
        /// The value given.
        value: String,
    },
    /// Neither `flows` nor `until_secs` is set, so the workload would never end.
    #[error("the workload has no end: set flows or until_secs")]
    Unbounded,
    /// The consumer hosts' addresses run past 255.255.255.255.
    #[error("{hosts} consumer hosts from {base} run past 255.255.255.255")]
    HostsOverflow {
        /// The first host's address.
        base: Ipv4Addr,
        /// The number of hosts.
        hosts: u32,
    },
    /// The server's address is one of the consumer hosts' addresses.
    #[error("the server {server} is one of the consumer hosts")]
    ServerIsClient {
        /// The server's address.
        server: Ipv4Addr,
    },
    /// Bytes but no data packets to carry them, or more bytes per packet than the MSS.
    #[error("{bytes} bytes over {packets} data packets do not fit: at most {MSS} bytes a packet")]
    PayloadTooLarge {
        /// `bytes_per_flow`.
        bytes: u64,
        /// `packets_per_flow`.
        packets: u32,
    },
}

fn out_of_range(what: &'static str, rule: &'static str, value: impl fmt::Display) -> SpecError {
    SpecError::OutOfRange {
        what,
        rule,
        value: value.to_string(),
    }
}

/// Checks `value` is finite and above zero (or at least zero with `allow_zero`).
fn check(what: &'static str, value: f64, allow_zero: bool) -> Result<(), SpecError> {
    let ok = value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0));
    if ok {
        Ok(())
    } else if allow_zero {
        Err(out_of_range(what, "a finite number >= 0", value))
    } else {
        Err(out_of_range(what, "a finite number > 0", value))
    }
}

/// How flows arrive: `constant:RATE` or `poisson:RATE` on the command line,
/// `{ kind = "constant" | "poisson", rate = RATE }` in a scenario file.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)
)]
pub enum Arrivals {
    /// One flow every `1 / per_sec` seconds exactly, the first at the start (`constant:RATE`).
    Constant {
        /// Flows per second.
        #[cfg_attr(feature = "serde", serde(rename = "rate"))]
        per_sec: f64,
    },
    /// A Poisson process: exponential gaps of mean `1 / per_sec`, the first flow at the start
    /// (`poisson:RATE`).
    Poisson {
        /// The mean number of flows per second.
        #[cfg_attr(feature = "serde", serde(rename = "rate"))]
        per_sec: f64,
    },
}

impl Arrivals {
    /// The (mean) number of flows per second.
    pub fn per_sec(&self) -> f64 {
        match *self {
            Arrivals::Constant { per_sec } | Arrivals::Poisson { per_sec } => per_sec,
        }
    }

    /// Checks the rate: a finite number above zero.
    pub fn validate(&self) -> Result<(), SpecError> {
        check("the arrival rate", self.per_sec(), false)
    }
}

impl fmt::Display for Arrivals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arrivals::Constant { per_sec } => write!(f, "constant:{per_sec}"),
            Arrivals::Poisson { per_sec } => write!(f, "poisson:{per_sec}"),
        }
    }
}

const ARRIVALS_FORMS: &str = "poisson:RATE or constant:RATE (flows per second, > 0)";

impl FromStr for Arrivals {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Arrivals, SpecError> {
        let syntax = || SpecError::Syntax {
            what: "arrivals",
            input: s.to_string(),
            expected: ARRIVALS_FORMS,
        };
        let (kind, args) = split_form(s).ok_or_else(syntax)?;
        let [per_sec] = numbers::<1>(args).ok_or_else(syntax)?;
        let a = match kind.as_str() {
            "poisson" => Arrivals::Poisson { per_sec },
            "constant" | "const" => Arrivals::Constant { per_sec },
            _ => return Err(syntax()),
        };
        a.validate()?;
        Ok(a)
    }
}

/// How long flows last, in seconds: from the SYN to the close (see the [module](self) docs).
/// In a scenario file: `{ kind = "fixed", secs }`, `{ kind = "exponential", mean }`,
/// `{ kind = "lognormal", mu, sigma }` or `{ kind = "pareto", scale, shape }`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)
)]
pub enum FlowDuration {
    /// Always `secs` (`fixed:SECS`).
    Fixed {
        /// Seconds, >= 0.
        secs: f64,
    },
    /// Exponential with mean `mean_secs` (`exp:MEAN`).
    Exponential {
        /// The mean in seconds, > 0.
        #[cfg_attr(feature = "serde", serde(rename = "mean"))]
        mean_secs: f64,
    },
    /// Log-normal: the natural log of the seconds is normal with mean `mu` and standard deviation
    /// `sigma` (`lognormal:MU,SIGMA`). The median is `e^mu` seconds.
    #[cfg_attr(feature = "serde", serde(rename = "lognormal"))]
    LogNormal {
        /// The mean of ln(seconds).
        mu: f64,
        /// The standard deviation of ln(seconds), >= 0.
        sigma: f64,
    },
    /// Pareto (type I): at least `scale_secs`, with tail index `shape` (`pareto:SCALE,SHAPE`).
    /// The mean is finite only for `shape > 1`.
    Pareto {
        /// The minimum in seconds, > 0.
        #[cfg_attr(feature = "serde", serde(rename = "scale"))]
        scale_secs: f64,
        /// The tail index, > 0.
        shape: f64,
    },
}

impl FlowDuration {
    /// The distribution's mean in seconds; `None` when it is infinite (Pareto with `shape <= 1`).
    pub fn mean_secs(&self) -> Option<f64> {
        match *self {
            FlowDuration::Fixed { secs } => Some(secs),
            FlowDuration::Exponential { mean_secs } => Some(mean_secs),
            FlowDuration::LogNormal { mu, sigma } => Some((mu + sigma * sigma / 2.0).exp()),
            FlowDuration::Pareto { scale_secs, shape } => {
                (shape > 1.0).then(|| shape * scale_secs / (shape - 1.0))
            }
        }
    }

    /// Checks the parameters (see each variant).
    pub fn validate(&self) -> Result<(), SpecError> {
        match *self {
            FlowDuration::Fixed { secs } => check("a fixed duration", secs, true),
            FlowDuration::Exponential { mean_secs } => {
                check("an exponential duration's mean", mean_secs, false)
            }
            FlowDuration::LogNormal { mu, sigma } => {
                if !mu.is_finite() {
                    return Err(out_of_range("a log-normal mu", "a finite number", mu));
                }
                check("a log-normal sigma", sigma, true)
            }
            FlowDuration::Pareto { scale_secs, shape } => {
                check("a Pareto scale", scale_secs, false)?;
                check("a Pareto shape", shape, false)
            }
        }
    }
}

impl fmt::Display for FlowDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowDuration::Fixed { secs } => write!(f, "fixed:{secs}"),
            FlowDuration::Exponential { mean_secs } => write!(f, "exp:{mean_secs}"),
            FlowDuration::LogNormal { mu, sigma } => write!(f, "lognormal:{mu},{sigma}"),
            FlowDuration::Pareto { scale_secs, shape } => write!(f, "pareto:{scale_secs},{shape}"),
        }
    }
}

const DURATION_FORMS: &str =
    "fixed:SECS, exp:MEAN_SECS, lognormal:MU,SIGMA (of ln seconds) or pareto:SCALE_SECS,SHAPE";

impl FromStr for FlowDuration {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<FlowDuration, SpecError> {
        let syntax = || SpecError::Syntax {
            what: "duration",
            input: s.to_string(),
            expected: DURATION_FORMS,
        };
        let (kind, args) = split_form(s).ok_or_else(syntax)?;
        let d = match kind.as_str() {
            "fixed" => {
                let [secs] = numbers(args).ok_or_else(syntax)?;
                FlowDuration::Fixed { secs }
            }
            "exp" | "exponential" => {
                let [mean_secs] = numbers(args).ok_or_else(syntax)?;
                FlowDuration::Exponential { mean_secs }
            }
            "lognormal" | "log-normal" => {
                let [mu, sigma] = numbers(args).ok_or_else(syntax)?;
                FlowDuration::LogNormal { mu, sigma }
            }
            "pareto" => {
                let [scale_secs, shape] = numbers(args).ok_or_else(syntax)?;
                FlowDuration::Pareto { scale_secs, shape }
            }
            _ => return Err(syntax()),
        };
        d.validate()?;
        Ok(d)
    }
}

/// How flows end: `fin`, `rst` or `idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Close {
    /// FIN-ACK both ways and a last ACK (`fin`).
    #[default]
    Fin,
    /// One RST-ACK from the client (`rst`).
    Rst,
    /// Nothing: the flow goes quiet and is left for the idle timeout (`idle`).
    Idle,
}

impl Close {
    /// The number of packets the close takes: 3, 1 or 0.
    pub fn packets(self) -> u32 {
        match self {
            Close::Fin => 3,
            Close::Rst => 1,
            Close::Idle => 0,
        }
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Close::Fin => "fin",
            Close::Rst => "rst",
            Close::Idle => "idle",
        })
    }
}

impl FromStr for Close {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Close, SpecError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fin" => Ok(Close::Fin),
            "rst" | "reset" => Ok(Close::Rst),
            "idle" | "none" => Ok(Close::Idle),
            _ => Err(SpecError::Syntax {
                what: "close",
                input: s.to_string(),
                expected: "fin, rst or idle",
            }),
        }
    }
}

/// `kind:args` with the kind lowercased.
fn split_form(s: &str) -> Option<(String, &str)> {
    let (kind, args) = s.trim().split_once(':')?;
    Some((kind.trim().to_ascii_lowercase(), args))
}

/// Exactly `N` comma-separated numbers (range checks are the caller's).
fn numbers<const N: usize>(args: &str) -> Option<[f64; N]> {
    let mut out = [0.0; N];
    let mut parts = args.split(',');
    for slot in &mut out {
        *slot = parts.next()?.trim().parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A synthetic workload: who talks to whom, when, how much and how it ends (see the
/// [module](self) docs for what each flow looks like).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// The number of consumer hosts, at least 1 and at most [`MAX_HOSTS`].
    pub hosts: u32,
    /// The first consumer host's address; the others follow it upward.
    pub client_base: Ipv4Addr,
    /// What the clients connect to: the private endpoint's address and a port (not 0).
    pub server: SocketAddrV4,
    /// How flows arrive.
    pub arrivals: Arrivals,
    /// How long flows last.
    pub duration: FlowDuration,
    /// Data packets per flow, after the handshake (which is always there), both directions.
    pub packets_per_flow: u32,
    /// Payload bytes per flow, both directions together, split over the data packets: at most
    /// [`MSS`] per packet.
    pub bytes_per_flow: u64,
    /// How flows end.
    pub close: Close,
    /// Start this many flows, then stop starting new ones (`None`: no limit).
    pub flows: Option<u64>,
    /// Start no flow later than this many seconds after the first (`None`: no limit). At least
    /// one of `flows` and `until_secs` must be set.
    pub until_secs: Option<f64>,
    /// The seed of every random choice.
    pub seed: u64,
    /// The round-trip time between a client and the server, in ms: the server answers half of
    /// it after the client's packet, and the client half of it after the server's.
    pub rtt_ms: f64,
    /// How long a client 4-tuple stays unused after its flow's last packet, in seconds (0: it
    /// may be reused at once; a real client keeps it 60 s in TIME_WAIT).
    pub reuse_delay_secs: f64,
}

impl Default for WorkloadSpec {
    /// 10 hosts from 10.0.1.0 to 10.0.0.4:443, Poisson 100 flows/s, exponential durations of
    /// mean 5 s, 4 data packets and 2,000 bytes a flow, closed by FIN, 1,000 flows, seed 1,
    /// an RTT of 1 ms, no reuse delay.
    fn default() -> WorkloadSpec {
        WorkloadSpec {
            hosts: 10,
            client_base: Ipv4Addr::new(10, 0, 1, 0),
            server: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 443),
            arrivals: Arrivals::Poisson { per_sec: 100.0 },
            duration: FlowDuration::Exponential { mean_secs: 5.0 },
            packets_per_flow: 4,
            bytes_per_flow: 2_000,
            close: Close::Fin,
            flows: Some(1_000),
            until_secs: None,
            seed: 1,
            rtt_ms: 1.0,
            reuse_delay_secs: 0.0,
        }
    }
}

impl WorkloadSpec {
    /// Checks every setting; [`Workload::new`] and [`WorkloadSpec::schedule`] call it.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.hosts == 0 || self.hosts > MAX_HOSTS {
            return Err(out_of_range("hosts", "between 1 and 16777216", self.hosts));
        }
        let base = u32::from(self.client_base);
        let Some(last) = base.checked_add(self.hosts - 1) else {
            return Err(SpecError::HostsOverflow {
                base: self.client_base,
                hosts: self.hosts,
            });
        };
        let server = u32::from(*self.server.ip());
        if (base..=last).contains(&server) {
            return Err(SpecError::ServerIsClient {
                server: *self.server.ip(),
            });
        }
        if self.server.port() == 0 {
            return Err(out_of_range("the server port", "between 1 and 65535", 0));
        }
        self.arrivals.validate()?;
        self.duration.validate()?;
        let packets = u64::from(self.packets_per_flow);
        if self.bytes_per_flow > packets.saturating_mul(MSS as u64) {
            return Err(SpecError::PayloadTooLarge {
                bytes: self.bytes_per_flow,
                packets: self.packets_per_flow,
            });
        }
        if self.flows.is_none() && self.until_secs.is_none() {
            return Err(SpecError::Unbounded);
        }
        if let Some(until) = self.until_secs {
            check("until_secs", until, true)?;
        }
        check("rtt_ms", self.rtt_ms, true)?;
        if self.rtt_ms > MAX_RTT_MS {
            return Err(out_of_range("rtt_ms", "at most 3600000", self.rtt_ms));
        }
        check("reuse_delay_secs", self.reuse_delay_secs, true)
    }

    /// The flows' start times and durations alone, in start order: cheap (no packets, no
    /// ports), and the same as the workload's.
    pub fn schedule(&self) -> Result<Schedule, SpecError> {
        self.validate()?;
        Ok(Schedule::new(self))
    }
}
