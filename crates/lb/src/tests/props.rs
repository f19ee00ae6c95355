//! Property tests: byte-exact rewrites, and the flow table's invariants under random events.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::*;
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkType, TcpFlags, checksum, classify};
use proptest::prelude::*;

const F: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 4);

fn backend(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 1, i)
}

fn lb_with(kind: RuleKind, distribution: Distribution, hashing: Hashing, n: u8) -> Lb {
    Lb::new(LbConfig {
        frontends: vec![Frontend { ip: F }],
        pools: vec![Pool::new("p", (1..=n).map(backend))],
        rules: vec![Rule {
            kind,
            distribution,
            hashing,
            ..Rule::ha_ports(F, "p")
        }],
        ..LbConfig::default()
    })
    .unwrap()
}

fn segment_strategy() -> impl Strategy<Value = (u32, u32, u8, u16, Vec<u8>, u8, u16)> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        1..=255u8,
        any::<u16>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Forward gives exactly the packet the consumer sent, addressed to B:bp; the reply gives
    /// exactly the backend's packet, from F:fp. Both compared with frames built from scratch
    /// (full checksums), so the incremental checksums equal a recompute.
    #[test]
    fn forward_then_reply_is_byte_exact(
        link in any::<u32>(),
        client in any::<u32>().prop_filter("unicast", |&c| c != 0 && c != u32::MAX),
        cport in 1..=u16::MAX,
        fport in 1..=u16::MAX,
        port_rule in any::<bool>(),
        bport in 1..=u16::MAX,
        (seq, ack, flags, window, payload, ttl, ip_id) in segment_strategy(),
        (rseq, rack, rflags, rwindow, rpayload, rttl, rip_id) in segment_strategy(),
        hashing in prop_oneof![Just(Hashing::Plain), Just(Hashing::Maglev { table_size: 251 })],
    ) {
        let kind = if port_rule { RuleKind::Port { frontend_port: fport, backend_port: bport } } else { RuleKind::HaPorts };
        let mut lb = lb_with(kind, Distribution::FiveTuple, hashing, 5);
        let c = Ipv4Addr::from(client);
        let seg = |t, seq, ack, flags, window, payload: &[u8], ttl, ip_id| {
            TcpSegment { seq, ack, window, payload, ttl, ip_id, ..TcpSegment::new(t, flags) }.to_vec()
        };

        let mut f = seg(tuple(c, cport, F, fport), seq, ack, flags, window, &payload, ttl, ip_id);
        let mut v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
        let fw = lb.forward(LinkId(link), &mut f, &mut v, SimTime::ZERO).unwrap();
        let expected_port = if port_rule { bport } else { fport };
        prop_assert_eq!(fw.port, expected_port);
        prop_assert!((1..=5).map(backend).any(|b| b == fw.backend));
        prop_assert_eq!(&f, &seg(tuple(c, cport, fw.backend, fw.port), seq, ack, flags, window, &payload, ttl, ip_id));
        prop_assert!(checksum::verify(&f, &v).ok());
        prop_assert_eq!(v, classify(LinkType::Ethernet, &f, f.len()).unwrap());

        let mut r = seg(tuple(fw.backend, fw.port, c, cport), rseq, rack, rflags, rwindow, &rpayload, rttl, rip_id);
        let mut rv = classify(LinkType::Ethernet, &r, r.len()).unwrap();
        lb.reverse(LinkId(link), &mut r, &mut rv, SimTime::ZERO).unwrap();
        prop_assert_eq!(&r, &seg(tuple(F, fport, c, cport), rseq, rack, rflags, rwindow, &rpayload, rttl, rip_id));
        prop_assert!(checksum::verify(&r, &rv).ok());
        prop_assert_eq!(rv, classify(LinkType::Ethernet, &r, r.len()).unwrap());
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// A packet of flow `i` (its first one opens it).
    Packet(u8),
    /// A reply of flow `i`.
    Reply(u8),
    SetUp(u8, bool),
    /// Advance the clock by this many seconds and expire.
    Tick(u16),
    Forget(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..40u8).prop_map(Op::Packet),
        3 => (0..40u8).prop_map(Op::Reply),
        1 => (1..=6u8, any::<bool>()).prop_map(|(b, up)| Op::SetUp(b, up)),
        1 => (0..200u16).prop_map(Op::Tick),
        1 => (0..3u8).prop_map(Op::Forget),
    ]
}

fn flow_of(i: u8) -> (LinkId, FlowTuple) {
    (
        LinkId(u32::from(i % 3)),
        tuple(
            Ipv4Addr::new(10, 0, 0, i / 3 + 1),
            1000 + u16::from(i),
            F,
            80 + u16::from(i % 2),
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Against a model: a flow keeps its backend until it ends; a new flow never goes to a
    /// down backend or one outside the pool; replies match exactly the live flows; the counters
    /// add up.
    #[test]
    fn the_flow_table_keeps_its_invariants(
        ops in proptest::collection::vec(op(), 1..200),
        maglev in any::<bool>(),
        reset in any::<bool>(),
    ) {
        let hashing = if maglev { Hashing::Maglev { table_size: 101 } } else { Hashing::Plain };
        let mut lb = Lb::new(LbConfig {
            frontends: vec![Frontend { ip: F }],
            pools: vec![Pool::new("p", (1..=3).map(backend))],
            rules: vec![Rule { hashing, ..Rule::ha_ports(F, "p") }],
            idle_timeout: Duration::from_secs(240),
            on_backend_down: if reset { OnBackendDown::Reset } else { OnBackendDown::Keep },
        })
        .unwrap();
        let mut now = 0u64;
        let mut up: HashMap<Ipv4Addr, bool> = (1..=6).map(|i| (backend(i), true)).collect();
        let member: HashMap<Ipv4Addr, bool> = (1..=6).map(|i| (backend(i), i <= 3)).collect();
        // flow index -> (backend, last packet second)
        let mut model: HashMap<u8, (Ipv4Addr, u64)> = HashMap::new();
        let known: std::collections::HashSet<u8> = (1..=3).collect();
        let mut packets = 0u64;
        let mut replies = 0u64;
        for op in ops {
            let t = SimTime::from_secs(now);
            match op {
                Op::Packet(i) => {
                    let (link, ct) = flow_of(i);
                    let mut f = TcpSegment::new(ct, TcpFlags::ACK).to_vec();
                    let mut v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
                    let r = lb.forward(link, &mut f, &mut v, t);
                    // The model's flow may have expired in the table already (lazily); that
                    // is a new flow, as is any flow the model does not know.
                    let live = model.get(&i).filter(|&&(_, last)| now < last + 240);
                    match (live, r) {
                        (Some(&(b, _)), Ok(fw)) => {
                            prop_assert_eq!(fw.backend, b);
                            prop_assert!(!fw.new_flow);
                        }
                        (Some(_), Err(e)) => prop_assert!(false, "live flow dropped: {:?}", e),
                        (None, Ok(fw)) => {
                            prop_assert!(fw.new_flow);
                            prop_assert!(up[&fw.backend] && member[&fw.backend], "{:?}", fw);
                        }
                        (None, Err(e)) => {
                            prop_assert_eq!(e, DropReason::NoBackend);
                            prop_assert!(!member.iter().any(|(b, &m)| m && up[b]));
                        }
                    }
                    match r {
                        Ok(fw) => { model.insert(i, (fw.backend, now)); packets += 1; }
                        Err(_) => { model.remove(&i); }
                    }
                }
                Op::Reply(i) => {
                    let (link, ct) = flow_of(i);
                    let b = model.get(&i).map_or(backend(1), |&(b, _)| b);
                    let mut f = TcpSegment::new(tuple(b, ct.dport, ct.src, ct.sport), TcpFlags::ACK).to_vec();
                    let mut v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
                    let r = lb.reverse(link, &mut f, &mut v, t);
                    let live = model.get(&i).is_some_and(|&(_, last)| now < last + 240);
                    prop_assert_eq!(r.is_ok(), live);
                    if live {
                        model.get_mut(&i).unwrap().1 = now;
                        prop_assert_eq!(v.tuple(), ct.reversed());
                        replies += 1;
                    }
                }
                Op::SetUp(i, u) => {
                    let r = lb.set_backend_up(backend(i), u, t);
                    if !known.contains(&i) {
                        prop_assert_eq!(r, Err(ConfigError::UnknownBackend(backend(i))));
                        continue;
                    }
                    let closed = r.unwrap();
                    model.retain(|_, &mut (_, last)| now < last + 240);
                    let was = up.insert(backend(i), u).unwrap();
                    if reset && was && !u {
                        let mut expect: Vec<_> = model.iter().filter(|&(_, &(b, _))| b == backend(i)).map(|(&k, _)| flow_of(k)).collect();
                        let mut got: Vec<_> = closed.iter().map(|c| (c.link, c.consumer)).collect();
                        expect.sort();
                        got.sort();
                        prop_assert_eq!(got, expect);
                        model.retain(|_, &mut (b, _)| b != backend(i));
                    } else {
                        prop_assert!(closed.is_empty());
                    }
                }
                Op::Tick(s) => {
                    now += u64::from(s);
                    lb.expire(SimTime::from_secs(now));
                    model.retain(|_, &mut (_, last)| now < last + 240);
                    prop_assert_eq!(lb.active_flows(), model.len());
                }
                Op::Forget(l) => {
                    let n = lb.forget_link(LinkId(u32::from(l)));
                    let before = model.len();
                    model.retain(|&k, &mut (_, last)| flow_of(k).0 != LinkId(u32::from(l)) || now >= last + 240);
                    // Flows idle past the timeout but not yet collected are removed (and
                    // counted) too.
                    prop_assert!(n >= before - model.len());
                    model.retain(|&k, &mut (_, last)| flow_of(k).0 != LinkId(u32::from(l)) && now < last + 240);
                }
            }
            let s = lb.stats();
            prop_assert_eq!(s.flows.active as usize, lb.active_flows());
            prop_assert_eq!(s.backends.iter().map(|b| b.active_flows).sum::<u64>(), s.flows.active);
            prop_assert_eq!(
                s.flows.created - s.flows.expired - s.flows.reset - s.flows.forgotten - s.flows.replaced,
                s.flows.active
            );
            prop_assert_eq!(s.backends.iter().map(|b| b.packets).sum::<u64>(), packets);
            prop_assert_eq!(s.backends.iter().map(|b| b.reply_packets).sum::<u64>(), replies);
            prop_assert_eq!(s.rules[0].hits, packets);
            prop_assert_eq!(s.flows.created, s.backends.iter().map(|b| b.flows).sum::<u64>());
        }
    }
}
