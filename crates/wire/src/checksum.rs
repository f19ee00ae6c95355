//! Full checksum recomputes (to verify) and the one's-complement helpers the incremental
//! rewrites use.

use std::net::Ipv4Addr;

use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::util;

use crate::Ipv4Tcp;

/// Folds a 32-bit one's-complement sum into 16 bits with end-around carry.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Sums 16-bit words into a 32-bit accumulator (no fold).
#[inline]
pub fn sum_words(words: &[u16]) -> u32 {
    words.iter().map(|&w| u32::from(w)).sum()
}

/// The IPv4 header checksum of `header` (IHL*4 bytes), computed from scratch.
pub fn ipv4_header(header: &[u8]) -> u16 {
    util::checksum(header, 5)
}

/// The TCP checksum of a whole segment between `src` and `dst`, computed from scratch.
pub fn tcp(segment: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    util::ipv4_checksum(segment, 8, &[], &src, &dst, IpNextHeaderProtocols::Tcp)
}

/// What a full recompute says of the checksums stored in one IPv4 TCP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The stored IPv4 header checksum equals a recompute.
    pub ip: bool,
    /// The stored TCP checksum equals a recompute; `None` when the capture snapped the segment,
    /// so it can't be recomputed.
    pub tcp: Option<bool>,
}

impl Verdict {
    /// Both checksums are right (a snapped segment counts as right: it can't be checked).
    pub fn ok(&self) -> bool {
        self.ip && self.tcp != Some(false)
    }
}

/// Recomputes both checksums of a classified packet and compares them with the stored ones.
pub fn verify(frame: &[u8], view: &Ipv4Tcp) -> Verdict {
    let l3 = view.l3_offset();
    let l4 = view.l4_offset();
    let header = &frame[l3..l4];
    let stored_ip = u16::from_be_bytes([header[10], header[11]]);
    let ip = ipv4_header(header) == stored_ip;
    let tcp_ok = view.is_complete().then(|| {
        let segment = &frame[l4..l3 + view.ip_len()];
        let stored = u16::from_be_bytes([segment[16], segment[17]]);
        tcp(segment, view.tuple().src, view.tuple().dst) == stored
    });
    Verdict { ip, tcp: tcp_ok }
}

/// Recomputes and stores both checksums of a classified, complete packet (for builders and for
/// tests that start from a valid packet).
pub fn fill(frame: &mut [u8], view: &Ipv4Tcp) {
    let l3 = view.l3_offset();
    let l4 = view.l4_offset();
    let ip = ipv4_header(&frame[l3..l4]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&ip.to_be_bytes());
    if view.is_complete() {
        let end = l3 + view.ip_len();
        let t = tcp(&frame[l4..end], view.tuple().src, view.tuple().dst);
        frame[l4 + 16..l4 + 18].copy_from_slice(&t.to_be_bytes());
    }
}
