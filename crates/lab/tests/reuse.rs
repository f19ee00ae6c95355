//! Port reuses and TIME_WAIT hazards through the whole path: captures with known closes (the
//! backend's FIN first, the consumer's, a RST, an idle timeout), every reuse, gap and hazard
//! of a hand-made one worked out by hand, and those of a long one recounted from what the
//! backends saw (`backend.pcap`), under each allocator. The project's generators close every
//! flow from the client, so these captures are built here with its packet builder.

use std::io::Cursor;
use std::net::Ipv4Addr;
use std::time::Duration;

use plsim_control::Scenario;
use plsim_control::scenario::{Allocator, PortRange, ReuseScope};
use plsim_engine::Engine;
use plsim_lab::replay::{Frames, PcapTaps};
use plsim_lab::run::{self as sim, RunSpec};
use plsim_lab::summary::{Reuse, Summary};
use plsim_pcap::{FrameBuf, Reader};
use plsim_snat::ReuseTracking;

use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkType, TcpFlags, classify};

const NS: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// The capture's start.
const T0: u64 = 1_700_000_000 * NS;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 10, 2, 4);

#[derive(Clone, Copy, Debug)]
enum Close {
    /// The server's FIN, the client's 10 ms later (the close), the server's last ACK.
    ServerFin,
    /// The client's FIN, the server's 10 ms later (the close), the client's last ACK.
    ClientFin,
    /// A RST from the server (the close).
    Rst,
    /// Nothing: the flow idles out; its close is its last packet.
    Idle,
}

/// One conversation: client `192.168.H.L` port 40000 (each its own host), the handshake 10 ms
/// apart from `start` (ns from the capture's start), a request and a response, the close at
/// `close_at`.
struct Conv {
    host: u16,
    start: u64,
    close_at: u64,
    close: Close,
}

fn frames(convs: &[Conv]) -> Vec<FrameBuf> {
    let mut out: Vec<(u64, usize, Vec<u8>)> = Vec::new();
    let (a, s, f, r, p) = (
        TcpFlags::ACK,
        TcpFlags::SYN,
        TcpFlags::FIN,
        TcpFlags::RST,
        TcpFlags::PSH,
    );
    for (n, c) in convs.iter().enumerate() {
        let client = Ipv4Addr::new(192, 168, (c.host >> 8) as u8, c.host as u8);
        let up = tuple(client, 40_000, SERVER, 443);
        let down = up.reversed();
        let mut push = |t: u64, seg: TcpSegment| out.push((T0 + t, n, seg.to_vec()));
        let seg = |t, flags, seq, ack| TcpSegment {
            seq,
            ack,
            ..TcpSegment::new(t, flags)
        };
        push(c.start, seg(up, s, 100, 0));
        push(c.start + 10 * MS, seg(down, s | a, 500, 101));
        push(c.start + 20 * MS, seg(up, a, 101, 501));
        push(
            c.start + 30 * MS,
            TcpSegment {
                payload: b"request",
                ..seg(up, a | p, 101, 501)
            },
        );
        push(
            c.start + 40 * MS,
            TcpSegment {
                payload: b"response",
                ..seg(down, a | p, 501, 108)
            },
        );
        let t = c.close_at;
        match c.close {
            Close::ServerFin => {
                push(t, seg(down, f | a, 509, 108));
                push(t + 10 * MS, seg(up, f | a, 108, 510));
                push(t + 20 * MS, seg(down, a, 510, 109));
            }
            Close::ClientFin => {
                push(t, seg(up, f | a, 108, 509));
                push(t + 10 * MS, seg(down, f | a, 509, 109));
                push(t + 20 * MS, seg(up, a, 109, 510));
            }
            Close::Rst => push(t, seg(down, r, 509, 0)),
            Close::Idle => {}
        }
    }
    out.sort_by_key(|(t, n, _)| (*t, *n));
    out.into_iter()
        .map(|(ts_ns, _, data)| FrameBuf::new(ts_ns, LinkType::Ethernet, data))
        .collect()
}

/// The built-in scenario with one backend, one NAT IP of `ports` ports, `per-ip` reuse, holds
/// shorter than Linux's TIME_WAIT (10 s after FINs, 5 s after a RST) and a 20 s idle timeout.
fn scenario(ports: u16, allocator: Allocator) -> Scenario {
    let mut sc = Scenario::builtin();
    sc.load_balancer.pools[0].backends.truncate(1);
    assert_eq!(sc.load_balancer.pools[0].backends[0], BACKEND);
    let svc = &mut sc.services[0];
    svc.nat_ips.truncate(1);
    svc.ports = PortRange::new(2000, 2000 + ports - 1);
    svc.allocator = allocator;
    svc.reuse = ReuseScope::PerIp;
    svc.timers.idle = Duration::from_secs(20);
    svc.timers.transitory = Duration::from_secs(30);
    svc.timers.fin_hold = Duration::from_secs(10);
    svc.timers.rst_hold = Duration::from_secs(5);
    sc.validate().expect("a valid scenario");
    sc
}

/// Replays `frames` with both engines (threaded at three batch sizes): the same summary and
/// backend capture every time; gives them back.
fn replay(frames: &[FrameBuf], sc: &Scenario, time_wait: Duration) -> (Summary, Vec<u8>) {
    let run = |engine, batch| {
        let spec = RunSpec {
            engine,
            batch,
            reuse: Some(ReuseTracking {
                time_wait,
                ..ReuseTracking::default()
            }),
            ..RunSpec::new(sc)
        };
        let mut source = Frames::new(frames);
        let (out, taps) = sim::run(&mut source, &spec, PcapTaps::in_memory()).unwrap();
        let (_, _, backend) = taps.finish().unwrap();
        let mut summary = out.summary;
        summary.latency_ns = Default::default();
        summary.throughput = Default::default();
        (summary, backend)
    };
    let reference = run(Engine::Sequential, 1);
    for batch in [1, 7, 1024] {
        assert!(
            run(Engine::Threaded, batch) == reference,
            "threaded, batch {batch}"
        );
    }
    reference
}

fn secs(ms: u64) -> Option<Duration> {
    Some(Duration::from_millis(ms))
}

/// Eight conversations on two ports, `sequential`, every gap worked out by hand (seconds from
/// the capture's start):
///
/// | flow | port | opens | closes                               | reuse gap            |
/// |------|------|-------|--------------------------------------|----------------------|
/// | A    | 2000 | 0     | 1.01, the backend's FIN first        |                      |
/// | B    | 2001 | 2     | 3.01, the consumer's FIN first       |                      |
/// | C    | 2000 | 20    | 20.04, idles out at 40.04            | 18.99 after A: hazard |
/// | D    | 2001 | 21    | 22, the backend's RST                | 17.99 after B        |
/// | E    | 2000 | 50    | 52.01, the backend's FIN first       | 29.96 after C        |
/// | F    | 2001 | 51    | 53.01, the backend's FIN first       | 29 after D           |
/// | G    | 2000 | 70    | 71.01, the consumer's FIN first      | 17.99 after E: hazard |
/// | H    | 2001 | 130   | 131.01                               | 76.99 after F        |
#[test]
fn every_reuse_gap_and_hazard_of_a_hand_made_capture() {
    use Close::*;
    let s = |secs: u64| secs * NS;
    let convs = [
        (0, 1, ServerFin),
        (2, 3, ClientFin),
        (20, 0, Idle),
        (21, 22, Rst),
        (50, 52, ServerFin),
        (51, 53, ServerFin),
        (70, 71, ClientFin),
        (130, 131, ClientFin),
    ];
    let convs: Vec<Conv> = convs
        .iter()
        .enumerate()
        .map(|(i, &(start, close_at, close))| Conv {
            host: i as u16 + 1,
            start: s(start),
            close_at: s(close_at),
            close,
        })
        .collect();
    let frames = frames(&convs);
    let sc = scenario(2, Allocator::Sequential);
    let (summary, backend) = replay(&frames, &sc, Duration::from_secs(60));
    assert_eq!(summary.flows.created, 8);
    assert_eq!(summary.flows.snat_failures, 0);
    let want = Reuse {
        reuses: 6,
        hazards: 2,
        gap_min: secs(17_990),
        // 17.99, 17.99, 18.99, 29, 29.96, 76.99: the lower median is the third.
        gap_p50: secs(18_990),
    };
    let total = summary.reuse.unwrap();
    assert_eq!((total.time_wait_s, total.horizon_s), (60.0, 600.0));
    assert_agree(total.counts, want, "the run");
    assert_eq!(summary.nat_ips[0].reuse, Some(total.counts));
    // The recount from what the backend saw agrees.
    assert_eq!(recount(&backend, Duration::from_secs(60)), want);
    // Under a TIME_WAIT of 18 s only G's 17.99 s is a hazard; under 17.99 s none is.
    let (summary, _) = replay(&frames, &sc, Duration::from_secs(18));
    assert_eq!(summary.reuse.unwrap().counts.hazards, 1);
    let (summary, _) = replay(&frames, &sc, Duration::from_millis(17_990));
    assert_eq!(summary.reuse.unwrap().counts.hazards, 0);
    // In the JSON: seconds.
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["reuse"]["reuses"], 6);
    let p50 = json["reuse"]["gap_p50_s"].as_f64().unwrap();
    assert!((p50 - 18.99).abs() < 18.99 * 1e-3, "{p50}");
    assert_eq!(json["nat_ips"][0]["reuse"]["gap_min_s"], 17.99);
}

/// The reuses, gaps and hazards of a replay recounted from its backend capture alone: a SYN
/// toward the backend opens a flow on its (NAT IP, NAT port, backend, port) (no conversation
/// reopens its own tuple); the flow closes at its second FIN or its RST, or else at its last
/// packet; a hazard is a gap under `time_wait` after a close whose first FIN came from the
/// backend.
fn recount(backend_pcap: &[u8], time_wait: Duration) -> Reuse {
    #[derive(Default)]
    struct Flow {
        fin_out: bool,
        fin_in: bool,
        backend_first: bool,
        closed_at: Option<u64>,
        last: u64,
    }
    impl Flow {
        fn close(&self) -> (u64, bool) {
            match self.closed_at {
                Some(t) => (t, self.backend_first && self.fin_out && self.fin_in),
                None => (self.last, false),
            }
        }
    }
    let mut reader = Reader::from_read("backend.pcap", Cursor::new(backend_pcap.to_vec())).unwrap();
    let mut flows: std::collections::HashMap<_, Flow> = Default::default();
    let (mut gaps, mut hazards) = (Vec::new(), 0u64);
    while let Some(p) = reader.next_frame() {
        let v = classify(p.link, p.data, p.wire_len).unwrap();
        let t = v.tuple();
        let flags = v.flags();
        let toward = t.dst == BACKEND;
        let key = if toward {
            (t.src, t.sport, t.dst, t.dport)
        } else {
            (t.dst, t.dport, t.src, t.sport)
        };
        if toward && flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN {
            if let Some(prev) = flows.get(&key) {
                let (at, backend_began) = prev.close();
                let gap = p.ts_ns - at;
                // Past the record's horizon (ten minutes by default) a reuse is not counted.
                if gap <= 600 * 1_000_000_000 {
                    gaps.push(gap);
                    hazards += u64::from(backend_began && gap < time_wait.as_nanos() as u64);
                }
            }
            flows.insert(key, Flow::default());
        }
        let f = flows
            .get_mut(&key)
            .expect("a packet of a flow the SNAT opened");
        if f.closed_at.is_some() {
            continue;
        }
        f.last = p.ts_ns;
        if flags & TcpFlags::RST != 0 {
            f.closed_at = Some(p.ts_ns);
            f.backend_first = false;
        } else if flags & TcpFlags::FIN != 0 {
            if !f.fin_out && !f.fin_in {
                f.backend_first = !toward;
            }
            if toward {
                f.fin_out = true;
            } else {
                f.fin_in = true;
            }
            if f.fin_out && f.fin_in {
                f.closed_at = Some(p.ts_ns);
            }
        }
    }
    let reuses = gaps.len() as u64;
    gaps.sort_unstable();
    Reuse {
        reuses,
        hazards,
        gap_min: gaps.first().map(|&g| Duration::from_nanos(g)),
        gap_p50: (!gaps.is_empty()).then(|| Duration::from_nanos(gaps[(gaps.len() - 1) / 2])),
    }
}

/// The record's counts equal the recount's: reuses, hazards and the shortest gap exactly, the
/// median to the three significant digits the record keeps.
fn assert_agree(got: Reuse, want: Reuse, what: &str) {
    assert_eq!(
        (got.reuses, got.hazards, got.gap_min),
        (want.reuses, want.hazards, want.gap_min),
        "{what}"
    );
    match (got.gap_p50, want.gap_p50) {
        (Some(g), Some(w)) => {
            let (g, w) = (g.as_secs_f64(), w.as_secs_f64());
            assert!(
                (g - w).abs() <= w * 1e-3 + 1e-6,
                "{what}: p50 {g} s for {w} s"
            );
        }
        (g, w) => assert_eq!(g, w, "{what}"),
    }
}

/// A deterministic stream of numbers (splitmix64).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce5_e4b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 3,000 conversations, one every 0.4 to 1.2 s (0.8 s on average), each 0.1 to 2 s long, half
/// closed by the backend's FIN first, a third by the consumer's, the rest by a RST.
fn long_capture() -> Vec<FrameBuf> {
    let mut mix = Mix(25);
    let mut t = 0;
    let convs: Vec<Conv> = (0..3000u16)
        .map(|i| {
            t += 400 * MS + mix.below(800) * MS;
            let close = match mix.below(6) {
                0..=2 => Close::ServerFin,
                3 | 4 => Close::ClientFin,
                _ => Close::Rst,
            };
            Conv {
                host: i + 1,
                start: t,
                close_at: t + 100 * MS + mix.below(1900) * MS,
                close,
            }
        })
        .collect();
    frames(&convs)
}

/// One NAT IP of 64 ports under the long capture: `sequential` hands a port out again once its
/// cursor has gone round the range, some 50 s later, inside Linux's 60 s TIME_WAIT, so nearly
/// every reuse after a close the backend began is a hazard; `random` and `netfilter` pick any
/// free port, so their gaps spread and many fall past the TIME_WAIT. Every count is what the
/// backend capture shows.
#[test]
fn sequential_makes_more_hazards_than_random_on_a_small_range() {
    let frames = long_capture();
    let tw = Duration::from_secs(60);
    let mut got = Vec::new();
    for allocator in [
        Allocator::Sequential,
        Allocator::Random { seed: 1 },
        Allocator::Netfilter { seed: 1 },
    ] {
        let (summary, backend) = replay(&frames, &scenario(64, allocator), tw);
        let r = summary.reuse.unwrap().counts;
        assert_agree(r, recount(&backend, tw), &allocator.to_string());
        assert_eq!(summary.nat_ips[0].reuse, Some(r));
        assert_eq!(summary.flows.snat_failures, 0, "{allocator}");
        eprintln!("{allocator}: {r:?}");
        got.push(r);
    }
    let (seq, random, netfilter) = (got[0], got[1], got[2]);
    assert!(seq.reuses > 2_500 && random.reuses > 2_500);
    assert!(
        seq.hazards > random.hazards && seq.hazards > netfilter.hazards,
        "{got:?}"
    );
}

/// The other side of it: with 256 ports the cursor takes some 200 s to come round, past the
/// TIME_WAIT, so `sequential` makes no hazard at all while `random` and `netfilter`, whose gaps
/// spread, make some. Which allocator is safer depends on the range against the arrival rate.
#[test]
fn sequential_makes_none_once_its_cycle_outlasts_time_wait() {
    let frames = long_capture();
    let tw = Duration::from_secs(60);
    let hazards = |allocator| {
        let (summary, backend) = replay(&frames, &scenario(256, allocator), tw);
        let r = summary.reuse.unwrap().counts;
        assert_agree(r, recount(&backend, tw), &allocator.to_string());
        r
    };
    let seq = hazards(Allocator::Sequential);
    assert_eq!(seq.hazards, 0);
    assert!(seq.gap_min > secs(60_000));
    assert!(hazards(Allocator::Random { seed: 1 }).hazards > 100);
    assert!(hazards(Allocator::Netfilter { seed: 1 }).hazards > 100);
}
