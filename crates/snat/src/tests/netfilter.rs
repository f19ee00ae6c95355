//! `--allocator netfilter` against a model of Linux's `get_unique_tuple` written here on its
//! own, step by step as `net/netfilter/nf_nat_core.c` reads: the reply tuples checked, in
//! order, the rounds of tries, the port kept, the NAT IP the kernel's hash picks.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::*;
use crate::ports::netfilter::jhash2;

/// (client, backend, zone, j, index of 3, index of 8).
type KernelHash = ([u8; 4], [u8; 4], u32, u32, usize, usize);

/// A reply tuple: (NAT IP, port, backend, backend port).
type Reply = (u8, u16, u32, u16);

/// A source: (link, consumer address, consumer port).
type Source = (u32, u32, u16);

/// `jhash2` and `reciprocal_scale` as a C program built from the kernel's `jhash.h` computed
/// them (on x86-64): `(client, backend, zone, j, index of 3, index of 8)`, the addresses read
/// from their network-order bytes as the kernel reads them.
const KERNEL_HASHES: [KernelHash; 16] = [
    ([192, 168, 0, 1], [10, 0, 0, 4], 1, 0xc877_cc84, 2, 6),
    ([192, 168, 0, 1], [10, 0, 0, 4], 2, 0x782e_44c2, 1, 3),
    ([192, 168, 0, 1], [10, 0, 0, 5], 1, 0xd0b7_d32a, 2, 6),
    ([192, 168, 0, 1], [10, 0, 0, 5], 2, 0xf639_2a96, 2, 7),
    ([192, 168, 0, 2], [10, 0, 0, 4], 1, 0x52a4_8c06, 0, 2),
    ([192, 168, 0, 2], [10, 0, 0, 4], 2, 0xc3b4_7e1e, 2, 6),
    ([192, 168, 0, 2], [10, 0, 0, 5], 1, 0x214f_fe8f, 0, 1),
    ([192, 168, 0, 2], [10, 0, 0, 5], 2, 0x9825_9ee3, 1, 4),
    ([10, 1, 2, 3], [10, 0, 0, 4], 1, 0xe368_2dc3, 2, 7),
    ([10, 1, 2, 3], [10, 0, 0, 4], 2, 0x84ab_be76, 1, 4),
    ([10, 1, 2, 3], [10, 0, 0, 5], 1, 0xfd0c_bf4b, 2, 7),
    ([10, 1, 2, 3], [10, 0, 0, 5], 2, 0x12d0_f9b9, 0, 0),
    ([172, 16, 9, 200], [10, 0, 0, 4], 1, 0x3e27_d9ee, 0, 1),
    ([172, 16, 9, 200], [10, 0, 0, 4], 2, 0xe40b_97e6, 2, 7),
    ([172, 16, 9, 200], [10, 0, 0, 5], 1, 0x2dad_bd7a, 0, 1),
    ([172, 16, 9, 200], [10, 0, 0, 5], 2, 0x4dac_797e, 0, 2),
];

fn netfilter(nats: u8, lo: u16, hi: u16, seed: u64) -> SnatConfig {
    SnatConfig {
        allocator: Allocator::Netfilter { seed },
        ..cfg(nats, lo, hi, ReuseScope::PerBackend)
    }
}

#[test]
fn jhash2_and_the_nat_ip_are_the_kernels() {
    assert_eq!(jhash2(&[], 0), 0xdead_beef);
    assert_eq!(jhash2(&[1], 0), 0x72a8_2a9b);
    assert_eq!(jhash2(&[1, 2, 3, 4, 5], 7), 0x5a4f_3b1e);
    let three = Ports::new(&netfilter(3, 1024, 65535, 0));
    let eight = Ports::new(&netfilter(8, 1024, 65535, 0));
    for (c, b, zone, j, i3, i8) in KERNEL_HASHES {
        let raw = |a: [u8; 4]| u32::from_ne_bytes(a);
        assert_eq!(jhash2(&[raw(c), 0, 0, 0], raw(b) ^ zone), j);
        let (c, b) = (u32::from_be_bytes(c), u32::from_be_bytes(b));
        assert_eq!(three.best_nat(zone, c, b), i3);
        assert_eq!(eight.best_nat(zone, c, b), i8);
        // The zone is the link id's low 16 bits.
        assert_eq!(three.best_nat(zone | 0x7_0000, c, b), i3);
    }
}

/// The kernel's NAT, written from `nf_nat_core.c` without the engine's code: conntrack's reply
/// tuples, the `bysource` chains, the random offsets from the same seeded stream.
struct Kernel {
    lo: u32,
    range: u32,
    nats: usize,
    rng: ChaCha8Rng,
    /// Reply tuples in use: (NAT IP, port, backend, backend port).
    used: HashSet<Reply>,
    /// Source -> its mappings' reply tuples, newest first (`hlist_add_head_rcu`).
    bysource: StdMap<Source, Vec<Reply>>,
    /// Every tuple `nf_nat_used_tuple` was asked about by the last allocation.
    checked: Vec<(u8, u16)>,
    /// The tries of each round of the last `nf_nat_l4proto_unique_tuple`.
    rounds: Vec<u32>,
    /// How the last allocation ended: 1 source mapping, 3 own port, 4 the loop, 0 dropped.
    step: u8,
}

impl Kernel {
    fn new(cfg: &SnatConfig, seed: u64) -> Kernel {
        Kernel {
            lo: u32::from(cfg.ports.lo),
            range: cfg.ports.len(),
            nats: cfg.nat_ips.len(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            used: HashSet::new(),
            bysource: StdMap::new(),
            checked: Vec::new(),
            rounds: Vec::new(),
            step: 0,
        }
    }

    fn nf_nat_used_tuple(&mut self, t: Reply) -> bool {
        self.checked.push((t.0, t.1));
        self.used.contains(&t)
    }

    /// `find_best_ips_proto`, from the C program's table.
    fn find_best_ips_proto(&self, link: u32, c: u32, b: u32) -> u8 {
        if self.nats == 1 {
            return 0;
        }
        assert_eq!(self.nats, 3, "the table has indexes for 3 NAT IPs");
        KERNEL_HASHES
            .iter()
            .find(|h| u32::from_be_bytes(h.0) == c && u32::from_be_bytes(h.1) == b && h.2 == link)
            .expect("a pair of the table")
            .4 as u8
    }

    fn get_unique_tuple(&mut self, link: u32, t: FlowTuple) -> Option<(u8, u16)> {
        self.checked.clear();
        self.rounds.clear();
        let (c, b) = (u32::from(t.src), u32::from(t.dst));
        let src = (link, c, t.sport);
        // 1) find_appropriate_src: the first of the chain (the newest), its NAT IP and port
        //    with this destination.
        if let Some(&(n, p, _, _)) = self.bysource.get(&src).and_then(|v| v.first()) {
            let tuple = (n, p, b, t.dport);
            if !self.nf_nat_used_tuple(tuple) {
                return self.confirm(src, tuple, 1);
            }
        }
        // 2) find_best_ips_proto
        let n = self.find_best_ips_proto(link, c, b);
        // 3) the original port, if in range and (a one-port range, or) unused
        let min = self.lo;
        let max = self.lo + self.range - 1;
        let port = u32::from(t.sport);
        if (min..=max).contains(&port) {
            let tuple = (n, t.sport, b, t.dport);
            if min == max || !self.nf_nat_used_tuple(tuple) {
                return self.confirm(src, tuple, 3);
            }
        }
        // 4) nf_nat_l4proto_unique_tuple
        let range_size = self.range;
        let mut off: u16 = self.rng.next_u32() as u16;
        let mut attempts = range_size;
        if attempts > 128 {
            attempts = 128;
        }
        loop {
            self.rounds.push(attempts);
            let mut i = 0;
            while i < attempts {
                let p = (min + u32::from(off) % range_size) as u16;
                if !self.nf_nat_used_tuple((n, p, b, t.dport)) {
                    return self.confirm(src, (n, p, b, t.dport), 4);
                }
                i += 1;
                off = off.wrapping_add(1);
            }
            if attempts >= range_size || attempts < 16 {
                break;
            }
            attempts /= 2;
            off = self.rng.next_u32() as u16;
        }
        // The last tuple tried clashes at confirmation: dropped.
        self.step = 0;
        None
    }

    /// `__nf_conntrack_confirm`: the entry goes in unless its reply tuple clashes.
    fn confirm(&mut self, src: Source, tuple: Reply, step: u8) -> Option<(u8, u16)> {
        if !self.used.insert(tuple) {
            self.step = 0;
            return None;
        }
        self.bysource.entry(src).or_default().insert(0, tuple);
        self.step = step;
        Some((tuple.0, tuple.1))
    }

    /// The conntrack entry of `src` with reply tuple `tuple` is destroyed.
    fn destroy(&mut self, src: Source, tuple: Reply) {
        assert!(self.used.remove(&tuple));
        let chain = self.bysource.get_mut(&src).unwrap();
        chain.retain(|&x| x != tuple);
        if chain.is_empty() {
            self.bysource.remove(&src);
        }
    }

    /// Whether any NAT IP has a free tuple toward `b:bp`.
    fn any_free(&self, b: u32, bp: u16) -> bool {
        (0..self.nats as u8).any(|n| {
            (0..self.range).any(|o| !self.used.contains(&(n, (self.lo + o) as u16, b, bp)))
        })
    }
}

/// What the model saw over a run: allocations by the step that made them, drops, drops before
/// exhaustion, and the rounds of every drop by the loop.
#[derive(Debug, Default)]
struct Seen {
    steps: [u64; 5],
    gave_up: u64,
    loop_drops: Vec<Vec<u32>>,
}

/// Runs `ops` random SYNs and resets through the engine and the model together; every result,
/// every tuple checked and the failure counts must agree.
fn against_the_kernel(cfg: SnatConfig, seed: u64, ops: usize, free_one_in: u32) -> Seen {
    let mut s = Snat::new(cfg.clone()).unwrap();
    let mut k = Kernel::new(&cfg, seed);
    let mut pick = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut live: Vec<(u32, FlowTuple, Reply)> = Vec::new();
    let mut seen = Seen::default();
    let (lo, len) = (u32::from(cfg.ports.lo), cfg.ports.len());
    for _ in 0..ops {
        let r = pick.next_u32();
        if !live.is_empty() && r % free_one_in == 0 {
            let (link, t, tuple) = live.swap_remove(pick.next_u32() as usize % live.len());
            assert!(s.reset_flow(LinkId(link), t, secs(0)));
            k.destroy((link, t.src.into(), t.sport), tuple);
            continue;
        }
        let h = KERNEL_HASHES[(r >> 8) as usize % KERNEL_HASHES.len()];
        let link = h.2;
        // A client port in the range or just below it, few of them, so sources repeat.
        let sport = (lo + (r >> 16) % (len + 4)).saturating_sub(4) as u16;
        let bport = [443, 8443][(r >> 4) as usize % 2];
        let t = tuple(Ipv4Addr::from(h.0), sport, Ipv4Addr::from(h.1), bport);
        if s.flow(LinkId(link), t).is_some() {
            continue; // a packet of a live flow, not a new one
        }
        let want = k.get_unique_tuple(link, t);
        let before = s.stats();
        let got = out(&mut s, link, t, SYN, secs(0)).map(|f| {
            let (n, p) = src_of(&f);
            (s.ports.nat_index(u32::from(n)).unwrap(), p)
        });
        assert_eq!(s.ports.trace, k.checked, "tuples checked for {t:?}");
        match (got, want) {
            (Ok(g), Some(w)) => {
                assert_eq!(g, w, "{t:?}");
                live.push((link, t, (w.0, w.1, u32::from(t.dst), t.dport)));
            }
            (Err(DropReason::PortExhausted), None) => {
                let after = s.stats();
                let gave_up = k.any_free(u32::from(t.dst), t.dport);
                assert_eq!(after.gave_up - before.gave_up, u64::from(gave_up));
                assert_eq!(after.exhausted - before.exhausted, u64::from(!gave_up));
                seen.gave_up += u64::from(gave_up);
                if !k.rounds.is_empty() {
                    seen.loop_drops.push(k.rounds.clone());
                }
            }
            (g, w) => panic!("{t:?}: the engine gave {g:?}, the kernel {w:?}"),
        }
        seen.steps[usize::from(k.step)] += 1;
    }
    s.audit();
    seen
}

/// 3 NAT IPs of 200 ports (more than 128: the rounds halve) filled past their capacity toward
/// two backends on two ports each: every allocation, every tuple checked and every failure as
/// the kernel's. Every step of `get_unique_tuple` is exercised, drops by the loop take rounds
/// of 128, 64, 32, 16 and 8 tries (248 in all), and some come before true exhaustion.
#[test]
fn the_allocator_is_the_kernels_loop_step_by_step() {
    let seen = against_the_kernel(netfilter(3, 2000, 2199, 11), 11, 12_000, 9);
    assert!([0, 1, 3, 4].iter().all(|&i| seen.steps[i] > 0), "{seen:?}");
    assert!(!seen.loop_drops.is_empty());
    for rounds in &seen.loop_drops {
        assert_eq!(rounds, &[128, 64, 32, 16, 8]);
    }
    assert!(seen.gave_up > 0, "{seen:?}");
}

/// Ranges of at most 128 ports: one round over the range, from an offset that wraps as a
/// `u16` (so a start near 65,535 can miss ports), and the one-port range.
#[test]
fn small_ranges_take_one_round_as_the_kernel_does() {
    for (nats, lo, hi, seed) in [(1, 5000, 5099, 3), (3, 5000, 5127, 4), (3, 6000, 6000, 5)] {
        let seen = against_the_kernel(netfilter(nats, lo, hi, seed), seed, 3_000, 7);
        let range = u32::from(hi - lo + 1);
        assert!(!seen.loop_drops.is_empty(), "{seen:?}");
        for rounds in &seen.loop_drops {
            assert_eq!(rounds, &[range]);
        }
    }
}

/// The client's port is kept when its reply tuple is free, and the NAT IP is the kernel's
/// hash's, never the least loaded one: a second flow from the same host to the same backend
/// lands on the same NAT IP; a NAT IP and port serve two flows toward different backends or
/// backend ports; a client port another flow holds toward the same backend is not kept; a
/// source with a live mapping keeps it.
#[test]
fn the_clients_port_is_kept_and_the_nat_ip_is_the_hashs() {
    let mut s = Snat::new(netfilter(3, 1024, 65535, 0)).unwrap();
    let c = ip(192, 168, 0, 1);
    let (b4, b5) = (ip(10, 0, 0, 4), ip(10, 0, 0, 5));
    // (192.168.0.1, 10.0.0.4, zone 1) hashes to the third NAT IP, (.., 10.0.0.5, 1) too.
    let f = out(&mut s, 1, tuple(c, 40_000, b4, 443), SYN, secs(0)).unwrap();
    assert_eq!(src_of(&f), (nat(2), 40_000));
    let f = out(&mut s, 1, tuple(c, 40_001, b4, 443), SYN, secs(0)).unwrap();
    assert_eq!(src_of(&f), (nat(2), 40_001));
    // Link 2 (zone 2) hashes the same addresses to the second.
    let f = out(&mut s, 2, tuple(c, 40_000, b4, 443), SYN, secs(0)).unwrap();
    assert_eq!(src_of(&f), (nat(1), 40_000));
    // 10.1.2.3 toward 10.0.0.5 (zone 1) hashes to the third NAT IP too, and its port 40,000
    // is kept though the first flow has it there: toward another backend the reply tuple is
    // another. The same with another backend port.
    let d = ip(10, 1, 2, 3);
    let f = out(&mut s, 1, tuple(d, 40_000, b5, 443), SYN, secs(0)).unwrap();
    assert_eq!(src_of(&f), (nat(2), 40_000));
    let f = out(&mut s, 1, tuple(d, 40_001, b4, 8443), SYN, secs(0)).unwrap();
    assert_eq!(src_of(&f), (nat(2), 40_001));
    // 172.16.9.200 on link 2 toward 10.0.0.4 is the third NAT IP: 40,000 is taken toward
    // 10.0.0.4:443 there, so the loop picks a port.
    let e = ip(172, 16, 9, 200);
    let f = out(&mut s, 2, tuple(e, 40_000, b4, 443), SYN, secs(0)).unwrap();
    let (n, p) = src_of(&f);
    assert_eq!(n, nat(2));
    assert_ne!(p, 40_000);
    // The same source toward 10.0.0.5 would hash to the first NAT IP, but it has a live
    // mapping whose tuple toward 10.0.0.5 is free: find_appropriate_src keeps it, one check.
    let f = out(&mut s, 2, tuple(e, 40_000, b5, 443), SYN, secs(0)).unwrap();
    assert_eq!(src_of(&f), (nat(2), p));
    assert_eq!(s.ports.trace, [(2, p)], "one check: the source's mapping");
    s.audit();
    let st = s.stats();
    assert_eq!(
        st.nat_ips[2].scopes, 3,
        "10.0.0.4:443, 10.0.0.4:8443, 10.0.0.5:443"
    );
    assert_eq!(st.nat_ips[2].flows, 6);
    assert_eq!(st.nat_ips[0].flows, 0, "never the least loaded");
}

/// At high occupancy the kernel's bounded search misses the few free ports and drops SYNs
/// before the NAT IP is full; `sequential` fails only when it is.
#[test]
fn gave_up_failures_come_before_the_ports_run_out() {
    let occupancy_at_first_failure = |allocator: Allocator| {
        let mut s = Snat::new(SnatConfig {
            allocator,
            ..cfg(1, 2000, 3023, ReuseScope::PerBackend)
        })
        .unwrap();
        let mut i = 0u32;
        loop {
            let c = Ipv4Addr::from(0x0a00_0000 + i / 1000);
            // Client ports below the range: the loop always runs.
            let t = tuple(c, (i % 1000) as u16 + 1, B, 443);
            i += 1;
            if out(&mut s, 1, t, SYN, secs(0)).is_err() {
                let st = s.stats();
                let n = &st.nat_ips[0];
                return (n.in_use, n.ports_total, st.gave_up, st.exhausted);
            }
        }
    };
    let (busy, total, gave_up, exhausted) =
        occupancy_at_first_failure(Allocator::Netfilter { seed: 0 });
    assert_eq!(total, 1024);
    assert_eq!((gave_up, exhausted), (1, 0));
    assert!(busy < total && busy > 900, "{busy} of {total} ports busy");
    let (busy, total, gave_up, exhausted) = occupancy_at_first_failure(Allocator::Sequential);
    assert_eq!((busy, total, gave_up, exhausted), (1024, 1024, 0, 1));
    // Over many seeds: always before the end.
    for seed in 1..20 {
        let (busy, total, gave_up, _) = occupancy_at_first_failure(Allocator::Netfilter { seed });
        assert!(busy < total && gave_up == 1, "seed {seed}: {busy}");
    }
}

#[test]
fn names_parse_and_print() {
    assert_eq!("netfilter".parse(), Ok(Allocator::Netfilter { seed: 0 }));
    assert_eq!("netfilter:9".parse(), Ok(Allocator::Netfilter { seed: 9 }));
    assert!("netfilter:x".parse::<Allocator>().is_err());
    for a in [
        Allocator::Netfilter { seed: 0 },
        Allocator::Netfilter { seed: 7 },
    ] {
        assert_eq!(a.to_string().parse(), Ok(a));
    }
    assert_eq!(Allocator::Netfilter { seed: 0 }.to_string(), "netfilter");
}
