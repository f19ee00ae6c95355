//! The engine with toy stages: every packet is counted once, each stage sees a fixed order, the
//! SNAT position sees exactly the input order, and events come after everything before them.

use std::net::Ipv4Addr;

use plsim_pipeline::{AsIs, Batch, Dir, Event, Feeder, Fill, Meta, Options, Stage, Taps, run};
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{DropReason, LinkId, LinkType, SimTime, TcpFlags, classify};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Fwd(u64),
    Ret(u64),
    Ev(Event),
}

/// Records what it sees; drops forward packets whose seq is a multiple of `drop_every`.
struct Recorder {
    seen: Vec<Seen>,
    drop_every: u64,
    reason: DropReason,
}

impl Recorder {
    fn new(drop_every: u64, reason: DropReason) -> Recorder {
        Recorder {
            seen: Vec::new(),
            drop_every,
            reason,
        }
    }
}

impl Stage for Recorder {
    fn forward(&mut self, _: &mut [u8], m: &mut Meta) -> Result<(), DropReason> {
        self.seen.push(Seen::Fwd(m.seq));
        if m.seq.is_multiple_of(self.drop_every) {
            Err(self.reason)
        } else {
            Ok(())
        }
    }
    fn reverse(&mut self, _: &mut [u8], m: &mut Meta) -> Result<(), DropReason> {
        self.seen.push(Seen::Ret(m.seq));
        Ok(())
    }
    fn apply(&mut self, ev: &Event, _: SimTime) {
        self.seen.push(Seen::Ev(ev.clone()));
    }
}

/// `n` packets; packet k is a return packet when k % 3 == 2; an event after packet `event_at`.
struct Toy {
    n: u64,
    next: u64,
    event_at: Option<u64>,
}

impl Feeder for Toy {
    fn fill(&mut self, fwd: &mut Batch, srv: &mut Batch, max: usize) -> Fill {
        while fwd.len() + srv.len() < max {
            if self.next == self.n {
                return Fill::Done;
            }
            let k = self.next;
            self.next += 1;
            let t = tuple(
                Ipv4Addr::new(10, 0, 0, 1),
                1000 + k as u16,
                Ipv4Addr::new(10, 0, 0, 2),
                80,
            );
            let frame = TcpSegment::new(t, TcpFlags::ACK).to_vec();
            let view = classify(LinkType::Ethernet, &frame, frame.len()).unwrap();
            let dir = if k % 3 == 2 {
                Dir::Return
            } else {
                Dir::Forward
            };
            let meta = Meta {
                seq: k,
                ts: SimTime::from_millis(k),
                wire_len: frame.len() as u32,
                linktype: LinkType::Ethernet,
                view: Some(view),
                link: LinkId(1),
                vnet: 0,
                orig: t,
                dir,
                drop: None,
            };
            if dir == Dir::Return {
                srv.push(&frame, meta)
            } else {
                fwd.push(&frame, meta)
            }
            if Some(k) == self.event_at {
                return Fill::Event(
                    Event::LinkClosed {
                        link: LinkId(1),
                        service: 0,
                    },
                    SimTime::from_millis(k),
                );
            }
        }
        Fill::More
    }
}

#[derive(Default)]
struct Collect {
    consumer: Vec<(u64, Dir)>,
    backend: Vec<(u64, Dir)>,
}

impl Taps for Collect {
    fn consumer(&mut self, _: &[u8], m: &Meta) {
        self.consumer.push((m.seq, m.dir));
    }
    fn backend(&mut self, _: &[u8], m: &Meta) {
        self.backend.push((m.seq, m.dir));
    }
}

type Outcome = (
    Vec<Seen>,
    Vec<Seen>,
    Vec<Seen>,
    Collect,
    plsim_pipeline::RunStats,
);

fn go(n: u64, batch: usize, event_at: Option<u64>) -> Outcome {
    let (fin, taps) = run(
        Recorder::new(5, DropReason::NotApproved),
        Recorder::new(7, DropReason::NoRule),
        Recorder::new(11, DropReason::PortExhausted),
        &mut Toy {
            n,
            next: 0,
            event_at,
        },
        Collect::default(),
        AsIs,
        Options {
            batch_size: batch,
            latency: true,
            taps: true,
        },
    );
    (
        fin.endpoint.seen,
        fin.lb.seen,
        fin.snat.seen,
        taps,
        fin.stats,
    )
}

#[test]
fn every_packet_is_counted_once() {
    let (_, _, _, _, s) = go(10_000, 64, None);
    let ret = (0..10_000).filter(|k| k % 3 == 2).count() as u64;
    assert_eq!(s.consumer_in, 10_000 - ret);
    assert_eq!(s.backend_in, ret);
    let fwd: Vec<u64> = (0..10_000).filter(|k| k % 3 != 2).collect();
    let ep = fwd.iter().filter(|k| *k % 5 == 0).count() as u64;
    let lb = fwd.iter().filter(|k| *k % 5 != 0 && *k % 7 == 0).count() as u64;
    let sn = fwd
        .iter()
        .filter(|k| *k % 5 != 0 && *k % 7 != 0 && *k % 11 == 0)
        .count() as u64;
    assert_eq!(s.dropped.get(DropReason::NotApproved), ep);
    assert_eq!(s.dropped.get(DropReason::NoRule), lb);
    assert_eq!(s.dropped.get(DropReason::PortExhausted), sn);
    assert_eq!(s.to_backend, fwd.len() as u64 - ep - lb - sn);
    assert_eq!(s.to_consumer, ret);
    assert_eq!(
        s.consumer_in + s.backend_in,
        s.to_backend + s.to_consumer + s.dropped.total()
    );
    assert_eq!(s.latency_ns.len(), 10_000);
}

#[test]
fn the_snat_position_sees_the_input_order_and_runs_repeat() {
    let (ep, lb, snat, taps, _) = go(5_000, 32, None);
    // SNAT: every packet that reached it, in input order.
    let seqs: Vec<u64> = snat
        .iter()
        .map(|s| match s {
            Seen::Fwd(k) | Seen::Ret(k) => *k,
            Seen::Ev(_) => unreachable!(),
        })
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(seqs, sorted);
    let expect: Vec<u64> = (0..5_000)
        .filter(|k| k % 3 == 2 || (k % 5 != 0 && k % 7 != 0))
        .collect();
    assert_eq!(seqs, expect);
    // Each direction in input order at every stage.
    for seen in [&ep, &lb] {
        let f: Vec<u64> = seen
            .iter()
            .filter_map(|s| if let Seen::Fwd(k) = s { Some(*k) } else { None })
            .collect();
        let r: Vec<u64> = seen
            .iter()
            .filter_map(|s| if let Seen::Ret(k) = s { Some(*k) } else { None })
            .collect();
        assert!(f.windows(2).all(|w| w[0] < w[1]));
        assert!(r.windows(2).all(|w| w[0] < w[1]));
    }
    // The taps are in input order; the consumer saw every forward packet and every return.
    assert!(taps.consumer.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(taps.backend.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(taps.consumer.len(), 5_000);
    // The same input and batch size: the same order everywhere, whatever the threads did.
    for _ in 0..3 {
        let (ep2, lb2, snat2, _, _) = go(5_000, 32, None);
        assert_eq!((&ep, &lb, &snat), (&ep2, &lb2, &snat2));
    }
}

#[test]
fn events_come_after_everything_before_them() {
    let (ep, lb, snat, _, _) = go(3_000, 50, Some(1_234));
    for seen in [&ep, &lb, &snat] {
        let at = seen
            .iter()
            .position(|s| matches!(s, Seen::Ev(_)))
            .expect("the event reached the stage");
        for s in &seen[..at] {
            if let Seen::Fwd(k) | Seen::Ret(k) = s {
                assert!(*k <= 1_234);
            }
        }
        for s in &seen[at + 1..] {
            if let Seen::Fwd(k) | Seen::Ret(k) = s {
                assert!(*k > 1_234);
            }
        }
    }
}
