//! One run: a capture or a synthetic workload through the path built from a scenario, with
//! everything a run writes (summary, both pcaps, the time series).

use std::fmt::Write as _;
use std::path::Path as FsPath;
use std::time::Duration;

use plsim_control::Scenario;
use plsim_wire::SimTime;

use crate::path::{BadSetting, Path, summarize};
use crate::replay::{BackendEmulation, CaptureFeeder, PacketSource, PcapTaps, Written};
use crate::stages::Sample;
use crate::summary::{Input, Summary};
use crate::{Batch, Feeder, Fill, Options};

/// How to run.
pub struct RunSpec<'a> {
    /// The scenario (already checked, flags applied).
    pub scenario: &'a Scenario,
    /// Let mid-stream packets open flows.
    pub pickup: bool,
    /// Write `consumer.pcap` and `backend.pcap` (and nothing else) into this directory.
    pub pcaps: Option<&'a FsPath>,
    /// Sample the gauges this often (simulated time).
    pub sample_every: Option<Duration>,
    /// Called after each batch with the packets read so far.
    pub progress: Option<&'a dyn Fn(u64)>,
}

/// What a run gives back.
pub struct Outcome {
    pub summary: Summary,
    /// What the pcaps got, with `pcaps`.
    pub written: Option<Written>,
    /// The gauges over time, with `sample_every`.
    pub series: Vec<Sample>,
}

struct Progress<'a, F> {
    inner: F,
    call: Option<&'a dyn Fn(u64)>,
    packets: u64,
}

impl<F: Feeder> Feeder for Progress<'_, F> {
    fn fill(&mut self, fwd: &mut Batch, srv: &mut Batch, max: usize) -> Fill {
        let fill = self.inner.fill(fwd, srv, max);
        self.packets += (fwd.len() + srv.len()) as u64;
        if let Some(call) = self.call {
            call(self.packets);
        }
        fill
    }
}

/// Runs `source` through the path of `spec.scenario`. `input.truncated` is left false: the
/// caller knows whether its source was cut short.
pub fn run<S: PacketSource>(source: &mut S, spec: &RunSpec<'_>) -> Result<Outcome, BadSetting> {
    let mut sim = Path::build(spec.scenario, spec.pickup)?;
    let Some((vnet, endpoint)) = sim.replay_endpoint else {
        return Err(BadSetting(
            "the scenario has no private endpoint to send through".into(),
        ));
    };
    if let Some(every) = spec.sample_every {
        sim.snat.sample_every(every);
    }
    let taps = spec.pcaps.map(PcapTaps::new);
    let opts = Options {
        taps: taps.is_some(),
        ..Options::default()
    };
    let mut feeder = Progress {
        inner: CaptureFeeder::new(source, endpoint, vnet, sim.events),
        call: spec.progress,
        packets: 0,
    };
    let (mut fin, taps) = crate::run(
        sim.endpoint,
        sim.lb,
        sim.snat,
        &mut feeder,
        taps,
        BackendEmulation::new(spec.pickup),
        opts,
    );
    let feeder = feeder.inner;
    let read = feeder.input();
    let input = Input {
        packets: read.packets,
        bytes: read.bytes,
        truncated: false,
        checksums_repaired: read.checksums_repaired,
    };
    let sim_time = SimTime::ZERO + (feeder.last() - feeder.first());
    let series = fin.snat.take_series(feeder.last());
    let summary = summarize(&fin, input, sim_time);
    let written = match taps {
        Some(t) => Some(t.finish().map_err(|e| BadSetting(e.to_string()))?),
        None => None,
    };
    Ok(Outcome {
        summary,
        written,
        series,
    })
}

/// The time series as CSV: `t_s,live_flows,snat_failures,<NAT IP>...` (ports in use), time in
/// seconds from the first sample.
pub fn series_csv(series: &[Sample]) -> String {
    let mut ips = Vec::new();
    for s in series {
        for (ip, _) in &s.ports_in_use {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
    }
    let mut out = String::from("t_s,live_flows,snat_failures");
    for ip in &ips {
        let _ = write!(out, ",ports_in_use_{ip}");
    }
    out.push('\n');
    let t0 = series.first().map_or(SimTime::ZERO, |s| s.t);
    for s in series {
        let _ = write!(
            out,
            "{:.6},{},{}",
            (s.t - t0).as_secs_f64(),
            s.live_flows,
            s.snat_failures
        );
        for ip in &ips {
            let n = s
                .ports_in_use
                .iter()
                .find(|(i, _)| i == ip)
                .map_or(0, |(_, n)| *n);
            let _ = write!(out, ",{n}");
        }
        out.push('\n');
    }
    out
}
