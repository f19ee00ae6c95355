//! A fixed-size bitmap (set = taken) with a one-level summary of full words, so the next free
//! bit is found in O(len / 4096) word reads (at most 16 for 65,536 bits) however full it is.

/// Bits `0..len`, `len <= 65_536`.
#[derive(Clone, Debug)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    /// Bit `w` set when `words[w]` is full.
    summary: Vec<u64>,
    len: u32,
}

impl Bitmap {
    /// All bits clear. Bits past `len` are set forever, so they are never found free.
    pub(crate) fn new(len: u32) -> Bitmap {
        let nwords = (len as usize).div_ceil(64);
        let mut words = vec![0u64; nwords];
        if !len.is_multiple_of(64) {
            words[nwords - 1] = !0u64 << (len % 64);
        }
        let nsum = nwords.div_ceil(64).max(1);
        let mut summary = vec![0u64; nsum];
        if !nwords.is_multiple_of(64) {
            summary[nsum - 1] = !0u64 << (nwords % 64);
        }
        if nwords == 0 {
            summary[0] = !0;
        }
        let mut b = Bitmap {
            words,
            summary,
            len,
        };
        for w in 0..b.words.len() {
            b.update_summary(w);
        }
        b
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.words.capacity() + self.summary.capacity()) * 8
    }

    #[inline]
    fn update_summary(&mut self, w: usize) {
        let (s, b) = (w / 64, w % 64);
        if self.words[w] == !0 {
            self.summary[s] |= 1 << b;
        } else {
            self.summary[s] &= !(1 << b);
        }
    }

    /// True when bit `i` is set.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> bool {
        self.words[i as usize / 64] >> (i % 64) & 1 == 1
    }

    /// Sets bit `i` (it must be clear).
    #[inline]
    pub(crate) fn set(&mut self, i: u32) {
        debug_assert!(i < self.len);
        let w = i as usize / 64;
        debug_assert!(self.words[w] & (1 << (i % 64)) == 0, "bit {i} set twice");
        self.words[w] |= 1 << (i % 64);
        if self.words[w] == !0 {
            self.summary[w / 64] |= 1 << (w % 64);
        }
    }

    /// Clears bit `i` (it must be set).
    #[inline]
    pub(crate) fn clear(&mut self, i: u32) {
        debug_assert!(i < self.len);
        let w = i as usize / 64;
        debug_assert!(
            self.words[w] & (1 << (i % 64)) != 0,
            "bit {i} cleared twice"
        );
        self.words[w] &= !(1 << (i % 64));
        self.summary[w / 64] &= !(1 << (w % 64));
    }

    /// The first word at or after `from` that is not full.
    #[inline]
    fn next_open_word(&self, from: usize) -> Option<usize> {
        let mut s = from / 64;
        if s >= self.summary.len() {
            return None;
        }
        let mut open = !self.summary[s] & (!0u64 << (from % 64));
        loop {
            if open != 0 {
                return Some(s * 64 + open.trailing_zeros() as usize);
            }
            s += 1;
            if s == self.summary.len() {
                return None;
            }
            open = !self.summary[s];
        }
    }

    /// The first clear bit at or after `start` (wrapping round to 0), or `None` when all are set.
    #[inline]
    pub(crate) fn find_from(&self, start: u32) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let start = if start >= self.len { 0 } else { start };
        let w = start as usize / 64;
        let here = !self.words[w] & (!0u64 << (start % 64));
        if here != 0 {
            return Some((w * 64) as u32 + here.trailing_zeros());
        }
        let w = self
            .next_open_word(w + 1)
            .or_else(|| self.next_open_word(0))?;
        Some((w * 64) as u32 + (!self.words[w]).trailing_zeros())
    }

    /// The first clear bit in `lo..hi`, or `None`.
    #[inline]
    pub(crate) fn find_in(&self, lo: u32, hi: u32) -> Option<u32> {
        let mut i = lo;
        while i < hi {
            let w = i as usize / 64;
            let mut free = !self.words[w] & (!0u64 << (i % 64));
            let word_end = (w as u32 + 1) * 64;
            if hi < word_end {
                free &= (1u64 << (hi % 64)) - 1;
            }
            if free != 0 {
                return Some((w * 64) as u32 + free.trailing_zeros());
            }
            i = word_end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_wraps_and_skips_full_words() {
        let mut b = Bitmap::new(200);
        for i in 0..200 {
            assert_eq!(b.find_from(0), Some(i));
            b.set(i);
        }
        assert_eq!(b.find_from(0), None);
        assert_eq!(b.find_from(150), None);
        b.clear(3);
        b.clear(130);
        assert_eq!(b.find_from(131), Some(3));
        assert_eq!(b.find_from(4), Some(130));
        assert_eq!(b.find_from(130), Some(130));
        assert_eq!(b.find_from(5000), Some(3));
        assert_eq!(b.find_in(0, 3), None);
        assert_eq!(b.find_in(0, 4), Some(3));
        assert_eq!(b.find_in(64, 128), None);
        assert_eq!(b.find_in(128, 200), Some(130));
        assert!(b.get(4) && !b.get(3));
    }

    #[test]
    fn full_range_of_65536() {
        let mut b = Bitmap::new(65_536);
        for i in 0..65_536 {
            b.set(i);
        }
        assert_eq!(b.find_from(12_345), None);
        b.clear(65_535);
        assert_eq!(b.find_from(0), Some(65_535));
        b.clear(0);
        assert_eq!(b.find_from(65_535), Some(65_535));
        b.set(65_535);
        assert_eq!(b.find_from(65_535), Some(0));
    }
}
