//! What a sweep's runs give: a row per point, and the CSV of them.

use serde::{Deserialize, Serialize};

use super::Point;
use crate::summary::Summary;

/// One run's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The settings.
    #[serde(flatten)]
    pub point: Point,
    /// Flows opened.
    pub flows: u64,
    /// SYNs refused for want of a port.
    pub snat_failures: u64,
    /// SNAT failures over connection attempts (flows opened plus failures).
    pub failure_rate: f64,
    /// The most ports in use at once on the busiest NAT IP.
    pub peak_ports_in_use: u64,
    /// The most ports in use or held at once on the busiest NAT IP: what runs out.
    pub peak_ports_busy: u64,
    /// The most flow records at once.
    pub peak_flows: u64,
    /// Packets of the input.
    pub packets: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// New flows on a (NAT IP, NAT port, backend address, backend port) an earlier flow used
    /// (the summary's `reuse`).
    #[serde(default)]
    pub reuses: u64,
    /// Of them, within the backends' TIME_WAIT (60 s) of a close the backend began.
    #[serde(default)]
    pub hazards: u64,
    /// The shortest gap from a close to a reuse, in seconds (none without reuses).
    #[serde(default)]
    pub gap_min_s: Option<f64>,
    /// The median gap, in seconds (none without reuses).
    #[serde(default)]
    pub gap_p50_s: Option<f64>,
    /// The capture was cut short or damaged after its first packet, and read up to there
    /// (left out when not: a whole capture's results are as they always were). Not a column
    /// of the CSV: every point of a sweep reads the same capture, so it would say one thing
    /// in every row; the sweep's warning says it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Row {
    /// The row of a point from its run's summary.
    pub fn of(point: Point, s: &Summary) -> Row {
        let attempts = s.flows.created + s.flows.snat_failures;
        let peak =
            |f: fn(&crate::summary::NatIp) -> u64| s.nat_ips.iter().map(f).max().unwrap_or(0);
        let reuse = s.reuse.map(|r| r.counts).unwrap_or_default();
        let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
        Row {
            point,
            flows: s.flows.created,
            snat_failures: s.flows.snat_failures,
            failure_rate: if attempts == 0 {
                0.0
            } else {
                s.flows.snat_failures as f64 / attempts as f64
            },
            peak_ports_in_use: peak(|n| n.ports_in_use_peak),
            peak_ports_busy: peak(|n| n.ports_busy_peak),
            peak_flows: s.flows.active_peak,
            packets: s.input.packets,
            dropped: s.packets.dropped.total(),
            reuses: reuse.reuses,
            hazards: reuse.hazards,
            gap_min_s: secs(reuse.gap_min),
            gap_p50_s: secs(reuse.gap_p50),
            truncated: s.input.truncated,
        }
    }
}

/// The CSV's setting columns.
pub(super) const COLUMNS: [&str; 6] = ["nat_ips", "allocator", "ports", "idle", "fin_hold", "load"];

pub(super) fn cells(p: &Point) -> [String; 6] {
    fn o<T: ToString>(v: &Option<T>) -> String {
        v.as_ref().map_or(String::new(), ToString::to_string)
    }
    [
        o(&p.nat_ips),
        o(&p.allocator),
        o(&p.ports),
        o(&p.idle),
        o(&p.fin_hold),
        o(&p.load),
    ]
}

/// The CSV of a sweep's rows: the settings, then the results (gaps in seconds to the
/// microsecond, empty without reuses).
pub fn csv(rows: &[Row]) -> String {
    let mut s = COLUMNS.join(",")
        + ",flows,snat_failures,failure_rate,peak_ports_in_use,peak_ports_busy,peak_flows,packets,dropped\
           ,reuses,hazards,gap_min_s,gap_p50_s\n";
    let gap = |g: Option<f64>| g.map_or(String::new(), |g| format!("{g:.6}"));
    for r in rows {
        s += &format!(
            "{},{},{},{:.6},{},{},{},{},{},{},{},{},{}\n",
            cells(&r.point).join(","),
            r.flows,
            r.snat_failures,
            r.failure_rate,
            r.peak_ports_in_use,
            r.peak_ports_busy,
            r.peak_flows,
            r.packets,
            r.dropped,
            r.reuses,
            r.hazards,
            gap(r.gap_min_s),
            gap(r.gap_p50_s)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use plsim_control::Scenario;
    use plsim_control::scenario::{Allocator, PortRange, ReuseScope};
    use plsim_engine::NoTaps;

    use super::*;
    use crate::run::{self, RunSpec};

    #[test]
    fn rows_come_from_summaries_and_make_the_csv() {
        let scenario = Scenario::builtin();
        let frames = plsim_traffic::captures::syn_burst(50);
        let mut source = crate::replay::Frames::new(&frames);
        let mut tight = scenario.clone();
        tight.services[0].nat_ips.truncate(1);
        tight.services[0].ports = PortRange::new(1024, 1063);
        tight.services[0].reuse = ReuseScope::PerIp;
        let (out, _) = run::run(&mut source, &RunSpec::new(&tight), NoTaps).unwrap();
        let point = Point {
            nat_ips: Some(1),
            ports: Some(PortRange::new(1024, 1063)),
            allocator: Some(Allocator::Random { seed: 3 }),
            ..Point::default()
        };
        let row = Row::of(point, &out.summary);
        assert_eq!((row.flows, row.snat_failures), (40, 10));
        assert!((row.failure_rate - 0.2).abs() < 1e-12);
        assert_eq!((row.peak_ports_in_use, row.peak_ports_busy), (40, 40));
        assert_eq!((row.packets, row.dropped), (50, 10));
        // SYNs alone: no flow closes, so no port is used twice and the gaps are empty.
        assert_eq!((row.reuses, row.hazards), (0, 0));
        assert_eq!((row.gap_min_s, row.gap_p50_s), (None, None));
        assert_eq!(
            csv(&[row]),
            "nat_ips,allocator,ports,idle,fin_hold,load,flows,snat_failures,failure_rate,\
             peak_ports_in_use,peak_ports_busy,peak_flows,packets,dropped,reuses,hazards,\
             gap_min_s,gap_p50_s\n\
             1,random:3,1024-1063,,,,40,10,0.200000,40,40,40,50,10,0,0,,\n"
        );
    }
}
