//! The flow-table design plsim's stages share (the load balancer's and the SNAT's flow tables
//! are both a [`FlowTable`]): a slab of flow records addressed by `u32` slots, two
//! prefetch-friendly hash indexes from a key's hash to its slot (one for the forward key, one
//! for the return key) and a lazy deadline heap. It sits under the stage crates and depends on
//! nothing: the stages own the records, compute the hashes (with `plsim_wire::hash`) and say
//! when a flow is due.
//!
//! * [`FlowIndex`]: from a caller-computed 64-bit hash to a `u32` slot of the caller's slab,
//!   the keys themselves staying in the slab (the way `hashbrown::HashTable<u32>` is used, but
//!   with a bucket whose address is known from the hash alone, so it can be prefetched a few
//!   packets ahead, VPP-style).
//! * [`FlowTable`]: the slab, two `FlowIndex`es and the deadline heap, over any [`Record`]
//!   type (a `Copy` record that knows its two hashes and keeps the table's few bits of
//!   bookkeeping, so a flow costs its record, two buckets and one heap entry). Lookups take
//!   the caller's equality closure; expiry is O(due entries), never a scan, and a flow that
//!   sees packets costs the heap nothing (see [`FlowTable`]).
//!
//! # Index layout
//!
//! Open addressing with linear probing over 8-byte buckets `(tag, slot)`:
//!
//! * `tag` is the high 32 bits of the hash; a bucket's **home** is the tag scaled to the bucket
//!   count, `tag * buckets >> 32` (Lemire's multiply-shift range reduction: the top
//!   `log2(buckets)` bits when the count is a power of two), so the home of every stored entry
//!   is known without asking the caller (removal and growth need no rehash closure and never
//!   touch the slab).
//! * A lookup compares tags and calls the caller's `eq` only on a tag match. Within one probe run
//!   the entries' tags are close, so the tag still tells apart about `32 - log2(buckets)` bits:
//!   at 2M buckets, 1 in 2,048 neighbours costs a needless `eq` call.
//! * The bucket count is any multiple of 8 (at least 8), the load at most 80%. Growth doubles
//!   it; [`FlowIndex::reserve`] on an index that must grow sizes it for exactly what it was told
//!   (at 1M entries: 1.25M buckets, 10 MB, 10 bytes an entry). Eight buckets fill a 64-byte
//!   cache line; even at the peak load a hit reads 3 buckets on average, so a lookup almost
//!   always reads one line of the index and one record of the slab. (80% rather than less
//!   keeps a flow table's index within 8 / 0.4 = 20 bytes a flow even just after a growth.)
//! * Deletion shifts the rest of the probe run back (no tombstones): the table never degrades
//!   under churn. Growth doubles the buckets and re-places every entry.
//!
//! [`FlowIndex::prefetch`] brings a hash's home bucket into the cache; [`FlowIndex::candidate`]
//! then tells which slot the lookup will most likely return (to prefetch the caller's record
//! too, though at 1M flows plsim's stages measured that slower than the bucket alone: the
//! out-of-order core overlaps the record misses once the buckets are cached). Neither changes
//! anything.
//!
//! ```
//! use plsim_flowtab::FlowIndex;
//!
//! let slab = ["a", "b", "c"];
//! let hash = |k: &str| (k.as_bytes()[0] as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
//! let mut index = FlowIndex::new();
//! for (slot, k) in slab.iter().enumerate() {
//!     index.insert(hash(k), slot as u32);
//! }
//! index.prefetch(hash("b"));
//! assert_eq!(index.find(hash("b"), |s| slab[s as usize] == "b"), Some(1));
//! assert!(index.remove(hash("b"), 1));
//! assert_eq!(index.find(hash("b"), |s| slab[s as usize] == "b"), None);
//! assert_eq!(index.len(), 2);
//! ```
//!
//! # A flow table
//!
//! A record with a forward key (`client`), a return key (`server`) and its last-seen time,
//! expiring 10 units after it; `alive` marks a live flow and `gen_` is the table's:
//!
//! ```
//! use plsim_flowtab::{FlowTable, Record};
//!
//! #[derive(Clone, Copy)]
//! struct Conn { client: u32, server: u32, last: u64, gen_: u32, alive: bool }
//!
//! fn mix(x: u64) -> u64 { x.wrapping_mul(0x9e37_79b9_7f4a_7c15) }
//!
//! impl Record for Conn {
//!     fn fwd_hash(&self) -> u64 { mix(u64::from(self.client)) }
//!     fn rev_hash(&self) -> u64 { mix(u64::from(self.server) << 32) }
//!     fn is_live(&self) -> bool { self.alive }
//!     fn generation(&self) -> u32 { self.gen_ }
//!     fn set_generation(&mut self, g: u32) { self.gen_ = g }
//!     // A vacant slot keeps the next free slot in `client`.
//!     fn make_vacant(&mut self, next: u32) { self.alive = false; self.client = next }
//!     fn next_vacant(&self) -> u32 { self.client }
//! }
//!
//! let mut table = FlowTable::new();
//! let conn = |client, server, last| Conn { client, server, last, gen_: 0, alive: true };
//! let a = table.insert(conn(1, 100, 0), 10);
//! let b = table.insert(conn(2, 200, 5), 15);
//!
//! // Packets: look up by either key, refresh the last-seen time (no heap work).
//! let h = mix(2);
//! table.prefetch_fwd(h);
//! let slot = table.find_fwd(h, |c| c.client == 2).unwrap();
//! assert_eq!(slot, b);
//! table.get_mut(slot).last = 12;
//! assert_eq!(table.find_rev(mix(100 << 32), |c| c.server == 100), Some(a));
//!
//! // At 16, `a` (due at 10) goes; `b` was due at 15 but saw a packet at 12: due at 22.
//! let mut gone = Vec::new();
//! let n = table.expire(16, usize::MAX, |c| c.last + 10, |slot, c| gone.push((slot, c.client)));
//! assert_eq!((n, gone), (1, vec![(a, 1)]));
//! assert_eq!(table.len(), 1);
//! assert_eq!(table.next_deadline(), Some(22));
//!
//! // A new flow takes the slot freed last.
//! assert_eq!(table.insert(conn(3, 300, 20), 30), a);
//! ```

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod conn;
mod table;

pub use conn::{ConnRecord, ConnTable, Expiry, KEYS};
pub use table::{FlowTable, Record};

/// The largest slot the index can hold (`u32::MAX` marks an empty bucket).
pub const MAX_SLOT: u32 = u32::MAX - 1;

/// The slot value of an empty bucket.
const EMPTY: u32 = u32::MAX;

/// The fewest buckets a non-empty index has.
const MIN_BUCKETS: usize = 8;

/// The most buckets an index may have: a home is taken from the 32-bit tag.
const MAX_BUCKETS: usize = 1 << 32;

/// One bucket: 8 bytes, eight to a cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
struct Bucket {
    tag: u32,
    slot: u32,
}

const VACANT: Bucket = Bucket {
    tag: 0,
    slot: EMPTY,
};

/// The most entries `buckets` buckets hold: 80% of them.
#[inline]
fn max_load(buckets: usize) -> usize {
    (buckets as u64 * 4 / 5) as usize
}

/// The tag of a hash: its high 32 bits.
#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// A hash index from caller-computed 64-bit hashes to `u32` slots (see the crate docs).
///
/// The caller keeps the keys (in its slab) and guarantees that a key is inserted at most once;
/// equality is its `eq` closure. Any hash works, but its high 32 bits must be well mixed: they
/// choose the bucket.
#[derive(Clone, Debug, Default)]
pub struct FlowIndex {
    /// A multiple of 8 long, or empty.
    buckets: Vec<Bucket>,
    len: usize,
}

impl FlowIndex {
    /// An empty index; it allocates nothing until the first insert.
    pub const fn new() -> FlowIndex {
        FlowIndex {
            buckets: Vec::new(),
            len: 0,
        }
    }

    /// An empty index that holds `entries` entries without growing.
    pub fn with_capacity(entries: usize) -> FlowIndex {
        let mut index = FlowIndex::new();
        index.reserve(entries);
        index
    }

    /// The number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no entry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many entries the index holds before it grows.
    pub fn capacity(&self) -> usize {
        max_load(self.buckets.len())
    }

    /// The heap bytes of the index (its buckets).
    pub fn memory_bytes(&self) -> usize {
        self.buckets.capacity() * size_of::<Bucket>()
    }

    /// The slot of the entry with this hash for which `eq(slot)` is true, if there is one.
    /// `eq` is called only for entries whose tag matches (almost always the right one).
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let tag = tag_of(hash);
        let mut i = self.home(tag);
        loop {
            let b = self.buckets[i];
            if b.slot == EMPTY {
                return None;
            }
            if b.tag == tag && eq(b.slot) {
                return Some(b.slot);
            }
            i = self.next(i);
        }
    }

    /// The slot of the first entry whose tag matches `hash`: the slot [`find`](Self::find) will
    /// most likely return, for prefetching the caller's record once the bucket is cached.
    /// `None` when no entry has the tag. Never calls back, never changes anything.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    /// Adds `slot` under `hash`. The caller guarantees that its key is not in the index yet (as
    /// `hashbrown::HashTable::insert_unique`); a second entry for one key would never be found
    /// while the first is there. Grows the index (amortised O(1)) when it is 80% full.
    ///
    /// # Panics
    ///
    /// When `slot` is above [`MAX_SLOT`] (a slab of four billion records), or when the index
    /// would need more than 2^32 buckets.
    #[inline]
    pub fn insert(&mut self, hash: u64, slot: u32) {
        assert!(slot <= MAX_SLOT, "slot {slot} is above MAX_SLOT");
        if self.len >= max_load(self.buckets.len()) {
            self.grow_to((self.buckets.len() * 2).max(buckets_for(self.len + 1)));
        }
        let tag = tag_of(hash);
        self.place(Bucket { tag, slot });
        self.len += 1;
    }

    /// Removes the entry of `slot` under `hash`; returns whether it was there. The rest of its
    /// probe run moves back, so no tombstone is left.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        if self.len == 0 {
            return false;
        }
        let tag = tag_of(hash);
        let mut i = self.home(tag);
        loop {
            let b = self.buckets[i];
            if b.slot == EMPTY {
                return false;
            }
            if b.tag == tag && b.slot == slot {
                break;
            }
            i = self.next(i);
        }
        // Backward shift: an entry further down the run moves into the hole unless its home
        // lies after the hole (then the hole is not on its probe path).
        let n = self.buckets.len();
        // How far bucket `j` is past bucket `from`, going round.
        let past = |j: usize, from: usize| if j >= from { j - from } else { j + n - from };
        let mut hole = i;
        let mut j = i;
        loop {
            j = self.next(j);
            let b = self.buckets[j];
            if b.slot == EMPTY {
                break;
            }
            if past(j, self.home(b.tag)) >= past(j, hole) {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = VACANT;
        self.len -= 1;
        true
    }

    /// Makes room for `additional` more entries without growing. An index that must grow for
    /// it gets the fewest buckets that hold them (not a doubling): say how many flows there
    /// will be once, and the index is no bigger than they need.
    pub fn reserve(&mut self, additional: usize) {
        let want = self.len.saturating_add(additional);
        if want > max_load(self.buckets.len()) {
            self.grow_to(buckets_for(want));
        }
    }

    /// Removes every entry, keeping the buckets.
    pub fn clear(&mut self) {
        self.buckets.fill(VACANT);
        self.len = 0;
    }

    /// Brings the cache line of `hash`'s home bucket towards the CPU (on x86-64; elsewhere it
    /// does nothing). Changes nothing and never faults.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if self.buckets.is_empty() {
            return;
        }
        let at = self.home(tag_of(hash));
        prefetch_read(&self.buckets[at]);
    }

    /// The home bucket of a tag: the tag scaled to the bucket count (0 with no bucket).
    #[inline]
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.buckets.len() as u64) >> 32) as usize
    }

    /// The bucket after `i`, going round.
    #[inline]
    fn next(&self, i: usize) -> usize {
        let j = i + 1;
        if j == self.buckets.len() { 0 } else { j }
    }

    /// Puts a bucket in the first empty place of its probe run (there is one: load < 100%).
    #[inline]
    fn place(&mut self, b: Bucket) {
        let mut i = self.home(b.tag);
        while self.buckets[i].slot != EMPTY {
            i = self.next(i);
        }
        self.buckets[i] = b;
    }

    /// Re-places every entry into `n` buckets (a multiple of 8 that holds them).
    #[cold]
    fn grow_to(&mut self, n: usize) {
        assert!(n <= MAX_BUCKETS, "a FlowIndex holds at most 2^32 buckets");
        debug_assert!(n.is_multiple_of(8) && max_load(n) >= self.len);
        let old = std::mem::replace(&mut self.buckets, vec![VACANT; n]);
        for b in old {
            if b.slot != EMPTY {
                self.place(b);
            }
        }
    }
}

/// The fewest buckets, a multiple of 8 and at least [`MIN_BUCKETS`], that hold `entries`.
fn buckets_for(entries: usize) -> usize {
    let n = entries
        .checked_mul(5)
        .expect("capacity overflow")
        .div_ceil(4)
        .next_multiple_of(8)
        .max(MIN_BUCKETS);
    debug_assert!(max_load(n) >= entries);
    n
}

/// Prefetches the cache line holding `*p` into every cache level (x86-64 only).
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch_read<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint: it reads nothing architecturally and never faults, and
        // the pointer comes from a reference, so it is valid anyway. SSE is part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((p as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests;
