//! The engine of plsim: it runs the packets of an input through sans-IO stages, both ways, and
//! counts what happens to each. It knows no stage and no file: the stages, the input and the
//! outputs are the caller's, behind the traits below.
//!
//! ```text
//!            consumer side                                       backend side
//! input ──> [edge] ──> [core stage 1] ──> [core stage 2] ──> backend ([`BackendSide`])
//!  (feeder)   <──────────────   <────────────────   <──────────
//! ```
//!
//! # What a run means
//!
//! A packet's trip is defined once, in [`Trip`]: a packet that enters at the consumer side
//! goes through the edge and the core stages in path order and reaches the backend, with the
//! segments a stage sends of its own beside it (a PROXY protocol header just before or after
//! it, a RST answering a SYN it refused, back through the stages before it and the edge); a
//! packet that enters at the backend side is addressed by the [`BackendSide`], then goes back
//! through the core stages in reverse order and the edge; an event reaches the core (its timers
//! run to the event's instant first) and the edge. A run is defined by the **sequential
//! engine** ([`Engine::Sequential`]): the input's packets through a [`Trip`], one at a time in
//! input order, each with the state every earlier packet left. Nothing a later packet does can
//! change the verdict on an earlier one. A caller whose packets come one at a time (real TCP
//! stacks answering what they receive) drives a [`Trip`] itself, and so runs the same path.
//!
//! The **threaded engine** ([`Engine::Threaded`]) gives exactly that result, every count and
//! every byte the taps see, for every batch size. It calls the same steps (the trip module's
//! functions and [`Stages`]), scheduled over batches and threads; what it adds is the schedule,
//! and it is exact by construction, not by tuning:
//!
//! * The **core** ([`Stages`]: the load balancer and the SNAT stage, say) runs on one thread and
//!   sees every packet in input order, both directions interleaved as in the input. It walks a
//!   batch in *runs* of packets that travel the same way; a forward run goes through stage 1,
//!   then stage 2 (each stage prefetching the whole run before processing it, VPP-style), a
//!   return run through stage 2, then stage 1. Each stage therefore sees exactly the input order:
//!   a run holds no packet of the other direction, and the runs follow each other in order.
//! * The **edge** ([`Edge`]: the private endpoint) runs on the driver thread, ahead of the core
//!   on the way in and behind it on the way back, so it does *not* see the input order. That is
//!   only sound for a stage whose verdicts do not depend on the order of packets, and the trait
//!   makes it so: its packet methods take `&self` (and it is `Sync`, so no `Cell` inside), so a
//!   packet can't change what the next one meets. Only [`Edge::apply`] changes it, and events
//!   are applied at a flush: every packet before the event has left the engine first.
//! * Every timer runs on the time of the packet being processed, in order: each core stage is
//!   [ticked](Stage::tick) at every input packet's time, before that packet, whether the packet
//!   reaches the stage or was dropped before it. No stage ever sees a clock that ran ahead of a
//!   packet it has not processed yet.
//!
//! Nothing depends on thread timing, so a run is replayable byte for byte. The differential
//! tests run both engines on the same inputs and compare everything.
//!
//! # Backpressure, never loss
//!
//! The driver keeps at most a few batches in flight; the channels are bounded above that, so no
//! send ever waits on a full channel that the other side can't drain, and nothing is dropped
//! for want of room.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod batch;
mod stages;
mod threaded;
mod trip;

use std::time::Duration;

use hdrhistogram::Histogram;
use plsim_wire::{DropCounts, DropReason, Place, SimTime};

pub use batch::{Batch, Meta};
pub use plsim_wire::Dir;
pub use plsim_wire::LinkId;
pub use stages::{Answer, RunCx, Stages};
pub use trip::Trip;

/// A stage of the core: it sees every packet in input order, both ways.
pub trait Stage<Ev>: Send {
    /// A packet travelling from the consumer to the backend.
    fn forward(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason>;
    /// A packet travelling from the backend to the consumer.
    fn reverse(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason>;
    /// Whether [`Stage::prefetch`] does anything: the engine skips the extra pass when not.
    const PREFETCH: bool = false;
    /// Called for every packet of a run before the run is processed, so the stage can prefetch
    /// the memory its lookup will touch (the cache misses of a whole run overlap instead of
    /// following one another). Must not change any state.
    fn prefetch(&self, frame: &[u8], meta: &Meta, dir: Dir) {
        let _ = (frame, meta, dir);
    }
    /// Whether this stage may answer a packet it refuses (then the engine walks forward runs
    /// packet after packet, so that an answer passes the stages before this one before they
    /// see the next packet).
    fn may_answer(&self) -> bool {
        false
    }
    /// The answer to the packet [`Stage::forward`] just refused, if the stage has one: its
    /// bytes appended to `out` (the refused packet's link layer). It goes back through the
    /// stages before this one and the edge to the consumer.
    fn take_answer(&mut self, out: &mut Vec<u8>) -> bool {
        let _ = out;
        false
    }
    /// Whether this stage may send a segment of its own to the backends just before a packet
    /// it passes (a PROXY protocol header): then the engine walks forward runs packet after
    /// packet, as for answers.
    fn may_inject(&self) -> bool {
        false
    }
    /// The segment to deliver to the backends with the packet [`Stage::forward`] just passed,
    /// if the stage has one: its bytes appended to `out` (the packet's link layer), and whether
    /// it goes just before or just after the packet. It goes through the stages after this one
    /// (before the packet does), then to the backend.
    fn take_injected(&mut self, out: &mut Vec<u8>) -> Option<Place> {
        let _ = out;
        None
    }
    /// Simulated time has reached `now`: run the timers that are due. Called before every input
    /// packet (whether or not it reaches this stage), and before every event.
    fn tick(&mut self, now: SimTime) {
        let _ = now;
    }
    /// A control-plane change at simulated instant `now`. Returns what it means for the stages
    /// after this one, in path order: events they apply right after this one (say, the flows a
    /// load balancer reset, which the SNAT stage then frees).
    fn apply(&mut self, event: &Ev, now: SimTime) -> Vec<Ev> {
        let _ = (event, now);
        Vec::new()
    }
}

/// The stage at the consumer edge of the path. Its packet methods take `&self`: a packet can't
/// change what a later packet meets, so the threaded engine may run it ahead of the core on the
/// way in and behind it on the way back (see the crate docs).
pub trait Edge<Ev>: Send + Sync {
    /// A packet entering at the consumer side.
    fn forward(&self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason>;
    /// A packet leaving at the consumer side.
    fn reverse(&self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason>;
    /// A control-plane change at simulated instant `now`.
    fn apply(&mut self, event: &Ev, now: SimTime) {
        let _ = (event, now);
    }
}

/// The backend end of the path: it sees each packet delivered to a backend and addresses each
/// packet a backend sends before the core gets it (a replay's backend emulation), or drops it.
/// It runs on the core's thread, in input order.
pub trait BackendSide: Send {
    /// A forward packet was delivered to a backend.
    fn delivered(&mut self, frame: &[u8], meta: &Meta);
    /// A segment a stage sent of its own (see [`Stage::take_injected`]) was delivered to a
    /// backend, just before or after (`meta.own`) the packet whose `meta.seq` it carries.
    /// Like `delivered` unless the backend side cares.
    fn injected(&mut self, frame: &[u8], meta: &Meta) {
        self.delivered(frame, meta);
    }
    /// A backend-side packet is about to enter: address it, or say why it can't be.
    fn enter(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason>;
}

/// Backend-side packets enter as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsIs;

impl BackendSide for AsIs {
    fn delivered(&mut self, _: &[u8], _: &Meta) {}
    fn enter(&mut self, _: &mut [u8], _: &mut Meta) -> Result<(), DropReason> {
        Ok(())
    }
}

/// What the feeder put in a batch, and what comes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fill<Ev> {
    /// The batch is full; there is more.
    More,
    /// Apply this event at this simulated instant after the batch, then go on.
    Event(Ev, SimTime),
    /// The input is over (the batch may hold its last packets).
    Done,
}

/// The input of a run.
pub trait Feeder<Ev> {
    /// Appends at most `max` packets to `batch`, in input order: `Meta::seq` counting up from 0
    /// without a gap, `Meta::ts` never decreasing (events included), `Meta::dir` saying where
    /// each packet enters. A packet may come already dropped (not IPv4 TCP, no endpoint): it
    /// is counted and seen by the consumer-side tap (when it entered there), and no stage sees
    /// it. What the feeder yields must not depend on `max`.
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Ev>;
}

/// What the two sides see. Each method is called in input order.
pub trait Taps: Send {
    /// A packet as the consumer side sees it: sent (forward, before any stage, whatever happens
    /// to it next) or delivered (return, after the edge).
    fn consumer(&mut self, frame: &[u8], meta: &Meta);
    /// A packet as the backend side sees it: delivered (forward, after the core) or sent by a
    /// backend (return, as the [`BackendSide`] addressed it, before the core).
    fn backend(&mut self, frame: &[u8], meta: &Meta);
    /// Whether the taps take anything at all: when not, the engine copies nothing for them.
    fn active(&self) -> bool {
        true
    }
}

/// No taps.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTaps;

impl Taps for NoTaps {
    fn consumer(&mut self, _: &[u8], _: &Meta) {}
    fn backend(&mut self, _: &[u8], _: &Meta) {}
    fn active(&self) -> bool {
        false
    }
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
    fn active(&self) -> bool {
        self.as_ref().is_some_and(Taps::active)
    }
}

/// Which engine runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The threaded engine: the driver and the edge on the calling thread, the core on its own,
    /// the taps on a third (see the crate docs). Its result equals the sequential one exactly.
    #[default]
    Threaded,
    /// The sequential reference: one thread, input order, one packet at a time. Its result is
    /// the definition of a run's result.
    Sequential,
}

/// A name that is no engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an engine: threaded or sequential")]
pub struct UnknownEngine(pub String);

impl std::str::FromStr for Engine {
    type Err = UnknownEngine;
    fn from_str(s: &str) -> Result<Engine, UnknownEngine> {
        match s {
            "threaded" => Ok(Engine::Threaded),
            "sequential" => Ok(Engine::Sequential),
            _ => Err(UnknownEngine(s.to_owned())),
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Threaded => "threaded",
            Engine::Sequential => "sequential",
        })
    }
}

/// The default number of input packets per batch of the threaded engine.
pub const DEFAULT_BATCH: usize = 1024;

/// The largest batch the threaded engine takes.
pub const MAX_BATCH: usize = 1 << 20;

/// A batch size that is not 1 to [`MAX_BATCH`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a batch size: 1 to {MAX_BATCH}")]
pub struct BadBatchSize(pub String);

/// Parses a batch size: 1 to [`MAX_BATCH`] (the command line's `--batch`).
pub fn parse_batch(s: &str) -> Result<usize, BadBatchSize> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_BATCH).contains(&n) => Ok(n),
        _ => Err(BadBatchSize(s.to_owned())),
    }
}

/// Options of a run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Which engine.
    pub engine: Engine,
    /// Input packets per batch (threaded engine; 1 to [`MAX_BATCH`]). It changes how fast a run
    /// goes, never what it finds.
    pub batch_size: usize,
    /// Record in-engine latency (wall clock, per batch; threaded engine).
    pub latency: bool,
    /// Time each stage's passes (costs two clock reads a run per stage).
    pub stage_times: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            engine: Engine::Threaded,
            batch_size: DEFAULT_BATCH,
            latency: true,
            stage_times: false,
        }
    }
}

/// The parts of a path: the edge, the core stages, the backend end.
#[derive(Debug)]
pub struct Parts<E, C, B> {
    /// The stage at the consumer edge.
    pub edge: E,
    /// The core stages, in path order (a tuple of [`Stage`]s).
    pub core: C,
    /// The backend end.
    pub backend: B,
}

/// Counts and measurements of one run.
#[derive(Clone, Debug)]
pub struct RunStats {
    /// Packets that entered at the consumer side (including those dropped before any stage).
    pub consumer_in: u64,
    /// Packets that entered at the backend side.
    pub backend_in: u64,
    /// Packets delivered to the backends.
    pub to_backend: u64,
    /// Packets delivered to the consumers.
    pub to_consumer: u64,
    /// Answers the path sent to the consumers (RSTs for refused SYNs), beside the input.
    pub answers: u64,
    /// Segments the path sent to the backends beside the input (PROXY protocol headers).
    pub injected: u64,
    /// Drops by reason, every stage together: each dropped packet once.
    pub dropped: DropCounts,
    /// Wall-clock nanoseconds each packet spent in the engine, from its batch's creation to its
    /// batch's return (threaded engine; empty for the sequential one).
    pub latency_ns: Histogram<u64>,
    /// Wall time of the run.
    pub wall: Duration,
    /// With [`Options::stage_times`]: time spent processing (not waiting), the edge first, then
    /// each core stage in path order.
    pub busy: Vec<Duration>,
    /// The same counts per connection, indexed by link id (a packet counts under the link a
    /// stage gave it; link 0 holds those that reached no connection).
    pub links: Vec<LinkCounts>,
    /// Simulated time of the first input packet.
    pub first_ts: Option<SimTime>,
    /// The last simulated instant of the run: its last packet or its last event.
    pub last_ts: Option<SimTime>,
}

impl RunStats {
    fn new(stages: usize) -> RunStats {
        RunStats {
            consumer_in: 0,
            backend_in: 0,
            to_backend: 0,
            to_consumer: 0,
            answers: 0,
            injected: 0,
            dropped: DropCounts::default(),
            latency_ns: histogram(),
            wall: Duration::ZERO,
            busy: vec![Duration::ZERO; stages + 1],
            links: Vec::new(),
            first_ts: None,
            last_ts: None,
        }
    }

    /// Adds the counts of `later`, a run of the same path that came after this one (a bench's
    /// next round, say): counts, drops, latency, wall and busy times add up, per connection
    /// too; the simulated span runs from this run's first instant to `later`'s last.
    pub fn merge(&mut self, later: &RunStats) {
        self.consumer_in += later.consumer_in;
        self.backend_in += later.backend_in;
        self.to_backend += later.to_backend;
        self.to_consumer += later.to_consumer;
        self.answers += later.answers;
        self.injected += later.injected;
        self.dropped.merge(&later.dropped);
        // Both histograms come from `histogram()`, with the same bounds: adding can't fail.
        let _ = self.latency_ns.add(&later.latency_ns);
        self.wall += later.wall;
        if self.busy.len() < later.busy.len() {
            self.busy.resize(later.busy.len(), Duration::ZERO);
        }
        for (a, b) in self.busy.iter_mut().zip(&later.busy) {
            *a += *b;
        }
        if self.links.len() < later.links.len() {
            self.links.resize(later.links.len(), LinkCounts::default());
        }
        for (a, b) in self.links.iter_mut().zip(&later.links) {
            a.merge(b);
        }
        self.first_ts = self.first_ts.or(later.first_ts);
        self.last_ts = later.last_ts.or(self.last_ts);
    }

    /// Counts a packet that has been through everything, under its link.
    #[inline]
    fn count(&mut self, m: &Meta) {
        LinkCounts::count(&mut self.links, m);
    }

    /// Notes simulated time `t` (a packet's or an event's).
    fn saw(&mut self, t: SimTime) {
        self.first_ts.get_or_insert(t);
        self.last_ts = Some(self.last_ts.map_or(t, |l| l.max(t)));
    }
}

/// What became of the packets of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounts {
    /// Its packets that entered at the consumer side.
    pub consumer_in: u64,
    /// Its packets that entered at the backend side.
    pub backend_in: u64,
    /// Delivered to the backends.
    pub to_backend: u64,
    /// Delivered to the consumers.
    pub to_consumer: u64,
    /// Dropped, by reason.
    pub dropped: DropCounts,
}

impl LinkCounts {
    /// Adds the counts of `other` (the same connection in another run).
    pub fn merge(&mut self, other: &LinkCounts) {
        self.consumer_in += other.consumer_in;
        self.backend_in += other.backend_in;
        self.to_backend += other.to_backend;
        self.to_consumer += other.to_consumer;
        self.dropped.merge(&other.dropped);
    }

    /// Counts a packet that has been through everything in `links`, indexed by its link id
    /// (grown as needed).
    #[inline]
    pub fn count(links: &mut Vec<LinkCounts>, m: &Meta) {
        let i = m.link.0 as usize;
        if links.len() <= i {
            links.resize(i + 1, LinkCounts::default());
        }
        let l = &mut links[i];
        match (m.dir, m.drop) {
            (Dir::Forward, None) => l.to_backend += 1,
            (Dir::Reverse, None) => l.to_consumer += 1,
            (_, Some(r)) => l.dropped.add(r),
        }
        match m.dir {
            Dir::Forward => l.consumer_in += 1,
            Dir::Reverse => l.backend_in += 1,
        }
    }
}

/// What a finished run hands back: the counts, the parts with their own state, the taps.
#[derive(Debug)]
pub struct Finished<E, C, B, T> {
    /// The counts.
    pub stats: RunStats,
    /// The parts, as the run left them.
    pub parts: Parts<E, C, B>,
    /// The taps.
    pub taps: T,
}

/// The histogram of in-engine latency (1 ns to an hour, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs the feeder's input through the parts with the engine `opts.engine` chooses.
///
/// # Panics
///
/// When `opts.batch_size` is 0 or above [`MAX_BATCH`] (a caller's bug: check flags first).
pub fn run<Ev, E, C, B, F, T>(
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
    assert!(
        (1..=MAX_BATCH).contains(&opts.batch_size),
        "batch size {} is not 1 to {MAX_BATCH}",
        opts.batch_size
    );
    match opts.engine {
        Engine::Sequential => trip::run(parts, feeder, taps, opts),
        Engine::Threaded => threaded::run(parts, feeder, taps, opts),
    }
}
