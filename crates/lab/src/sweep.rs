//! One input over a grid of settings, one run per point (`plsim sweep`): the grid, the runs
//! (in parallel, one per core), and what they give: one row per point, a CSV and a plot of the
//! SNAT failure rate and the peak port use against the settings.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plsim_control::Scenario;
use plsim_control::scenario::{Allocator, PortRange, ReuseScope};
use plsim_engine::NoTaps;
use plsim_pcap::Reader;
use plsim_traffic::workload::Arrivals;
use serde::{Deserialize, Serialize};

use crate::files::load_scenario;
use crate::fingerprint::{InputHash, scenario_text};
use crate::path::Overrides;
use crate::plot::{Line, Panel};
use crate::run::{self, RunSpec};
use crate::stop::Stop;
use crate::summary::Summary;
use crate::workload::{self, Workloads, specs};
use crate::{Error, Result};

/// The most points a grid may have.
pub const MAX_POINTS: usize = 10_000;

/// The values of one swept setting: `a,b,c`, or a range of integers `lo..hi` (inclusive), or
/// both (`1,4..6`).
#[derive(Clone, Debug, PartialEq)]
pub struct Values<T>(pub Vec<T>);

impl<T: FromStr> FromStr for Values<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<Values<T>, String> {
        let bad = || format!("`{s}` is not a list like 1,2,4 or a range like 1..8");
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once("..") {
                Some((a, b)) => {
                    let a: i64 = a.trim().parse().map_err(|_| bad())?;
                    let b: i64 = b
                        .trim()
                        .trim_start_matches('=')
                        .parse()
                        .map_err(|_| bad())?;
                    if b < a || b - a >= MAX_POINTS as i64 {
                        return Err(bad());
                    }
                    for v in a..=b {
                        out.push(v.to_string().parse().map_err(|_| bad())?);
                    }
                }
                None => out.push(part.parse().map_err(|_| bad())?),
            }
        }
        if out.is_empty() {
            return Err(bad());
        }
        Ok(Values(out))
    }
}

/// The settings swept: each empty list is a setting left as the scenario has it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grid {
    /// NAT IPs of each service.
    pub nat_ips: Vec<u8>,
    /// Port allocators.
    pub allocators: Vec<Allocator>,
    /// Port ranges.
    pub ports: Vec<PortRange>,
    /// Idle timeouts of established flows, in seconds.
    pub idle: Vec<u64>,
    /// Port holds after FINs, in seconds.
    pub fin_hold: Vec<u64>,
    /// Multipliers of the workload's arrival rate.
    pub load: Vec<f64>,
}

/// One point of a grid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// NAT IPs of each service.
    pub nat_ips: Option<u8>,
    /// The port allocator.
    pub allocator: Option<Allocator>,
    /// The port range.
    pub ports: Option<PortRange>,
    /// The idle timeout, seconds.
    pub idle: Option<u64>,
    /// The FIN hold, seconds.
    pub fin_hold: Option<u64>,
    /// The load multiplier.
    pub load: Option<f64>,
}

/// Every value of a list, or "as the scenario has it" once.
fn each<T: Clone>(v: &[T]) -> Vec<Option<T>> {
    if v.is_empty() {
        vec![None]
    } else {
        v.iter().cloned().map(Some).collect()
    }
}

impl Grid {
    /// Every point, or a usage error for a grid of more than [`MAX_POINTS`].
    pub fn checked_points(&self) -> Result<Vec<Point>> {
        let points = self.points();
        if points.len() > MAX_POINTS {
            return Err(Error::Usage(format!(
                "the grid has {} points; at most {MAX_POINTS}",
                points.len()
            )));
        }
        Ok(points)
    }

    /// Every point, the first setting varying slowest (nat_ips, allocator, ports, idle,
    /// fin_hold, load).
    pub fn points(&self) -> Vec<Point> {
        let mut points = Vec::new();
        for nat_ips in each(&self.nat_ips) {
            for allocator in each(&self.allocators) {
                for ports in each(&self.ports) {
                    for idle in each(&self.idle) {
                        for fin_hold in each(&self.fin_hold) {
                            for load in each(&self.load) {
                                points.push(Point {
                                    nat_ips,
                                    allocator,
                                    ports,
                                    idle,
                                    fin_hold,
                                    load,
                                });
                            }
                        }
                    }
                }
            }
        }
        points
    }
}

/// One run's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The settings.
    #[serde(flatten)]
    pub point: Point,
    /// Flows opened.
    pub flows: u64,
    /// SYNs refused for want of a port.
    pub snat_failures: u64,
    /// SNAT failures over connection attempts (flows opened plus failures).
    pub failure_rate: f64,
    /// The most ports in use at once on the busiest NAT IP.
    pub peak_ports_in_use: u64,
    /// The most ports in use or held at once on the busiest NAT IP: what runs out.
    pub peak_ports_busy: u64,
    /// The most flow records at once.
    pub peak_flows: u64,
    /// Packets of the input.
    pub packets: u64,
    /// Packets dropped.
    pub dropped: u64,
}

impl Row {
    /// The row of a point from its run's summary.
    pub fn of(point: Point, s: &Summary) -> Row {
        let attempts = s.flows.created + s.flows.snat_failures;
        let peak =
            |f: fn(&crate::summary::NatIp) -> u64| s.nat_ips.iter().map(f).max().unwrap_or(0);
        Row {
            point,
            flows: s.flows.created,
            snat_failures: s.flows.snat_failures,
            failure_rate: if attempts == 0 {
                0.0
            } else {
                s.flows.snat_failures as f64 / attempts as f64
            },
            peak_ports_in_use: peak(|n| n.ports_in_use_peak),
            peak_ports_busy: peak(|n| n.ports_busy_peak),
            peak_flows: s.flows.active_peak,
            packets: s.input.packets,
            dropped: s.packets.dropped.total(),
        }
    }
}

/// What every point of a sweep runs: its input, its scenario and the settings it keeps.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// A capture, or (`None`) the scenario's synthetic workload.
    pub capture: Option<PathBuf>,
    /// The scenario file; the built-in scenario without it.
    pub scenario: Option<PathBuf>,
    /// The reuse scope of every run.
    pub reuse: Option<ReuseScope>,
    /// Let mid-stream packets open flows.
    pub pickup: bool,
    /// The workload flags over the scenario's workload.
    pub workload: workload::Overrides,
    /// Stop early when this is requested: no further point starts, and a point cut short is
    /// left out.
    pub stop: Option<Stop>,
}

/// What [`Sweep::run_all`] gives back.
#[derive(Clone, Debug)]
pub struct Swept {
    /// The points that ran to their end, in the points' order.
    pub rows: Vec<Row>,
    /// Whether the sweep was stopped early (then some points are missing).
    pub interrupted: bool,
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

/// One point's result as `plsim sweep --point K` writes it (`point-K.json`) and `plsim sweep
/// merge` reads it back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// The fingerprint of the sweep: its grid, scenario, flags, plsim's version and its input
    /// (the capture's bytes as read). Every point of one sweep carries the same.
    pub sweep: String,
    /// The point's index in the grid.
    pub index: usize,
    /// How many points the grid has.
    pub points: usize,
    /// The plot's title.
    pub title: String,
    /// The result.
    pub row: Row,
}

/// The name of point `index`'s result in its directory.
pub fn point_file(index: usize) -> String {
    format!("point-{index}.json")
}

impl Sweep {
    /// Runs one point; `None` when it was stopped before its end.
    pub fn run_point(&self, p: &Point) -> Result<Option<Row>> {
        self.run_hashed(p, None)
    }

    /// Runs point `index` of `points` alone and gives its result with the sweep's fingerprint;
    /// `None` when it was stopped before its end.
    pub fn run_one(
        &self,
        points: &[Point],
        index: usize,
        title: &str,
    ) -> Result<Option<PointResult>> {
        let Some(p) = points.get(index) else {
            return Err(Error::Usage(format!(
                "--point {index}: the grid has {} points, 0 to {}",
                points.len(),
                points.len().saturating_sub(1)
            )));
        };
        let input = InputHash::default();
        let Some(row) = self.run_hashed(p, Some(&input))? else {
            return Ok(None);
        };
        Ok(Some(PointResult {
            sweep: input.with(&self.describe(points)?),
            index,
            points: points.len(),
            title: title.to_owned(),
            row,
        }))
    }

    /// Everything a point's result depends on but its input's bytes, in words.
    fn describe(&self, points: &[Point]) -> Result<String> {
        let scenario = scenario_text(self.scenario.as_deref())?;
        Ok(format!(
            "plsim {}\ngrid {}\nscenario {scenario}\nreuse {:?}\npickup {}\nworkload {:?}\ncapture {}",
            env!("CARGO_PKG_VERSION"),
            serde_json::to_string(points).expect("points serialize"),
            self.reuse,
            self.pickup,
            self.workload,
            self.capture.is_some(),
        ))
    }

    /// Runs one point, reading a capture through `hash` when given.
    fn run_hashed(&self, p: &Point, hash: Option<&InputHash>) -> Result<Option<Row>> {
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
        let summary = match &self.capture {
            Some(pcap) => {
                if p.load.is_some() {
                    return Err(Error::Usage(
                        "--load multiplies a workload's arrival rate: it does not apply to a capture"
                            .into(),
                    ));
                }
                let mut reader = match hash {
                    Some(h) => h.open(pcap)?,
                    None => Reader::open(pcap)?,
                };
                run::run(&mut reader, &spec, NoTaps)?.0.summary
            }
            None => {
                let mut specs = specs(&scenario, &self.workload)?;
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
        Ok((!summary.interrupted).then(|| Row::of(p.clone(), &summary)))
    }

    /// Runs every point, `workers` at a time (each run is itself two threads), and gives the
    /// rows in the points' order. The first point runs alone first, so a bad setting is one
    /// clear error. Stopped early, it gives the points that ran to their end.
    pub fn run_all(&self, points: &[Point], workers: usize) -> Result<Swept> {
        if points.len() > MAX_POINTS {
            return Err(Error::Usage(format!(
                "the grid has {} points; at most {MAX_POINTS}",
                points.len()
            )));
        }
        let stopped = || self.stop.as_ref().is_some_and(Stop::requested);
        let Some(first) = points.first() else {
            return Ok(Swept {
                rows: Vec::new(),
                interrupted: false,
            });
        };
        let first = self.run_point(first)?;
        let results: Mutex<Vec<Option<Result<Option<Row>>>>> =
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
                        let r = self.run_point(&points[i]);
                        results.lock().expect("not poisoned")[i] = Some(r);
                    }
                });
            }
        });
        let mut rows = Vec::new();
        let mut interrupted = false;
        for r in results.into_inner().expect("not poisoned") {
            match r.transpose()? {
                Some(Some(row)) => rows.push(row),
                // Cut short, or never started: the sweep was stopped.
                Some(None) | None => interrupted = true,
            }
        }
        Ok(Swept { rows, interrupted })
    }
}

/// The CSV's setting columns.
const COLUMNS: [&str; 6] = ["nat_ips", "allocator", "ports", "idle", "fin_hold", "load"];

fn cells(p: &Point) -> [String; 6] {
    fn o<T: ToString>(v: &Option<T>) -> String {
        v.as_ref().map_or(String::new(), ToString::to_string)
    }
    [
        o(&p.nat_ips),
        o(&p.allocator),
        o(&p.ports),
        o(&p.idle),
        o(&p.fin_hold),
        o(&p.load),
    ]
}

/// The rows of a sweep from its points' results, in the grid's order, and the plot's title;
/// refused, naming the files, when a result is from another sweep, a point is there twice or
/// some are missing.
pub fn merge(results: &[(PathBuf, PointResult)]) -> Result<(Vec<Row>, String)> {
    let Some((first_file, first)) = results.first() else {
        return Err(Error::Input(
            "no point results to merge (point-K.json)".into(),
        ));
    };
    let mut by_index: Vec<Option<&Path>> = vec![None; first.points];
    for (file, r) in results {
        if r.title != first.title {
            return Err(Error::Input(format!(
                "{} and {} name their input differently (`{}`, `{}`): give every point the \
                 capture the same way (a file of the same name, or standard input)",
                file.display(),
                first_file.display(),
                r.title,
                first.title
            )));
        }
        if r.sweep != first.sweep || r.points != first.points {
            return Err(Error::Input(format!(
                "{} is from another sweep than {} (fingerprint {} against {})",
                file.display(),
                first_file.display(),
                r.sweep,
                first.sweep
            )));
        }
        let Some(slot) = by_index.get_mut(r.index) else {
            return Err(Error::Input(format!(
                "{}: point {} of a grid of {}",
                file.display(),
                r.index,
                r.points
            )));
        };
        if let Some(before) = slot {
            return Err(Error::Input(format!(
                "point {} is there twice: {} and {}",
                r.index,
                before.display(),
                file.display()
            )));
        }
        *slot = Some(file);
    }
    let missing: Vec<usize> = (0..first.points)
        .filter(|&i| by_index[i].is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "{} of the {} points are missing: {}",
            missing.len(),
            first.points,
            ranges(&missing)
        )));
    }
    let mut rows: Vec<&PointResult> = results.iter().map(|(_, r)| r).collect();
    rows.sort_by_key(|r| r.index);
    Ok((
        rows.into_iter().map(|r| r.row.clone()).collect(),
        first.title.clone(),
    ))
}

/// Sorted indices as ranges: `0-3, 7, 9-10`.
fn ranges(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// The rows as `sweep.csv`: the settings (empty where not swept), then the results.
/// The title of a sweep's CSV and plot: the capture's file name (not its path: the nodes of a
/// cluster may mount it in different places), standard input, or the synthetic workload.
pub fn title(capture: Option<&Path>) -> String {
    match capture {
        Some(p) => format!("sweep of {}", crate::plan::input_name(p)),
        None => "sweep of the synthetic workload".to_string(),
    }
}

/// `--list`: a JSON line per point, its index and its settings.
pub fn list(points: &[Point]) -> String {
    let mut out = String::new();
    for (index, p) in points.iter().enumerate() {
        let mut line = serde_json::to_value(p).expect("a point serializes");
        line["index"] = index.into();
        out += &format!("{line}\n");
    }
    out
}

/// Writes `sweep.csv` and the plot (`sweep.svg`, `sweep.png`) into `out`; returns the CSV and,
/// when the plot could not be drawn, why.
pub fn write(out: &Path, title: &str, rows: &[Row]) -> Result<(String, Option<String>)> {
    crate::files::create_dir(out)?;
    let text = csv(rows);
    crate::files::write_file(&out.join("sweep.csv"), text.as_bytes())?;
    let plotted = plot(&out.join("sweep"), title, rows);
    Ok((text, plotted.err().map(|e| format!("no sweep plot: {e}"))))
}

/// The CSV of a sweep's rows.
pub fn csv(rows: &[Row]) -> String {
    let mut s = COLUMNS.join(",")
        + ",flows,snat_failures,failure_rate,peak_ports_in_use,peak_ports_busy,peak_flows,packets,dropped\n";
    for r in rows {
        s += &format!(
            "{},{},{},{:.6},{},{},{},{},{}\n",
            cells(&r.point).join(","),
            r.flows,
            r.snat_failures,
            r.failure_rate,
            r.peak_ports_in_use,
            r.peak_ports_busy,
            r.peak_flows,
            r.packets,
            r.dropped
        );
    }
    s
}

/// The plot of a sweep (`stem.svg`, `stem.png`): x is the first setting that varies (its
/// value, or its index when not a number), one line per combination of the other settings;
/// the SNAT failure rate above, the peak of busy ports below.
pub fn plot(stem: &Path, title: &str, rows: &[Row]) -> Result<(), String> {
    let cols: Vec<[String; 6]> = rows.iter().map(|r| cells(&r.point)).collect();
    let Some(first) = cols.first() else {
        return Ok(());
    };
    let varies: Vec<usize> = (0..6)
        .filter(|&c| cols.iter().any(|r| r[c] != first[c]))
        .collect();
    let x_col = varies.first().copied().unwrap_or(0);
    let mut x_values: Vec<String> = Vec::new();
    for r in &cols {
        if !x_values.contains(&r[x_col]) {
            x_values.push(r[x_col].clone());
        }
    }
    let numeric = x_values.iter().all(|v| v.parse::<f64>().is_ok());
    let x_of = |v: &str| {
        if numeric {
            v.parse::<f64>().unwrap_or(0.0)
        } else {
            x_values.iter().position(|x| x == v).unwrap_or(0) as f64
        }
    };
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, r) in cols.iter().enumerate() {
        let key: Vec<String> = varies
            .iter()
            .skip(1)
            .map(|&c| format!("{}={}", COLUMNS[c], r[c]))
            .collect();
        let key = key.join(" ");
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let lines = |f: &dyn Fn(&Row) -> f64| -> Vec<Line> {
        groups
            .iter()
            .map(|(k, idx)| Line {
                label: k.clone(),
                points: idx
                    .iter()
                    .map(|&i| (x_of(&cols[i][x_col]), f(&rows[i])))
                    .collect(),
            })
            .collect()
    };
    let x_label = if numeric {
        COLUMNS[x_col].replace('_', " ")
    } else {
        format!(
            "{} ({})",
            COLUMNS[x_col],
            x_values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{i}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let panels = [
        Panel {
            y_label: "SNAT failure rate".into(),
            lines: lines(&|r| r.failure_rate),
        },
        Panel {
            y_label: "peak ports busy: in use or held (busiest NAT IP)".into(),
            lines: lines(&|r| r.peak_ports_busy as f64),
        },
    ];
    crate::plot::write(stem, title, &x_label, &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_lists_and_integer_ranges() {
        assert_eq!("1..4".parse::<Values<u8>>().unwrap().0, [1, 2, 3, 4]);
        assert_eq!(
            "1,3..=5, 8".parse::<Values<u8>>().unwrap().0,
            [1, 3, 4, 5, 8]
        );
        assert_eq!(
            "sequential,random:7,block:64"
                .parse::<Values<Allocator>>()
                .unwrap()
                .0,
            [
                Allocator::Sequential,
                Allocator::Random { seed: 7 },
                Allocator::Block(64)
            ]
        );
        assert_eq!(
            "1024-2047,1024-65535"
                .parse::<Values<PortRange>>()
                .unwrap()
                .0,
            [PortRange::new(1024, 2047), PortRange::new(1024, 65535)]
        );
        assert_eq!("0.5,2".parse::<Values<f64>>().unwrap().0, [0.5, 2.0]);
        for bad in ["", ",", "1..x", "5..1", "300", "magic", "1..100000"] {
            assert!(bad.parse::<Values<u8>>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_grid_is_every_combination_first_setting_slowest() {
        let g = Grid {
            nat_ips: vec![1, 2],
            load: vec![0.5, 1.0, 2.0],
            ..Grid::default()
        };
        let p = g.points();
        assert_eq!(p.len(), 6);
        assert_eq!((p[0].nat_ips, p[0].load), (Some(1), Some(0.5)));
        assert_eq!((p[2].nat_ips, p[2].load), (Some(1), Some(2.0)));
        assert_eq!((p[3].nat_ips, p[3].load), (Some(2), Some(0.5)));
        assert!(p.iter().all(|p| p.allocator.is_none() && p.idle.is_none()));
        assert_eq!(Grid::default().points(), vec![Point::default()]);
    }

    #[test]
    fn rows_come_from_summaries_and_make_the_csv() {
        let scenario = Scenario::builtin();
        let frames = plsim_traffic::captures::syn_burst(50);
        let mut source = crate::replay::FrameSource::new(&frames, plsim_wire::LinkType::Ethernet);
        let mut tight = scenario.clone();
        tight.services[0].nat_ips.truncate(1);
        tight.services[0].ports = PortRange::new(1024, 1063);
        tight.services[0].reuse = ReuseScope::PerIp;
        let (out, _) = run::run(&mut source, &RunSpec::new(&tight), NoTaps).unwrap();
        let point = Point {
            nat_ips: Some(1),
            ports: Some(PortRange::new(1024, 1063)),
            allocator: Some(Allocator::Random { seed: 3 }),
            ..Point::default()
        };
        let row = Row::of(point, &out.summary);
        assert_eq!((row.flows, row.snat_failures), (40, 10));
        assert!((row.failure_rate - 0.2).abs() < 1e-12);
        assert_eq!((row.peak_ports_in_use, row.peak_ports_busy), (40, 40));
        assert_eq!((row.packets, row.dropped), (50, 10));
        assert_eq!(
            csv(&[row]),
            "nat_ips,allocator,ports,idle,fin_hold,load,flows,snat_failures,failure_rate,\
             peak_ports_in_use,peak_ports_busy,peak_flows,packets,dropped\n\
             1,random:3,1024-1063,,,,40,10,0.200000,40,40,40,50,10\n"
        );
    }
}
