//! Exact tests of the synthetic workloads.

mod workload_common;

use std::net::{Ipv4Addr, SocketAddrV4};

use plsim_traffic::captures::{self, EPOCH_NS};
use plsim_traffic::workload::{
    Arrivals, Close, FlowDuration, FlowPlan, Packet, Profile, SpecError, Workload, WorkloadSpec,
};
use plsim_wire::{Dir, TcpFlags};
use workload_common::check;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

fn profile(flows: u64) -> Profile {
    Profile {
        flows: Some(flows),
        ..Profile::default()
    }
}

fn plans(spec: &WorkloadSpec) -> Vec<FlowPlan> {
    spec.schedule().unwrap().collect()
}

#[test]
fn poisson_rate_is_within_2_percent_over_100k_flows() {
    let s = WorkloadSpec::from(Profile {
        arrivals: "poisson:1000".parse().unwrap(),
        ..profile(100_000)
    });
    let p = plans(&s);
    assert_eq!(p.len(), 100_000);
    assert_eq!(p[0].start_ns, EPOCH_NS);
    assert!(p.windows(2).all(|w| w[0].start_ns <= w[1].start_ns));
    let span = (p[99_999].start_ns - p[0].start_ns) as f64 / 1e9;
    let rate = 99_999.0 / span;
    assert!(
        (rate / 1000.0 - 1.0).abs() < 0.02,
        "measured {rate} flows/s"
    );
    // Exponential gaps: the standard deviation equals the mean (within 2%).
    let gaps: Vec<f64> = p
        .windows(2)
        .map(|w| (w[1].start_ns - w[0].start_ns) as f64)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    assert!(
        (var.sqrt() / mean - 1.0).abs() < 0.02,
        "cv {}",
        var.sqrt() / mean
    );
    // Ids count up from 0.
    assert!(p.iter().enumerate().all(|(i, f)| f.id == i as u64));
}

#[test]
fn constant_rate_is_exact() {
    let s = WorkloadSpec::from(Profile {
        arrivals: "constant:500".parse().unwrap(),
        ..profile(100_000)
    });
    let p = plans(&s);
    assert_eq!(p.len(), 100_000);
    for (k, f) in p.iter().enumerate() {
        assert_eq!(f.start_ns, EPOCH_NS + k as u64 * 2 * MS);
    }
}

#[test]
fn until_secs_stops_starting_flows() {
    let s = WorkloadSpec::from(Profile {
        arrivals: Arrivals::Constant { per_sec: 10.0 },
        flows: None,
        until_secs: Some(1.0),
        ..Profile::default()
    });
    // 0.0, 0.1, ..., 1.0 s: eleven flows.
    assert_eq!(plans(&s).len(), 11);
    let both = WorkloadSpec {
        profile: Profile {
            flows: Some(5),
            ..s.profile.clone()
        },
        ..s.clone()
    };
    assert_eq!(plans(&both).len(), 5);
    let poisson = WorkloadSpec {
        profile: Profile {
            arrivals: Arrivals::Poisson { per_sec: 1000.0 },
            ..s.profile
        },
        ..s
    };
    let p = plans(&poisson);
    assert!(p.last().unwrap().start_ns <= EPOCH_NS + S);
    assert!((950..=1050).contains(&p.len()), "{}", p.len());
}

#[test]
fn duration_sample_means_match_theory() {
    let cases = [
        ("fixed:30", 30.0, 0.0),
        ("exp:30", 30.0, 0.02),
        ("lognormal:1,0.5", (1.0f64 + 0.125).exp(), 0.02),
        ("pareto:1,3", 1.5, 0.02),
        ("pareto:2,2.5", 2.0 * 2.5 / 1.5, 0.03),
    ];
    for (form, mean, tol) in cases {
        let d: FlowDuration = form.parse().unwrap();
        assert_eq!(d.mean_secs(), Some(mean), "{form}");
        let s = WorkloadSpec::from(Profile {
            flow_duration: d,
            ..profile(200_000)
        });
        let p = plans(&s);
        let got = p.iter().map(|f| f.duration_ns as f64).sum::<f64>() / p.len() as f64 / 1e9;
        assert!(
            (got / mean - 1.0).abs() <= tol,
            "{form}: mean {got}, expected {mean}"
        );
        if let FlowDuration::Pareto { scale_secs, .. } = d {
            let min = (scale_secs * 1e9) as u64;
            assert!(p.iter().all(|f| f.duration_ns >= min));
        }
    }
    assert_eq!(
        "pareto:1,1".parse::<FlowDuration>().unwrap().mean_secs(),
        None
    );
}

#[test]
fn same_seed_same_packets_other_seed_other_packets() {
    let s = WorkloadSpec::from(Profile {
        flow_duration: FlowDuration::Exponential { mean_secs: 0.5 },
        ..profile(2_000)
    });
    let a: Vec<Packet> = Workload::new(&s).unwrap().collect();
    let b: Vec<Packet> = Workload::new(&s).unwrap().collect();
    assert_eq!(a.len(), 2_000 * 10);
    assert_eq!(a, b);
    let c: Vec<Packet> = Workload::new(&WorkloadSpec {
        profile: Profile {
            seed: Some(2),
            ..s.profile.clone()
        },
        ..s.clone()
    })
    .unwrap()
    .collect();
    assert_eq!(c.len(), a.len());
    assert_ne!(a, c);
    // The schedule is the workload's: every flow's SYN is at its planned start.
    for plan in plans(&s) {
        let syn = a.iter().find(|p| p.flow == plan.id).unwrap();
        assert_eq!(syn.frame.ts_ns, plan.start_ns);
    }
}

#[test]
fn every_packet_classifies_with_valid_checksums_and_consistent_tcp() {
    for close in [Close::Fin, Close::ServerFin, Close::Rst, Close::Idle] {
        let s = WorkloadSpec::from(Profile {
            hosts: 3,
            packets_per_flow: 5,
            bytes_per_flow: 4_001,
            close,
            flow_duration: "lognormal:-1,1".parse().unwrap(),
            ..profile(3_000)
        });
        let mut w = Workload::new(&s).unwrap();
        let seen = check(&s, w.by_ref());
        let per_flow = 3 + 5 + u64::from(close.packets());
        assert_eq!(seen.flows.len(), 3_000);
        assert_eq!(seen.packets, 3_000 * per_flow);
        let st = w.stats();
        assert_eq!(
            (
                st.flows_started,
                st.flows_done,
                st.flows_unplaced,
                st.packets,
                st.bytes
            ),
            (3_000, 3_000, 0, 3_000 * per_flow, 3_000 * 4_001)
        );
        assert_eq!(w.open_flows(), 0);
        // Round robin over the hosts.
        let addr = |id: u64| *seen.flows[&id].tuple.unwrap().src.octets().last().unwrap();
        assert_eq!((addr(0), addr(1), addr(2), addr(3)), (0, 1, 2, 0));
    }
}

/// One flow, every packet exact: handshake, data in pairs, and each close.
#[test]
fn one_flow_exactly() {
    let (a, p, f, r) = (TcpFlags::ACK, TcpFlags::PSH, TcpFlags::FIN, TcpFlags::RST);
    for close in [Close::Fin, Close::ServerFin, Close::Rst, Close::Idle] {
        let s = WorkloadSpec {
            client_base: Ipv4Addr::new(10, 0, 1, 7),
            server: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 8443),
            rtt_ms: 10.0,
            ..WorkloadSpec::from(Profile {
                hosts: 1,
                flow_duration: FlowDuration::Fixed { secs: 1.0 },
                packets_per_flow: 4,
                bytes_per_flow: 2_002,
                close,
                ..profile(1)
            })
        };
        let pkts: Vec<Packet> = Workload::new(&s).unwrap().collect();
        let seen = check(&s, pkts.clone());
        let flow = &seen.flows[&0];
        let t = flow.tuple.unwrap();
        assert_eq!(t.to_string(), "10.0.1.7:1024 -> 10.0.0.4:8443");
        let mut want = vec![
            (0, true, TcpFlags::SYN, 0),
            (5 * MS, false, TcpFlags::SYN | a, 0),
            (10 * MS, true, a, 0),
            // Pairs 495 ms apart ((1 s - RTT) / 2), the answer half an RTT later.
            (10 * MS, true, a | p, 501),
            (15 * MS, false, a | p, 501),
            (505 * MS, true, a | p, 500),
            (510 * MS, false, a | p, 500),
        ];
        match close {
            Close::Fin => want.extend([
                (S, true, f | a, 0),
                (S + 5 * MS, false, f | a, 0),
                (S + 10 * MS, true, a, 0),
            ]),
            Close::ServerFin => want.extend([
                (S, false, f | a, 0),
                (S + 5 * MS, true, f | a, 0),
                (S + 10 * MS, false, a, 0),
            ]),
            Close::Rst => want.push((S, true, r | a, 0)),
            Close::Idle => {}
        }
        let got: Vec<(u64, bool, u8, usize)> = pkts
            .iter()
            .zip(&flow.packets)
            .map(|(pk, &(up, fl, len))| {
                assert_eq!(up, pk.dir == Dir::Forward);
                (pk.frame.ts_ns - EPOCH_NS, up, fl, len)
            })
            .collect();
        assert_eq!(got, want, "{close}");
        // The frame bytes: Ethernet II, consumer MAC on the client's packets.
        let syn = &pkts[0].frame.data;
        assert_eq!(syn.len(), 14 + 20 + 24);
        assert_eq!(&syn[0..12], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&syn[54..58], &[2, 4, 0x05, 0xb4]);
        assert_eq!(
            &pkts[1].frame.data[0..12],
            &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]
        );
        assert_eq!(&pkts[3].frame.data[54..60], b"abcdef");
    }
}

#[test]
fn tuples_wrap_around_and_are_never_shared_by_live_flows() {
    // One host, 1,000 flows/s of 30 s: about 30,000 open at once, and the 64,512 ports wrap.
    let s = WorkloadSpec::from(Profile {
        hosts: 1,
        arrivals: Arrivals::Constant { per_sec: 1000.0 },
        flow_duration: FlowDuration::Fixed { secs: 30.0 },
        packets_per_flow: 0,
        bytes_per_flow: 0,
        close: Close::Rst,
        ..profile(100_000)
    });
    let mut w = Workload::new(&s).unwrap();
    let seen = check(&s, w.by_ref());
    assert_eq!(seen.flows.len(), 100_000);
    assert_eq!(w.stats().flows_unplaced, 0);
    assert_eq!(w.stats().open_peak, 30_001);
    let port = |id: u64| seen.flows[&id].tuple.unwrap().sport;
    assert_eq!((port(0), port(64_511), port(64_512)), (1024, 65535, 1024));
}

#[test]
fn port_exhaustion_skips_flows_and_counts_them() {
    let s = WorkloadSpec::from(Profile {
        hosts: 1,
        arrivals: Arrivals::Constant { per_sec: 1000.0 },
        flow_duration: FlowDuration::Fixed { secs: 100.0 },
        packets_per_flow: 0,
        bytes_per_flow: 0,
        close: Close::Rst,
        ..profile(70_000)
    });
    let mut w = Workload::new(&s).unwrap();
    let seen = check(&s, w.by_ref());
    // Flows 64,512..70,000 start (64.5 s..70 s) before the first ends (100 s).
    assert_eq!(w.stats().flows_unplaced, 70_000 - 64_512);
    assert_eq!(seen.flows.len(), 64_512);
    assert!(seen.flows.contains_key(&64_511) && !seen.flows.contains_key(&64_512));
    // Two hosts have room for all.
    let two = WorkloadSpec {
        profile: Profile {
            hosts: 2,
            ..s.profile
        },
        ..s
    };
    let mut w = Workload::new(&two).unwrap();
    assert_eq!(w.by_ref().count(), 70_000 * 4);
    assert_eq!(w.stats().flows_unplaced, 0);
}

#[test]
fn reuse_delay_keeps_a_tuple_unused() {
    // One host, a flow every 1 ms lasting 0: ports would wrap after 64.512 s; with a 100 s delay
    // the first port comes back only after its flow's RST + 100 s.
    let s = WorkloadSpec {
        rtt_ms: 0.0,
        reuse_delay_secs: 100.0,
        ..WorkloadSpec::from(Profile {
            hosts: 1,
            arrivals: Arrivals::Constant { per_sec: 1000.0 },
            flow_duration: FlowDuration::Fixed { secs: 0.0 },
            packets_per_flow: 0,
            bytes_per_flow: 0,
            close: Close::Rst,
            ..profile(100_001)
        })
    };
    let mut w = Workload::new(&s).unwrap();
    let seen = check(&s, w.by_ref());
    // Flows at 64.512 s ..< 100 s find no port.
    assert_eq!(w.stats().flows_unplaced, 100_000 - 64_512);
    let port = |id: u64| seen.flows[&id].tuple.unwrap().sport;
    assert_eq!((port(0), port(64_511), port(100_000)), (1024, 65535, 1024));
}

#[test]
fn next_into_and_pcap_match_the_iterator() {
    let s = WorkloadSpec::from(profile(300));
    let packets: Vec<Packet> = Workload::new(&s).unwrap().collect();
    let mut w = Workload::new(&s).unwrap();
    let mut buf = Vec::new();
    for p in &packets {
        let meta = w.next_into(&mut buf).unwrap();
        assert_eq!(
            (meta.ts_ns, meta.dir, meta.flow),
            (p.frame.ts_ns, p.dir, p.flow)
        );
        assert_eq!(buf, p.frame.data);
    }
    assert_eq!(w.next_into(&mut buf), None);
    let (streamed, stats) = Workload::new(&s)
        .unwrap()
        .write_pcap_to(Vec::new())
        .unwrap();
    assert_eq!(stats.packets, packets.len() as u64);
    let dir = std::env::temp_dir().join(format!("plsim-workload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let frames: Vec<_> = packets.into_iter().map(|p| p.frame).collect();
    captures::write_pcap(&dir.join("a.pcap"), &frames).unwrap();
    Workload::new(&s)
        .unwrap()
        .write_pcap(&dir.join("b.pcap"))
        .unwrap();
    let a = std::fs::read(dir.join("a.pcap")).unwrap();
    assert_eq!(a, streamed);
    assert_eq!(a, std::fs::read(dir.join("b.pcap")).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parsers_accept_the_flag_forms() {
    assert_eq!(
        "poisson:1000".parse::<Arrivals>(),
        Ok(Arrivals::Poisson { per_sec: 1000.0 })
    );
    assert_eq!(
        " Constant:2.5 ".parse::<Arrivals>(),
        Ok(Arrivals::Constant { per_sec: 2.5 })
    );
    let d = |s: &str| s.parse::<FlowDuration>();
    assert_eq!(d("fixed:30"), Ok(FlowDuration::Fixed { secs: 30.0 }));
    assert_eq!(d("fixed:0"), Ok(FlowDuration::Fixed { secs: 0.0 }));
    assert_eq!(
        d("exp:30"),
        Ok(FlowDuration::Exponential { mean_secs: 30.0 })
    );
    assert_eq!(
        d("lognormal:3,1"),
        Ok(FlowDuration::LogNormal {
            mu: 3.0,
            sigma: 1.0
        })
    );
    assert_eq!(
        d("lognormal:-2, 0.5"),
        Ok(FlowDuration::LogNormal {
            mu: -2.0,
            sigma: 0.5
        })
    );
    assert_eq!(
        d("pareto:1,1.5"),
        Ok(FlowDuration::Pareto {
            scale_secs: 1.0,
            shape: 1.5
        })
    );
    assert_eq!("fin".parse::<Close>(), Ok(Close::Fin));
    assert_eq!("server-fin".parse::<Close>(), Ok(Close::ServerFin));
    assert_eq!(Close::ServerFin.to_string(), "server-fin");
    assert_eq!("RST".parse::<Close>(), Ok(Close::Rst));
    assert_eq!("idle".parse::<Close>(), Ok(Close::Idle));
    assert_eq!(
        Arrivals::Poisson { per_sec: 1000.0 }.to_string(),
        "poisson:1000"
    );
    assert_eq!(d("pareto:1,1.5").unwrap().to_string(), "pareto:1,1.5");
    assert_eq!(Close::Idle.to_string(), "idle");
}

#[test]
fn parsers_reject_bad_forms_with_a_message() {
    for bad in [
        "",
        "poisson",
        "poisson:",
        "poisson:abc",
        "poisson:1,2",
        "gamma:1",
        "poisson;5",
    ] {
        let e = bad.parse::<Arrivals>().unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::Syntax {
                    what: "arrivals",
                    ..
                }
            ),
            "{bad}: {e}"
        );
    }
    assert_eq!(
        "poisson:x".parse::<Arrivals>().unwrap_err().to_string(),
        "bad arrivals `poisson:x`: expected poisson:RATE or constant:RATE (flows per second, > 0)"
    );
    for bad in ["poisson:0", "poisson:-1", "constant:inf", "constant:NaN"] {
        let e = bad.parse::<Arrivals>().unwrap_err();
        assert!(matches!(e, SpecError::OutOfRange { .. }), "{bad}: {e}");
    }
    assert_eq!(
        "poisson:-1".parse::<Arrivals>().unwrap_err().to_string(),
        "the arrival rate must be a finite number > 0, got -1"
    );
    for bad in [
        "fixed",
        "fixed:1,2",
        "exp:",
        "lognormal:3",
        "pareto:1",
        "weibull:1,2",
        "30",
    ] {
        let e = bad.parse::<FlowDuration>().unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::Syntax {
                    what: "duration",
                    ..
                }
            ),
            "{bad}: {e}"
        );
    }
    for bad in [
        "fixed:-1",
        "exp:0",
        "exp:nan",
        "lognormal:inf,1",
        "lognormal:1,-1",
        "pareto:0,1",
        "pareto:1,0",
    ] {
        let e = bad.parse::<FlowDuration>().unwrap_err();
        assert!(matches!(e, SpecError::OutOfRange { .. }), "{bad}: {e}");
    }
    assert_eq!(
        "pareto:1,0"
            .parse::<FlowDuration>()
            .unwrap_err()
            .to_string(),
        "a Pareto shape must be a finite number > 0, got 0"
    );
    assert_eq!(
        "fin2".parse::<Close>().unwrap_err().to_string(),
        "bad close `fin2`: expected fin, server-fin, rst or idle"
    );
}

#[test]
fn bad_specs_are_refused_with_a_reason() {
    let base = WorkloadSpec::default();
    assert_eq!(base.validate(), Ok(()));
    let err = |s: WorkloadSpec| Workload::new(&s).unwrap_err().to_string();
    assert_eq!(
        err(WorkloadSpec {
            profile: Profile {
                hosts: 0,
                ..base.profile.clone()
            },
            ..base.clone()
        }),
        "hosts must be between 1 and 16777216, got 0"
    );
    assert_eq!(
        err(WorkloadSpec {
            client_base: Ipv4Addr::new(255, 255, 255, 250),
            ..base.clone()
        }),
        "10 consumer hosts from 255.255.255.250 run past 255.255.255.255"
    );
    assert_eq!(
        err(WorkloadSpec {
            client_base: Ipv4Addr::new(10, 0, 0, 0),
            ..base.clone()
        }),
        "the server 10.0.0.4 is one of the consumer hosts"
    );
    assert_eq!(
        err(WorkloadSpec {
            profile: Profile {
                bytes_per_flow: 4 * 1460 + 1,
                ..base.profile.clone()
            },
            ..base.clone()
        }),
        "5841 bytes over 4 data packets do not fit: at most 1460 bytes a packet"
    );
    assert_eq!(
        err(WorkloadSpec {
            profile: Profile {
                packets_per_flow: 0,
                ..base.profile.clone()
            },
            ..base.clone()
        }),
        "2000 bytes over 0 data packets do not fit: at most 1460 bytes a packet"
    );
    assert_eq!(
        err(WorkloadSpec {
            profile: Profile {
                flows: None,
                ..base.profile.clone()
            },
            ..base.clone()
        }),
        "the workload has no end: set flows or until_secs"
    );
    assert_eq!(
        err(WorkloadSpec {
            rtt_ms: -1.0,
            ..base.clone()
        }),
        "rtt_ms must be a finite number >= 0, got -1"
    );
    assert_eq!(
        err(WorkloadSpec {
            server: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 0),
            ..base.clone()
        }),
        "the server port must be between 1 and 65535, got 0"
    );
    assert!(matches!(
        base.clone().schedule().map(|_| ()).and(
            WorkloadSpec {
                profile: Profile {
                    arrivals: Arrivals::Poisson { per_sec: f64::NAN },
                    ..base.profile
                },
                ..base
            }
            .schedule()
            .map(|_| ())
        ),
        Err(SpecError::OutOfRange {
            what: "the arrival rate",
            ..
        })
    ));
}
