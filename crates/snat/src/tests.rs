//! Unit and property tests that look inside the engine (its exact accounting).

use std::collections::{HashMap as StdMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use plsim_flowtab::Record;
use plsim_wire::build::TcpSegment;
use plsim_wire::{DropReason, FlowTuple, Ipv4Tcp, LinkType, TcpFlags, checksum, classify};
use proptest::prelude::*;

use super::*;
use crate::flow::{Flow, in_hash, out_hash};
use crate::tcp::closed;

const SYN: u8 = TcpFlags::SYN;
const SYNACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
const ACK: u8 = TcpFlags::ACK;
const FINACK: u8 = TcpFlags::FIN | TcpFlags::ACK;
const RSTF: u8 = TcpFlags::RST;

impl Snat {
    /// Checks every invariant of the engine's bookkeeping against a recount from the flows.
    fn audit(&self) {
        let p = &self.ports;
        let lo = u32::from(self.cfg.ports.lo);
        let mut live = 0u64;
        let mut open = 0u64;
        let mut per_scope: StdMap<u32, (u32, u32)> = StdMap::new();
        let mut per_nat: StdMap<u8, (u64, u64, u64)> = StdMap::new();
        let mut seen = HashSet::new();
        let mut tuples = HashSet::new();
        let mut mapped: StdMap<(u32, u32, u16), usize> = StdMap::new();
        let mut hosts: StdMap<(u32, u32), u32> = StdMap::new();
        let mut block_used: StdMap<(u32, u32), u16> = StdMap::new();
        // The table's own invariants: both indexes find every flow under its hashes, every
        // flow has exactly one current timer, armed no later than its real deadline, and the
        // free list holds exactly the vacant slots.
        self.table.assert_consistent(|f| self.timeouts.deadline(f));
        for (_, f) in self.table.iter() {
            live += 1;
            let c = closed(f.state);
            if !c {
                open += 1;
            }
            let sid = p.scope_id(f);
            let e = per_scope.entry(sid).or_default();
            let n = per_nat.entry(f.nat).or_default();
            if c {
                e.1 += 1;
                n.1 += 1;
            } else {
                e.0 += 1;
                n.0 += 1;
            }
            n.2 += 1;
            let off = u32::from(f.n_port) - lo;
            assert!(off < p.len);
            assert!(
                seen.insert((sid, f.n_port)),
                "port {} twice in scope {sid}",
                f.n_port
            );
            assert!(p.scopes[sid as usize].ports.get(off));
            // No two flow records on one reply tuple, under every allocator.
            assert!(
                tuples.insert((f.nat, f.n_port, f.b_ip, f.b_port)),
                "two flows on one reply tuple"
            );
            if matches!(self.cfg.allocator, Allocator::Netfilter { .. }) {
                *mapped.entry((f.link, f.c_ip, f.c_port)).or_default() += 1;
            }
            if let Some(b) = &p.scopes[sid as usize].blocks {
                *block_used.entry((sid, off / b.size)).or_default() += 1;
                let list = &p.owners[&(sid, f.link, f.c_ip)];
                assert!(list.contains(&((off / b.size) as u16)));
            }
            if p.paired {
                *hosts.entry((f.link, f.c_ip)).or_default() += 1;
            }
            // The prefetch hooks hash the packets exactly as the lookups do: the consumer's
            // packet C:cp -> B:bp and the backend's B:bp -> N:np.
            let nat_ip = p.nat_ip(f.nat);
            let out = FlowTuple {
                src: Ipv4Addr::from(f.c_ip),
                sport: f.c_port,
                dst: Ipv4Addr::from(f.b_ip),
                dport: f.b_port,
            };
            let back = FlowTuple {
                src: Ipv4Addr::from(f.b_ip),
                sport: f.b_port,
                dst: nat_ip,
                dport: f.n_port,
            };
            assert_eq!(out_hash(LinkId(f.link), out), f.fwd_hash());
            assert_eq!(p.nat_index(u32::from(nat_ip)), Some(f.nat));
            assert_eq!(in_hash(f.nat, back), f.rev_hash());
            assert!(self.timeouts.deadline(f) > self.now, "a due flow survived");
        }
        assert_eq!(self.table.len() as u64, live);
        assert_eq!(self.open, open);
        assert_eq!(
            self.created,
            self.closed + self.expired + self.torn_down + self.reset + self.open
        );
        // Records per connection, as the engine counts them.
        let mut by_link = vec![0u32; self.live_by_link.len()];
        for (_, f) in self.table.iter() {
            by_link[f.link as usize] += 1;
        }
        assert_eq!(by_link, self.live_by_link, "flow records per link");
        assert_eq!(
            self.created_by_link.iter().sum::<u64>(),
            self.created,
            "flows opened per link"
        );
        for (sid, s) in p.scopes.iter().enumerate() {
            let (u, h) = per_scope.get(&(sid as u32)).copied().unwrap_or_default();
            assert_eq!((s.in_use, s.held), (u, h), "scope {sid}");
            let ones = (0..p.len).filter(|&o| s.ports.get(o)).count() as u32;
            assert_eq!(ones, u + h, "bitmap of scope {sid}");
            if let Some(b) = &s.blocks {
                for blk in 0..b.used.len() as u32 {
                    let used = block_used.get(&(sid as u32, blk)).copied().unwrap_or(0);
                    assert_eq!(b.used[blk as usize], used);
                    assert_eq!(b.taken.get(blk), used > 0, "block {blk} taken iff used");
                }
            }
        }
        let stats = self.stats();
        for (i, n) in stats.nat_ips.iter().enumerate() {
            let (u, h, fl) = per_nat.get(&(i as u8)).copied().unwrap_or_default();
            assert_eq!((n.in_use, n.held, n.flows), (u, h, fl));
            assert_eq!(n.free + n.in_use + n.held, n.ports_total);
            assert!(n.in_use_peak >= n.in_use);
            assert!(n.busy_peak >= n.in_use + n.held && n.busy_peak >= n.in_use_peak);
            assert!(n.busy_peak <= n.ports_total);
        }
        let owned: usize = p.owners.values().map(Vec::len).sum();
        assert_eq!(owned, block_used.len());
        // Every live flow of a source is one of its mappings (netfilter), and no other is.
        assert_eq!(p.bysource.len(), mapped.len());
        for (k, n) in mapped {
            assert_eq!(p.bysource[&k].len(), n, "mappings of {k:?}");
        }
        assert_eq!(stats.failed, stats.exhausted + stats.gave_up);
        if matches!(
            self.cfg.allocator,
            Allocator::Sequential | Allocator::Random { .. }
        ) {
            assert_eq!(stats.gave_up, 0, "sequential and random search everything");
        }
        if let Some(r) = self.reuse() {
            let all = r.total();
            assert!(all.hazards <= all.reuses && all.reuses <= self.created);
            assert_eq!(r.nat_ips(), self.ports.nats.len());
            let sum: u64 = (0..r.nat_ips()).map(|i| r.nat_ip(i).reuses).sum();
            assert_eq!(sum, all.reuses);
        }
        if p.paired {
            assert_eq!(p.hosts.len(), hosts.len());
            for (k, n) in hosts {
                assert_eq!(p.hosts[&k].flows, n);
            }
        }
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn nat(i: u8) -> Ipv4Addr {
    ip(100, 64, 0, i + 1)
}

fn cfg(nats: u8, lo: u16, hi: u16, reuse: ReuseScope) -> SnatConfig {
    SnatConfig {
        nat_ips: (0..nats).map(nat).collect(),
        ports: PortRange::new(lo, hi),
        reuse,
        ..SnatConfig::default()
    }
}

fn frame(t: FlowTuple, flags: u8) -> Vec<u8> {
    let mut seg = TcpSegment::new(t, flags);
    seg.seq = 1000;
    seg.payload = b"hello";
    seg.to_vec()
}

fn view(f: &[u8]) -> Ipv4Tcp {
    classify(LinkType::Ethernet, f, f.len()).unwrap()
}

fn tuple(c: Ipv4Addr, cp: u16, b: Ipv4Addr, bp: u16) -> FlowTuple {
    FlowTuple {
        src: c,
        sport: cp,
        dst: b,
        dport: bp,
    }
}

/// Outbound; on success returns the frame as translated.
fn out(
    s: &mut Snat,
    link: u32,
    t: FlowTuple,
    flags: u8,
    now: SimTime,
) -> Result<Vec<u8>, DropReason> {
    let mut f = frame(t, flags);
    let mut v = view(&f);
    s.forward(LinkId(link), &mut f, &mut v, now)?;
    assert_eq!(v, view(&f), "the view follows the bytes");
    assert!(checksum::verify(&f, &v).ok());
    Ok(f)
}

/// Inbound of a backend packet `b -> n`.
fn inb(
    s: &mut Snat,
    t: FlowTuple,
    flags: u8,
    now: SimTime,
) -> Result<(LinkId, Vec<u8>), DropReason> {
    let mut f = frame(t, flags);
    let mut v = view(&f);
    let l = s.reverse(&mut f, &mut v, now)?;
    assert!(checksum::verify(&f, &v).ok());
    Ok((l, f))
}

fn src_of(f: &[u8]) -> (Ipv4Addr, u16) {
    let t = view(f).tuple();
    (t.src, t.sport)
}

fn secs(s: u64) -> SimTime {
    SimTime::from_secs(s)
}

const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);

/// Held ports count towards the busy peak, which is what runs out, and not towards the in-use
/// peak.
#[test]
fn busy_peak_counts_held_ports() {
    let mut s = Snat::new(cfg(1, 20_000, 20_999, ReuseScope::PerIp)).unwrap();
    let t = |i: u8| tuple(ip(192, 168, 0, i), 40_000, B, 443);
    for i in 1..=10 {
        let (n, np) = src_of(&out(&mut s, 1, t(i), SYN, secs(1)).unwrap());
        inb(&mut s, tuple(B, 443, n, np), SYN | TcpFlags::ACK, secs(1)).unwrap();
        out(&mut s, 1, t(i), TcpFlags::ACK, secs(1)).unwrap();
    }
    for i in 1..=5 {
        out(&mut s, 1, t(i), TcpFlags::RST, secs(2)).unwrap();
    }
    for i in 11..=13 {
        out(&mut s, 1, t(i), SYN, secs(3)).unwrap();
    }
    let n = s.stats().nat_ips[0];
    assert_eq!(
        (n.in_use, n.held, n.in_use_peak, n.busy_peak),
        (8, 5, 10, 13)
    );
    s.audit();
    // Reopening a held flow moves its port from held to in use: nothing more is busy.
    out(&mut s, 1, t(1), SYN, secs(4)).unwrap();
    let n = s.stats().nat_ips[0];
    assert_eq!(
        (n.in_use, n.held, n.in_use_peak, n.busy_peak),
        (9, 4, 10, 13)
    );
    s.audit();
}

/// The exact numbers of the issue: per-ip, 1 NAT IP of 1,000 ports, 3,000 concurrent SYNs.
#[test]
fn per_ip_one_nat_ip_1000_ports_3000_syns() {
    let mut s = Snat::new(cfg(1, 20_000, 20_999, ReuseScope::PerIp)).unwrap();
    let (mut ok, mut ex) = (0, 0);
    for i in 0..3000u32 {
        let c = ip(192, 168, (i / 250) as u8, (i % 250) as u8 + 1);
        let b = ip(10, 0, 0, (i % 3) as u8 + 4);
        match out(&mut s, 1, tuple(c, 40_000, b, 443), SYN, secs(1)) {
            Ok(_) => ok += 1,
            Err(DropReason::PortExhausted) => ex += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, ex), (1000, 2000));
    let st = s.stats();
    assert_eq!(
        (st.created, st.failed, st.open, st.live),
        (1000, 2000, 1000, 1000)
    );
    assert_eq!(st.drops.get(DropReason::PortExhausted), 2000);
    let n = st.nat_ips[0];
    assert_eq!(
        (
            n.ports_total,
            n.in_use,
            n.held,
            n.free,
            n.in_use_peak,
            n.flows
        ),
        (1000, 1000, 0, 0, 1000, 1000)
    );
    s.audit();
}

#[test]
fn per_ip_three_nat_ips_serve_3000() {
    for sel in [Selection::Paired, Selection::LeastLoaded] {
        let mut c = cfg(3, 20_000, 20_999, ReuseScope::PerIp);
        c.selection = sel;
        let mut s = Snat::new(c).unwrap();
        for i in 0..3000u32 {
            let c = ip(192, 168, (i / 250) as u8, (i % 250) as u8 + 1);
            out(&mut s, 1, tuple(c, 40_000, B, 443), SYN, secs(1)).unwrap();
        }
        assert_eq!(
            out(&mut s, 1, tuple(ip(1, 1, 1, 1), 1, B, 443), SYN, secs(1)),
            Err(DropReason::PortExhausted)
        );
        let st = s.stats();
        assert_eq!((st.created, st.failed), (3000, 1));
        for n in &st.nat_ips {
            assert_eq!((n.in_use, n.free, n.flows), (1000, 0, 1000));
        }
        s.audit();
    }
}

#[test]
fn per_backend_one_nat_ip_serves_3000_over_3_backends() {
    let mut s = Snat::new(cfg(1, 20_000, 20_999, ReuseScope::PerBackend)).unwrap();
    let (mut ok, mut ex) = (0, 0);
    for i in 0..4000u32 {
        let c = ip(192, 168, (i / 250) as u8, (i % 250) as u8 + 1);
        let b = ip(10, 0, 0, (i % 3) as u8 + 4);
        match out(&mut s, 1, tuple(c, 40_000, b, 443), SYN, secs(1)) {
            Ok(_) => ok += 1,
            Err(DropReason::PortExhausted) => ex += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, ex), (3000, 1000));
    let n = s.stats().nat_ips[0];
    assert_eq!(
        (n.scopes, n.ports_total, n.in_use, n.free),
        (3, 3000, 3000, 0)
    );
    // The same NAT port serves one flow per backend.
    let t0 = tuple(ip(192, 168, 0, 1), 40_000, ip(10, 0, 0, 4), 443);
    let t1 = tuple(ip(192, 168, 0, 2), 40_000, ip(10, 0, 0, 5), 443);
    assert_eq!(s.flow(LinkId(1), t0).unwrap().nat_port, 20_000);
    assert_eq!(s.flow(LinkId(1), t1).unwrap().nat_port, 20_000);
    s.audit();
}

/// One port, sequential: a port is not reused before its hold ends, and is reused after.
#[test]
fn port_hold_after_fin_and_rst() {
    for (close, hold) in [("fin", 240u64), ("rst", 15)] {
        let mut s = Snat::new(cfg(1, 5000, 5000, ReuseScope::PerIp)).unwrap();
        let c = ip(192, 168, 0, 1);
        let t = tuple(c, 40_000, B, 443);
        let n = tuple(B, 443, nat(0), 5000);
        out(&mut s, 7, t, SYN, secs(0)).unwrap();
        assert_eq!(inb(&mut s, n, SYNACK, secs(0)).unwrap().0, LinkId(7));
        out(&mut s, 7, t, ACK, secs(1)).unwrap();
        assert_eq!(s.flow(LinkId(7), t).unwrap().state, TcpState::Established);
        if close == "fin" {
            out(&mut s, 7, t, FINACK, secs(5)).unwrap();
            assert_eq!(s.flow(LinkId(7), t).unwrap().state, TcpState::HalfClosed);
            inb(&mut s, n, FINACK, secs(10)).unwrap();
            assert_eq!(s.flow(LinkId(7), t).unwrap().state, TcpState::FinHold);
        } else {
            inb(&mut s, n, RSTF, secs(10)).unwrap();
            assert_eq!(s.flow(LinkId(7), t).unwrap().state, TcpState::RstHold);
        }
        let st = s.stats();
        assert_eq!((st.closed, st.open, st.live), (1, 0, 1));
        assert_eq!(
            (st.nat_ips[0].in_use, st.nat_ips[0].held, st.nat_ips[0].free),
            (0, 1, 0)
        );
        // The last ACK still goes through while the port is held, and does not extend the hold.
        out(&mut s, 7, t, ACK, secs(11)).unwrap();
        let other = tuple(ip(192, 168, 0, 2), 40_000, B, 443);
        let just_before = SimTime::from_nanos(secs(10 + hold).as_nanos() - 1);
        assert_eq!(
            out(&mut s, 7, other, SYN, just_before),
            Err(DropReason::PortExhausted)
        );
        s.audit();
        let f = out(&mut s, 7, other, SYN, secs(10 + hold)).unwrap();
        assert_eq!(src_of(&f), (nat(0), 5000));
        assert!(s.flow(LinkId(7), t).is_none());
        let st = s.stats();
        assert_eq!(
            (st.created, st.closed, st.expired, st.failed, st.live),
            (2, 1, 0, 1, 1)
        );
        s.audit();
    }
}

#[test]
fn idle_and_transitory_timeouts_free_the_port_at_once() {
    let mut c = cfg(1, 5000, 5001, ReuseScope::PerIp);
    c.timers.idle = Duration::from_secs(300);
    c.timers.transitory = Duration::from_secs(60);
    let mut s = Snat::new(c).unwrap();
    let t1 = tuple(ip(192, 168, 0, 1), 1, B, 443);
    let t2 = tuple(ip(192, 168, 0, 2), 2, B, 443);
    // t1 established at 0..1 s, t2 half-open from 0 s.
    out(&mut s, 1, t1, SYN, secs(0)).unwrap();
    out(&mut s, 1, t2, SYN, secs(0)).unwrap();
    inb(&mut s, tuple(B, 443, nat(0), 5000), SYNACK, secs(0)).unwrap();
    out(&mut s, 1, t1, ACK, secs(1)).unwrap();
    assert_eq!(s.flow(LinkId(1), t2).unwrap().deadline, secs(60));
    assert_eq!(s.flow(LinkId(1), t1).unwrap().deadline, secs(301));
    assert_eq!(s.expire(SimTime::from_nanos(secs(60).as_nanos() - 1)), 0);
    assert_eq!(s.expire(secs(60)), 1);
    assert!(s.flow(LinkId(1), t2).is_none());
    // A packet refreshes the idle timer.
    out(&mut s, 1, t1, ACK, secs(200)).unwrap();
    assert_eq!(s.expire(secs(499)), 0);
    // The provider's late packet finds no flow once it expired.
    assert_eq!(s.expire(secs(500)), 1);
    assert_eq!(
        inb(&mut s, tuple(B, 443, nat(0), 5000), ACK, secs(500)).unwrap_err(),
        DropReason::NoFlow
    );
    let st = s.stats();
    assert_eq!((st.created, st.expired, st.closed, st.live), (2, 2, 0, 0));
    assert_eq!(st.nat_ips[0].free, 2);
    assert_eq!(st.drops.get(DropReason::NoFlow), 1);
    s.audit();
}

#[test]
fn rewrite_is_exact_and_overlapping_consumers_are_two_flows() {
    let mut s = Snat::new(cfg(2, 1024, 65535, ReuseScope::PerBackend)).unwrap();
    let t = tuple(ip(192, 168, 0, 1), 40_000, B, 443);
    let orig = frame(t, SYN);
    let a = out(&mut s, 1, t, SYN, secs(0)).unwrap();
    let b = out(&mut s, 2, t, SYN, secs(0)).unwrap();
    // Paired: a new host gets the least loaded NAT IP, so link 2's host lands on the second.
    assert_eq!(src_of(&a), (nat(0), 1024));
    assert_eq!(src_of(&b), (nat(1), 1024));
    // Only the source address, port and the two checksums changed.
    let (v, va) = (view(&orig), view(&a));
    let diff: Vec<usize> = (0..orig.len()).filter(|&i| orig[i] != a[i]).collect();
    let l3 = v.l3_offset();
    let l4 = v.l4_offset();
    let allowed = [
        l3 + 10,
        l3 + 11,
        l3 + 12,
        l3 + 13,
        l3 + 14,
        l3 + 15,
        l4,
        l4 + 1,
        l4 + 16,
        l4 + 17,
    ];
    assert!(diff.iter().all(|i| allowed.contains(i)), "{diff:?}");
    assert_eq!(va.tuple(), tuple(nat(0), 1024, B, 443));
    // The answer to each goes back to its own link, as the original consumer tuple.
    let (l, back) = inb(&mut s, tuple(B, 443, nat(1), 1024), SYNACK, secs(0)).unwrap();
    assert_eq!(l, LinkId(2));
    assert_eq!(view(&back).tuple(), t.reversed());
    assert_eq!(s.flow(LinkId(2), t).unwrap().state, TcpState::SynReceived);
    assert_eq!(s.flow(LinkId(1), t).unwrap().state, TcpState::SynSent);
    s.audit();
}

#[test]
fn no_flow_cases_and_pickup() {
    let mut s = Snat::new(cfg(1, 1024, 65535, ReuseScope::PerBackend)).unwrap();
    let t = tuple(ip(192, 168, 0, 1), 40_000, B, 443);
    for flags in [ACK, SYNACK, FINACK, RSTF] {
        assert_eq!(
            out(&mut s, 1, t, flags, secs(0)).unwrap_err(),
            DropReason::NoFlow
        );
    }
    // The provider can't open a connection, nor reach an unknown NAT IP.
    assert_eq!(
        inb(&mut s, tuple(B, 443, nat(0), 1024), SYN, secs(0)).unwrap_err(),
        DropReason::NoFlow
    );
    assert_eq!(
        inb(&mut s, tuple(B, 443, nat(5), 1024), ACK, secs(0)).unwrap_err(),
        DropReason::NoFlow
    );
    out(&mut s, 1, t, SYN, secs(0)).unwrap();
    // The right NAT port from the wrong backend port is no flow either.
    assert_eq!(
        inb(&mut s, tuple(B, 444, nat(0), 1024), ACK, secs(0)).unwrap_err(),
        DropReason::NoFlow
    );
    assert_eq!(s.stats().drops.get(DropReason::NoFlow), 7);

    let mut c = cfg(1, 1024, 65535, ReuseScope::PerBackend);
    c.pickup = true;
    let mut s = Snat::new(c).unwrap();
    assert_eq!(
        out(&mut s, 1, t, RSTF, secs(0)).unwrap_err(),
        DropReason::NoFlow
    );
    out(&mut s, 1, t, ACK, secs(0)).unwrap();
    assert_eq!(s.flow(LinkId(1), t).unwrap().state, TcpState::Established);
    let t2 = tuple(ip(192, 168, 0, 1), 40_001, B, 443);
    out(&mut s, 1, t2, FINACK, secs(0)).unwrap();
    assert_eq!(s.flow(LinkId(1), t2).unwrap().state, TcpState::HalfClosed);
    assert_eq!(s.stats().created, 2);
    s.audit();
}

#[test]
fn a_syn_reopens_a_held_flow_on_its_port() {
    let mut s = Snat::new(cfg(1, 3000, 3009, ReuseScope::PerIp)).unwrap();
    let t = tuple(ip(192, 168, 0, 1), 40_000, B, 443);
    out(&mut s, 1, t, SYN, secs(0)).unwrap();
    out(&mut s, 1, t, RSTF, secs(1)).unwrap();
    assert_eq!(s.stats().nat_ips[0].held, 1);
    let f = out(&mut s, 1, t, SYN, secs(2)).unwrap();
    assert_eq!(src_of(&f), (nat(0), 3000));
    let st = s.stats();
    assert_eq!(
        (
            st.created,
            st.closed,
            st.open,
            st.nat_ips[0].in_use,
            st.nat_ips[0].held
        ),
        (2, 1, 1, 1, 0)
    );
    // Its timer is the transitory one again, from the new SYN.
    assert_eq!(s.flow(LinkId(1), t).unwrap().deadline, secs(242));
    assert_eq!(s.expire(secs(241)), 0);
    assert_eq!(s.expire(secs(242)), 1);
    s.audit();
}

#[test]
fn teardown_frees_one_link_only() {
    let mut s = Snat::new(cfg(1, 3000, 3099, ReuseScope::PerIp)).unwrap();
    for i in 0..5 {
        out(
            &mut s,
            1,
            tuple(ip(192, 168, 0, 1), 100 + i, B, 443),
            SYN,
            secs(0),
        )
        .unwrap();
    }
    for i in 0..3 {
        out(
            &mut s,
            2,
            tuple(ip(192, 168, 0, 1), 100 + i, B, 443),
            SYN,
            secs(0),
        )
        .unwrap();
    }
    out(
        &mut s,
        1,
        tuple(ip(192, 168, 0, 1), 100, B, 443),
        RSTF,
        secs(0),
    )
    .unwrap();
    assert_eq!(s.teardown(LinkId(1), secs(1)), 5);
    let st = s.stats();
    assert_eq!((st.torn_down, st.closed, st.live, st.open), (4, 1, 3, 3));
    assert_eq!(
        (st.nat_ips[0].in_use, st.nat_ips[0].held, st.nat_ips[0].free),
        (3, 0, 97)
    );
    assert!(
        s.flow(LinkId(1), tuple(ip(192, 168, 0, 1), 101, B, 443))
            .is_none()
    );
    assert!(
        s.flow(LinkId(2), tuple(ip(192, 168, 0, 1), 101, B, 443))
            .is_some()
    );
    assert_eq!(s.teardown(LinkId(1), secs(1)), 0);
    s.audit();
    // The stale timers of the torn-down flows do nothing.
    assert_eq!(s.expire(secs(1000)), 3);
    s.audit();
}

#[test]
fn sequential_random_and_block_allocators() {
    let hosts = [ip(192, 168, 0, 1), ip(192, 168, 0, 2)];
    let ports = |alloc: Allocator, n: usize| {
        let mut c = cfg(1, 2000, 2099, ReuseScope::PerIp);
        c.allocator = alloc;
        let mut s = Snat::new(c).unwrap();
        let mut got = Vec::new();
        for i in 0..n {
            let t = tuple(hosts[i % 2], 1000 + i as u16, B, 443);
            match out(&mut s, 1, t, SYN, secs(0)) {
                Ok(f) => got.push(src_of(&f).1),
                Err(e) => {
                    assert_eq!(e, DropReason::PortExhausted);
                    got.push(0);
                }
            }
            s.audit();
        }
        (s, got)
    };
    let (_, seq) = ports(Allocator::Sequential, 5);
    assert_eq!(seq, [2000, 2001, 2002, 2003, 2004]);

    let (_, r1) = ports(Allocator::Random { seed: 7 }, 101);
    let (_, r2) = ports(Allocator::Random { seed: 7 }, 101);
    let (_, r3) = ports(Allocator::Random { seed: 8 }, 101);
    assert_eq!(r1, r2, "same seed, same ports");
    assert_ne!(r1, r3);
    assert_ne!(
        &r1[..10],
        &seq[..5]
            .iter()
            .chain(&[2005, 2006, 2007, 2008, 2009])
            .copied()
            .collect::<Vec<_>>()[..]
    );
    let mut all: Vec<u16> = r1[..100].to_vec();
    all.sort_unstable();
    assert_eq!(
        all,
        (2000..2100).collect::<Vec<_>>(),
        "every port once, then exhausted"
    );
    assert_eq!(r1[100], 0);

    // block:4, hosts alternating: A 2000.., B 2004.., A's fifth port opens a third block.
    let (mut s, b) = ports(Allocator::Block(4), 10);
    assert_eq!(
        b,
        [2000, 2004, 2001, 2005, 2002, 2006, 2003, 2007, 2008, 2012]
    );
    // Free A's first block (ports 2000-2003: flows 0, 2, 4, 6) by RST + hold: freed when empty.
    for i in [0u16, 2, 4] {
        out(&mut s, 1, tuple(hosts[0], 1000 + i, B, 443), RSTF, secs(1)).unwrap();
    }
    s.expire(secs(100));
    assert!(
        s.ports.scopes[0].blocks.as_ref().unwrap().taken.get(0),
        "one port still used"
    );
    out(&mut s, 1, tuple(hosts[0], 1006, B, 443), RSTF, secs(100)).unwrap();
    s.expire(secs(200));
    assert!(!s.ports.scopes[0].blocks.as_ref().unwrap().taken.get(0));
    s.audit();
    // Block 0 is free again but the cursor hands out block 4 to a new host first.
    let f = out(
        &mut s,
        1,
        tuple(ip(192, 168, 0, 3), 1, B, 443),
        SYN,
        secs(200),
    )
    .unwrap();
    assert_eq!(src_of(&f).1, 2016);
}

#[test]
fn paired_keeps_the_host_on_its_nat_ip_and_falls_over() {
    let mut s = Snat::new(cfg(2, 2000, 2002, ReuseScope::PerIp)).unwrap();
    let a = ip(192, 168, 0, 1);
    let bh = ip(192, 168, 0, 2);
    let got: Vec<_> = (0..4)
        .map(|i| src_of(&out(&mut s, 1, tuple(a, 100 + i, B, 443), SYN, secs(0)).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (nat(0), 2000),
            (nat(0), 2001),
            (nat(0), 2002),
            (nat(1), 2000)
        ]
    );
    // Host b is new: the least loaded NAT IP is the second one (1 port busy against 3).
    let f = out(&mut s, 1, tuple(bh, 100, B, 443), SYN, secs(0)).unwrap();
    assert_eq!(src_of(&f), (nat(1), 2001));
    s.audit();

    let mut c = cfg(2, 2000, 2002, ReuseScope::PerIp);
    c.selection = Selection::LeastLoaded;
    let mut s = Snat::new(c).unwrap();
    let got: Vec<_> = (0..4)
        .map(|i| src_of(&out(&mut s, 1, tuple(a, 100 + i, B, 443), SYN, secs(0)).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (nat(0), 2000),
            (nat(1), 2000),
            (nat(0), 2001),
            (nat(1), 2001)
        ]
    );
    s.audit();
}

#[test]
fn add_nat_ip_up_to_eight() {
    let mut s = Snat::new(cfg(1, 2000, 2000, ReuseScope::PerIp)).unwrap();
    out(
        &mut s,
        1,
        tuple(ip(192, 168, 0, 1), 1, B, 443),
        SYN,
        secs(0),
    )
    .unwrap();
    assert_eq!(
        out(
            &mut s,
            1,
            tuple(ip(192, 168, 0, 1), 2, B, 443),
            SYN,
            secs(0)
        ),
        Err(DropReason::PortExhausted)
    );
    assert_eq!(
        s.add_nat_ip(nat(0)),
        Err(ConfigError::DuplicateNatIp(nat(0)))
    );
    for i in 1..8 {
        assert_eq!(s.add_nat_ip(nat(i)), Ok(usize::from(i)));
    }
    assert_eq!(s.add_nat_ip(nat(8)), Err(ConfigError::TooManyNatIps(9)));
    let f = out(
        &mut s,
        1,
        tuple(ip(192, 168, 0, 1), 2, B, 443),
        SYN,
        secs(0),
    )
    .unwrap();
    assert_eq!(src_of(&f), (nat(1), 2000));
    assert_eq!(s.stats().nat_ips.len(), 8);
    assert_eq!(s.config().nat_ips.len(), 8);
    s.audit();
}

#[test]
fn rst_on_exhaustion() {
    let mut c = cfg(1, 2000, 2000, ReuseScope::PerIp);
    c.rst_on_exhaustion = true;
    let mut s = Snat::new(c).unwrap();
    out(
        &mut s,
        1,
        tuple(ip(192, 168, 0, 1), 1, B, 443),
        SYN,
        secs(0),
    )
    .unwrap();
    assert!(s.rst_reply().is_none());
    let t = tuple(ip(192, 168, 0, 1), 2, B, 443);
    assert_eq!(
        out(&mut s, 1, t, SYN, secs(0)),
        Err(DropReason::PortExhausted)
    );
    let rst = s.rst_reply().unwrap().to_vec();
    let v = plsim_wire::classify_l3(&rst).unwrap();
    assert_eq!(v.tuple(), t.reversed());
    assert_eq!(v.flags(), TcpFlags::RST | TcpFlags::ACK);
    assert!(checksum::verify(&rst, &v).ok());
    // ack = the SYN's seq (1000) + 1 + its 5 payload bytes.
    assert_eq!(&rst[28..32], &1006u32.to_be_bytes());
    assert_eq!(rst.len(), 40);
    s.expire(secs(1));
    assert!(s.rst_reply().is_some());
    out(
        &mut s,
        1,
        tuple(ip(192, 168, 0, 1), 1, B, 443),
        ACK,
        secs(1),
    )
    .unwrap();
    assert!(s.rst_reply().is_none());
}

#[test]
fn config_errors_and_names() {
    let bad = |f: &dyn Fn(&mut SnatConfig)| {
        let mut c = SnatConfig::default();
        f(&mut c);
        Snat::new(c).unwrap_err()
    };
    assert_eq!(bad(&|c| c.nat_ips.clear()), ConfigError::NoNatIp);
    assert_eq!(
        bad(&|c| c.nat_ips = (0..9).map(nat).collect()),
        ConfigError::TooManyNatIps(9)
    );
    assert_eq!(
        bad(&|c| c.nat_ips = vec![nat(0), nat(1), nat(0)]),
        ConfigError::DuplicateNatIp(nat(0))
    );
    assert_eq!(
        bad(&|c| c.ports = PortRange::new(10, 9)),
        ConfigError::EmptyPortRange(PortRange::new(10, 9))
    );
    assert_eq!(
        bad(&|c| {
            c.ports = PortRange::new(10, 19);
            c.allocator = Allocator::Block(11)
        }),
        ConfigError::BlockSize {
            block: 11,
            range: 10
        }
    );
    assert_eq!(
        bad(&|c| c.timers.idle = Duration::ZERO),
        ConfigError::ZeroTimer("idle")
    );
    assert_eq!("sequential".parse(), Ok(Allocator::Sequential));
    assert_eq!("random".parse(), Ok(Allocator::Random { seed: 0 }));
    assert_eq!("random:42".parse(), Ok(Allocator::Random { seed: 42 }));
    assert_eq!("block:64".parse(), Ok(Allocator::Block(64)));
    for bad in ["block", "block:0", "block:x", "random:", "seq", ""] {
        assert!(bad.parse::<Allocator>().is_err(), "{bad}");
    }
    for a in [
        Allocator::Sequential,
        Allocator::Random { seed: 3 },
        Allocator::Block(8),
    ] {
        assert_eq!(a.to_string().parse(), Ok(a));
    }
    assert_eq!("per-ip".parse(), Ok(ReuseScope::PerIp));
    assert_eq!("per-backend".parse(), Ok(ReuseScope::PerBackend));
    assert_eq!("least-loaded".parse(), Ok(Selection::LeastLoaded));
    assert_eq!("paired".parse(), Ok(Selection::Paired));
    assert!("per-vm".parse::<ReuseScope>().is_err());
    assert_eq!("1024-65535".parse(), Ok(PortRange::default()));
    assert_eq!("80-80".parse(), Ok(PortRange::new(80, 80)));
    // One form, one rule (the scenario's and the flags'): LO-HI with 1 <= LO <= HI.
    for bad in ["80", "0-10", "9-8", "-", "a-b"] {
        assert!(bad.parse::<PortRange>().is_err(), "{bad}");
    }
    assert!("1-70000".parse::<PortRange>().is_err());
    assert_eq!(PortRange::default().len(), 64_512);
    let d = SnatConfig::default();
    assert_eq!(
        (d.timers.idle, d.timers.rst_hold),
        (Duration::from_secs(240), Duration::from_secs(15))
    );
    assert_eq!(
        (d.reuse, d.selection, d.pickup),
        (ReuseScope::PerBackend, Selection::Paired, false)
    );
}

#[test]
fn flow_record_is_32_bytes_and_memory_is_counted() {
    assert_eq!(std::mem::size_of::<Flow>(), 32);
    let mut s = Snat::new(SnatConfig {
        nat_ips: (0..8).map(nat).collect(),
        ..SnatConfig::default()
    })
    .unwrap();
    let n = 200_000u32;
    for i in 0..n {
        let c = Ipv4Addr::from(0x0a00_0000 + i / 50_000);
        let t = tuple(c, (i % 50_000) as u16 + 1, B, 443);
        out(&mut s, 1, t, SYN, secs(0)).unwrap();
    }
    let per_flow = s.memory_bytes() as f64 / f64::from(n);
    assert!(per_flow < 96.0, "{per_flow} bytes a flow");
    assert!(
        per_flow > 32.0 + 16.0 + 10.0,
        "{per_flow} bytes a flow is too good to be true"
    );
}

// ---- property tests ----

#[derive(Clone, Debug)]
enum Op {
    /// A SYN from consumer host `h`, port `2998 + p` (in the NAT range or not), to backend
    /// `b % 3` on port 443 or (`b >= 3`) 8443, on link `l`.
    Open { l: u32, h: u8, p: u16, b: u8 },
    /// A packet of an existing flow (picked by index), forward or reverse.
    Packet {
        pick: usize,
        reverse: bool,
        flags: u8,
    },
    /// Time passes.
    Wait(u64),
    /// The connection `l` leaves Approved.
    Teardown(u32),
    /// The load balancer resets a flow (picked by index).
    Reset(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u32, 0..4u8, 0..8u16, 0..6u8).prop_map(|(l, h, p, b)| Op::Open { l, h, p, b }),
        6 => (any::<usize>(), any::<bool>(), prop::sample::select(vec![ACK, SYNACK, FINACK, RSTF, SYN, ACK]))
            .prop_map(|(pick, reverse, flags)| Op::Packet { pick, reverse, flags }),
        2 => prop_oneof![0..5u64, 10..20u64, 100..300u64].prop_map(Op::Wait),
        1 => any::<usize>().prop_map(Op::Reset),
        1 => (0..3u32).prop_map(Op::Teardown),
    ]
}

fn config_strategy() -> impl Strategy<Value = SnatConfig> {
    (
        1..=3u8,
        prop_oneof![
            Just(Allocator::Sequential),
            (0..4u64).prop_map(|seed| Allocator::Random { seed }),
            (1..5u16).prop_map(Allocator::Block),
            (0..4u64).prop_map(|seed| Allocator::Netfilter { seed }),
        ],
        prop_oneof![Just(ReuseScope::PerBackend), Just(ReuseScope::PerIp)],
        prop_oneof![Just(Selection::Paired), Just(Selection::LeastLoaded)],
        any::<bool>(),
        4..12u16,
        any::<bool>(),
    )
        .prop_map(
            |(nats, allocator, reuse, selection, pickup, nports, track)| SnatConfig {
                nat_ips: (0..nats).map(nat).collect(),
                ports: PortRange::new(3000, 3000 + nports - 1),
                allocator,
                reuse,
                selection,
                pickup,
                timers: Timers {
                    idle: Duration::from_secs(200),
                    transitory: Duration::from_secs(60),
                    fin_hold: Duration::from_secs(120),
                    rst_hold: Duration::from_secs(15),
                },
                rst_on_exhaustion: false,
                proxy_protocol: false,
                // A horizon past the whole run: every reuse counts, every tuple stays.
                track_reuse: track.then_some(ReuseTracking {
                    time_wait: Duration::from_secs(30),
                    horizon: Duration::from_secs(1 << 40),
                }),
            },
        )
}

/// Swaps source and destination (addresses and ports) in place: the packet the other end would
/// send back with the same bytes. Both checksums stay valid (the sums are unchanged).
fn mirror(f: &mut [u8]) {
    let v = view(f);
    let (l3, l4) = (v.l3_offset(), v.l4_offset());
    for i in 0..4 {
        f.swap(l3 + 12 + i, l3 + 16 + i);
    }
    for i in 0..2 {
        f.swap(l4 + i, l4 + 2 + i);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn engine_invariants_hold(cfg in config_strategy(), ops in prop::collection::vec(op(), 1..120)) {
        let mut s = Snat::new(cfg).unwrap();
        let mut now = 0u64;
        // The consumer-side tuples (and links) that were ever opened.
        let mut known: Vec<(u32, FlowTuple)> = Vec::new();
        // Every reply tuple a flow record ever had, and the SYNs that reopened a held record:
        // each record made on a tuple used before is a reuse.
        let mut used = HashSet::new();
        let mut reopens = 0u64;
        let reopening = |s: &Snat, l: u32, t: FlowTuple, flags: u8, now: u64| {
            flags == SYN
                && s.flow(LinkId(l), t).is_some_and(|i| {
                    matches!(i.state, TcpState::FinHold | TcpState::RstHold)
                        && i.deadline > secs(now)
                })
        };
        for op in ops {
            match op {
                Op::Open { l, h, p, b } => {
                    let bp = if b >= 3 { 8443 } else { 443 };
                    let t = tuple(ip(192, 168, 0, h + 1), 2998 + p, ip(10, 0, 0, b % 3 + 4), bp);
                    reopens += u64::from(reopening(&s, l, t, SYN, now));
                    let before = s.flow(LinkId(l), t);
                    match out(&mut s, l, t, SYN, secs(now)) {
                        Ok(_) => {
                            if !known.contains(&(l, t)) { known.push((l, t)); }
                        }
                        Err(e) => {
                            prop_assert_eq!(e, DropReason::PortExhausted);
                            prop_assert!(before.is_none());
                        }
                    }
                }
                Op::Packet { pick, reverse, flags } => {
                    if known.is_empty() { continue; }
                    let (l, t) = known[pick % known.len()];
                    let info = s.flow(LinkId(l), t);
                    reopens += u64::from(reopening(&s, l, t, flags, now));
                    if reverse {
                        let Some(info) = info else { continue };
                        let r = tuple(t.dst, t.dport, info.nat_ip, info.nat_port);
                        let orig = frame(r, flags);
                        let (link, back) = inb(&mut s, r, flags, secs(now)).unwrap();
                        prop_assert_eq!(link, LinkId(l));
                        prop_assert_eq!(view(&back).tuple(), t.reversed());
                        // forward(reverse(p)) restores p byte for byte.
                        let mut m = back.clone();
                        mirror(&mut m);
                        let mut v = view(&m);
                        if s.forward(LinkId(l), &mut m, &mut v, secs(now)).is_ok() {
                            mirror(&mut m);
                            prop_assert_eq!(&m, &orig);
                        }
                    } else {
                        let orig = frame(t, flags);
                        match out(&mut s, l, t, flags, secs(now)) {
                            Ok(f) => {
                                let v = view(&f);
                                let info = s.flow(LinkId(l), t).unwrap();
                                prop_assert_eq!(v.tuple(), tuple(info.nat_ip, info.nat_port, t.dst, t.dport));
                                // reverse(forward(p)) restores p byte for byte.
                                let mut m = f.clone();
                                mirror(&mut m);
                                let mut v = view(&m);
                                prop_assert_eq!(s.reverse(&mut m, &mut v, secs(now)), Ok(LinkId(l)));
                                mirror(&mut m);
                                prop_assert_eq!(&m, &orig);
                            }
                            Err(DropReason::NoFlow) => prop_assert!(info.is_none()),
                            Err(e) => {
                                prop_assert_eq!(e, DropReason::PortExhausted);
                                prop_assert!(info.is_none());
                            }
                        }
                    }
                }
                Op::Wait(d) => {
                    now += d;
                    s.expire(secs(now));
                }
                Op::Teardown(l) => {
                    s.teardown(LinkId(l), secs(now));
                    prop_assert!(known.iter().filter(|k| k.0 == l).all(|k| s.flow(LinkId(l), k.1).is_none()));
                }
                Op::Reset(pick) => {
                    if known.is_empty() { continue; }
                    let (l, t) = known[pick % known.len()];
                    let had = s.flow(LinkId(l), t).is_some();
                    prop_assert_eq!(s.reset_flow(LinkId(l), t, secs(now)), had);
                    prop_assert!(s.flow(LinkId(l), t).is_none());
                }
            }
            s.audit();
            for (_, f) in s.table.iter() {
                used.insert((f.nat, f.n_port, f.b_ip, f.b_port));
            }
        }
        // Every timer runs out: every port is free again, nothing is left.
        s.expire(secs(now + 1000));
        s.audit();
        if let Some(r) = s.reuse() {
            let made = s.created - reopens;
            prop_assert_eq!(r.total().reuses, made - used.len() as u64);
            prop_assert_eq!(r.tuples(), used.len());
        }
        let st = s.stats();
        prop_assert_eq!((st.live, st.open), (0, 0));
        for n in &st.nat_ips {
            prop_assert_eq!((n.in_use, n.held, n.flows), (0, 0, 0));
            prop_assert_eq!(n.free, n.ports_total);
        }
        prop_assert!(s.ports.hosts.is_empty());
        prop_assert!(s.ports.owners.is_empty());
        prop_assert_eq!(st.created, st.closed + st.expired + st.torn_down + st.reset);
        prop_assert!(s.live_by_link().iter().all(|&n| n == 0));
    }
}

#[test]
fn prefetch_hooks_are_harmless_on_any_packet() {
    let mut s = Snat::new(cfg(2, 2000, 2100, ReuseScope::PerIp)).unwrap();
    let t = tuple(ip(192, 168, 0, 1), 1000, B, 443);
    let to_nat = |n: Ipv4Addr| tuple(B, 443, n, 2000);
    // An empty engine (no bucket yet), then a packet to no NAT IP of the engine.
    for probe in [t, to_nat(nat(0)), to_nat(ip(1, 2, 3, 4))] {
        let v = view(&frame(probe, ACK));
        s.prefetch_forward(LinkId(1), &v);
        s.prefetch_reverse(&v);
    }
    let f = out(&mut s, 1, t, SYN, secs(0)).unwrap();
    assert_eq!(src_of(&f), (nat(0), 2000));
    let before = s.stats();
    for probe in [t, to_nat(nat(0)), to_nat(nat(1)), to_nat(ip(1, 2, 3, 4))] {
        let v = view(&frame(probe, ACK));
        s.prefetch_forward(LinkId(1), &v);
        s.prefetch_reverse(&v);
    }
    assert_eq!(s.stats(), before);
    s.audit();
}

/// The provider can't open a connection: a SYN from a backend to a NAT IP, on a port no flow
/// holds or on one a flow holds, is refused as `no_flow` and opens nothing.
#[test]
fn a_syn_from_the_provider_side_opens_nothing() {
    let mut s = Snat::new(cfg(1, 5000, 5001, ReuseScope::PerIp)).unwrap();
    assert_eq!(
        inb(&mut s, tuple(B, 443, nat(0), 5000), SYN, secs(0)).unwrap_err(),
        DropReason::NoFlow
    );
    let st = s.stats();
    assert_eq!((st.created, st.live, st.nat_ips[0].free), (0, 0, 2));
    // With a consumer's flow on 5000, the backend's SYN from another port still finds nothing.
    let t = tuple(ip(192, 168, 0, 1), 1, B, 443);
    out(&mut s, 1, t, SYN, secs(1)).unwrap();
    assert_eq!(
        inb(&mut s, tuple(B, 444, nat(0), 5000), SYN, secs(1)).unwrap_err(),
        DropReason::NoFlow
    );
    let st = s.stats();
    assert_eq!((st.created, st.live, st.nat_ips[0].free), (1, 1, 1));
    assert_eq!(st.drops.get(DropReason::NoFlow), 2);
    s.audit();
}

mod netfilter;
mod reuse;
