//! Port reuse and the TIME_WAIT hazard ([`SnatConfig::track_reuse`](crate::SnatConfig)).
//!
//! A *reuse* is a new flow record whose reply tuple (NAT IP, NAT port, backend address, backend
//! port) an earlier flow record used. Its *gap* runs from that earlier flow's close to the new
//! flow's first packet (its SYN). The close is the earlier flow's last packet: the packet that
//! closed it (the second FIN, which is when the side that sent the first FIN enters TIME_WAIT,
//! or the RST), or its last packet when it idled out, was torn down or reset. A *hazard* is a
//! reuse whose gap is shorter than the backends' TIME_WAIT after a close the backend began (it
//! sent the first FIN, and no RST followed): the backend may still hold the 4-tuple and refuse
//! or stall the new SYN. A SYN that reopens a held record is the consumer reusing its own
//! tuple, not the NAT handing one out, and is not counted.
//!
//! The bookkeeping runs when a record is made or freed, never per packet. Memory: per NAT IP, a
//! `hashbrown` map from the packed tuple (backend address, NAT port, backend port: 8 bytes) to
//! the last close (nanoseconds, the top bit saying the backend began it: 8 bytes), one entry per
//! distinct tuple ever used: 16 bytes and a control byte a bucket, at most 7/8 full, so 19.4 to
//! 38.9 bytes a tuple as the table doubles (`memory_bytes` counts the capacity). And every gap,
//! 8 bytes a reuse, for the exact median.

use std::time::Duration;

use hashbrown::HashMap;

use crate::flow::Flow;
use crate::tcp::backend_began;

/// The top bit of a recorded close: the backend began it.
const BACKEND_BEGAN: u64 = 1 << 63;

/// What a record of reuses says of one NAT IP, or of several together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reuse {
    /// New flows on a reply tuple an earlier flow used.
    pub reuses: u64,
    /// Reuses within the backends' TIME_WAIT of a close the backend began.
    pub hazards: u64,
    /// The shortest gap (`None` without reuses).
    pub gap_min: Option<Duration>,
    /// The median gap, exactly: the lower median, the `(n - 1) / 2`-th smallest of `n` gaps
    /// (`None` without reuses).
    pub gap_p50: Option<Duration>,
}

impl Reuse {
    /// The counts of several sets of gaps together (several NAT IPs, several engines) with
    /// `hazards` hazards among them: the minimum and the exact lower median of all the gaps
    /// (nanoseconds). Costs a copy of the gaps and a linear-time selection.
    pub fn of(gaps: &[&[u64]], hazards: u64) -> Reuse {
        let mut all: Vec<u64> = gaps.iter().flat_map(|g| g.iter().copied()).collect();
        let reuses = all.len() as u64;
        if all.is_empty() {
            return Reuse {
                reuses,
                hazards,
                ..Reuse::default()
            };
        }
        let min = all.iter().copied().min().expect("a gap");
        let mid = (all.len() - 1) / 2;
        let (_, &mut p50, _) = all.select_nth_unstable(mid);
        Reuse {
            reuses,
            hazards,
            gap_min: Some(Duration::from_nanos(min)),
            gap_p50: Some(Duration::from_nanos(p50)),
        }
    }
}

/// The reuse record of one NAT IP.
#[derive(Clone, Debug, Default)]
struct NatLog {
    /// Packed tuple -> last close (ns, with [`BACKEND_BEGAN`]).
    last: HashMap<u64, u64>,
    /// Every reuse's gap, ns, in the order the flows were made.
    gaps: Vec<u64>,
    hazards: u64,
}

/// The reuse record of an engine: what [`Snat::reuse`](crate::Snat::reuse) shows.
#[derive(Clone, Debug)]
pub struct ReuseLog {
    /// The backends' TIME_WAIT, ns.
    time_wait: u64,
    nats: Vec<NatLog>,
}

/// A tuple of one NAT IP packed in 64 bits.
#[inline]
fn key(n_port: u16, b_ip: u32, b_port: u16) -> u64 {
    u64::from(b_ip) << 32 | u64::from(n_port) << 16 | u64::from(b_port)
}

impl ReuseLog {
    /// An empty record for `nats` NAT IPs.
    pub(crate) fn new(time_wait: Duration, nats: usize) -> ReuseLog {
        ReuseLog {
            time_wait: u64::try_from(time_wait.as_nanos()).unwrap_or(u64::MAX),
            nats: vec![NatLog::default(); nats],
        }
    }

    /// A NAT IP was added.
    pub(crate) fn add_nat(&mut self) {
        self.nats.push(NatLog::default());
    }

    /// Flow record `f` was just made at `now` (its first packet).
    #[inline]
    pub(crate) fn made(&mut self, f: &Flow, now: u64) {
        let n = &mut self.nats[usize::from(f.nat)];
        if let Some(&close) = n.last.get(&key(f.n_port, f.b_ip, f.b_port)) {
            let gap = now.saturating_sub(close & !BACKEND_BEGAN);
            n.gaps.push(gap);
            if close & BACKEND_BEGAN != 0 && gap < self.time_wait {
                n.hazards += 1;
            }
        }
    }

    /// Flow record `f` left the table: its close is its last packet.
    #[inline]
    pub(crate) fn freed(&mut self, f: &Flow) {
        let began = if backend_began(f.state) {
            BACKEND_BEGAN
        } else {
            0
        };
        self.nats[usize::from(f.nat)].last.insert(
            key(f.n_port, f.b_ip, f.b_port),
            f.last & !BACKEND_BEGAN | began,
        );
    }

    /// The backends' TIME_WAIT the hazards are counted under.
    pub fn time_wait(&self) -> Duration {
        Duration::from_nanos(self.time_wait)
    }

    /// The NAT IPs recorded (the engine's, in configuration order).
    pub fn nat_ips(&self) -> usize {
        self.nats.len()
    }

    /// The gaps of NAT IP `nat`'s reuses, in nanoseconds, in the order the flows were made.
    pub fn gaps(&self, nat: usize) -> &[u64] {
        &self.nats[nat].gaps
    }

    /// The hazards on NAT IP `nat`.
    pub fn hazards(&self, nat: usize) -> u64 {
        self.nats[nat].hazards
    }

    /// What the record says of NAT IP `nat`.
    pub fn nat_ip(&self, nat: usize) -> Reuse {
        Reuse::of(&[self.gaps(nat)], self.hazards(nat))
    }

    /// What the record says of all the NAT IPs together.
    pub fn total(&self) -> Reuse {
        let gaps: Vec<&[u64]> = self.nats.iter().map(|n| &n.gaps[..]).collect();
        Reuse::of(&gaps, self.nats.iter().map(|n| n.hazards).sum())
    }

    /// Distinct reply tuples whose last close is on record (those of flows still live since
    /// their first use are not).
    pub fn tuples(&self) -> usize {
        self.nats.iter().map(|n| n.last.len()).sum()
    }

    /// Heap bytes: the maps' tables and the gaps (capacities).
    pub fn memory_bytes(&self) -> usize {
        self.nats
            .iter()
            .map(|n| n.last.allocation_size() + n.gaps.capacity() * 8)
            .sum::<usize>()
            + self.nats.capacity() * size_of::<NatLog>()
    }
}
