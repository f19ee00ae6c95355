//! The core: a chain of [`Stage`]s in path order, one packet at a time (the sequential engine)
//! or one run of a batch at a time, stage by stage (the threaded engine). Both see each stage
//! tick and process exactly the same packets in the same order.

use std::ops::Range;
use std::time::{Duration, Instant};

use plsim_wire::{DropCounts, DropReason, Place, SimTime};

use crate::{Batch, Dir, Meta, Stage};

/// What a pass over a run records.
#[derive(Debug, Default)]
pub struct RunCx {
    /// Drops by reason.
    pub dropped: DropCounts,
    /// Per stage (path order), time spent processing, when timed.
    pub busy: Option<Vec<Duration>>,
    /// A buffer for segments stages inject, reused from run to run.
    pub scratch: Vec<u8>,
}

/// What core stages sent of their own beside one packet: an answer to a packet they refused (a
/// RST for a SYN no port was free for, say), on its way to the consumer, or a segment for the
/// backend with a packet they passed (a PROXY protocol header).
#[derive(Debug, Default)]
pub struct Answer {
    /// The answer's bytes (the same link layer as the packet it answers).
    pub frame: Vec<u8>,
    /// Its metadata, when there is an answer (`drop` set if a stage on the way back refused it).
    pub meta: Option<Meta>,
    /// The injected segment's bytes (the same link layer as the packet it goes with).
    pub injected: Vec<u8>,
    /// Its metadata, when there is one: the packet's, travelling forward, `after` saying where
    /// it goes (`drop` set if a stage after the one that sent it refused it).
    pub injected_meta: Option<Meta>,
}

impl Answer {
    /// Takes the segment `stage` injects ahead of the packet `m` it just passed, if it has one.
    fn take_injected<Ev, S: Stage<Ev>>(&mut self, stage: &mut S, m: &Meta) -> bool {
        self.injected.clear();
        let Some(place) = stage.take_injected(&mut self.injected) else {
            return false;
        };
        self.injected_meta = Some(injected_meta(&self.injected, m, place));
        true
    }

    /// Sends the injected segment on through one stage after the one that sent it.
    fn inject_through<Ev, S: Stage<Ev>>(&mut self, stage: &mut S) {
        if let Some(m) = self.injected_meta.as_mut()
            && m.drop.is_none()
            && let Err(r) = stage.forward(&mut self.injected, m)
        {
            m.drop = Some(r);
        }
    }

    /// Takes the answer of `stage` to the packet `m` it just refused, if it has one.
    fn take<Ev, S: Stage<Ev>>(&mut self, stage: &mut S, m: &Meta) -> bool {
        self.frame.clear();
        if !stage.take_answer(&mut self.frame) {
            return false;
        }
        let view = plsim_wire::classify(m.linktype, &self.frame, self.frame.len()).ok();
        self.meta = Some(Meta {
            wire_len: self.frame.len() as u32,
            view,
            dir: Dir::Reverse,
            drop: view.is_none().then_some(DropReason::Malformed),
            own: Some(Place::After),
            ..*m
        });
        true
    }

    /// Sends the answer back through one stage (at the answered packet's time: no tick).
    fn back<Ev, S: Stage<Ev>>(&mut self, stage: &mut S) {
        if let Some(m) = self.meta.as_mut()
            && m.drop.is_none()
            && let Err(r) = stage.reverse(&mut self.frame, m)
        {
            m.drop = Some(r);
        }
    }
}

/// The metadata of a segment injected with the packet `m`: the packet's, for its own bytes.
fn injected_meta(bytes: &[u8], m: &Meta, place: Place) -> Meta {
    let view = plsim_wire::classify(m.linktype, bytes, bytes.len()).ok();
    Meta {
        wire_len: bytes.len() as u32,
        view,
        drop: view.is_none().then_some(DropReason::Malformed),
        own: Some(place),
        ..*m
    }
}

/// A chain of stages, implemented for tuples of one and two [`Stage`]s in path order.
pub trait Stages<Ev>: Send {
    /// How many stages.
    const LEN: usize;
    /// One packet forward through every stage in path order: each stage ticks at the packet's
    /// time, then (if the packet has not been dropped) processes it. A drop is written into
    /// `meta.drop` and returned. A stage that refuses the packet may answer it: the answer goes
    /// back through the stages before it, right away, and is left in `answer`.
    fn forward(
        &mut self,
        frame: &mut [u8],
        meta: &mut Meta,
        answer: &mut Answer,
    ) -> Option<DropReason>;
    /// One packet back through every stage in reverse path order, as [`Stages::forward`].
    fn reverse(&mut self, frame: &mut [u8], meta: &mut Meta) -> Option<DropReason>;
    /// Whether forward runs must go packet after packet: some stage may answer a packet it
    /// refuses, or a stage before the last may inject a segment with one it passes (see
    /// [`Stage::may_answer`], [`Stage::may_inject`]). What the last stage injects is collected
    /// in a stage-major pass.
    fn packet_major(&self) -> bool;
    /// A run of packets that all travel forward. Exactly what [`Stages::forward`] does to
    /// each packet in turn: stage after stage, each stage over the whole run (prefetching it
    /// first); packet after packet when a stage may answer or inject (an answer must pass the
    /// stages before it before they see the next packet). Answers and injected segments are
    /// appended to `answers`, in input order (an injected segment before an answer of the same
    /// packet, which can't have both).
    fn forward_run(
        &mut self,
        batch: &mut Batch,
        run: Range<usize>,
        cx: &mut RunCx,
        answers: &mut Batch,
    );
    /// A run of packets that all travel back, stage after stage in reverse path order.
    fn reverse_run(&mut self, batch: &mut Batch, run: Range<usize>, cx: &mut RunCx);
    /// Every stage's timers, at `now`.
    fn tick(&mut self, now: SimTime);
    /// An event, to every stage in path order; the events a stage returns go to the stages
    /// after it, right after the event itself.
    fn apply(&mut self, event: &Ev, now: SimTime);
}

/// One stage over one packet: tick, then process unless already dropped. True when this stage
/// refused it.
#[inline(always)]
fn step<Ev, S: Stage<Ev>>(stage: &mut S, frame: &mut [u8], m: &mut Meta, dir: Dir) -> bool {
    stage.tick(m.ts);
    if m.drop.is_none() {
        let r = match dir {
            Dir::Forward => stage.forward(frame, m),
            Dir::Reverse => stage.reverse(frame, m),
        };
        if let Err(r) = r {
            m.drop = Some(r);
            return true;
        }
    }
    false
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
    injected: Option<&mut Batch>,
) {
    let start = cx.busy.is_some().then(Instant::now);
    prefetch(stage, batch, run.clone(), dir);
    match injected {
        // The last stage injects: nothing after it has to see its segments before the next
        // packet, so the run stays stage-major; each segment is kept with its packet's place.
        Some(out) if stage.may_inject() => {
            let seg = &mut cx.scratch;
            for (frame, m) in batch.range_mut(run) {
                if step(stage, frame, m, dir) {
                    cx.dropped.add(m.drop.expect("refused"));
                } else if m.drop.is_none() {
                    seg.clear();
                    if let Some(place) = stage.take_injected(seg) {
                        out.push(seg, injected_meta(seg, m, place));
                    }
                }
            }
        }
        _ => {
            for (frame, m) in batch.range_mut(run) {
                if step(stage, frame, m, dir) {
                    cx.dropped.add(m.drop.expect("refused"));
                }
            }
        }
    }
    if let (Some(start), Some(busy)) = (start, cx.busy.as_mut()) {
        busy[index] += start.elapsed();
    }
}

/// Lets a stage prefetch what the packets of a run will touch.
#[inline]
fn prefetch<Ev, S: Stage<Ev>>(stage: &S, batch: &Batch, run: Range<usize>, dir: Dir) {
    if S::PREFETCH {
        for i in run {
            let (frame, m) = batch.get(i);
            if m.drop.is_none() {
                stage.prefetch(frame, m, dir);
            }
        }
    }
}

/// A forward run, packet after packet through the whole chain (when a stage may answer).
fn packet_major<Ev, C: Stages<Ev>>(
    core: &mut C,
    batch: &mut Batch,
    run: Range<usize>,
    cx: &mut RunCx,
    answers: &mut Batch,
) {
    let mut answer = Answer::default();
    for (frame, m) in batch.range_mut(run) {
        let before = m.drop.is_some();
        if let Some(r) = core.forward(frame, m, &mut answer)
            && !before
        {
            cx.dropped.add(r);
        }
        if let Some(im) = answer.injected_meta.take() {
            answers.push(&answer.injected, im);
        }
        if let Some(am) = answer.meta.take() {
            answers.push(&answer.frame, am);
        }
    }
}

impl<Ev, A: Stage<Ev>> Stages<Ev> for (A,) {
    const LEN: usize = 1;
    fn forward(
        &mut self,
        frame: &mut [u8],
        m: &mut Meta,
        answer: &mut Answer,
    ) -> Option<DropReason> {
        if step(&mut self.0, frame, m, Dir::Forward) {
            answer.take(&mut self.0, m);
        } else if m.drop.is_none() {
            answer.take_injected(&mut self.0, m);
        }
        m.drop
    }
    fn reverse(&mut self, frame: &mut [u8], m: &mut Meta) -> Option<DropReason> {
        step(&mut self.0, frame, m, Dir::Reverse);
        m.drop
    }
    fn packet_major(&self) -> bool {
        self.0.may_answer()
    }
    fn forward_run(
        &mut self,
        batch: &mut Batch,
        run: Range<usize>,
        cx: &mut RunCx,
        answers: &mut Batch,
    ) {
        if self.packet_major() {
            prefetch(&self.0, batch, run.clone(), Dir::Forward);
            packet_major(self, batch, run, cx, answers);
        } else {
            pass(&mut self.0, batch, run, Dir::Forward, cx, 0, Some(answers));
        }
    }
    fn reverse_run(&mut self, batch: &mut Batch, run: Range<usize>, cx: &mut RunCx) {
        pass(&mut self.0, batch, run, Dir::Reverse, cx, 0, None);
    }
    fn tick(&mut self, now: SimTime) {
        self.0.tick(now);
    }
    fn apply(&mut self, event: &Ev, now: SimTime) {
        let _ = self.0.apply(event, now);
    }
}

impl<Ev, A: Stage<Ev>, B: Stage<Ev>> Stages<Ev> for (A, B) {
    const LEN: usize = 2;
    fn forward(
        &mut self,
        frame: &mut [u8],
        m: &mut Meta,
        answer: &mut Answer,
    ) -> Option<DropReason> {
        if step(&mut self.0, frame, m, Dir::Forward) {
            answer.take(&mut self.0, m);
        } else if m.drop.is_none() && answer.take_injected(&mut self.0, m) {
            // Ahead of the packet through the second stage.
            self.1.tick(m.ts);
            answer.inject_through(&mut self.1);
        }
        if step(&mut self.1, frame, m, Dir::Forward) {
            if answer.take(&mut self.1, m) {
                answer.back(&mut self.0);
            }
        } else if m.drop.is_none() && answer.injected_meta.is_none() {
            // One injected segment a packet at most: the first stage's wins.
            answer.take_injected(&mut self.1, m);
        }
        m.drop
    }
    fn reverse(&mut self, frame: &mut [u8], m: &mut Meta) -> Option<DropReason> {
        step(&mut self.1, frame, m, Dir::Reverse);
        step(&mut self.0, frame, m, Dir::Reverse);
        m.drop
    }
    fn packet_major(&self) -> bool {
        // What the first stage injects must pass the second before the packet does.
        self.0.may_answer() || self.1.may_answer() || self.0.may_inject()
    }
    fn forward_run(
        &mut self,
        batch: &mut Batch,
        run: Range<usize>,
        cx: &mut RunCx,
        answers: &mut Batch,
    ) {
        if self.packet_major() {
            prefetch(&self.0, batch, run.clone(), Dir::Forward);
            packet_major(self, batch, run, cx, answers);
        } else {
            pass(&mut self.0, batch, run.clone(), Dir::Forward, cx, 0, None);
            pass(&mut self.1, batch, run, Dir::Forward, cx, 1, Some(answers));
        }
    }
    fn reverse_run(&mut self, batch: &mut Batch, run: Range<usize>, cx: &mut RunCx) {
        pass(&mut self.1, batch, run.clone(), Dir::Reverse, cx, 1, None);
        pass(&mut self.0, batch, run, Dir::Reverse, cx, 0, None);
    }
    fn tick(&mut self, now: SimTime) {
        self.0.tick(now);
        self.1.tick(now);
    }
    fn apply(&mut self, event: &Ev, now: SimTime) {
        // What the first stage makes of the event goes to the second, right after it.
        let derived = self.0.apply(event, now);
        let _ = self.1.apply(event, now);
        for d in &derived {
            let _ = self.1.apply(d, now);
        }
    }
}
