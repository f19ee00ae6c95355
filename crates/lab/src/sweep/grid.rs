//! The grid of a sweep: the values of each swept setting, and every combination of them.

use plsim_control::scenario::{Allocator, PortRange};
use serde::{Deserialize, Serialize};

/// The settings of the scenario swept: each empty list is a setting left as the scenario has
/// it. (A workload's load is swept with the workload: see [`Input`](super::Input).)
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
    /// The multiplier of the workload's arrival rate.
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
    /// Every point, each at every multiple of the arrival rate in `load` (none: the
    /// workload's own rate, or a capture), the first setting varying slowest (nat_ips,
    /// allocator, ports, idle, fin_hold, load).
    pub fn points(&self, load: &[f64]) -> Vec<Point> {
        let mut points = Vec::new();
        for nat_ips in each(&self.nat_ips) {
            for allocator in each(&self.allocators) {
                for ports in each(&self.ports) {
                    for idle in each(&self.idle) {
                        for fin_hold in each(&self.fin_hold) {
                            for load in each(load) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_is_every_combination_first_setting_slowest() {
        let g = Grid {
            nat_ips: vec![1, 2],
            ..Grid::default()
        };
        let p = g.points(&[0.5, 1.0, 2.0]);
        assert_eq!(p.len(), 6);
        assert_eq!((p[0].nat_ips, p[0].load), (Some(1), Some(0.5)));
        assert_eq!((p[2].nat_ips, p[2].load), (Some(1), Some(2.0)));
        assert_eq!((p[3].nat_ips, p[3].load), (Some(2), Some(0.5)));
        assert!(p.iter().all(|p| p.allocator.is_none() && p.idle.is_none()));
        assert_eq!(Grid::default().points(&[]), vec![Point::default()]);
    }
}
