use std::collections::HashMap;

use plsim_wire::hash::splitmix64;
use proptest::prelude::*;

use super::*;

/// A hash whose tag is `tag` (and whose low half is noise the index must ignore).
fn h(tag: u32) -> u64 {
    (u64::from(tag) << 32) | 0xdead_beef
}

/// A tag whose home is `home` in an index of 8 buckets (the top 3 bits), told apart by `low`.
fn tag8(home: u32, low: u32) -> u32 {
    (home << 29) | low
}

/// The slots of the buckets, in bucket order (`None` for an empty one).
fn layout(ix: &FlowIndex) -> Vec<Option<u32>> {
    ix.buckets
        .iter()
        .map(|b| (b.slot != EMPTY).then_some(b.slot))
        .collect()
}

/// Every entry is reachable from its home without crossing an empty bucket, and `len` is right.
fn check(ix: &FlowIndex) {
    let n = ix.buckets.len();
    let mut count = 0;
    for (i, b) in ix.buckets.iter().enumerate() {
        if b.slot == EMPTY {
            continue;
        }
        count += 1;
        let mut j = ix.home(b.tag);
        while j != i {
            assert_ne!(ix.buckets[j].slot, EMPTY, "a hole before bucket {i}");
            j = (j + 1) % n;
        }
    }
    assert_eq!(count, ix.len());
    assert!(ix.len() <= ix.capacity());
}

#[test]
fn empty_index_allocates_nothing_and_finds_nothing() {
    let mut ix = FlowIndex::new();
    assert_eq!((ix.len(), ix.capacity(), ix.memory_bytes()), (0, 0, 0));
    assert!(ix.is_empty());
    ix.prefetch(h(1));
    assert_eq!(ix.find(h(1), |_| true), None);
    assert_eq!(ix.candidate(h(1)), None);
    assert!(!ix.remove(h(1), 0));
    let ix = FlowIndex::with_capacity(0);
    assert_eq!(ix.memory_bytes(), 0);
}

#[test]
fn growth_sizes_are_exact() {
    let tags: Vec<u32> = (0..7u32).map(|s| 1 + s * 555_555_555).collect();
    let mut ix = FlowIndex::new();
    ix.insert(h(tags[0]), 0);
    assert_eq!(
        (ix.buckets.len(), ix.capacity(), ix.memory_bytes()),
        (8, 6, 64)
    );
    for s in 1..6 {
        ix.insert(h(tags[s as usize]), s);
    }
    assert_eq!((ix.len(), ix.buckets.len()), (6, 8));
    ix.insert(h(tags[6]), 6);
    assert_eq!((ix.len(), ix.buckets.len(), ix.capacity()), (7, 16, 12));
    check(&ix);
    for s in 0..7u32 {
        assert_eq!(ix.find(h(tags[s as usize]), |x| x == s), Some(s));
    }

    // Reserving sizes the buckets for exactly what was asked: 1M entries at 80%.
    let ix = FlowIndex::with_capacity(1_000_000);
    assert_eq!(ix.buckets.len(), 1_250_000);
    assert_eq!(ix.capacity(), 1_000_000);
    assert_eq!(ix.memory_bytes(), 10_000_000);
    // Any count of buckets: homes spread over all of them, in tag order.
    assert_eq!(ix.home(0), 0);
    assert_eq!(ix.home(u32::MAX), 1_249_999);
    assert_eq!(ix.home(1 << 31), 625_000);
    // Growth past a reservation doubles.
    let mut ix = FlowIndex::with_capacity(9);
    assert_eq!(ix.buckets.len(), 16);
    for s in 0..13u32 {
        ix.insert(splitmix64(u64::from(s)), s);
    }
    assert_eq!(ix.buckets.len(), 32);
    check(&ix);

    let mut ix = FlowIndex::with_capacity(5);
    assert_eq!(ix.buckets.len(), 8);
    ix.reserve(6);
    assert_eq!(
        ix.buckets.len(),
        8,
        "6 more into an empty index of capacity 6"
    );
    ix.insert(h(7), 0);
    ix.reserve(6);
    assert_eq!(ix.buckets.len(), 16);
    ix.clear();
    assert_eq!((ix.len(), ix.buckets.len()), (0, 16));
}

#[test]
fn linear_probing_and_backward_shift_place_entries_exactly() {
    let mut ix = FlowIndex::with_capacity(5);
    // Three entries at home 3, one at home 4: buckets 3, 4, 5, then 6.
    ix.insert(h(tag8(3, 1)), 10);
    ix.insert(h(tag8(3, 2)), 11);
    ix.insert(h(tag8(3, 3)), 12);
    ix.insert(h(tag8(4, 1)), 13);
    let e = None;
    assert_eq!(
        layout(&ix),
        [e, e, e, Some(10), Some(11), Some(12), Some(13), e]
    );
    // Removing the first moves each of the others one back (all their homes are at or
    // before the hole).
    assert!(ix.remove(h(tag8(3, 1)), 10));
    assert_eq!(layout(&ix), [e, e, e, Some(11), Some(12), Some(13), e, e]);
    // Removing a tag with the wrong slot, or an absent tag, changes nothing.
    assert!(!ix.remove(h(tag8(3, 2)), 12));
    assert!(!ix.remove(h(tag8(3, 9)), 11));
    assert_eq!(ix.len(), 3);
    check(&ix);

    // An entry whose home is after the hole stays put.
    let mut ix = FlowIndex::with_capacity(5);
    ix.insert(h(tag8(2, 1)), 1); // bucket 2
    ix.insert(h(tag8(2, 2)), 2); // bucket 3
    ix.insert(h(tag8(4, 1)), 3); // bucket 4, its home
    assert!(ix.remove(h(tag8(2, 1)), 1));
    assert_eq!(layout(&ix), [e, e, Some(2), e, Some(3), e, e, e]);
    check(&ix);
}

#[test]
fn probe_runs_wrap_around_the_end() {
    let mut ix = FlowIndex::with_capacity(5);
    let e = None;
    ix.insert(h(tag8(7, 1)), 1);
    ix.insert(h(tag8(7, 2)), 2);
    ix.insert(h(tag8(7, 3)), 3);
    ix.insert(h(tag8(0, 1)), 4);
    assert_eq!(
        layout(&ix),
        [Some(2), Some(3), Some(4), e, e, e, e, Some(1)]
    );
    assert_eq!(ix.find(h(tag8(0, 1)), |s| s == 4), Some(4));
    assert!(ix.remove(h(tag8(7, 1)), 1));
    // 2 and 3 move back across the end; 4 (home 0) moves into bucket 1.
    assert_eq!(layout(&ix), [Some(3), Some(4), e, e, e, e, e, Some(2)]);
    check(&ix);
    for (tag, s) in [(tag8(7, 2), 2), (tag8(7, 3), 3), (tag8(0, 1), 4)] {
        assert_eq!(ix.find(h(tag), |x| x == s), Some(s));
    }
}

#[test]
fn equal_hashes_are_told_apart_by_eq_and_candidate_is_the_first() {
    let mut ix = FlowIndex::new();
    let same = 0x1234_5678_9abc_def0;
    for s in 0..100 {
        ix.insert(same, s);
    }
    check(&ix);
    assert_eq!(ix.buckets.len(), 128);
    let mut calls = 0;
    assert_eq!(
        ix.find(same, |s| {
            calls += 1;
            s == 57
        }),
        Some(57)
    );
    assert_eq!(
        calls, 58,
        "one eq call per entry of the run up to the match"
    );
    assert_eq!(ix.candidate(same), Some(0));
    assert!(ix.remove(same, 0));
    assert_eq!(ix.candidate(same), Some(1));
    for s in (1..100).step_by(2) {
        assert!(ix.remove(same, s));
    }
    check(&ix);
    assert_eq!(ix.len(), 49);
    for s in 1..100 {
        assert_eq!(ix.find(same, |x| x == s).is_some(), s % 2 == 0, "slot {s}");
    }
    // A different tag in the same run calls no eq at all.
    let other = same ^ (1 << 32);
    assert_eq!(ix.find(other, |_| panic!("eq on a tag mismatch")), None);
}

#[test]
#[should_panic(expected = "above MAX_SLOT")]
fn the_empty_marker_is_not_a_slot() {
    FlowIndex::new().insert(1, u32::MAX);
}

// ---- property tests against a HashMap model ----

#[derive(Clone, Copy, Debug)]
enum Op {
    Insert(u16),
    Remove(u16),
    /// Remove with a slot that is not the key's.
    RemoveWrong(u16),
    Find(u16),
    Reserve(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..200u16;
    prop_oneof![
        5 => key.clone().prop_map(Op::Insert),
        3 => key.clone().prop_map(Op::Remove),
        1 => key.clone().prop_map(Op::RemoveWrong),
        3 => key.clone().prop_map(Op::Find),
        1 => (0..64u16).prop_map(Op::Reserve),
    ]
}

/// How keys are hashed: a good hash, or collisions forced in several ways.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Hashing {
    /// A well mixed hash.
    Mixed,
    /// Every key has the same hash.
    Same,
    /// Keys share their home by fours but have their own tags.
    SameHome,
    /// Four distinct hashes.
    Four,
    /// Tags that differ only in their low bits: long runs, all in the same few homes.
    LowBits,
    /// Every key's home is the last bucket: every run wraps around the end.
    End,
}

/// The hash of `key` under `mode`.
pub(crate) fn hash_of(mode: Hashing, key: u16) -> u64 {
    let k = u64::from(key);
    let mixed = splitmix64(k);
    match mode {
        Hashing::Mixed => mixed,
        Hashing::Same => 0x5555_0000_0000_0001,
        Hashing::SameHome => (((k / 4) << 59) | (k << 32)) ^ (mixed & 0xffff_ffff),
        Hashing::Four => hash_of(Hashing::Mixed, key % 4),
        Hashing::LowBits => (k % 3) << 62 | k << 32,
        Hashing::End => (0xffff_ff00 | k) << 32,
    }
}

pub(crate) fn hashing() -> impl Strategy<Value = Hashing> {
    prop_oneof![
        Just(Hashing::Mixed),
        Just(Hashing::Same),
        Just(Hashing::SameHome),
        Just(Hashing::Four),
        Just(Hashing::LowBits),
        Just(Hashing::End),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn behaves_like_a_hash_map(mode in hashing(), ops in prop::collection::vec(op(), 1..400)) {
        let mut ix = FlowIndex::new();
        // The caller's slab: slot -> key, with a free list, as the stages keep it.
        let mut slab: Vec<Option<u16>> = Vec::new();
        let mut free: Vec<u32> = Vec::new();
        let mut model: HashMap<u16, u32> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k) => {
                    if model.contains_key(&k) {
                        continue;
                    }
                    let slot = match free.pop() {
                        Some(s) => { slab[s as usize] = Some(k); s }
                        None => { slab.push(Some(k)); (slab.len() - 1) as u32 }
                    };
                    ix.insert(hash_of(mode, k), slot);
                    model.insert(k, slot);
                }
                Op::Remove(k) => {
                    let want = model.remove(&k);
                    let slot = want.unwrap_or(u32::from(k) + 1000);
                    prop_assert_eq!(ix.remove(hash_of(mode, k), slot), want.is_some());
                    if let Some(s) = want {
                        slab[s as usize] = None;
                        free.push(s);
                    }
                }
                Op::RemoveWrong(k) => {
                    let wrong = model.get(&k).map_or(5000, |s| s + 5000);
                    prop_assert!(!ix.remove(hash_of(mode, k), wrong));
                }
                Op::Find(k) => {
                    let got = ix.find(hash_of(mode, k), |s| slab[s as usize] == Some(k));
                    prop_assert_eq!(got, model.get(&k).copied());
                }
                Op::Reserve(n) => {
                    ix.reserve(usize::from(n));
                    prop_assert!(ix.capacity() >= ix.len() + usize::from(n));
                }
            }
            prop_assert_eq!(ix.len(), model.len());
            check(&ix);
        }
        for k in 0..200u16 {
            let got = ix.find(hash_of(mode, k), |s| slab[s as usize] == Some(k));
            prop_assert_eq!(got, model.get(&k).copied(), "key {}", k);
            if let Some(s) = got {
                // The candidate is a slot with the key's tag: the key's own when tags are unique.
                let c = ix.candidate(hash_of(mode, k)).unwrap();
                prop_assert_eq!(tag_of(hash_of(mode, slab[c as usize].unwrap())), tag_of(hash_of(mode, k)));
                if matches!(mode, Hashing::Mixed | Hashing::SameHome | Hashing::LowBits | Hashing::End) {
                    prop_assert_eq!(c, s);
                }
            }
        }
        // Prefetch changes nothing.
        let before = layout(&ix);
        for k in 0..200u16 {
            ix.prefetch(hash_of(mode, k));
        }
        prop_assert_eq!(layout(&ix), before);
    }
}
