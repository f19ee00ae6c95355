//! Any frame on any link type: `classify` never panics; a frame it accepts can be rewritten, and
//! when its checksums were right they stay right and the inverse rewrite restores it exactly
//! (when they are stored in canonical form: see below).
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use plsim_wire::{LinkType, checksum, classify};

fuzz_target!(|input: &[u8]| {
    if input.len() < 9 {
        return;
    }
    let (head, frame) = input.split_at(9);
    let link = match head[0] % 8 {
        0 => LinkType::Ethernet,
        1 => LinkType::LinuxSll,
        2 => LinkType::LinuxSll2,
        3 => LinkType::RawIp,
        4 => LinkType::RawIpv4,
        5 => LinkType::Loopback {
            big_endian: head[1] & 1 == 1,
        },
        6 => LinkType::RawIpv6,
        _ => LinkType::Other(147),
    };
    let snap = usize::from(head[1]) * 4;
    let wire_len = frame.len() + if head[2] & 1 == 1 { snap } else { 0 };
    let Ok(mut v) = classify(link, frame, wire_len) else {
        return;
    };
    let mut f = frame.to_vec();
    let before = checksum::verify(&f, &v);
    let addr = Ipv4Addr::new(head[3], head[4], head[5], head[6]);
    let port = u16::from_be_bytes([head[7], head[8]]);
    let orig = v.tuple();
    v.set_source(&mut f, addr, port);
    v.set_destination(&mut f, addr, port);
    let after = checksum::verify(&f, &v);
    if before.ok() {
        assert!(after.ok(), "a rewrite broke valid checksums");
    }
    v.set_destination(&mut f, orig.dst, orig.dport);
    v.set_source(&mut f, orig.src, orig.sport);
    // A stored 0xFFFF is one's-complement -0: it verifies as 0x0000 (+0) does, and an
    // incremental update (RFC 1624) may hand it back as 0x0000. No sender computes it (a full
    // computation gives +0), so identity is asked of the canonical form only.
    let canonical = |at: usize| frame.get(at..at + 2) != Some(&[0xff, 0xff][..]);
    if before.ip
        && before.tcp == Some(true)
        && canonical(v.l3_offset() + 10)
        && canonical(v.l4_offset() + 16)
    {
        assert_eq!(f, frame, "forward then reverse is the identity");
    }
});
