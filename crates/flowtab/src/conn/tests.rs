//! The connection table against a model: records of two parts, each with a key and a
//! deadline, a third key while either part lives; parts end on their own.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::tests::{Hashing, hash_of, hashing};

/// A test record: an id; part A (key `id`, deadline) and part B (key `id + 1000`, deadline),
/// each present or not; a shared key (`id + 2000`) while either lives.
#[derive(Clone, Copy, Debug)]
struct Rec {
    id: u16,
    mode: Hashing,
    a: Option<u64>,
    b: Option<u64>,
    live: bool,
    next: u32,
    gen_: u32,
}

impl Rec {
    fn new(id: u16, mode: Hashing, a: Option<u64>, b: Option<u64>) -> Rec {
        Rec {
            id,
            mode,
            a,
            b,
            live: true,
            next: 0,
            gen_: 9,
        }
    }
    fn deadline(&self) -> u64 {
        self.a.into_iter().chain(self.b).min().unwrap_or(0)
    }
}

impl ConnRecord for Rec {
    fn keys(&self) -> [Option<u64>; KEYS] {
        let k = |o: u16| hash_of(self.mode, self.id + o);
        [
            self.a.map(|_| k(0)),
            self.b.map(|_| k(1000)),
            (self.a.is_some() || self.b.is_some()).then(|| k(2000)),
        ]
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

/// Finds a record by each of its keys: by A's, by B's, by the shared one.
fn find(t: &ConnTable<Rec>, mode: Hashing, id: u16) -> [Option<u32>; 3] {
    [
        t.find(hash_of(mode, id), |r| r.id == id && r.a.is_some()),
        t.find(hash_of(mode, id + 1000), |r| r.id == id && r.b.is_some()),
        t.find(hash_of(mode, id + 2000), |r| r.id == id),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        id: u16,
        a: Option<u64>,
        b: Option<u64>,
    },
    SetA {
        id: u16,
        a: Option<u64>,
    },
    SetB {
        id: u16,
        b: Option<u64>,
    },
    Remove {
        id: u16,
    },
    Expire {
        now: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let deadline = prop_oneof![Just(None), (0u64..200).prop_map(Some)];
    prop_oneof![
        (0u16..40, deadline.clone(), deadline.clone()).prop_map(|(id, a, b)| Op::Insert {
            id,
            a,
            b
        }),
        (0u16..40, deadline.clone()).prop_map(|(id, a)| Op::SetA { id, a }),
        (0u16..40, deadline).prop_map(|(id, b)| Op::SetB { id, b }),
        (0u16..40).prop_map(|id| Op::Remove { id }),
        (0u64..220).prop_map(|now| Op::Expire { now }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever comes and goes, every present key finds its record (and only present keys
    /// do), parts end exactly when due, a record goes when its last part does, and the table
    /// stays consistent.
    #[test]
    fn the_table_follows_the_model(mode in hashing(), ops in prop::collection::vec(op(), 1..120)) {
        let mut t: ConnTable<Rec> = ConnTable::new();
        // id -> (slot, a, b)
        let mut model: HashMap<u16, (u32, Option<u64>, Option<u64>)> = HashMap::new();
        let mut clock = 0u64;
        for op in ops {
            match op {
                Op::Insert { id, a, b } => {
                    if model.contains_key(&id) || (a.is_none() && b.is_none()) {
                        continue;
                    }
                    let (a, b) = (a.map(|d| d.max(clock)), b.map(|d| d.max(clock)));
                    let r = Rec::new(id, mode, a, b);
                    let slot = t.insert(r, r.deadline());
                    model.insert(id, (slot, a, b));
                }
                Op::SetA { id, a } | Op::SetB { id, b: a } => {
                    let is_a = matches!(op, Op::SetA { .. });
                    let Some(&(slot, ma, mb)) = model.get(&id) else { continue };
                    let a = a.map(|d| d.max(clock));
                    let (na, nb) = if is_a { (a, mb) } else { (ma, a) };
                    if na.is_none() && nb.is_none() {
                        continue; // a record keeps a part; removing it is `Remove`
                    }
                    let before = t.get(slot).deadline();
                    t.update(slot, |r| {
                        r.a = na;
                        r.b = nb;
                    });
                    let after = t.get(slot).deadline();
                    if after < before {
                        t.rearm(slot, after);
                    }
                    model.insert(id, (slot, na, nb));
                }
                Op::Remove { id } => {
                    let Some((slot, _, _)) = model.remove(&id) else { continue };
                    let r = t.remove(slot);
                    prop_assert_eq!(r.id, id);
                }
                Op::Expire { now } => {
                    let now = now.max(clock);
                    clock = now;
                    let mut ran = Vec::new();
                    t.expire(now, usize::MAX, (Rec::deadline, |_, r: &mut Rec| {
                        ran.push(r.id);
                        assert!(r.deadline() <= now, "ran early");
                        if r.a.is_some_and(|d| d <= now) {
                            r.a = None;
                        }
                        if r.b.is_some_and(|d| d <= now) {
                            r.b = None;
                        }
                        r.a.is_some() || r.b.is_some()
                    }));
                    for (id, (_, a, b)) in model.iter_mut() {
                        let was_due = a.iter().chain(b.iter()).any(|&d| d <= now);
                        prop_assert_eq!(was_due, ran.contains(id), "record {} ran wrongly", id);
                        if a.is_some_and(|d| d <= now) {
                            *a = None;
                        }
                        if b.is_some_and(|d| d <= now) {
                            *b = None;
                        }
                    }
                    model.retain(|_, (_, a, b)| a.is_some() || b.is_some());
                }
            }
            t.assert_consistent(Rec::deadline);
            prop_assert_eq!(t.len(), model.len());
            for id in 0..40u16 {
                let got = find(&t, mode, id);
                match model.get(&id) {
                    None => prop_assert_eq!(got, [None, None, None]),
                    Some(&(slot, a, b)) => {
                        prop_assert_eq!(got[0], a.map(|_| slot));
                        prop_assert_eq!(got[1], b.map(|_| slot));
                        prop_assert_eq!(got[2], Some(slot));
                    }
                }
            }
        }
    }
}

#[test]
fn a_freed_slot_is_taken_first_and_memory_is_counted() {
    let mut t: ConnTable<Rec> = ConnTable::new();
    let m = Hashing::Mixed;
    let a = t.insert(Rec::new(1, m, Some(10), None), 10);
    let b = t.insert(Rec::new(2, m, Some(20), Some(5)), 5);
    assert_eq!((a, b), (0, 1));
    t.remove(a);
    assert_eq!(t.insert(Rec::new(3, m, None, Some(7)), 7), a);
    assert_eq!(t.len(), 2);
    // B's part B ends at 5; its part A lives on, found by its own key and the shared one only.
    let ran = t.expire(
        6,
        usize::MAX,
        (Rec::deadline, |_, r: &mut Rec| {
            if r.b.is_some_and(|d| d <= 6) {
                r.b = None;
            }
            r.a.is_some()
        }),
    );
    assert_eq!(ran, 1);
    assert_eq!(find(&t, m, 2), [Some(b), None, Some(b)]);
    assert_eq!(t.next_deadline(), Some(7));
    t.assert_consistent(Rec::deadline);
    t.reserve(100, 300);
    assert!(t.memory_bytes() >= 100 * size_of::<Rec>() + t.index_bytes());
}
