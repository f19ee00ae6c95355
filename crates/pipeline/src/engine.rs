//! The threaded pipeline: the three stages on their own threads, joined by bounded channels that
//! carry batches both ways, with a schedule that makes every run see the same order.
//!
//! ```text
//!            F(i)            F(i)           F(i)
//! driver ─────────> endpoint ─────> lb ──────────> snat ──> sink (delivered to the backends)
//!   │                  ^            ^  R(i)         │ ^
//!   │                  │  R(i)      └───────────────┘ │ S(i): the server's packets of batch i
//!   │                  └── lb                         │
//!   └─────────────────────────────────────────────────┘
//! ```
//!
//! **Order.** Input packet `k` belongs to batch `k / batch_size`; the driver splits each batch
//! into the packets that enter at the consumer side, `F(i)`, and those that enter at the backend
//! side, `S(i)`. The SNAT stage merges `F(i)` and `S(i)` by input order, so it sees exactly the
//! input order. Its return packets `R(i)` go back through the load balancer and the endpoint,
//! which run ahead on the forward path by a fixed lag: the load balancer handles `F(i+1)` before
//! `R(i)`, the endpoint `F(i+2)` before `R(i)`. The schedule depends on the input and the batch
//! size alone, never on thread timing, so a run is replayable byte for byte. Control-plane events
//! are applied at a flush: every stage first drains what it has in flight.
//!
//! **Backpressure, never loss.** Every channel is bounded and every send blocks when full; the lag
//! bounds how many batches any channel can hold, so the loop can't deadlock.

use std::collections::VecDeque;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use hdrhistogram::Histogram;
use plsim_wire::{DropCounts, DropReason, SimTime};

use crate::batch::{Batch, Dir, Meta};
use crate::{Event, Feeder, Fill, Stage};

/// Batches the load balancer runs ahead of its returns.
const LB_LAG: u64 = 1;
/// Batches the endpoint runs ahead of its returns.
const ENDPOINT_LAG: u64 = 2;
/// Channel capacity: above the largest number of batches the lags let into any one channel.
const CAPACITY: usize = 8;

enum Msg {
    Batch(Batch),
    /// Drain everything in flight before going on.
    Flush,
    Event(Event, SimTime),
    Stop,
}

/// Options of a run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Input packets per batch (both directions together).
    pub batch_size: usize,
    /// Record in-pipeline latency (wall clock, per batch).
    pub latency: bool,
    /// Copy what each side sees to the [`Taps`] (costs a copy of every packet).
    pub taps: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch_size: 1024,
            latency: true,
            taps: false,
        }
    }
}

/// Counts and measurements of one run, next to what the stages themselves count.
#[derive(Clone, Debug)]
pub struct RunStats {
    /// Packets that entered at the consumer side (including those the driver dropped).
    pub consumer_in: u64,
    /// Packets that entered at the backend side.
    pub backend_in: u64,
    /// Packets delivered to the backends.
    pub to_backend: u64,
    /// Packets delivered to the consumers.
    pub to_consumer: u64,
    /// Drops by reason, all stages together.
    pub dropped: DropCounts,
    /// Wall-clock nanoseconds each packet spent in the pipeline, from batch creation to delivery
    /// or drop (one sample per packet, the time of its batch).
    pub latency_ns: Histogram<u64>,
    /// Wall time of the run.
    pub wall: Duration,
    /// Time each stage spent processing batches, not waiting: endpoint, load balancer, SNAT.
    pub busy: [Duration; 3],
    /// Simulated time of the first and last input packet.
    pub first_ts: Option<SimTime>,
    pub last_ts: Option<SimTime>,
}

/// What a finished run hands back: the counts, and the stages with their own counters.
pub struct Finished<E, L, S> {
    pub stats: RunStats,
    pub endpoint: E,
    pub lb: L,
    pub snat: S,
}

/// What the two sides see: the consumer and backend captures of a replay. Each is called from one
/// thread, in input order.
pub trait Taps: Send + 'static {
    /// A packet as the consumer side sees it: sent (forward, before the endpoint, whatever
    /// happens to it next) or delivered (return, after the endpoint).
    fn consumer(&mut self, frame: &[u8], meta: &Meta);
    /// A packet as the backend side sees it: delivered (forward, after the SNAT stage) or sent by
    /// a backend (return, as it enters the SNAT stage).
    fn backend(&mut self, frame: &[u8], meta: &Meta);
}

/// No taps.
pub struct NoTaps;

impl Taps for NoTaps {
    fn consumer(&mut self, _: &[u8], _: &Meta) {}
    fn backend(&mut self, _: &[u8], _: &Meta) {}
}

/// The part of the backend side that sits on the SNAT thread: it sees each forward packet that
/// leaves the SNAT stage and may address each backend-side packet before the SNAT stage gets it
/// (a replay's backend emulation), or drop it.
pub trait BackendSide: Send + 'static {
    /// A forward packet was delivered to a backend.
    fn delivered(&mut self, frame: &[u8], meta: &Meta);
    /// A backend-side packet is about to enter: address it, or say why it can't be.
    fn enter(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason>;
}

/// Backend-side packets enter as they are.
pub struct AsIs;

impl BackendSide for AsIs {
    fn delivered(&mut self, _: &[u8], _: &Meta) {}
    fn enter(&mut self, _: &mut [u8], _: &mut Meta) -> Result<(), DropReason> {
        Ok(())
    }
}

/// The histogram of in-pipeline latency (1 ns to an hour, 3 significant digits).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

#[derive(Default)]
struct Local {
    delivered: u64,
    dropped: DropCounts,
    /// Time spent processing batches (not waiting on channels).
    busy: Duration,
}

fn record_latency(h: &mut Option<Histogram<u64>>, born: Instant, n: usize) {
    if let Some(h) = h
        && n > 0
    {
        let ns = born.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        h.saturating_record_n(ns.max(1), n as u64);
    }
}

/// A pool of batches: the driver and the stages take from it, the tap writer and the stages give
/// back, so a warm pipeline allocates nothing.
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
    fn get(&self, index: u64) -> Batch {
        let mut b = self.rx.try_recv().unwrap_or_else(|_| Batch::new());
        b.reset(index);
        b
    }
    fn put(&self, b: Batch) {
        let _ = self.tx.send(b);
    }
}

/// Lets a stage prefetch what a batch's packets will touch.
#[inline]
fn prefetch<St: Stage>(stage: &St, batch: &Batch, dir: Dir) {
    if St::PREFETCH {
        for (frame, m) in batch.iter() {
            if m.drop.is_none() {
                stage.prefetch(frame, m, dir);
            }
        }
    }
}

/// Runs one direction of a stage over a batch, counting drops.
fn pass<St: Stage>(
    stage: &mut St,
    local: &mut Local,
    batch: &mut Batch,
    dir: Dir,
    mut tap: Option<&mut Batch>,
) {
    let start = Instant::now();
    prefetch(stage, batch, dir);
    for (frame, m) in batch.iter_mut() {
        if dir == Dir::Forward
            && let Some(t) = tap.as_deref_mut()
        {
            t.push(frame, *m);
        }
        if m.drop.is_some() {
            continue;
        }
        let r = match dir {
            Dir::Forward => stage.forward(frame, m),
            Dir::Return => stage.reverse(frame, m),
        };
        match r {
            Ok(()) => {
                if dir == Dir::Return
                    && let Some(t) = tap.as_deref_mut()
                {
                    t.push(frame, *m);
                }
            }
            Err(r) => {
                m.drop = Some(r);
                local.dropped.add(r);
            }
        }
    }
    local.busy += start.elapsed();
}

/// Merges two tap batches (each in input order) into one in input order.
fn merge_taps(pool: &Pool, a: Batch, b: Batch) -> Batch {
    let mut out = pool.get(a.index);
    {
        let mut x = a.iter().peekable();
        let mut y = b.iter().peekable();
        loop {
            let from_a = match (x.peek(), y.peek()) {
                (Some((_, ma)), Some((_, mb))) => ma.seq <= mb.seq,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (frame, m) = if from_a {
                x.next().unwrap()
            } else {
                y.next().unwrap()
            };
            out.push(frame, *m);
        }
    }
    pool.put(a);
    pool.put(b);
    out
}

/// The loop of a stage between the driver and the SNAT stage. Each forward batch goes through
/// `forward` and on to the next stage; then, while more than `lag` batches are out, a return
/// batch comes back and goes through `back`. A flush drains every return batch; an event is
/// applied and passed on.
fn middle<St: Stage, C>(
    stage: &mut St,
    cx: &mut C,
    lag: u64,
    (rx, next, returns): (Receiver<Msg>, Sender<Msg>, Receiver<Batch>),
    mut forward: impl FnMut(&mut St, &mut C, &mut Batch),
    mut back: impl FnMut(&mut St, &mut C, Batch),
) {
    let mut outstanding = 0u64;
    for msg in rx {
        let keep = match msg {
            Msg::Batch(mut fwd) => {
                forward(stage, cx, &mut fwd);
                next.send(Msg::Batch(fwd))
                    .expect("the next stage takes F(i)");
                outstanding += 1;
                lag
            }
            Msg::Flush => {
                next.send(Msg::Flush).expect("flush");
                0
            }
            Msg::Event(ev, now) => {
                stage.apply(&ev, now);
                next.send(Msg::Event(ev, now)).expect("event");
                continue;
            }
            Msg::Stop => {
                next.send(Msg::Stop).expect("stop");
                break;
            }
        };
        while outstanding > keep {
            let r = returns.recv().expect("the next stage returns R(i)");
            back(stage, cx, r);
            outstanding -= 1;
        }
    }
}

/// Runs the feeder's input through the three stages and returns their final state.
#[allow(clippy::too_many_arguments)]
pub fn run<E, L, S, F, T, B>(
    endpoint: E,
    lb: L,
    snat: S,
    feeder: &mut F,
    taps: T,
    backend: B,
    opts: Options,
) -> (Finished<E, L, S>, T)
where
    E: Stage,
    L: Stage,
    S: Stage,
    F: Feeder,
    T: Taps,
    B: BackendSide,
{
    let start = Instant::now();
    let (to_ep, ep_rx) = bounded::<Msg>(CAPACITY);
    let (ep_to_lb, lb_rx) = bounded::<Msg>(CAPACITY);
    let (lb_to_snat, snat_rx) = bounded::<Msg>(CAPACITY);
    let (srv_tx, srv_rx) = bounded::<Batch>(CAPACITY);
    let (snat_ret_tx, lb_ret_rx) = bounded::<Batch>(CAPACITY);
    let (lb_ret_tx, ep_ret_rx) = bounded::<Batch>(CAPACITY);
    // Tap batches: (consumer side?, batch). Unbounded, as the tap writer must never hold up the
    // loop; it only ever holds what the stages have already copied.
    let (tap_tx, tap_rx) = unbounded::<(bool, Batch)>();
    let pool = Pool::new();
    let latency = opts.latency;
    let tapping = opts.taps;

    thread::scope(|scope| {
        let tap_pool = pool.clone();
        let tap_thread = scope.spawn(move || {
            let mut taps = taps;
            for (consumer, batch) in tap_rx {
                for (frame, meta) in batch.iter() {
                    if consumer {
                        taps.consumer(frame, meta)
                    } else {
                        taps.backend(frame, meta)
                    }
                }
                tap_pool.put(batch);
            }
            taps
        });

        // The SNAT stage: merges F(i) and S(i) by input order.
        let snat_pool = pool.clone();
        let snat_taps = tap_tx.clone();
        let snat_thread = scope.spawn(move || {
            let mut stage = snat;
            let mut backend = backend;
            let mut local = Local::default();
            let mut lat = latency.then(histogram);
            for msg in snat_rx {
                match msg {
                    Msg::Batch(mut fwd) => {
                        let mut srv = srv_rx.recv().expect("the driver sends S(i) with F(i)");
                        debug_assert_eq!(srv.index, fwd.index);
                        let busy = Instant::now();
                        let mut tap = tapping.then(|| snat_pool.get(fwd.index));
                        prefetch(&stage, &fwd, Dir::Forward);
                        prefetch(&stage, &srv, Dir::Return);
                        {
                            let mut f = fwd.iter_mut().peekable();
                            let mut s = srv.iter_mut().peekable();
                            loop {
                                let take_fwd = match (f.peek(), s.peek()) {
                                    (Some((_, a)), Some((_, b))) => a.seq < b.seq,
                                    (Some(_), None) => true,
                                    (None, Some(_)) => false,
                                    (None, None) => break,
                                };
                                let (frame, m) = if take_fwd {
                                    f.next().unwrap()
                                } else {
                                    s.next().unwrap()
                                };
                                if m.drop.is_some() {
                                    continue;
                                }
                                stage.tick(m.ts);
                                let r = if take_fwd {
                                    stage.forward(frame, m).map(|()| {
                                        local.delivered += 1;
                                        backend.delivered(frame, m);
                                        if let Some(t) = tap.as_mut() {
                                            t.push(frame, *m);
                                        }
                                    })
                                } else {
                                    backend.enter(frame, m).and_then(|()| {
                                        if let Some(t) = tap.as_mut() {
                                            t.push(frame, *m);
                                        }
                                        stage.reverse(frame, m)
                                    })
                                };
                                if let Err(r) = r {
                                    m.drop = Some(r);
                                    local.dropped.add(r);
                                }
                            }
                        }
                        local.busy += busy.elapsed();
                        record_latency(&mut lat, fwd.born, fwd.len());
                        snat_pool.put(fwd);
                        if let Some(t) = tap {
                            let _ = snat_taps.send((false, t));
                        }
                        snat_ret_tx.send(srv).expect("the load balancer takes R(i)");
                    }
                    Msg::Flush => {}
                    Msg::Event(ev, now) => stage.apply(&ev, now),
                    Msg::Stop => break,
                }
            }
            (stage, local, lat)
        });

        // The load balancer: F(i+1) before R(i).
        let lb_thread = scope.spawn(move || {
            let mut stage = lb;
            let mut local = Local::default();
            middle(
                &mut stage,
                &mut local,
                LB_LAG,
                (lb_rx, lb_to_snat, lb_ret_rx),
                |stage, local, fwd| pass(stage, local, fwd, Dir::Forward, None),
                |stage, local, mut r| {
                    // Timers run on the return path's clock, which lags: nothing expires before
                    // a packet that is still to come could use it.
                    if let Some(t) = r.first_ts() {
                        stage.tick(t);
                    }
                    pass(stage, local, &mut r, Dir::Return, None);
                    lb_ret_tx.send(r).expect("the endpoint takes R(i)");
                },
            );
            (stage, local)
        });

        // The endpoint: F(i+2) before R(i). Its taps hold the copies of F(i) until R(i) is done,
        // so the consumer capture is in input order.
        let ep_pool = pool.clone();
        let ep_taps = tap_tx.clone();
        let ep_thread = scope.spawn(move || {
            let mut stage = endpoint;
            let mut cx = (
                Local::default(),
                latency.then(histogram),
                VecDeque::<Batch>::new(),
            );
            middle(
                &mut stage,
                &mut cx,
                ENDPOINT_LAG,
                (ep_rx, ep_to_lb, ep_ret_rx),
                |stage, (local, _, pending), fwd| {
                    let mut tap = tapping.then(|| ep_pool.get(fwd.index));
                    pass(stage, local, fwd, Dir::Forward, tap.as_mut());
                    pending.extend(tap);
                },
                |stage, (local, lat, pending), mut r| {
                    let mut tap = tapping.then(|| ep_pool.get(r.index));
                    pass(stage, local, &mut r, Dir::Return, tap.as_mut());
                    local.delivered += r.iter().filter(|(_, m)| m.drop.is_none()).count() as u64;
                    record_latency(lat, r.born, r.len());
                    if let Some(t) = tap {
                        let f = pending.pop_front().expect("F(i) taps wait for R(i)");
                        let _ = ep_taps.send((true, merge_taps(&ep_pool, f, t)));
                    }
                    ep_pool.put(r);
                },
            );
            let (local, lat, _) = cx;
            (stage, local, lat)
        });
        drop(tap_tx);

        // The driver, on this thread.
        let mut consumer_in = 0u64;
        let mut backend_in = 0u64;
        let mut dropped = DropCounts::default();
        let mut first_ts: Option<SimTime> = None;
        let mut last_ts: Option<SimTime> = None;
        let mut index = 0u64;
        loop {
            let mut fwd = pool.get(index);
            let mut srv = pool.get(index);
            let fill = feeder.fill(&mut fwd, &mut srv, opts.batch_size);
            consumer_in += fwd.len() as u64;
            backend_in += srv.len() as u64;
            // Only the feeder drops consumer-side packets before the stages (not IPv4 TCP).
            for (_, m) in fwd.iter() {
                if let Some(r) = m.drop {
                    dropped.add(r);
                }
            }
            // Times never go back within the input (the feeder's contract).
            for b in [&fwd, &srv] {
                if let (Some(f), Some(l)) = (b.first_ts(), b.last_ts()) {
                    first_ts = Some(first_ts.map_or(f, |t| t.min(f)));
                    last_ts = Some(last_ts.map_or(l, |t| t.max(l)));
                }
            }
            if fwd.is_empty() && srv.is_empty() {
                pool.put(fwd);
                pool.put(srv);
            } else {
                srv_tx.send(srv).expect("the SNAT stage takes S(i)");
                to_ep
                    .send(Msg::Batch(fwd))
                    .expect("the endpoint takes F(i)");
                index += 1;
            }
            match fill {
                Fill::More => {}
                Fill::Event(ev, now) => {
                    to_ep.send(Msg::Flush).expect("flush");
                    to_ep.send(Msg::Event(ev, now)).expect("event");
                }
                Fill::Done => {
                    to_ep.send(Msg::Flush).expect("flush");
                    to_ep.send(Msg::Stop).expect("stop");
                    break;
                }
            }
        }
        drop(to_ep);
        drop(srv_tx);
        let (endpoint, ep_local, ep_lat) = ep_thread.join().expect("the endpoint thread");
        let (lb, lb_local) = lb_thread.join().expect("the load balancer thread");
        let (snat, snat_local, snat_lat) = snat_thread.join().expect("the SNAT thread");
        let taps = tap_thread.join().expect("the tap thread");

        for l in [&ep_local, &lb_local, &snat_local] {
            dropped.merge(&l.dropped);
        }
        let mut latency_ns = histogram();
        for h in [ep_lat, snat_lat].into_iter().flatten() {
            latency_ns.add(&h).expect("same bounds");
        }
        let stats = RunStats {
            consumer_in,
            backend_in,
            to_backend: snat_local.delivered,
            to_consumer: ep_local.delivered,
            dropped,
            latency_ns,
            wall: start.elapsed(),
            busy: [ep_local.busy, lb_local.busy, snat_local.busy],
            first_ts,
            last_ts,
        };
        (
            Finished {
                stats,
                endpoint,
                lb,
                snat,
            },
            taps,
        )
    })
}

impl<T: Taps> Taps for Option<T> {
    fn consumer(&mut self, frame: &[u8], meta: &Meta) {
        if let Some(t) = self {
            t.consumer(frame, meta);
        }
    }
    fn backend(&mut self, frame: &[u8], meta: &Meta) {
        if let Some(t) = self {
            t.backend(frame, meta);
        }
    }
}
