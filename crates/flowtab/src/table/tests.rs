//! Unit tests of the flow table, and property tests against a `HashMap` model.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::tests::{Hashing, hash_of, hashing};

/// A test flow: a key (its forward key; `key + 1000` is its return key), its real deadline, and
/// the table's bookkeeping.
#[derive(Clone, Copy, Debug)]
struct Rec {
    key: u16,
    mode: Hashing,
    deadline: u64,
    live: bool,
    /// The next vacant slot, in a vacant record.
    next: u32,
    gen_: u32,
}

impl Record for Rec {
    fn fwd_hash(&self) -> u64 {
        hash_of(self.mode, self.key)
    }
    fn rev_hash(&self) -> u64 {
        hash_of(self.mode, self.key + 1000)
    }
    fn is_live(&self) -> bool {
        self.live
    }
    fn generation(&self) -> u32 {
        self.gen_
    }
    fn set_generation(&mut self, generation: u32) {
        self.gen_ = generation;
    }
    fn make_vacant(&mut self, next: u32) {
        self.live = false;
        self.next = next;
    }
    fn next_vacant(&self) -> u32 {
        self.next
    }
}

fn rec(key: u16, deadline: u64) -> Rec {
    Rec {
        key,
        mode: Hashing::Mixed,
        deadline,
        live: true,
        next: 0,
        gen_: 77, // the table sets it
    }
}

fn find(t: &FlowTable<Rec>, key: u16) -> Option<u32> {
    let mode = Hashing::Mixed;
    let fwd = t.find_fwd(hash_of(mode, key), |r| r.key == key);
    let rev = t.find_rev(hash_of(mode, key + 1000), |r| r.key == key);
    assert_eq!(fwd, rev);
    fwd
}

/// Expires at `now` with `budget`; returns the keys expired, in order.
fn expire(t: &mut FlowTable<Rec>, now: u64, budget: usize) -> Vec<u16> {
    let mut keys = Vec::new();
    let n = t.expire(
        now,
        budget,
        |r| r.deadline,
        |_, r| {
            assert!(r.deadline <= now, "expired early");
            keys.push(r.key);
        },
    );
    assert_eq!(n, keys.len());
    keys
}

#[test]
fn an_empty_table_allocates_nothing() {
    let mut t: FlowTable<Rec> = FlowTable::new();
    assert_eq!((t.len(), t.slot_count(), t.memory_bytes()), (0, 0, 0));
    assert!(t.is_empty());
    assert_eq!(t.next_deadline(), None);
    assert_eq!(find(&t, 1), None);
    t.prefetch_fwd(1);
    t.prefetch_rev(1);
    assert_eq!((t.candidate_fwd(1), t.candidate_rev(1)), (None, None));
    assert_eq!(expire(&mut t, u64::MAX, usize::MAX), Vec::<u16>::new());
    assert!(t.live_slots(|_| true).is_empty());
    t.assert_consistent(|r| r.deadline);
    assert_eq!(FlowTable::<Rec>::default().memory_bytes(), 0);
}

#[test]
fn slots_are_reused_last_freed_first_with_their_generation() {
    let mut t = FlowTable::new();
    for k in 0..4 {
        assert_eq!(t.insert(rec(k, 100), 100), u32::from(k));
        assert_eq!(
            t.get(u32::from(k)).gen_,
            0,
            "a fresh slot starts at generation 0"
        );
    }
    let r = t.remove(1);
    assert_eq!(
        (r.key, r.live, r.gen_),
        (1, true, 0),
        "remove returns the record as it was"
    );
    assert!(!t.get(1).live);
    assert_eq!(t.get(1).gen_, 1);
    t.remove(3);
    assert_eq!(t.len(), 2);
    assert_eq!(t.slot_count(), 4);
    t.assert_consistent(|r| r.deadline);
    // The last freed (3), then 1, then a fresh one.
    assert_eq!(t.insert(rec(10, 100), 100), 3);
    assert_eq!(t.get(3).gen_, 1, "a reused slot keeps its generation");
    assert_eq!(t.insert(rec(11, 100), 100), 1);
    assert_eq!(t.insert(rec(12, 100), 100), 4);
    assert_eq!(find(&t, 10), Some(3));
    assert_eq!(find(&t, 1), None);
    assert_eq!(find(&t, 3), None);
    assert_eq!(t.live_slots(|r| r.key >= 10), vec![1, 3, 4]);
    let keys: Vec<(u32, u16)> = t.iter().map(|(s, r)| (s, r.key)).collect();
    assert_eq!(keys, [(0, 0), (1, 11), (2, 2), (3, 10), (4, 12)]);
    t.assert_consistent(|r| r.deadline);
}

#[test]
fn a_refreshed_flow_is_pushed_again_not_expired() {
    let mut t = FlowTable::new();
    let a = t.insert(rec(1, 10), 10);
    t.insert(rec(2, 10), 10);
    // Flow 1 saw a packet: its real deadline is 30; the entry at 10 stays.
    t.get_mut(a).deadline = 30;
    assert_eq!(expire(&mut t, 9, usize::MAX), Vec::<u16>::new());
    assert_eq!(expire(&mut t, 10, usize::MAX), vec![2]);
    assert_eq!(
        t.next_deadline(),
        Some(30),
        "pushed again at its real deadline"
    );
    assert_eq!(t.timers().count(), 1);
    t.assert_consistent(|r| r.deadline);
    assert_eq!(expire(&mut t, 29, usize::MAX), Vec::<u16>::new());
    assert_eq!(expire(&mut t, 30, usize::MAX), vec![1]);
    assert!(t.is_empty());
    assert_eq!(t.timers().count(), 0);
}

#[test]
fn rearm_makes_earlier_entries_stale() {
    let mut t = FlowTable::new();
    let a = t.insert(rec(1, 50), 50);
    // The deadline moves earlier: re-armed, the entry at 50 goes stale.
    t.get_mut(a).deadline = 20;
    t.rearm(a, 20);
    assert_eq!(t.get(a).gen_, 1);
    assert_eq!(t.next_deadline(), Some(20));
    t.assert_consistent(|r| r.deadline);
    // Then later again (a packet): nothing to do until the entry at 20 comes up.
    t.get_mut(a).deadline = 40;
    assert_eq!(expire(&mut t, 20, usize::MAX), Vec::<u16>::new());
    assert_eq!(
        t.timers().collect::<BTreeSet<_>>(),
        BTreeSet::from([(40, a, 1), (50, a, 0)])
    );
    assert_eq!(expire(&mut t, 40, usize::MAX), vec![1]);
    // The stale entry at 50 never touches the flow that takes the slot next.
    let b = t.insert(rec(2, 45), 45);
    assert_eq!((b, t.get(b).gen_), (a, 2));
    assert_eq!(expire(&mut t, 44, usize::MAX), Vec::<u16>::new());
    assert_eq!(expire(&mut t, 50, 1), vec![2], "45 first");
    assert_eq!(t.timers().collect::<Vec<_>>(), [(50, a, 0)]);
    assert_eq!(expire(&mut t, 50, usize::MAX), Vec::<u16>::new());
    assert_eq!(t.timers().count(), 0);

    // A stale entry that comes up while its slot's flow is live and not due is dropped, not
    // pushed again: the flow keeps exactly its one current entry.
    let c = t.insert(rec(3, 80), 80);
    t.get_mut(c).deadline = 60;
    t.rearm(c, 60);
    t.get_mut(c).deadline = 100;
    assert_eq!(expire(&mut t, 80, usize::MAX), Vec::<u16>::new());
    assert_eq!(t.timers().collect::<Vec<_>>(), [(100, c, 4)]);
    t.assert_consistent(|r| r.deadline);
}

#[test]
fn the_budget_counts_every_entry_popped() {
    let mut t = FlowTable::new();
    for k in 0..5 {
        t.insert(rec(k, 10 + u64::from(k)), 10 + u64::from(k));
    }
    // Slot 1's entry goes stale, slot 2 is refreshed.
    t.remove(1);
    t.get_mut(2).deadline = 100;
    // Popped: 0 (expired), 1 (stale), 2 (pushed again): three entries, one flow.
    assert_eq!(expire(&mut t, 50, 3), vec![0]);
    assert_eq!(t.len(), 3);
    assert_eq!(expire(&mut t, 50, 1), vec![3]);
    assert_eq!(expire(&mut t, 50, 0), Vec::<u16>::new());
    assert_eq!(expire(&mut t, 50, usize::MAX), vec![4]);
    assert_eq!(t.len(), 1);
    t.assert_consistent(|r| r.deadline);
}

#[test]
fn equal_deadlines_expire_in_slot_order() {
    let mut t = FlowTable::new();
    for k in [5, 3, 9, 1] {
        t.insert(rec(k, 7), 7);
    }
    assert_eq!(expire(&mut t, 7, usize::MAX), vec![5, 3, 9, 1]);
    for k in [5, 3, 9, 1] {
        t.insert(rec(k, 7), 7);
    }
    // Slots were reused last-freed first: 1 in slot 3, 9 in slot 2, ...
    assert_eq!(expire(&mut t, 7, usize::MAX), vec![1, 9, 3, 5]);
}

#[test]
fn memory_is_the_slab_two_indexes_and_the_heap() {
    let mut t: FlowTable<Rec> = FlowTable::new();
    t.reserve(1000);
    let bytes = t.memory_bytes();
    assert!(bytes >= 1000 * (size_of::<Rec>() + 16));
    for k in 0..1000 {
        t.insert(rec(k, 1), 1);
    }
    assert_eq!(t.memory_bytes(), bytes, "reserve made room for all");
    // A record, two 8-byte buckets at a load of 80% (1,250 buckets, rounded up to a multiple
    // of 8), a 16-byte heap entry.
    assert_eq!(bytes, 1000 * size_of::<Rec>() + 2 * 1256 * 8 + 1000 * 16);
}

#[test]
fn insert_hashed_equals_insert() {
    let mut a = FlowTable::new();
    let mut b = FlowTable::new();
    for k in 0..50 {
        let r = rec(k, 1);
        assert_eq!(
            a.insert(r, 1),
            b.insert_hashed(r, r.fwd_hash(), r.rev_hash(), 1)
        );
    }
    for k in 0..50 {
        assert_eq!(find(&a, k), find(&b, k));
        let h = hash_of(Hashing::Mixed, k);
        assert_eq!(a.candidate_fwd(h), find(&a, k));
        assert_eq!(
            a.candidate_rev(hash_of(Hashing::Mixed, k + 1000)),
            find(&a, k)
        );
    }
}

// ---- property tests against a HashMap model ----

#[derive(Clone, Copy, Debug)]
enum Op {
    /// A new flow due `ttl` from now (skipped if the key is live).
    Insert(u16, u8),
    Remove(u16),
    /// A packet: the flow's deadline moves to `ttl` from now, later (nothing to do) or earlier
    /// (re-armed).
    Touch(u16, u8),
    Find(u16),
    Advance(u8),
    /// Expire with a budget (`None`: all that is due).
    Expire(Option<u8>),
    /// The live flows with an even key.
    LiveSlots,
    Reserve(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..40u16;
    prop_oneof![
        6 => (key.clone(), any::<u8>()).prop_map(|(k, t)| Op::Insert(k, t)),
        2 => key.clone().prop_map(Op::Remove),
        4 => (key.clone(), any::<u8>()).prop_map(|(k, t)| Op::Touch(k, t)),
        2 => key.prop_map(Op::Find),
        3 => any::<u8>().prop_map(Op::Advance),
        3 => prop::option::of(0..6u8).prop_map(Op::Expire),
        1 => Just(Op::LiveSlots),
        1 => any::<u8>().prop_map(Op::Reserve),
    ]
}

/// The model: what a flow table must be, written as plainly as possible (a linear scan for
/// the earliest timer entry).
#[derive(Default)]
struct Model {
    /// key -> (slot, real deadline).
    flows: HashMap<u16, (u32, u64)>,
    /// Per slot: the key of its live flow, and its generation.
    slots: Vec<(Option<u16>, u32)>,
    /// Vacant slots, the last freed on top.
    free: Vec<u32>,
    /// Timer entries `(deadline, slot, generation)`, stale ones included.
    timers: Vec<(u64, u32, u32)>,
}

impl Model {
    fn insert(&mut self, key: u16, deadline: u64) -> u32 {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push((None, 0));
            self.slots.len() as u32 - 1
        });
        self.slots[slot as usize].0 = Some(key);
        self.flows.insert(key, (slot, deadline));
        self.timers
            .push((deadline, slot, self.slots[slot as usize].1));
        slot
    }

    fn remove(&mut self, key: u16) -> Option<(u32, u64)> {
        let (slot, deadline) = self.flows.remove(&key)?;
        let s = &mut self.slots[slot as usize];
        *s = (None, s.1.wrapping_add(1));
        self.free.push(slot);
        Some((slot, deadline))
    }

    /// A packet: the deadline moves to `new`; re-armed when that is earlier.
    fn touch(&mut self, key: u16, new: u64) -> Option<(u32, bool)> {
        let (slot, deadline) = self.flows.get_mut(&key)?;
        let (slot, earlier) = (*slot, new < *deadline);
        *deadline = new;
        if earlier {
            let s = &mut self.slots[slot as usize];
            s.1 = s.1.wrapping_add(1);
            self.timers.push((new, slot, s.1));
        }
        Some((slot, earlier))
    }

    /// The keys expired at `now` popping at most `budget` due entries, in order.
    fn expire(&mut self, now: u64, mut budget: usize) -> Vec<(u32, u16)> {
        let mut gone = Vec::new();
        while budget > 0 {
            let Some((i, &(at, slot, generation))) =
                self.timers.iter().enumerate().min_by_key(|(_, e)| **e)
            else {
                break;
            };
            if at > now {
                break;
            }
            self.timers.swap_remove(i);
            budget -= 1;
            let (key, current) = self.slots[slot as usize];
            let Some(key) = key.filter(|_| current == generation) else {
                continue; // stale
            };
            let deadline = self.flows[&key].1;
            if deadline <= now {
                self.remove(key);
                gone.push((slot, key));
            } else {
                self.timers.push((deadline, slot, generation));
            }
        }
        gone
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every operation gives what the model gives: slots (reused last freed first), lookups,
    /// the flows expired and their order, and the very timer entries left in the heap.
    #[test]
    fn behaves_like_the_model(mode in hashing(), ops in prop::collection::vec(op(), 1..300)) {
        let mut t: FlowTable<Rec> = FlowTable::new();
        let mut m = Model::default();
        let mut now = 0u64;
        let find = |t: &FlowTable<Rec>, k: u16| {
            let fwd = t.find_fwd(hash_of(mode, k), |r| r.key == k);
            let rev = t.find_rev(hash_of(mode, k + 1000), |r| r.key == k);
            assert_eq!(fwd, rev);
            fwd
        };
        for op in ops {
            match op {
                Op::Insert(k, ttl) => {
                    if m.flows.contains_key(&k) {
                        continue;
                    }
                    let deadline = now + u64::from(ttl);
                    let slot = t.insert(Rec { mode, ..rec(k, deadline) }, deadline);
                    prop_assert_eq!(slot, m.insert(k, deadline));
                    prop_assert_eq!(t.get(slot).gen_, m.slots[slot as usize].1);
                }
                Op::Remove(k) => {
                    if let Some((slot, deadline)) = m.remove(k) {
                        let r = t.remove(slot);
                        prop_assert_eq!((r.key, r.deadline, r.live), (k, deadline, true));
                        prop_assert!(!t.get(slot).live);
                    }
                }
                Op::Touch(k, ttl) => {
                    let new = now + u64::from(ttl);
                    if let Some((slot, earlier)) = m.touch(k, new) {
                        t.get_mut(slot).deadline = new;
                        if earlier {
                            t.rearm(slot, new);
                        }
                    }
                }
                Op::Find(k) => {
                    prop_assert_eq!(find(&t, k), m.flows.get(&k).map(|f| f.0));
                }
                Op::Advance(dt) => now += u64::from(dt),
                Op::Expire(budget) => {
                    let budget = budget.map_or(usize::MAX, usize::from);
                    let mut gone = Vec::new();
                    let n = t.expire(now, budget, |r| r.deadline, |slot, r| {
                        // Never early.
                        assert!(r.deadline <= now, "key {} expired early: {}", r.key, r.deadline);
                        gone.push((slot, r.key));
                    });
                    prop_assert_eq!(n, gone.len());
                    prop_assert_eq!(&gone, &m.expire(now, budget));
                    if budget == usize::MAX {
                        // Nothing due is left, and every entry left is in the future.
                        prop_assert!(m.flows.values().all(|f| f.1 > now));
                        prop_assert!(t.next_deadline().is_none_or(|d| d > now));
                    }
                }
                Op::LiveSlots => {
                    let want = sorted(
                        m.flows.iter().filter(|(k, _)| *k % 2 == 0).map(|(_, f)| f.0).collect(),
                    );
                    prop_assert_eq!(t.live_slots(|r| r.key % 2 == 0), want);
                }
                Op::Reserve(n) => {
                    t.reserve(usize::from(n));
                }
            }
            prop_assert_eq!(t.len(), m.flows.len());
            prop_assert_eq!(t.slot_count(), m.slots.len());
            prop_assert_eq!(sorted(t.timers().collect()), sorted(m.timers.clone()));
            prop_assert_eq!(t.next_deadline(), m.timers.iter().map(|e| e.0).min());
            t.assert_consistent(|r| r.deadline);
        }
        // Every flow is found where the model says; at the end of time all of them go, each
        // exactly once, and the heap is empty.
        for k in 0..40u16 {
            prop_assert_eq!(find(&t, k), m.flows.get(&k).map(|f| f.0));
        }
        let mut gone = Vec::new();
        t.expire(u64::MAX, usize::MAX, |r| r.deadline, |slot, r| gone.push((slot, r.key)));
        prop_assert_eq!(gone, m.expire(u64::MAX, usize::MAX));
        prop_assert!(t.is_empty());
        prop_assert_eq!(t.timers().count(), 0);
    }
}
