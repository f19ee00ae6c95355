//! The fewest NAT IPs with which a capture loses no flow to port exhaustion (`plsim plan`): a
//! bisection over replays, since fewer NAT IPs never lose fewer flows; and beside it, the
//! theory's loss at every count for what the capture offered (see [`crate::theory`]), which the
//! replay at the most NAT IPs measures as it reads the capture.

use std::path::{Path, PathBuf};

use plsim_control::Scenario;
use plsim_control::scenario::{ReuseScope, Timers};
use plsim_engine::NoTaps;
use serde::{Deserialize, Serialize};

use crate::points::fingerprint::{InputHash, fingerprint};
use crate::points::{self, Command, PointFile, Ran};
use crate::replay::PacketSource;
use crate::run::{self, RunSpec};
use crate::summary::Summary;
use crate::theory::beside::{Beside, Offered, Replayed};
use crate::theory::measure::{Census, Observed};
use crate::{Error, Result};

/// What `plsim plan` found.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Plan {
    /// The fewest NAT IPs with which no flow is lost to port exhaustion; `None` when even the
    /// most the scenario has are not enough.
    pub nat_ips_needed: Option<usize>,
    /// The NAT IPs the scenario offers (the search goes up to these).
    pub nat_ips_available: usize,
    /// The ports of each NAT IP's range.
    pub ports_per_nat_ip: u32,
    /// The port reuse scope.
    pub reuse: ReuseScope,
    /// The flow timers, in whole seconds.
    pub timers: Timers,
    /// At the answer (or at the most NAT IPs when none is enough): the most flow records at
    /// once.
    pub peak_concurrent_flows: u64,
    /// The most ports in use or held at once on the busiest NAT IP.
    pub peak_ports_per_nat_ip: u64,
    /// The ports that NAT IP offers (once per backend with `per-backend` reuse).
    pub ports_total_per_nat_ip: u64,
    /// The share of the busiest NAT IP's ports still free at the peak.
    pub headroom: f64,
    /// SNAT failures at the answer.
    pub snat_failures: u64,
    /// Each replay the search ran to its end, by NAT IP count.
    pub runs: Vec<PlanRun>,
    /// The search was stopped early (Ctrl-C): `nat_ips_needed` is unknown, and
    /// `nat_ips_enough` is the fewest NAT IPs known to lose no flow so far, if any.
    pub interrupted: bool,
    /// The fewest NAT IPs a replay showed to lose no flow (`nat_ips_needed` once the search
    /// is over).
    pub nat_ips_enough: Option<usize>,
    /// The capture was cut short or damaged after its first packet, and its replays read it
    /// up to there (left out when not).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The capture's reader's warning, when `truncated`, as `replay` gives it.
    #[serde(skip)]
    pub warning: Option<String>,
    /// Erlang B at every count for what the capture offered, beside the replays' loss (none
    /// when the replay at the most NAT IPs did not run to its end, or the capture opened no
    /// flow over any time).
    pub theory: Option<Beside>,
}

impl Plan {
    /// Sizes the theory for a loss of at most `loss` (the default is
    /// [`DEFAULT_LOSS`](crate::theory::DEFAULT_LOSS)).
    pub fn size_for(&mut self, loss: f64) {
        if let Some(t) = &mut self.theory {
            t.size_for(loss);
        }
    }

    /// Ok when every replay ran to its end; the interrupt, saying how many did, when not.
    pub fn check_whole(&self) -> Result<()> {
        if !self.interrupted {
            return Ok(());
        }
        Err(Error::Interrupted(format!(
            "{} replays ran to their end",
            self.runs.len()
        )))
    }
}

/// One replay of the search.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanRun {
    /// NAT IPs of each service.
    pub nat_ips: usize,
    /// Flows opened.
    pub flows: u64,
    /// SYNs refused for want of a port.
    pub snat_failures: u64,
    /// Of them, refused while another NAT IP had a free port: the allocator gave up first.
    #[serde(default)]
    pub snat_failures_gave_up: u64,
}

/// What one replay, with one count of NAT IPs, found: enough to answer when it is the answer.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanPoint {
    /// The replay.
    pub run: PlanRun,
    /// The most flow records at once.
    pub peak_concurrent_flows: u64,
    /// The most ports in use or held at once on the busiest NAT IP.
    pub peak_ports_per_nat_ip: u64,
    /// The ports that NAT IP offers.
    pub ports_total_per_nat_ip: u64,
    /// The capture was cut short or damaged after its first packet, and read up to there
    /// (left out when not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl PlanPoint {
    fn of(n: usize, s: &Summary, truncated: bool) -> PlanPoint {
        // Held ports (after a FIN or RST) are as unavailable as ports in use.
        let busiest = s.nat_ips.iter().max_by_key(|n| n.ports_busy_peak);
        PlanPoint {
            run: PlanRun {
                nat_ips: n,
                flows: s.flows.created,
                snat_failures: s.flows.snat_failures,
                snat_failures_gave_up: s.flows.snat_failures_gave_up,
            },
            peak_concurrent_flows: s.flows.active_peak,
            peak_ports_per_nat_ip: busiest.map_or(0, |n| n.ports_busy_peak),
            ports_total_per_nat_ip: busiest.map_or(0, |n| n.ports_total),
            truncated,
        }
    }
}

/// The service whose NAT IPs are planned: the scenario's first.
fn planned(base: &Scenario) -> Result<&plsim_control::scenario::Service> {
    base.services
        .first()
        .ok_or_else(|| Error::Input("the scenario has no service".into()))
}

/// What one replay of a plan gave.
pub struct Replay {
    /// What it found (`None` when stopped before its end; marked `truncated` when the capture
    /// is damaged).
    pub point: Option<PlanPoint>,
    /// With `measure`: what the capture offered (`None` too when it opened no flow over any
    /// time).
    pub offered: Option<Offered>,
    /// The capture's warning, if any (see [`PacketSource::warning`]).
    pub warning: Option<String>,
}

/// Replays the capture `open` gives with `n` NAT IPs for every service; with `measure`, a
/// [`Census`] of the planned service's timers sees its packets on the way.
pub fn run_point<S: PacketSource>(
    base: &Scenario,
    pickup: bool,
    stop: Option<&crate::stop::Stop>,
    n: usize,
    measure: bool,
    open: impl FnOnce() -> Result<S>,
) -> Result<Replay> {
    let mut s = base.clone();
    for svc in &mut s.services {
        svc.nat_ips.truncate(n);
    }
    let spec = RunSpec {
        pickup,
        stop,
        ..RunSpec::new(&s)
    };
    let service = planned(base)?;
    let mut census = Census::new(service.timers, pickup);
    let mut source = Observed::new(open()?, &mut census);
    let (out, _) = if measure {
        run::run(&mut source, &spec, NoTaps)?
    } else {
        run::run(source.inner_mut(), &spec, NoTaps)?
    };
    let warning = source.warning().map(str::to_owned);
    let summary = &out.summary;
    let point = (!summary.interrupted).then(|| PlanPoint::of(n, summary, warning.is_some()));
    let offered = (measure && point.is_some())
        .then(|| Offered::of(summary, census.finish(), service.reuse, service.allocator))
        .flatten();
    Ok(Replay {
        point,
        offered,
        warning,
    })
}

/// Plans the NAT IPs of the first service of `base` for the capture `open` reads (it is
/// called once per replay). Every service gets the same number of NAT IPs in each replay.
/// When `stop` is requested the search ends with what the replays run to their end showed.
pub fn plan<S: PacketSource>(
    base: &Scenario,
    pickup: bool,
    stop: Option<&crate::stop::Stop>,
    mut open: impl FnMut() -> Result<S>,
) -> Result<Plan> {
    let available = planned(base)?.nat_ips.len();
    let mut runs: Vec<PlanRun> = Vec::new();
    // Every replay reads the same capture: its first warning says what they all found.
    let mut warning: Option<String> = None;
    let mut offered = None;
    // The first replay, at the most NAT IPs, measures what the capture offers.
    let mut run_with = |n: usize| -> Result<Option<PlanPoint>> {
        let r = run_point(base, pickup, stop, n, n == available, &mut open)?;
        runs.extend(r.point.map(|p| p.run));
        warning = warning.take().or(r.warning);
        offered = offered.take().or(r.offered);
        Ok(r.point)
    };
    let mut interrupted = false;
    let (needed, enough, at) = match run_with(available)? {
        None => {
            interrupted = true;
            (None, None, None)
        }
        Some(top) if top.run.snat_failures > 0 => (None, None, Some(top)),
        Some(top) => {
            let (mut lo, mut hi, mut best) = (1usize, available, top);
            while lo < hi {
                let mid = (lo + hi) / 2;
                let Some(p) = run_with(mid)? else {
                    interrupted = true;
                    break;
                };
                if p.run.snat_failures == 0 {
                    hi = mid;
                    best = p;
                } else {
                    lo = mid + 1;
                }
            }
            ((!interrupted).then_some(lo), Some(hi), Some(best))
        }
    };
    // The bisection never runs a count twice.
    runs.sort_by_key(|r| r.nat_ips);
    let mut plan = assemble(base, needed, enough, at, runs, interrupted, offered);
    plan.truncated = warning.is_some();
    plan.warning = warning;
    Ok(plan)
}

/// The plan from what the replays found.
fn assemble(
    base: &Scenario,
    needed: Option<usize>,
    enough: Option<usize>,
    at: Option<PlanPoint>,
    runs: Vec<PlanRun>,
    interrupted: bool,
    offered: Option<Offered>,
) -> Plan {
    let service = planned(base).expect("checked before any replay");
    let replays: Vec<Replayed> = runs
        .iter()
        .map(|r| (r.nat_ips, r.flows, r.snat_failures, r.snat_failures_gave_up))
        .collect();
    let theory = offered.map(|o| {
        Beside::new(
            o,
            u64::from(service.ports.len()),
            service.nat_ips.len(),
            &replays,
            crate::theory::DEFAULT_LOSS,
            service.allocator,
        )
    });
    let ports = service.ports.len();
    let (peak, total, flows, failures) = match at {
        Some(a) => (
            a.peak_ports_per_nat_ip,
            a.ports_total_per_nat_ip.max(u64::from(ports)),
            a.peak_concurrent_flows,
            a.run.snat_failures,
        ),
        // Stopped in the first replay: nothing is known.
        None => (0, 0, 0, 0),
    };
    Plan {
        nat_ips_needed: needed,
        nat_ips_available: service.nat_ips.len(),
        ports_per_nat_ip: ports,
        reuse: service.reuse,
        timers: service.timers,
        peak_concurrent_flows: flows,
        peak_ports_per_nat_ip: peak,
        ports_total_per_nat_ip: total,
        headroom: if total == 0 {
            0.0
        } else {
            1.0 - peak as f64 / total as f64
        },
        snat_failures: failures,
        runs,
        interrupted,
        nat_ips_enough: enough,
        // Said by the callers, who know the capture.
        truncated: false,
        warning: None,
        theory,
    }
}

/// One count's result as `plsim plan --point K` writes it (in a [`PointFile`],
/// `plan-point-K.json`, K NAT IPs less one) and `plsim plan merge` reads it back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PointResult {
    /// The scenario as the replays ran it (TOML; NAT IP counts aside): the merge answers
    /// from it.
    pub scenario: String,
    /// The replay.
    pub point: PlanPoint,
    /// At the most NAT IPs: what the capture offered (see [`Offered`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<Offered>,
}

/// Runs point `index` of a plan alone (`index + 1` NAT IPs) on the capture `pcap` (a file or
/// standard input) and gives its result with the plan's fingerprint (none when stopped), and
/// what was wrong with the capture.
pub fn run_one(
    base: &Scenario,
    pickup: bool,
    stop: Option<&crate::stop::Stop>,
    index: usize,
    pcap: &Path,
) -> Result<Ran<PointResult>> {
    let available = planned(base)?.nat_ips.len();
    points::check_index(Command::Plan, index, available)?;
    let hash = InputHash::default();
    let measure = index + 1 == available;
    let Replay {
        point,
        offered,
        warning,
    } = run_point(base, pickup, stop, index + 1, measure, || hash.open(pcap))?;
    let Some(point) = point else {
        return Ok(Ran {
            result: None,
            warning,
        });
    };
    let scenario = base.to_toml();
    let settings = Settings {
        scenario: &scenario,
        pickup,
    };
    Ok(Ran {
        result: Some(PointFile {
            command: Command::Plan,
            fingerprint: fingerprint(Command::Plan, &settings, Some(&hash)),
            index,
            points: available,
            input: points::input_name(pcap),
            result: PointResult {
                scenario,
                point,
                offered,
            },
        }),
        warning,
    })
}

/// What every point of a plan depends on but its index and its capture's bytes: the settings
/// its fingerprint is made of (see [`points::fingerprint`](crate::points::fingerprint)).
#[derive(Serialize)]
struct Settings<'a> {
    /// The scenario as the replays run it (TOML, the flags applied; the NAT IP count is the
    /// plan's points).
    scenario: &'a str,
    /// Mid-stream pickup.
    pickup: bool,
}

/// One point of a plan as `--list` gives it.
#[derive(Serialize)]
struct Listed {
    nat_ips: usize,
}

/// `--list`: a JSON line per point (NAT IP counts 1 to `nat_ips`), its index and count.
pub fn list(nat_ips: usize) -> String {
    let counts: Vec<Listed> = (1..=nat_ips).map(|nat_ips| Listed { nat_ips }).collect();
    points::list(&counts)
}

/// The plan from every count's replay, run apart (`plan --point`, as [`points::read`] gives
/// them): the fewest NAT IPs that lose no flow, as the bisection finds it, with every count's
/// run; and the capture's name. Refused, naming the files, when a result is from another plan,
/// a count is there twice or one is missing (see [`points::merge`]).
pub fn merge(files: Vec<(PathBuf, PointFile<PointResult>)>) -> Result<(Plan, String)> {
    let merged = points::merge(Command::Plan, files)?;
    let scenario = Scenario::from_toml_str(&merged.results[0].scenario).map_err(|problems| {
        Error::Scenario {
            name: format!("the scenario in {}", merged.files[0].display()),
            problems,
        }
    })?;
    let points: Vec<PlanPoint> = merged.results.iter().map(|r| r.point).collect();
    let offered = merged.results.last().and_then(|r| r.offered.clone());
    let top = *points.last().expect("a merge has every point");
    // Fewer NAT IPs never lose fewer flows: the answer is the fewest that lose none.
    let needed = (top.run.snat_failures == 0)
        .then(|| points.iter().find(|p| p.run.snat_failures == 0))
        .flatten()
        .copied();
    let mut plan = assemble(
        &scenario,
        needed.map(|p| p.run.nat_ips),
        needed.map(|p| p.run.nat_ips),
        Some(needed.unwrap_or(top)),
        points.iter().map(|p| p.run).collect(),
        false,
        offered,
    );
    plan.truncated = points.iter().any(|p| p.truncated);
    Ok((plan, merged.input))
}

#[cfg(test)]
mod tests {
    use plsim_control::scenario::PortRange;
    use plsim_traffic::captures::syn_burst;

    use super::*;
    use crate::replay::Frames;

    /// 2,500 concurrent SYNs on 1,000 ports per NAT IP, per-IP reuse: three NAT IPs, found
    /// with the fewest replays (8, then 4, 2, 3).
    #[test]
    fn bisects_to_the_fewest_nat_ips_that_lose_nothing() {
        let frames = syn_burst(2_500);
        let mut s = Scenario::builtin();
        s.services[0].ports = PortRange::new(1024, 2023);
        s.services[0].reuse = ReuseScope::PerIp;
        let mut opened = 0;
        let p = plan(&s, false, None, || {
            opened += 1;
            Ok(Frames::new(&frames))
        })
        .unwrap();
        assert_eq!(p.nat_ips_needed, Some(3));
        assert_eq!(opened, 4);
        let counts: Vec<(usize, u64)> = p
            .runs
            .iter()
            .map(|r| (r.nat_ips, r.snat_failures))
            .collect();
        assert_eq!(counts, [(2, 500), (3, 0), (4, 0), (8, 0)]);
        assert_eq!(p.peak_concurrent_flows, 2_500);
        assert_eq!(p.ports_total_per_nat_ip, 1_000);
        // Three NAT IPs share 2,500 flows: the busiest holds 834.
        assert_eq!(p.peak_ports_per_nat_ip, 834);
        assert!((p.headroom - 0.166).abs() < 1e-9, "{}", p.headroom);
    }

    #[test]
    fn none_when_even_every_nat_ip_is_not_enough() {
        let frames = syn_burst(300);
        let mut s = Scenario::builtin();
        s.services[0].nat_ips.truncate(2);
        s.services[0].ports = PortRange::new(1024, 1123);
        s.services[0].reuse = ReuseScope::PerIp;
        let p = plan(&s, false, None, || Ok(Frames::new(&frames))).unwrap();
        assert_eq!(p.nat_ips_needed, None);
        assert_eq!(p.snat_failures, 100);
        assert_eq!(p.runs.len(), 1);
    }
}
