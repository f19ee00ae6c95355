//! `plsim plan --rate R --hold S`: the NAT IPs a rate of flows needs in theory, with no
//! capture; `--check` runs the matching Poisson workload through the path at each count and
//! sets its loss beside the theory's.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plsim_control::Scenario;
use plsim_control::scenario::ReuseScope;
use plsim_engine::{Engine, NoTaps};
use plsim_traffic::workload::{Arrivals, Close, FlowDuration};
use serde::Serialize;

use super::measure::{Census, Measure, Observed};
use super::{ScopeLoad, counts, fewest};
use crate::run::{self, RunSpec};
use crate::stop::Stop;
use crate::workload::{Overrides, Workloads, specs};
use crate::{Error, Result};

/// What `plan --rate` asks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Question {
    /// New flows per second.
    pub rate_per_s: f64,
    /// The mean time a flow holds its port, in seconds (its life and the FIN hold).
    pub hold_s: f64,
    /// Backends the flows spread over evenly (each its own scope under `per-backend` reuse).
    pub backends: u32,
    /// Ports of each NAT IP's range.
    pub ports_per_nat_ip: u32,
    /// The port reuse scope.
    pub reuse: ReuseScope,
    /// The most loss allowed.
    pub loss: f64,
}

/// What `plan --rate` answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    /// New flows per second.
    pub rate_per_s: f64,
    /// The mean hold, in seconds.
    pub hold_s: f64,
    /// The offered load of all the flows, in erlangs.
    pub load_erlangs: f64,
    /// The port reuse scope.
    pub reuse: ReuseScope,
    /// Backends (scopes under `per-backend` reuse, each offered its share of the load).
    pub backends: u32,
    /// Ports of each NAT IP's range.
    pub ports_per_nat_ip: u32,
    /// The most loss allowed.
    pub loss_target: f64,
    /// The fewest NAT IPs whose Erlang B loss is at most the target (none: not even eight).
    pub nat_ips_needed: Option<usize>,
    /// Every NAT IP count, 1 to 8.
    pub counts: Vec<RateCount>,
    /// With `--check`: how the workload was run (the counts' `simulated` say what it lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

/// One NAT IP count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RateCount {
    /// NAT IPs.
    pub nat_ips: usize,
    /// Ports of each scope.
    pub ports: u64,
    /// The share of flows lost, by Erlang B.
    pub erlang_b: f64,
    /// With `--check`: what the workload lost through the path with that many NAT IPs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated: Option<Simulated>,
}

/// What a run of the workload lost.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Simulated {
    /// Flows opened.
    pub flows: u64,
    /// SYNs refused for want of a port.
    pub snat_failures: u64,
    /// Failures over attempts (flows plus failures).
    pub loss: f64,
}

/// How `--check` ran the workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Flows each run started (Poisson arrivals at the rate).
    pub flows: u64,
    /// The flows' lives, in the workload's flag syntax (exponential, so that each holds its
    /// port the hold on average with the FIN hold and half a round trip).
    pub durations: String,
    /// The FIN hold the runs kept, in seconds (the scenario's, or none when the hold is
    /// shorter than it).
    pub fin_hold_s: f64,
    /// Data packets per flow (enough that no flow idles out before its FIN).
    pub packets_per_flow: u32,
    /// Consumer hosts (enough that no client tuple comes back while its port is held).
    pub hosts: u32,
    /// The workload as the top count's run saw it, measured as `plan` measures a capture.
    pub measured: Measure,
}

impl Question {
    /// The scopes of the question: each backend its share under `per-backend`, one otherwise.
    fn scopes(&self) -> Vec<ScopeLoad> {
        let n = match self.reuse {
            ReuseScope::PerBackend => self.backends.max(1),
            ReuseScope::PerIp => 1,
        };
        let rate = self.rate_per_s / f64::from(n);
        (0..n)
            .map(|i| ScopeLoad {
                scope: match self.reuse {
                    ReuseScope::PerBackend => format!("backend {}", i + 1),
                    ReuseScope::PerIp => "all".into(),
                },
                flows: 0,
                rate_per_s: rate,
                load_erlangs: rate * self.hold_s,
            })
            .collect()
    }
}

/// The theory's answer: Erlang B at every count from 1 to [`plsim_snat::MAX_NAT_IPS`].
pub fn answer(q: &Question) -> Answer {
    let counts = counts(
        &q.scopes(),
        u64::from(q.ports_per_nat_ip),
        plsim_snat::MAX_NAT_IPS,
    );
    Answer {
        rate_per_s: q.rate_per_s,
        hold_s: q.hold_s,
        load_erlangs: q.rate_per_s * q.hold_s,
        reuse: q.reuse,
        backends: q.backends,
        ports_per_nat_ip: q.ports_per_nat_ip,
        loss_target: q.loss,
        nat_ips_needed: fewest(&counts, q.loss),
        counts: counts
            .into_iter()
            .map(|c| RateCount {
                nat_ips: c.nat_ips,
                ports: c.ports,
                erlang_b: c.erlang_b,
                simulated: None,
            })
            .collect(),
        check: None,
    }
}

/// Flows a check runs by default: 100,000, or a hundred times the offered load when that is
/// more (a run that long holds a hundred mean holds at the least).
pub fn default_check_flows(q: &Question) -> u64 {
    ((q.rate_per_s * q.hold_s * 100.0).ceil() as u64).max(100_000)
}

/// The answer of `q` checked through the path of `base` (its first service planned, its ports
/// and reuse those of `q`, its pools' backends `q.backends`, counting up from the first's
/// address, when that differs from what it has): at each NAT IP count from 1 up to the answer
/// (every count the first service has, when none is enough), `flows` flows of its first
/// endpoint's workload with Poisson arrivals at the rate and exponential lives, `workers` runs
/// at a time. Stopped early, the counts that ran to their end have their `simulated`.
pub fn check(
    base: &Scenario,
    q: &Question,
    flows: u64,
    stop: Option<&Stop>,
    workers: usize,
) -> Result<Answer> {
    let mut a = answer(q);
    let (scenario, over, fin_hold_s) = checked_scenario(base, q, flows)?;
    let available = scenario.services[0].nat_ips.len();
    let top = a.nat_ips_needed.unwrap_or(available).min(available);
    let mut workload = specs(&scenario, &over)?;
    workload.truncate(1);
    let timers = scenario.services[0].timers;
    type Ran = Result<Option<(Simulated, Option<Measure>)>>;
    let results: Mutex<Vec<Option<Ran>>> = Mutex::new((0..top).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let run_count = |n: usize| -> Ran {
        let mut s = scenario.clone();
        for svc in &mut s.services {
            svc.nat_ips.truncate(n);
        }
        let spec = RunSpec {
            stop,
            engine: Engine::Sequential,
            reuse: None,
            ..RunSpec::new(&s)
        };
        let source = Workloads::new(&s, workload.clone())?;
        // The top count's run measures the workload as it goes.
        let mut census = Census::new(timers, false);
        let summary = if n == top {
            let mut observed = Observed::new(source, &mut census);
            run::run(&mut observed, &spec, NoTaps)?.0.summary
        } else {
            let mut source = source;
            run::run(&mut source, &spec, NoTaps)?.0.summary
        };
        if summary.interrupted {
            return Ok(None);
        }
        let f = &summary.flows;
        let attempts = f.created + f.snat_failures;
        let simulated = Simulated {
            flows: f.created,
            snat_failures: f.snat_failures,
            loss: if attempts == 0 {
                0.0
            } else {
                f.snat_failures as f64 / attempts as f64
            },
        };
        Ok(Some((simulated, (n == top).then(|| census.finish()))))
    };
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, top.max(1)) {
            scope.spawn(|| {
                loop {
                    // The top count first: it measures the workload.
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= top || stop.is_some_and(Stop::requested) {
                        break;
                    }
                    let n = top - i;
                    let r = run_count(n);
                    results.lock().expect("not poisoned")[n - 1] = Some(r);
                }
            });
        }
    });
    let mut measured = None;
    for (c, r) in a
        .counts
        .iter_mut()
        .zip(results.into_inner().expect("not poisoned"))
    {
        if let Some((sim, m)) = r.transpose()?.flatten() {
            c.simulated = Some(sim);
            measured = measured.or(m);
        }
    }
    a.check = measured.map(|measured| Check {
        flows,
        durations: over
            .flow_duration
            .map_or_else(String::new, |d| d.to_string()),
        fin_hold_s,
        packets_per_flow: over.packets_per_flow.unwrap_or(0),
        hosts: over.hosts.unwrap_or(0),
        measured,
    });
    Ok(a)
}

/// The scenario and the workload flags that make `base` (whose first service has the ports
/// and reuse of `q` already) run `q`: with `per-backend` reuse, `q.backends` backends; lives of mean `q.hold_s` less the
/// FIN hold and half the round trip (the FIN hold set to nothing when the hold is no longer
/// than it); enough data packets that a flow never goes quiet for a tenth of the idle timeout
/// on average, and enough hosts that a client tuple comes back only after twenty holds. The
/// FIN hold kept, in seconds.
fn checked_scenario(
    base: &Scenario,
    q: &Question,
    flows: u64,
) -> Result<(Scenario, Overrides, f64)> {
    let mut s = base.clone();
    let frontend = s
        .services
        .first()
        .ok_or_else(|| Error::Input("the scenario has no service".into()))?
        .frontend
        .clone();
    let workload = crate::workload::spec(&s)?;
    let half_rtt = workload.rtt_ms / 2e3;
    let svc = &mut s.services[0];
    let mut life = q.hold_s - svc.timers.fin_hold.as_secs_f64() - half_rtt;
    if life <= 0.0 {
        svc.timers.fin_hold = Duration::ZERO;
        life = q.hold_s - half_rtt;
    }
    if life <= 0.0 {
        return Err(Error::Input(format!(
            "--hold {} s: a flow of the workload holds its port at least half a round trip \
             ({half_rtt} s)",
            q.hold_s
        )));
    }
    let fin_hold_s = svc.timers.fin_hold.as_secs_f64();
    let idle = svc.timers.idle.as_secs_f64();
    if q.reuse == ReuseScope::PerBackend {
        set_backends(&mut s, &frontend, q.backends)?;
    }
    // Pairs of data packets spread evenly over the life: a gap of life/(pairs+1) on average.
    let pairs = ((10.0 * life / idle).ceil() as u32).saturating_sub(1);
    let hosts = ((20.0 * q.rate_per_s * q.hold_s / 64_512.0).ceil() as u32)
        .clamp(workload.profile.hosts, plsim_traffic::workload::MAX_HOSTS);
    let over = Overrides {
        flows: Some(flows),
        arrivals: Some(Arrivals::Poisson {
            per_sec: q.rate_per_s,
        }),
        flow_duration: Some(FlowDuration::Exponential { mean_secs: life }),
        close: Some(Close::Fin),
        hosts: Some(hosts),
        packets_per_flow: Some(pairs.saturating_mul(2)),
        bytes_per_flow: Some(0),
        // The flows end it: no limit in time.
        until_secs: Some(f64::MAX),
        seed: None,
    };
    s.validate().map_err(|problems| Error::Scenario {
        name: "the scenario of the check".into(),
        problems,
    })?;
    Ok((s, over, fin_hold_s))
}

/// Gives the pools of the rules of `frontend` `n` backends, counting up from the first one's
/// address, unless they have `n` already.
fn set_backends(s: &mut Scenario, frontend: &str, n: u32) -> Result<()> {
    let lb = &mut s.load_balancer;
    let pools: Vec<String> = lb
        .rules
        .iter()
        .filter(|r| r.frontend == frontend)
        .map(|r| r.pool.clone())
        .collect();
    for p in lb.pools.iter_mut().filter(|p| pools.contains(&p.name)) {
        if p.backends.len() == n as usize {
            continue;
        }
        let first = u32::from(
            *p.backends
                .first()
                .ok_or_else(|| Error::Input(format!("pool `{}` has no backend", p.name)))?,
        );
        p.backends = (0..n).map(|i| Ipv4Addr::from(first + i)).collect();
    }
    Ok(())
}

/// The backends of the rules on the first service's frontend (each once): what `--backends`
/// is by default.
pub fn backends(s: &Scenario) -> u32 {
    let Some(svc) = s.services.first() else {
        return 0;
    };
    let lb = &s.load_balancer;
    let mut all: Vec<Ipv4Addr> = lb
        .rules
        .iter()
        .filter(|r| r.frontend == svc.frontend)
        .filter_map(|r| lb.pools.iter().find(|p| p.name == r.pool))
        .flat_map(|p| p.backends.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all.len() as u32
}

/// Parses a rate of flows per second or a hold in seconds: a positive, finite number.
pub fn parse_positive(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}`: expected a positive number")),
    }
}

/// Parses a share of flows lost: above 0 and below 1.
pub fn parse_loss(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!(
            "`{s}`: expected a share of flows above 0 and below 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(hold_s: f64, backends: u32) -> Question {
        Question {
            rate_per_s: 1.0,
            hold_s,
            backends,
            ports_per_nat_ip: 64_512,
            reuse: ReuseScope::PerBackend,
            loss: 0.001,
        }
    }

    #[test]
    fn the_check_keeps_the_fin_hold_when_the_hold_is_longer() {
        let s = Scenario::builtin();
        let (c, over, fin) = checked_scenario(&s, &question(250.0, 4), 1000).unwrap();
        assert_eq!(fin, 240.0);
        assert_eq!(c.services[0].timers.fin_hold, Duration::from_secs(240));
        // Half of the built-in workload's round trip of 1 ms.
        assert_eq!(
            over.flow_duration,
            Some(FlowDuration::Exponential { mean_secs: 9.9995 })
        );
        // Lives of 10 s against an idle timeout of 240 s: no data packet needed.
        assert_eq!(
            (over.packets_per_flow, over.bytes_per_flow),
            (Some(0), Some(0))
        );
        assert_eq!(over.hosts, Some(16));
        assert_eq!(c.load_balancer.pools[0].backends.len(), 4);
    }

    #[test]
    fn a_hold_shorter_than_the_fin_hold_runs_without_it() {
        let s = Scenario::builtin();
        let (c, over, fin) = checked_scenario(&s, &question(100.0, 3), 1000).unwrap();
        assert_eq!((fin, c.services[0].timers.fin_hold), (0.0, Duration::ZERO));
        assert_eq!(
            over.flow_duration,
            Some(FlowDuration::Exponential { mean_secs: 99.9995 })
        );
        // Ten gaps an idle timeout long in a mean life: 4 pairs of data packets.
        assert_eq!(over.packets_per_flow, Some(8));
        let pool = &c.load_balancer.pools[0].backends;
        assert_eq!(
            pool,
            &["10.10.2.4", "10.10.2.5", "10.10.2.6"].map(|a| a.parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(backends(&c), 3);
        assert!(checked_scenario(&s, &question(0.0001, 4), 1000).is_err());
    }

    #[test]
    fn the_theory_splits_the_rate_over_the_backends() {
        let a = answer(&Question {
            rate_per_s: 2.0,
            hold_s: 30.0,
            backends: 2,
            ports_per_nat_ip: 30,
            ..question(0.0, 0)
        });
        assert_eq!(a.load_erlangs, 60.0);
        assert_eq!(a.counts[0].erlang_b, super::super::erlang_b(30.0, 30));
        assert_eq!(a.counts[1].erlang_b, super::super::erlang_b(30.0, 60));
        assert_eq!(a.nat_ips_needed, Some(2));
        assert_eq!(default_check_flows(&question(250.0, 4)), 100_000);
    }
}
