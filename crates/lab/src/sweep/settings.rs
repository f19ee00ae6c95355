//! What every point of a sweep depends on but its index and its capture's bytes: the settings
//! its fingerprint is made of (see [`points::fingerprint`](crate::points::fingerprint)).

use plsim_control::scenario::ReuseScope;
use serde::Serialize;

use super::{Input, Point, Sweep};
use crate::workload::Overrides;
use crate::{Error, Result};

/// A sweep's settings, in the fingerprint's document (fields in this order).
#[derive(Serialize)]
pub(super) struct Settings<'a> {
    /// Every point of the grid, in order, as `--list` gives them (less the index).
    points: &'a [Point],
    /// The scenario file's text as read; `None`: the built-in scenario.
    scenario: Option<String>,
    /// The reuse scope of every run.
    reuse: Option<ReuseScope>,
    /// Mid-stream pickup.
    pickup: bool,
    /// The workload flags; `None` for a capture.
    workload: Option<Workload>,
}

/// The workload flags, each in its flag's syntax.
#[derive(Serialize)]
struct Workload {
    flows: Option<u64>,
    arrivals: Option<String>,
    durations: Option<String>,
    close: Option<String>,
    hosts: Option<u32>,
    packets_per_flow: Option<u32>,
    bytes_per_flow: Option<u64>,
    until: Option<f64>,
    seed: Option<u64>,
}

impl Workload {
    fn of(flags: &Overrides) -> Workload {
        // Every flag by name: one added to the flags fails to build here until it is in.
        let Overrides {
            flows,
            arrivals,
            flow_duration,
            close,
            hosts,
            packets_per_flow,
            bytes_per_flow,
            until_secs,
            seed,
        } = *flags;
        Workload {
            flows,
            arrivals: arrivals.map(|a| a.to_string()),
            durations: flow_duration.map(|d| d.to_string()),
            close: close.map(|c| c.to_string()),
            hosts,
            packets_per_flow,
            bytes_per_flow,
            until: until_secs,
            seed,
        }
    }
}

impl Sweep {
    /// The settings of its fingerprint, with its points.
    pub(super) fn settings<'a>(&self, points: &'a [Point]) -> Result<Settings<'a>> {
        let scenario = match &self.scenario {
            Some(f) => Some(std::fs::read_to_string(f).map_err(|e| Error::io(f, &e))?),
            None => None,
        };
        Ok(Settings {
            points,
            scenario,
            reuse: self.reuse,
            pickup: self.pickup,
            workload: match &self.input {
                Input::Capture(_) => None,
                Input::Workload { flags, .. } => Some(Workload::of(flags)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use plsim_control::scenario::{Allocator, Arrivals};

    use super::*;
    use crate::points::Command;
    use crate::points::fingerprint::of;
    use crate::sweep::Grid;

    /// A sweep's settings as the fingerprint takes them, pinned: a change to how a point, a
    /// setting or a flag is written changes every sweep's fingerprint, and must be made on
    /// purpose (here).
    #[test]
    fn a_sweeps_settings_and_fingerprint_are_pinned() {
        let sweep = Sweep {
            input: Input::Workload {
                flags: Overrides {
                    flows: Some(200),
                    arrivals: Some(Arrivals::Poisson { per_sec: 50.0 }),
                    until_secs: Some(2.5),
                    ..Overrides::default()
                },
                load: vec![1.0, 4.0],
            },
            grid: Grid {
                nat_ips: vec![1, 2],
                allocators: vec![Allocator::Random { seed: 7 }],
                ..Grid::default()
            },
            scenario: None,
            reuse: Some(ReuseScope::PerIp),
            pickup: false,
            stop: None,
        };
        let points = sweep.points();
        let settings = sweep.settings(&points).unwrap();
        assert_eq!(
            serde_json::to_string(&settings).unwrap(),
            "{\"points\":[\
             {\"nat_ips\":1,\"allocator\":\"random:7\",\"ports\":null,\"idle\":null,\"fin_hold\":null,\"load\":1.0},\
             {\"nat_ips\":1,\"allocator\":\"random:7\",\"ports\":null,\"idle\":null,\"fin_hold\":null,\"load\":4.0},\
             {\"nat_ips\":2,\"allocator\":\"random:7\",\"ports\":null,\"idle\":null,\"fin_hold\":null,\"load\":1.0},\
             {\"nat_ips\":2,\"allocator\":\"random:7\",\"ports\":null,\"idle\":null,\"fin_hold\":null,\"load\":4.0}],\
             \"scenario\":null,\"reuse\":\"per-ip\",\"pickup\":false,\
             \"workload\":{\"flows\":200,\"arrivals\":\"poisson:50\",\"durations\":null,\
             \"close\":null,\"hosts\":null,\"packets_per_flow\":null,\"bytes_per_flow\":null,\
             \"until\":2.5,\"seed\":null}}"
        );
        assert_eq!(
            of("1.2.3", Command::Sweep, &settings, None),
            "5168463cd4b31a96ec844d7135564cd4"
        );
    }
}
