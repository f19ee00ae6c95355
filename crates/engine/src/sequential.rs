//! The sequential reference engine: one thread, input order, one packet at a time, through
//! every stage at once. Its result is the definition of a run's result; it shares no
//! scheduling code with the threaded engine, so the differential tests compare two
//! independent computations.

use std::time::Instant;

use crate::{
    Answer, BackendSide, Batch, Dir, Edge, Feeder, Fill, Finished, Options, Parts, RunStats,
    Stages, Taps,
};

pub(crate) fn run<Ev, E, C, B, F, T>(
    parts: Parts<E, C, B>,
    feeder: &mut F,
    mut taps: T,
    _opts: Options,
) -> Finished<E, C, B, T>
where
    E: Edge<Ev>,
    C: Stages<Ev>,
    B: BackendSide,
    F: Feeder<Ev>,
    T: Taps,
{
    let start = Instant::now();
    let Parts {
        mut edge,
        mut core,
        mut backend,
    } = parts;
    let mut stats = RunStats::new(C::LEN);
    let mut batch = Batch::new();
    let mut answer = Answer::default();
    loop {
        batch.clear();
        // One packet at a time: a batch of one is the sequential definition itself.
        let fill = feeder.fill(&mut batch, 1);
        for i in 0..batch.len() {
            let (frame, m) = batch.get_mut(i);
            stats.saw(m.ts);
            match m.dir {
                Dir::Forward => {
                    stats.consumer_in += 1;
                    taps.consumer(frame, m);
                    if let Some(r) = m.drop {
                        // Dropped before any stage (not IPv4 TCP, no endpoint).
                        stats.dropped.add(r);
                    } else if let Err(r) = edge.forward(frame, m) {
                        m.drop = Some(r);
                        stats.dropped.add(r);
                    }
                    let dropped_before = m.drop.is_some();
                    let verdict = core.forward(frame, m, &mut answer);
                    let injected = answer.injected_meta.take().filter(|im| im.drop.is_none());
                    // What goes just before the packet, the packet, what goes after.
                    for after in [false, true] {
                        if after {
                            match verdict {
                                None => {
                                    backend.delivered(frame, m);
                                    stats.to_backend += 1;
                                    taps.backend(frame, m);
                                }
                                Some(r) if !dropped_before => stats.dropped.add(r),
                                Some(_) => {}
                            }
                        }
                        if let Some(im) = injected.filter(|im| im.after == after) {
                            backend.injected(&answer.injected, &im);
                            stats.injected += 1;
                            taps.backend(&answer.injected, &im);
                        }
                    }
                    if let Some(mut am) = answer.meta.take()
                        && am.drop.is_none()
                        && edge.reverse(&mut answer.frame, &mut am).is_ok()
                    {
                        stats.answers += 1;
                        taps.consumer(&answer.frame, &am);
                    }
                }
                Dir::Return => {
                    stats.backend_in += 1;
                    match m.drop {
                        Some(r) => stats.dropped.add(r),
                        None => match backend.enter(frame, m) {
                            Ok(()) => taps.backend(frame, m),
                            Err(r) => {
                                m.drop = Some(r);
                                stats.dropped.add(r);
                            }
                        },
                    }
                    let dropped_before = m.drop.is_some();
                    match core.reverse(frame, m) {
                        None => match edge.reverse(frame, m) {
                            Ok(()) => {
                                stats.to_consumer += 1;
                                taps.consumer(frame, m);
                            }
                            Err(r) => {
                                m.drop = Some(r);
                                stats.dropped.add(r);
                            }
                        },
                        Some(r) if !dropped_before => stats.dropped.add(r),
                        Some(_) => {}
                    }
                }
            }
            stats.count(m);
        }
        match fill {
            Fill::More => {}
            Fill::Event(ev, now) => {
                stats.saw(now);
                core.tick(now);
                core.apply(&ev, now);
                edge.apply(&ev, now);
            }
            Fill::Done => break,
        }
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
