//! The pipeline of plsim: the endpoint, load balancer and SNAT stages on their own threads,
//! joined by bounded lock-free channels (crossbeam) that carry batches of packets both ways.
//!
//! The stages themselves are sans-IO state machines in their own crates; this crate owns the
//! threads, the channels, the batches (frames in one reused `bytes` buffer per batch), the
//! schedule that makes every run deterministic (see [`engine`]), and the run's measurements
//! (counts, and an hdrhistogram of in-pipeline latency).

mod batch;
pub mod bench;
pub mod engine;
pub mod path;
pub mod replay;
pub mod sim;
pub mod stages;
pub mod summary;
pub mod tcp;

use std::net::Ipv4Addr;

pub use batch::{Batch, Dir, Meta};
pub use engine::{AsIs, BackendSide, Finished, NoTaps, Options, RunStats, Taps, run};
use plsim_wire::{DropReason, LinkId, SimTime};

/// A control-plane change, applied to every stage at one simulated instant, after everything
/// before it has left the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection became Approved: its endpoint passes packets from now on.
    LinkApproved {
        link: LinkId,
        /// The consumer VNet of its private endpoint.
        vnet: u32,
        /// The private endpoint's address.
        endpoint: Ipv4Addr,
        /// The service's load balancer frontend.
        frontend: Ipv4Addr,
        /// The service's index.
        service: usize,
    },
    /// A connection left Approved (rejected, removed): its packets stop and its flows go.
    LinkClosed { link: LinkId, service: usize },
    /// A backend stopped answering its health probe.
    BackendDown(Ipv4Addr),
    /// A backend answers its health probe again.
    BackendUp(Ipv4Addr),
    /// A NAT IP configuration was added to a service.
    NatIpAdded { service: usize, ip: Ipv4Addr },
}

/// What the pipeline needs of a stage: both directions of one packet, timers, and events.
/// Implementations wrap the sans-IO stage crates.
pub trait Stage: Send {
    /// A packet travelling from the consumer to the backend.
    fn forward(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason>;
    /// A packet travelling from the backend to the consumer.
    fn reverse(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason>;
    /// Whether [`Stage::prefetch`] does anything: the engine skips the extra pass when not.
    const PREFETCH: bool = false;
    /// Called for every packet of a batch before the batch is processed, so the stage can
    /// prefetch the memory its lookup will touch (VPP-style: the cache misses of a whole batch
    /// overlap instead of following one another). Must not change any state.
    fn prefetch(&self, frame: &[u8], meta: &Meta, dir: Dir) {
        let _ = (frame, meta, dir);
    }
    /// Simulated time has reached `now`: run the timers that are due.
    fn tick(&mut self, now: SimTime) {
        let _ = now;
    }
    /// A control-plane change.
    fn apply(&mut self, event: &Event, now: SimTime) {
        let _ = (event, now);
    }
}

/// What the driver got from the feeder for one batch.
#[derive(Debug)]
pub enum Fill {
    /// The batch is full; there is more.
    More,
    /// Apply this event (at this time) after the batch, then go on.
    Event(Event, SimTime),
    /// The input is over (the batch may hold its last packets).
    Done,
}

/// The input of a run: fills the consumer-side batch `F(i)` and the backend-side batch `S(i)` with
/// at most `max` packets between them, in input order (`Meta::seq` increasing, `Meta::ts` never
/// decreasing). Only consumer-side packets may come already dropped (not IPv4 TCP).
pub trait Feeder {
    /// Fills the next batch.
    fn fill(&mut self, consumer: &mut Batch, backend: &mut Batch, max: usize) -> Fill;
}
