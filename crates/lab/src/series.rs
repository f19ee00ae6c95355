//! The gauges of a run over simulated time: samples, and the CSV `timeseries.csv` holds.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use plsim_wire::SimTime;

/// The gauges at one simulated instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When.
    pub t: SimTime,
    /// Flow records (open, or closed with the port held).
    pub live_flows: u64,
    /// SNAT failures so far.
    pub snat_failures: u64,
    /// Ports of closed flows still held (after a FIN or RST), every NAT IP together.
    pub ports_held: u64,
    /// Ports in use on each NAT IP.
    pub ports_in_use: Vec<(Ipv4Addr, u64)>,
    /// Ports of closed flows still held on each NAT IP (in the order of `ports_in_use`): in
    /// use plus held is what runs out (the report's busy ports).
    pub ports_held_by_ip: Vec<(Ipv4Addr, u64)>,
    /// Flow records of each connection (by link id) that has had one.
    pub live_by_link: Vec<(u32, u64)>,
}

/// A time series being taken: a sample whenever simulated time crosses a multiple of
/// `every` (at most once per packet, so a capture with a gap of years costs one sample, not
/// millions), and one at the end.
#[derive(Clone, Debug)]
pub struct Series {
    every: Duration,
    next: Option<SimTime>,
    samples: Vec<Sample>,
}

impl Series {
    /// A series sampled every `every` of simulated time (at least a nanosecond).
    pub fn new(every: Duration) -> Series {
        Series {
            every: every.max(Duration::from_nanos(1)),
            next: None,
            samples: Vec::new(),
        }
    }

    /// Whether simulated time `now` calls for a sample.
    #[inline]
    pub fn due(&self, now: SimTime) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    /// Takes the sample that was due at its time; the next is due at the next multiple.
    pub fn push(&mut self, sample: Sample) {
        let every = u64::try_from(self.every.as_nanos()).unwrap_or(u64::MAX);
        let next = (sample.t.as_nanos() / every + 1).saturating_mul(every);
        self.next = Some(SimTime::from_nanos(next));
        self.samples.push(sample);
    }

    /// The samples, with `last` (taken at the end of the run) unless a sample was taken then.
    pub fn finish(mut self, last: Sample) -> Vec<Sample> {
        if self.samples.last().is_none_or(|s| s.t < last.t) {
            self.samples.push(last);
        }
        self.samples
    }
}

/// The time series as CSV: `t_s,live_flows,snat_failures,ports_held`, then
/// `ports_in_use_<NAT IP>` for each NAT IP and `live_flows_link_<id>` for each connection; time
/// in seconds from the first sample.
pub fn series_csv(series: &[Sample]) -> String {
    let mut ips = Vec::new();
    let mut links = Vec::new();
    for s in series {
        for (ip, _) in &s.ports_in_use {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        for (l, _) in &s.live_by_link {
            if !links.contains(l) {
                links.push(*l);
            }
        }
    }
    links.sort_unstable();
    let mut out = String::from("t_s,live_flows,snat_failures,ports_held");
    for ip in &ips {
        let _ = write!(out, ",ports_in_use_{ip}");
    }
    for l in &links {
        let _ = write!(out, ",live_flows_link_{l}");
    }
    out.push('\n');
    let t0 = series.first().map_or(SimTime::ZERO, |s| s.t);
    for s in series {
        let _ = write!(
            out,
            "{:.6},{},{},{}",
            (s.t - t0).as_secs_f64(),
            s.live_flows,
            s.snat_failures,
            s.ports_held
        );
        for ip in &ips {
            let n = s
                .ports_in_use
                .iter()
                .find(|(i, _)| i == ip)
                .map_or(0, |(_, n)| *n);
            let _ = write!(out, ",{n}");
        }
        for l in &links {
            let n = s
                .live_by_link
                .iter()
                .find(|(i, _)| i == l)
                .map_or(0, |(_, n)| *n);
            let _ = write!(out, ",{n}");
        }
        out.push('\n');
    }
    out
}

/// A sampling interval that is not a positive, finite number of seconds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a positive number of seconds")]
pub struct BadInterval(pub String);

/// Parses a sampling interval in seconds: a positive, finite number (`--sample-every`).
pub fn parse_interval(s: &str) -> Result<f64, BadInterval> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(BadInterval(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Sample {
        Sample {
            t: SimTime::from_millis(ms),
            live_flows: ms,
            snat_failures: 0,
            ports_held: 1,
            ports_in_use: vec![(Ipv4Addr::new(10, 0, 0, 1), 2)],
            ports_held_by_ip: vec![(Ipv4Addr::new(10, 0, 0, 1), 0)],
            live_by_link: vec![(1, 3)],
        }
    }

    #[test]
    fn samples_at_crossings_once_per_packet_and_at_the_end() {
        let mut s = Series::new(Duration::from_secs(1));
        let mut times = Vec::new();
        for ms in [0, 10, 999, 1000, 1500, 7_000_000, 7_000_001] {
            if s.due(SimTime::from_millis(ms)) {
                s.push(at(ms));
                times.push(ms);
            }
        }
        assert_eq!(times, [0, 1000, 7_000_000]);
        let all = s.finish(at(7_000_002));
        assert_eq!(all.len(), 4);
        let csv = series_csv(&all);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("t_s,live_flows,snat_failures,ports_held,ports_in_use_10.0.0.1,live_flows_link_1")
        );
        assert_eq!(lines.next(), Some("0.000000,0,0,1,2,3"));
        assert_eq!(lines.nth(2), Some("7000.002000,7000002,0,1,2,3"));
    }
}
