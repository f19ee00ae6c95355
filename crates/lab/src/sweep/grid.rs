//! The grid of a sweep: the values of each swept setting, and every combination of them.

use std::str::FromStr;

use plsim_control::scenario::{Allocator, PortRange};
use serde::{Deserialize, Serialize};

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
}
