//! [`FlowTable`]: a slab of flow records, two [`FlowIndex`]es over it (the forward key and the
//! return key of every flow) and a lazy deadline heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::FlowIndex;

/// What a [`FlowTable`] needs of the records it holds.
///
/// The table keeps its bookkeeping inside the records, so a flow costs its record and nothing
/// beside it: a **generation** (a `u32` the table bumps whenever the slot's earlier timers must
/// go stale), a **liveness** mark (a live flow or a vacant slot; a record usually has a field
/// with a value no flow takes, as a state or a rule index) and, in a vacant slot only, the
/// **next vacant slot** (the free list is threaded through the vacant records; any field that
/// a vacant slot does not need will do).
///
/// The hashes are the ones the caller computes for its lookups: their high 32 bits must be
/// well mixed (see [`FlowIndex`]). They must depend only on fields that stay the same while the
/// record is in the table.
pub trait Record: Copy {
    /// The hash of the record's forward key (the key [`FlowTable::find_fwd`] looks up).
    fn fwd_hash(&self) -> u64;
    /// The hash of the record's return key (the key [`FlowTable::find_rev`] looks up).
    fn rev_hash(&self) -> u64;
    /// True for a live flow, false for a vacant slot (after [`make_vacant`](Self::make_vacant)).
    fn is_live(&self) -> bool;
    /// The slot's generation, as [`set_generation`](Self::set_generation) last stored it.
    fn generation(&self) -> u32;
    /// Stores the slot's generation (the table calls it; callers never should).
    fn set_generation(&mut self, generation: u32);
    /// Turns a live record into a vacant slot whose successor on the free list is `next`,
    /// keeping its generation. [`is_live`](Self::is_live) is false afterwards.
    fn make_vacant(&mut self, next: u32);
    /// The `next` of the last [`make_vacant`](Self::make_vacant) (called on vacant slots only).
    fn next_vacant(&self) -> u32;
}

/// The end of the free list.
const NONE: u32 = u32::MAX;

/// A deadline heap entry: `(deadline, slot, generation)`, earliest first (ties: lower slot, then
/// lower generation). 16 bytes.
type Timer = Reverse<(u64, u32, u32)>;

/// A flow table: live flows in a slab of `T` addressed by `u32` slots, found by either of two
/// keys through two prefetchable [`FlowIndex`]es, and expired through a lazy min-heap of
/// deadlines.
///
/// # Slots
///
/// [`insert`](Self::insert) puts a flow in the slot freed last (the free list is a stack
/// threaded through the vacant records), or at the end of the slab when none is free, and
/// returns that slot; the slot stays the flow's until [`remove`](Self::remove). Slot numbers
/// are therefore deterministic: the same sequence of calls gives the same slots.
///
/// # Deadlines
///
/// Each flow has a *real* deadline, which only the caller knows (`deadline_of`, given to
/// [`expire`](Self::expire)), and at least one heap entry. An entry carries the slot's
/// generation when it was pushed; [`remove`](Self::remove) and [`rearm`](Self::rearm) bump the
/// generation, so every entry pushed before goes stale and is skipped when it comes up. The
/// caller keeps one rule: **a live flow's current entry is never later than its real
/// deadline.** A deadline that moves later needs nothing (when the entry comes up,
/// [`expire`](Self::expire) sees the flow is not due and pushes it again at its real deadline:
/// a flow seeing packets costs no heap work); a deadline that moves earlier needs
/// [`rearm`](Self::rearm). Then no flow ever expires late, or early.
///
/// # Memory
///
/// Per live flow: `size_of::<T>()` bytes of slab, an 8-byte bucket in each index (at most 80%
/// full: 10 bytes a flow after [`reserve`](Self::reserve), after a growth 20 at most) and a
/// 16-byte heap entry. A
/// vacant slot costs its record only.
#[derive(Clone, Debug)]
pub struct FlowTable<T> {
    slots: Vec<T>,
    /// The vacant slot freed last, or [`NONE`].
    free_head: u32,
    fwd: FlowIndex,
    rev: FlowIndex,
    heap: BinaryHeap<Timer>,
    len: usize,
}

impl<T> Default for FlowTable<T> {
    fn default() -> FlowTable<T> {
        FlowTable::new()
    }
}

impl<T> FlowTable<T> {
    /// An empty table; it allocates nothing until the first insert.
    pub const fn new() -> FlowTable<T> {
        FlowTable {
            slots: Vec::new(),
            free_head: NONE,
            fwd: FlowIndex::new(),
            rev: FlowIndex::new(),
            heap: BinaryHeap::new(),
            len: 0,
        }
    }

    /// The number of live flows.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no flow is live.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of slots, live and vacant: every slot is below it.
    #[inline]
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Heap bytes of the table: the slab, both indexes and the deadline heap (capacities, not
    /// lengths: what the allocator handed out).
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<T>()
            + self.fwd.memory_bytes()
            + self.rev.memory_bytes()
            + self.heap.capacity() * size_of::<Timer>()
    }

    /// Makes room for `additional` more flows without growing (slab, indexes and heap).
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.fwd.reserve(additional);
        self.rev.reserve(additional);
        self.heap.reserve(additional);
    }

    /// The record in `slot` (a live flow when the slot came from a lookup).
    ///
    /// # Panics
    ///
    /// When `slot` is not below [`slot_count`](Self::slot_count).
    #[inline]
    pub fn get(&self, slot: u32) -> &T {
        &self.slots[slot as usize]
    }

    /// The record in `slot`, to change it. The caller must not change what its hashes, its
    /// liveness or its generation depend on (the indexes would lose it), and must
    /// [`rearm`](Self::rearm) it if its real deadline moves earlier than its armed one.
    ///
    /// # Panics
    ///
    /// When `slot` is not below [`slot_count`](Self::slot_count).
    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut T {
        &mut self.slots[slot as usize]
    }

    /// The slot of the flow whose forward key hashes to `hash` and for which `eq` is true.
    /// `eq` is called only on live records whose tag matches (almost always the right one).
    #[inline]
    pub fn find_fwd(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<u32> {
        let slots = &self.slots;
        self.fwd.find(hash, |s| eq(&slots[s as usize]))
    }

    /// The slot of the flow whose return key hashes to `hash` and for which `eq` is true.
    #[inline]
    pub fn find_rev(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<u32> {
        let slots = &self.slots;
        self.rev.find(hash, |s| eq(&slots[s as usize]))
    }

    /// Brings the forward index's bucket of `hash` towards the CPU (see
    /// [`FlowIndex::prefetch`]): call it some packets before [`find_fwd`](Self::find_fwd) of the
    /// same hash. Changes nothing.
    #[inline]
    pub fn prefetch_fwd(&self, hash: u64) {
        self.fwd.prefetch(hash);
    }

    /// Brings the return index's bucket of `hash` towards the CPU. Changes nothing.
    #[inline]
    pub fn prefetch_rev(&self, hash: u64) {
        self.rev.prefetch(hash);
    }

    /// The slot [`find_fwd`](Self::find_fwd) of `hash` will most likely return (see
    /// [`FlowIndex::candidate`]). Changes nothing.
    #[inline]
    pub fn candidate_fwd(&self, hash: u64) -> Option<u32> {
        self.fwd.candidate(hash)
    }

    /// The slot [`find_rev`](Self::find_rev) of `hash` will most likely return. Changes nothing.
    #[inline]
    pub fn candidate_rev(&self, hash: u64) -> Option<u32> {
        self.rev.candidate(hash)
    }

    /// The earliest deadline in the heap (perhaps of a stale entry, or of a flow not due yet):
    /// [`expire`](Self::expire) at an earlier time has nothing to do.
    #[inline]
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|t| t.0.0)
    }

    /// The heap's entries `(deadline, slot, generation)`, stale ones included, in no order: for
    /// audits and tests.
    pub fn timers(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.heap.iter().map(|t| t.0)
    }
}

impl<T: Record> FlowTable<T> {
    /// Adds a flow whose keys are not in the table yet, with its timer armed at `deadline`;
    /// returns its slot. Its hashes come from [`Record`]; see
    /// [`insert_hashed`](Self::insert_hashed) when the caller has them at hand.
    ///
    /// # Panics
    ///
    /// When the slab would pass [`MAX_SLOT`](crate::MAX_SLOT) slots.
    #[inline]
    pub fn insert(&mut self, flow: T, deadline: u64) -> u32 {
        self.insert_hashed(flow, flow.fwd_hash(), flow.rev_hash(), deadline)
    }

    /// [`insert`](Self::insert) with the record's two hashes, which the caller has computed
    /// already (they must equal [`Record::fwd_hash`] and [`Record::rev_hash`]).
    pub fn insert_hashed(
        &mut self,
        mut flow: T,
        fwd_hash: u64,
        rev_hash: u64,
        deadline: u64,
    ) -> u32 {
        debug_assert!(flow.is_live(), "inserting a vacant record");
        debug_assert_eq!(fwd_hash, flow.fwd_hash());
        debug_assert_eq!(rev_hash, flow.rev_hash());
        let slot = if self.free_head != NONE {
            let slot = self.free_head;
            let vacant = &mut self.slots[slot as usize];
            self.free_head = vacant.next_vacant();
            flow.set_generation(vacant.generation());
            *vacant = flow;
            slot
        } else {
            let slot = self.slots.len() as u32;
            assert!(
                slot <= crate::MAX_SLOT,
                "a FlowTable holds at most MAX_SLOT slots"
            );
            flow.set_generation(0);
            self.slots.push(flow);
            slot
        };
        self.fwd.insert(fwd_hash, slot);
        self.rev.insert(rev_hash, slot);
        self.heap.push(Reverse((
            deadline,
            slot,
            self.slots[slot as usize].generation(),
        )));
        self.len += 1;
        slot
    }

    /// Removes the live flow in `slot` and returns its record (as it was). Its timers go
    /// stale; the slot is the next one [`insert`](Self::insert) takes.
    #[inline]
    pub fn remove(&mut self, slot: u32) -> T {
        let rec = &mut self.slots[slot as usize];
        let flow = *rec;
        debug_assert!(flow.is_live(), "removing vacant slot {slot}");
        rec.make_vacant(self.free_head);
        rec.set_generation(flow.generation().wrapping_add(1));
        self.free_head = slot;
        self.fwd.remove(flow.fwd_hash(), slot);
        self.rev.remove(flow.rev_hash(), slot);
        self.len -= 1;
        flow
    }

    /// Arms the timer of the live flow in `slot` at `deadline`, which may be earlier than the
    /// armed one: the slot's earlier entries go stale (its generation is bumped). Needed only
    /// when a real deadline moves earlier (see the type's docs).
    #[inline]
    pub fn rearm(&mut self, slot: u32, deadline: u64) {
        let rec = &mut self.slots[slot as usize];
        debug_assert!(rec.is_live(), "rearming vacant slot {slot}");
        let generation = rec.generation().wrapping_add(1);
        rec.set_generation(generation);
        self.heap.push(Reverse((deadline, slot, generation)));
    }

    /// Removes the flows whose real deadline (`deadline_of`) is at or before `now`, calling
    /// `on_expired(slot, record)` for each after its removal, in the order of their entries;
    /// returns how many it removed.
    ///
    /// It pops at most `budget` due heap entries (stale ones and re-armed ones count): work is
    /// O(due entries · log n), never a scan. An entry of a live flow whose real deadline is
    /// later (it saw packets since) is pushed again at that deadline.
    pub fn expire(
        &mut self,
        now: u64,
        mut budget: usize,
        mut deadline_of: impl FnMut(&T) -> u64,
        mut on_expired: impl FnMut(u32, T),
    ) -> usize {
        let mut expired = 0;
        while budget > 0 {
            let Some(&Reverse((at, slot, generation))) = self.heap.peek() else {
                break;
            };
            if at > now {
                break;
            }
            self.heap.pop();
            budget -= 1;
            let rec = &self.slots[slot as usize];
            if !rec.is_live() || rec.generation() != generation {
                continue; // stale: removed or re-armed since this entry was pushed
            }
            let due = deadline_of(rec);
            if due <= now {
                let flow = self.remove(slot);
                on_expired(slot, flow);
                expired += 1;
            } else {
                self.heap.push(Reverse((due, slot, generation)));
            }
        }
        expired
    }

    /// The slots of the live flows for which `pred` is true, in slot order. A scan of the
    /// slab: for control-plane actions, not the packet path.
    pub fn live_slots(&self, mut pred: impl FnMut(&T) -> bool) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&s| {
                let f = &self.slots[s as usize];
                f.is_live() && pred(f)
            })
            .collect()
    }

    /// The live flows and their slots, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, f)| f.is_live())
            .map(|(s, f)| (s as u32, f))
    }

    /// Checks every invariant of the table, panicking at the first one broken: each live flow
    /// is found in both indexes under its hashes, and has exactly one current heap entry
    /// (of its generation), no later than `deadline_of` it; the free list holds exactly the
    /// vacant slots; the counts agree. For tests: it takes O(n).
    pub fn assert_consistent(&self, mut deadline_of: impl FnMut(&T) -> u64) {
        // (slot, generation) -> (earliest deadline, entries).
        let mut armed = std::collections::HashMap::new();
        for (at, slot, generation) in self.timers() {
            let e = armed.entry((slot, generation)).or_insert((at, 0));
            *e = (e.0.min(at), e.1 + 1);
        }
        let mut live = 0;
        for (slot, f) in self.iter() {
            live += 1;
            assert_eq!(
                self.fwd.find(f.fwd_hash(), |s| s == slot),
                Some(slot),
                "slot {slot} not in the forward index"
            );
            assert_eq!(
                self.rev.find(f.rev_hash(), |s| s == slot),
                Some(slot),
                "slot {slot} not in the return index"
            );
            let (at, entries) = armed
                .get(&(slot, f.generation()))
                .unwrap_or_else(|| panic!("live slot {slot} has no current timer"));
            assert_eq!(*entries, 1, "live slot {slot} has {entries} current timers");
            assert!(
                *at <= deadline_of(f),
                "slot {slot} armed at {at}, after its deadline {}",
                deadline_of(f)
            );
        }
        assert_eq!(self.len, live, "live count");
        assert_eq!(self.fwd.len(), live, "forward index entries");
        assert_eq!(self.rev.len(), live, "return index entries");
        let mut vacant = vec![false; self.slots.len()];
        let mut at = self.free_head;
        while at != NONE {
            let f = &self.slots[at as usize];
            assert!(!f.is_live(), "live slot {at} on the free list");
            assert!(!vacant[at as usize], "slot {at} twice on the free list");
            vacant[at as usize] = true;
            at = f.next_vacant();
        }
        let free = vacant.iter().filter(|&&v| v).count();
        assert_eq!(
            free + live,
            self.slots.len(),
            "a vacant slot off the free list"
        );
    }
}

#[cfg(test)]
mod tests;
