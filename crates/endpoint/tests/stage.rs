use std::net::Ipv4Addr;

use plsim_endpoint::{Endpoint, EndpointError, EndpointTable, Refused, VnetId};
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{DropReason, Ipv4Tcp, LinkId, LinkType, SimTime, TcpFlags, checksum, classify};
use proptest::prelude::*;

const PE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
const FE: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 4);
const C: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);

fn frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> (Vec<u8>, Ipv4Tcp) {
    let f = TcpSegment::new(tuple(src, sport, dst, dport), TcpFlags::SYN).to_vec();
    let len = f.len();
    let v = classify(LinkType::Ethernet, &f, len).unwrap();
    (f, v)
}

fn ep(link: u32, vnet: u32, address: Ipv4Addr, approved: bool) -> Endpoint {
    Endpoint {
        link: LinkId(link),
        vnet: VnetId(vnet),
        address,
        frontend: FE,
        approved,
    }
}

#[test]
fn approved_endpoint_rewrites_destination_to_frontend_and_tags_link() {
    let mut t = EndpointTable::new();
    t.insert(ep(1, 0, PE, true)).unwrap();
    let (mut f, mut v) = frame(C, 40000, PE, 443);
    let before = f.clone();
    assert_eq!(
        t.forward(VnetId(0), &mut f, &mut v, SimTime::ZERO),
        Ok(LinkId(1))
    );
    assert_eq!(v.tuple(), tuple(C, 40000, FE, 443));
    // Only the destination address (IP bytes 16..20, frame 30..34) and the checksums changed.
    let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != before[i]).collect();
    assert!(
        changed
            .iter()
            .all(|&i| (30..34).contains(&i) || i == 24 || i == 25 || i == 50 || i == 51),
        "{changed:?}"
    );
    assert_eq!(&f[30..34], &FE.octets());
    assert!(checksum::verify(&f, &v).ok());
    let again = classify(LinkType::Ethernet, &f, f.len()).unwrap();
    assert_eq!(again, v);
}

#[test]
fn pending_unknown_and_other_vnet_are_not_approved_and_untouched() {
    let mut t = EndpointTable::new();
    t.insert(ep(1, 0, PE, false)).unwrap();
    for (vnet, dst) in [(0, PE), (0, Ipv4Addr::new(10, 0, 0, 5)), (1, PE)] {
        let (mut f, mut v) = frame(C, 40000, dst, 443);
        let before = (f.clone(), v);
        assert_eq!(
            t.forward(VnetId(vnet), &mut f, &mut v, SimTime::ZERO),
            Err(Refused {
                link: (vnet == 0 && dst == PE).then_some(LinkId(1))
            })
        );
        assert_eq!((f, v), before);
    }
}

#[test]
fn approval_change_takes_effect_at_its_instant_both_ways() {
    let mut t = EndpointTable::new();
    t.insert(ep(7, 0, PE, true)).unwrap();
    let cut = SimTime::from_secs(30);
    t.set_approved(LinkId(7), false, cut).unwrap();
    let just_before = SimTime::from_nanos(cut.as_nanos() - 1);
    let (mut f, mut v) = frame(C, 1, PE, 80);
    assert_eq!(
        t.forward(VnetId(0), &mut f, &mut v, just_before),
        Ok(LinkId(7))
    );
    let (mut f, mut v) = frame(C, 1, PE, 80);
    assert_eq!(
        t.forward(VnetId(0), &mut f, &mut v, cut),
        Err(Refused {
            link: Some(LinkId(7))
        })
    );
    let (mut r, mut rv) = frame(FE, 80, C, 1);
    assert_eq!(
        t.reverse(LinkId(7), &mut r, &mut rv, just_before),
        Ok(VnetId(0))
    );
    let (mut r, mut rv) = frame(FE, 80, C, 1);
    assert_eq!(
        t.reverse(LinkId(7), &mut r, &mut rv, cut),
        Err(DropReason::NotApproved)
    );
    assert_eq!(rv.tuple().src, FE);
    assert!(!t.get(LinkId(7)).unwrap().approved);
    // Approved again later (a new state from 60 s on).
    t.set_approved(LinkId(7), true, SimTime::from_secs(60))
        .unwrap();
    let (mut f, mut v) = frame(C, 1, PE, 80);
    assert_eq!(
        t.forward(VnetId(0), &mut f, &mut v, SimTime::from_secs(45)),
        Err(Refused {
            link: Some(LinkId(7))
        })
    );
    assert_eq!(
        t.forward(VnetId(0), &mut f, &mut v, SimTime::from_secs(60)),
        Ok(LinkId(7))
    );
}

#[test]
fn two_vnets_with_identical_addresses_never_mix() {
    let mut t = EndpointTable::new();
    t.insert(ep(1, 0, PE, true)).unwrap();
    t.insert(ep(2, 1, PE, true)).unwrap();
    let (mut a, mut av) = frame(C, 5000, PE, 443);
    let (mut b, mut bv) = frame(C, 5000, PE, 443);
    assert_eq!(a, b);
    assert_eq!(
        t.forward(VnetId(0), &mut a, &mut av, SimTime::ZERO),
        Ok(LinkId(1))
    );
    assert_eq!(
        t.forward(VnetId(1), &mut b, &mut bv, SimTime::ZERO),
        Ok(LinkId(2))
    );
    assert_eq!(
        a, b,
        "the packets are identical; only their link ids tell them apart"
    );
    let (mut r, mut rv) = frame(FE, 443, C, 5000);
    assert_eq!(
        t.reverse(LinkId(2), &mut r, &mut rv, SimTime::ZERO),
        Ok(VnetId(1))
    );
    assert_eq!(rv.tuple(), tuple(PE, 443, C, 5000));
    let (mut r, mut rv) = frame(FE, 443, C, 5000);
    assert_eq!(
        t.reverse(LinkId(1), &mut r, &mut rv, SimTime::ZERO),
        Ok(VnetId(0))
    );
    // Rejecting one VNet's connection leaves the other's alone.
    t.set_approved(LinkId(1), false, SimTime::from_secs(1))
        .unwrap();
    let (mut a, mut av) = frame(C, 5000, PE, 443);
    let (mut b, mut bv) = frame(C, 5000, PE, 443);
    assert_eq!(
        t.forward(VnetId(0), &mut a, &mut av, SimTime::from_secs(2)),
        Err(Refused {
            link: Some(LinkId(1))
        })
    );
    assert_eq!(
        t.forward(VnetId(1), &mut b, &mut bv, SimTime::from_secs(2)),
        Ok(LinkId(2))
    );
}

#[test]
fn reverse_from_unknown_link_or_wrong_source_is_no_flow() {
    let mut t = EndpointTable::new();
    t.insert(ep(1, 0, PE, true)).unwrap();
    let (mut r, mut rv) = frame(FE, 443, C, 5000);
    assert_eq!(
        t.reverse(LinkId(9), &mut r, &mut rv, SimTime::ZERO),
        Err(DropReason::NoFlow)
    );
    let (mut r, mut rv) = frame(Ipv4Addr::new(10, 10, 2, 4), 443, C, 5000);
    let before = r.clone();
    assert_eq!(
        t.reverse(LinkId(1), &mut r, &mut rv, SimTime::ZERO),
        Err(DropReason::NoFlow)
    );
    assert_eq!(r, before);
}

#[test]
fn table_errors_and_removal() {
    let mut t = EndpointTable::new();
    t.insert(ep(1, 0, PE, true)).unwrap();
    assert_eq!(
        t.insert(ep(2, 0, PE, true)),
        Err(EndpointError::AddressInUse {
            vnet: VnetId(0),
            address: PE,
            link: LinkId(1)
        })
    );
    assert_eq!(
        t.insert(ep(1, 1, PE, true)),
        Err(EndpointError::DuplicateLink(LinkId(1)))
    );
    assert_eq!(
        t.set_approved(LinkId(3), true, SimTime::ZERO),
        Err(EndpointError::UnknownLink(LinkId(3)))
    );
    assert_eq!(t.lookup(VnetId(0), PE), Some(LinkId(1)));
    assert_eq!(t.remove(LinkId(1)).unwrap().address, PE);
    assert_eq!(t.lookup(VnetId(0), PE), None);
    assert!(t.is_empty());
    assert_eq!(
        t.remove(LinkId(1)),
        Err(EndpointError::UnknownLink(LinkId(1)))
    );
    t.insert(ep(2, 0, PE, true)).unwrap();
    assert_eq!(t.len(), 1);
}

proptest! {
    /// Forward, then the answer in reverse: the consumer gets back exactly the mirror of what it
    /// sent (PE as the server), with valid checksums, whatever the addresses and ports.
    #[test]
    fn reverse_is_the_exact_inverse_of_forward(
        c in any::<u32>(), pe in any::<u32>(), fe in any::<u32>(), cp in any::<u16>(), pp in any::<u16>(), vnet in 0u32..4,
    ) {
        let (c, pe, fe) = (Ipv4Addr::from(c), Ipv4Addr::from(pe), Ipv4Addr::from(fe));
        let mut t = EndpointTable::new();
        t.insert(Endpoint { link: LinkId(3), vnet: VnetId(vnet), address: pe, frontend: fe, approved: true }).unwrap();
        let (mut f, mut v) = frame(c, cp, pe, pp);
        prop_assert_eq!(t.forward(VnetId(vnet), &mut f, &mut v, SimTime::ZERO), Ok(LinkId(3)));
        prop_assert_eq!(v.tuple(), tuple(c, cp, fe, pp));
        prop_assert!(checksum::verify(&f, &v).ok());
        let (mut r, mut rv) = frame(fe, pp, c, cp);
        prop_assert_eq!(t.reverse(LinkId(3), &mut r, &mut rv, SimTime::ZERO), Ok(VnetId(vnet)));
        let (expect, _) = frame(pe, pp, c, cp);
        prop_assert_eq!(r, expect);
    }
}

/// Few endpoints are found by a scan, many through maps: both find exactly the same, before
/// and after removals that cross from one to the other.
#[test]
fn many_endpoints_are_found_as_few_are() {
    for n in [3u32, 8, 9, 40] {
        let mut t = EndpointTable::new();
        let addr = |i: u32| Ipv4Addr::new(10, 0, (i / 200) as u8, 4 + (i % 200) as u8);
        for i in 0..n {
            // Every other endpoint in a second VNet, at the very same addresses.
            t.insert(ep(i + 1, i % 2, addr(i / 2), i % 3 != 0)).unwrap();
        }
        assert_eq!(t.len(), n as usize);
        for i in 0..n {
            assert_eq!(
                t.lookup(VnetId(i % 2), addr(i / 2)),
                Some(LinkId(i + 1)),
                "n {n}"
            );
            assert_eq!(t.get(LinkId(i + 1)).unwrap().address, addr(i / 2));
            let (mut f, mut v) = frame(Ipv4Addr::new(10, 0, 9, 9), 5000, addr(i / 2), 443);
            let got = t.forward(VnetId(i % 2), &mut f, &mut v, SimTime::ZERO);
            if i % 3 != 0 {
                assert_eq!(got, Ok(LinkId(i + 1)));
            } else {
                assert_eq!(
                    got,
                    Err(Refused {
                        link: Some(LinkId(i + 1))
                    })
                );
            }
        }
        // Remove all but two: whatever is left is still found, the rest nowhere.
        for i in 2..n {
            t.remove(LinkId(i + 1)).unwrap();
            assert_eq!(t.lookup(VnetId(i % 2), addr(i / 2)), None);
            assert_eq!(t.get(LinkId(i + 1)), None);
            assert_eq!(
                t.remove(LinkId(i + 1)),
                Err(EndpointError::UnknownLink(LinkId(i + 1)))
            );
        }
        assert_eq!(t.lookup(VnetId(0), addr(0)), Some(LinkId(1)));
        assert_eq!(t.lookup(VnetId(1), addr(0)), Some(LinkId(2)));
    }
}
