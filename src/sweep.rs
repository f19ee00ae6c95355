//! `plsim sweep`: one input over a grid of settings, one run per point, in parallel across cores;
//! a CSV of the results and a plot of SNAT failure rate and peak port use against the setting.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Args;
use plsim_control::Scenario;
use plsim_engine::NoTaps;
use plsim_pcap::Reader;
use plsim_pipeline::path::Overrides;
use plsim_pipeline::replay::WorkloadSource;
use plsim_pipeline::sim::{self, RunSpec};
use plsim_pipeline::summary::Summary;
use plsim_traffic::workload::{Arrivals, Workload};
use serde::Serialize;

use crate::plot::{Line, Panel};
use crate::run::{WorkloadFlags, load_scenario, workload_of, write_file};
use crate::{Failure, WorkloadArgs};

#[derive(Args)]
pub struct SweepArgs {
    /// A capture to sweep; without it, the scenario's synthetic workload.
    pcap: Option<PathBuf>,
    /// The scenario file (TOML); the built-in scenario without it.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// NAT IP counts: a list (1,2,4) or a range (1..8).
    #[arg(long, value_name = "LIST")]
    nat_ips: Option<String>,
    /// Port allocators, e.g. sequential,random,block:64.
    #[arg(long, value_name = "LIST")]
    allocators: Option<String>,
    /// Port ranges, e.g. 1024-2047,1024-65535.
    #[arg(long, value_name = "LIST")]
    ports: Option<String>,
    /// Established idle timeouts in seconds, e.g. 240,600.
    #[arg(long, value_name = "LIST")]
    idle: Option<String>,
    /// Port holds after a FIN in seconds, e.g. 0,60,240.
    #[arg(long, value_name = "LIST")]
    fin_hold: Option<String>,
    /// Load multipliers of the workload's arrival rate, e.g. 0.5,1,2 (workloads only).
    #[arg(long, value_name = "LIST")]
    load: Option<String>,
    /// The port reuse scope of every run: per-backend or per-ip.
    #[arg(long, value_name = "SCOPE")]
    reuse: Option<String>,
    /// Let packets of a flow whose SYN is not in the capture open it.
    #[arg(long)]
    pickup: bool,
    /// Write sweep.csv, sweep.svg and sweep.png into DIR.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// One point of the grid.
#[derive(Clone, Debug, Serialize)]
struct Point {
    nat_ips: Option<u8>,
    allocator: Option<String>,
    ports: Option<String>,
    idle: Option<u64>,
    fin_hold: Option<u64>,
    load: Option<f64>,
}

/// One run's result.
#[derive(Clone, Debug, Serialize)]
struct Row {
    #[serde(flatten)]
    point: Point,
    flows: u64,
    snat_failures: u64,
    /// SNAT failures over connection attempts (flows opened plus failures).
    failure_rate: f64,
    /// The most ports in use at once on the busiest NAT IP.
    peak_ports_in_use: u64,
    /// The most ports in use or held at once on the busiest NAT IP: what runs out.
    peak_ports_busy: u64,
    peak_flows: u64,
    packets: u64,
    dropped: u64,
}

fn list<T: std::str::FromStr>(flag: &str, s: &Option<String>) -> Result<Vec<Option<T>>, Failure> {
    let Some(s) = s else { return Ok(vec![None]) };
    let bad = || {
        Failure::Usage(format!(
            "{flag} {s}: expected a list like 1,2,4 or a range like 1..8"
        ))
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once("..") {
            let (a, b): (i64, i64) = (
                a.parse().map_err(|_| bad())?,
                b.trim_start_matches('=').parse().map_err(|_| bad())?,
            );
            for v in a..=b {
                out.push(Some(v.to_string().parse().map_err(|_| bad())?));
            }
        } else {
            out.push(Some(part.parse().map_err(|_| bad())?));
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn grid(a: &SweepArgs) -> Result<Vec<Point>, Failure> {
    let mut points = Vec::new();
    for nat_ips in list::<u8>("--nat-ips", &a.nat_ips)? {
        for allocator in list::<String>("--allocators", &a.allocators)? {
            for ports in list::<String>("--ports", &a.ports)? {
                for idle in list::<u64>("--idle", &a.idle)? {
                    for fin_hold in list::<u64>("--fin-hold", &a.fin_hold)? {
                        for load in list::<f64>("--load", &a.load)? {
                            points.push(Point {
                                nat_ips,
                                allocator: allocator.clone(),
                                ports: ports.clone(),
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
    Ok(points)
}

fn run_point(a: &SweepArgs, p: &Point) -> Result<Summary, Failure> {
    let overrides = Overrides {
        nat_ips: p.nat_ips,
        ports: p.ports.clone(),
        allocator: p.allocator.clone(),
        reuse: a.reuse.clone(),
        pickup: a.pickup,
    };
    let mut scenario: Scenario = load_scenario(a.scenario.as_deref(), &overrides)?;
    for s in &mut scenario.services {
        if let Some(i) = p.idle {
            s.timers.idle = i;
        }
        if let Some(h) = p.fin_hold {
            s.timers.fin_hold = h;
        }
    }
    scenario
        .validate()
        .map_err(|e| Failure::Usage(format!("{p:?}: {}", e.to_string().replace('\n', "; "))))?;
    let spec = RunSpec {
        pickup: a.pickup,
        ..RunSpec::new(&scenario)
    };
    let outcome = match &a.pcap {
        Some(pcap) => {
            let mut reader = Reader::open(pcap).map_err(|e| Failure::Input(e.to_string()))?;
            sim::run(&mut reader, &spec, NoTaps)
        }
        None => {
            let mut w = workload_of(&scenario, &WorkloadFlags::from(a.workload.clone()))?;
            if let Some(m) = p.load {
                w.arrivals = match w.arrivals {
                    Arrivals::Constant { per_sec } => Arrivals::Constant {
                        per_sec: per_sec * m,
                    },
                    Arrivals::Poisson { per_sec } => Arrivals::Poisson {
                        per_sec: per_sec * m,
                    },
                };
            }
            let mut source =
                WorkloadSource::new(Workload::new(&w).map_err(|e| Failure::Usage(e.to_string()))?);
            sim::run(&mut source, &spec, NoTaps)
        }
    };
    Ok(outcome
        .map_err(|e| Failure::Input(e.to_string()))?
        .0
        .summary)
}

/// `plsim sweep`.
pub fn run(a: SweepArgs) -> Result<(), Failure> {
    if a.pcap.is_some() && a.load.is_some() {
        return Err(Failure::Usage(
            "--load multiplies a workload's arrival rate: it does not apply to a capture".into(),
        ));
    }
    let points = grid(&a)?;
    if points.len() > 10_000 {
        return Err(Failure::Usage(format!(
            "the grid has {} points; at most 10,000",
            points.len()
        )));
    }
    // Check the first point before going parallel, so a bad setting is one clear error.
    let first = run_point(&a, &points[0])?;
    let results: Mutex<Vec<Option<Result<Summary, Failure>>>> =
        Mutex::new((0..points.len()).map(|_| None).collect());
    results.lock().expect("not poisoned")[0] = Some(Ok(first));
    let next = std::sync::atomic::AtomicUsize::new(1);
    // Each run is itself a pipeline of threads: one run per core at a time.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(points.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= points.len() {
                        break;
                    }
                    let r = run_point(&a, &points[i]);
                    results.lock().expect("not poisoned")[i] = Some(r);
                }
            });
        }
    });
    let mut rows = Vec::new();
    for (p, r) in points
        .iter()
        .zip(results.into_inner().expect("not poisoned"))
    {
        let s = r.expect("every point ran")?;
        let attempts = s.flows.created + s.flows.snat_failures;
        rows.push(Row {
            point: p.clone(),
            flows: s.flows.created,
            snat_failures: s.flows.snat_failures,
            failure_rate: if attempts == 0 {
                0.0
            } else {
                s.flows.snat_failures as f64 / attempts as f64
            },
            peak_ports_in_use: s
                .nat_ips
                .iter()
                .map(|n| n.ports_in_use_peak)
                .max()
                .unwrap_or(0),
            peak_ports_busy: s
                .nat_ips
                .iter()
                .map(|n| n.ports_busy_peak)
                .max()
                .unwrap_or(0),
            peak_flows: s.flows.active_peak,
            packets: s.input.packets,
            dropped: s.packets.dropped.total(),
        });
    }
    std::fs::create_dir_all(&a.out)
        .map_err(|e| Failure::Input(format!("{}: {e}", a.out.display())))?;
    write_file(&a.out.join("sweep.csv"), csv(&rows).as_bytes())?;
    let title = match &a.pcap {
        Some(p) => format!("sweep of {}", p.display()),
        None => "sweep of the synthetic workload".to_string(),
    };
    if let Err(e) = plot(&a.out.join("sweep"), &title, &rows) {
        eprintln!("plsim: warning: no sweep plot: {e}");
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
    } else {
        print!("{}", csv(&rows));
        eprintln!(
            "plsim: wrote {} and the plot",
            a.out.join("sweep.csv").display()
        );
    }
    Ok(())
}

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

fn csv(rows: &[Row]) -> String {
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

/// x: the first setting that varies (numeric, or the index of the value); one line per
/// combination of the other settings.
fn plot(stem: &Path, title: &str, rows: &[Row]) -> Result<(), String> {
    let cols: Vec<[String; 6]> = rows.iter().map(|r| cells(&r.point)).collect();
    let varies: Vec<usize> = (0..6)
        .filter(|&c| cols.iter().any(|r| r[c] != cols[0][c]))
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
