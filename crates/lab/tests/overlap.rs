//! Two consumers with identical addresses (two VNets on 10.0.0.0/16, each with a private endpoint
//! at 10.0.0.4 and a host at 10.0.1.4) share one service through the whole path without their
//! flows mixing: two connections, two NAT ends, and each answer back to its own VNet.

use std::net::Ipv4Addr;

use plsim_control::Scenario;
use plsim_control::scenario::{Endpoint, Vnet};
use plsim_engine::{Dir, Edge, Meta, Stage};
use plsim_lab::path::Path;
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{FlowTuple, LinkId, LinkType, SimTime, TcpFlags, checksum, classify};

fn scenario() -> Scenario {
    let mut s = Scenario::builtin();
    let twin = Vnet {
        name: "consumer-2".into(),
        ..s.vnets[0].clone()
    };
    let pe2 = Endpoint {
        name: "pe-app-2".into(),
        vnet: "consumer-2".into(),
        nic_name: Some("pe-app-2-nic".into()),
        ..s.endpoints[0].clone()
    };
    s.vnets.push(twin);
    s.endpoints.push(pe2);
    s.validate().expect("a valid scenario");
    s
}

fn packet(t: FlowTuple, flags: u8, vnet: u32, dir: Dir, seq: u64) -> (Vec<u8>, Meta) {
    let frame = TcpSegment {
        seq: 1000,
        payload: b"hello",
        ..TcpSegment::new(t, flags)
    }
    .to_vec();
    let view = classify(LinkType::Ethernet, &frame, frame.len()).unwrap();
    let meta = Meta {
        seq,
        ts: SimTime::from_millis(seq),
        wire_len: frame.len() as u32,
        linktype: LinkType::Ethernet,
        view: Some(view),
        link: LinkId::default(),
        vnet: plsim_wire::VnetId(vnet),
        orig: t,
        dir,
        drop: None,
        own: None,
        stream_start: None,
        handle: plsim_engine::Meta::NO_HANDLE,
    };
    (frame, meta)
}

#[test]
fn identical_consumers_never_mix() {
    let mut p = Path::build(&scenario(), false).unwrap();
    let host = Ipv4Addr::new(10, 0, 1, 4);
    let pe = Ipv4Addr::new(10, 0, 0, 4);
    let consumer = tuple(host, 40000, pe, 443);

    // The same SYN from both VNets.
    let mut sent = Vec::new();
    for vnet in [0u32, 1] {
        let (mut f, mut m) = packet(consumer, TcpFlags::SYN, vnet, Dir::Forward, u64::from(vnet));
        p.endpoint.forward(&mut f, &mut m).unwrap();
        p.lb.forward(&mut f, &mut m).unwrap();
        p.snat.forward(&mut f, &mut m).unwrap();
        let v = m.view.unwrap();
        assert!(checksum::verify(&f, &v).ok());
        sent.push((m.link, v.tuple()));
    }
    let [(link0, out0), (link1, out1)] = [sent[0], sent[1]];
    assert_ne!(link0, link1, "two connections");
    assert!(
        (out0.src, out0.sport, out0.dst, out0.dport)
            != (out1.src, out1.sport, out1.dst, out1.dport),
        "two NAT ends: {out0} / {out1}"
    );
    for out in [out0, out1] {
        assert_eq!(out.src.octets()[..3], [10, 10, 1], "a NAT IP: {out}");
        assert_eq!(out.dst.octets()[..3], [10, 10, 2], "a backend: {out}");
    }

    // Each backend answers its NAT end; each answer goes back to its own VNet, as the original.
    for (k, (want_vnet, out)) in [(0u32, out0), (1, out1)].into_iter().enumerate() {
        let (mut f, mut m) = packet(
            out.reversed(),
            TcpFlags::SYN | TcpFlags::ACK,
            9,
            Dir::Reverse,
            10 + k as u64,
        );
        p.snat.reverse(&mut f, &mut m).unwrap();
        p.lb.reverse(&mut f, &mut m).unwrap();
        p.endpoint.reverse(&mut f, &mut m).unwrap();
        assert_eq!(m.vnet, plsim_wire::VnetId(want_vnet));
        assert_eq!(m.link, if want_vnet == 0 { link0 } else { link1 });
        let v = m.view.unwrap();
        assert_eq!(
            v.tuple(),
            consumer.reversed(),
            "from the private endpoint to the host"
        );
        assert!(checksum::verify(&f, &v).ok());
    }

    // Rejecting one of them leaves the other's flow alone.
    let ev = plsim_lab::Event::Control(plsim_lab::Effect::LinkClosed {
        link: link1,
        service: 0,
        state: plsim_control::ConnectionState::Rejected,
    });
    let t = SimTime::from_secs(1);
    p.endpoint.apply(&ev, t);
    p.lb.apply(&ev, t);
    p.snat.apply(&ev, t);
    for (vnet, ok) in [(0u32, true), (1, false)] {
        let (mut f, mut m) = packet(
            consumer,
            TcpFlags::ACK,
            vnet,
            Dir::Forward,
            20 + u64::from(vnet),
        );
        m.ts = SimTime::from_secs(2);
        let r = p
            .endpoint
            .forward(&mut f, &mut m)
            .and_then(|()| p.lb.forward(&mut f, &mut m))
            .and_then(|()| p.snat.forward(&mut f, &mut m));
        assert_eq!(r.is_ok(), ok, "vnet {vnet}: {r:?}");
    }
}
