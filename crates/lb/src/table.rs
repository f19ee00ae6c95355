//! The load balancer's flow record and its table: a [`plsim_flowtab::FlowTable`] of [`Flow`]s,
//! found by the consumer-side key on the forward path and by the return key for replies.

use plsim_flowtab::Record;

use crate::hash;
use crate::part::LbFlow;

/// The flow table of the load balancer.
pub(crate) type FlowTable = plsim_flowtab::FlowTable<Flow>;

/// One forwarded flow: its keys and the load balancer's part ([`LbFlow`], its fields laid out
/// flat here: `last_seen`, `backend`, `rule`); 40 bytes, plus 8 bytes a bucket (at most 80%
/// full) in each of the two indexes and 16 bytes of expiry heap entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    /// The link id; in a free slot, the next free slot.
    pub link: u32,
    /// The consumer (C), as the endpoint stage tagged it.
    pub client: u32,
    /// The frontend (F).
    pub frontend: u32,
    /// The backend's id (index in `Lb::backends`).
    pub backend: u32,
    /// The backend's address (B), kept here so the hot path needs no other lookup.
    pub backend_ip: u32,
    pub cport: u16,
    pub fport: u16,
    pub bport: u16,
    /// The rule's index; [`DEAD`] in a free slot (a valid index is below 65,535).
    pub rule: u16,
    /// Nanoseconds of the last packet, either way.
    pub last_seen: u64,
    /// The table's generation of the slot (see [`plsim_flowtab::FlowTable`]).
    pub generation: u32,
}

/// The `rule` of a free slot.
const DEAD: u16 = u16::MAX;

impl Record for Flow {
    #[inline]
    fn fwd_hash(&self) -> u64 {
        hash::flow(
            self.link,
            self.client,
            self.cport,
            self.frontend,
            self.fport,
        )
    }
    #[inline]
    fn rev_hash(&self) -> u64 {
        hash::reply(
            self.link,
            self.client,
            self.cport,
            self.backend_ip,
            self.bport,
        )
    }
    #[inline]
    fn is_live(&self) -> bool {
        self.rule != DEAD
    }
    #[inline]
    fn generation(&self) -> u32 {
        self.generation
    }
    #[inline]
    fn set_generation(&mut self, generation: u32) {
        self.generation = generation;
    }
    #[inline]
    fn make_vacant(&mut self, next: u32) {
        self.rule = DEAD;
        self.link = next;
    }
    #[inline]
    fn next_vacant(&self) -> u32 {
        self.link
    }
}

impl Flow {
    /// Its idle deadline: nanoseconds of the last packet plus the idle timeout.
    #[inline]
    pub fn deadline(&self, idle_ns: u64) -> u64 {
        self.last_seen.saturating_add(idle_ns)
    }

    /// The load balancer's part of it.
    #[inline]
    pub fn part(&self) -> LbFlow {
        LbFlow {
            last_seen: self.last_seen,
            backend: self.backend,
            rule: self.rule,
        }
    }

    /// Stores the load balancer's part of it.
    #[inline]
    pub fn set_part(&mut self, p: LbFlow) {
        self.last_seen = p.last_seen;
        self.backend = p.backend;
        self.rule = p.rule;
    }
    #[inline]
    pub fn fwd_is(&self, link: u32, client: u32, cport: u16, frontend: u32, fport: u16) -> bool {
        self.link == link
            && self.client == client
            && self.cport == cport
            && self.frontend == frontend
            && self.fport == fport
    }
    #[inline]
    pub fn rev_is(&self, link: u32, client: u32, cport: u16, backend_ip: u32, bport: u16) -> bool {
        self.link == link
            && self.client == client
            && self.cport == cport
            && self.backend_ip == backend_ip
            && self.bport == bport
    }
}
