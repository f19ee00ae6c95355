//! [`ConnTable`]: one record per connection, found through **one** [`FlowIndex`] by any of its
//! keys (up to [`KEYS`], each present or not as the record's parts come and go), expired
//! through one lazy deadline heap. The table for records that several stages share, each
//! stage owning a part of the record: a part that ends takes its key out of the index, and the
//! record stays while any part lives.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::FlowIndex;

/// The most keys a [`ConnRecord`] has.
pub const KEYS: usize = 3;

/// What a [`ConnTable`] needs of its records.
///
/// Like [`crate::Record`], the table keeps its bookkeeping inside the records (a generation, a
/// liveness mark, the next vacant slot in a vacant record). The keys are the caller's: each
/// is the hash of one way of finding the record (their high 32 bits well mixed, see
/// [`FlowIndex`]), present or not; each must depend only on fields the caller changes through
/// [`ConnTable::update`] (never through [`ConnTable::get_mut`]).
pub trait ConnRecord: Copy {
    /// The hash of each key the record has now (`None`: it has no such key now).
    fn keys(&self) -> [Option<u64>; KEYS];
    /// True for a live record, false for a vacant slot.
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

/// What [`ConnTable::expire`] asks of its caller (a pair of closures will do: a record's
/// deadline, and what ends when it is due).
pub trait Expiry<T> {
    /// A live record's real deadline: the earliest of its live parts'.
    fn deadline(&mut self, rec: &T) -> u64;
    /// Ends what is due in the record in `slot`; true when something of it lives on.
    fn due(&mut self, slot: u32, rec: &mut T) -> bool;
}

impl<T, D: FnMut(&T) -> u64, U: FnMut(u32, &mut T) -> bool> Expiry<T> for (D, U) {
    #[inline]
    fn deadline(&mut self, rec: &T) -> u64 {
        (self.0)(rec)
    }
    #[inline]
    fn due(&mut self, slot: u32, rec: &mut T) -> bool {
        (self.1)(slot, rec)
    }
}

/// The end of the free list.
const NONE: u32 = u32::MAX;

/// A deadline heap entry: `(deadline, slot, generation)`, earliest first. 16 bytes.
type Timer = Reverse<(u64, u32, u32)>;

/// A table of connection records: a slab addressed by `u32` slots, one [`FlowIndex`] holding
/// every present key of every record, and a lazy min-heap of deadlines (one live entry per
/// record, at the record's earliest deadline; the rules are [`crate::FlowTable`]'s: an entry
/// is never later than the record's real deadline, a deadline that moves later costs nothing,
/// one that moves earlier needs [`rearm`](Self::rearm)).
///
/// Slots are deterministic (the slot freed last is taken first), so the same sequence of calls
/// gives the same slots.
///
/// Memory per record: `size_of::<T>()`, an 8-byte bucket per present key (the index at most
/// 80% full) and a 16-byte heap entry.
#[derive(Clone, Debug)]
pub struct ConnTable<T> {
    slots: Vec<T>,
    free_head: u32,
    index: FlowIndex,
    heap: BinaryHeap<Timer>,
    len: usize,
}

impl<T> Default for ConnTable<T> {
    fn default() -> ConnTable<T> {
        ConnTable::new()
    }
}

impl<T> ConnTable<T> {
    /// An empty table; it allocates nothing until the first insert.
    pub const fn new() -> ConnTable<T> {
        ConnTable {
            slots: Vec::new(),
            free_head: NONE,
            index: FlowIndex::new(),
            heap: BinaryHeap::new(),
            len: 0,
        }
    }

    /// The number of live records.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no record is live.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of slots, live and vacant: every slot is below it.
    #[inline]
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Heap bytes: the slab, the index and the heap (capacities).
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<T>()
            + self.index.memory_bytes()
            + self.heap.capacity() * size_of::<Timer>()
    }

    /// The bytes of the index alone (capacity).
    pub fn index_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// Makes room for `records` more records holding `keys` more keys in all, without growing.
    pub fn reserve(&mut self, records: usize, keys: usize) {
        self.slots.reserve(records);
        self.index.reserve(keys);
        self.heap.reserve(records);
    }

    /// The record in `slot`.
    ///
    /// # Panics
    ///
    /// When `slot` is not below [`slot_count`](Self::slot_count).
    #[inline]
    pub fn get(&self, slot: u32) -> &T {
        &self.slots[slot as usize]
    }

    /// The record in `slot`, to change what no key depends on (keys change through
    /// [`update`](Self::update)); [`rearm`](Self::rearm) it if its deadline moves earlier.
    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut T {
        &mut self.slots[slot as usize]
    }

    /// The slot of a live record with a key hashing to `hash` for which `eq` is true. `eq` is
    /// called only on records with an entry whose tag matches; it must tell the kinds of key
    /// apart (the index holds them all).
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash, |s| eq(&slots[s as usize]))
    }

    /// Brings the index bucket of `hash` towards the CPU. Changes nothing.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// The slot [`find`](Self::find) of `hash` will most likely return (the first entry whose
    /// tag matches), to prefetch its record once the bucket is cached. Changes nothing.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<u32> {
        self.index.candidate(hash)
    }

    /// Brings the record in `slot` towards the CPU (nothing for a slot past the slab).
    /// Changes nothing.
    #[inline]
    pub fn prefetch_slot(&self, slot: u32) {
        if let Some(r) = self.slots.get(slot as usize) {
            crate::prefetch_read(r);
        }
    }

    /// The earliest deadline in the heap (perhaps of a stale entry).
    #[inline]
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|t| t.0.0)
    }
}

impl<T: ConnRecord> ConnTable<T> {
    /// Adds a live record, none of whose keys is in the table yet, its timer armed at
    /// `deadline`; returns its slot.
    ///
    /// # Panics
    ///
    /// When the slab would pass [`MAX_SLOT`](crate::MAX_SLOT) slots.
    pub fn insert(&mut self, mut rec: T, deadline: u64) -> u32 {
        debug_assert!(rec.is_live(), "inserting a vacant record");
        let slot = if self.free_head != NONE {
            let slot = self.free_head;
            let vacant = &mut self.slots[slot as usize];
            self.free_head = vacant.next_vacant();
            rec.set_generation(vacant.generation());
            *vacant = rec;
            slot
        } else {
            let slot = self.slots.len() as u32;
            assert!(
                slot <= crate::MAX_SLOT,
                "a ConnTable holds at most MAX_SLOT slots"
            );
            rec.set_generation(0);
            self.slots.push(rec);
            slot
        };
        for h in rec.keys().into_iter().flatten() {
            self.index.insert(h, slot);
        }
        self.heap.push(Reverse((
            deadline,
            slot,
            self.slots[slot as usize].generation(),
        )));
        self.len += 1;
        slot
    }

    /// Changes the live record in `slot` with `change`, keys included: the index follows
    /// (a key that went is taken out, one that came is put in, one that changed moves). The
    /// record must stay live, and a key it gains must be in no other record. Returns what
    /// `change` returns.
    pub fn update<R>(&mut self, slot: u32, change: impl FnOnce(&mut T) -> R) -> R {
        let rec = &mut self.slots[slot as usize];
        let before = rec.keys();
        let r = change(rec);
        debug_assert!(rec.is_live(), "an update made slot {slot} vacant");
        let after = rec.keys();
        self.reindex(slot, before, after);
        r
    }

    /// Moves the index entries of `slot` from the keys `before` to `after`.
    fn reindex(&mut self, slot: u32, before: [Option<u64>; KEYS], after: [Option<u64>; KEYS]) {
        for (b, a) in before.into_iter().zip(after) {
            if b != a {
                if let Some(h) = b {
                    self.index.remove(h, slot);
                }
                if let Some(h) = a {
                    self.index.insert(h, slot);
                }
            }
        }
    }

    /// Removes the live record in `slot` and returns it (as it was). Its timers go stale; the
    /// slot is the next one [`insert`](Self::insert) takes.
    pub fn remove(&mut self, slot: u32) -> T {
        let rec = &mut self.slots[slot as usize];
        let old = *rec;
        debug_assert!(old.is_live(), "removing vacant slot {slot}");
        rec.make_vacant(self.free_head);
        rec.set_generation(old.generation().wrapping_add(1));
        self.free_head = slot;
        for h in old.keys().into_iter().flatten() {
            self.index.remove(h, slot);
        }
        self.len -= 1;
        old
    }

    /// Arms the timer of the live record in `slot` at `deadline`, which may be earlier than
    /// the armed one (the slot's earlier entries go stale).
    #[inline]
    pub fn rearm(&mut self, slot: u32, deadline: u64) {
        let rec = &mut self.slots[slot as usize];
        debug_assert!(rec.is_live(), "rearming vacant slot {slot}");
        let generation = rec.generation().wrapping_add(1);
        rec.set_generation(generation);
        self.heap.push(Reverse((deadline, slot, generation)));
    }

    /// Runs the records whose real deadline ([`Expiry::deadline`]) is at or before `now`, in
    /// the order of their heap entries: [`Expiry::due`] ends what is due in the record and
    /// says whether anything of it lives on. A record that lives on is re-indexed (its keys
    /// may have changed) and armed again at its new deadline; one that does not is removed.
    /// Pops at most `budget` due heap entries (stale ones count); returns how many records
    /// ran.
    pub fn expire(&mut self, now: u64, mut budget: usize, mut x: impl Expiry<T>) -> usize {
        let mut ran = 0;
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
                continue; // stale
            }
            let real = x.deadline(rec);
            if real > now {
                self.heap.push(Reverse((real, slot, generation)));
                continue;
            }
            ran += 1;
            let before = rec.keys();
            let mut changed = *rec;
            let lives = x.due(slot, &mut changed);
            self.slots[slot as usize] = changed;
            if lives {
                self.reindex(slot, before, changed.keys());
                let next = x.deadline(&changed);
                self.heap.push(Reverse((next, slot, generation)));
            } else {
                self.remove_keys(slot, before);
            }
        }
        ran
    }

    /// Removes the live record in `slot` whose index entries are `keys` (the record's fields
    /// may have changed already).
    fn remove_keys(&mut self, slot: u32, keys: [Option<u64>; KEYS]) {
        let rec = &mut self.slots[slot as usize];
        let generation = rec.generation();
        rec.make_vacant(self.free_head);
        rec.set_generation(generation.wrapping_add(1));
        self.free_head = slot;
        for h in keys.into_iter().flatten() {
            self.index.remove(h, slot);
        }
        self.len -= 1;
    }

    /// The slots of the live records for which `pred` is true, in slot order (a scan: for
    /// control-plane actions, not the packet path).
    pub fn live_slots(&self, mut pred: impl FnMut(&T) -> bool) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&s| {
                let r = &self.slots[s as usize];
                r.is_live() && pred(r)
            })
            .collect()
    }

    /// The live records and their slots, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_live())
            .map(|(s, r)| (s as u32, r))
    }

    /// Checks every invariant, panicking at the first one broken: each present key of each
    /// live record is in the index, and the index holds nothing else; each live record has
    /// exactly one current heap entry, no later than `deadline_of` it; the free list holds
    /// exactly the vacant slots. For tests: O(n).
    pub fn assert_consistent(&self, mut deadline_of: impl FnMut(&T) -> u64) {
        let mut armed = std::collections::HashMap::new();
        for &Reverse((at, slot, generation)) in self.heap.iter() {
            let e = armed.entry((slot, generation)).or_insert((at, 0));
            *e = (e.0.min(at), e.1 + 1);
        }
        let (mut live, mut keys) = (0, 0);
        for (slot, r) in self.iter() {
            live += 1;
            for h in r.keys().into_iter().flatten() {
                keys += 1;
                assert_eq!(
                    self.index.find(h, |s| s == slot),
                    Some(slot),
                    "a key of slot {slot} is not in the index"
                );
            }
            let (at, entries) = armed
                .get(&(slot, r.generation()))
                .unwrap_or_else(|| panic!("live slot {slot} has no current timer"));
            assert_eq!(*entries, 1, "live slot {slot} has {entries} current timers");
            assert!(
                *at <= deadline_of(r),
                "slot {slot} armed at {at}, after its deadline {}",
                deadline_of(r)
            );
        }
        assert_eq!(self.len, live, "live count");
        assert_eq!(self.index.len(), keys, "index entries");
        let mut vacant = vec![false; self.slots.len()];
        let mut at = self.free_head;
        while at != NONE {
            let r = &self.slots[at as usize];
            assert!(!r.is_live(), "live slot {at} on the free list");
            assert!(!vacant[at as usize], "slot {at} twice on the free list");
            vacant[at as usize] = true;
            at = r.next_vacant();
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
