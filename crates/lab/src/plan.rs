//! The fewest NAT IPs with which a capture loses no flow to port exhaustion (`plsim plan`): a
//! bisection over replays, since fewer NAT IPs never lose fewer flows.

use plsim_control::Scenario;
use plsim_control::scenario::{ReuseScope, Timers};
use plsim_engine::NoTaps;
use serde::Serialize;

use crate::replay::PacketSource;
use crate::run::{self, RunSpec};
use crate::summary::Summary;
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
}

/// One replay of the search.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct PlanRun {
    /// NAT IPs of each service.
    pub nat_ips: usize,
    /// Flows opened.
    pub flows: u64,
    /// SYNs refused for want of a port.
    pub snat_failures: u64,
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
    let service = base
        .services
        .first()
        .ok_or_else(|| Error::Input("the scenario has no service".into()))?
        .clone();
    let available = service.nat_ips.len();
    let mut runs: Vec<PlanRun> = Vec::new();
    // `None`: stopped before its end.
    let mut run_with = |n: usize| -> Result<Option<(PlanRun, Summary)>> {
        let mut s = base.clone();
        for svc in &mut s.services {
            svc.nat_ips.truncate(n);
        }
        let spec = RunSpec {
            pickup,
            stop,
            ..RunSpec::new(&s)
        };
        let (out, _) = run::run(&mut open()?, &spec, NoTaps)?;
        if out.summary.interrupted {
            return Ok(None);
        }
        let r = PlanRun {
            nat_ips: n,
            flows: out.summary.flows.created,
            snat_failures: out.summary.flows.snat_failures,
        };
        runs.push(r);
        Ok(Some((r, out.summary)))
    };
    let mut interrupted = false;
    let (needed, enough, at) = match run_with(available)? {
        None => {
            interrupted = true;
            (None, None, None)
        }
        Some((top, top_summary)) if top.snat_failures > 0 => (None, None, Some(top_summary)),
        Some((_, top_summary)) => {
            let (mut lo, mut hi, mut best) = (1usize, available, top_summary);
            while lo < hi {
                let mid = (lo + hi) / 2;
                let Some((r, s)) = run_with(mid)? else {
                    interrupted = true;
                    break;
                };
                if r.snat_failures == 0 {
                    hi = mid;
                    best = s;
                } else {
                    lo = mid + 1;
                }
            }
            ((!interrupted).then_some(lo), Some(hi), Some(best))
        }
    };
    let Some(at) = at else {
        // Stopped in the first replay: nothing is known.
        return Ok(Plan {
            nat_ips_needed: None,
            nat_ips_available: available,
            ports_per_nat_ip: service.ports.len(),
            reuse: service.reuse,
            timers: service.timers,
            peak_concurrent_flows: 0,
            peak_ports_per_nat_ip: 0,
            ports_total_per_nat_ip: 0,
            headroom: 0.0,
            snat_failures: 0,
            runs,
            interrupted,
            nat_ips_enough: None,
        });
    };
    // Held ports (after a FIN or RST) are as unavailable as ports in use.
    let busiest = at.nat_ips.iter().max_by_key(|n| n.ports_busy_peak);
    let peak_ports = busiest.map_or(0, |n| n.ports_busy_peak);
    let total = busiest
        .map_or(0, |n| n.ports_total)
        .max(u64::from(service.ports.len()));
    // The bisection never runs a count twice.
    runs.sort_by_key(|r| r.nat_ips);
    Ok(Plan {
        nat_ips_needed: needed,
        nat_ips_available: available,
        ports_per_nat_ip: service.ports.len(),
        reuse: service.reuse,
        timers: service.timers,
        peak_concurrent_flows: at.flows.active_peak,
        peak_ports_per_nat_ip: peak_ports,
        ports_total_per_nat_ip: total,
        headroom: if total == 0 {
            0.0
        } else {
            1.0 - peak_ports as f64 / total as f64
        },
        snat_failures: at.flows.snat_failures,
        runs,
        interrupted,
        nat_ips_enough: enough,
    })
}

#[cfg(test)]
mod tests {
    use plsim_control::scenario::PortRange;
    use plsim_traffic::captures::syn_burst;
    use plsim_wire::LinkType;

    use super::*;
    use crate::replay::FrameSource;

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
            Ok(FrameSource::new(&frames, LinkType::Ethernet))
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
        let p = plan(&s, false, None, || {
            Ok(FrameSource::new(&frames, LinkType::Ethernet))
        })
        .unwrap();
        assert_eq!(p.nat_ips_needed, None);
        assert_eq!(p.snat_failures, 100);
        assert_eq!(p.runs.len(), 1);
    }
}
