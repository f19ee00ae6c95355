//! The stored checksums after every rewrite equal a full recompute, and rewriting back restores
//! the packet byte for byte.

use std::net::Ipv4Addr;

use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::checksum::{self, verify};
use plsim_wire::{FlowTuple, LinkType, TcpFlags, classify};
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn flow() -> impl Strategy<Value = FlowTuple> {
    (addr(), any::<u16>(), addr(), any::<u16>()).prop_map(|(s, sp, d, dp)| tuple(s, sp, d, dp))
}

/// A valid frame, optionally with IPv4 options spliced in (so the TCP header is not at a fixed
/// offset), and its checksums recomputed.
fn frame(
    t: FlowTuple,
    flags: u8,
    seq: u32,
    options: &[u8],
    payload: &[u8],
    ip_opts: usize,
) -> Vec<u8> {
    let mut f = TcpSegment {
        seq,
        ack: seq ^ 0x5a5a_5a5a,
        options,
        payload,
        ..TcpSegment::new(t, flags)
    }
    .to_vec();
    if ip_opts > 0 {
        let words = ip_opts as u8;
        f.splice(34..34, std::iter::repeat_n(1u8, ip_opts * 4)); // NOP options
        f[14] = 0x40 | (5 + words);
        let total = u16::from_be_bytes([f[16], f[17]]) + (ip_opts * 4) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        let len = f.len();
        let v = classify(LinkType::Ethernet, &f, len).unwrap();
        checksum::fill(&mut f, &v);
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn rewrite_keeps_checksums_valid_and_reverses(
        t in flow(),
        flags in any::<u8>(),
        seq in any::<u32>(),
        options in proptest::collection::vec(any::<u8>(), 0..=40),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        ip_opts in 0usize..=10,
        new_addr in addr(),
        new_port in any::<u16>(),
        source in any::<bool>(),
    ) {
        let original = frame(t, flags, seq, &options, &payload, ip_opts);
        let len = original.len();
        let mut f = original.clone();
        let mut v = classify(LinkType::Ethernet, &f, len).unwrap();
        prop_assert!(verify(&f, &v).ok());

        if source { v.set_source(&mut f, new_addr, new_port) } else { v.set_destination(&mut f, new_addr, new_port) }

        // The stored checksums equal a full recompute (pnet's, independent of the incremental
        // update and of `verify`), on a fresh parse of the bytes.
        let fresh = classify(LinkType::Ethernet, &f, len).unwrap();
        prop_assert_eq!(fresh, v, "the view kept in step with the bytes");
        let (l3, l4, end) = (fresh.l3_offset(), fresh.l4_offset(), fresh.l3_offset() + fresh.ip_len());
        prop_assert_eq!(u16::from_be_bytes([f[l3 + 10], f[l3 + 11]]), checksum::ipv4_header(&f[l3..l4]));
        let now = fresh.tuple();
        prop_assert_eq!(u16::from_be_bytes([f[l4 + 16], f[l4 + 17]]), checksum::tcp(&f[l4..end], now.src, now.dst));
        let verdict = verify(&f, &fresh);
        prop_assert_eq!(verdict.ip, true);
        prop_assert_eq!(verdict.tcp, Some(true));
        let expect = if source { FlowTuple { src: new_addr, sport: new_port, ..t } } else { FlowTuple { dst: new_addr, dport: new_port, ..t } };
        prop_assert_eq!(fresh.tuple(), expect);

        // Only the address, the port and the two checksums changed.
        let l3 = v.l3_offset();
        let l4 = v.l4_offset();
        let (a, p) = if source { (l3 + 12, l4) } else { (l3 + 16, l4 + 2) };
        for (i, (x, y)) in original.iter().zip(&f).enumerate() {
            let allowed = (a..a + 4).contains(&i) || (p..p + 2).contains(&i)
                || (l3 + 10..l3 + 12).contains(&i) || (l4 + 16..l4 + 18).contains(&i);
            prop_assert!(allowed || x == y, "byte {} changed", i);
        }

        // The inverse rewrite restores the packet byte for byte.
        if source { v.set_source(&mut f, t.src, t.sport) } else { v.set_destination(&mut f, t.dst, t.dport) }
        prop_assert_eq!(&f, &original);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Rewriting both ends at once writes the very bytes of a source rewrite then a
    /// destination rewrite (checksums included: one fold of the summed deltas is two folds),
    /// and its checksums equal a full recompute.
    #[test]
    fn both_ends_at_once_equal_one_then_the_other(
        t in flow(),
        flags in any::<u8>(),
        seq in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        ip_opts in 0usize..=4,
        src in addr(),
        sport in any::<u16>(),
        dst in addr(),
        dport in any::<u16>(),
    ) {
        let original = frame(t, flags, seq, &[], &payload, ip_opts);
        let len = original.len();
        let (mut one, mut two) = (original.clone(), original.clone());
        let mut v1 = classify(LinkType::Ethernet, &one, len).unwrap();
        let mut v2 = v1;
        v1.set_both(&mut one, src, sport, dst, dport);
        v2.set_source(&mut two, src, sport);
        v2.set_destination(&mut two, dst, dport);
        prop_assert_eq!(&one, &two);
        prop_assert_eq!(v1, v2);
        let fresh = classify(LinkType::Ethernet, &one, len).unwrap();
        prop_assert_eq!(fresh, v1);
        let verdict = verify(&one, &fresh);
        prop_assert_eq!((verdict.ip, verdict.tcp), (true, Some(true)));
    }
}

/// Every length of a last partial word (0 to 7 bytes after the 8-byte words), with every byte
/// set so that a misplaced tail byte changes the sum: the fast sum equals pnet's.
#[test]
fn ones_sum_tail_of_every_length() {
    for len in 0..40usize {
        let data: Vec<u8> = (0..len)
            .map(|i| 0x81u8.wrapping_add((i as u8).wrapping_mul(37)))
            .collect();
        if data.is_empty() {
            assert_eq!(checksum::ones_sum(&data), 0);
            continue;
        }
        let pnet = pnet_packet::util::checksum(&data, usize::MAX);
        assert_eq!(!checksum::ones_sum(&data), pnet, "{len} bytes");
    }
    // An odd last byte is the high byte of a word: [0x12] sums to 0x1200.
    assert_eq!(checksum::ones_sum(&[0x12]), 0x1200);
    assert_eq!(
        checksum::ones_sum(&[0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0x01]),
        0xaccd
    );
}

proptest! {
    /// The fast one's-complement sum agrees with pnet's word-by-word checksum on any bytes.
    #[test]
    fn ones_sum_matches_pnet(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let pnet = pnet_packet::util::checksum(&data, usize::MAX);
        let ours = !checksum::ones_sum(&data);
        // Both complement the folded sum; an all-zero input is the one place they may differ
        // (pnet returns 0 for empty input).
        if data.iter().any(|&b| b != 0) {
            prop_assert_eq!(ours, pnet);
        }
    }

    /// `verify` says right exactly when the stored checksums equal pnet's recompute.
    #[test]
    fn verify_agrees_with_a_full_recompute(t in flow(), payload in proptest::collection::vec(any::<u8>(), 0..200), flip in any::<u16>(), which in 0u8..3) {
        let mut f = frame(t, TcpFlags::ACK, 1, &[], &payload, 0);
        let len = f.len();
        let v = classify(LinkType::Ethernet, &f, len).unwrap();
        let at = match which { 0 => 24, 1 => 50, _ => len - 1 };
        if flip != 0 && at < len {
            f[at] ^= (flip & 0xff) as u8 | 1;
        }
        let (l3, l4, end) = (v.l3_offset(), v.l4_offset(), v.l3_offset() + v.ip_len());
        let ip_ok = u16::from_be_bytes([f[l3 + 10], f[l3 + 11]]) == checksum::ipv4_header(&f[l3..l4]);
        let tcp_ok = u16::from_be_bytes([f[l4 + 16], f[l4 + 17]]) == checksum::tcp(&f[l4..end], t.src, t.dst);
        let verdict = verify(&f, &v);
        prop_assert_eq!(verdict.ip, ip_ok);
        prop_assert_eq!(verdict.tcp, Some(tcp_ok));
    }
}

/// Builds a frame whose TCP checksum is 0x0000 after the rewrite to `to`, then rewrites a frame
/// from `from` to `to` and checks the stored field is 0x0000, as a full recompute gives.
#[test]
fn rewrite_reaching_zero_checksum_stores_zero() {
    let from = tuple(
        Ipv4Addr::new(10, 0, 0, 1),
        1234,
        Ipv4Addr::new(10, 1, 0, 1),
        80,
    );
    let to = tuple(
        Ipv4Addr::new(172, 16, 9, 200),
        61000,
        Ipv4Addr::new(10, 1, 0, 1),
        80,
    );
    // The one's-complement sum with a zero payload word is ~c; adding the word c makes it 0xffff,
    // whose complement, the checksum, is 0x0000.
    let zero = TcpSegment {
        payload: &[0, 0],
        ..TcpSegment::new(to, TcpFlags::ACK)
    }
    .to_vec();
    let c = u16::from_be_bytes([zero[50], zero[51]]);
    let word = c.to_be_bytes();
    let target = TcpSegment {
        payload: &word,
        ..TcpSegment::new(to, TcpFlags::ACK)
    }
    .to_vec();
    assert_eq!(
        &target[50..52],
        &[0, 0],
        "the constructed target has a zero checksum"
    );

    let mut f = TcpSegment {
        payload: &word,
        ..TcpSegment::new(from, TcpFlags::ACK)
    }
    .to_vec();
    assert_ne!(&f[50..52], &[0, 0]);
    let len = f.len();
    let mut v = classify(LinkType::Ethernet, &f, len).unwrap();
    v.set_source(&mut f, to.src, to.sport);
    assert_eq!(f, target);
    assert!(verify(&f, &v).ok());
}

/// A snapped frame (payload not captured) is rewritten consistently: once the payload is put
/// back, the checksum is right.
#[test]
fn snapped_frame_rewrite_matches_the_full_frame() {
    let t = tuple(
        Ipv4Addr::new(192, 0, 2, 1),
        5555,
        Ipv4Addr::new(198, 51, 100, 7),
        443,
    );
    let full = TcpSegment {
        payload: &[7u8; 500],
        ..TcpSegment::new(t, TcpFlags::ACK | TcpFlags::PSH)
    }
    .to_vec();
    let wire = full.len();
    let mut snapped = full[..60].to_vec();
    let mut v = classify(LinkType::Ethernet, &snapped, wire).unwrap();
    assert!(!v.is_complete());
    assert_eq!(
        verify(&snapped, &v).tcp,
        None,
        "a snapped segment can't be recomputed"
    );
    v.set_destination(&mut snapped, Ipv4Addr::new(10, 9, 8, 7), 8443);

    let mut rebuilt = snapped.clone();
    rebuilt.extend_from_slice(&full[60..]);
    let r = classify(LinkType::Ethernet, &rebuilt, wire).unwrap();
    assert_eq!(
        verify(&rebuilt, &r),
        checksum::Verdict {
            ip: true,
            tcp: Some(true)
        }
    );
}

/// TCP options holding one SACK block list of `edges` edges, after `nops` NOP options (one NOP
/// puts the edges at odd offsets of the segment, where they straddle the checksum's words).
fn sack_options(nops: usize, edges: &[u32]) -> Vec<u8> {
    let mut o = vec![1u8; nops];
    o.push(5);
    o.push((2 + edges.len() * 4) as u8);
    for e in edges {
        o.extend_from_slice(&e.to_be_bytes());
    }
    o
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Shifting the sequence number, the acknowledgement number and every SACK edge keeps both
    /// checksums equal to a full recompute (pnet's), wherever the SACK option sits, and
    /// shifting back restores the packet byte for byte.
    #[test]
    fn seq_ack_and_sack_shifts_keep_checksums_and_reverse(
        t in flow(),
        seq in any::<u32>(),
        nops in 0usize..=3,
        edges in proptest::collection::vec(any::<u32>(), 0..=4).prop_map(|mut e| { e.truncate(e.len() / 2 * 2); e }),
        payload in proptest::collection::vec(any::<u8>(), 0..100),
        shift in any::<u32>(),
        ip_opts in 0usize..=3,
    ) {
        let options = if edges.is_empty() { vec![1u8; nops] } else { sack_options(nops, &edges) };
        let original = frame(t, TcpFlags::ACK | TcpFlags::PSH, seq, &options, &payload, ip_opts);
        let len = original.len();
        let mut f = original.clone();
        let v = classify(LinkType::Ethernet, &f, len).unwrap();
        let ack = v.ack(&f);
        v.set_seq(&mut f, seq.wrapping_add(shift));
        v.set_ack(&mut f, ack.wrapping_sub(shift));
        let seen = v.map_sack(&mut f, |e| e.wrapping_sub(shift));
        prop_assert_eq!(seen, edges.len());

        let fresh = classify(LinkType::Ethernet, &f, len).unwrap();
        prop_assert_eq!(fresh.seq(&f), seq.wrapping_add(shift));
        prop_assert_eq!(fresh.ack(&f), ack.wrapping_sub(shift));
        let mut got = Vec::new();
        fresh.map_sack(&mut f.clone(), |e| { got.push(e); e });
        let want: Vec<u32> = edges.iter().map(|e| e.wrapping_sub(shift)).collect();
        prop_assert_eq!(got, want);
        let (l4, end) = (fresh.l4_offset(), fresh.l3_offset() + fresh.ip_len());
        prop_assert_eq!(u16::from_be_bytes([f[l4 + 16], f[l4 + 17]]), checksum::tcp(&f[l4..end], t.src, t.dst));
        prop_assert!(verify(&f, &fresh).ok());

        v.set_seq(&mut f, seq);
        v.set_ack(&mut f, ack);
        v.map_sack(&mut f, |e| e.wrapping_add(shift));
        prop_assert_eq!(&f, &original);
    }
}
