//! When flows start and how long they last: the seeded arrival and duration processes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Arrivals, FlowDuration, MAX_DURATION_NS, WorkloadSpec};
use crate::captures::EPOCH_NS;

/// The random stream of the arrivals.
const ARRIVALS_STREAM: u64 = 0;
/// The random stream of the durations.
const DURATIONS_STREAM: u64 = 1;
/// The random stream of the initial sequence numbers.
pub(super) const ISN_STREAM: u64 = 2;

/// A generator on one of the spec's random streams.
pub(super) fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// One flow of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowPlan {
    /// The flow's number: 0, 1, 2, ... in start order (also the flow number of its packets).
    pub id: u64,
    /// When its SYN is sent, ns since the Unix epoch (the first flow starts at
    /// [`EPOCH_NS`](crate::captures::EPOCH_NS)).
    pub start_ns: u64,
    /// Its sampled duration in ns (at most [`MAX_DURATION_NS`]).
    pub duration_ns: u64,
}

/// The flows of a workload in start order, without their packets (from
/// [`WorkloadSpec::schedule`]).
#[derive(Clone, Debug)]
pub struct Schedule {
    arrivals: Arrivals,
    duration: FlowDuration,
    arrival_rng: ChaCha8Rng,
    duration_rng: ChaCha8Rng,
    next_id: u64,
    /// The next flow's start, ns after the first's (a float, so Poisson gaps don't round).
    offset_ns: f64,
    flows: Option<u64>,
    until_ns: Option<f64>,
}

impl Schedule {
    pub(super) fn new(spec: &WorkloadSpec) -> Schedule {
        Schedule {
            arrivals: spec.profile.arrivals,
            duration: spec.profile.flow_duration,
            arrival_rng: stream(spec.seed(), ARRIVALS_STREAM),
            duration_rng: stream(spec.seed(), DURATIONS_STREAM),
            next_id: 0,
            offset_ns: 0.0,
            flows: spec.profile.flows,
            until_ns: spec.profile.until_secs.map(|s| s * 1e9),
        }
    }
}

/// A uniform sample in (0, 1]: never zero, so its log is finite.
fn open_unit(rng: &mut ChaCha8Rng) -> f64 {
    1.0 - rng.random::<f64>()
}

/// One duration in seconds.
fn sample_secs(d: &FlowDuration, rng: &mut ChaCha8Rng) -> f64 {
    match *d {
        FlowDuration::Fixed { secs } => secs,
        FlowDuration::Exponential { mean_secs } => -open_unit(rng).ln() * mean_secs,
        FlowDuration::LogNormal { mu, sigma } => {
            // Box-Muller, one normal from two uniforms.
            let r = (-2.0 * open_unit(rng).ln()).sqrt();
            let z = r * (std::f64::consts::TAU * rng.random::<f64>()).cos();
            (mu + sigma * z).exp()
        }
        FlowDuration::Pareto { scale_secs, shape } => scale_secs / open_unit(rng).powf(1.0 / shape),
    }
}

fn secs_to_ns(secs: f64) -> u64 {
    let ns = secs * 1e9;
    // `as` saturates, and NaN (impossible after validation) would give 0.
    if ns >= MAX_DURATION_NS as f64 {
        MAX_DURATION_NS
    } else {
        ns.round() as u64
    }
}

impl Iterator for Schedule {
    type Item = FlowPlan;

    fn next(&mut self) -> Option<FlowPlan> {
        let id = self.next_id;
        if self.flows.is_some_and(|n| id >= n) {
            return None;
        }
        let offset = match self.arrivals {
            // From the index, so the times are exact and don't drift.
            Arrivals::Constant { per_sec } => id as f64 * (1e9 / per_sec),
            Arrivals::Poisson { per_sec } => {
                let at = self.offset_ns;
                self.offset_ns += -open_unit(&mut self.arrival_rng).ln() * (1e9 / per_sec);
                at
            }
        };
        if self.until_ns.is_some_and(|u| offset > u) {
            // Stays exhausted: the next call sees the same offset (Poisson) or a later one.
            self.flows = Some(id);
            return None;
        }
        self.next_id += 1;
        let duration_ns = secs_to_ns(sample_secs(&self.duration, &mut self.duration_rng));
        Some(FlowPlan {
            id,
            start_ns: EPOCH_NS.saturating_add(offset.round() as u64),
            duration_ns,
        })
    }
}
