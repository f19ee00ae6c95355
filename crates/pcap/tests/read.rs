//! The reader on hand-made captures: both pcap byte orders and timestamp precisions, pcapng with
//! several interfaces, skipped blocks, and every kind of bad file.

use std::io::Cursor;

use plsim_pcap::{Format, Reader, Writer};
use plsim_wire::LinkType;

fn pcap(big_endian: bool, nanos: bool, link: u32, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend_from_slice(&w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend_from_slice(&w16(2));
    out.extend_from_slice(&w16(4));
    out.extend_from_slice(&w32(0));
    out.extend_from_slice(&w32(0));
    out.extend_from_slice(&w32(65535));
    out.extend_from_slice(&w32(link));
    for &(sec, frac, data, orig) in records {
        out.extend_from_slice(&w32(sec));
        out.extend_from_slice(&w32(frac));
        out.extend_from_slice(&w32(data.len() as u32));
        out.extend_from_slice(&w32(orig));
        out.extend_from_slice(data);
    }
    out
}

/// (timestamp, link type, bytes, wire length) of each packet.
type Read = Vec<(u64, LinkType, Vec<u8>, usize)>;

fn read_all(bytes: Vec<u8>) -> (Read, bool, Option<String>) {
    let mut r = Reader::from_read("test.cap", Cursor::new(bytes)).expect("opens");
    let mut v = Vec::new();
    while let Some(p) = r.next_frame() {
        v.push((p.ts_ns, p.link, p.data.to_vec(), p.wire_len));
    }
    (v, r.truncated(), r.warning().map(str::to_string))
}

#[test]
fn classic_pcap_both_byte_orders_and_precisions() {
    for big_endian in [false, true] {
        for nanos in [false, true] {
            let recs: &[(u32, u32, &[u8], u32)] = &[(10, 5, b"abcd", 4), (11, 999, b"xyz", 100)];
            let (pkts, truncated, warning) = read_all(pcap(big_endian, nanos, 1, recs));
            let unit = if nanos { 1 } else { 1000 };
            assert_eq!(
                pkts,
                vec![
                    (
                        10_000_000_000 + 5 * unit,
                        LinkType::Ethernet,
                        b"abcd".to_vec(),
                        4
                    ),
                    (
                        11_000_000_000 + 999 * unit,
                        LinkType::Ethernet,
                        b"xyz".to_vec(),
                        100
                    ),
                ],
                "big_endian={big_endian} nanos={nanos}"
            );
            assert!(!truncated);
            assert_eq!(warning, None);
        }
    }
}

#[test]
fn classic_pcap_link_types() {
    let (pkts, ..) = read_all(pcap(false, false, 113, &[(1, 0, b"0123456789abcdef", 16)]));
    assert_eq!(pkts[0].1, LinkType::LinuxSll);
    let (pkts, ..) = read_all(pcap(false, false, 101, &[(1, 0, b"E", 1)]));
    assert_eq!(pkts[0].1, LinkType::RawIp);
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().next_multiple_of(4);
    let len = (12 + padded) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

fn shb() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    block(0x0a0d_0d0a, &body)
}

fn idb(link: u16, snaplen: u32, tsresol: Option<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&link.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&snaplen.to_le_bytes());
    if let Some(r) = tsresol {
        body.extend_from_slice(&9u16.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&[r, 0, 0, 0]);
        body.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    }
    block(1, &body)
}

fn epb(if_id: u32, ts: u64, data: &[u8], orig: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&if_id.to_le_bytes());
    body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&orig.to_le_bytes());
    body.extend_from_slice(data);
    block(6, &body)
}

fn spb(data: &[u8]) -> Vec<u8> {
    let mut body = (data.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(data);
    block(3, &body)
}

#[test]
fn pcapng_interfaces_resolutions_and_skipped_blocks() {
    let mut f = shb();
    f.extend(idb(1, 65535, None)); // microseconds (default)
    f.extend(idb(101, 65535, Some(9))); // nanoseconds
    f.extend(idb(113, 65535, Some(0x80 | 20))); // 2^-20 s
    f.extend(epb(0, 1_500_000, b"eth!", 4));
    f.extend(block(4, &[0, 0, 0, 0])); // a name resolution block: skipped
    f.extend(epb(1, 2_000_000_123, b"raw", 300));
    f.extend(block(0x0bad, b"custom data")); // an unknown block: skipped
    f.extend(epb(2, 3 << 20, b"sll", 3));
    f.extend(block(5, &[0; 12])); // interface statistics: skipped
    f.extend(spb(b"simple"));
    let (pkts, truncated, warning) = read_all(f);
    assert!(!truncated, "{warning:?}");
    assert_eq!(
        pkts,
        vec![
            (1_500_000_000, LinkType::Ethernet, b"eth!".to_vec(), 4),
            (2_000_000_123, LinkType::RawIp, b"raw".to_vec(), 300),
            (3_000_000_000, LinkType::LinuxSll, b"sll".to_vec(), 3),
            // A simple packet block has no timestamp: it keeps the last one.
            (3_000_000_000, LinkType::Ethernet, b"simple".to_vec(), 6),
        ]
    );
    assert!(!truncated, "{warning:?}");
}

#[test]
fn pcapng_new_section_resets_interfaces() {
    let mut f = shb();
    f.extend(idb(1, 65535, None));
    f.extend(epb(0, 1, b"a", 1));
    f.extend(shb());
    f.extend(idb(101, 65535, None));
    f.extend(epb(0, 2, b"b", 1));
    f.extend(epb(1, 3, b"c", 1)); // interface 1 does not exist in the second section
    let (pkts, truncated, warning) = read_all(f);
    assert_eq!(
        pkts.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![LinkType::Ethernet, LinkType::RawIp]
    );
    assert!(truncated);
    assert!(
        warning
            .unwrap()
            .contains("interface 1 which was never described")
    );
}

#[test]
fn last_record_cut_short_yields_every_complete_record() {
    let full = pcap(
        false,
        false,
        1,
        &[(1, 0, b"first", 5), (2, 0, b"second", 6)],
    );
    // Cut inside the second record's data, inside its header, and one stray byte after it.
    for cut in [full.len() - 2, 24 + 16 + 5 + 7] {
        let (pkts, truncated, warning) = read_all(full[..cut].to_vec());
        assert_eq!(pkts.len(), 1, "cut at {cut}");
        assert_eq!(pkts[0].2, b"first");
        assert!(truncated);
        assert!(warning.unwrap().contains("cut short"));
    }
    let mut stray = full.clone();
    stray.push(0);
    let (pkts, truncated, _) = read_all(stray);
    assert_eq!(pkts.len(), 2);
    assert!(truncated);
}

#[test]
fn random_bytes_after_a_valid_header() {
    let mut f = pcap(false, false, 1, &[(1, 0, b"good", 4)]);
    // A record header claiming 3 GB.
    f.extend_from_slice(&[
        0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xbf, 0xff, 0xff, 0xff, 0xbf, 1, 2, 3,
    ]);
    let (pkts, truncated, warning) = read_all(f);
    assert_eq!(pkts.len(), 1);
    assert!(truncated);
    assert!(warning.is_some());

    let mut ng = shb();
    ng.extend(idb(1, 65535, None));
    ng.extend(epb(0, 1, b"good", 4));
    ng.extend_from_slice(b"\x06\x00\x00\x00\x07\x00\x00\x00garbage garbage");
    let (pkts, truncated, _) = read_all(ng);
    assert_eq!(pkts.len(), 1);
    assert!(truncated);
}

#[test]
fn files_that_are_not_captures() {
    let err = |bytes: &[u8]| {
        Reader::from_read("bad.cap", Cursor::new(bytes.to_vec()))
            .err()
            .expect("an error")
            .to_string()
    };
    assert_eq!(err(b""), "bad.cap: empty file, not a capture");
    assert_eq!(err(b"ab"), "bad.cap: only 2 bytes long, not a capture");
    assert_eq!(
        err(b"hello, world\n"),
        "bad.cap: not a pcap or pcapng capture (starts with 68656c6c)"
    );
    assert_eq!(
        err(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]),
        "bad.cap: pcap header cut short"
    );
    assert!(err(&[0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff, 0, 0, 1, 2, 3, 4]).starts_with("bad.cap: "));

    let missing = Reader::open("/nonexistent/plsim/none.pcap").err().unwrap();
    assert_eq!(
        missing.to_string(),
        "/nonexistent/plsim/none.pcap: no such file"
    );
    let dir = Reader::open(std::env::temp_dir()).err().unwrap();
    assert!(
        dir.to_string().ends_with("is a directory, not a capture"),
        "{dir}"
    );
}

#[test]
fn writer_round_trips_through_the_reader() {
    let mut w = Writer::new(Vec::new(), LinkType::Ethernet, 100).unwrap();
    w.write(1_700_000_000_123_456_789, b"0123456789", 10)
        .unwrap();
    w.write(1_700_000_001_000_000_000, &[7u8; 150], 200)
        .unwrap();
    assert_eq!(w.packets(), 2);
    let bytes = w.finish().unwrap();
    let mut r = Reader::from_read("mem", Cursor::new(bytes)).unwrap();
    assert_eq!(r.format(), Format::Pcap);
    let p = r.next_frame().unwrap();
    assert_eq!(
        (p.ts_ns, p.data, p.wire_len),
        (1_700_000_000_123_456_789, &b"0123456789"[..], 10)
    );
    let p = r.next_frame().unwrap();
    assert_eq!(
        (p.data.len(), p.wire_len),
        (100, 200),
        "cut to the snap length"
    );
    assert!(r.next_frame().is_none());
    assert!(!r.truncated());
}

#[test]
fn large_records_grow_the_buffer() {
    let big = vec![0x5a; 3 << 20];
    let mut f = shb();
    f.extend(idb(1, 0, None));
    f.extend(epb(0, 1, &big, big.len() as u32));
    f.extend(epb(0, 2, b"after", 5));
    let (pkts, truncated, warning) = read_all(f);
    assert!(!truncated, "{warning:?}");
    assert_eq!(pkts.len(), 2);
    assert_eq!(pkts[0].2.len(), 3 << 20);
}
