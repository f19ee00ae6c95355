//! Sets of IPv4 addresses kept as runs, so that "the lowest free address from here" is one
//! lookup however many addresses are taken (a dynamic endpoint or NAT IP takes that address).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A set of IPv4 addresses, as disjoint runs that never touch (`start -> last`, both taken).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AddressSet {
    runs: BTreeMap<u32, u32>,
}

impl AddressSet {
    /// The run holding `a`, if any: its first and last address.
    fn run_of(&self, a: u32) -> Option<(u32, u32)> {
        self.runs
            .range(..=a)
            .next_back()
            .filter(|&(_, &last)| last >= a)
            .map(|(&first, &last)| (first, last))
    }

    /// Whether `ip` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        self.run_of(u32::from(ip)).is_some()
    }

    /// Adds `ip`; false when it was in already.
    pub(crate) fn insert(&mut self, ip: Ipv4Addr) -> bool {
        let a = u32::from(ip);
        if self.run_of(a).is_some() {
            return false;
        }
        let (mut first, mut last) = (a, a);
        // Join the run that ends just below and the one that starts just above.
        if let Some(below) = a.checked_sub(1)
            && let Some((f, _)) = self.run_of(below)
        {
            self.runs.remove(&f);
            first = f;
        }
        if let Some(above) = a.checked_add(1)
            && let Some(l) = self.runs.remove(&above)
        {
            last = l;
        }
        self.runs.insert(first, last);
        true
    }

    /// Takes `ip` out; false when it was not in.
    pub(crate) fn remove(&mut self, ip: Ipv4Addr) -> bool {
        let a = u32::from(ip);
        let Some((first, last)) = self.run_of(a) else {
            return false;
        };
        self.runs.remove(&first);
        if first < a {
            self.runs.insert(first, a - 1);
        }
        if a < last {
            self.runs.insert(a + 1, last);
        }
        true
    }

    /// The lowest address at or above `from` that is not in the set (`None`: every one up to
    /// 255.255.255.255 is).
    pub(crate) fn lowest_free_from(&self, from: Ipv4Addr) -> Option<Ipv4Addr> {
        let a = u32::from(from);
        match self.run_of(a) {
            // Runs never touch: the address after a run is free.
            Some((_, last)) => last.checked_add(1).map(Ipv4Addr::from),
            None => Some(from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: u32) -> Ipv4Addr {
        Ipv4Addr::from(a)
    }

    #[test]
    fn runs_join_and_split_and_the_lowest_free_address_is_found_past_them() {
        let mut s = AddressSet::default();
        assert_eq!(s.lowest_free_from(ip(10)), Some(ip(10)));
        for a in [10, 12, 11, 14] {
            assert!(s.insert(ip(a)));
        }
        assert!(!s.insert(ip(11)), "in already");
        assert_eq!(s.runs, BTreeMap::from([(10, 12), (14, 14)]));
        assert_eq!(s.lowest_free_from(ip(10)), Some(ip(13)));
        assert_eq!(s.lowest_free_from(ip(9)), Some(ip(9)));
        assert!(s.insert(ip(13)));
        assert_eq!(s.runs, BTreeMap::from([(10, 14)]));
        assert_eq!(s.lowest_free_from(ip(11)), Some(ip(15)));
        assert!(s.remove(ip(12)));
        assert!(!s.remove(ip(12)), "out already");
        assert_eq!(s.runs, BTreeMap::from([(10, 11), (13, 14)]));
        assert_eq!(s.lowest_free_from(ip(10)), Some(ip(12)));
        assert!(s.contains(ip(13)) && !s.contains(ip(12)) && !s.contains(ip(15)));
        assert!(s.remove(ip(10)) && s.remove(ip(14)));
        assert_eq!(s.runs, BTreeMap::from([(11, 11), (13, 13)]));
    }

    #[test]
    fn the_ends_of_the_address_space() {
        let mut s = AddressSet::default();
        assert!(s.insert(ip(u32::MAX)) && s.insert(ip(0)) && s.insert(ip(u32::MAX - 1)));
        assert_eq!(s.lowest_free_from(ip(u32::MAX - 1)), None);
        assert_eq!(s.lowest_free_from(ip(0)), Some(ip(1)));
        assert!(s.remove(ip(u32::MAX)));
        assert_eq!(s.lowest_free_from(ip(u32::MAX - 1)), Some(ip(u32::MAX)));
    }

    /// Against a plain set, on a seeded walk of inserts and removes in a small range.
    #[test]
    fn agrees_with_a_plain_set() {
        let mut s = AddressSet::default();
        let mut plain = std::collections::BTreeSet::new();
        let mut x: u64 = 7;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let a = 100 + ((x >> 33) % 64) as u32;
            if (x >> 20) & 1 == 0 {
                assert_eq!(s.insert(ip(a)), plain.insert(a));
            } else {
                assert_eq!(s.remove(ip(a)), plain.remove(&a));
            }
            let from = 98 + ((x >> 40) % 70) as u32;
            let expect = (from..).find(|b| !plain.contains(b)).map(ip);
            assert_eq!(s.lowest_free_from(ip(from)), expect);
        }
    }
}
