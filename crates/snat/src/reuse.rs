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
//! The record counts the reuses whose gap is at most its *horizon* ([`ReuseTracking::horizon`],
//! ten minutes by default, never shorter than the TIME_WAIT): a tuple's last close is kept until
//! the horizon has passed since its record left the table, so the record's memory follows the
//! rate of new flows, not the length of the run. Past the horizon a reuse is no hazard and tells
//! nothing of TIME_WAIT; its gap would only say how long the allocator took to come round.
//!
//! The bookkeeping runs when a record is made or freed, never per packet. Memory per NAT IP: a
//! `hashbrown` map from the packed tuple (backend address, NAT port, backend port: 8 bytes) to
//! its last close (nanoseconds, the top bit saying the backend began it: 8 bytes), 16 bytes and
//! a control byte a bucket at most 7/8 full; a queue of the tuples in the order their records
//! left the table (16 bytes each), to forget them after the horizon; and a histogram of the gaps
//! in microseconds up to the horizon (fixed size: 160 KB at ten minutes): the shortest gap is
//! exact, the median to three significant digits.

use std::collections::VecDeque;
use std::time::Duration;

use hashbrown::HashMap;
use hdrhistogram::Histogram;

use crate::flow::Flow;
use crate::tcp::backend_began;

/// The top bit of a recorded close: the backend began it.
const BACKEND_BEGAN: u64 = 1 << 63;

/// What the reuse record counts under: the backends' TIME_WAIT and the horizon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReuseTracking {
    /// The backends' TIME_WAIT: a reuse within it after a close the backend began is a hazard.
    pub time_wait: Duration,
    /// The longest gap counted: reuses further apart are not (see the module docs).
    pub horizon: Duration,
}

/// Ten minutes: ten times Linux's TIME_WAIT, over twice the SNAT's longest default timer.
pub const DEFAULT_REUSE_HORIZON: Duration = Duration::from_secs(600);

impl Default for ReuseTracking {
    fn default() -> ReuseTracking {
        ReuseTracking {
            time_wait: crate::DEFAULT_TIME_WAIT,
            horizon: DEFAULT_REUSE_HORIZON,
        }
    }
}

/// What a record of reuses says of one NAT IP, or of several together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reuse {
    /// New flows on a reply tuple an earlier flow used, at most the horizon after its close.
    pub reuses: u64,
    /// Reuses within the backends' TIME_WAIT of a close the backend began.
    pub hazards: u64,
    /// The shortest gap, exactly (`None` without reuses).
    pub gap_min: Option<Duration>,
    /// The median gap, to three significant digits (`None` without reuses).
    pub gap_p50: Option<Duration>,
}

/// A histogram of gaps: microseconds, up to `highest`, three significant digits.
fn gap_histogram(highest: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, highest.max(2), 3).expect("valid histogram bounds")
}

impl Reuse {
    /// The counts of several sets of gaps together (several NAT IPs, several engines): `gaps`
    /// their histograms, `min` their shortest, `hazards` the hazards among them.
    pub fn of<'a>(
        gaps: impl IntoIterator<Item = &'a Histogram<u64>> + Clone,
        min: Option<u64>,
        hazards: u64,
    ) -> Reuse {
        let highest = gaps
            .clone()
            .into_iter()
            .map(Histogram::high)
            .max()
            .unwrap_or(2);
        let mut all = gap_histogram(highest);
        for g in gaps {
            // Every value of `g` fits under `highest`: adding can't fail.
            let _ = all.add(g);
        }
        let reuses = all.len();
        if reuses == 0 {
            return Reuse {
                hazards,
                ..Reuse::default()
            };
        }
        Reuse {
            reuses,
            hazards,
            gap_min: min.map(Duration::from_nanos),
            // The middle of the median's bucket: within half a bucket (0.05%) of it.
            gap_p50: Some(Duration::from_micros(
                all.median_equivalent(all.value_at_quantile(0.5)),
            )),
        }
    }
}

/// The reuse record of one NAT IP.
#[derive(Clone, Debug)]
struct NatLog {
    /// Packed tuple -> last close (ns, with [`BACKEND_BEGAN`]).
    last: HashMap<u64, u64>,
    /// `(freed at, tuple)` in the order records left the table: what to forget when.
    freed: VecDeque<(u64, u64)>,
    /// The gaps, µs.
    gaps: Histogram<u64>,
    /// The shortest gap, ns.
    min: Option<u64>,
    hazards: u64,
}

impl NatLog {
    fn new(horizon: u64) -> NatLog {
        NatLog {
            last: HashMap::new(),
            freed: VecDeque::new(),
            gaps: gap_histogram(horizon / 1000 + 1),
            min: None,
            hazards: 0,
        }
    }
}

/// The reuse record of an engine: what [`Snat::reuse`](crate::Snat::reuse) shows.
#[derive(Clone, Debug)]
pub struct ReuseLog {
    /// The backends' TIME_WAIT, ns.
    time_wait: u64,
    /// The horizon, ns.
    horizon: u64,
    nats: Vec<NatLog>,
}

/// A tuple of one NAT IP packed in 64 bits.
#[inline]
fn key(n_port: u16, b_ip: u32, b_port: u16) -> u64 {
    u64::from(b_ip) << 32 | u64::from(n_port) << 16 | u64::from(b_port)
}

/// Nanoseconds of a duration, saturated.
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ReuseLog {
    /// An empty record for `nats` NAT IPs.
    pub(crate) fn new(t: ReuseTracking, nats: usize) -> ReuseLog {
        let horizon = ns(t.horizon);
        ReuseLog {
            time_wait: ns(t.time_wait),
            horizon,
            nats: vec![NatLog::new(horizon); nats],
        }
    }

    /// A NAT IP was added.
    pub(crate) fn add_nat(&mut self) {
        self.nats.push(NatLog::new(self.horizon));
    }

    /// Flow record `f` was just made at `now` (its first packet).
    #[inline]
    pub(crate) fn made(&mut self, f: &Flow, now: u64) {
        let n = &mut self.nats[usize::from(f.nat)];
        if let Some(&close) = n.last.get(&key(f.n_port, f.b_ip, f.b_port)) {
            let gap = now.saturating_sub(close & !BACKEND_BEGAN);
            if gap > self.horizon {
                return;
            }
            n.gaps.saturating_record((gap / 1000).max(1));
            n.min = Some(n.min.map_or(gap, |m| m.min(gap)));
            if close & BACKEND_BEGAN != 0 && gap < self.time_wait {
                n.hazards += 1;
            }
        }
    }

    /// Flow record `f` left the table at `now`: its close is its last packet. Tuples freed
    /// longer than the horizon ago are forgotten (their closes are older still: no reuse of
    /// them can count any more).
    #[inline]
    pub(crate) fn freed(&mut self, f: &Flow, now: u64) {
        let began = if backend_began(f.state) {
            BACKEND_BEGAN
        } else {
            0
        };
        let n = &mut self.nats[usize::from(f.nat)];
        let k = key(f.n_port, f.b_ip, f.b_port);
        let close = f.last & !BACKEND_BEGAN | began;
        n.last.insert(k, close);
        n.freed.push_back((now, k));
        while let Some(&(at, k)) = n.freed.front() {
            if now.saturating_sub(at) <= self.horizon {
                break;
            }
            n.freed.pop_front();
            // Unless the tuple was used and freed again since: that later close stays.
            if n.last
                .get(&k)
                .is_some_and(|&c| now.saturating_sub(c & !BACKEND_BEGAN) > self.horizon)
            {
                n.last.remove(&k);
            }
        }
    }

    /// The backends' TIME_WAIT the hazards are counted under.
    pub fn time_wait(&self) -> Duration {
        Duration::from_nanos(self.time_wait)
    }

    /// The longest gap counted.
    pub fn horizon(&self) -> Duration {
        Duration::from_nanos(self.horizon)
    }

    /// The NAT IPs recorded (the engine's, in configuration order).
    pub fn nat_ips(&self) -> usize {
        self.nats.len()
    }

    /// The gaps of NAT IP `nat`'s reuses, in microseconds, three significant digits.
    pub fn gaps(&self, nat: usize) -> &Histogram<u64> {
        &self.nats[nat].gaps
    }

    /// What the record says of NAT IP `nat`.
    pub fn nat_ip(&self, nat: usize) -> Reuse {
        let n = &self.nats[nat];
        Reuse::of([&n.gaps], n.min, n.hazards)
    }

    /// The gaps of every NAT IP (to add them up with other engines'), their shortest, and the
    /// hazards.
    pub fn parts(&self) -> (Vec<&Histogram<u64>>, Option<u64>, u64) {
        (
            self.nats.iter().map(|n| &n.gaps).collect(),
            self.nats.iter().filter_map(|n| n.min).min(),
            self.nats.iter().map(|n| n.hazards).sum(),
        )
    }

    /// What the record says of all the NAT IPs together.
    pub fn total(&self) -> Reuse {
        let (gaps, min, hazards) = self.parts();
        Reuse::of(gaps, min, hazards)
    }

    /// Distinct reply tuples whose last close is on record now.
    pub fn tuples(&self) -> usize {
        self.nats.iter().map(|n| n.last.len()).sum()
    }

    /// Heap bytes: the maps' tables, the queues and the histograms (capacities).
    pub fn memory_bytes(&self) -> usize {
        self.nats
            .iter()
            .map(|n| {
                n.last.allocation_size()
                    + n.freed.capacity() * size_of::<(u64, u64)>()
                    + n.gaps.distinct_values() * size_of::<u64>()
            })
            .sum::<usize>()
            + self.nats.capacity() * size_of::<NatLog>()
    }
}
