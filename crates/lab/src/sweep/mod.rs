//! One input over a grid of settings, one run per point (`plsim sweep`): the grid, the runs
//! (in parallel, one per core, or one point alone for a cluster: see [`points`]), and what
//! they give: one row per point, a CSV and a plot of the SNAT failure rate, the peak port use
//! and the TIME_WAIT hazards of port reuse against the settings.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plsim_control::Scenario;
use plsim_control::scenario::ReuseScope;
use plsim_engine::NoTaps;
use plsim_pcap::Reader;
use plsim_traffic::workload::Arrivals;

use crate::files::load_scenario;
use crate::path::Overrides;
use crate::points::fingerprint::{InputHash, fingerprint};
use crate::points::{self, Command, PointFile, Ran};
use crate::run::{self, RunSpec};
use crate::stop::Stop;
use crate::workload::{self, Workloads, specs};
use crate::{Error, Result};

mod grid;
mod plot;
mod settings;
mod table;

pub use grid::{Grid, Point};
pub use plot::plot;
use table::cells;
pub use table::{Row, csv};

/// A sweep: its input, its grid, its scenario and the settings every point keeps.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// What every point runs.
    pub input: Input,
    /// The scenario's settings swept.
    pub grid: Grid,
    /// The scenario file; the built-in scenario without it.
    pub scenario: Option<PathBuf>,
    /// The reuse scope of every run.
    pub reuse: Option<ReuseScope>,
    /// Let mid-stream packets open flows.
    pub pickup: bool,
    /// Stop early when this is requested: no further point starts, and a point cut short is
    /// left out.
    pub stop: Option<Stop>,
}

/// What every point of a sweep runs.
#[derive(Clone, Debug)]
pub enum Input {
    /// A capture (`-`: standard input, which a point alone can read, not a whole sweep).
    Capture(PathBuf),
    /// The scenario's synthetic workload.
    Workload {
        /// The workload flags over the scenario's workload.
        flags: workload::Overrides,
        /// Multipliers of its arrival rate, swept after the grid's settings (none: its own
        /// rate).
        load: Vec<f64>,
    },
}

impl Input {
    /// The input's name for people: the capture's file name (see [`points::input_name`]), or
    /// the synthetic workload.
    pub fn name(&self) -> String {
        match self {
            Input::Capture(p) => points::input_name(p),
            Input::Workload { .. } => "the synthetic workload".to_string(),
        }
    }
}

/// What [`Sweep::run_all`] gives back.
#[derive(Clone, Debug)]
pub struct Swept {
    /// The points that ran to their end, in the points' order.
    pub rows: Vec<Row>,
    /// Whether the sweep was stopped early (then some points are missing).
    pub interrupted: bool,
    /// What was wrong with the capture, when its points read it up to damage (the reader's
    /// warning, as `replay` gives it; every such row is marked `truncated`).
    pub warning: Option<String>,
}

impl Swept {
    /// Ok when every one of `points` ran to its end; the interrupt, saying how many did, when
    /// not.
    pub fn check_whole(&self, points: usize) -> Result<()> {
        if !self.interrupted {
            return Ok(());
        }
        Err(Error::Interrupted(format!(
            "{} of the {points} points ran to their end; sweep.csv holds those",
            self.rows.len()
        )))
    }
}

impl Sweep {
    /// Every point: the grid's, each at every load of a workload (see [`Grid::points`]).
    pub fn points(&self) -> Vec<Point> {
        match &self.input {
            Input::Capture(_) => self.grid.points(&[]),
            Input::Workload { load, .. } => self.grid.points(load),
        }
    }

    /// The title of its CSV and plot: "sweep of " the input's name (the capture's file name,
    /// not its path: the nodes of a cluster may mount it in different places).
    pub fn title(&self) -> String {
        title(&self.input.name())
    }

    /// Runs point `index` alone and gives its result with the sweep's fingerprint (none when
    /// it was stopped before its end), and what was wrong with its capture.
    pub fn run_one(&self, index: usize) -> Result<Ran<Row>> {
        let all = self.points();
        points::check_index(Command::Sweep, index, all.len())?;
        let hash = InputHash::default();
        let (row, warning) = self.run_point(&all[index], Some(&hash))?;
        let Some(row) = row else {
            return Ok(Ran {
                result: None,
                warning,
            });
        };
        let capture = matches!(self.input, Input::Capture(_)).then_some(&hash);
        Ok(Ran {
            result: Some(PointFile {
                command: Command::Sweep,
                fingerprint: fingerprint(Command::Sweep, &self.settings(&all)?, capture),
                index,
                points: all.len(),
                input: self.input.name(),
                result: row,
            }),
            warning,
        })
    }

    /// Runs one point, reading a capture through `hash` when given: its row (`None` when it
    /// was stopped before its end; marked `truncated` when the capture is damaged), and the
    /// capture's warning, if any.
    fn run_point(
        &self,
        p: &Point,
        hash: Option<&InputHash>,
    ) -> Result<(Option<Row>, Option<String>)> {
        let overrides = Overrides {
            nat_ips: p.nat_ips,
            ports: p.ports,
            allocator: p.allocator,
            reuse: self.reuse,
            pickup: self.pickup,
        };
        let mut scenario: Scenario = load_scenario(self.scenario.as_deref(), &overrides)?;
        for s in &mut scenario.services {
            if let Some(i) = p.idle {
                s.timers.idle = Duration::from_secs(i);
            }
            if let Some(h) = p.fin_hold {
                s.timers.fin_hold = Duration::from_secs(h);
            }
        }
        scenario.validate().map_err(|problems| Error::Scenario {
            name: format!("the sweep point {}", cells(p).join(",")),
            problems,
        })?;
        let spec = RunSpec {
            pickup: self.pickup,
            stop: self.stop.as_ref(),
            ..RunSpec::new(&scenario)
        };
        let mut warning = None;
        let summary = match &self.input {
            Input::Capture(pcap) => {
                let mut reader = match hash {
                    Some(h) => h.open(pcap)?,
                    None => Reader::open(pcap)?,
                };
                let mut summary = run::run(&mut reader, &spec, NoTaps)?.0.summary;
                summary.input.truncated = reader.truncated();
                warning = reader.warning().map(str::to_owned);
                summary
            }
            Input::Workload { flags, .. } => {
                let mut specs = specs(&scenario, flags)?;
                if let Some(m) = p.load {
                    for (_, w, _) in &mut specs {
                        w.profile.arrivals = match w.profile.arrivals {
                            Arrivals::Constant { per_sec } => Arrivals::Constant {
                                per_sec: per_sec * m,
                            },
                            Arrivals::Poisson { per_sec } => Arrivals::Poisson {
                                per_sec: per_sec * m,
                            },
                        };
                    }
                }
                let mut source = Workloads::new(&scenario, specs)?;
                run::run(&mut source, &spec, NoTaps)?.0.summary
            }
        };
        let row = (!summary.interrupted).then(|| Row::of(p.clone(), &summary));
        Ok((row, warning))
    }

    /// Runs every point, `workers` at a time (each run is itself two threads), and gives the
    /// rows in the points' order. The first point runs alone first, so a bad setting is one
    /// clear error. Stopped early, it gives the points that ran to their end.
    pub fn run_all(&self, workers: usize) -> Result<Swept> {
        let points = &self.points();
        let stopped = || self.stop.as_ref().is_some_and(Stop::requested);
        let Some(first) = points.first() else {
            return Ok(Swept {
                rows: Vec::new(),
                interrupted: false,
                warning: None,
            });
        };
        let first = self.run_point(first, None)?;
        type Ran = Result<(Option<Row>, Option<String>)>;
        let results: Mutex<Vec<Option<Ran>>> =
            Mutex::new((0..points.len()).map(|_| None).collect());
        results.lock().expect("not poisoned")[0] = Some(Ok(first));
        let next = AtomicUsize::new(1);
        std::thread::scope(|scope| {
            for _ in 0..workers.clamp(1, points.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= points.len() || stopped() {
                            break;
                        }
                        let r = self.run_point(&points[i], None);
                        results.lock().expect("not poisoned")[i] = Some(r);
                    }
                });
            }
        });
        let mut rows = Vec::new();
        let mut interrupted = false;
        let mut warning = None;
        for r in results.into_inner().expect("not poisoned") {
            let (row, w) = r.transpose()?.unwrap_or_default();
            // Every point reads the same capture: one warning says it.
            warning = warning.or(w);
            match row {
                Some(row) => rows.push(row),
                // Cut short, or never started: the sweep was stopped.
                None => interrupted = true,
            }
        }
        Ok(Swept {
            rows,
            interrupted,
            warning,
        })
    }
}

/// The rows of a sweep from its points' results (as [`points::read`] gives them), in the
/// grid's order, and the plot's title; refused, naming the files, when a result is from
/// another sweep, a point is there twice or some are missing (see [`points::merge`]).
pub fn merge(files: Vec<(PathBuf, PointFile<Row>)>) -> Result<(Vec<Row>, String)> {
    let merged = points::merge(Command::Sweep, files)?;
    Ok((merged.results, title(&merged.input)))
}

/// The title of the sweep of the input named `input`.
fn title(input: &str) -> String {
    format!("sweep of {input}")
}

/// What a sweep writes into its directory, `sweep.csv` first: what
/// [`OutDir::clear`](crate::files::OutDir::clear) removes before a sweep or a merge writes
/// any.
pub const OUTPUTS: [&str; 4] = ["sweep.csv", "sweep.svg", "sweep.png", "report.html"];

/// Writes the plot (`sweep.svg`, `sweep.png`; none without a row), `report.html` (see
/// [`crate::html::sweep`], from the rows' JSON) and then `sweep.csv` into `out`: the CSV last,
/// once the others are whole, so that its presence means the directory is complete; a plot
/// that can't be drawn or a file that can't be written is an error naming it, and no CSV is
/// written. Returns the CSV and whether there is a plot.
pub fn write(
    out: &Path,
    title: &str,
    rows: &[Row],
    meta: &crate::html::RunMeta,
) -> Result<(String, bool)> {
    crate::files::create_dir(out)?;
    let plotted = !rows.is_empty();
    if plotted {
        plot(&out.join("sweep"), title, rows)?;
    }
    let doc = serde_json::to_value(rows).expect("rows serialize");
    crate::files::write_report(out, &crate::html::sweep(meta, title, &doc))?;
    let text = csv(rows);
    crate::files::write_file(&out.join("sweep.csv"), text.as_bytes())?;
    Ok((text, plotted))
}
