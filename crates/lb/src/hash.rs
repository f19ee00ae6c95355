//! The load balancer's hashes (deterministic, no per-process seed: a replay gives the same result
//! every run) and the Maglev lookup table. They are built on the shared mixers of
//! [`plsim_wire::hash`]; their values decide which backend every new flow gets.

use std::net::Ipv4Addr;

use plsim_wire::hash::{fmix64, mix2};

/// The TCP protocol number, the only protocol on the path.
const TCP: u64 = 6;

const SEED_FLOW: u64 = 0x9e37_79b9_7f4a_7c15;
const SEED_REPLY: u64 = 0xd1b5_4a32_d192_ed03;
const SEED_SOURCE_IP: u64 = 0x8cb9_2ba7_2f3d_8dd7;
const SEED_SOURCE_IP_PROTO: u64 = 0xa076_1d64_78bd_642f;
const SEED_OFFSET: u64 = 0xe703_7ed1_a0b4_28db;
const SEED_SKIP: u64 = 0x5851_f42d_4c95_7f2d;

/// The hash of a consumer flow (link, C:cp -> F:fp, TCP): the flow table's key hash and the
/// 5-tuple distribution's hash.
#[inline]
pub(crate) fn flow(link: u32, src: u32, sport: u16, dst: u32, dport: u16) -> u64 {
    let a = (u64::from(src) << 32) | u64::from(dst);
    let b = (u64::from(sport) << 48) | (u64::from(dport) << 32) | u64::from(link);
    mix2(a, b, SEED_FLOW ^ TCP)
}

/// The hash of a flow's return key (link, C:cp, B:bp).
#[inline]
pub(crate) fn reply(link: u32, client: u32, cport: u16, backend: u32, bport: u16) -> u64 {
    let a = (u64::from(client) << 32) | u64::from(backend);
    let b = (u64::from(cport) << 48) | (u64::from(bport) << 32) | u64::from(link);
    mix2(a, b, SEED_REPLY)
}

/// The 2-tuple distribution's hash (link, source IP, destination IP).
#[inline]
pub(crate) fn source_ip(link: u32, src: u32, dst: u32) -> u64 {
    mix2(
        (u64::from(src) << 32) | u64::from(dst),
        u64::from(link),
        SEED_SOURCE_IP,
    )
}

/// The 3-tuple distribution's hash (link, source IP, destination IP, protocol).
#[inline]
pub(crate) fn source_ip_protocol(link: u32, src: u32, dst: u32) -> u64 {
    mix2(
        (u64::from(src) << 32) | u64::from(dst),
        u64::from(link) | (TCP << 32),
        SEED_SOURCE_IP_PROTO,
    )
}

/// Maps a hash uniformly onto `0..n` (Lemire's multiply-shift: the high bits of `hash * n`).
#[inline]
pub(crate) fn scale(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// Fills a Maglev lookup table (Eisenbud et al., NSDI 2016, Pseudocode 1).
///
/// `backends` are `(id, address)`; each backend's permutation of the slots depends on its address
/// alone, so the table changes little when a backend comes or goes. `table.len()` must be a
/// prime; the table is left empty when there is no backend.
pub(crate) fn maglev_fill(table: &mut Vec<u32>, size: u32, backends: &[(u32, Ipv4Addr)]) {
    table.clear();
    if backends.is_empty() {
        return;
    }
    const EMPTY: u32 = u32::MAX;
    let m = u64::from(size);
    table.resize(size as usize, EMPTY);
    // (offset, skip, next) per backend.
    let mut perm: Vec<(u64, u64, u64)> = backends
        .iter()
        .map(|&(_, ip)| {
            let key = u64::from(u32::from(ip));
            (
                fmix64(key ^ SEED_OFFSET) % m,
                fmix64(key ^ SEED_SKIP) % (m - 1) + 1,
                0,
            )
        })
        .collect();
    let mut filled = 0u64;
    loop {
        for (i, (offset, skip, next)) in perm.iter_mut().enumerate() {
            let mut slot = (*offset + *next * *skip) % m;
            while table[slot as usize] != EMPTY {
                *next += 1;
                slot = (*offset + *next * *skip) % m;
            }
            table[slot as usize] = backends[i].0;
            *next += 1;
            filled += 1;
            if filled == m {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Worked out by the hashes as they were when the mixers moved to `plsim_wire::hash`.
    const PINNED_FLOW: u64 = 0x8f23_be14_715f_f216;
    const PINNED_REPLY: u64 = 0x000e_c8f3_68dc_a712;
    const PINNED_SOURCE_IP: u64 = 0x0acb_560e_258c_a8a7;
    const PINNED_SOURCE_IP_PROTOCOL: u64 = 0xae91_9d3f_031e_2d17;

    #[test]
    fn hashes_are_fixed_across_runs() {
        // Pinned values: a change here changes every replay's backend choices.
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        assert_eq!(flow(7, 0x0a00_0001, 1024, 0x0a64_0004, 443), PINNED_FLOW);
        assert_eq!(reply(7, 0x0a00_0001, 1024, 0xc0a8_0101, 443), PINNED_REPLY);
        assert_eq!(source_ip(7, 0x0a00_0001, 0x0a64_0004), PINNED_SOURCE_IP);
        assert_eq!(
            source_ip_protocol(7, 0x0a00_0001, 0x0a64_0004),
            PINNED_SOURCE_IP_PROTOCOL
        );
        assert_ne!(flow(0, 1, 2, 3, 4), flow(0, 3, 4, 1, 2));
        assert_ne!(source_ip(0, 1, 2), source_ip(1, 1, 2));
    }

    #[test]
    fn scale_covers_the_range_evenly() {
        assert_eq!(scale(0, 4), 0);
        assert_eq!(scale(u64::MAX, 4), 3);
        assert_eq!(scale(1 << 62, 4), 1);
        assert_eq!(scale(u64::MAX, 1), 0);
    }

    #[test]
    fn maglev_table_is_full_and_balanced() {
        let backends: Vec<(u32, Ipv4Addr)> = (0..7u32)
            .map(|i| (i * 10, Ipv4Addr::new(10, 1, 0, i as u8 + 1)))
            .collect();
        let mut table = Vec::new();
        maglev_fill(&mut table, 65_537, &backends);
        assert_eq!(table.len(), 65_537);
        let mut counts = [0usize; 7];
        for &b in &table {
            assert_eq!(b % 10, 0);
            counts[(b / 10) as usize] += 1;
        }
        // Round-robin filling: every backend gets floor(M/N) or ceil(M/N) slots.
        let (lo, hi) = (65_537 / 7, 65_537usize.div_ceil(7));
        assert!(counts.iter().all(|&c| c == lo || c == hi), "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 65_537);

        maglev_fill(&mut table, 65_537, &[]);
        assert!(table.is_empty());
    }

    #[test]
    fn maglev_with_more_backends_than_slots_terminates() {
        let backends: Vec<(u32, Ipv4Addr)> = (0..10u32)
            .map(|i| (i, Ipv4Addr::new(10, 0, 0, i as u8 + 1)))
            .collect();
        let mut table = Vec::new();
        maglev_fill(&mut table, 7, &backends);
        assert_eq!(table.len(), 7);
        let mut seen = table.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 7, "each of the first 7 backends takes one slot");
    }
}
