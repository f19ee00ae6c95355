//! A packet's trip through the path: the one definition of it.
//!
//! Its steps are functions here, each a small piece both engines call: [`edge_in`] (a packet
//! enters at the consumer side), [`backend_in`] (a backend's packet is addressed),
//! [`Stages::forward`] / [`Stages::reverse`] (the core), [`to_backends`] (what the backends get
//! because of a forward packet, in order), [`edge_out`] (a packet leaves at the consumer side),
//! and [`apply`] (an event). [`Trip`] composes them one input packet at a time, in input order:
//! that is the sequential engine, which defines a run's result, and it is public so that a
//! caller who makes its packets one by one (real TCP stacks, which answer what they receive)
//! drives the path exactly as a run does. The threaded engine schedules the same steps over
//! batches and threads; the differential tests check that schedule against [`Trip`].

use std::time::Instant;

use plsim_wire::{DropReason, Place, SimTime};

use crate::{
    Answer, BackendSide, Dir, Edge, Finished, Meta, Options, Parts, RunStats, Stages, Taps,
};

/// A packet enters at the consumer side: the edge takes it, unless the input dropped it
/// already (not IPv4 TCP, no endpoint). Returns the drop to count, if any.
#[inline]
pub(crate) fn edge_in<Ev, E: Edge<Ev>>(
    edge: &E,
    frame: &mut [u8],
    m: &mut Meta,
) -> Option<DropReason> {
    if m.drop.is_none()
        && let Err(r) = edge.forward(frame, m)
    {
        m.drop = Some(r);
    }
    m.drop
}

/// A backend's packet is about to enter the core: the backend side addresses it. Returns a
/// drop it makes (not one the input made).
#[inline]
pub(crate) fn backend_in<B: BackendSide>(
    backend: &mut B,
    frame: &mut [u8],
    m: &mut Meta,
) -> Option<DropReason> {
    if m.drop.is_some() {
        return None;
    }
    let r = backend.enter(frame, m).err();
    m.drop = r;
    r
}

/// A packet the core passed back leaves at the consumer side through the edge. Returns the
/// drop, if the edge refuses it.
#[inline]
pub(crate) fn edge_out<Ev, E: Edge<Ev>>(
    edge: &E,
    frame: &mut [u8],
    m: &mut Meta,
) -> Option<DropReason> {
    if let Err(r) = edge.reverse(frame, m) {
        m.drop = Some(r);
        return Some(r);
    }
    None
}

/// What the backends get because of the forward packet `m` (`frame`), in order: the segments a
/// stage sent of its own just before it, the packet itself (unless dropped), the segments just
/// after it. `segments` yields what the core sent beside this packet (in the order it sent
/// them); `each` is called for every delivery, with whether it is a segment of the path's own.
/// Segments a later stage dropped, and answers (which go back to the consumer), are skipped.
#[inline]
pub(crate) fn to_backends<'a>(
    frame: &'a [u8],
    m: &'a Meta,
    segments: impl Iterator<Item = (&'a [u8], &'a Meta)> + Clone,
    mut each: impl FnMut(&'a [u8], &'a Meta, bool),
) {
    let ours = |place: Place| {
        segments
            .clone()
            .filter(move |(_, s)| s.dir == Dir::Forward && s.drop.is_none() && s.own == Some(place))
    };
    for (f, s) in ours(Place::Before) {
        each(f, s, true);
    }
    if m.drop.is_none() {
        each(frame, m, false);
    }
    for (f, s) in ours(Place::After) {
        each(f, s, true);
    }
}

/// An event at `now`: the core's timers run to `now`, then the event reaches every core stage
/// in path order, then the edge.
pub(crate) fn apply<Ev, E: Edge<Ev>, C: Stages<Ev>>(
    edge: &mut E,
    core: &mut C,
    ev: &Ev,
    now: SimTime,
) {
    core.tick(now);
    core.apply(ev, now);
    edge.apply(ev, now);
}

/// The path driven one input packet at a time, in input order: the definition of a run (the
/// sequential engine is a feeder's packets through it). Each packet goes its whole trip, every
/// stage with the state every earlier packet left; what each side sees goes to the taps as it
/// happens.
pub struct Trip<Ev, E, C, B, T> {
    edge: E,
    core: C,
    backend: B,
    taps: T,
    stats: RunStats,
    answer: Answer,
    start: Instant,
    _events: std::marker::PhantomData<fn(Ev)>,
}

impl<Ev, E, C, B, T> Trip<Ev, E, C, B, T>
where
    E: Edge<Ev>,
    C: Stages<Ev>,
    B: BackendSide,
    T: Taps,
{
    /// The path of `parts`, its taps seeing both sides. The wall clock of the run starts now.
    pub fn new(parts: Parts<E, C, B>, taps: T) -> Self {
        let Parts {
            edge,
            core,
            backend,
        } = parts;
        Trip {
            edge,
            core,
            backend,
            taps,
            stats: RunStats::new(C::LEN),
            answer: Answer::default(),
            start: Instant::now(),
            _events: std::marker::PhantomData,
        }
    }

    /// One input packet, its whole trip: in at the side `meta.dir` says (`meta` as a
    /// [`crate::Feeder`] makes it: a packet may come already dropped), through every stage,
    /// out at the other side or dropped, with what the path sent beside it (an answer to the
    /// consumer, a segment to the backends). Everything is counted; the taps see it all.
    pub fn packet(&mut self, frame: &mut [u8], m: &mut Meta) {
        self.stats.saw(m.ts);
        match m.dir {
            Dir::Forward => self.forward(frame, m),
            Dir::Reverse => self.reverse(frame, m),
        }
        self.stats.count(m);
    }

    fn forward(&mut self, frame: &mut [u8], m: &mut Meta) {
        let stats = &mut self.stats;
        stats.consumer_in += 1;
        self.taps.consumer(frame, m);
        if let Some(r) = edge_in(&self.edge, frame, m) {
            stats.dropped.add(r);
        }
        let dropped_before = m.drop.is_some();
        let verdict = self.core.forward(frame, m, &mut self.answer);
        if let (Some(r), false) = (verdict, dropped_before) {
            stats.dropped.add(r);
        }
        let a = &mut self.answer;
        let injected = a.injected_meta.take();
        let segments = injected.as_ref().map(|im| (&a.injected[..], im));
        let (backend, taps) = (&mut self.backend, &mut self.taps);
        to_backends(frame, m, segments.into_iter(), |f, s, ours| {
            if ours {
                backend.injected(f, s);
                stats.injected += 1;
            } else {
                backend.delivered(f, s);
                stats.to_backend += 1;
            }
            taps.backend(f, s);
        });
        if let Some(mut am) = a.meta.take()
            && am.drop.is_none()
            && edge_out(&self.edge, &mut a.frame, &mut am).is_none()
        {
            stats.answers += 1;
            taps.consumer(&a.frame, &am);
        }
    }

    fn reverse(&mut self, frame: &mut [u8], m: &mut Meta) {
        let stats = &mut self.stats;
        stats.backend_in += 1;
        match m.drop {
            Some(r) => stats.dropped.add(r),
            None => match backend_in(&mut self.backend, frame, m) {
                Some(r) => stats.dropped.add(r),
                None => self.taps.backend(frame, m),
            },
        }
        let dropped_before = m.drop.is_some();
        match self.core.reverse(frame, m) {
            None => match edge_out(&self.edge, frame, m) {
                None => {
                    stats.to_consumer += 1;
                    self.taps.consumer(frame, m);
                }
                Some(r) => stats.dropped.add(r),
            },
            Some(r) if !dropped_before => stats.dropped.add(r),
            Some(_) => {}
        }
    }

    /// An event at simulated instant `now` (after every packet before it).
    pub fn event(&mut self, ev: &Ev, now: SimTime) {
        self.stats.saw(now);
        apply(&mut self.edge, &mut self.core, ev, now);
    }

    /// Simulated time has reached `now` with no packet: the core's timers run (a caller that
    /// makes its packets itself calls this as its clock moves; a run's input never needs it).
    pub fn tick(&mut self, now: SimTime) {
        self.core.tick(now);
    }

    /// The counts so far.
    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// The taps (a caller that drives the path itself takes what they saw as it goes).
    pub fn taps_mut(&mut self) -> &mut T {
        &mut self.taps
    }

    /// The core stages, as the packets so far left them.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The end of the run: the counts (the wall time from [`Trip::new`]), the parts, the taps.
    pub fn finish(mut self) -> Finished<E, C, B, T> {
        self.stats.wall = self.start.elapsed();
        Finished {
            stats: self.stats,
            parts: Parts {
                edge: self.edge,
                core: self.core,
                backend: self.backend,
            },
            taps: self.taps,
        }
    }
}

/// The sequential engine: the feeder's packets through a [`Trip`], one at a time.
pub(crate) fn run<Ev, E, C, B, F, T>(
    parts: Parts<E, C, B>,
    feeder: &mut F,
    taps: T,
    _opts: Options,
) -> Finished<E, C, B, T>
where
    E: Edge<Ev>,
    C: Stages<Ev>,
    B: BackendSide,
    F: crate::Feeder<Ev>,
    T: Taps,
{
    let mut trip = Trip::new(parts, taps);
    let mut batch = crate::Batch::new();
    loop {
        batch.clear();
        // One packet at a time: a batch of one is the sequential definition itself.
        let fill = feeder.fill(&mut batch, 1);
        for (frame, m) in batch.iter_mut() {
            trip.packet(frame, m);
        }
        match fill {
            crate::Fill::More => {}
            crate::Fill::Event(ev, now) => trip.event(&ev, now),
            crate::Fill::Done => break,
        }
    }
    trip.finish()
}
