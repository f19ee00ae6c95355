//! Features of the stages that scenarios reach: a backend going down resets its flows under
//! `on_backend_down = reset` (and their NAT ports come back), and a SYN with no NAT port left
//! is answered with a RST under `rst_on_exhaustion`. Both engines agree on every byte.

use std::net::Ipv4Addr;

use plsim_control::Scenario;
use plsim_control::scenario::{Event as Timeline, OnBackendDown, PortRange, ReuseScope};
use plsim_engine::Engine;
use plsim_lab::replay::{Frames, PcapTaps};
use plsim_lab::run::{self, RunSpec};
use plsim_lab::summary::Summary;
use plsim_pcap::FrameBuf;
use plsim_pcap::Reader;
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkType, TcpFlags, checksum, classify};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn at(secs: f64, s: TcpSegment) -> FrameBuf {
    let ts_ns = 1_700_000_000_000_000_000 + (secs * 1e9) as u64;
    FrameBuf::new(ts_ns, LinkType::Ethernet, s.to_vec())
}

fn client(i: u8) -> (Ipv4Addr, u16) {
    (Ipv4Addr::new(192, 168, 5, 10 + i), 40_000 + u16::from(i))
}

/// Runs frames through a scenario with both engines; they must agree on everything. Returns the
/// summary and the consumer capture.
fn run_both(frames: &[FrameBuf], scenario: &Scenario) -> (Summary, Vec<u8>) {
    let go = |engine, batch| {
        let spec = RunSpec {
            engine,
            batch,
            ..RunSpec::new(scenario)
        };
        let (out, taps) = run::run(&mut Frames::new(frames), &spec, PcapTaps::in_memory()).unwrap();
        let (_, consumer, backend) = taps.finish().unwrap();
        let mut s = out.summary;
        s.latency_ns = Default::default();
        s.throughput = Default::default();
        (s, consumer, backend)
    };
    let reference = go(Engine::Sequential, 1);
    for batch in [1, 3, 1024] {
        assert!(go(Engine::Threaded, batch) == reference, "batch {batch}");
    }
    (reference.0, reference.1)
}

/// Ten connections opened, a backend down at 5 s, a data packet on every connection at 10 s.
fn handshakes_then_data(on_down: OnBackendDown) -> (Summary, Summary) {
    let mut frames = Vec::new();
    for i in 0..10u8 {
        let (c, cp) = client(i);
        let up = tuple(c, cp, SERVER, 443);
        let t = f64::from(i) * 0.01;
        frames.push(at(
            t,
            TcpSegment {
                seq: 1,
                ..TcpSegment::new(up, TcpFlags::SYN)
            },
        ));
        frames.push(at(
            t + 0.001,
            TcpSegment {
                seq: 9,
                ack: 2,
                ..TcpSegment::new(up.reversed(), TcpFlags::SYN | TcpFlags::ACK)
            },
        ));
        frames.push(at(
            t + 0.002,
            TcpSegment {
                seq: 2,
                ack: 10,
                ..TcpSegment::new(up, TcpFlags::ACK)
            },
        ));
    }
    for i in 0..10u8 {
        let (c, cp) = client(i);
        let data = TcpSegment {
            seq: 2,
            ack: 10,
            payload: b"after the backend went down",
            ..TcpSegment::new(tuple(c, cp, SERVER, 443), TcpFlags::ACK | TcpFlags::PSH)
        };
        frames.push(at(10.0 + f64::from(i) * 0.01, data));
    }
    let mut s = Scenario::builtin();
    s.load_balancer.on_backend_down = on_down;
    // Before the backend goes down: the same run without the event, to see where flows went.
    let (before, _) = run_both(&frames, &s);
    s.timeline.push(Timeline::BackendDown {
        at: 5.0,
        backend: s.load_balancer.pools[0].backends[0],
    });
    s.validate().unwrap();
    let (after, _) = run_both(&frames, &s);
    (before, after)
}

#[test]
fn a_reset_backend_gives_its_nat_ports_back() {
    let (before, after) = handshakes_then_data(OnBackendDown::Reset);
    let on_first = before.backends[0].flows;
    assert!(
        on_first > 0 && on_first < 10,
        "{on_first} of 10 flows on the first backend"
    );
    assert_eq!(after.flows.reset, on_first);
    let in_use_end: u64 = after.nat_ips.iter().map(|n| n.ports_in_use_end).sum();
    assert_eq!(in_use_end, 10 - on_first, "the reset flows' ports are free");
    assert_eq!(after.flows.active_end, 10 - on_first);
    // Their data finds no SNAT flow any more: the load balancer sends it to another backend,
    // where it is no connection's.
    assert_eq!(
        after.packets.dropped.get(plsim_wire::DropReason::NoFlow),
        on_first
    );
    assert_eq!(after.packets.to_backend, 20 + (10 - on_first));
    // Azure's default keeps them: every data packet reaches its backend.
    let (_, kept) = handshakes_then_data(OnBackendDown::Keep);
    assert_eq!((kept.flows.reset, kept.packets.to_backend), (0, 30));
    let in_use: u64 = kept.nat_ips.iter().map(|n| n.ports_in_use_end).sum();
    assert_eq!(in_use, 10);
}

#[test]
fn a_syn_with_no_port_left_is_answered_with_a_rst() {
    let mut frames = Vec::new();
    for i in 0..5u8 {
        let (c, cp) = client(i);
        let syn = TcpSegment {
            seq: 1000 * u32::from(i),
            ..TcpSegment::new(tuple(c, cp, SERVER, 443), TcpFlags::SYN)
        };
        frames.push(at(f64::from(i) * 0.01, syn));
    }
    let mut s = Scenario::builtin();
    let svc = &mut s.services[0];
    svc.nat_ips.truncate(1);
    svc.ports = PortRange::new(1024, 1025);
    svc.reuse = ReuseScope::PerIp;
    svc.rst_on_exhaustion = true;
    let (summary, consumer) = run_both(&frames, &s);
    assert_eq!(summary.flows.snat_failures, 3);
    assert_eq!(summary.packets.rst_to_consumer, 3);
    assert_eq!(
        summary.packets.to_consumer, 0,
        "answers are not input packets"
    );
    // The consumer sees each refused SYN answered right after it: from the private endpoint,
    // RST+ACK acknowledging the SYN, checksums right.
    let path = std::env::temp_dir().join(format!("plsim-rst-{}.pcap", std::process::id()));
    std::fs::write(&path, &consumer).unwrap();
    let mut r = Reader::open(&path).unwrap();
    let mut seen = Vec::new();
    while let Some(p) = r.next_frame() {
        let v = classify(p.link, p.data, p.wire_len).unwrap();
        assert!(checksum::verify(p.data, &v).ok());
        seen.push((v.tuple(), v.flags(), v.ack(p.data)));
    }
    std::fs::remove_file(&path).unwrap();
    assert_eq!(seen.len(), 8);
    let pe = Ipv4Addr::new(10, 0, 0, 4);
    for (k, i) in (2..5u8).enumerate() {
        let (c, cp) = client(i);
        let syn_at = 2 + 2 * k;
        assert_eq!(seen[syn_at].0, tuple(c, cp, pe, 443), "the SYN as sent");
        assert_eq!(
            seen[syn_at + 1],
            (
                tuple(pe, 443, c, cp),
                TcpFlags::RST | TcpFlags::ACK,
                1000 * u32::from(i) + 1
            ),
            "its answer"
        );
    }
}
