//! The core whose connections are one record each (the threaded engine's) against the stages
//! on their own tables (the sequential engine's, the definition of a run), on dense random
//! traffic over a handful of tuples: SYNs on flows whose backend went down (a flow picked
//! afresh, its old SNAT part left alone, later taken on again), two frontend ports leading to
//! one backend port (ambiguous flows), RSTs answering SYNs no port was free for, flows reset
//! with their backend, expiry of either part first. Everything must be equal: the summary,
//! the time series, both captures, at every batch size.

use std::net::Ipv4Addr;
use std::time::Duration;

use plsim_control::Scenario;
use plsim_control::scenario::{Allocator, Event as Timeline, OnBackendDown, PortRange, ReuseScope};
use plsim_engine::Engine;
use plsim_lab::replay::{Frames, PcapTaps};
use plsim_lab::run::{self as sim, RunSpec};
use plsim_pcap::FrameBuf;
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkType, TcpFlags};
use proptest::prelude::*;

/// One packet: who sends it (client end `c` of 2, port `cp` of 2; server `s` of 2, port `sp`
/// of 2), which way, what flags, how long after the one before.
#[derive(Clone, Debug)]
struct Pkt {
    c: u8,
    cp: u8,
    s: u8,
    sp: u8,
    from_client: bool,
    flags: u8,
    data: bool,
    gap_ns: u64,
}

fn pkt() -> impl Strategy<Value = Pkt> {
    let flags = prop_oneof![
        3 => Just(TcpFlags::SYN),
        2 => Just(TcpFlags::SYN | TcpFlags::ACK),
        6 => Just(TcpFlags::ACK),
        2 => Just(TcpFlags::FIN | TcpFlags::ACK),
        1 => Just(TcpFlags::RST),
    ];
    let gap = prop_oneof![
        4 => 1_000u64..5_000_000,
        2 => 1_000_000_000u64..30_000_000_000,
        1 => 60_000_000_000u64..400_000_000_000,
    ];
    (
        (0u8..2, 0u8..2, 0u8..2, 0u8..2),
        prop::bool::weighted(0.6),
        flags,
        any::<bool>(),
        gap,
    )
        .prop_map(|((c, cp, s, sp), from_client, flags, data, gap_ns)| Pkt {
            c,
            cp,
            s,
            sp,
            from_client,
            flags,
            data,
            gap_ns,
        })
}

fn frames(pkts: &[Pkt]) -> Vec<FrameBuf> {
    let mut t = 1_700_000_000_000_000_000u64;
    pkts.iter()
        .enumerate()
        .map(|(i, p)| {
            t += p.gap_ns;
            let client = (
                Ipv4Addr::new(192, 168, 1, 1 + p.c),
                40_000 + u16::from(p.cp),
            );
            let server = (
                Ipv4Addr::new(198, 51, 100, 1 + p.s),
                [80, 443][usize::from(p.sp)],
            );
            let (a, b) = if p.from_client {
                (client, server)
            } else {
                (server, client)
            };
            let payload = [0x5a; 40];
            let seg = TcpSegment {
                seq: 1_000 + i as u32 * 97,
                ack: 7_000 + i as u32 * 31,
                payload: if p.data { &payload } else { &[] },
                ..TcpSegment::new(tuple(a.0, a.1, b.0, b.1), p.flags)
            };
            FrameBuf::new(t, LinkType::Ethernet, seg.to_vec())
        })
        .collect()
}

/// The built-in scenario cut down to two backends, one or two NAT IPs of a few ports, short
/// timers, with or without port rules that lead two frontend ports to one backend port, RSTs
/// on exhaustion, `reset` on backend down, and a backend going down and up.
#[derive(Clone, Debug)]
struct Setting {
    nat_ips: usize,
    ports: u16,
    per_ip: bool,
    allocator: Allocator,
    port_rules: bool,
    rst: bool,
    reset: bool,
    down: Option<(f64, f64)>,
    /// The other backend going down and up too (a flow moved away and back again).
    down2: Option<(f64, f64)>,
    pickup: bool,
}

fn setting() -> impl Strategy<Value = Setting> {
    (
        1usize..=2,
        1u16..=3,
        any::<bool>(),
        prop_oneof![
            Just(Allocator::Sequential),
            (0u64..3).prop_map(|seed| Allocator::Random { seed }),
            (1u16..=2).prop_map(Allocator::Block),
            (0u64..3).prop_map(|seed| Allocator::Netfilter { seed }),
        ],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::weighted(0.7, (0.0f64..200.0, 0.0f64..400.0)),
        prop::option::weighted(0.5, (0.0f64..200.0, 0.0f64..400.0)),
        any::<bool>(),
    )
        .prop_map(
            |(nat_ips, ports, per_ip, allocator, port_rules, rst, reset, down, down2, pickup)| {
                Setting {
                    nat_ips,
                    ports,
                    per_ip,
                    allocator,
                    port_rules,
                    rst,
                    reset,
                    down,
                    down2,
                    pickup,
                }
            },
        )
}

fn scenario_of(s: &Setting) -> Scenario {
    let mut sc = Scenario::builtin();
    let lb = &mut sc.load_balancer;
    lb.pools[0].backends.truncate(2);
    if s.port_rules {
        let mut r80 = lb.rules[0].clone();
        r80.name = "r80".into();
        r80.kind = plsim_lb::RuleKind::Port {
            frontend_port: 80,
            backend_port: 443,
        };
        let mut r443 = lb.rules[0].clone();
        r443.name = "r443".into();
        r443.kind = plsim_lb::RuleKind::Port {
            frontend_port: 443,
            backend_port: 443,
        };
        lb.rules = vec![r80, r443];
    }
    if s.reset {
        lb.on_backend_down = OnBackendDown::Reset;
    }
    let (backend, other) = (lb.pools[0].backends[0], lb.pools[0].backends[1]);
    let svc = &mut sc.services[0];
    svc.nat_ips.truncate(s.nat_ips);
    svc.ports = PortRange {
        lo: 3000,
        hi: 3000 + s.ports - 1,
    };
    svc.allocator = match s.allocator {
        Allocator::Block(n) => Allocator::Block(n.min(s.ports)),
        a => a,
    };
    svc.reuse = if s.per_ip {
        ReuseScope::PerIp
    } else {
        ReuseScope::PerBackend
    };
    svc.rst_on_exhaustion = s.rst;
    svc.timers.idle = Duration::from_secs(40);
    svc.timers.transitory = Duration::from_secs(20);
    svc.timers.fin_hold = Duration::from_secs(15);
    svc.timers.rst_hold = Duration::from_secs(5);
    for (backend, down) in [(backend, s.down), (other, s.down2)] {
        if let Some((at, for_s)) = down {
            sc.timeline.push(Timeline::BackendDown { at, backend });
            sc.timeline.push(Timeline::BackendUp {
                at: at + for_s,
                backend,
            });
        }
    }
    sc.validate().expect("a valid scenario");
    sc
}

fn run(frames: &[FrameBuf], sc: &Scenario, pickup: bool, engine: Engine, batch: usize) -> String {
    let spec = RunSpec {
        pickup,
        sample_every: Some(Duration::from_secs(3)),
        engine,
        batch,
        ..RunSpec::new(sc)
    };
    let (out, taps) = sim::run(&mut Frames::new(frames), &spec, PcapTaps::in_memory()).unwrap();
    let (_, consumer, backend) = taps.finish().unwrap();
    let mut summary = serde_json::to_value(&out.summary).unwrap();
    let o = summary.as_object_mut().unwrap();
    o.remove("latency_ns");
    o.remove("throughput");
    format!("{summary}\n{:?}\n{consumer:?}\n{backend:?}", out.series)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_shared_core_gives_the_stages_result(
        pkts in prop::collection::vec(pkt(), 1..60),
        s in setting(),
    ) {
        let frames = frames(&pkts);
        let sc = scenario_of(&s);
        let reference = run(&frames, &sc, s.pickup, Engine::Sequential, 1);
        for batch in [1, 2, 5, 1024] {
            let got = run(&frames, &sc, s.pickup, Engine::Threaded, batch);
            prop_assert!(got == reference, "batch {}: the shared core differs", batch);
        }
    }
}

/// A flow moved away from its backend and back again: its SNAT part, left alone when the load
/// balancer picked another backend, is taken on again when the flow returns, on the very same
/// NAT port, as the SNAT stage finds its own flow by the tuple it leaves the load balancer with.
#[test]
fn a_flow_moved_away_and_back_gets_its_snat_part_again() {
    let mut sc = Scenario::builtin();
    let lb = &mut sc.load_balancer;
    lb.pools[0].backends.truncate(2);
    let (b0, b1) = (lb.pools[0].backends[0], lb.pools[0].backends[1]);
    for (at, backend, down) in [
        (0.0, b1, true),
        (2.0, b1, false),
        (3.0, b0, true),
        (5.0, b0, false),
        (5.5, b1, true),
    ] {
        sc.timeline.push(if down {
            Timeline::BackendDown { at, backend }
        } else {
            Timeline::BackendUp { at, backend }
        });
    }
    sc.validate().unwrap();
    let syn = |gap_ns| Pkt {
        c: 0,
        cp: 0,
        s: 0,
        sp: 1,
        from_client: true,
        flags: TcpFlags::SYN,
        data: false,
        gap_ns,
    };
    // SYNs at 0.5 s (on b0: b1 is down), 4 s (b0 down: moved to b1), 6 s (b1 down: back to b0).
    let frames = frames(&[syn(500_000_000), syn(3_500_000_000), syn(2_000_000_000)]);
    let reference = run(&frames, &sc, false, Engine::Sequential, 1);
    for batch in [1, 3] {
        assert_eq!(run(&frames, &sc, false, Engine::Threaded, batch), reference);
    }
    // What the backends saw: the first and the last SYN from the same NAT address and port.
    let spec = RunSpec::new(&sc);
    let (_, taps) = sim::run(&mut Frames::new(&frames), &spec, PcapTaps::in_memory()).unwrap();
    let (_, _, backend) = taps.finish().unwrap();
    let mut r =
        plsim_pcap::Reader::from_read("backend.pcap", std::io::Cursor::new(backend)).unwrap();
    let mut seen = Vec::new();
    while let Some(f) = r.next_frame() {
        let v = plsim_wire::classify(f.link, f.data, f.wire_len).unwrap();
        let t = v.tuple();
        seen.push((t.src, t.sport, t.dst));
    }
    assert_eq!(seen.len(), 3);
    assert_eq!((seen[0].2, seen[1].2, seen[2].2), (b0, b1, b0));
    assert_eq!((seen[0].0, seen[0].1), (seen[2].0, seen[2].1));
    assert_ne!(seen[1], seen[0]);
}
