//! `--allocator netfilter`: a new flow's NAT IP and port as Linux's SNAT picks them, after
//! `get_unique_tuple` in `net/netfilter/nf_nat_core.c`, for a rule
//! `-j SNAT --to-source N1-Nk:LO-HI` (`NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED`, no
//! `random`, no `persistent`) and the kernel's conntrack, where the reply tuple of a flow is
//! (backend address and port -> NAT IP and port), unique while its entry lives:
//!
//! 1. `find_appropriate_src`: when the same source (link, consumer address and port) already
//!    has a live mapping, the newest one (the kernel adds to the head of its `bysource` chain),
//!    its NAT IP and port are kept if the reply tuple toward this backend is free.
//! 2. `find_best_ips_proto`: the NAT IP is `reciprocal_scale(jhash2(src, 4, dst ^ zone), n)`,
//!    see [`Ports::best_nat`]: a function of the addresses alone, never of load, and the flow
//!    never falls over to another NAT IP.
//! 3. The client's own port, when it is in the range and its reply tuple is free. (With a
//!    range of one port the kernel keeps it unchecked and drops the packet at confirmation if
//!    it clashes: the same outcome, no random draw.)
//! 4. `nf_nat_l4proto_unique_tuple`: a random 16-bit offset `off` and `attempts =
//!    min(range, NF_NAT_MAX_ATTEMPTS = 128)` linear tries of port `lo + off % range`, `off`
//!    growing as the kernel's `u16` does (wrapping at 65,536). If none is free: stop when
//!    `attempts >= range` (the range was tried whole) or `attempts < 16`; otherwise halve
//!    `attempts`, draw a fresh offset and go again. So a range above 128 ports gets rounds of
//!    128, 64, 32, 16 and 8 tries (the check follows each round, so a round of 16 is followed by
//!    one of 8): 248 in all; a range of at most 128 gets one round over its size. Then the
//!    packet is dropped (the kernel's duplicate at `__nf_conntrack_confirm`).
//!
//! A tuple is used while a flow record holds it, a closed one whose port is still held too, as
//! a conntrack entry in TIME_WAIT is used. Kernels since 2023 ("netfilter: snat: evict closing
//! tcp entries on reply tuple collision") let the last 32 tries evict such an entry when the
//! new SYN's sequence number is past the old one's; plsim does not model that.
//!
//! The random offsets are `get_random_u16()` in the kernel; here ChaCha8 seeded with the
//! allocator's seed, the low 16 bits of each `next_u32`, so a run repeats.

use rand_chacha::rand_core::RngCore;

use super::{NONE, Ports};
use crate::flow::Flow;

/// `NF_NAT_MAX_ATTEMPTS`: the tries of the first round.
pub(crate) const MAX_ATTEMPTS: u32 = 128;

/// A live mapping of a source (an entry of the kernel's `bysource` chain): its NAT IP and port
/// and the scope that names its whole reply tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    sid: u32,
    off: u16,
    nat: u8,
}

/// `jhash2` of the Linux kernel (`include/linux/jhash.h`, Bob Jenkins' lookup3 `hashword`).
pub(crate) fn jhash2(k: &[u32], initval: u32) -> u32 {
    let mut a = 0xdead_beef_u32
        .wrapping_add((k.len() as u32) << 2)
        .wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let mut k = k;
    while k.len() > 3 {
        a = a.wrapping_add(k[0]);
        b = b.wrapping_add(k[1]);
        c = c.wrapping_add(k[2]);
        // __jhash_mix
        a = a.wrapping_sub(c) ^ c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a) ^ a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b) ^ b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c) ^ c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a) ^ a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b) ^ b.rotate_left(4);
        b = b.wrapping_add(a);
        k = &k[3..];
    }
    if k.is_empty() {
        return c;
    }
    if k.len() == 3 {
        c = c.wrapping_add(k[2]);
    }
    if k.len() >= 2 {
        b = b.wrapping_add(k[1]);
    }
    a = a.wrapping_add(k[0]);
    // __jhash_final
    c = (c ^ b).wrapping_sub(b.rotate_left(14));
    a = (a ^ c).wrapping_sub(c.rotate_left(11));
    b = (b ^ a).wrapping_sub(a.rotate_left(25));
    c = (c ^ b).wrapping_sub(b.rotate_left(16));
    a = (a ^ c).wrapping_sub(c.rotate_left(4));
    b = (b ^ a).wrapping_sub(a.rotate_left(14));
    (c ^ b).wrapping_sub(b.rotate_left(24))
}

/// An IPv4 address as the kernel's hash reads it: its network-order bytes as a native `u32`
/// of a little-endian machine (x86, arm64).
#[inline]
fn raw(ip: u32) -> u32 {
    u32::from_le_bytes(ip.to_be_bytes())
}

impl Ports {
    /// `get_unique_tuple` for a new flow `C:cp -> B:bp` of `link`, `b` the index of `B:bp`:
    /// the NAT IP and the port offset taken, or `None` (the packet is dropped).
    pub(super) fn netfilter(
        &mut self,
        b: usize,
        link: u32,
        c_ip: u32,
        c_port: u16,
        b_ip: u32,
    ) -> Option<(usize, u32)> {
        #[cfg(test)]
        self.trace.clear();
        let source = (link, c_ip, c_port);
        // 1) find_appropriate_src: the source's newest mapping, if its tuple is free.
        if let Some(m) = self.bysource.get(&source).and_then(|v| v.last()).copied() {
            let (nat, off) = (usize::from(m.nat), u32::from(m.off));
            if !self.used(b, nat, off) {
                return Some(self.take_tuple(b, nat, off, source));
            }
        }
        // 2) find_best_ips_proto.
        let nat = self.best_nat(link, c_ip, b_ip);
        let range = self.len;
        // 3) The client's own port, if in range and free.
        let own = u32::from(c_port).wrapping_sub(u32::from(self.range.lo));
        if own < range {
            if range == 1 {
                // Kept unchecked; a clash is the drop at confirmation.
                return (!self.taken(b, nat, own)).then(|| self.take_tuple(b, nat, own, source));
            }
            if !self.used(b, nat, own) {
                return Some(self.take_tuple(b, nat, own, source));
            }
        }
        // 4) nf_nat_l4proto_unique_tuple: rounds of linear tries from random offsets.
        let mut attempts = range.min(MAX_ATTEMPTS);
        let mut off = self.rng.next_u32() as u16;
        loop {
            for _ in 0..attempts {
                let o = u32::from(off) % range;
                if !self.used(b, nat, o) {
                    return Some(self.take_tuple(b, nat, o, source));
                }
                off = off.wrapping_add(1);
            }
            if attempts >= range || attempts < 16 {
                return None;
            }
            attempts /= 2;
            off = self.rng.next_u32() as u16;
        }
    }

    /// `find_best_ips_proto` for IPv4: `j = jhash2(src.u3, 4, dst.u3.all[0] ^ zone)` over the
    /// consumer's address (the 16-byte `nf_inet_addr`: the address and three zero words),
    /// seeded with the backend's address and the conntrack zone, which is the link id's low 16
    /// bits (each private endpoint connection is its own zone, as a Linux NAT keeps overlapping
    /// consumer networks apart), then `reciprocal_scale(j, n)` over the `n` NAT IPs: the
    /// kernel's hash exactly, not a stand-in, so the choice is Linux's for any addresses. The
    /// kernel's range is contiguous, `min + index`; here the index picks the NAT IP in
    /// configuration order (the same thing when they are consecutive, ascending). One NAT IP is
    /// the kernel's fast path.
    pub(crate) fn best_nat(&self, link: u32, c_ip: u32, b_ip: u32) -> usize {
        let n = self.nats.len() as u64;
        if n == 1 {
            return 0;
        }
        let zone = link & 0xffff;
        let j = jhash2(&[raw(c_ip), 0, 0, 0], raw(b_ip) ^ zone);
        ((u64::from(j) * n) >> 32) as usize
    }

    /// `nf_nat_used_tuple`: is port offset `off` of NAT IP `nat` taken toward backend index
    /// `b` (by a live or held flow)? (Tests see every tuple asked about.)
    #[inline]
    fn used(&mut self, b: usize, nat: usize, off: u32) -> bool {
        #[cfg(test)]
        self.trace
            .push((nat as u8, (u32::from(self.range.lo) + off) as u16));
        self.taken(b, nat, off)
    }

    /// Whether port offset `off` of NAT IP `nat` is taken toward backend index `b`.
    #[inline]
    fn taken(&self, b: usize, nat: usize, off: u32) -> bool {
        match self.scope_slots[b * crate::MAX_NAT_IPS + nat] {
            NONE => false,
            sid => self.scopes[sid as usize].ports.get(off),
        }
    }

    /// Takes the free tuple (NAT IP `nat`, offset `off`, backend index `b`) for `source`.
    fn take_tuple(
        &mut self,
        b: usize,
        nat: usize,
        off: u32,
        source: (u32, u32, u16),
    ) -> (usize, u32) {
        let sid = self.scope_for(b, nat);
        let s = &mut self.scopes[sid as usize];
        s.ports.set(off);
        s.in_use += 1;
        self.bysource.entry(source).or_default().push(Mapping {
            sid,
            off: off as u16,
            nat: nat as u8,
        });
        (nat, off)
    }

    /// Flow `f` left the table: its mapping leaves its source's list.
    pub(super) fn unmap(&mut self, f: &Flow) {
        let source = (f.link, f.c_ip, f.c_port);
        let sid = self.scope_id(f);
        let off = (u32::from(f.n_port) - u32::from(self.range.lo)) as u16;
        let list = self.bysource.get_mut(&source).expect("a mapped source");
        let i = list
            .iter()
            .position(|m| m.sid == sid && m.off == off)
            .expect("the flow's mapping");
        list.remove(i);
        if list.is_empty() {
            self.bysource.remove(&source);
        }
    }
}
