use std::fmt;
use std::net::Ipv4Addr;
use std::ops::{Add, Sub};
use std::time::Duration;

/// The id of one private endpoint connection. Packets carry it from the endpoint stage on,
/// because two consumer VNets may use the same addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LinkId(pub u32);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link#{}", self.0)
    }
}

/// Simulated time in nanoseconds. Stages never read a clock: the caller passes this in (the
/// capture's timestamps in a replay), which makes every run deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SimTime(u64);

impl SimTime {
    /// Time zero.
    pub const ZERO: SimTime = SimTime(0);
    /// The latest representable time.
    pub const MAX: SimTime = SimTime(u64::MAX);

    /// From nanoseconds.
    pub const fn from_nanos(ns: u64) -> SimTime {
        SimTime(ns)
    }
    /// From whole seconds.
    pub const fn from_secs(s: u64) -> SimTime {
        SimTime(s.saturating_mul(1_000_000_000))
    }
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> SimTime {
        SimTime(ms.saturating_mul(1_000_000))
    }
    /// Nanoseconds since time zero.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// Seconds since time zero, as a float (for reports).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// The time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: SimTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for SimTime {
    type Output = SimTime;
    /// Saturates at [`SimTime::MAX`].
    fn add(self, d: Duration) -> SimTime {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        SimTime(self.0.saturating_add(ns))
    }
}

impl Sub<SimTime> for SimTime {
    type Output = Duration;
    /// Saturates at zero.
    fn sub(self, earlier: SimTime) -> Duration {
        self.saturating_since(earlier)
    }
}

/// The address and port of both ends of a TCP packet, as it is on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowTuple {
    /// The source address.
    pub src: Ipv4Addr,
    /// The source port.
    pub sport: u16,
    /// The destination address.
    pub dst: Ipv4Addr,
    /// The destination port.
    pub dport: u16,
}

/// A flow (one TCP connection), the same key for both directions: its two ends (address and
/// port), lower first. ("Connection" in plsim is a private endpoint connection.)
pub type FlowKey = ((Ipv4Addr, u16), (Ipv4Addr, u16));

/// No addresses, no ports (the tuple of a packet that has none: not IPv4 TCP).
impl Default for FlowTuple {
    fn default() -> FlowTuple {
        FlowTuple {
            src: Ipv4Addr::UNSPECIFIED,
            sport: 0,
            dst: Ipv4Addr::UNSPECIFIED,
            dport: 0,
        }
    }
}

impl FlowTuple {
    /// The flow this packet belongs to, the same for both directions: its two ends, lower
    /// first.
    pub fn flow_key(self) -> FlowKey {
        let (a, b) = ((self.src, self.sport), (self.dst, self.dport));
        if a <= b { (a, b) } else { (b, a) }
    }

    /// The same flow seen from the other end.
    pub fn reversed(self) -> FlowTuple {
        FlowTuple {
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

impl fmt::Display for FlowTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} -> {}:{}",
            self.src, self.sport, self.dst, self.dport
        )
    }
}

/// A consumer VNet, by the control plane's index of it: two VNets may use the same addresses,
/// so an address names a host only together with its VNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VnetId(pub u32);

impl fmt::Display for VnetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which way a packet travels through the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From a consumer to a backend: it enters at the consumer side.
    Forward,
    /// From a backend back to a consumer: it enters at the backend side.
    Reverse,
}

/// Where a segment a stage sends of its own (a PROXY protocol header) goes, relative to the
/// packet that made the stage send it: the same way, just before or just after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// Just before the packet.
    Before,
    /// Just after the packet.
    After,
}
