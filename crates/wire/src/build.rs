//! Builders of well-formed frames, with valid checksums: for generators, tests and benchmarks.

use std::net::Ipv4Addr;

use crate::{FlowTuple, LinkType, checksum, classify};

/// The MAC address plsim puts on the consumer side of the frames it builds.
pub const CONSUMER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// The MAC address plsim puts on the provider side of the frames it builds.
pub const PROVIDER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// One IPv4 TCP segment to build into an Ethernet II frame.
#[derive(Clone, Debug)]
pub struct TcpSegment<'a> {
    /// Its addresses and ports.
    pub tuple: FlowTuple,
    /// The sequence number.
    pub seq: u32,
    /// The acknowledgement number.
    pub ack: u32,
    /// TCP flags (see [`crate::TcpFlags`]).
    pub flags: u8,
    /// The receive window.
    pub window: u16,
    /// TCP options, already encoded; padded with zeros (EOL) to a multiple of 4 bytes.
    pub options: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
    /// The IPv4 time to live.
    pub ttl: u8,
    /// The IPv4 identification.
    pub ip_id: u16,
    /// The Ethernet source.
    pub src_mac: [u8; 6],
    /// The Ethernet destination.
    pub dst_mac: [u8; 6],
}

impl<'a> TcpSegment<'a> {
    /// A segment with no options and no payload, a window of 65535, TTL 64 and the default MACs.
    pub fn new(tuple: FlowTuple, flags: u8) -> TcpSegment<'a> {
        TcpSegment {
            tuple,
            seq: 0,
            ack: 0,
            flags,
            window: 65535,
            options: &[],
            payload: &[],
            ttl: 64,
            ip_id: 0,
            src_mac: CONSUMER_MAC,
            dst_mac: PROVIDER_MAC,
        }
    }

    /// The length of the Ethernet frame this segment builds into.
    pub fn frame_len(&self) -> usize {
        14 + 20 + 20 + self.options.len().next_multiple_of(4) + self.payload.len()
    }

    /// Appends the Ethernet II frame to `out`, checksums filled in.
    ///
    /// Panics if the segment does not fit in one IPv4 datagram or has over 40 bytes of options.
    pub fn write(&self, out: &mut Vec<u8>) {
        let opt_len = self.options.len().next_multiple_of(4);
        assert!(opt_len <= 40, "TCP options are at most 40 bytes");
        let ip_len = 20 + 20 + opt_len + self.payload.len();
        let ip_len = u16::try_from(ip_len).expect("segment larger than an IPv4 datagram");
        let start = out.len();
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        // IPv4 header, DF set, checksum zero for now.
        out.extend_from_slice(&[0x45, 0x00]);
        out.extend_from_slice(&ip_len.to_be_bytes());
        out.extend_from_slice(&self.ip_id.to_be_bytes());
        out.extend_from_slice(&[0x40, 0x00, self.ttl, 6, 0, 0]);
        out.extend_from_slice(&self.tuple.src.octets());
        out.extend_from_slice(&self.tuple.dst.octets());
        // TCP header.
        out.extend_from_slice(&self.tuple.sport.to_be_bytes());
        out.extend_from_slice(&self.tuple.dport.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        let doff = ((20 + opt_len) / 4) as u8;
        out.extend_from_slice(&[doff << 4, self.flags]);
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        out.extend_from_slice(self.options);
        out.resize(out.len() + opt_len - self.options.len(), 0);
        out.extend_from_slice(self.payload);
        let frame = &mut out[start..];
        let len = frame.len();
        let view = classify(LinkType::Ethernet, frame, len).expect("a built frame classifies");
        checksum::fill(frame, &view);
    }

    /// The frame as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.frame_len());
        self.write(&mut v);
        v
    }
}

/// A shorthand for a tuple.
pub fn tuple(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> FlowTuple {
    FlowTuple {
        src,
        sport,
        dst,
        dport,
    }
}
