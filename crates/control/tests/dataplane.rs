//! The control plane driving the endpoint stage: what the pipeline will do, minus lb and snat.

use std::net::Ipv4Addr;

use plsim_control::scenario::{Endpoint, Event, Subnet, Vnet};
use plsim_control::{ConnectionState, ControlPlane, Effect, Scenario, secs_to_time};
use plsim_endpoint::{EndpointTable, VnetId};
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{DropReason, LinkId, LinkType, SimTime, TcpFlags, classify};

/// The endpoint table of a control plane at time zero.
fn table(p: &ControlPlane) -> EndpointTable {
    let mut t = EndpointTable::new();
    for l in p.links() {
        t.insert(plsim_endpoint::Endpoint {
            link: l.id,
            vnet: l.vnet,
            address: l.private_ip,
            frontend: l.frontend,
            approved: l.state == ConnectionState::Approved,
        })
        .unwrap();
    }
    t
}

/// Applies effects as the pipeline will; returns the links whose flows the SNAT must tear down.
fn apply(t: &mut EndpointTable, effects: &[(SimTime, Effect)]) -> Vec<(SimTime, LinkId, usize)> {
    let mut teardown = Vec::new();
    for &(at, e) in effects {
        match e {
            Effect::LinkApproved(l) => t.set_approved(l.id, true, at).unwrap(),
            Effect::LinkClosed { link, service, .. } => {
                t.set_approved(link, false, at).unwrap();
                teardown.push((at, link, service));
            }
            Effect::LinkDeleted(link) => drop(t.remove(link).unwrap()),
            _ => {}
        }
    }
    teardown
}

fn send(
    t: &mut EndpointTable,
    vnet: u32,
    src: Ipv4Addr,
    sport: u16,
    now: SimTime,
) -> Result<LinkId, DropReason> {
    let mut f = TcpSegment::new(
        tuple(src, sport, Ipv4Addr::new(10, 0, 0, 4), 443),
        TcpFlags::ACK,
    )
    .to_vec();
    let len = f.len();
    let mut v = classify(LinkType::Ethernet, &f, len).unwrap();
    t.forward(VnetId(vnet), &mut f, &mut v, now)
        .map_err(DropReason::from)
}

#[test]
fn approved_then_rejected_mid_run_stops_at_that_instant() {
    let mut s = Scenario::builtin();
    s.services[0].auto_approval.clear(); // the request is Pending
    s.timeline = vec![
        Event::Approve {
            at: 5.0,
            endpoint: "pe-app".into(),
        },
        Event::Reject {
            at: 30.0,
            endpoint: "pe-app".into(),
        },
    ];
    s.validate().unwrap();
    let mut p = ControlPlane::new(&s).unwrap();
    let mut t = table(&p);
    let host = Ipv4Addr::new(10, 0, 1, 10);
    // One packet every 100 ms from 0 to 40 s; effects applied in time with the packets.
    let (mut passed, mut dropped, mut teardowns) = (Vec::new(), 0u32, Vec::new());
    for i in 0..=400u64 {
        let now = SimTime::from_millis(i * 100);
        let adv = p.advance(now);
        assert!(adv.errors.is_empty());
        teardowns.extend(apply(&mut t, &adv.effects));
        match send(&mut t, 0, host, 40000 + (i % 7) as u16, now) {
            Ok(link) => passed.push((i, link)),
            Err(r) => {
                assert_eq!(r, DropReason::NotApproved);
                dropped += 1;
            }
        }
    }
    // Pending until 5 s (packets 0..50 dropped), Approved over [5 s, 30 s), Rejected from 30 s on.
    assert_eq!(passed.len(), 250);
    assert_eq!(passed.first(), Some(&(50, LinkId(1))));
    assert_eq!(passed.last(), Some(&(299, LinkId(1))));
    assert_eq!(dropped, 151);
    // The pipeline is told, at 30 s, to tear down link 1 on service 0's SNAT engine.
    assert_eq!(teardowns, vec![(secs_to_time(30.0), LinkId(1), 0)]);
    assert_eq!(
        p.connection_state("pe-app"),
        Some(ConnectionState::Rejected)
    );
}

#[test]
fn effects_applied_late_still_cut_at_the_exact_instant() {
    // A batch covering 29.9 s .. 30.1 s, with the rejection (at 30 s) applied before it.
    let mut s = Scenario::builtin();
    s.timeline = vec![Event::Reject {
        at: 30.0,
        endpoint: "pe-app".into(),
    }];
    let mut p = ControlPlane::new(&s).unwrap();
    let mut t = table(&p);
    apply(&mut t, &p.advance(secs_to_time(30.1)).effects);
    let h = Ipv4Addr::new(10, 0, 1, 1);
    assert_eq!(
        send(&mut t, 0, h, 1, SimTime::from_millis(29_999)),
        Ok(LinkId(1))
    );
    assert_eq!(
        send(&mut t, 0, h, 1, SimTime::from_millis(30_000)),
        Err(DropReason::NotApproved)
    );
}

#[test]
fn two_consumers_with_identical_addresses_share_a_service_without_mixing() {
    let mut s = Scenario::builtin();
    s.services[0].visibility = plsim_control::scenario::Visibility::All;
    s.vnets.push(Vnet {
        name: "consumer-b".into(),
        subscription: "sub-b".into(),
        address_space: "10.0.0.0/16".parse().unwrap(),
        subnets: vec![Subnet {
            name: "endpoints".into(),
            prefix: "10.0.0.0/24".parse().unwrap(),
        }],
    });
    let mut b: Endpoint = s.endpoints[0].clone();
    b.name = "pe-b".into();
    b.subscription = "sub-b".into();
    b.vnet = "consumer-b".into();
    b.nic_name = None;
    s.endpoints.push(b);
    s.timeline = vec![
        Event::Approve {
            at: 1.0,
            endpoint: "pe-b".into(),
        },
        Event::Reject {
            at: 10.0,
            endpoint: "pe-app".into(),
        },
    ];
    s.validate().unwrap();
    let mut p = ControlPlane::new(&s).unwrap();
    assert_eq!(
        p.endpoint("pe-app").unwrap().private_ip,
        p.endpoint("pe-b").unwrap().private_ip
    );
    assert_eq!(p.connection_state("pe-b"), Some(ConnectionState::Pending));
    let mut t = table(&p);
    let h = Ipv4Addr::new(10, 0, 1, 10);
    assert_eq!(send(&mut t, 0, h, 5000, SimTime::ZERO), Ok(LinkId(1)));
    assert_eq!(
        send(&mut t, 1, h, 5000, SimTime::ZERO),
        Err(DropReason::NotApproved)
    );
    apply(&mut t, &p.advance(secs_to_time(1.0)).effects);
    let now = secs_to_time(1.0);
    assert_eq!(send(&mut t, 0, h, 5000, now), Ok(LinkId(1)));
    assert_eq!(send(&mut t, 1, h, 5000, now), Ok(LinkId(2)));
    // Return traffic for each link goes back to its own VNet, as the endpoint's address.
    for (link, vnet) in [(LinkId(1), VnetId(0)), (LinkId(2), VnetId(1))] {
        let mut f = TcpSegment::new(
            tuple(Ipv4Addr::new(10, 10, 0, 4), 443, h, 5000),
            TcpFlags::ACK,
        )
        .to_vec();
        let len = f.len();
        let mut v = classify(LinkType::Ethernet, &f, len).unwrap();
        assert_eq!(t.reverse(link, &mut f, &mut v, now), Ok(vnet));
        assert_eq!(v.tuple(), tuple(Ipv4Addr::new(10, 0, 0, 4), 443, h, 5000));
    }
    // Rejecting consumer A leaves consumer B's traffic alone.
    apply(&mut t, &p.advance(secs_to_time(10.0)).effects);
    let now = secs_to_time(10.0);
    assert_eq!(send(&mut t, 0, h, 5000, now), Err(DropReason::NotApproved));
    assert_eq!(send(&mut t, 1, h, 5000, now), Ok(LinkId(2)));
}
