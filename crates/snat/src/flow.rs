//! The SNAT's flow record and its keys: a [`plsim_flowtab::FlowTable`] of 32-byte [`Flow`]s,
//! found by the consumer-side key (link id, C:cp, B:bp) on the way out and by the NAT-side key
//! (NAT IP, np, B:bp) on the way back.

use plsim_flowtab::Record;
use plsim_wire::hash::fold2;
use plsim_wire::{FlowTuple, LinkId};

/// The flow table of the SNAT engine.
pub(crate) type FlowTable = plsim_flowtab::FlowTable<Flow>;

/// One flow: 32 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Flow {
    /// Nanoseconds of the last packet (of the closing packet once closed).
    pub last: u64,
    /// The link id; the next free slot when the slot is free.
    pub link: u32,
    pub c_ip: u32,
    pub b_ip: u32,
    /// The table's generation of the slot: bumped whenever the flow's timer is re-armed earlier
    /// and when the slot is freed, so a timer entry with another generation is stale.
    pub gen_: u32,
    pub c_port: u16,
    pub b_port: u16,
    pub n_port: u16,
    /// The index of its NAT IP.
    pub nat: u8,
    /// TCP state bits ([`crate::tcp`]); 0 for a free slot.
    pub state: u8,
}

impl Record for Flow {
    #[inline]
    fn fwd_hash(&self) -> u64 {
        fwd_hash(self.link, self.c_ip, self.c_port, self.b_ip, self.b_port)
    }
    #[inline]
    fn rev_hash(&self) -> u64 {
        rev_hash(self.nat, self.n_port, self.b_ip, self.b_port)
    }
    #[inline]
    fn is_live(&self) -> bool {
        self.state != 0
    }
    #[inline]
    fn generation(&self) -> u32 {
        self.gen_
    }
    #[inline]
    fn set_generation(&mut self, generation: u32) {
        self.gen_ = generation;
    }
    #[inline]
    fn make_vacant(&mut self, next: u32) {
        self.state = 0;
        self.link = next;
    }
    #[inline]
    fn next_vacant(&self) -> u32 {
        self.link
    }
}

impl Flow {
    /// True when the flow's consumer-side key is `link`, `C:cp -> B:bp`.
    #[inline]
    pub fn out_is(&self, link: u32, c_ip: u32, c_port: u16, b_ip: u32, b_port: u16) -> bool {
        self.link == link
            && self.c_ip == c_ip
            && self.c_port == c_port
            && self.b_ip == b_ip
            && self.b_port == b_port
    }

    /// True when the flow's NAT-side key is NAT IP `nat`, `B:bp -> N:np`.
    #[inline]
    pub fn in_is(&self, nat: u8, n_port: u16, b_ip: u32, b_port: u16) -> bool {
        self.nat == nat && self.n_port == n_port && self.b_ip == b_ip && self.b_port == b_port
    }
}

/// The forward index's hash of a consumer-side key (only the table's layout depends on it).
#[inline]
pub(crate) fn fwd_hash(link: u32, c_ip: u32, c_port: u16, b_ip: u32, b_port: u16) -> u64 {
    fold2(
        u64::from(link) << 32 | u64::from(c_ip),
        u64::from(c_port) << 48 | u64::from(b_port) << 32 | u64::from(b_ip),
    )
}

/// The reverse index's hash of a NAT-side key.
#[inline]
pub(crate) fn rev_hash(nat: u8, n_port: u16, b_ip: u32, b_port: u16) -> u64 {
    fold2(
        u64::from(nat) << 16 | u64::from(n_port),
        u64::from(b_port) << 32 | u64::from(b_ip),
    )
}

/// The forward index's hash of a consumer packet `C:cp -> B:bp` of `link`.
#[inline]
pub(crate) fn out_hash(link: LinkId, t: FlowTuple) -> u64 {
    fwd_hash(link.0, u32::from(t.src), t.sport, u32::from(t.dst), t.dport)
}

/// The reverse index's hash of a backend packet `B:bp -> N:np`, `N` being NAT IP `nat`.
#[inline]
pub(crate) fn in_hash(nat: u8, t: FlowTuple) -> u64 {
    rev_hash(nat, t.dport, u32::from(t.src), t.sport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_is_32_bytes_and_its_hashes_are_fixed() {
        assert_eq!(size_of::<Flow>(), 32);
        // Worked out by the hashes as they were when the mixers moved to `plsim_wire::hash`.
        assert_eq!(
            fwd_hash(7, 0x0a00_0001, 1024, 0xc0a8_0101, 443),
            0x4402_a3ce_e565_cb37
        );
        assert_eq!(rev_hash(3, 2000, 0xc0a8_0101, 443), 0x01ac_8f72_0387_f11a);
    }
}
