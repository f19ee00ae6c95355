//! The soak's short version (scripts/soak.sh runs the long one): scripts/soak.toml's three
//! consumers, whose flows end by FIN, by RST and by going quiet, at a hundredth of the rate,
//! flows of 20 s on average, and 300 ports a NAT IP so the ports run out. At every sample of
//! ten minutes of simulated time, the ports in use plus the ports held equal the live flow
//! records: no port is lost and none is counted twice, however flows end.

use std::time::Duration;

use plsim_control::Scenario;
use plsim_control::scenario::PortRange;
use plsim_engine::NoTaps;
use plsim_lab::run::{self, RunSpec};
use plsim_lab::workload::{Overrides, Workloads, specs};
use plsim_traffic::workload::{Arrivals, FlowDuration};

#[test]
fn ports_in_use_and_held_are_the_live_records_at_every_sample() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/soak.toml")).unwrap();
    let mut s = Scenario::from_toml_str(&text).unwrap();
    s.services[0].ports = PortRange::new(1024, 1323);
    for e in &mut s.endpoints {
        let w = e.workload.as_mut().expect("each endpoint has its workload");
        w.arrivals = match w.arrivals {
            Arrivals::Poisson { per_sec } => Arrivals::Poisson {
                per_sec: per_sec / 100.0,
            },
            other => panic!("{other:?}"),
        };
        w.flow_duration = FlowDuration::Exponential { mean_secs: 20.0 };
        w.hosts = 64;
        w.until_secs = Some(600.0);
    }
    s.validate().unwrap();
    let mut source = Workloads::new(&s, specs(&s, &Overrides::default()).unwrap()).unwrap();
    let spec = RunSpec {
        sample_every: Some(Duration::from_secs(1)),
        ..RunSpec::new(&s)
    };
    let (out, _) = run::run(&mut source, &spec, NoTaps).unwrap();
    let summary = out.summary;
    // About 30,000 flows, and the ports ran out: failures, and a NAT IP nearly full.
    assert!(summary.flows.created > 20_000, "{}", summary.flows.created);
    assert!(summary.flows.snat_failures > 0);
    let busiest = summary
        .nat_ips
        .iter()
        .map(|n| n.ports_busy_peak)
        .max()
        .unwrap();
    let total = summary.nat_ips[0].ports_total;
    assert!(busiest * 10 >= total * 9, "{busiest} of {total}");
    assert!(out.series.len() > 600, "{}", out.series.len());
    for x in &out.series {
        let in_use: u64 = x.ports_in_use.iter().map(|(_, n)| n).sum();
        assert_eq!(
            in_use + x.ports_held,
            x.live_flows,
            "at {} s: {in_use} in use and {} held, {} records",
            x.t.as_secs_f64(),
            x.ports_held,
            x.live_flows
        );
    }
}
