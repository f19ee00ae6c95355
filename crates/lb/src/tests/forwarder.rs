//! The forwarder's behaviour, with exact counts, bytes and states.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::*;
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkType, TcpFlags, checksum, classify};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const F: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 4);
const F2: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 5);
const ACK: u8 = TcpFlags::ACK;
const SYN: u8 = TcpFlags::SYN;

fn b(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 1, i)
}

fn backends(n: u8) -> Vec<Ipv4Addr> {
    (1..=n).map(b).collect()
}

fn cfg(rules: Vec<Rule>, pool: Vec<Ipv4Addr>) -> LbConfig {
    LbConfig {
        frontends: vec![Frontend { ip: F }, Frontend { ip: F2 }],
        pools: vec![Pool::new("web", pool)],
        rules,
        ..LbConfig::default()
    }
}

fn ha(n: u8) -> Lb {
    Lb::new(cfg(vec![Rule::ha_ports(F, "web")], backends(n))).unwrap()
}

fn with(rule: Rule, n: u8) -> Lb {
    Lb::new(cfg(vec![rule], backends(n))).unwrap()
}

fn packet(t: FlowTuple, flags: u8) -> (Vec<u8>, plsim_wire::Ipv4Tcp) {
    let f = TcpSegment::new(t, flags).to_vec();
    let v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
    (f, v)
}

fn fwd(
    lb: &mut Lb,
    link: u32,
    t: FlowTuple,
    flags: u8,
    now: SimTime,
) -> Result<Forwarded, DropReason> {
    let (mut f, mut v) = packet(t, flags);
    let before = f.clone();
    let r = lb.forward(LinkId(link), &mut f, &mut v, now);
    match r {
        Ok(fw) => {
            assert_eq!(
                v.tuple(),
                FlowTuple {
                    dst: fw.backend,
                    dport: fw.port,
                    ..t
                }
            );
            assert!(checksum::verify(&f, &v).ok());
        }
        Err(_) => assert_eq!(f, before, "a dropped packet is left unchanged"),
    }
    r
}

fn rep(lb: &mut Lb, link: u32, t: FlowTuple, now: SimTime) -> Result<FlowTuple, DropReason> {
    let (mut f, mut v) = packet(t, ACK);
    lb.reverse(LinkId(link), &mut f, &mut v, now).map(|()| {
        assert!(checksum::verify(&f, &v).ok());
        v.tuple()
    })
}

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

fn random_flows(seed: u64, n: usize) -> Vec<(u32, FlowTuple)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let link = rng.random_range(1..4);
            let t = tuple(
                client(rng.random_range(1..1 << 16)),
                rng.random_range(1024..=u16::MAX),
                F,
                443,
            );
            (link, t)
        })
        .collect()
}

const T0: SimTime = SimTime::ZERO;

#[test]
fn forward_rewrites_destination_exactly() {
    let mut lb = with(Rule::port(F, 80, 8080, "web"), 1);
    let t = tuple(client(7), 40000, F, 80);
    let seg = TcpSegment {
        seq: 1234,
        ack: 99,
        payload: b"GET / HTTP/1.1\r\n\r\n",
        ..TcpSegment::new(t, ACK | TcpFlags::PSH)
    };
    let mut f = seg.to_vec();
    let mut v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
    let fw = lb.forward(LinkId(1), &mut f, &mut v, T0).unwrap();
    assert_eq!(
        fw,
        Forwarded {
            backend: b(1),
            port: 8080,
            new_flow: true
        }
    );
    let expected = TcpSegment {
        tuple: tuple(client(7), 40000, b(1), 8080),
        ..seg.clone()
    }
    .to_vec();
    assert_eq!(f, expected);

    // The reply B:bp -> C:cp comes back from F:fp, byte for byte.
    let back = TcpSegment {
        tuple: tuple(b(1), 8080, client(7), 40000),
        payload: b"HTTP/1.1 200 OK",
        ..seg.clone()
    };
    let mut f = back.to_vec();
    let mut v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
    lb.reverse(LinkId(1), &mut f, &mut v, T0).unwrap();
    assert_eq!(
        f,
        TcpSegment {
            tuple: tuple(F, 80, client(7), 40000),
            ..back
        }
        .to_vec()
    );
}

#[test]
fn ha_ports_keeps_the_port_and_a_flow_keeps_its_backend() {
    let mut lb = ha(4);
    let t = tuple(client(1), 5555, F, 3389);
    let first = fwd(&mut lb, 1, t, SYN, T0).unwrap();
    assert!(first.new_flow);
    assert_eq!(first.port, 3389);
    for i in 1..=10 {
        let again = fwd(&mut lb, 1, t, ACK, SimTime::from_secs(i)).unwrap();
        assert_eq!(
            again,
            Forwarded {
                new_flow: false,
                ..first
            }
        );
    }
    assert_eq!(lb.flow(LinkId(1), t), Some((first.backend, 3389)));
    assert_eq!(lb.pick(LinkId(1), t), Ok((first.backend, 3389)));
    // The same addresses on another link are another flow.
    assert_eq!(lb.flow(LinkId(2), t), None);
    let s = lb.stats();
    assert_eq!(s.flows.created, 1);
    assert_eq!(s.rules[0].hits, 11);
    assert_eq!(s.rules[0].flows, 1);
    let bs = s.backends.iter().find(|x| x.ip == first.backend).unwrap();
    assert_eq!((bs.flows, bs.active_flows, bs.packets), (1, 1, 11));
}

#[test]
fn five_tuple_spreads_100k_flows_within_2_percent() {
    for hashing in [Hashing::Plain, Hashing::MAGLEV] {
        let mut lb = with(
            Rule {
                hashing,
                ..Rule::ha_ports(F, "web")
            },
            4,
        );
        let mut per_backend: HashMap<Ipv4Addr, u64> = HashMap::new();
        let flows = random_flows(1, 100_000);
        let distinct: HashSet<_> = flows.iter().collect();
        for &(link, t) in &flows {
            let fw = fwd(&mut lb, link, t, SYN, T0).unwrap();
            if fw.new_flow {
                *per_backend.entry(fw.backend).or_default() += 1;
            }
        }
        let total: u64 = per_backend.values().sum();
        assert_eq!(total, distinct.len() as u64);
        assert_eq!(lb.active_flows(), distinct.len());
        let even = total as f64 / 4.0;
        assert_eq!(per_backend.len(), 4);
        for (ip, &n) in &per_backend {
            assert!(
                (n as f64 - even).abs() <= 0.02 * even,
                "{hashing:?}: {ip} got {n} of {total}"
            );
        }
        let s = lb.stats();
        for bs in &s.backends {
            assert_eq!(bs.flows, per_backend[&bs.ip]);
        }
    }
}

#[test]
fn two_tuple_sends_every_flow_of_a_source_to_one_backend() {
    for distribution in [Distribution::SourceIp, Distribution::SourceIpProtocol] {
        let mut lb = with(
            Rule {
                distribution,
                ..Rule::ha_ports(F, "web")
            },
            4,
        );
        let mut used = HashSet::new();
        for src in 1..=200 {
            let mut seen = HashSet::new();
            for port in 0..50u16 {
                let t = tuple(client(src), 10_000 + port, F, 80 + port % 3);
                seen.insert(fwd(&mut lb, 1, t, SYN, T0).unwrap().backend);
            }
            assert_eq!(
                seen.len(),
                1,
                "{distribution:?}: source {src} went to {seen:?}"
            );
            used.extend(seen);
        }
        assert_eq!(used.len(), 4, "the sources still spread over the pool");
        assert_eq!(lb.active_flows(), 200 * 50);
    }
}

#[test]
fn a_down_backend_gets_no_new_flows_and_keeps_its_old_ones() {
    let mut lb = ha(4);
    let old = random_flows(4, 1000);
    let mut placed = HashMap::new();
    for &(link, t) in &old {
        placed.insert((link, t), fwd(&mut lb, link, t, SYN, T0).unwrap().backend);
    }
    let on_b3: Vec<_> = placed
        .iter()
        .filter(|&(_, &ip)| ip == b(3))
        .map(|(k, _)| *k)
        .collect();
    assert!(!on_b3.is_empty());
    assert_eq!(
        lb.set_backend_up(b(3), false, SimTime::from_secs(1)),
        Ok(vec![])
    );
    let flows_before = lb.stats().backends[2].flows;
    for (link, t) in random_flows(5, 10_000) {
        let fw = fwd(&mut lb, link, t, SYN, SimTime::from_secs(2)).unwrap();
        assert!(!fw.new_flow || fw.backend != b(3));
    }
    let s = lb.stats();
    assert_eq!(
        (s.backends[2].ip, s.backends[2].up, s.backends[2].flows),
        (b(3), false, flows_before)
    );
    // Existing flows continue (Azure's behaviour) ...
    for &(link, t) in &on_b3 {
        assert_eq!(
            fwd(&mut lb, link, t, ACK, SimTime::from_secs(3))
                .unwrap()
                .backend,
            b(3)
        );
    }
    // ... except a new SYN on the tuple, which is a new connection: it picks a healthy backend.
    let (link, t) = on_b3[0];
    let fw = fwd(&mut lb, link, t, SYN, SimTime::from_secs(4)).unwrap();
    assert!(fw.new_flow && fw.backend != b(3));
    assert_eq!(lb.stats().flows.replaced, 1);
    // Up again: it gets new flows.
    lb.set_backend_up(b(3), true, SimTime::from_secs(5))
        .unwrap();
    let mut got = 0;
    for (link, t) in random_flows(6, 1000) {
        got += u32::from(
            fwd(&mut lb, link, t, SYN, SimTime::from_secs(6))
                .unwrap()
                .backend
                == b(3),
        );
    }
    assert!(got > 150, "{got}");
    assert_eq!(
        lb.set_backend_up(b(9), false, T0),
        Err(ConfigError::UnknownBackend(b(9)))
    );
}

#[test]
fn reset_mode_returns_exactly_the_flows_of_the_down_backend() {
    let mut c = cfg(vec![Rule::ha_ports(F, "web")], backends(3));
    c.on_backend_down = OnBackendDown::Reset;
    let mut lb = Lb::new(c).unwrap();
    let mut on_b1 = HashSet::new();
    for (link, t) in random_flows(7, 3000) {
        let fw = fwd(&mut lb, link, t, SYN, T0).unwrap();
        if fw.backend == b(1) {
            on_b1.insert((LinkId(link), t));
        }
    }
    let active = lb.active_flows();
    let closed = lb
        .set_backend_up(b(1), false, SimTime::from_secs(1))
        .unwrap();
    assert_eq!(closed.len(), on_b1.len());
    for c in &closed {
        assert!(on_b1.contains(&(c.link, c.consumer)));
        assert_eq!((c.backend, c.backend_port), (b(1), 443));
        assert_eq!(
            c.forwarded(),
            FlowTuple {
                dst: b(1),
                ..c.consumer
            }
        );
        assert_eq!(lb.flow(c.link, c.consumer), None);
    }
    assert_eq!(lb.active_flows(), active - on_b1.len());
    let s = lb.stats();
    assert_eq!(
        (s.flows.reset, s.backends[0].active_flows),
        (on_b1.len() as u64, 0)
    );
    // Their next packet opens a flow on a healthy backend.
    let &(link, t) = on_b1.iter().next().unwrap();
    let fw = fwd(&mut lb, link.0, t, ACK, SimTime::from_secs(2)).unwrap();
    assert!(fw.new_flow && fw.backend != b(1));
    // Marking it down again changes nothing.
    assert_eq!(
        lb.set_backend_up(b(1), false, SimTime::from_secs(3)),
        Ok(vec![])
    );
}

#[test]
fn no_rule_and_no_backend_are_counted_exactly() {
    let mut c = cfg(
        vec![
            Rule::port(F, 80, 8080, "web"),
            Rule::port(F, 443, 443, "empty"),
        ],
        backends(2),
    );
    c.pools.push(Pool::new("empty", []));
    let mut lb = Lb::new(c).unwrap();
    for i in 0..7 {
        assert_eq!(
            fwd(&mut lb, 1, tuple(client(1), 1000 + i, F, 81), SYN, T0),
            Err(DropReason::NoRule)
        );
    }
    for i in 0..3 {
        // F2 is a frontend without rules; 10.9.9.9 is no frontend.
        assert_eq!(
            fwd(&mut lb, 1, tuple(client(1), 1000 + i, F2, 80), SYN, T0),
            Err(DropReason::NoRule)
        );
        let other = Ipv4Addr::new(10, 9, 9, 9);
        assert_eq!(
            fwd(&mut lb, 1, tuple(client(1), 1000 + i, other, 80), SYN, T0),
            Err(DropReason::NoRule)
        );
    }
    for i in 0..4 {
        assert_eq!(
            fwd(&mut lb, 1, tuple(client(1), 1000 + i, F, 443), SYN, T0),
            Err(DropReason::NoBackend)
        );
    }
    let t = tuple(client(1), 2000, F, 80);
    let kept = fwd(&mut lb, 1, t, SYN, T0).unwrap();
    lb.set_backend_up(b(1), false, T0).unwrap();
    lb.set_backend_up(b(2), false, T0).unwrap();
    for i in 0..5 {
        assert_eq!(
            fwd(&mut lb, 1, tuple(client(2), 1000 + i, F, 80), SYN, T0),
            Err(DropReason::NoBackend)
        );
    }
    assert_eq!(lb.pick(LinkId(1), t), Err(DropReason::NoBackend));
    // The existing flow still gets through.
    assert_eq!(fwd(&mut lb, 1, t, ACK, T0).unwrap().backend, kept.backend);
    let d = lb.drops();
    assert_eq!(
        (
            d.get(DropReason::NoRule),
            d.get(DropReason::NoBackend),
            d.total()
        ),
        (13, 9, 22)
    );
    assert_eq!(lb.active_flows(), 1);
    assert_eq!(
        lb.stats().rules.iter().map(|r| r.hits).collect::<Vec<_>>(),
        vec![2, 0]
    );
}

#[test]
fn replies_of_no_flow_are_dropped_and_counted() {
    let mut lb = ha(2);
    let t = tuple(client(1), 4000, F, 22);
    let fw = fwd(&mut lb, 5, t, SYN, T0).unwrap();
    let back = tuple(fw.backend, 22, client(1), 4000);
    assert_eq!(rep(&mut lb, 5, back, T0), Ok(tuple(F, 22, client(1), 4000)));
    assert_eq!(
        rep(&mut lb, 6, back, T0),
        Err(DropReason::NoFlow),
        "another link"
    );
    assert_eq!(
        rep(&mut lb, 5, tuple(fw.backend, 23, client(1), 4000), T0),
        Err(DropReason::NoFlow)
    );
    assert_eq!(
        rep(&mut lb, 5, tuple(fw.backend, 22, client(1), 4001), T0),
        Err(DropReason::NoFlow)
    );
    let other = if fw.backend == b(1) { b(2) } else { b(1) };
    assert_eq!(
        rep(&mut lb, 5, tuple(other, 22, client(1), 4000), T0),
        Err(DropReason::NoFlow)
    );
    assert_eq!(lb.drops().get(DropReason::NoFlow), 4);
    let s = lb.stats();
    let bs = s.backends.iter().find(|x| x.ip == fw.backend).unwrap();
    assert_eq!((bs.packets, bs.reply_packets), (1, 1));
}

#[test]
fn idle_flows_expire_exactly_at_the_timeout() {
    let mut c = cfg(vec![Rule::ha_ports(F, "web")], backends(2));
    c.idle_timeout = Duration::from_secs(240);
    let mut lb = Lb::new(c).unwrap();
    let t1 = tuple(client(1), 1, F, 80);
    let t2 = tuple(client(2), 2, F, 80);
    let fw1 = fwd(&mut lb, 1, t1, SYN, T0).unwrap();
    fwd(&mut lb, 1, t2, SYN, T0).unwrap();
    // t1 is refreshed by a reply at 100 s.
    rep(
        &mut lb,
        1,
        tuple(fw1.backend, 80, client(1), 1),
        SimTime::from_secs(100),
    )
    .unwrap();
    assert_eq!(lb.expire(SimTime::from_nanos(240_000_000_000 - 1)), 0);
    assert_eq!(lb.expire(SimTime::from_secs(240)), 1);
    assert_eq!(lb.flow(LinkId(1), t2), None);
    assert!(lb.flow(LinkId(1), t1).is_some());
    assert_eq!(lb.expire(SimTime::from_nanos(340_000_000_000 - 1)), 0);
    assert_eq!(lb.expire(SimTime::from_secs(340)), 1);
    assert_eq!(lb.active_flows(), 0);
    assert_eq!(
        rep(
            &mut lb,
            1,
            tuple(fw1.backend, 80, client(1), 1),
            SimTime::from_secs(341)
        ),
        Err(DropReason::NoFlow)
    );
    assert!(
        fwd(&mut lb, 1, t1, ACK, SimTime::from_secs(341))
            .unwrap()
            .new_flow
    );
    let s = lb.stats();
    assert_eq!(
        (s.flows.created, s.flows.expired, s.flows.active),
        (3, 2, 1)
    );
    assert_eq!(s.backends.iter().map(|b| b.active_flows).sum::<u64>(), 1);
}

#[test]
fn new_flows_expire_due_entries_without_an_expire_call() {
    let mut lb = ha(2);
    for i in 0..1000 {
        fwd(
            &mut lb,
            1,
            tuple(client(i), 1, F, 80),
            SYN,
            SimTime::from_secs(u64::from(i)),
        )
        .unwrap();
    }
    // Each new flow expired up to two due entries: the table holds ~ the last 240 s of flows.
    assert_eq!(lb.active_flows(), 240);
    assert_eq!(lb.stats().flows.expired, 760);
}

#[test]
fn forget_link_ends_exactly_that_links_flows() {
    let mut lb = ha(4);
    for i in 0..100 {
        for link in 1..=3 {
            fwd(&mut lb, link, tuple(client(i), 7, F, 80), SYN, T0).unwrap();
        }
    }
    assert_eq!(lb.forget_link(LinkId(2)), 100);
    assert_eq!(lb.forget_link(LinkId(2)), 0);
    assert_eq!(lb.active_flows(), 200);
    assert_eq!(lb.flow(LinkId(2), tuple(client(5), 7, F, 80)), None);
    assert!(lb.flow(LinkId(3), tuple(client(5), 7, F, 80)).is_some());
    assert_eq!(lb.stats().flows.forgotten, 100);
}

#[test]
fn an_ambiguous_reply_key_is_refused() {
    let rules = vec![
        Rule::port(F, 80, 8080, "web"),
        Rule::port(F, 81, 8080, "web"),
    ];
    let mut lb = Lb::new(cfg(rules, backends(1))).unwrap();
    fwd(&mut lb, 1, tuple(client(1), 5000, F, 80), SYN, T0).unwrap();
    assert_eq!(
        fwd(&mut lb, 1, tuple(client(1), 5000, F, 81), SYN, T0),
        Err(DropReason::NoBackend)
    );
    // Another consumer port, or another link, is fine.
    fwd(&mut lb, 1, tuple(client(1), 5001, F, 81), SYN, T0).unwrap();
    fwd(&mut lb, 2, tuple(client(1), 5000, F, 81), SYN, T0).unwrap();
    let s = lb.stats();
    assert_eq!(
        (
            s.flows.ambiguous,
            s.flows.created,
            s.drops.get(DropReason::NoBackend)
        ),
        (1, 3, 1)
    );
}

/// Removes one of `n` backends and counts how many of 100,000 new-flow keys change backend.
fn moved_on_removal(hashing: Hashing, n: u8, removed: u8) -> (usize, usize) {
    let mut lb = with(
        Rule {
            hashing,
            ..Rule::ha_ports(F, "web")
        },
        n,
    );
    let keys = random_flows(8, 100_000);
    let before: Vec<_> = keys
        .iter()
        .map(|&(l, t)| lb.pick(LinkId(l), t).unwrap().0)
        .collect();
    lb.set_backend_up(b(removed), false, T0).unwrap();
    let on_removed = before.iter().filter(|&&ip| ip == b(removed)).count();
    let moved = keys
        .iter()
        .zip(&before)
        .filter(|&(&(l, t), &ip)| lb.pick(LinkId(l), t).unwrap().0 != ip)
        .count();
    (moved, on_removed)
}

#[test]
fn maglev_moves_about_one_nth_when_a_backend_goes() {
    for (n, removed) in [(4u8, 2u8), (10, 1), (10, 10)] {
        let (plain, _) = moved_on_removal(Hashing::Plain, n, removed);
        let (maglev, on_removed) = moved_on_removal(Hashing::MAGLEV, n, removed);
        eprintln!(
            "N={n} remove #{removed}: plain moved {plain}, maglev moved {maglev} (minimum {on_removed}) of 100000"
        );
        assert!(
            maglev >= on_removed,
            "every key of the removed backend moves"
        );
        assert!(
            maglev as f64 <= 1.1 * 100_000.0 / f64::from(n),
            "maglev moved {maglev}"
        );
        assert!(
            maglev - on_removed <= 500,
            "maglev moved {} keys of surviving backends",
            maglev - on_removed
        );
        assert!(plain > maglev, "plain moved {plain}");
    }
}

#[test]
fn picks_are_pinned() {
    // The hash has no per-process seed: these choices are the same on every run and machine.
    let lb = ha(8);
    let picks: Vec<u8> = (0..8)
        .map(|i| {
            lb.pick(LinkId(1), tuple(client(i), 50000, F, 443))
                .unwrap()
                .0
                .octets()[3]
        })
        .collect();
    let again: Vec<u8> = (0..8)
        .map(|i| {
            ha(8)
                .pick(LinkId(1), tuple(client(i), 50000, F, 443))
                .unwrap()
                .0
                .octets()[3]
        })
        .collect();
    assert_eq!(picks, again);
    assert_eq!(picks, PINNED);
}

const PINNED: [u8; 8] = [4, 3, 8, 2, 8, 3, 2, 4];

#[test]
fn bad_configurations_are_refused() {
    let ok = || cfg(vec![Rule::ha_ports(F, "web")], backends(2));
    let err = |c: LbConfig| Lb::new(c).unwrap_err();
    let mut c = ok();
    c.frontends.push(Frontend { ip: F });
    assert_eq!(err(c), ConfigError::DuplicateFrontend(F));
    let mut c = ok();
    c.frontends.push(Frontend {
        ip: Ipv4Addr::UNSPECIFIED,
    });
    assert_eq!(err(c), ConfigError::BadAddress(Ipv4Addr::UNSPECIFIED));
    let mut c = ok();
    c.pools.push(Pool::new("web", []));
    assert_eq!(err(c), ConfigError::DuplicatePool("web".into()));
    let mut c = ok();
    c.pools[0].backends.push(Backend { ip: b(1) });
    assert_eq!(
        err(c),
        ConfigError::DuplicateBackend {
            pool: "web".into(),
            ip: b(1)
        }
    );
    let mut c = ok();
    c.pools[0].backends.push(Backend {
        ip: Ipv4Addr::BROADCAST,
    });
    assert_eq!(err(c), ConfigError::BadAddress(Ipv4Addr::BROADCAST));
    let mut c = ok();
    c.rules[0].frontend = Ipv4Addr::new(1, 2, 3, 4);
    assert_eq!(
        err(c),
        ConfigError::UnknownFrontend {
            rule: 0,
            ip: Ipv4Addr::new(1, 2, 3, 4)
        }
    );
    let mut c = ok();
    c.rules[0].pool = "nope".into();
    assert_eq!(err(c), ConfigError::UnknownPool("nope".into()));
    let mut c = ok();
    c.rules = vec![Rule::port(F, 0, 80, "web")];
    assert_eq!(err(c), ConfigError::ZeroPort(0));
    let mut c = ok();
    c.rules = vec![
        Rule::port(F2, 80, 8080, "web"),
        Rule::port(F, 80, 80, "web"),
        Rule::port(F2, 80, 80, "web"),
    ];
    assert_eq!(
        err(c),
        ConfigError::DuplicateRule {
            first: 0,
            second: 2,
            frontend: F2,
            port: 80
        }
    );
    let mut c = ok();
    c.rules.push(Rule::port(F, 80, 80, "web"));
    assert_eq!(err(c), ConfigError::HaPortsConflict(F));
    let mut c = ok();
    c.rules = vec![Rule::port(F, 80, 80, "web"), Rule::ha_ports(F, "web")];
    assert_eq!(err(c), ConfigError::HaPortsConflict(F));
    for size in [0, 1, 2, 65_536, 65_535, (1 << 24) + 43] {
        let mut c = ok();
        c.rules[0].hashing = Hashing::Maglev { table_size: size };
        assert_eq!(err(c), ConfigError::MaglevTableSize(size), "{size}");
    }
    let mut c = ok();
    c.rules[0].hashing = Hashing::Maglev { table_size: 3 };
    assert!(Lb::new(c).is_ok());
    let mut c = ok();
    c.idle_timeout = Duration::ZERO;
    assert_eq!(err(c), ConfigError::ZeroIdleTimeout);
    // Same port on two frontends, a backend in two pools: fine.
    let mut c = ok();
    c.pools.push(Pool::new("api", [b(1), b(9)]));
    c.rules = vec![Rule::port(F, 80, 80, "web"), Rule::port(F2, 80, 80, "api")];
    let mut lb = Lb::new(c).unwrap();
    lb.set_backend_up(b(1), false, T0).unwrap();
    assert_eq!(
        lb.pick(LinkId(0), tuple(client(1), 1, F, 80)).unwrap().0,
        b(2)
    );
    assert_eq!(
        lb.pick(LinkId(0), tuple(client(1), 1, F2, 80)).unwrap().0,
        b(9)
    );
    assert!(
        ConfigError::MaglevTableSize(4)
            .to_string()
            .contains("prime")
    );
}
