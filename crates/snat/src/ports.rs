//! NAT IPs and their ports: the reuse scopes (one NAT IP, and with `per-backend` one backend;
//! with `netfilter` one backend address and port), each a [`Bitmap`] of its port range, the
//! allocators that take a port in a scope (`sequential`, `random`, `block:N` with its blocks
//! owned by consumer hosts; `netfilter` in [`netfilter`]), the choice of a NAT IP for a new
//! flow, and the gauges of every NAT IP.

use std::net::Ipv4Addr;

use hashbrown::HashMap;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::bitmap::Bitmap;
use crate::flow::Flow;
use crate::tcp::closed;
use crate::{Allocator, MAX_NAT_IPS, NatIpStats, PortRange, ReuseScope, Selection, SnatConfig};

pub(crate) mod netfilter;

const NONE: u32 = u32::MAX;

/// The ports of one reuse scope: one NAT IP (and, with `per-backend`, one backend).
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    /// Set = in use or held.
    pub ports: Bitmap,
    /// Next-fit position of the sequential allocator (an offset in the range).
    cursor: u32,
    pub in_use: u32,
    pub held: u32,
    pub blocks: Option<Blocks>,
}

/// The blocks of a `block:N` scope.
#[derive(Clone, Debug)]
pub(crate) struct Blocks {
    pub size: u32,
    /// Set = owned by a host.
    pub taken: Bitmap,
    /// Ports in use or held, per block.
    pub used: Vec<u16>,
    cursor: u32,
}

/// A NAT IP and its gauges.
#[derive(Clone, Debug)]
pub(crate) struct Nat {
    pub ip: Ipv4Addr,
    ip_u32: u32,
    pub in_use: u64,
    pub held: u64,
    peak: u64,
    /// The most ports in use or held at once: what runs out.
    busy_peak: u64,
    pub flows: u64,
    created: u64,
    scopes: u32,
}

impl Nat {
    fn new(ip: Ipv4Addr) -> Nat {
        Nat {
            ip,
            ip_u32: u32::from(ip),
            in_use: 0,
            held: 0,
            peak: 0,
            busy_peak: 0,
            flows: 0,
            created: 0,
            scopes: 0,
        }
    }
}

/// A consumer host under `paired` selection: its NAT IP and how many flow records it has.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Host {
    nat: u8,
    pub flows: u32,
}

/// The NAT IPs, their scopes and allocators.
#[derive(Clone, Debug)]
pub(crate) struct Ports {
    range: PortRange,
    /// Ports in the range: in one scope.
    pub len: u32,
    allocator: Allocator,
    reuse: ReuseScope,
    /// `netfilter`: a scope per NAT IP, backend address and backend port, whatever `reuse` says.
    tuple_scopes: bool,
    /// `paired` selection, which `netfilter` (NAT IP by hash) does not use.
    pub paired: bool,
    pub nats: Vec<Nat>,
    /// Backend key ([`Ports::backend_key`]) -> backend index (not with `per-ip`).
    backends: HashMap<u64, u32>,
    /// `backend index * 8 + NAT index` -> index in `scopes`, or `NONE`.
    scope_slots: Vec<u32>,
    pub scopes: Vec<Scope>,
    /// `paired` selection: (link, consumer address) -> host.
    pub hosts: HashMap<(u32, u32), Host>,
    /// `block:N`: (scope, link, consumer address) -> the blocks the host owns there.
    pub owners: HashMap<(u32, u32, u32), Vec<u16>>,
    /// `netfilter`: (link, consumer address, consumer port) -> its live mappings, oldest first
    /// (the kernel's `nf_nat_bysource`).
    pub bysource: HashMap<(u32, u32, u16), Vec<netfilter::Mapping>>,
    rng: ChaCha8Rng,
    /// `netfilter`: every (NAT IP, port) the last allocation checked, in order.
    #[cfg(test)]
    pub trace: Vec<(u8, u16)>,
}

impl Ports {
    /// The ports of a validated configuration, all free.
    pub fn new(cfg: &SnatConfig) -> Ports {
        let (seed, tuple_scopes) = match cfg.allocator {
            Allocator::Random { seed } => (seed, false),
            Allocator::Netfilter { seed } => (seed, true),
            _ => (0, false),
        };
        Ports {
            range: cfg.ports,
            len: cfg.ports.len(),
            allocator: cfg.allocator,
            reuse: cfg.reuse,
            tuple_scopes,
            paired: cfg.selection == Selection::Paired && !tuple_scopes,
            nats: cfg.nat_ips.iter().map(|&ip| Nat::new(ip)).collect(),
            backends: HashMap::new(),
            scope_slots: Vec::new(),
            scopes: Vec::new(),
            hosts: HashMap::new(),
            owners: HashMap::new(),
            bysource: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            #[cfg(test)]
            trace: Vec::new(),
        }
    }

    /// Adds a NAT IP (the caller checked it is new and there is room).
    pub fn add_nat(&mut self, ip: Ipv4Addr) {
        self.nats.push(Nat::new(ip));
    }

    /// The index of NAT IP `ip` (eight at most: a scan).
    #[inline]
    pub fn nat_index(&self, ip: u32) -> Option<u8> {
        self.nats
            .iter()
            .position(|n| n.ip_u32 == ip)
            .map(|i| i as u8)
    }

    /// The address of NAT IP `nat`.
    #[inline]
    pub fn nat_ip(&self, nat: u8) -> Ipv4Addr {
        self.nats[usize::from(nat)].ip
    }

    /// Picks a NAT IP and takes a port on it for a new flow `C:cp -> B:bp` of connection
    /// `link`: with `netfilter` as Linux does ([`netfilter`]); otherwise the host's NAT IP
    /// first (`paired`), then by load, ties to the lowest index. Counts the flow on the NAT IP
    /// (and the host). `None` when no port could be had.
    pub fn allocate(
        &mut self,
        link: u32,
        c_ip: u32,
        c_port: u16,
        b_ip: u32,
        b_port: u16,
    ) -> Option<(u8, u16)> {
        let b = self.backend_index(b_ip, b_port);
        let (nat, off) = if self.tuple_scopes {
            self.netfilter(b, link, c_ip, c_port, b_ip)?
        } else {
            self.pick(b, link, c_ip)?
        };
        if self.paired {
            self.hosts
                .entry((link, c_ip))
                .or_insert(Host {
                    nat: nat as u8,
                    flows: 0,
                })
                .flows += 1;
        }
        let n = &mut self.nats[nat];
        n.in_use += 1;
        n.peak = n.peak.max(n.in_use);
        // Only a new port makes more busy: reopening a held one moves it from held to in use.
        n.busy_peak = n.busy_peak.max(n.in_use + n.held);
        n.flows += 1;
        n.created += 1;
        Some((nat as u8, (u32::from(self.range.lo) + off) as u16))
    }

    /// True when some NAT IP has a free port for a flow to `B:bp` (in its scope): after a
    /// refusal, whether the allocator gave up before true exhaustion.
    pub fn has_free(&self, b_ip: u32, b_port: u16) -> bool {
        let b = match self.backend_key(b_ip, b_port) {
            None if self.scope_slots.is_empty() => return true,
            None => 0,
            Some(k) => match self.backends.get(&k) {
                Some(&b) => b as usize,
                None => return true,
            },
        };
        (0..self.nats.len()).any(|nat| self.load(b, nat) < self.len)
    }

    /// The NAT IP and port offset for a new flow of host `(link, C)` to backend index `b` under
    /// the `sequential`, `random` and `block:N` allocators: the host's NAT IP first (`paired`),
    /// then by load, ties to the lowest index. `None` when every candidate's scope is full.
    fn pick(&mut self, b: usize, link: u32, c_ip: u32) -> Option<(usize, u32)> {
        let first = if self.paired {
            self.hosts.get(&(link, c_ip)).map(|h| usize::from(h.nat))
        } else {
            None
        };
        // Candidates: the host's NAT IP first (paired), then by load, ties to the lowest index.
        let mut order = [(0u32, 0usize); MAX_NAT_IPS];
        let mut len = 0;
        for nat in 0..self.nats.len() {
            if Some(nat) != first {
                order[len] = (self.load(b, nat), nat);
                len += 1;
            }
        }
        let mut got = first.and_then(|nat| self.take_on(b, nat, link, c_ip));
        if got.is_none() && len > 0 {
            // The least loaded, found in one scan; the others are put in order only when its
            // scope is full too (rare): the same sequence as sorting them all first.
            let min = (0..len).min_by_key(|&i| order[i]).expect("a candidate");
            order.swap(0, min);
            got = self.take_on(b, order[0].1, link, c_ip);
            if got.is_none() {
                order[1..len].sort_unstable();
                got = order[1..len]
                    .iter()
                    .find_map(|&(_, nat)| self.take_on(b, nat, link, c_ip));
            }
        }
        got
    }

    /// Takes a port in the scope of backend `b` on NAT IP `nat` for host `(link, C)`.
    fn take_on(&mut self, b: usize, nat: usize, link: u32, c_ip: u32) -> Option<(usize, u32)> {
        let sid = self.scope_for(b, nat);
        self.take_port(sid, link, c_ip).map(|off| (nat, off))
    }

    /// Gives back the port of flow `f` (leaving the table) and uncounts the flow.
    pub fn release(&mut self, f: &Flow) {
        self.give_port(f);
        self.nats[usize::from(f.nat)].flows -= 1;
        if self.tuple_scopes {
            self.unmap(f);
        }
        if self.paired
            && let Some(h) = self.hosts.get_mut(&(f.link, f.c_ip))
        {
            h.flows -= 1;
            if h.flows == 0 {
                self.hosts.remove(&(f.link, f.c_ip));
            }
        }
    }

    /// Flow `f` (still open) just closed: its port moves from in use to held.
    pub fn hold(&mut self, f: &Flow) {
        let sid = self.scope_id(f) as usize;
        let s = &mut self.scopes[sid];
        s.in_use -= 1;
        s.held += 1;
        let n = &mut self.nats[usize::from(f.nat)];
        n.in_use -= 1;
        n.held += 1;
    }

    /// Flow `f` (closed) was reopened by a new SYN: its held port is in use again, and the NAT
    /// IP serves one more connection.
    pub fn reopen(&mut self, f: &Flow) {
        self.nats[usize::from(f.nat)].created += 1;
        let sid = self.scope_id(f) as usize;
        let s = &mut self.scopes[sid];
        s.in_use += 1;
        s.held -= 1;
        let n = &mut self.nats[usize::from(f.nat)];
        n.in_use += 1;
        n.held -= 1;
        n.peak = n.peak.max(n.in_use);
    }

    /// The gauges of every NAT IP, in configuration order.
    pub fn nat_stats(&self) -> Vec<NatIpStats> {
        self.nats
            .iter()
            .map(|n| {
                let scopes = match self.reuse {
                    ReuseScope::PerIp if !self.tuple_scopes => 1,
                    _ => n.scopes,
                };
                let total = u64::from(self.len) * u64::from(scopes);
                NatIpStats {
                    ip: n.ip,
                    ports_per_scope: self.len,
                    scopes,
                    ports_total: total,
                    in_use: n.in_use,
                    held: n.held,
                    free: total - n.in_use - n.held,
                    in_use_peak: n.peak,
                    busy_peak: n.busy_peak,
                    flows: n.flows,
                    flows_created: n.created,
                }
            })
            .collect()
    }

    /// Heap bytes: the backend map, the scopes with their bitmaps and blocks, the host and
    /// block-owner maps (capacities).
    pub fn memory_bytes(&self) -> usize {
        let scopes: usize = self
            .scopes
            .iter()
            .map(|s| {
                s.ports.heap_bytes()
                    + s.blocks
                        .as_ref()
                        .map_or(0, |b| b.taken.heap_bytes() + b.used.capacity() * 2)
            })
            .sum();
        let owners: usize = self.owners.values().map(|v| v.capacity() * 2).sum();
        let mappings: usize = self
            .bysource
            .values()
            .map(|v| v.capacity() * size_of::<netfilter::Mapping>())
            .sum();
        self.backends.allocation_size()
            + self.scope_slots.capacity() * 4
            + self.scopes.capacity() * size_of::<Scope>()
            + scopes
            + self.hosts.allocation_size()
            + self.owners.allocation_size()
            + owners
            + self.bysource.allocation_size()
            + mappings
    }

    /// The scope of flow `f`.
    pub fn scope_id(&self, f: &Flow) -> u32 {
        let b = match self.backend_key(f.b_ip, f.b_port) {
            None => 0,
            Some(k) => self.backends[&k] as usize,
        };
        self.scope_slots[b * MAX_NAT_IPS + usize::from(f.nat)]
    }

    /// What tells a backend's scopes apart: nothing with `per-ip` (`None`), its address with
    /// `per-backend`, its address and port with `netfilter`.
    #[inline]
    fn backend_key(&self, b_ip: u32, b_port: u16) -> Option<u64> {
        if self.tuple_scopes {
            Some(u64::from(b_ip) << 16 | u64::from(b_port))
        } else {
            match self.reuse {
                ReuseScope::PerIp => None,
                ReuseScope::PerBackend => Some(u64::from(b_ip)),
            }
        }
    }

    /// The backend index of backend `B:bp` (0 with `per-ip`), made if new.
    fn backend_index(&mut self, b_ip: u32, b_port: u16) -> usize {
        match self.backend_key(b_ip, b_port) {
            None => {
                if self.scope_slots.is_empty() {
                    self.scope_slots.resize(MAX_NAT_IPS, NONE);
                }
                0
            }
            Some(key) => {
                let next = self.backends.len() as u32;
                let b = *self.backends.entry(key).or_insert(next);
                if b == next {
                    self.scope_slots
                        .resize((b as usize + 1) * MAX_NAT_IPS, NONE);
                }
                b as usize
            }
        }
    }

    /// Ports busy in the scope of backend `b` on NAT IP `nat`.
    fn load(&self, b: usize, nat: usize) -> u32 {
        match self.scope_slots[b * MAX_NAT_IPS + nat] {
            NONE => 0,
            sid => {
                let s = &self.scopes[sid as usize];
                s.in_use + s.held
            }
        }
    }

    /// The scope of backend `b` on NAT IP `nat`, made if new.
    fn scope_for(&mut self, b: usize, nat: usize) -> u32 {
        let slot = b * MAX_NAT_IPS + nat;
        if self.scope_slots[slot] == NONE {
            let blocks = match self.allocator {
                Allocator::Block(n) => {
                    let size = u32::from(n);
                    let count = self.len.div_ceil(size);
                    Some(Blocks {
                        size,
                        taken: Bitmap::new(count),
                        used: vec![0; count as usize],
                        cursor: 0,
                    })
                }
                _ => None,
            };
            self.scope_slots[slot] = self.scopes.len() as u32;
            self.scopes.push(Scope {
                ports: Bitmap::new(self.len),
                cursor: 0,
                in_use: 0,
                held: 0,
                blocks,
            });
            self.nats[nat].scopes += 1;
        }
        self.scope_slots[slot]
    }

    /// Takes a port (an offset in the range) in scope `sid` for host `(link, c_ip)` (not for
    /// `netfilter`, which takes its tuples itself).
    fn take_port(&mut self, sid: u32, link: u32, c_ip: u32) -> Option<u32> {
        let s = &mut self.scopes[sid as usize];
        let off = match self.allocator {
            Allocator::Sequential => {
                let off = s.ports.find_from(s.cursor)?;
                s.cursor = off + 1;
                off
            }
            Allocator::Random { .. } => {
                let start = ((u64::from(self.rng.next_u32()) * u64::from(self.len)) >> 32) as u32;
                s.ports.find_from(start)?
            }
            Allocator::Block(_) => {
                let b = s.blocks.as_mut().expect("block scope");
                let range = self.len;
                let span = |blk: u16| {
                    let lo = u32::from(blk) * b.size;
                    (lo, (lo + b.size).min(range))
                };
                let key = (sid, link, c_ip);
                let mut found = None;
                if let Some(list) = self.owners.get(&key) {
                    // The newest block first (that is where fresh ports are), then the others.
                    for &blk in list.iter().rev() {
                        let (lo, hi) = span(blk);
                        if let Some(off) = s.ports.find_in(lo, hi) {
                            found = Some((blk, off));
                            break;
                        }
                    }
                }
                let (blk, off) = match found {
                    Some(x) => x,
                    None => {
                        let blk = b.taken.find_from(b.cursor)?;
                        b.taken.set(blk);
                        b.cursor = blk + 1;
                        self.owners.entry(key).or_default().push(blk as u16);
                        (blk as u16, span(blk as u16).0)
                    }
                };
                b.used[usize::from(blk)] += 1;
                off
            }
            Allocator::Netfilter { .. } => unreachable!("netfilter takes its own tuples"),
        };
        s.ports.set(off);
        s.in_use += 1;
        Some(off)
    }

    /// Returns the port of flow `f` to its scope.
    fn give_port(&mut self, f: &Flow) {
        let sid = self.scope_id(f);
        let off = u32::from(f.n_port) - u32::from(self.range.lo);
        let s = &mut self.scopes[sid as usize];
        s.ports.clear(off);
        let n = &mut self.nats[usize::from(f.nat)];
        if closed(f.state) {
            s.held -= 1;
            n.held -= 1;
        } else {
            s.in_use -= 1;
            n.in_use -= 1;
        }
        if let Some(b) = s.blocks.as_mut() {
            let blk = off / b.size;
            let used = &mut b.used[blk as usize];
            *used -= 1;
            if *used == 0 {
                b.taken.clear(blk);
                let key = (sid, f.link, f.c_ip);
                if let Some(list) = self.owners.get_mut(&key) {
                    list.retain(|&x| u32::from(x) != blk);
                    if list.is_empty() {
                        self.owners.remove(&key);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::PortRange;

    /// The candidate order as it was first written: every NAT IP sorted by (load, index)
    /// behind the host's own, each tried in turn; run on a copy.
    fn sorted_order(p: &Ports, link: u32, c_ip: u32, b_ip: u32) -> Option<(u8, u16)> {
        let mut p = p.clone();
        let b = p.backend_index(b_ip, 443);
        let first = p
            .paired
            .then(|| p.hosts.get(&(link, c_ip)).map(|h| usize::from(h.nat)))
            .flatten();
        let mut order: Vec<(u32, usize)> = (0..p.nats.len())
            .filter(|&n| Some(n) != first)
            .map(|n| (p.load(b, n), n))
            .collect();
        order.sort_unstable();
        first
            .into_iter()
            .chain(order.into_iter().map(|(_, n)| n))
            .find_map(|nat| {
                let sid = p.scope_for(b, nat);
                let off = p.take_port(sid, link, c_ip)?;
                Some((nat as u8, (u32::from(p.range.lo) + off) as u16))
            })
    }

    /// The least loaded NAT IP can refuse a host that another one serves (`block:N`: the host
    /// owns no block on it and none is free): the next in order takes the flow.
    #[test]
    fn a_host_refused_by_the_least_loaded_nat_ip_gets_the_next() {
        let cfg = SnatConfig {
            nat_ips: vec![Ipv4Addr::new(100, 64, 0, 1), Ipv4Addr::new(100, 64, 0, 2)],
            ports: PortRange::new(20_000, 20_001),
            allocator: Allocator::Block(2),
            selection: Selection::LeastLoaded,
            ..SnatConfig::default()
        };
        let mut p = Ports::new(&cfg);
        let (h1, h2, b) = (0x0a00_0001, 0x0a00_0002, 0x0a00_0101);
        // One block of two ports per NAT IP: host 1 takes the first's, host 2 the second's.
        assert_eq!(p.allocate(1, h1, 1, b, 443), Some((0, 20_000)));
        assert_eq!(p.allocate(1, h2, 1, b, 443), Some((1, 20_000)));
        // Both carry one flow; the first wins the tie but has no block for host 2.
        assert_eq!(p.allocate(1, h2, 1, b, 443), Some((1, 20_001)));
        assert_eq!(p.allocate(1, h1, 1, b, 443), Some((0, 20_001)));
        assert_eq!(p.allocate(1, 0x0a00_0003, 1, b, 443), None);
    }

    proptest! {
        /// The scan for the least loaded NAT IP (sorting the others only when its scope is
        /// full) picks exactly what sorting them all first picked, flow after flow, up to and
        /// past exhaustion, under every allocator, reuse scope and selection.
        #[test]
        fn the_least_loaded_scan_picks_as_sorting_did(
            nats in 1u8..=8,
            ports in 1u16..12,
            allocator in prop_oneof![
                Just(Allocator::Sequential),
                any::<u64>().prop_map(|seed| Allocator::Random { seed }),
                (1u16..4).prop_map(Allocator::Block),
            ],
            per_backend in any::<bool>(),
            paired in any::<bool>(),
            flows in prop::collection::vec((0u32..2, 0u32..6, 0u32..3), 1..200),
        ) {
            let cfg = SnatConfig {
                nat_ips: (0..nats).map(|i| Ipv4Addr::new(100, 64, 0, i + 1)).collect(),
                ports: PortRange::new(20_000, 20_000 + ports - 1),
                allocator,
                reuse: if per_backend { ReuseScope::PerBackend } else { ReuseScope::PerIp },
                selection: if paired { Selection::Paired } else { Selection::LeastLoaded },
                ..SnatConfig::default()
            };
            let mut p = Ports::new(&cfg);
            for (link, c, b) in flows {
                let (c_ip, b_ip) = (0x0a00_0100 + c, 0x0a00_0200 + b);
                let want = sorted_order(&p, link, c_ip, b_ip);
                prop_assert_eq!(p.allocate(link, c_ip, 1, b_ip, 443), want);
            }
        }
    }
}
