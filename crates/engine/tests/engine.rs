//! The engine with toy stages whose verdicts depend on everything they saw before, both ways:
//! any packet seen out of order would change them. The threaded engine must give exactly the
//! sequential result (every count, every stage's history, every byte the taps see) for every
//! batch size; every packet is counted once; events come after everything before them.

use std::net::Ipv4Addr;

use plsim_engine::{
    BackendSide, Batch, Dir, Edge, Engine, Feeder, Fill, Meta, Options, Parts, Stage, Taps, run,
};
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{DropReason, LinkId, LinkType, Place, SimTime, TcpFlags, classify};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Fwd(u64),
    Ret(u64),
    Tick(u64),
    Ev(u32, u64),
}

/// A core stage: its state mixes in everything it saw; it drops a packet when the state says
/// so, and stamps its state into the frame.
struct Recorder {
    seen: Vec<Seen>,
    state: u64,
    every: u64,
    reason: DropReason,
    /// Which frame byte it stamps (after the Ethernet header, inside the payload).
    byte: usize,
    /// Answer every packet it refuses (with the packet, one byte changed).
    answers: bool,
    answer: Vec<u8>,
    /// Send a segment of its own with some packets it passes (the packet, one byte changed),
    /// before or after it as its state says.
    injects: bool,
    injected: Option<(Vec<u8>, Place)>,
}

impl Recorder {
    fn new(every: u64, reason: DropReason, byte: usize) -> Recorder {
        Recorder {
            seen: Vec::new(),
            state: 0x9e37_79b9_7f4a_7c15,
            every,
            reason,
            byte,
            answers: false,
            answer: Vec::new(),
            injects: false,
            injected: None,
        }
    }
    fn mix(&mut self, x: u64) {
        self.state = (self.state ^ x)
            .wrapping_mul(0x100_0000_01b3)
            .rotate_left(17);
    }
    fn verdict(&mut self, frame: &mut [u8], m: &Meta, tag: u64) -> Result<(), DropReason> {
        self.mix(m.seq.wrapping_mul(tag));
        frame[self.byte] ^= self.state as u8;
        if self.state.is_multiple_of(self.every) {
            if self.answers {
                self.answer.clear();
                self.answer.extend_from_slice(frame);
                self.answer[63] ^= 0x77;
            }
            Err(self.reason)
        } else {
            if self.injects && tag == 3 && self.state % 5 < 2 {
                let mut seg = frame.to_vec();
                seg[62] ^= 0x11;
                let place = if self.state.is_multiple_of(5) {
                    Place::Before
                } else {
                    Place::After
                };
                self.injected = Some((seg, place));
            }
            Ok(())
        }
    }
}

impl Stage<u32> for Recorder {
    fn forward(&mut self, frame: &mut [u8], m: &mut Meta) -> Result<(), DropReason> {
        self.seen.push(Seen::Fwd(m.seq));
        self.verdict(frame, m, 3)
    }
    fn reverse(&mut self, frame: &mut [u8], m: &mut Meta) -> Result<(), DropReason> {
        self.seen.push(Seen::Ret(m.seq));
        self.verdict(frame, m, 5)
    }
    fn may_answer(&self) -> bool {
        self.answers
    }
    fn take_answer(&mut self, out: &mut Vec<u8>) -> bool {
        if self.answers && !self.answer.is_empty() {
            out.extend_from_slice(&self.answer);
            self.answer.clear();
            true
        } else {
            false
        }
    }
    fn may_inject(&self) -> bool {
        self.injects
    }
    fn take_injected(&mut self, out: &mut Vec<u8>) -> Option<Place> {
        let (seg, place) = self.injected.take()?;
        out.extend_from_slice(&seg);
        Some(place)
    }
    const PREFETCH: bool = true;
    fn tick(&mut self, now: SimTime) {
        // Ticks change the state too: a tick at the wrong time would show.
        self.mix(now.as_nanos());
        self.seen.push(Seen::Tick(now.as_nanos()));
    }
    fn apply(&mut self, ev: &u32, now: SimTime) -> Vec<u32> {
        self.mix(u64::from(*ev) << 32 | now.as_nanos());
        self.seen.push(Seen::Ev(*ev, now.as_nanos()));
        // An event tells the stages after this one something of its own (the SNAT stage hears
        // of the flows the load balancer reset, say).
        if *ev < 1_000_000 {
            vec![*ev + 1_000_000]
        } else {
            Vec::new()
        }
    }
}

/// The edge: order-free (its verdict is a function of the packet and the events so far).
struct Gate {
    closed_every: u64,
    events: u32,
}

impl Edge<u32> for Gate {
    fn forward(&self, frame: &mut [u8], m: &mut Meta) -> Result<(), DropReason> {
        frame[60] ^= 0x5a;
        m.link = LinkId(7);
        if m.seq % self.closed_every == u64::from(self.events) % self.closed_every {
            Err(DropReason::NotApproved)
        } else {
            Ok(())
        }
    }
    fn reverse(&self, frame: &mut [u8], m: &mut Meta) -> Result<(), DropReason> {
        frame[61] ^= 0xa5;
        if m.seq.is_multiple_of(13) {
            Err(DropReason::NoFlow)
        } else {
            Ok(())
        }
    }
    fn apply(&mut self, _: &u32, _: SimTime) {
        self.events += 1;
    }
}

/// The backend end: remembers what reached it, refuses returns of flows it never saw.
#[derive(Default)]
struct Backends {
    delivered: Vec<u64>,
    entered: Vec<u64>,
}

impl BackendSide for Backends {
    fn delivered(&mut self, _: &[u8], m: &Meta) {
        self.delivered.push(m.seq);
    }
    fn enter(&mut self, frame: &mut [u8], m: &mut Meta) -> Result<(), DropReason> {
        frame[62] ^= 0x3c;
        if self.delivered.len() % 4 == 3 {
            return Err(DropReason::NoFlow);
        }
        self.entered.push(m.seq);
        Ok(())
    }
}

/// One input packet: which way it enters, how long after the one before, whether it comes
/// already dropped (not IPv4 TCP), and whether an event follows it.
#[derive(Clone, Debug)]
struct Step {
    ret: bool,
    gap_ns: u64,
    pre_dropped: bool,
    event: bool,
}

struct Toy {
    steps: Vec<Step>,
    next: usize,
    t: u64,
    events_after_end: u32,
}

impl Feeder<u32> for Toy {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<u32> {
        while batch.len() < max {
            let Some(step) = self.steps.get(self.next).cloned() else {
                if self.events_after_end > 0 {
                    self.events_after_end -= 1;
                    self.t += 1_000_000_000;
                    return Fill::Event(1000 + self.events_after_end, SimTime::from_nanos(self.t));
                }
                return Fill::Done;
            };
            let k = self.next as u64;
            self.next += 1;
            self.t += step.gap_ns;
            let t = tuple(
                Ipv4Addr::new(10, 0, 0, 1),
                1000 + (k % 500) as u16,
                Ipv4Addr::new(10, 0, 0, 2),
                80,
            );
            let frame = TcpSegment {
                payload: &[k as u8; 16],
                ..TcpSegment::new(t, TcpFlags::ACK)
            }
            .to_vec();
            let view = classify(LinkType::Ethernet, &frame, frame.len()).unwrap();
            let dir = if step.ret { Dir::Reverse } else { Dir::Forward };
            let pre = step.pre_dropped && dir == Dir::Forward;
            batch.push(
                &frame,
                Meta {
                    seq: k,
                    ts: SimTime::from_nanos(self.t),
                    wire_len: frame.len() as u32,
                    linktype: LinkType::Ethernet,
                    view: (!pre).then_some(view),
                    link: LinkId(0),
                    vnet: plsim_wire::VnetId(0),
                    orig: t,
                    dir,
                    drop: pre.then_some(DropReason::NonTcp),
                    own: None,
                    stream_start: None,
                    handle: plsim_engine::Meta::NO_HANDLE,
                },
            );
            if step.event {
                return Fill::Event(k as u32, SimTime::from_nanos(self.t));
            }
        }
        Fill::More
    }
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Collect {
    consumer: Vec<(u64, Dir, Vec<u8>)>,
    backend: Vec<(u64, Dir, Vec<u8>)>,
}

impl Taps for Collect {
    fn consumer(&mut self, f: &[u8], m: &Meta) {
        self.consumer.push((m.seq, m.dir, f.to_vec()));
    }
    fn backend(&mut self, f: &[u8], m: &Meta) {
        self.backend.push((m.seq, m.dir, f.to_vec()));
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Result_ {
    counts: (u64, u64, u64, u64, Vec<(DropReason, u64)>),
    answers: u64,
    injected: u64,
    links: Vec<plsim_engine::LinkCounts>,
    span: (Option<SimTime>, Option<SimTime>),
    lb: Vec<Seen>,
    snat: Vec<Seen>,
    lb_state: u64,
    snat_state: u64,
    backends: (Vec<u64>, Vec<u64>),
    taps: Collect,
}

fn go(steps: &[Step], engine: Engine, batch: usize, after: u32) -> Result_ {
    go_answering(steps, engine, batch, after, false)
}

fn go_answering(
    steps: &[Step],
    engine: Engine,
    batch: usize,
    after: u32,
    answers: bool,
) -> Result_ {
    go_with(steps, engine, batch, after, answers, (false, false))
}

fn go_with(
    steps: &[Step],
    engine: Engine,
    batch: usize,
    after: u32,
    answers: bool,
    injects: (bool, bool),
) -> Result_ {
    let mut snat = Recorder::new(11, DropReason::PortExhausted, 57);
    snat.answers = answers;
    snat.injects = injects.1;
    let mut lb = Recorder::new(7, DropReason::NoRule, 56);
    lb.injects = injects.0;
    let parts = Parts {
        edge: Gate {
            closed_every: 5,
            events: 0,
        },
        core: (lb, snat),
        backend: Backends::default(),
    };
    let mut toy = Toy {
        steps: steps.to_vec(),
        next: 0,
        t: 1_000,
        events_after_end: after,
    };
    let fin = run(
        parts,
        &mut toy,
        Collect::default(),
        Options {
            engine,
            batch_size: batch,
            ..Options::default()
        },
    );
    let s = fin.stats;
    let (lb, snat) = fin.parts.core;
    Result_ {
        counts: (
            s.consumer_in,
            s.backend_in,
            s.to_backend,
            s.to_consumer,
            s.dropped.iter().filter(|(_, n)| *n > 0).collect(),
        ),
        span: (s.first_ts, s.last_ts),
        answers: s.answers,
        injected: s.injected,
        links: s.links.clone(),
        lb_state: lb.state,
        snat_state: snat.state,
        lb: lb.seen,
        snat: snat.seen,
        backends: (fin.parts.backend.delivered, fin.parts.backend.entered),
        taps: fin.taps,
    }
}

fn steps(n: usize, seed: u64) -> Vec<Step> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Step {
                ret: x.is_multiple_of(3),
                gap_ns: (x >> 8) % 10_000,
                pre_dropped: x.is_multiple_of(17),
                event: x.is_multiple_of(251),
            }
        })
        .collect()
}

#[test]
fn every_packet_is_counted_once_and_each_stage_sees_input_order() {
    let st = steps(10_000, 42);
    let r = go(&st, Engine::Threaded, 64, 2);
    let (cin, bin, to_b, to_c, drops) = &r.counts;
    let ret = st.iter().filter(|s| s.ret).count() as u64;
    assert_eq!((*cin, *bin), (10_000 - ret, ret));
    let dropped: u64 = drops.iter().map(|(_, n)| n).sum();
    assert_eq!(cin + bin, to_b + to_c + dropped);
    // Per connection: link 7 is what the edge tagged, link 0 the rest; together, the totals.
    assert_eq!(r.links.len(), 8);
    let sum = |f: fn(&plsim_engine::LinkCounts) -> u64| r.links.iter().map(f).sum::<u64>();
    assert_eq!(sum(|l| l.consumer_in), *cin);
    assert_eq!(sum(|l| l.backend_in), *bin);
    assert_eq!(sum(|l| l.to_backend), *to_b);
    assert_eq!(sum(|l| l.to_consumer), *to_c);
    assert_eq!(sum(|l| l.dropped.total()), dropped);
    assert!(r.links[7].to_backend > 0 && r.links[1..7].iter().all(|l| *l == Default::default()));
    assert_eq!(r.backends.0.len() as u64, *to_b);
    // Each core stage ticks at every packet, in input order, and processes the packets that
    // reach it in input order, both ways.
    for seen in [&r.lb, &r.snat] {
        let ticks = seen.iter().filter(|s| matches!(s, Seen::Tick(_))).count();
        assert_eq!(ticks, 10_000 + 2 + st.iter().filter(|s| s.event).count());
        let order: Vec<u64> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Fwd(k) | Seen::Ret(k) => Some(*k),
                _ => None,
            })
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order");
    }
    // Taps in input order on both sides; every consumer-side packet is seen as sent.
    for side in [&r.taps.consumer, &r.taps.backend] {
        assert!(side.windows(2).all(|w| w[0].0 < w[1].0));
    }
    assert_eq!(
        r.taps
            .consumer
            .iter()
            .filter(|(_, d, _)| *d == Dir::Forward)
            .count() as u64,
        *cin
    );
    assert_eq!(
        r.taps
            .consumer
            .iter()
            .filter(|(_, d, _)| *d == Dir::Reverse)
            .count() as u64,
        *to_c
    );
    // The run's span runs on to the events after the last packet.
    let last_packet = 1_000 + st.iter().map(|s| s.gap_ns).sum::<u64>();
    assert_eq!(
        r.span.1,
        Some(SimTime::from_nanos(last_packet + 2_000_000_000))
    );
}

#[test]
fn events_come_after_everything_before_them() {
    let mut st = steps(3_000, 7);
    for s in &mut st {
        s.event = false;
    }
    st[1_234].event = true;
    let r = go(&st, Engine::Threaded, 50, 0);
    for seen in [&r.lb, &r.snat] {
        let at = seen
            .iter()
            .position(|s| matches!(s, Seen::Ev(..)))
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

#[test]
fn answers_reach_the_consumer_right_after_what_they_answer() {
    let st = steps(5_000, 3);
    let r = go_answering(&st, Engine::Threaded, 64, 0, true);
    assert!(r.answers > 50, "{}", r.answers);
    // Each answer comes back on the consumer side after the packet it answers, changed where
    // the answering stage changed it, and it is the only packet seen twice there.
    let answered: Vec<&(u64, Dir, Vec<u8>)> = r
        .taps
        .consumer
        .windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| &w[1])
        .collect();
    assert_eq!(answered.len() as u64, r.answers);
    assert!(answered.iter().all(|(_, d, _)| *d == Dir::Reverse));
    assert_eq!(r, go_answering(&st, Engine::Sequential, 1, 0, true));
}

#[test]
fn injected_segments_reach_the_backend_right_before_or_after_their_packet() {
    let st = steps(5_000, 5);
    let r = go_with(&st, Engine::Threaded, 64, 0, true, (true, true));
    assert!(r.injected > 100, "{}", r.injected);
    // On the backend side, an injected segment shares its packet's `seq`: every repeated
    // `seq` there is one injected segment, a copy of a passed packet with byte 62 changed.
    let mut repeats = 0;
    for w in r.taps.backend.windows(2) {
        if w[0].0 == w[1].0 {
            repeats += 1;
            assert!(w.iter().all(|(_, d, _)| *d == Dir::Forward));
            let (a, b) = (&w[0].2, &w[1].2);
            let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            // The packet went on through the second stage after the copy was made (or the
            // copy passed it): they differ where the copy was changed and where the second
            // stage stamped each.
            assert!(differ.contains(&62) || differ.contains(&57), "{differ:?}");
        }
    }
    // A segment the first stage injected may reach the backend without its packet (the
    // second stage refused the packet), never the other way round.
    assert!(
        repeats > 0 && repeats <= r.injected,
        "{repeats} of {}",
        r.injected
    );
    let forward = r.taps.backend.iter().filter(|(_, d, _)| *d == Dir::Forward);
    assert_eq!(forward.count() as u64, r.counts.2 + r.injected);
    assert_eq!(r.backends.0.len() as u64, r.counts.2 + r.injected);
    // Outside the balance: every input packet counted once.
    let (cin, bin, to_b, to_c, drops) = &r.counts;
    let dropped: u64 = drops.iter().map(|(_, n)| n).sum();
    assert_eq!(cin + bin, to_b + to_c + dropped);
    assert_eq!(
        r,
        go_with(&st, Engine::Sequential, 1, 0, true, (true, true))
    );
    // Only the last stage injecting (the SNAT stage's PROXY protocol headers): the run stays
    // stage-major, and still gives the sequential result.
    let last = go_with(&st, Engine::Threaded, 64, 0, false, (false, true));
    assert!(last.injected > 100);
    assert_eq!(
        last,
        go_with(&st, Engine::Sequential, 1, 0, false, (false, true))
    );
}

/// Two runs of the same parts one after the other, their stats merged, count exactly what one
/// run over both inputs counts (a bench's rounds add up this way).
#[test]
fn the_stats_of_consecutive_runs_merge_into_the_whole_run() {
    let all = steps(3_000, 7);
    for engine in [Engine::Sequential, Engine::Threaded] {
        let whole = go(&all, engine, 64, 0);
        let parts = Parts {
            edge: Gate {
                closed_every: 5,
                events: 0,
            },
            core: (
                Recorder::new(7, DropReason::NoRule, 56),
                Recorder::new(11, DropReason::PortExhausted, 57),
            ),
            backend: Backends::default(),
        };
        let opts = Options {
            engine,
            batch_size: 64,
            ..Options::default()
        };
        let mut first = Toy {
            steps: all[..1_234].to_vec(),
            next: 0,
            t: 1_000,
            events_after_end: 0,
        };
        let a = run(parts, &mut first, Collect::default(), opts);
        let mut second = Toy {
            steps: all.clone(),
            next: 1_234,
            t: first.t,
            events_after_end: 0,
        };
        let b = run(a.parts, &mut second, Collect::default(), opts);
        let mut s = a.stats.clone();
        s.merge(&b.stats);
        let counts = (
            s.consumer_in,
            s.backend_in,
            s.to_backend,
            s.to_consumer,
            s.dropped.iter().filter(|(_, n)| *n > 0).collect(),
        );
        assert_eq!(counts, whole.counts, "{engine:?}");
        assert_eq!((s.answers, s.injected), (whole.answers, whole.injected));
        assert_eq!(s.links, whole.links);
        assert_eq!((s.first_ts, s.last_ts), whole.span);
        assert_eq!(s.wall, a.stats.wall + b.stats.wall);
        assert_eq!(
            s.latency_ns.len(),
            a.stats.latency_ns.len() + b.stats.latency_ns.len()
        );
        // Something was dropped and something delivered: the comparison is not of zeros.
        assert!(s.to_backend > 0 && s.dropped.total() > 0);
    }
}

#[test]
fn threaded_equals_sequential_on_a_long_input() {
    let st = steps(20_000, 99);
    let reference = go(&st, Engine::Sequential, 1, 3);
    for batch in [1, 2, 3, 7, 64, 1024, 100_000] {
        assert_eq!(
            go(&st, Engine::Threaded, batch, 3),
            reference,
            "batch {batch}"
        );
    }
}

fn step_strategy() -> impl Strategy<Value = Step> {
    (
        prop::bool::weighted(0.4),
        prop_oneof![0u64..10, 0u64..1_000_000, 0u64..10_000_000_000_000],
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.02),
    )
        .prop_map(|(ret, gap_ns, pre_dropped, event)| Step {
            ret,
            gap_ns,
            pre_dropped,
            event,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A stage that answers what it refuses (the answers pass the stage before it at once):
    /// still the sequential result, answers and all.
    #[test]
    fn threaded_equals_sequential_with_answers(
        st in prop::collection::vec(step_strategy(), 0..300),
        batch in prop_oneof![Just(1usize), Just(3), 1usize..80, Just(1024)],
    ) {
        let reference = go_answering(&st, Engine::Sequential, 1, 1, true);
        prop_assert_eq!(go_answering(&st, Engine::Threaded, batch, 1, true), reference);
    }

    /// Stages that inject segments before and after packets they pass, and answer what
    /// they refuse: still the sequential result, every byte in its place.
    #[test]
    fn threaded_equals_sequential_with_injections(
        st in prop::collection::vec(step_strategy(), 0..300),
        batch in prop_oneof![Just(1usize), Just(3), 1usize..80, Just(1024)],
        answers in any::<bool>(),
        first in any::<bool>(),
    ) {
        let reference = go_with(&st, Engine::Sequential, 1, 1, answers, (first, true));
        prop_assert_eq!(go_with(&st, Engine::Threaded, batch, 1, answers, (first, true)), reference);
    }

    /// Any input, any batch size: the threaded engine gives the sequential result.
    #[test]
    fn threaded_equals_sequential(
        st in prop::collection::vec(step_strategy(), 0..400),
        after in 0u32..3,
        batch in prop_oneof![Just(1usize), Just(2), Just(3), 1usize..80, Just(1024)],
    ) {
        let reference = go(&st, Engine::Sequential, 1, after);
        prop_assert_eq!(go(&st, Engine::Threaded, batch, after), reference);
    }
}
