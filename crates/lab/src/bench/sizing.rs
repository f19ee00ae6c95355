//! The bench's scenario: the built-in one with backends enough for every flow to get a NAT
//! port.

use std::net::Ipv4Addr;

use plsim_control::Scenario;
use plsim_control::net::Prefix;
use plsim_control::scenario::Subnet;

/// The ports each NAT IP of the built-in scenario offers per backend (1024-65535).
const PORTS_PER_NAT_IP: u64 = 64_512;

/// The NAT IPs of the built-in scenario.
const NAT_IPS: u64 = 8;

/// The fewest backends the bench uses (the built-in scenario's four).
const MIN_BACKENDS: u64 = 4;

/// The most backends the bench's scenario has room for (its backend subnet, a /22).
const MAX_BACKENDS: u64 = 1_000;

/// How full the bench lets a backend's ports get: flows spread over backends by hash, so a
/// backend gets its share give or take a little; 90% leaves room for that.
const FILL: f64 = 0.9;

/// The most flows the bench's scenario can hold.
pub fn max_flows() -> u64 {
    (MAX_BACKENDS as f64 * (NAT_IPS * PORTS_PER_NAT_IP) as f64 * FILL) as u64
}

/// The bench's scenario for `flows` flows: the built-in one, with backends enough that every
/// flow gets a NAT port (in a /22 of the provider's VNet of their own), or an error that says
/// how many it can hold.
pub fn scenario_for(flows: u64) -> crate::Result<Scenario> {
    let per_backend = (NAT_IPS * PORTS_PER_NAT_IP) as f64 * FILL;
    let backends = ((flows as f64 / per_backend).ceil() as u64).max(MIN_BACKENDS);
    if backends > MAX_BACKENDS {
        return Err(crate::Error::BenchTooManyFlows {
            flows,
            max_flows: max_flows(),
            max_backends: MAX_BACKENDS,
            fill_percent: (FILL * 100.0).round() as u32,
        });
    }
    let mut s = Scenario::builtin();
    let subnet: Prefix = "10.10.4.0/22".parse().expect("a prefix");
    if let Some(p) = s.provider.as_mut() {
        p.subnets.push(Subnet {
            name: "bench-backends".into(),
            prefix: subnet,
        });
    }
    let first = u32::from(Ipv4Addr::new(10, 10, 4, 4));
    s.load_balancer.pools[0].backends = (0..backends as u32)
        .map(|i| Ipv4Addr::from(first + i))
        .collect();
    s.validate().map_err(|problems| crate::Error::Scenario {
        name: "the bench's scenario".into(),
        problems,
    })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_has_backends_enough_or_says_how_many_flows_fit() {
        assert_eq!(
            scenario_for(1_000_000).unwrap().load_balancer.pools[0]
                .backends
                .len(),
            4
        );
        // 10M flows over backends of 8 x 64,512 ports filled to 90%: 22 backends.
        assert_eq!(
            scenario_for(10_000_000).unwrap().load_balancer.pools[0]
                .backends
                .len(),
            22
        );
        let e = scenario_for(max_flows() + 1).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("holds at most"), "{e}");
    }
}
