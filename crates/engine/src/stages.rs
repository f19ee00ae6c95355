//! The core: a chain of [`Stage`]s in path order, one packet at a time (the sequential engine)
//! or one run of a batch at a time, stage by stage (the threaded engine). Both see each stage
//! tick and process exactly the same packets in the same order.

use std::ops::Range;
use std::time::{Duration, Instant};

use plsim_wire::{DropCounts, DropReason, SimTime};

use crate::{Batch, Dir, Meta, Stage};

/// What a pass over a run records.
#[derive(Debug, Default)]
pub struct RunCx {
    /// Drops by reason.
    pub dropped: DropCounts,
    /// Per stage (path order), time spent processing, when timed.
    pub busy: Option<Vec<Duration>>,
}

/// A chain of stages, implemented for tuples of one to four [`Stage`]s in path order.
pub trait Stages<Ev>: Send {
    /// How many stages.
    const LEN: usize;
    /// One packet forward through every stage in path order: each stage ticks at the packet's
    /// time, then (if the packet has not been dropped) processes it. A drop is written into
    /// `meta.drop` and returned.
    fn forward(&mut self, frame: &mut [u8], meta: &mut Meta) -> Option<DropReason>;
    /// One packet back through every stage in reverse path order, as [`Stages::forward`].
    fn reverse(&mut self, frame: &mut [u8], meta: &mut Meta) -> Option<DropReason>;
    /// A run of packets that all travel forward, stage after stage, each stage over the whole
    /// run (prefetching it first). Exactly what [`Stages::forward`] does to each packet in turn.
    fn forward_run(&mut self, batch: &mut Batch, run: Range<usize>, cx: &mut RunCx);
    /// A run of packets that all travel back, stage after stage in reverse path order.
    fn reverse_run(&mut self, batch: &mut Batch, run: Range<usize>, cx: &mut RunCx);
    /// Every stage's timers, at `now`.
    fn tick(&mut self, now: SimTime);
    /// An event, to every stage in path order.
    fn apply(&mut self, event: &Ev, now: SimTime);
}

/// One stage over one packet: tick, then process unless already dropped.
#[inline(always)]
fn step<Ev, S: Stage<Ev>>(stage: &mut S, frame: &mut [u8], m: &mut Meta, dir: Dir) {
    stage.tick(m.ts);
    if m.drop.is_none() {
        let r = match dir {
            Dir::Forward => stage.forward(frame, m),
            Dir::Return => stage.reverse(frame, m),
        };
        if let Err(r) = r {
            m.drop = Some(r);
        }
    }
}

/// One stage over one run of a batch: prefetch, then each packet in order.
#[inline]
fn pass<Ev, S: Stage<Ev>>(
    stage: &mut S,
    batch: &mut Batch,
    run: Range<usize>,
    dir: Dir,
    cx: &mut RunCx,
    index: usize,
) {
    let start = cx.busy.is_some().then(Instant::now);
    if S::PREFETCH {
        for i in run.clone() {
            let (frame, m) = batch.get(i);
            if m.drop.is_none() {
                stage.prefetch(frame, m, dir);
            }
        }
    }
    for (frame, m) in batch.range_mut(run) {
        let before = m.drop.is_some();
        step(stage, frame, m, dir);
        if !before && let Some(r) = m.drop {
            cx.dropped.add(r);
        }
    }
    if let (Some(start), Some(busy)) = (start, cx.busy.as_mut()) {
        busy[index] += start.elapsed();
    }
}

macro_rules! chain {
    ($len:expr; $($s:ident $i:tt),+; $($r:ident $j:tt),+) => {
        impl<Ev, $($s: Stage<Ev>),+> Stages<Ev> for ($($s,)+) {
            const LEN: usize = $len;
            #[inline]
            fn forward(&mut self, frame: &mut [u8], m: &mut Meta) -> Option<DropReason> {
                $(step(&mut self.$i, frame, m, Dir::Forward);)+
                m.drop
            }
            #[inline]
            fn reverse(&mut self, frame: &mut [u8], m: &mut Meta) -> Option<DropReason> {
                $(step(&mut self.$j, frame, m, Dir::Return);)+
                m.drop
            }
            fn forward_run(&mut self, batch: &mut Batch, run: Range<usize>, cx: &mut RunCx) {
                $(pass(&mut self.$i, batch, run.clone(), Dir::Forward, cx, $i);)+
            }
            fn reverse_run(&mut self, batch: &mut Batch, run: Range<usize>, cx: &mut RunCx) {
                $(pass(&mut self.$j, batch, run.clone(), Dir::Return, cx, $j);)+
            }
            fn tick(&mut self, now: SimTime) {
                $(self.$i.tick(now);)+
            }
            fn apply(&mut self, event: &Ev, now: SimTime) {
                $(self.$i.apply(event, now);)+
            }
        }
    };
}

chain!(1; A 0; A 0);
chain!(2; A 0, B 1; B 1, A 0);
chain!(3; A 0, B 1, C 2; C 2, B 1, A 0);
chain!(4; A 0, B 1, C 2, D 3; D 3, C 2, B 1, A 0);
