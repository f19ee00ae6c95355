//! The lists `plsim sweep` takes for each setting it sweeps (`--nat-ips 1,2,4`, `--idle
//! 240..250`): each value checked as the setting of one run is, so a wrong value is a usage
//! error that says what is wrong with it.

use std::error::Error;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use plsim_control::scenario::{Allocator, PortRange, Timers};

/// The most points a sweep's grid may have.
pub const MAX_POINTS: usize = 10_000;

/// The values of one swept setting: `a,b,c`, or a range of whole numbers `lo..hi` (inclusive;
/// `lo..=hi` too), or both (`1,4..6`).
#[derive(Clone, Debug, PartialEq)]
pub struct Values<T>(pub Vec<T>);

/// Why a list of values is not one.
#[derive(Debug)]
pub enum ListError {
    /// Nothing in it.
    Empty,
    /// A range whose bounds are not whole numbers.
    RangeBounds(String),
    /// A range whose high end is below its low end.
    Downwards(String),
    /// A range of more values than a grid may have points.
    TooLong(String),
    /// A value the setting does not take.
    Value(ValueError),
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::Empty => {
                f.write_str("no value: give a list like 1,2,4 or a range like 1..8")
            }
            ListError::RangeBounds(r) => {
                write!(f, "`{r}` is not a range of whole numbers like 1..8")
            }
            ListError::Downwards(r) => write!(f, "`{r}` runs downwards: a range is low..high"),
            ListError::TooLong(r) => write!(f, "`{r}` has more than {MAX_POINTS} values"),
            ListError::Value(e) => e.fmt(f),
        }
    }
}

impl Error for ListError {}

/// A value that one swept setting does not take.
#[derive(Debug)]
pub enum ValueError {
    /// Not a whole number.
    NotWhole(String),
    /// Not a number above zero.
    NotPositive(String),
    /// A count of NAT IPs a service can't have.
    NatIps(u64),
    /// The setting's own refusal, in its words (a port range, an allocator, an idle timeout).
    Setting(Box<dyn Error + Send + Sync>),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::NotWhole(v) => write!(f, "`{v}` is not a whole number"),
            ValueError::NotPositive(v) => write!(f, "`{v}` is not a number above zero"),
            ValueError::NatIps(n) => write!(f, "{n} NAT IPs: a service has 1 to 8"),
            ValueError::Setting(e) => e.fmt(f),
        }
    }
}

/// The values of a list, each read by `value`.
fn list<T>(s: &str, value: impl Fn(&str) -> Result<T, ValueError>) -> Result<Values<T>, ListError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((lo, hi)) = part.split_once("..") else {
            out.push(value(part).map_err(ListError::Value)?);
            continue;
        };
        let bound = |b: &str| b.trim().parse::<i64>().ok();
        let (Some(lo), Some(hi)) = (bound(lo), bound(hi.trim_start_matches('='))) else {
            return Err(ListError::RangeBounds(part.to_owned()));
        };
        if hi < lo {
            return Err(ListError::Downwards(part.to_owned()));
        }
        if hi - lo >= MAX_POINTS as i64 {
            return Err(ListError::TooLong(part.to_owned()));
        }
        for v in lo..=hi {
            out.push(value(&v.to_string()).map_err(ListError::Value)?);
        }
    }
    if out.is_empty() {
        return Err(ListError::Empty);
    }
    Ok(Values(out))
}

/// A whole number.
fn whole(v: &str) -> Result<u64, ValueError> {
    v.parse().map_err(|_| ValueError::NotWhole(v.to_owned()))
}

/// A value in the setting's own syntax.
fn setting<T>(v: &str) -> Result<T, ValueError>
where
    T: FromStr,
    T::Err: Error + Send + Sync + 'static,
{
    v.parse().map_err(|e| ValueError::Setting(Box::new(e)))
}

/// `--nat-ips`: counts of 1 to 8.
pub fn nat_ips(s: &str) -> Result<Values<u8>, ListError> {
    list(s, |v| {
        let n = whole(v)?;
        u8::try_from(n)
            .ok()
            .filter(|n| (1..=8).contains(n))
            .ok_or(ValueError::NatIps(n))
    })
}

/// `--allocators`: sequential, random, random:SEED, block:N.
pub fn allocators(s: &str) -> Result<Values<Allocator>, ListError> {
    list(s, setting)
}

/// `--ports`: port ranges LO-HI.
pub fn ports(s: &str) -> Result<Values<PortRange>, ListError> {
    list(s, setting)
}

/// `--idle`: idle timeouts in seconds that Azure allows.
pub fn idle(s: &str) -> Result<Values<u64>, ListError> {
    list(s, |v| {
        let secs = whole(v)?;
        let timers = Timers {
            idle: Duration::from_secs(secs),
            ..Timers::default()
        };
        timers
            .validate_azure()
            .map_err(|e| ValueError::Setting(Box::new(e)))?;
        Ok(secs)
    })
}

/// `--fin-hold`: seconds.
pub fn seconds(s: &str) -> Result<Values<u64>, ListError> {
    list(s, whole)
}

/// `--load`: multipliers above zero.
pub fn load(s: &str) -> Result<Values<f64>, ListError> {
    list(s, |v| {
        v.parse::<f64>()
            .ok()
            .filter(|m| m.is_finite() && *m > 0.0)
            .ok_or_else(|| ValueError::NotPositive(v.to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_lists_and_integer_ranges() {
        assert_eq!(nat_ips("1..4").unwrap().0, [1, 2, 3, 4]);
        assert_eq!(nat_ips("1,3..=5, 8").unwrap().0, [1, 3, 4, 5, 8]);
        assert_eq!(
            allocators("sequential,random:7,block:64").unwrap().0,
            [
                Allocator::Sequential,
                Allocator::Random { seed: 7 },
                Allocator::Block(64)
            ]
        );
        assert_eq!(
            ports("1024-2047,1024-65535").unwrap().0,
            [PortRange::new(1024, 2047), PortRange::new(1024, 65535)]
        );
        assert_eq!(load("0.5,2").unwrap().0, [0.5, 2.0]);
        assert_eq!(idle("4,240..241").unwrap().0, [4, 240, 241]);
        assert_eq!(seconds("0,60").unwrap().0, [0, 60]);
    }

    #[test]
    fn a_wrong_value_says_what_is_wrong_with_it() {
        let e = |r: Result<Values<u8>, ListError>| r.unwrap_err().to_string();
        assert_eq!(
            e(nat_ips("")),
            "no value: give a list like 1,2,4 or a range like 1..8"
        );
        assert_eq!(e(nat_ips(",")), e(nat_ips("")));
        assert_eq!(
            e(nat_ips("1..x")),
            "`1..x` is not a range of whole numbers like 1..8"
        );
        assert_eq!(
            e(nat_ips("5..1")),
            "`5..1` runs downwards: a range is low..high"
        );
        assert_eq!(
            e(nat_ips("1..100000")),
            "`1..100000` has more than 10000 values"
        );
        assert_eq!(e(nat_ips("magic")), "`magic` is not a whole number");
        assert_eq!(e(nat_ips("0")), "0 NAT IPs: a service has 1 to 8");
        assert_eq!(e(nat_ips("300")), "300 NAT IPs: a service has 1 to 8");
        assert_eq!(
            ports("5-4").unwrap_err().to_string(),
            "`5-4` is not a port range `lo-hi` with 1 <= lo <= hi <= 65535"
        );
        assert_eq!(
            allocators("x").unwrap_err().to_string(),
            "not a valid allocator (sequential, random[:SEED], block:N, netfilter[:SEED]): \"x\""
        );
        assert_eq!(
            idle("0").unwrap_err().to_string(),
            "0 s: the idle timeout is 4 to 6000 seconds"
        );
        assert_eq!(
            load("1,0").unwrap_err().to_string(),
            "`0` is not a number above zero"
        );
    }
}
