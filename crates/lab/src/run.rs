//! One run: a capture or a synthetic workload through the path built from a scenario, with
//! everything a run writes (summary, both pcaps, the time series).

use std::time::Duration;

use plsim_control::Scenario;
use plsim_engine::{Batch, Engine, Feeder, Fill, Options, Parts, Taps};
use plsim_wire::SimTime;

use crate::core::CoreStage;
use crate::path::Path;
use crate::replay::{BackendEmulation, CaptureFeeder, PacketSource};
use crate::series::Sample;
use crate::summary::{Input, Summary, summarize};
use crate::{CoreView, Error, Event, Finished, Result};

/// How to run.
pub struct RunSpec<'a> {
    /// The scenario (already checked, flags applied).
    pub scenario: &'a Scenario,
    /// Let mid-stream packets open flows.
    pub pickup: bool,
    /// Sample the gauges this often (simulated time).
    pub sample_every: Option<Duration>,
    /// Called now and then with the packets read so far.
    pub progress: Option<&'a dyn Fn(u64)>,
    /// Which engine runs it.
    pub engine: Engine,
    /// Packets per batch of the threaded engine (never changes the result).
    pub batch: usize,
    /// Stop early when this is requested (the summary says `interrupted`).
    pub stop: Option<&'a crate::stop::Stop>,
    /// Count port reuses and TIME_WAIT hazards (the summary's `reuse`) under these settings
    /// (`--time-wait`, `--reuse-horizon`; Linux's 60 s and ten minutes by default). `None`
    /// keeps no record (the summary has no `reuse`).
    pub reuse: Option<plsim_snat::ReuseTracking>,
}

impl<'a> RunSpec<'a> {
    /// A run of `scenario` with the defaults: no pickup, no samples, no progress, the threaded
    /// engine with its default batch, the reuse record under the default settings.
    pub fn new(scenario: &'a Scenario) -> RunSpec<'a> {
        RunSpec {
            scenario,
            pickup: false,
            sample_every: None,
            progress: None,
            engine: Engine::Threaded,
            batch: plsim_engine::DEFAULT_BATCH,
            stop: None,
            reuse: Some(plsim_snat::ReuseTracking::default()),
        }
    }
}

/// What a run gives back.
pub struct Outcome {
    /// The summary (`input.truncated` left false: the caller knows its source).
    pub summary: Summary,
    /// The gauges over time, with `sample_every`.
    pub series: Vec<Sample>,
    /// The distribution of the wall-clock time packets spent in the engine: (quantile,
    /// nanoseconds) at each percent and at 99.9 and 99.99 (empty without packets).
    pub latency: Vec<(f64, u64)>,
}

/// Calls the progress callback every 64 Ki packets, and at the end.
struct Progress<'a, F> {
    inner: F,
    call: Option<&'a dyn Fn(u64)>,
    packets: u64,
}

impl<F: Feeder<Event>> Feeder<Event> for Progress<'_, F> {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        let fill = self.inner.fill(batch, max);
        let before = self.packets;
        self.packets += batch.len() as u64;
        if let Some(call) = self.call
            && (self.packets >> 16 != before >> 16 || fill == Fill::Done)
        {
            call(self.packets);
        }
        fill
    }
}

/// Runs `source` through the path of `spec.scenario`, the taps seeing both sides.
pub fn run<S: PacketSource, T: Taps>(
    source: &mut S,
    spec: &RunSpec<'_>,
    taps: T,
) -> Result<(Outcome, T)> {
    let mut sim = Path::build_with(spec.scenario, spec.pickup, spec.reuse)?;
    if sim.routes.is_empty() {
        return Err(Error::Input(
            "the scenario has no private endpoint to send through".into(),
        ));
    }
    if let Some(every) = spec.sample_every {
        sim.snat.sample_every(every);
    }
    let opts = Options {
        engine: spec.engine,
        batch_size: spec.batch,
        ..Options::default()
    };
    let mut feeder = Progress {
        inner: CaptureFeeder::new(source, sim.routes.clone(), sim.provider.clone(), sim.events)
            .forgetting_after(sim.horizon)
            .stop_on(spec.stop.cloned()),
        call: spec.progress,
        packets: 0,
    };
    let backend = BackendEmulation::new(spec.pickup).forgetting_after(sim.horizon);
    let edge = sim.endpoint;
    // The sequential engine runs the stages on their own tables (the definition of a run),
    // the threaded one the core whose connections are one record each: the differential
    // tests compare the two.
    let (mut summary, series, latency, taps) = match spec.engine {
        Engine::Sequential => {
            let core = (sim.lb, sim.snat);
            let parts = Parts {
                edge,
                core,
                backend,
            };
            let fin = plsim_engine::run(parts, &mut feeder, taps, opts);
            results(fin, &feeder.inner, &sim.connections)
        }
        Engine::Threaded => {
            let core = (CoreStage::new(sim.lb, sim.snat),);
            let parts = Parts {
                edge,
                core,
                backend,
            };
            let fin = plsim_engine::run(parts, &mut feeder, taps, opts);
            results(fin, &feeder.inner, &sim.connections)
        }
    };
    summary.interrupted = feeder.inner.interrupted();
    Ok((
        Outcome {
            summary,
            series,
            latency,
        },
        taps,
    ))
}

/// What a finished run found: its summary (`input.truncated` left false), the time series,
/// and the taps.
fn results<C: CoreView, S: PacketSource, T>(
    mut fin: Finished<C, BackendEmulation, T>,
    feeder: &CaptureFeeder<'_, S>,
    connections: &[crate::path::ConnectionInfo],
) -> (Summary, Vec<Sample>, Vec<(f64, u64)>, T) {
    let read = feeder.input();
    let input = Input {
        packets: read.packets,
        bytes: read.bytes,
        truncated: false,
        checksums_repaired: read.checksums_repaired,
        tuple_collisions: read.tuple_collisions,
    };
    let end = fin.stats.last_ts.unwrap_or(feeder.first());
    let sim_time = SimTime::ZERO + end.saturating_since(feeder.first());
    let series = fin.parts.core.snat_mut().take_series(end);
    let summary = summarize(&fin, input, sim_time, connections);
    let h = &fin.stats.latency_ns;
    let latency = if h.is_empty() {
        Vec::new()
    } else {
        let mut q: Vec<f64> = (0..=100).map(|p| f64::from(p) / 100.0).collect();
        q.splice(100..100, [0.999, 0.9999]);
        q.into_iter().map(|q| (q, h.value_at_quantile(q))).collect()
    };
    (summary, series, latency, fin.taps)
}
