//! The flow table: a slab of flows, two hash indexes over it (the consumer-side key for the
//! forward path, the return key for replies) and a lazy expiry heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use plsim_flowtab::FlowIndex;

use crate::hash;

/// One forwarded flow: 40 bytes, plus 8 bytes a bucket (at most 80% full) in each of the two
/// indexes and 16 bytes of expiry heap entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
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
    /// Bumped each time the slot is freed, so stale heap entries are recognised.
    pub generation: u32,
}

/// The `rule` of a free slot.
pub(crate) const DEAD: u16 = u16::MAX;

impl Flow {
    /// True for a flow in the table (not a free slot).
    #[inline]
    pub fn live(&self) -> bool {
        self.rule != DEAD
    }
    #[inline]
    pub fn fwd_hash(&self) -> u64 {
        hash::flow(
            self.link,
            self.client,
            self.cport,
            self.frontend,
            self.fport,
        )
    }
    #[inline]
    pub fn rev_hash(&self) -> u64 {
        hash::reply(
            self.link,
            self.client,
            self.cport,
            self.backend_ip,
            self.bport,
        )
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

/// The flows and their indexes.
#[derive(Debug, Default)]
pub(crate) struct FlowTable {
    pub flows: Vec<Flow>,
    free: Vec<u32>,
    fwd: FlowIndex,
    rev: FlowIndex,
    /// `(deadline ns, slot, generation)`, earliest first. A flow has one entry; when it is due
    /// but has seen packets since, it is pushed again with its new deadline (lazy expiry).
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    live: usize,
}

impl FlowTable {
    /// The number of live flows.
    pub fn len(&self) -> usize {
        self.live
    }

    /// The slot of the flow with this consumer-side key.
    #[inline]
    pub fn find_fwd(
        &self,
        h: u64,
        link: u32,
        client: u32,
        cport: u16,
        frontend: u32,
        fport: u16,
    ) -> Option<u32> {
        let flows = &self.flows;
        self.fwd.find(h, |s| {
            flows[s as usize].fwd_is(link, client, cport, frontend, fport)
        })
    }

    /// The slot of the flow with this return key.
    #[inline]
    pub fn find_rev(
        &self,
        h: u64,
        link: u32,
        client: u32,
        cport: u16,
        backend_ip: u32,
        bport: u16,
    ) -> Option<u32> {
        let flows = &self.flows;
        self.rev.find(h, |s| {
            flows[s as usize].rev_is(link, client, cport, backend_ip, bport)
        })
    }

    /// Prefetches the forward index's bucket for hash `h`.
    #[inline]
    pub fn prefetch_fwd(&self, h: u64) {
        self.fwd.prefetch(h);
    }

    /// Prefetches the return index's bucket for hash `h`.
    #[inline]
    pub fn prefetch_rev(&self, h: u64) {
        self.rev.prefetch(h);
    }

    /// The slot the forward index most likely holds under `h` (its first entry with `h`'s tag).
    #[cfg(test)]
    pub fn fwd_candidate(&self, h: u64) -> Option<u32> {
        self.fwd.candidate(h)
    }

    /// The slot the return index most likely holds under `h`.
    #[cfg(test)]
    pub fn rev_candidate(&self, h: u64) -> Option<u32> {
        self.rev.candidate(h)
    }

    /// Heap bytes of the table: slab, free list, both indexes, expiry heap (capacities).
    pub fn memory_bytes(&self) -> usize {
        self.flows.capacity() * size_of::<Flow>()
            + self.free.capacity() * 4
            + self.fwd.memory_bytes()
            + self.rev.memory_bytes()
            + self.heap.capacity() * size_of::<Reverse<(u64, u32, u32)>>()
    }

    /// Adds a flow (its keys must not be in the table); returns its slot.
    pub fn insert(&mut self, mut flow: Flow, fwd_hash: u64, rev_hash: u64, idle_ns: u64) -> u32 {
        debug_assert!(flow.live());
        let slot = match self.free.pop() {
            Some(slot) => {
                flow.generation = self.flows[slot as usize].generation;
                self.flows[slot as usize] = flow;
                slot
            }
            None => {
                flow.generation = 0;
                self.flows.push(flow);
                (self.flows.len() - 1) as u32
            }
        };
        self.fwd.insert(fwd_hash, slot);
        self.rev.insert(rev_hash, slot);
        let generation = self.flows[slot as usize].generation;
        self.heap.push(Reverse((
            flow.last_seen.saturating_add(idle_ns),
            slot,
            generation,
        )));
        self.live += 1;
        slot
    }

    /// Removes the flow in `slot` (which must be live) and returns it.
    pub fn remove(&mut self, slot: u32) -> Flow {
        let flow = self.flows[slot as usize];
        debug_assert!(flow.live());
        self.fwd.remove(flow.fwd_hash(), slot);
        self.rev.remove(flow.rev_hash(), slot);
        let f = &mut self.flows[slot as usize];
        f.rule = DEAD;
        f.generation = f.generation.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        flow
    }

    /// Removes up to `budget` flows idle for `idle_ns` or more at `now`, calling `on_expired`
    /// for each; returns how many it removed. Work is O(due entries), never a scan.
    pub fn expire(
        &mut self,
        now: u64,
        idle_ns: u64,
        mut budget: usize,
        mut on_expired: impl FnMut(&Flow),
    ) -> usize {
        let mut expired = 0;
        while budget > 0 {
            let Some(&Reverse((deadline, slot, generation))) = self.heap.peek() else {
                break;
            };
            if deadline > now {
                break;
            }
            self.heap.pop();
            budget -= 1;
            let f = &self.flows[slot as usize];
            if !f.live() || f.generation != generation {
                continue; // removed (or replaced) since this entry was pushed
            }
            let due = f.last_seen.saturating_add(idle_ns);
            if due <= now {
                let flow = self.remove(slot);
                on_expired(&flow);
                expired += 1;
            } else {
                self.heap.push(Reverse((due, slot, generation)));
            }
        }
        expired
    }

    /// The slots of the live flows matching `pred`, in slot order.
    pub fn live_slots(&self, mut pred: impl FnMut(&Flow) -> bool) -> Vec<u32> {
        (0..self.flows.len() as u32)
            .filter(|&s| {
                let f = &self.flows[s as usize];
                f.live() && pred(f)
            })
            .collect()
    }
}
