//! A workload's profile, what the scenario file's `[workload]` table and the command line's
//! workload flags describe: the consumer hosts, how flows arrive ([`Arrivals`]), how long they
//! last ([`FlowDuration`]), what they carry, how they end ([`Close`]), when the workload stops,
//! and its seed.

use std::fmt;
use std::str::FromStr;

use super::{MAX_RATE, SpecError, check, out_of_range};

#[cfg(doc)]
use super::{MAX_HOSTS, MSS, WorkloadSpec};

/// What flows a workload makes, wherever it runs (the [`WorkloadSpec`] adds where: the hosts'
/// and the server's addresses). With the `serde` feature it is the scenario file's
/// `[workload]` table, whose keys are the fields' names but for `hosts_per_endpoint` (`hosts`),
/// `arrival` (`arrivals`) and `duration` (`until_secs`).
///
/// `Profile::default()` is the workload of a scenario without a `[workload]` table: 10 hosts,
/// Poisson 100 flows/s, exponential durations of mean 5 s, 4 data packets and 2,000 bytes a
/// flow, closed by FIN, 1,000 flows. A table must give `arrival` and `flow_duration`; a key it
/// leaves out is 16 hosts, 10 data packets, 1,000 bytes, `fin`, and no `flows`, `duration` or
/// `seed`.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Profile {
    /// The number of consumer hosts (behind each endpoint), at least 1 and at most
    /// [`MAX_HOSTS`].
    #[cfg_attr(
        feature = "serde",
        serde(rename = "hosts_per_endpoint", default = "table::hosts")
    )]
    pub hosts: u32,
    /// How flows arrive.
    #[cfg_attr(feature = "serde", serde(rename = "arrival"))]
    pub arrivals: Arrivals,
    /// How long flows last.
    pub flow_duration: FlowDuration,
    /// Data packets per flow, after the handshake (which is always there), both directions.
    #[cfg_attr(feature = "serde", serde(default = "table::packets_per_flow"))]
    pub packets_per_flow: u32,
    /// Payload bytes per flow, both directions together, split over the data packets: at most
    /// [`MSS`] per packet.
    #[cfg_attr(feature = "serde", serde(default = "table::bytes_per_flow"))]
    pub bytes_per_flow: u64,
    /// How flows end.
    #[cfg_attr(feature = "serde", serde(default))]
    pub close: Close,
    /// Start this many flows, then stop starting new ones (`None`: no limit).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub flows: Option<u64>,
    /// Start no flow later than this many seconds after the first (`None`: no limit). At least
    /// one of `flows` and `until_secs` must be set.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "duration", default, skip_serializing_if = "Option::is_none")
    )]
    pub until_secs: Option<f64>,
    /// The workload's own seed (`None`: the [`WorkloadSpec::default_seed`], a scenario's own).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub seed: Option<u64>,
}

impl Default for Profile {
    /// The workload of a scenario without a `[workload]` table (see [`Profile`]).
    fn default() -> Profile {
        Profile {
            hosts: 10,
            arrivals: Arrivals::Poisson { per_sec: 100.0 },
            flow_duration: FlowDuration::Exponential { mean_secs: 5.0 },
            packets_per_flow: 4,
            bytes_per_flow: 2_000,
            close: Close::Fin,
            flows: Some(1_000),
            until_secs: None,
            seed: None,
        }
    }
}

/// The values of the keys a `[workload]` table leaves out.
#[cfg(feature = "serde")]
mod table {
    pub(super) fn hosts() -> u32 {
        16
    }
    pub(super) fn packets_per_flow() -> u32 {
        10
    }
    pub(super) fn bytes_per_flow() -> u64 {
        1000
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

    /// The same process at `factor` times the rate (a sweep's load), unchecked.
    pub fn times(self, factor: f64) -> Arrivals {
        match self {
            Arrivals::Constant { per_sec } => Arrivals::Constant {
                per_sec: per_sec * factor,
            },
            Arrivals::Poisson { per_sec } => Arrivals::Poisson {
                per_sec: per_sec * factor,
            },
        }
    }

    /// Checks the rate: a finite number above zero, and at most [`MAX_RATE`].
    pub fn validate(&self) -> Result<(), SpecError> {
        let per_sec = self.per_sec();
        check("the arrival rate", per_sec, false)?;
        if per_sec > MAX_RATE {
            return Err(SpecError::RateTooHigh { per_sec });
        }
        Ok(())
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

/// How long flows last, in seconds: from the SYN to the close (see the [module](crate::workload) docs).
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

/// How flows end: `fin`, `server-fin`, `rst` or `idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Close {
    /// FIN-ACK both ways and a last ACK (`fin`), the client's first.
    #[default]
    Fin,
    /// FIN-ACK both ways and a last ACK, the server's first (`server-fin`): the server closes
    /// actively and keeps the 4-tuple in TIME_WAIT.
    ServerFin,
    /// One RST-ACK from the client (`rst`).
    Rst,
    /// Nothing: the flow goes quiet and is left for the idle timeout (`idle`).
    Idle,
}

impl Close {
    /// The number of packets the close takes: 3, 1 or 0.
    pub fn packets(self) -> u32 {
        match self {
            Close::Fin | Close::ServerFin => 3,
            Close::Rst => 1,
            Close::Idle => 0,
        }
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Close::Fin => "fin",
            Close::ServerFin => "server-fin",
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
            "server-fin" => Ok(Close::ServerFin),
            "rst" | "reset" => Ok(Close::Rst),
            "idle" | "none" => Ok(Close::Idle),
            _ => Err(SpecError::Syntax {
                what: "close",
                input: s.to_string(),
                expected: "fin, server-fin, rst or idle",
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
