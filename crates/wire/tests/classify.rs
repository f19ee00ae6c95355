//! Classification over every link type, and its edge cases.

use std::net::Ipv4Addr;

use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{DropReason, LinkType, TcpFlags, classify, classify_l3};

fn eth_tcp() -> Vec<u8> {
    let t = tuple(
        Ipv4Addr::new(192, 0, 2, 1),
        40000,
        Ipv4Addr::new(198, 51, 100, 2),
        443,
    );
    TcpSegment {
        payload: b"hello",
        ..TcpSegment::new(t, TcpFlags::SYN)
    }
    .to_vec()
}

fn ip_part() -> Vec<u8> {
    eth_tcp()[14..].to_vec()
}

fn class(link: LinkType, f: &[u8]) -> Result<(), DropReason> {
    classify(link, f, f.len()).map(|_| ())
}

#[test]
fn ethernet_with_and_without_tags() {
    let f = eth_tcp();
    let v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
    assert_eq!(
        (v.l3_offset(), v.l4_offset(), v.payload_offset()),
        (14, 34, 54)
    );
    assert_eq!(v.tuple().sport, 40000);
    assert!(v.is_syn());
    assert_eq!(v.payload(&f), b"hello");
    assert_eq!(v.payload_len(), 5);

    let mut vlan = f.clone();
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(
        classify(LinkType::Ethernet, &vlan, vlan.len())
            .unwrap()
            .l3_offset(),
        18
    );
    let mut qinq = f.clone();
    qinq.splice(12..12, [0x88, 0xa8, 0x00, 0x01, 0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(
        classify(LinkType::Ethernet, &qinq, qinq.len())
            .unwrap()
            .l3_offset(),
        22
    );
    // A tag with nothing after it.
    assert_eq!(
        class(LinkType::Ethernet, &vlan[..15]),
        Err(DropReason::Malformed)
    );
    // MPLS (IPv4 inside labels) is not read as IP.
    let mut mpls = f.clone();
    mpls[12..14].copy_from_slice(&[0x88, 0x47]);
    assert_eq!(class(LinkType::Ethernet, &mpls), Err(DropReason::NonIp));
    // An 802.3 length field with LLC.
    let mut llc = f.clone();
    llc[12..14].copy_from_slice(&[0x00, 0x40]);
    assert_eq!(class(LinkType::Ethernet, &llc), Err(DropReason::NonIp));
}

#[test]
fn linux_cooked_raw_and_loopback() {
    let ip = ip_part();
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    assert_eq!(
        classify(LinkType::LinuxSll, &sll, sll.len())
            .unwrap()
            .l3_offset(),
        16
    );
    sll[14..16].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(
        class(LinkType::LinuxSll, &sll),
        Err(DropReason::Malformed),
        "IPv6 protocol, IPv4 header"
    );
    sll[14..16].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(class(LinkType::LinuxSll, &sll), Err(DropReason::NonIp));

    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    sll2.extend_from_slice(&ip);
    assert_eq!(
        classify(LinkType::LinuxSll2, &sll2, sll2.len())
            .unwrap()
            .l3_offset(),
        20
    );
    assert_eq!(
        class(LinkType::LinuxSll2, &sll2[..19]),
        Err(DropReason::Malformed)
    );

    assert_eq!(
        classify(LinkType::RawIp, &ip, ip.len())
            .unwrap()
            .l3_offset(),
        0
    );
    assert_eq!(
        classify(LinkType::RawIpv4, &ip, ip.len())
            .unwrap()
            .l4_offset(),
        20
    );
    assert_eq!(class(LinkType::RawIpv6, &ip), Err(DropReason::Malformed));
    assert!(classify_l3(&ip).is_ok());

    let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
    v6.extend_from_slice(&[0; 32]);
    assert_eq!(class(LinkType::RawIp, &v6), Err(DropReason::Ipv6));
    assert_eq!(class(LinkType::RawIpv6, &v6), Err(DropReason::Ipv6));

    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&ip);
    assert!(classify(LinkType::Loopback { big_endian: false }, &null, null.len()).is_ok());
    let mut lo = 2u32.to_be_bytes().to_vec();
    lo.extend_from_slice(&ip);
    assert!(classify(LinkType::Loopback { big_endian: true }, &lo, lo.len()).is_ok());
    let mut lo6 = 24u32.to_le_bytes().to_vec();
    lo6.extend_from_slice(&v6);
    assert_eq!(
        class(LinkType::Loopback { big_endian: false }, &lo6),
        Err(DropReason::Ipv6)
    );

    assert_eq!(class(LinkType::Other(147), &ip), Err(DropReason::NonIp));
    assert_eq!(class(LinkType::RawIp, &[]), Err(DropReason::Malformed));
}

#[test]
fn link_type_numbers_round_trip() {
    for n in [0, 1, 101, 108, 113, 228, 229, 276, 147] {
        assert_eq!(LinkType::from_linktype(n).linktype(), n);
    }
    assert_eq!(LinkType::from_linktype(12), LinkType::RawIp);
}

#[test]
fn snapped_frames() {
    let f = eth_tcp();
    let wire = f.len() + 1000;
    // The whole header captured, the IP total length says more is on the wire: fine.
    let mut long = f.clone();
    let total = u16::from_be_bytes([long[16], long[17]]) + 1000;
    long[16..18].copy_from_slice(&total.to_be_bytes());
    assert!(classify(LinkType::Ethernet, &long, wire).is_ok());
    // Without the wire length to back it, the same total length is malformed.
    assert_eq!(class(LinkType::Ethernet, &long), Err(DropReason::Malformed));
    // Snapped inside the fixed TCP header: malformed.
    assert_eq!(
        classify(LinkType::Ethernet, &long[..50], wire).map(|_| ()),
        Err(DropReason::Malformed)
    );
    // Snapped inside the IPv4 header: malformed.
    assert_eq!(
        classify(LinkType::Ethernet, &long[..30], wire).map(|_| ()),
        Err(DropReason::Malformed)
    );
}

#[test]
fn fragments_before_protocol_and_after_header_checks() {
    let mut f = eth_tcp();
    f[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
    assert_eq!(class(LinkType::Ethernet, &f), Err(DropReason::Fragment));
    f[23] = 17; // a UDP fragment is a fragment too
    assert_eq!(class(LinkType::Ethernet, &f), Err(DropReason::Fragment));
    f[14] = 0x43; // but a bad header is malformed first
    assert_eq!(class(LinkType::Ethernet, &f), Err(DropReason::Malformed));
    let mut df = eth_tcp();
    df[20..22].copy_from_slice(&0x4000u16.to_be_bytes()); // DF alone is not a fragment
    assert!(classify(LinkType::Ethernet, &df, df.len()).is_ok());
}
