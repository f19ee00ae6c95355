//! Deterministic generators of whole captures.
//!
//! * [`mix`]: one frame of every class plsim tells apart, with the expected class of each, so a
//!   test can assert the classification exactly.
//! * [`conversations`]: complete TCP conversations (handshake, request, response, FIN both ways):
//!   8 packets each.
//! * [`syn_burst`]: many concurrent SYNs, each from its own client port, none answered.

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use plsim_pcap::{FrameBuf, Writer};
use plsim_wire::build::{CONSUMER_MAC, PROVIDER_MAC, TcpSegment, tuple};
use plsim_wire::{DropReason, LinkType, TcpFlags};

/// A whole Ethernet frame of a generated capture at `ts_ns`.
fn frame(ts_ns: u64, data: Vec<u8>) -> FrameBuf {
    FrameBuf::new(ts_ns, LinkType::Ethernet, data)
}

/// 2024-01-01T00:00:00Z, the start of every generated capture.
pub const EPOCH_NS: u64 = 1_704_067_200 * 1_000_000_000;

/// Writes Ethernet frames to a classic pcap.
pub fn write_pcap(path: &Path, frames: &[FrameBuf]) -> io::Result<()> {
    let file = io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = Writer::new(file, LinkType::Ethernet, 65535)?;
    for f in frames {
        w.write(f.ts_ns, &f.data, f.wire_len)?;
    }
    w.finish()?;
    Ok(())
}

fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(14 + payload.len());
    v.extend_from_slice(&PROVIDER_MAC);
    v.extend_from_slice(&CONSUMER_MAC);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An IPv4 header (20 bytes, checksum filled) followed by `payload`.
fn ipv4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = plsim_wire::checksum::ipv4_header(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);

fn tcp(flags: u8) -> Vec<u8> {
    TcpSegment::new(tuple(CLIENT, 40000, SERVER, 80), flags).to_vec()
}

/// A frame of every class, each with the class plsim must give it (`Ok(())` for IPv4 TCP).
pub fn mix() -> Vec<(FrameBuf, Result<(), DropReason>)> {
    use DropReason::*;
    // (frame, wire length when snapped, expected class)
    type Made = (Vec<u8>, Option<usize>, Result<(), DropReason>);
    let mut out: Vec<Made> = Vec::new();
    let mut push = |data: Vec<u8>, wire: Option<usize>, class| out.push((data, wire, class));

    // IPv4 TCP: a handshake, data, and the variants that are still fine.
    push(tcp(TcpFlags::SYN), None, Ok(()));
    push(
        TcpSegment {
            seq: 1,
            ack: 1,
            payload: b"GET / HTTP/1.1\r\n\r\n",
            ..TcpSegment::new(
                tuple(CLIENT, 40000, SERVER, 80),
                TcpFlags::ACK | TcpFlags::PSH,
            )
        }
        .to_vec(),
        None,
        Ok(()),
    );
    // 802.1Q-tagged.
    let mut tagged = tcp(TcpFlags::ACK);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    push(tagged, None, Ok(()));
    // Snapped by the capture after the TCP header: still fine.
    let big = TcpSegment {
        payload: &[0xab; 1000],
        ..TcpSegment::new(tuple(CLIENT, 40001, SERVER, 80), TcpFlags::ACK)
    }
    .to_vec();
    let wire = big.len();
    push(big[..54].to_vec(), Some(wire), Ok(()));
    // Ethernet padding after a short IP datagram is fine.
    let mut padded = tcp(TcpFlags::ACK);
    padded.extend_from_slice(&[0; 6]);
    push(padded, None, Ok(()));

    // Not TCP over IPv4.
    let udp = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];
    push(
        ether(0x0800, &ipv4(17, CLIENT, SERVER, 0, &udp)),
        None,
        Err(NonTcp),
    );
    let icmp = [8, 0, 0xf7, 0xfe, 0, 1, 0, 0];
    push(
        ether(0x0800, &ipv4(1, CLIENT, SERVER, 0, &icmp)),
        None,
        Err(NonTcp),
    );
    // IPv6 (TCP inside, still ipv6).
    let mut v6 = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v6.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    push(ether(0x86DD, &v6), None, Err(Ipv6));
    // ARP request.
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&CONSUMER_MAC);
    arp.extend_from_slice(&CLIENT.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&SERVER.octets());
    push(ether(0x0806, &arp), None, Err(NonIp));
    // Fragments of a TCP datagram: first (MF) and second (offset).
    let seg = &tcp(TcpFlags::ACK)[34..];
    push(
        ether(0x0800, &ipv4(6, CLIENT, SERVER, 0x2000, seg)),
        None,
        Err(Fragment),
    );
    push(
        ether(0x0800, &ipv4(6, CLIENT, SERVER, 0x0003, &[0; 24])),
        None,
        Err(Fragment),
    );

    // Malformed, one of each kind.
    let mut bad_version = tcp(TcpFlags::ACK);
    bad_version[14] = 0x55;
    push(bad_version, None, Err(Malformed));
    let mut v6_in_v4 = tcp(TcpFlags::ACK);
    v6_in_v4[14] = 0x65;
    push(v6_in_v4, None, Err(Malformed));
    let mut short_ihl = tcp(TcpFlags::ACK);
    short_ihl[14] = 0x44;
    push(short_ihl, None, Err(Malformed));
    let mut long_total = tcp(TcpFlags::ACK);
    long_total[16..18].copy_from_slice(&1500u16.to_be_bytes());
    push(long_total, None, Err(Malformed));
    let mut short_total = tcp(TcpFlags::ACK);
    short_total[16..18].copy_from_slice(&16u16.to_be_bytes());
    push(short_total, None, Err(Malformed));
    let mut short_doff = tcp(TcpFlags::ACK);
    short_doff[14 + 20 + 12] = 0x40;
    push(short_doff, None, Err(Malformed));
    let mut long_doff = tcp(TcpFlags::ACK);
    long_doff[14 + 20 + 12] = 0xf0;
    push(long_doff, None, Err(Malformed));
    push(tcp(TcpFlags::ACK)[..10].to_vec(), None, Err(Malformed));
    // Snapped inside the TCP header: the headers are not all there.
    let full = tcp(TcpFlags::SYN);
    let wire = full.len();
    push(full[..44].to_vec(), Some(wire), Err(Malformed));

    out.into_iter()
        .enumerate()
        .map(|(i, (data, wire, class))| {
            let mut f = frame(EPOCH_NS + i as u64 * 1_000_000, data);
            if let Some(w) = wire {
                f.wire_len = w;
            }
            (f, class)
        })
        .collect()
}

/// The server every generated conversation talks to.
pub const SERVER_ADDR: Ipv4Addr = SERVER;
/// The server port of generated conversations.
pub const SERVER_PORT: u16 = 443;

/// The client address and port of conversation `i`: 65,536 hosts in 10.200.0.0/16, each using
/// ports from 1024 upwards, so every conversation has its own 4-tuple (for up to 2^32).
fn client(i: u32) -> (Ipv4Addr, u16) {
    let host = i % 65_536;
    let port = 1024 + (i / 65_536) as u16;
    (Ipv4Addr::new(10, 200, (host >> 8) as u8, host as u8), port)
}

/// `n` complete conversations, 8 packets each: SYN, SYN-ACK, ACK, request (100 bytes), response
/// (400 bytes), FIN from the client, FIN-ACK from the server, last ACK. A new conversation starts
/// every `gap_ns`; each lasts `3 * rtt_ns` or so, so about `3 * rtt_ns / gap_ns` are open at once.
pub fn conversations(n: u32, gap_ns: u64, rtt_ns: u64) -> Vec<FrameBuf> {
    let mut frames = Vec::with_capacity(n as usize * 8);
    static REQ: [u8; 100] = [b'q'; 100];
    static RESP: [u8; 400] = [b'r'; 400];
    let (req, resp) = (&REQ, &RESP);
    for i in 0..n {
        let (c, cp) = client(i);
        let t0 = EPOCH_NS + u64::from(i) * gap_ns;
        let up = tuple(c, cp, SERVER, SERVER_PORT);
        let down = up.reversed();
        let cs = 1000u32.wrapping_mul(i);
        let ss = 7_000_000u32.wrapping_add(i);
        let half = rtt_ns / 2;
        let seg = |t: u64, s: TcpSegment<'static>| (t, s);
        let (a, b) = (TcpFlags::ACK, TcpFlags::PSH);
        let from_server = |s: TcpSegment<'static>| TcpSegment {
            src_mac: PROVIDER_MAC,
            dst_mac: CONSUMER_MAC,
            ..s
        };
        let list = [
            seg(
                t0,
                TcpSegment {
                    seq: cs,
                    ..TcpSegment::new(up, TcpFlags::SYN)
                },
            ),
            seg(
                t0 + half,
                from_server(TcpSegment {
                    seq: ss,
                    ack: cs + 1,
                    ..TcpSegment::new(down, TcpFlags::SYN | a)
                }),
            ),
            seg(
                t0 + rtt_ns,
                TcpSegment {
                    seq: cs + 1,
                    ack: ss + 1,
                    ..TcpSegment::new(up, a)
                },
            ),
            seg(
                t0 + rtt_ns + 1000,
                TcpSegment {
                    seq: cs + 1,
                    ack: ss + 1,
                    payload: req,
                    ..TcpSegment::new(up, a | b)
                },
            ),
            seg(
                t0 + rtt_ns + half,
                from_server(TcpSegment {
                    seq: ss + 1,
                    ack: cs + 101,
                    payload: resp,
                    ..TcpSegment::new(down, a | b)
                }),
            ),
            seg(
                t0 + 2 * rtt_ns,
                TcpSegment {
                    seq: cs + 101,
                    ack: ss + 401,
                    ..TcpSegment::new(up, TcpFlags::FIN | a)
                },
            ),
            seg(
                t0 + 2 * rtt_ns + half,
                from_server(TcpSegment {
                    seq: ss + 401,
                    ack: cs + 102,
                    ..TcpSegment::new(down, TcpFlags::FIN | a)
                }),
            ),
            seg(
                t0 + 3 * rtt_ns,
                TcpSegment {
                    seq: cs + 102,
                    ack: ss + 402,
                    ..TcpSegment::new(up, a)
                },
            ),
        ];
        for (t, s) in list {
            frames.push(frame(t, s.to_vec()));
        }
    }
    frames.sort_by_key(|f| f.ts_ns);
    frames
}

/// `n` SYNs from distinct client ends to one server, 1 µs apart, none answered.
pub fn syn_burst(n: u32) -> Vec<FrameBuf> {
    (0..n)
        .map(|i| {
            let (c, cp) = client(i);
            let s = TcpSegment {
                seq: i.wrapping_mul(7919),
                ..TcpSegment::new(tuple(c, cp, SERVER, SERVER_PORT), TcpFlags::SYN)
            };
            frame(EPOCH_NS + u64::from(i) * 1000, s.to_vec())
        })
        .collect()
}
