//! Synthetic workloads: many TCP flows from consumer hosts to one server (a private endpoint),
//! seeded and deterministic, generated lazily in timestamp order.
//!
//! A [`Profile`] says how many consumer hosts there are, how flows arrive ([`Arrivals`]), how
//! long they last ([`FlowDuration`]), how many data packets and bytes each carries, how it ends
//! ([`Close`]) and when the workload stops: it is what a scenario's `[workload]` table and the
//! command line's workload flags describe. A [`WorkloadSpec`] places a profile between addresses
//! (the consumer hosts', the server's). From it:
//!
//! * [`Workload::new`] gives an iterator of [`Packet`]s (a [`FrameBuf`](plsim_pcap::FrameBuf) plus its direction and flow),
//!   in nondecreasing timestamp order, made lazily by a k-way merge over the open flows, so only
//!   the open flows are in memory. [`Workload::next_into`] writes into a caller's buffer instead
//!   (no allocation per packet), and [`Workload::write_pcap`] streams the workload to a capture.
//! * [`WorkloadSpec::schedule`] gives the flows' start times and durations alone ([`FlowPlan`]),
//!   cheaply: the same ones the workload uses.
//!
//! The flag forms `poisson:1000`, `constant:500`, `fixed:30`, `exp:30`, `lognormal:3,1`,
//! `pareto:1,1.5` and `fin` / `rst` / `idle` parse with [`str::parse`]
//! ([`FromStr`](std::str::FromStr)) and print back the same way ([`fmt::Display`]), so the CLI
//! and the scenario file share them.
//!
//! ```
//! use plsim_traffic::workload::{Profile, Workload, WorkloadSpec};
//! use plsim_wire::Dir;
//!
//! let spec = WorkloadSpec::from(Profile {
//!     arrivals: "poisson:1000".parse()?,
//!     flow_duration: "exp:30".parse()?,
//!     close: "fin".parse()?,
//!     flows: Some(100),
//!     ..Profile::default()
//! });
//! let mut workload = Workload::new(&spec)?;
//! let mut frame = Vec::new();
//! while let Some(meta) = workload.next_into(&mut frame) {
//!     // `frame` is an Ethernet II frame: a client's packet enters at the consumer side, a
//!     // server's at the provider side, at `SimTime::from_nanos(meta.ts_ns)`.
//!     let _consumer_side = meta.dir == Dir::Forward;
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
//!   the client's last ACK `h` after that; [`Close::ServerFin`] the same with the roles
//!   swapped (the server's FIN-ACK first, so the server keeps the 4-tuple in TIME_WAIT);
//!   [`Close::Rst`] sends one RST-ACK from the client;
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

mod generator;
mod profile;
mod schedule;

pub use generator::{Packet, PacketMeta, Workload, WorkloadStats};
pub use profile::{Arrivals, Close, FlowDuration, Profile};
pub use schedule::{FlowPlan, Schedule};

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

/// The highest arrival rate, in flows a second: simulated time counts whole nanoseconds, so
/// more flows a second than one a nanosecond can't be told apart (and a generator asked for
/// them would start flows without ever moving its clock).
pub const MAX_RATE: f64 = 1e9;

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
    /// An arrival rate above [`MAX_RATE`].
    #[error(
        "an arrival rate of {per_sec:e} flows a second is more than simulated time can tell \
         apart: it counts whole nanoseconds, so at most {MAX_RATE:e} flows a second"
    )]
    RateTooHigh {
        /// The rate asked for, in flows a second.
        per_sec: f64,
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

/// A synthetic workload as the generator takes it: a [`Profile`] (what flows), between which
/// addresses, and how the network between them behaves (see the [module](self) docs for what
/// each flow looks like).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// What flows: hosts, arrivals, durations, sizes, close, end, seed.
    pub profile: Profile,
    /// The first consumer host's address; the others follow it upward.
    pub client_base: Ipv4Addr,
    /// What the clients connect to: the private endpoint's address and a port (not 0).
    pub server: SocketAddrV4,
    /// The seed of every random choice when the profile has none of its own (a scenario's
    /// seed); see [`WorkloadSpec::seed`].
    pub default_seed: u64,
    /// The round-trip time between a client and the server, in ms: the server answers half of
    /// it after the client's packet, and the client half of it after the server's.
    pub rtt_ms: f64,
    /// How long a client 4-tuple stays unused after its flow's last packet, in seconds (0: it
    /// may be reused at once; a real client keeps it 60 s in TIME_WAIT).
    pub reuse_delay_secs: f64,
}

impl Default for WorkloadSpec {
    /// The default [`Profile`] from 10.0.1.0 to 10.0.0.4:443, seed 1, an RTT of 1 ms, no reuse
    /// delay.
    fn default() -> WorkloadSpec {
        WorkloadSpec::from(Profile::default())
    }
}

impl From<Profile> for WorkloadSpec {
    /// The profile from 10.0.1.0 to 10.0.0.4:443, seed 1 (unless it has its own), an RTT of
    /// 1 ms, no reuse delay.
    fn from(profile: Profile) -> WorkloadSpec {
        WorkloadSpec {
            profile,
            client_base: Ipv4Addr::new(10, 0, 1, 0),
            server: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 443),
            default_seed: 1,
            rtt_ms: 1.0,
            reuse_delay_secs: 0.0,
        }
    }
}

impl WorkloadSpec {
    /// Checks every setting; [`Workload::new`] and [`WorkloadSpec::schedule`] call it.
    pub fn validate(&self) -> Result<(), SpecError> {
        let p = &self.profile;
        if p.hosts == 0 || p.hosts > MAX_HOSTS {
            return Err(out_of_range("hosts", "between 1 and 16777216", p.hosts));
        }
        let base = u32::from(self.client_base);
        let Some(last) = base.checked_add(p.hosts - 1) else {
            return Err(SpecError::HostsOverflow {
                base: self.client_base,
                hosts: p.hosts,
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
        p.arrivals.validate()?;
        p.flow_duration.validate()?;
        let packets = u64::from(p.packets_per_flow);
        if p.bytes_per_flow > packets.saturating_mul(MSS as u64) {
            return Err(SpecError::PayloadTooLarge {
                bytes: p.bytes_per_flow,
                packets: p.packets_per_flow,
            });
        }
        if p.flows.is_none() && p.until_secs.is_none() {
            return Err(SpecError::Unbounded);
        }
        if let Some(until) = p.until_secs {
            check("until_secs", until, true)?;
        }
        check("rtt_ms", self.rtt_ms, true)?;
        if self.rtt_ms > MAX_RTT_MS {
            return Err(out_of_range("rtt_ms", "at most 3600000", self.rtt_ms));
        }
        check("reuse_delay_secs", self.reuse_delay_secs, true)
    }

    /// The seed of every random choice: the profile's own, else [`default_seed`](Self::default_seed).
    pub fn seed(&self) -> u64 {
        self.profile.seed.unwrap_or(self.default_seed)
    }

    /// The flows' start times and durations alone, in start order: cheap (no packets, no
    /// ports), and the same as the workload's.
    pub fn schedule(&self) -> Result<Schedule, SpecError> {
        self.validate()?;
        Ok(Schedule::new(self))
    }
}
