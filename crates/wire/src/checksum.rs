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

/// The one's-complement sum of `data` read as big-endian 16-bit words (an odd last byte is the
/// high byte of a last word), folded to 16 bits and not complemented.
///
/// It adds 64-bit words with end-around carry and folds at the end (RFC 1071's parallel
/// summation), several times faster than summing 16-bit words one by one.
pub fn ones_sum(data: &[u8]) -> u16 {
    #[inline]
    fn add(acc: u64, w: u64) -> u64 {
        let (s, carry) = acc.overflowing_add(w);
        s + u64::from(carry)
    }
    let mut acc = 0u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc = add(acc, u64::from_be_bytes(c.try_into().expect("8 bytes")));
    }
    // The last 0 to 7 bytes as the high bytes of one more word, shifted in register (a copy
    // into a zeroed array went through `memcpy` and a stalled store-to-load forward: a third
    // of the replay's checksum time).
    let last = chunks
        .remainder()
        .iter()
        .zip((0..8).rev())
        .fold(0u64, |w, (&b, k)| w | u64::from(b) << (8 * k));
    acc = add(acc, last);
    let folded = (acc >> 32) + (acc & 0xffff_ffff);
    let folded = (folded >> 32) + (folded & 0xffff_ffff);
    fold(folded as u32)
}

/// Checks both checksums of a classified packet: a packet is right when the one's-complement sum
/// over it (with the pseudo-header for TCP) is 0xffff. This is the fast check for the packet
/// path; [`ipv4_header`] and [`tcp`] are the independent full recomputes the tests compare with.
pub fn verify(frame: &[u8], view: &Ipv4Tcp) -> Verdict {
    let l3 = view.l3_offset();
    let l4 = view.l4_offset();
    let ip = ones_sum(&frame[l3..l4]) == 0xffff;
    let tcp_ok = view.is_complete().then(|| {
        let segment = &frame[l4..l3 + view.ip_len()];
        let t = view.tuple();
        let (s, d) = (t.src.octets(), t.dst.octets());
        let pseudo = sum_words(&[
            u16::from_be_bytes([s[0], s[1]]),
            u16::from_be_bytes([s[2], s[3]]),
            u16::from_be_bytes([d[0], d[1]]),
            u16::from_be_bytes([d[2], d[3]]),
            6,
            segment.len() as u16,
        ]);
        fold(pseudo + u32::from(ones_sum(segment))) == 0xffff
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
