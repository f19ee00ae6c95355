//! Invariants of the workflow under random operation sequences, and of scenario round trips.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use plsim_control::scenario::{Endpoint, PortRange, Visibility};
use plsim_control::{ConnectionState, ControlPlane, Effect, Scenario};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Create(bool),
    Request(usize),
    Approve(usize),
    Reject(usize),
    Remove(usize),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(Op::Create),
        (0usize..6).prop_map(Op::Request),
        (0usize..6).prop_map(Op::Approve),
        (0usize..6).prop_map(Op::Reject),
        (0usize..6).prop_map(Op::Remove),
        (0usize..6).prop_map(Op::Delete),
    ]
}

proptest! {
    #[test]
    fn workflow_invariants(ops in proptest::collection::vec(op(), 1..60), seed in any::<u64>()) {
        let mut s = Scenario::builtin();
        s.seed = seed;
        s.endpoints.clear();
        s.services[0].visibility = Visibility::All;
        s.services[0].auto_approval.clear();
        s.vnets[0].subnets[0].prefix = "10.0.0.0/29".parse().unwrap();
        let mut p = ControlPlane::new(&s).unwrap();
        let mut created = 0usize;
        let mut ever_rejected: HashSet<u32> = HashSet::new();
        // What the data plane believes: approved links.
        let mut approved: HashSet<u32> = HashSet::new();
        let mut seen_links: HashMap<u32, String> = HashMap::new();
        for op in ops {
            let name = |i: usize| format!("pe{i}");
            let effects = match op {
                Op::Create(dynamic) => {
                    let mut e: Endpoint = Scenario::builtin().endpoints[0].clone();
                    e.name = name(created);
                    e.nic_name = None;
                    e.private_ip = if dynamic { None } else { Some(Ipv4Addr::new(10, 0, 0, 4 + (created % 3) as u8)) };
                    created += 1;
                    p.create_endpoint(&e).map(|_| vec![])
                }
                Op::Request(i) => p.request(&name(i)),
                Op::Approve(i) => p.approve(&name(i)),
                Op::Reject(i) => p.reject(&name(i)),
                Op::Remove(i) => p.remove(&name(i)),
                Op::Delete(i) => p.delete_endpoint(&name(i)),
            };
            for e in effects.unwrap_or_default() {
                match e {
                    Effect::LinkApproved(l) => {
                        prop_assert!(!ever_rejected.contains(&l.id.0), "a rejected link was approved");
                        prop_assert!(approved.insert(l.id.0));
                    }
                    Effect::LinkClosed { link, .. } => prop_assert!(approved.remove(&link.0)),
                    Effect::LinkDeleted(link) => prop_assert!(!approved.contains(&link.0)),
                    _ => {}
                }
            }
            // The data plane's view equals the control plane's, and addresses never clash.
            let mut addrs = HashSet::new();
            for i in 0..created {
                let Some(ep) = p.endpoint(&name(i)) else { continue };
                prop_assert!(addrs.insert(ep.private_ip), "two endpoints on {}", ep.private_ip);
                prop_assert!(!"10.0.0.0/29".parse::<plsim_control::net::Prefix>().unwrap().is_reserved(ep.private_ip));
                if let Some(c) = ep.connection {
                    if let Some(prev) = seen_links.insert(c.link.0, ep.name.clone()) {
                        prop_assert_eq!(prev, ep.name.clone(), "link ids are never reused");
                    }
                    if c.state == ConnectionState::Rejected {
                        ever_rejected.insert(c.link.0);
                    }
                    prop_assert_eq!(c.state == ConnectionState::Approved, approved.contains(&c.link.0));
                }
            }
        }
    }

    #[test]
    fn scenarios_round_trip(seed in any::<u64>(), n in 1usize..=8, lo in 1u16..60000, span in 0u16..5000, idle in 4u64..=6000) {
        let mut s = Scenario::builtin();
        s.seed = seed;
        s.services[0].nat_ips.truncate(n);
        s.services[0].ports = PortRange { lo, hi: lo.saturating_add(span) };
        s.services[0].timers.idle = std::time::Duration::from_secs(idle);
        let text = s.to_toml();
        prop_assert_eq!(Scenario::from_toml_str(&text), Ok(s));
    }
}
