//! Theory beside the runs: a NAT IP's ports as a loss system. Flows arrive, each holds a port
//! for a while (its life, then the FIN or RST hold, or the idle timeout it ends with), and a
//! flow that finds no free port is lost. Under Poisson arrivals a full-availability group of
//! `N` ports offered `A` erlangs (arrivals per second times the mean hold) loses the share of
//! flows Erlang B gives, whatever the holds' distribution. The allocators `sequential` and
//! `random` search every NAT IP's range before they refuse a flow, so the ports of `n` NAT IPs
//! are one group of `n` times the range, one group per port scope: per backend under
//! `per-backend` reuse (each backend's flows have the range of every NAT IP to themselves), one
//! under `per-ip`.
//!
//! [`erlang_b`] computes the loss by the stable recurrence, exact to f64's precision for the
//! half a million ports of eight NAT IPs; [`measure`] measures what a capture offers;
//! [`rate`] answers from a rate and a hold alone, and checks the answer through the path.
//!
//! The theory lives in plsim-lab, beside `plan` and the runs it is compared with: it is a
//! model of what the path does, not part of it, and no stage needs it.

use serde::{Deserialize, Serialize};

pub mod beside;
pub mod measure;
pub mod rate;

/// The loss Erlang B gives for `load` erlangs offered to `servers` servers, by the recurrence
/// `B(0) = 1`, `B(k) = A·B(k-1) / (k + A·B(k-1))`: each step a contraction, so the rounding
/// errors do not grow (a relative error of about `1e-11` at half a million servers). A load of
/// zero loses nothing (but with no server at all).
pub fn erlang_b(load: f64, servers: u64) -> f64 {
    erlang_b_at(load, &[servers])[0]
}

/// [`erlang_b`] at several server counts, in one pass of the recurrence up to the largest.
pub fn erlang_b_at(load: f64, servers: &[u64]) -> Vec<f64> {
    let top = servers.iter().copied().max().unwrap_or(0);
    let mut at = vec![0.0; servers.len()];
    let mut set = |k: u64, b: f64| {
        for (i, &n) in servers.iter().enumerate() {
            if n == k {
                at[i] = b;
            }
        }
    };
    let mut b = 1.0f64;
    set(0, b);
    for k in 1..=top {
        let ab = load * b;
        b = ab / (k as f64 + ab);
        if b < f64::MIN_POSITIVE {
            // Past the smallest normal f64 the recurrence only keeps rounding noise (a
            // printed 9.88e-324 says nothing true): the loss is zero to f64's precision.
            b = 0.0;
        }
        set(k, b);
        if b == 0.0 {
            // It stays zero: every larger count is already zero in `at`.
            break;
        }
    }
    at
}

/// The flows one port scope is offered: its share of the arrivals and their load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScopeLoad {
    /// The scope: a backend's address under `per-backend` reuse, `all` under `per-ip`.
    pub scope: String,
    /// Flows offered (opened, or refused for want of a port).
    pub flows: u64,
    /// Flows offered per second.
    pub rate_per_s: f64,
    /// Offered load in erlangs: the rate times the mean hold.
    pub load_erlangs: f64,
}

/// One NAT IP count in theory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    /// NAT IPs.
    pub nat_ips: usize,
    /// The ports of each scope with that many NAT IPs (the range times the NAT IPs).
    pub ports: u64,
    /// The share of flows lost, by Erlang B: each scope's loss, weighted by its flows.
    pub erlang_b: f64,
}

/// Erlang B for every NAT IP count from 1 to `max`, the scopes `scopes` with `range` ports
/// per NAT IP.
pub fn counts(scopes: &[ScopeLoad], range: u64, max: usize) -> Vec<Count> {
    let servers: Vec<u64> = (1..=max as u64).map(|n| n * range).collect();
    let flows: f64 = scopes.iter().map(|s| s.rate_per_s).sum();
    let mut lost = vec![0.0; max];
    for s in scopes {
        for (l, b) in lost.iter_mut().zip(erlang_b_at(s.load_erlangs, &servers)) {
            *l += s.rate_per_s * b;
        }
    }
    servers
        .iter()
        .zip(lost)
        .enumerate()
        .map(|(i, (&ports, l))| Count {
            nat_ips: i + 1,
            ports,
            erlang_b: if flows > 0.0 { l / flows } else { 0.0 },
        })
        .collect()
}

/// The fewest NAT IPs whose Erlang B loss is at most `target`, if any count is.
pub fn fewest(counts: &[Count], target: f64) -> Option<usize> {
    counts
        .iter()
        .find(|c| c.erlang_b <= target)
        .map(|c| c.nat_ips)
}

/// The default loss `plan` sizes for in theory: one flow in a thousand.
pub const DEFAULT_LOSS: f64 = 0.001;

#[cfg(test)]
mod tests;
