//! The threaded engine: the driver and the edge on the calling thread, the core on its own, the
//! taps on a third. See the crate docs for why its result equals the sequential engine's.
//!
//! ```text
//! driver: fill B(i), edge forward ──B(i)──> core: runs of B(i) through the stages, in order
//!   ^                                         │  (backend side: delivered / enter)
//!   └─── edge reverse of B(i) <──B(i), E(i)───┘
//!          │
//!          └──> taps: F(i) (consumer-side packets as sent), B(i), E(i) (backend-side as entered)
//! ```

use std::collections::VecDeque;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use plsim_wire::SimTime;

use crate::stages::RunCx;
use crate::trip;
use crate::{
    BackendSide, Batch, Dir, Edge, Feeder, Fill, Finished, Options, Parts, RunStats, Stages, Taps,
};

/// Batches the driver keeps in flight (sent to the core, not yet back).
const IN_FLIGHT: usize = 4;

enum Msg<Ev> {
    Batch(Batch),
    Event(Ev, SimTime),
    Stop,
}

/// What the taps get for one batch: the consumer-side packets as sent (before any stage), the
/// batch as it ended, the backend-side packets as they entered (before the core), and the
/// answers the path sent back (each after the packet it answers).
struct TapWork {
    sent: Batch,
    batch: Batch,
    entered: Batch,
    answers: Batch,
}

/// A batch back from the core: the batch, the backend-side packets as they entered (when
/// tapping), the answers.
type Back = (Batch, Option<Batch>, Batch);

/// A pool of batches: a warm engine allocates nothing.
#[derive(Clone)]
struct Pool {
    tx: Sender<Batch>,
    rx: Receiver<Batch>,
}

impl Pool {
    fn new() -> Pool {
        let (tx, rx) = unbounded();
        Pool { tx, rx }
    }
    fn get(&self) -> Batch {
        let mut b = self.rx.try_recv().unwrap_or_default();
        b.reset();
        b
    }
    fn put(&self, b: Batch) {
        let _ = self.tx.send(b);
    }
}

/// The core's loop: each batch in runs through the stages and the backend side, in order.
fn core_loop<Ev, C: Stages<Ev>, B: BackendSide>(
    core: &mut C,
    backend: &mut B,
    rx: Receiver<Msg<Ev>>,
    back: Sender<Back>,
    pool: &Pool,
    tapping: bool,
    cx: &mut RunCx,
) -> (u64, u64) {
    let (mut to_backend, mut injected) = (0, 0);
    for msg in rx {
        match msg {
            Msg::Batch(mut b) => {
                let mut entered = tapping.then(|| pool.get());
                let mut answers = pool.get();
                let n = b.len();
                let mut i = 0;
                // The next of `answers` to look at for segments injected ahead of a packet.
                let mut next = 0;
                while i < n {
                    let end = b.run_end(i);
                    if b.meta(i).dir == Dir::Forward {
                        core.forward_run(&mut b, i..end, cx, &mut answers);
                        for k in i..end {
                            let (frame, m) = b.get(k);
                            let (from, to) = beside(&answers, next, m.seq);
                            next = to;
                            let segments = (from..to).map(|j| answers.get(j));
                            trip::to_backends(frame, m, segments, |f, s, ours| {
                                if ours {
                                    backend.injected(f, s);
                                    injected += 1;
                                } else {
                                    backend.delivered(f, s);
                                    to_backend += 1;
                                }
                            });
                        }
                    } else {
                        for k in i..end {
                            let (frame, m) = b.get_mut(k);
                            match trip::backend_in(backend, frame, m) {
                                Some(r) => cx.dropped.add(r),
                                None if m.drop.is_none() => {
                                    if let Some(e) = entered.as_mut() {
                                        e.push(frame, *m);
                                    }
                                }
                                None => {} // dropped before it entered
                            }
                        }
                        core.reverse_run(&mut b, i..end, cx);
                    }
                    i = end;
                }
                back.send((b, entered, answers))
                    .expect("the driver takes every batch back");
            }
            Msg::Event(ev, now) => {
                // The core's part of `trip::apply` (the driver applied the edge's).
                core.tick(now);
                core.apply(&ev, now);
            }
            Msg::Stop => break,
        }
    }
    (to_backend, injected)
}

/// The taps' loop: writes each batch's packets as each side saw them, in input order.
fn tap_loop<T: Taps>(taps: &mut T, rx: Receiver<TapWork>, pool: &Pool) {
    for w in rx {
        write_batch(taps, &w);
        pool.put(w.sent);
        pool.put(w.batch);
        pool.put(w.entered);
        pool.put(w.answers);
    }
}

/// The range of `answers`, from `from` on, of what the core sent beside the packet `seq`.
fn beside(answers: &Batch, from: usize, seq: u64) -> (usize, usize) {
    let mut to = from;
    while to < answers.len() && answers.meta(to).seq == seq {
        to += 1;
    }
    (from, to)
}

fn write_batch<T: Taps>(taps: &mut T, w: &TapWork) {
    let mut sent = w.sent.iter();
    let mut entered = w.entered.iter().peekable();
    let mut next = 0;
    for (frame, m) in w.batch.iter() {
        match m.dir {
            Dir::Forward => {
                let (f, sm) = sent.next().expect("every consumer-side packet was copied");
                debug_assert_eq!(sm.seq, m.seq);
                taps.consumer(f, sm);
                let (from, to) = beside(&w.answers, next, m.seq);
                next = to;
                let segments = (from..to).map(|j| w.answers.get(j));
                trip::to_backends(frame, m, segments.clone(), |f, s, _| taps.backend(f, s));
                for (f, a) in segments.filter(|(_, a)| a.dir == Dir::Reverse && a.drop.is_none()) {
                    taps.consumer(f, a);
                }
            }
            Dir::Reverse => {
                if let Some((f, em)) = entered.next_if(|(_, em)| em.seq == m.seq) {
                    taps.backend(f, em);
                }
                if m.drop.is_none() {
                    taps.consumer(frame, m);
                }
            }
        }
    }
}

pub(crate) fn run<Ev, E, C, B, F, T>(
    parts: Parts<E, C, B>,
    feeder: &mut F,
    taps: T,
    opts: Options,
) -> Finished<E, C, B, T>
where
    Ev: Send,
    E: Edge<Ev>,
    C: Stages<Ev>,
    B: BackendSide,
    F: Feeder<Ev>,
    T: Taps,
{
    let start = Instant::now();
    let Parts {
        mut edge,
        core,
        backend,
    } = parts;
    let (to_core, core_rx) = bounded::<Msg<Ev>>(IN_FLIGHT + 2);
    let (back_tx, back_rx) = bounded::<Back>(IN_FLIGHT);
    // Taps that take nothing (`NoTaps`, `None`) cost nothing: no copies, no work on the thread.
    let tapping = taps.active();
    let (tap_tx, tap_rx) = unbounded::<TapWork>();
    let pool = Pool::new();
    let mut stats = RunStats::new(C::LEN);
    let timed = opts.stage_times;

    let (core, backend, core_cx, (to_backend, injected), taps) = thread::scope(|scope| {
        let core_pool = pool.clone();
        let core_thread = scope.spawn(move || {
            let (mut core, mut backend) = (core, backend);
            let mut cx = RunCx {
                busy: timed.then(|| vec![Duration::ZERO; C::LEN]),
                ..RunCx::default()
            };
            let (to_backend, injected) = core_loop(
                &mut core,
                &mut backend,
                core_rx,
                back_tx,
                &core_pool,
                tapping,
                &mut cx,
            );
            (core, backend, cx, to_backend, injected)
        });
        let tap_pool = pool.clone();
        let tap_thread = scope.spawn(move || {
            let mut taps = taps;
            if tapping {
                tap_loop(&mut taps, tap_rx, &tap_pool);
            }
            taps
        });

        // The driver, on this thread.
        let mut sent_copies: VecDeque<Option<Batch>> = VecDeque::new();
        let mut outstanding = 0usize;
        // A batch back from the core: the edge's return half, counts, latency, taps.
        let finish = |(mut b, entered, mut answers): Back,
                      edge: &E,
                      stats: &mut RunStats,
                      sent: Option<Batch>| {
            let t0 = timed.then(Instant::now);
            for (frame, m) in b.iter_mut() {
                if m.dir == Dir::Reverse && m.drop.is_none() {
                    match trip::edge_out(edge, frame, m) {
                        None => stats.to_consumer += 1,
                        Some(r) => stats.dropped.add(r),
                    }
                }
                stats.count(m);
            }
            for (frame, m) in answers.iter_mut() {
                if m.dir == Dir::Reverse
                    && m.drop.is_none()
                    && trip::edge_out(edge, frame, m).is_none()
                {
                    stats.answers += 1;
                }
            }
            if let Some(t0) = t0 {
                stats.busy[0] += t0.elapsed();
            }
            if opts.latency && !b.is_empty() {
                let ns = b.born.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
                stats
                    .latency_ns
                    .saturating_record_n(ns.max(1), b.len() as u64);
            }
            match (sent, entered) {
                (Some(sent), Some(entered)) => {
                    let _ = tap_tx.send(TapWork {
                        sent,
                        batch: b,
                        entered,
                        answers,
                    });
                }
                _ => {
                    pool.put(b);
                    pool.put(answers);
                }
            }
        };
        loop {
            let mut b = pool.get();
            let fill = feeder.fill(&mut b, opts.batch_size);
            let mut sent = tapping.then(|| pool.get());
            let t0 = timed.then(Instant::now);
            for (frame, m) in b.iter_mut() {
                stats.saw(m.ts);
                match m.dir {
                    Dir::Forward => {
                        stats.consumer_in += 1;
                        if let Some(s) = sent.as_mut() {
                            s.push(frame, *m);
                        }
                        if let Some(r) = trip::edge_in(&edge, frame, m) {
                            stats.dropped.add(r);
                        }
                    }
                    Dir::Reverse => {
                        stats.backend_in += 1;
                        if let Some(r) = m.drop {
                            stats.dropped.add(r);
                        }
                    }
                }
            }
            if let Some(t0) = t0 {
                stats.busy[0] += t0.elapsed();
            }
            if b.is_empty() {
                pool.put(b);
                if let Some(s) = sent {
                    pool.put(s);
                }
            } else {
                to_core
                    .send(Msg::Batch(b))
                    .expect("the core takes every batch");
                sent_copies.push_back(sent);
                outstanding += 1;
            }
            // Take back what is done; wait while too much is in flight.
            loop {
                let r = if outstanding >= IN_FLIGHT {
                    back_rx.recv().ok()
                } else {
                    back_rx.try_recv().ok()
                };
                let Some(r) = r else { break };
                let sent = sent_copies.pop_front().expect("one copy per batch");
                finish(r, &edge, &mut stats, sent);
                outstanding -= 1;
            }
            let done = match fill {
                Fill::More => continue,
                Fill::Event(..) => false,
                Fill::Done => true,
            };
            // A flush: everything before the event (or the end) leaves the engine first.
            while outstanding > 0 {
                let r = back_rx.recv().expect("the core returns every batch");
                let sent = sent_copies.pop_front().expect("one copy per batch");
                finish(r, &edge, &mut stats, sent);
                outstanding -= 1;
            }
            if done {
                to_core.send(Msg::Stop).expect("the core stops");
                break;
            }
            if let Fill::Event(ev, now) = fill {
                stats.saw(now);
                // The edge's part of `trip::apply`: the core's follows on its thread, in order.
                edge.apply(&ev, now);
                to_core
                    .send(Msg::Event(ev, now))
                    .expect("the core takes every event");
            }
        }
        drop(to_core);
        drop(tap_tx);
        let (core, backend, cx, to_backend, injected) =
            core_thread.join().expect("the core thread");
        let taps = tap_thread.join().expect("the tap thread");
        (core, backend, cx, (to_backend, injected), taps)
    });

    stats.to_backend = to_backend;
    stats.injected = injected;
    stats.dropped.merge(&core_cx.dropped);
    if let Some(busy) = core_cx.busy {
        stats.busy[1..].copy_from_slice(&busy);
    }
    stats.wall = start.elapsed();
    Finished {
        stats,
        parts: Parts {
            edge,
            core,
            backend,
        },
        taps,
    }
}
