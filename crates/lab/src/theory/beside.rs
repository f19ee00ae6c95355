//! The theory beside a plan: what the capture offered each port scope (from the census and the
//! replay at the most NAT IPs), Erlang B at every count beside the replays' loss, and, where
//! they part, what was measured that the theory leaves out.

use plsim_control::scenario::{Allocator, ReuseScope};
use serde::{Deserialize, Serialize};

use super::measure::Measure;
use super::{ScopeLoad, counts, fewest};
use crate::summary::Summary;

/// What a capture offered the ports: the replay's flows over the census's span and holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offered {
    /// Flows offered to the SNAT stage in the replay (opened, or refused for want of a port).
    pub flows: u64,
    /// Those flows per second over the capture's span.
    pub rate_per_s: f64,
    /// The mean time a flow holds its port, in seconds (from the census).
    pub hold_s: f64,
    /// The load of all the flows, in erlangs: the rate times the hold.
    pub load_erlangs: f64,
    /// The port scopes and what each was offered: each backend's flows (the replay's) under
    /// `per-backend` reuse, every flow under `per-ip`; the hold is the capture's mean in each.
    pub scopes: Vec<ScopeLoad>,
    /// The busiest scope's share of the flows.
    pub busiest_scope_share: f64,
    /// SYNs the allocator refused in the replay while some NAT IP had a free port.
    pub gave_up: u64,
    /// What the census measured.
    pub measure: Measure,
}

impl Offered {
    /// What the replay `s` (at the most NAT IPs) and the census `m` of its capture say was
    /// offered, under the reuse scope `reuse`; none when the capture opened no flow or took no
    /// time.
    pub fn of(s: &Summary, m: Measure, reuse: ReuseScope, allocator: Allocator) -> Option<Offered> {
        let flows = s.flows.created + s.flows.snat_failures;
        if flows == 0 || m.span_s <= 0.0 || m.hold_s <= 0.0 {
            return None;
        }
        let rate = flows as f64 / m.span_s;
        // netfilter's ports are unique per reply tuple: its scopes are per backend at least.
        let per_backend =
            reuse == ReuseScope::PerBackend || matches!(allocator, Allocator::Netfilter { .. });
        let given: u64 = s.backends.iter().map(|b| b.flows).sum();
        let scopes: Vec<ScopeLoad> = if per_backend && given > 0 {
            s.backends
                .iter()
                .filter(|b| b.flows > 0)
                .map(|b| {
                    let r = rate * b.flows as f64 / given as f64;
                    ScopeLoad {
                        scope: b.ip.clone(),
                        flows: (flows as f64 * b.flows as f64 / given as f64).round() as u64,
                        rate_per_s: r,
                        load_erlangs: r * m.hold_s,
                    }
                })
                .collect()
        } else {
            vec![ScopeLoad {
                scope: "all".into(),
                flows,
                rate_per_s: rate,
                load_erlangs: rate * m.hold_s,
            }]
        };
        let busiest = scopes.iter().map(|s| s.rate_per_s).fold(0.0, f64::max) / rate;
        Some(Offered {
            flows,
            rate_per_s: rate,
            hold_s: m.hold_s,
            load_erlangs: rate * m.hold_s,
            scopes,
            busiest_scope_share: busiest,
            gave_up: s.flows.snat_failures_gave_up,
            measure: m,
        })
    }
}

/// The theory beside a plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Beside {
    /// What the capture offered.
    pub offered: Offered,
    /// The most loss the theory sizes for (`--loss`).
    pub loss_target: f64,
    /// The fewest NAT IPs whose Erlang B loss is at most the target.
    pub nat_ips_for_loss: Option<usize>,
    /// Every count from 1 to the scenario's NAT IPs: Erlang B, and the replay's loss where it
    /// ran.
    pub counts: Vec<Count>,
    /// What was measured that the theory leaves out, when some count parts (empty otherwise).
    pub reasons: Vec<String>,
}

/// One NAT IP count, in theory and replayed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    /// NAT IPs.
    pub nat_ips: usize,
    /// The ports of each scope with that many NAT IPs.
    pub ports: u64,
    /// The share of flows lost by Erlang B.
    pub erlang_b: f64,
    /// The share the replay lost (failures over flows offered; none when not replayed).
    pub replay_loss: Option<f64>,
    /// The replay and the theory part: they differ by more than a fifth of the larger, by
    /// more than 0.001, and by more than three standard errors of the replay's loss.
    pub parts: bool,
}

/// A replay at one count: NAT IPs, flows opened, SNAT failures, of which the allocator gave up.
pub type Replayed = (usize, u64, u64, u64);

/// Whether a replay's loss `r` over `n` flows offered and the theory's `t` part.
fn part(r: f64, t: f64, n: u64) -> bool {
    let noise = 3.0 * (t * (1.0 - t) / n.max(1) as f64).sqrt();
    (r - t).abs() > 0.001f64.max(0.2 * r.max(t)).max(noise)
}

impl Beside {
    /// The theory for `offered` with `range` ports per NAT IP, counts 1 to `max`, beside the
    /// `replays`, sizing for `loss`; `allocator` says whether it searches every port.
    pub fn new(
        offered: Offered,
        range: u64,
        max: usize,
        replays: &[Replayed],
        loss: f64,
        allocator: Allocator,
    ) -> Beside {
        let theory = counts(&offered.scopes, range, max);
        let counts: Vec<Count> = theory
            .iter()
            .map(|c| {
                let run = replays.iter().find(|r| r.0 == c.nat_ips);
                let replay_loss = run
                    .map(|&(_, flows, failed, _)| failed as f64 / (flows + failed).max(1) as f64);
                Count {
                    nat_ips: c.nat_ips,
                    ports: c.ports,
                    erlang_b: c.erlang_b,
                    replay_loss,
                    parts: run.is_some_and(|&(_, flows, failed, _)| {
                        part(replay_loss.unwrap_or(0.0), c.erlang_b, flows + failed)
                    }),
                }
            })
            .collect();
        let gave_up = replays.iter().map(|r| r.3).max().unwrap_or(0);
        let reasons = if counts.iter().any(|c| c.parts) {
            reasons(&offered, gave_up, allocator)
        } else {
            Vec::new()
        };
        Beside {
            nat_ips_for_loss: fewest(&theory, loss),
            loss_target: loss,
            offered,
            counts,
            reasons,
        }
    }
}

impl Beside {
    /// Sizes for a loss of at most `loss`: the target and the fewest NAT IPs that meet it.
    pub fn size_for(&mut self, loss: f64) {
        self.loss_target = loss;
        self.nat_ips_for_loss = self
            .counts
            .iter()
            .find(|c| c.erlang_b <= loss)
            .map(|c| c.nat_ips);
    }
}

/// What was measured that Erlang B leaves out: a capture too short for the ports to settle,
/// arrivals far from Poisson, an allocator that gives up or keeps hosts apart.
fn reasons(o: &Offered, gave_up: u64, allocator: Allocator) -> Vec<String> {
    let m = &o.measure;
    let mut why = Vec::new();
    let holds = m.span_s / o.hold_s;
    if holds < 10.0 {
        why.push(format!(
            "the capture lasts {}, {} mean holds of {}: its ports start empty and are still \
             filling, where the theory is of the steady state",
            secs(m.span_s),
            sig(holds),
            secs(o.hold_s)
        ));
    }
    if let Some(d) = m.dispersion {
        let over = format!(
            "index of dispersion {} over {} windows (1 for Poisson arrivals)",
            sig(d.index),
            secs(d.window_s)
        );
        if d.index > 2.0 {
            why.push(format!("arrivals come in bursts: {over}"));
        } else if d.index < 0.5 {
            why.push(format!("arrivals are more even than Poisson: {over}"));
        }
    }
    if gave_up > 0 {
        why.push(format!(
            "the allocator ({allocator}) refused up to {gave_up} SYNs while another NAT IP \
             had a free port: the theory takes every NAT IP's ports as one group"
        ));
    }
    match allocator {
        Allocator::Block(_) if gave_up > 0 => why.push(format!(
            "block:N keeps each consumer host to its own blocks: the busiest of {} hosts \
             opened {:.1}% of the flows",
            m.hosts,
            100.0 * m.busiest_host_share
        )),
        Allocator::Netfilter { .. } if gave_up > 0 => why.push(format!(
            "netfilter keeps each pair of hosts on one NAT IP: the busiest pair carried \
             {:.1}% of the flows",
            100.0 * m.busiest_pair_share
        )),
        _ => {}
    }
    if why.is_empty() {
        why.push(
            "nothing measured explains it: arrivals look Poisson, the capture is long and \
             the allocator searches every port"
                .into(),
        );
    }
    why
}

/// Seconds in words, to three significant digits.
fn secs(s: f64) -> String {
    format!("{} s", sig(s))
}

/// A number to three significant digits, without an exponent between 0.001 and 10^6.
pub fn sig(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if !(0.001..1e6).contains(&a) {
        let s = format!("{x:.2e}");
        let (m, e) = s.split_once('e').expect("an exponent");
        return format!("{}e{e}", trim(m));
    }
    let digits = (2 - a.log10().floor() as i32).max(0) as usize;
    trim(&format!("{x:.digits$}")).to_owned()
}

/// A decimal without the zeros that end its fraction (nor a point left alone).
fn trim(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_to_three_digits() {
        assert_eq!(sig(240.0), "240");
        assert_eq!(sig(0.0123456), "0.0123");
        assert_eq!(sig(3.25159), "3.25");
        assert_eq!(sig(12345.6), "12346");
        assert_eq!(sig(2.4e8), "2.4e8");
        assert_eq!(sig(1e6), "1e6");
        assert_eq!(sig(1.5e-5), "1.5e-5");
        assert_eq!(sig(0.001), "0.001");
        assert_eq!(sig(0.0030004), "0.003");
        assert_eq!(sig(0.0), "0");
    }

    #[test]
    fn replays_part_from_theory_beyond_noise() {
        // A fifth apart at large losses.
        assert!(!part(0.50, 0.55, 100_000));
        assert!(part(0.30, 0.55, 100_000));
        // Small losses: within 0.001 agree.
        assert!(!part(0.0, 0.0009, 100_000));
        assert!(part(0.0, 0.01, 100_000));
        // A few flows: three standard errors.
        assert!(!part(0.0, 0.1, 50));
    }
}
