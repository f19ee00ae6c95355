//! A replay's result is the sequential run's, whatever the engine and the batch size: on
//! captures that look like the world (quiet gaps from microseconds to hours, flows already open
//! when the capture starts, FIN, RST and idle closes, reused client ports, a handful of NAT
//! ports under every allocator, a reject and a backend going down mid-run, events after the
//! last packet), on every shipped capture and on every real capture others wrote.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plsim_control::Scenario;
use plsim_control::scenario::{Allocator, Event as Timeline, PortRange, ReuseScope};
use plsim_engine::Engine;
use plsim_lab::replay::{Frames, PacketSource, PcapTaps};
use plsim_lab::run::{self as sim, RunSpec};
use plsim_lab::series::Sample;
use plsim_pcap::FrameBuf;
use plsim_pcap::Reader;
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkType, TcpFlags};
use proptest::prelude::*;

/// Everything a run finds: the summary without its wall-clock parts, the time series, both
/// captures byte for byte.
#[derive(Debug, PartialEq)]
struct Found {
    summary: serde_json::Value,
    series: Vec<Sample>,
    consumer: Vec<u8>,
    backend: Vec<u8>,
}

fn replay<S: PacketSource>(
    source: &mut S,
    scenario: &Scenario,
    pickup: bool,
    engine: Engine,
    batch: usize,
) -> Found {
    let spec = RunSpec {
        pickup,
        sample_every: Some(Duration::from_millis(700)),
        engine,
        batch,
        // The port reuses and hazards are in the summary compared.
        ..RunSpec::new(scenario)
    };
    let (out, taps) = sim::run(source, &spec, PcapTaps::in_memory()).expect("the run starts");
    let (_, consumer, backend) = taps.finish().expect("in memory");
    let mut summary = serde_json::to_value(&out.summary).unwrap();
    let o = summary.as_object_mut().unwrap();
    o.remove("latency_ns");
    o.remove("throughput");
    Found {
        summary,
        series: out.series,
        consumer,
        backend,
    }
}

/// The sequential result, then the threaded one at each batch size: all equal.
fn assert_exact(
    frames: &[FrameBuf],
    scenario: &Scenario,
    pickup: bool,
    batches: &[usize],
) -> Found {
    let reference = replay(
        &mut Frames::new(frames),
        scenario,
        pickup,
        Engine::Sequential,
        1,
    );
    for &b in batches {
        let got = replay(
            &mut Frames::new(frames),
            scenario,
            pickup,
            Engine::Threaded,
            b,
        );
        assert!(
            got == reference,
            "batch {b}: {:#?}\nsequential: {:#?}",
            got.summary,
            reference.summary
        );
    }
    reference
}

/// One generated conversation.
#[derive(Clone, Debug)]
struct Conv {
    /// From the start of the conversation before.
    start_gap_ns: u64,
    client: u8,
    cport: u8,
    server: u8,
    sport: u8,
    /// Does the capture show its handshake? (Otherwise it was open before the capture.)
    syn: bool,
    data: u8,
    close: Close,
    /// Between its packets.
    step_ns: u64,
}

#[derive(Clone, Copy, Debug)]
enum Close {
    Fin,
    Rst,
    /// No close: it goes idle.
    Idle,
}

fn frames_of(convs: &[Conv]) -> Vec<FrameBuf> {
    let mut out: Vec<(u64, usize, Vec<u8>)> = Vec::new();
    let mut t0 = 1_700_000_000_000_000_000u64;
    for (n, c) in convs.iter().enumerate() {
        t0 += c.start_gap_ns;
        let client = Ipv4Addr::new(192, 168, 7, 10 + c.client);
        let server = Ipv4Addr::new(198, 51, 100, 1 + c.server);
        let up = tuple(
            client,
            40_000 + u16::from(c.cport),
            server,
            [80, 443, 8080][usize::from(c.sport % 3)],
        );
        let down = up.reversed();
        let mut t = t0;
        let mut push = |tt: &mut u64, seg: TcpSegment| {
            out.push((*tt, n, seg.to_vec()));
            *tt += c.step_ns;
        };
        let (a, s, f, r) = (TcpFlags::ACK, TcpFlags::SYN, TcpFlags::FIN, TcpFlags::RST);
        if c.syn {
            push(
                &mut t,
                TcpSegment {
                    seq: 100,
                    ..TcpSegment::new(up, s)
                },
            );
            push(
                &mut t,
                TcpSegment {
                    seq: 500,
                    ack: 101,
                    ..TcpSegment::new(down, s | a)
                },
            );
            push(
                &mut t,
                TcpSegment {
                    seq: 101,
                    ack: 501,
                    ..TcpSegment::new(up, a)
                },
            );
        }
        for i in 0..c.data {
            let dir = if i % 2 == 0 { up } else { down };
            push(
                &mut t,
                TcpSegment {
                    seq: 101,
                    ack: 501,
                    payload: &[i; 20],
                    ..TcpSegment::new(dir, a | TcpFlags::PSH)
                },
            );
        }
        match c.close {
            Close::Fin => {
                push(
                    &mut t,
                    TcpSegment {
                        seq: 200,
                        ack: 600,
                        ..TcpSegment::new(up, f | a)
                    },
                );
                push(
                    &mut t,
                    TcpSegment {
                        seq: 600,
                        ack: 201,
                        ..TcpSegment::new(down, f | a)
                    },
                );
                push(
                    &mut t,
                    TcpSegment {
                        seq: 201,
                        ack: 601,
                        ..TcpSegment::new(up, a)
                    },
                );
            }
            Close::Rst => push(
                &mut t,
                TcpSegment {
                    seq: 600,
                    ..TcpSegment::new(down, r)
                },
            ),
            Close::Idle => {}
        }
    }
    // Capture order: by time, ties by conversation.
    out.sort_by_key(|(t, n, _)| (*t, *n));
    out.into_iter()
        .map(|(ts_ns, _, data)| FrameBuf::new(ts_ns, LinkType::Ethernet, data))
        .collect()
}

fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![
        1_000u64..1_000_000,                    // microseconds
        1_000_000u64..5_000_000_000,            // up to seconds
        5_000_000_000u64..600_000_000_000,      // up to ten minutes: timers run out
        600_000_000_000u64..10_800_000_000_000, // up to three hours
    ]
}

fn conv() -> impl Strategy<Value = Conv> {
    (
        gap(),
        (0u8..4, 0u8..3, 0u8..3, 0u8..3),
        prop::bool::weighted(0.8),
        0u8..4,
        prop_oneof![Just(Close::Fin), Just(Close::Rst), Just(Close::Idle)],
        prop_oneof![1_000u64..50_000_000, 1_000_000_000u64..400_000_000_000],
    )
        .prop_map(
            |(start_gap_ns, (client, cport, server, sport), syn, data, close, step_ns)| Conv {
                start_gap_ns,
                client,
                cport,
                server,
                sport,
                syn,
                data,
                close,
                step_ns,
            },
        )
}

/// The built-in scenario with 1 to 3 NAT IPs of a handful of ports, any allocator, short
/// timers, and some of these events (seconds from the first packet): a reject, a backend down
/// and up, a NAT IP added.
#[derive(Clone, Debug)]
struct Setting {
    nat_ips: usize,
    ports: u16,
    per_ip: bool,
    /// `block:N` is cut to the range.
    allocator: Allocator,
    reject: Option<f64>,
    down: Option<(f64, f64)>,
    add_nat_ip: Option<f64>,
    /// The service sends PROXY protocol v2 headers.
    proxy: bool,
    /// The service answers a SYN it has no port for with a RST.
    rst: bool,
    /// A backend going down ends its flows at once (`on_backend_down = reset`).
    reset: bool,
}

fn setting() -> impl Strategy<Value = Setting> {
    (
        1usize..=3,
        1u16..=4,
        any::<bool>(),
        prop_oneof![
            Just(Allocator::Sequential),
            (0u64..4).prop_map(|seed| Allocator::Random { seed }),
            (1u16..=4).prop_map(Allocator::Block),
            (0u64..4).prop_map(|seed| Allocator::Netfilter { seed }),
        ],
        prop::option::weighted(0.3, 0.0f64..2_000.0),
        prop::option::weighted(0.4, (0.0f64..1_000.0, 0.0f64..5_000.0)),
        prop::option::weighted(0.3, 0.0f64..3_000.0),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(nat_ips, ports, per_ip, allocator, reject, down, add_nat_ip, proxy, rst, reset)| {
                Setting {
                    nat_ips,
                    ports,
                    per_ip,
                    allocator,
                    reject,
                    down,
                    add_nat_ip,
                    proxy,
                    rst,
                    reset,
                }
            },
        )
}

fn scenario_of(s: &Setting) -> Scenario {
    let mut sc = Scenario::builtin();
    let svc = &mut sc.services[0];
    let spare = svc.nat_ips[7];
    svc.nat_ips.truncate(s.nat_ips);
    svc.ports = PortRange {
        lo: 2000,
        hi: 2000 + s.ports - 1,
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
    svc.timers.idle = Duration::from_secs(60);
    svc.timers.transitory = Duration::from_secs(30);
    svc.timers.fin_hold = Duration::from_secs(20);
    svc.timers.rst_hold = Duration::from_secs(5);
    svc.enable_proxy_protocol = s.proxy;
    svc.rst_on_exhaustion = s.rst;
    if s.reset {
        sc.load_balancer.on_backend_down = plsim_control::scenario::OnBackendDown::Reset;
    }
    let backend = sc.load_balancer.pools[0].backends[1];
    if let Some(at) = s.reject {
        sc.timeline.push(Timeline::Reject {
            at,
            endpoint: "pe-app".into(),
        });
    }
    if let Some((at, for_s)) = s.down {
        sc.timeline.push(Timeline::BackendDown { at, backend });
        sc.timeline.push(Timeline::BackendUp {
            at: at + for_s,
            backend,
        });
    }
    if let Some(at) = s.add_nat_ip {
        sc.timeline.push(Timeline::AddNatIp {
            at,
            service: "app".into(),
            ip: spare,
        });
    }
    sc.validate().expect("a valid scenario");
    sc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Sparse captures through the whole path under every allocator: the threaded engine
    /// gives the sequential result, summary (its port reuses and hazards, its SNAT failures
    /// exhausted and given up, too), time series and both captures, for batch sizes 1, 2, 3,
    /// 64 and 1024.
    #[test]
    fn sparse_captures_replay_exactly(
        convs in prop::collection::vec(conv(), 1..24),
        setting in setting(),
        pickup in any::<bool>(),
    ) {
        let frames = frames_of(&convs);
        let scenario = scenario_of(&setting);
        let found = assert_exact(&frames, &scenario, pickup, &[1, 2, 3, 64, 1024]);
        // Every packet counted once.
        let p = &found.summary["packets"];
        let n = |v: &serde_json::Value| v.as_u64().unwrap();
        let dropped: u64 = p["dropped"].as_object().unwrap().values().map(n).sum();
        prop_assert_eq!(n(&p["consumer_in"]) + n(&p["backend_in"]), frames.len() as u64);
        prop_assert_eq!(
            n(&p["consumer_in"]) + n(&p["backend_in"]),
            n(&p["to_backend"]) + n(&p["to_consumer"]) + dropped
        );
        // PROXY protocol headers change the backend side only: the consumer's capture and
        // every count are those of the same run without them.
        if setting.proxy {
            let plain = scenario_of(&Setting { proxy: false, ..setting.clone() });
            let without = replay(&mut Frames::new(&frames), &plain, pickup, Engine::Sequential, 1);
            prop_assert!(found.consumer == without.consumer, "consumer.pcap differs with headers");
            let mut a = found.summary.clone();
            let headers = a["packets"].as_object_mut().unwrap().remove("proxy_headers");
            let mut b = without.summary.clone();
            b["packets"].as_object_mut().unwrap().remove("proxy_headers");
            for s in [&mut a, &mut b] {
                s.as_object_mut().unwrap().remove("throughput");
                s.as_object_mut().unwrap().remove("latency_ns");
            }
            prop_assert_eq!(a, b);
            // One a connection at most: each goes with a packet that reached a backend.
            prop_assert!(headers.unwrap().as_u64().unwrap() <= n(&found.summary["packets"]["to_backend"]));
        }
    }
}

/// The exact-replay issue's reproducer: two complete conversations 300 s apart. The load
/// balancer used to expire the first flow on the clock of the second, before the first flow's
/// answers had come back.
#[test]
fn two_conversations_far_apart_both_get_their_answers() {
    let convs: Vec<Conv> = (0..2)
        .map(|i| Conv {
            start_gap_ns: 300_000_000_000,
            client: i,
            cport: i,
            server: 0,
            sport: 0,
            syn: true,
            data: 0,
            close: Close::Fin,
            step_ns: 20_000_000,
        })
        .collect();
    let frames = frames_of(&convs);
    assert_eq!(frames.len(), 12);
    let found = assert_exact(&frames, &Scenario::builtin(), false, &[1, 7, 1024]);
    assert_eq!(found.summary["packets"]["to_consumer"], 4);
    assert_eq!(found.summary["packets"]["to_backend"], 8);
    assert_eq!(found.summary["packets"]["dropped"]["no_flow"], 0);
}

fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every capture of a directory, read into memory (frames of the first packet's link type;
/// the rest are left out of this comparison).
fn captures_in(dir: &Path) -> Vec<(PathBuf, Vec<FrameBuf>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let mut r = Reader::open(&p).ok()?;
            let mut link = None;
            let mut frames = Vec::new();
            while let Some(pk) = r.next_frame() {
                let l = *link.get_or_insert(pk.link);
                if pk.link == l {
                    frames.push(pk.to_owned());
                }
            }
            Some((p, frames))
        })
        .collect()
}

fn replay_every_capture_of(dir: &Path) {
    let captures = captures_in(dir);
    assert!(!captures.is_empty(), "no capture in {}", dir.display());
    for (path, frames) in captures {
        for pickup in [false, true] {
            let found = std::panic::catch_unwind(|| {
                assert_exact(
                    &frames,
                    &Scenario::builtin(),
                    pickup,
                    &[1, 7, 1024, 100_000],
                )
            });
            assert!(
                found.is_ok(),
                "{} (pickup {pickup}) differs",
                path.display()
            );
        }
    }
}

#[test]
fn every_shipped_capture_replays_exactly() {
    replay_every_capture_of(&project_dir().join("pcaps"));
}

#[test]
fn every_real_capture_replays_exactly() {
    let dir = project_dir().join("../shared/pcaps-real");
    if !dir.is_dir() {
        eprintln!(
            "skipping: {} is absent (it sits beside the project in CI)",
            dir.display()
        );
        return;
    }
    replay_every_capture_of(&dir);
}
