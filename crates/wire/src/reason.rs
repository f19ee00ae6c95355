use std::fmt;

/// Why a packet did not make it through the path. Every dropped packet is counted under exactly
/// one reason; the names are the keys of `summary.json` (`packets.dropped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// An IPv6 packet: Private Link carries IPv4 only.
    Ipv6,
    /// An IPv4 packet that is not TCP (UDP, ICMP, ...).
    NonTcp,
    /// Not IP at all (ARP, MPLS, LLC, ...).
    NonIp,
    /// An IPv4 fragment (Azure drops them).
    Fragment,
    /// Bad header lengths, truncated headers, a bad IP version.
    Malformed,
    /// The private endpoint's connection is not `Approved`.
    NotApproved,
    /// No flow matches: a non-SYN without a flow, or provider-side traffic nobody asked for.
    NoFlow,
    /// No NAT port was free for a new flow (an SNAT failure).
    PortExhausted,
    /// No load-balancing rule matches the frontend IP and port.
    NoRule,
    /// The rule's pool has no healthy backend.
    NoBackend,
    /// No private endpoint takes the packet (a replay whose scenario says which packets are
    /// whose, and none matched).
    NoEndpoint,
}

impl DropReason {
    /// Every reason, in the order of `summary.json`.
    pub const ALL: [DropReason; 11] = [
        DropReason::Ipv6,
        DropReason::NonTcp,
        DropReason::NonIp,
        DropReason::Fragment,
        DropReason::Malformed,
        DropReason::NotApproved,
        DropReason::NoFlow,
        DropReason::PortExhausted,
        DropReason::NoRule,
        DropReason::NoBackend,
        DropReason::NoEndpoint,
    ];

    /// The reason's name as it appears in reports (`"port_exhausted"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Ipv6 => "ipv6",
            DropReason::NonTcp => "non_tcp",
            DropReason::NonIp => "non_ip",
            DropReason::Fragment => "fragment",
            DropReason::Malformed => "malformed",
            DropReason::NotApproved => "not_approved",
            DropReason::NoFlow => "no_flow",
            DropReason::PortExhausted => "port_exhausted",
            DropReason::NoRule => "no_rule",
            DropReason::NoBackend => "no_backend",
            DropReason::NoEndpoint => "no_endpoint",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A counter per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts([u64; 11]);

impl DropCounts {
    /// Counts one packet dropped for `reason`.
    #[inline]
    pub fn add(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another set of counts into this one.
    pub fn merge(&mut self, other: &DropCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// `(reason, count)` for every reason, in the order of [`DropReason::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }
}
