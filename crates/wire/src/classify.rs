use std::net::Ipv4Addr;

use pnet_packet::tcp::TcpFlags;

use crate::checksum::{fold, sum_words};
use crate::link::{L3, LinkType, link_header};
use crate::{DropReason, FlowTuple};

/// A classified IPv4 TCP packet: where its headers are in the frame, and its parsed fields.
///
/// A view is only meaningful for the frame it was classified from. The rewrite methods keep the
/// parsed fields in step with the bytes they change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Tcp {
    /// Offset of the IPv4 header in the frame.
    l3: u16,
    /// Offset of the TCP header in the frame.
    l4: u16,
    /// Offset of the TCP payload in the frame.
    payload: u16,
    /// End of the IPv4 datagram in the frame, clipped to the captured bytes.
    end: u32,
    /// The IPv4 total length field.
    ip_len: u16,
    flags: u8,
    tuple: FlowTuple,
}

/// Classifies one frame: an IPv4 TCP view, or the one reason it would be dropped.
///
/// `wire_len` is the frame's length on the wire (pcap `orig_len`): a frame snapped by the
/// capture (`frame.len() < wire_len`) is fine as long as its headers are all there.
pub fn classify(link: LinkType, frame: &[u8], wire_len: usize) -> Result<Ipv4Tcp, DropReason> {
    let Some((l3, kind)) = link_header(link, frame) else {
        return Err(DropReason::Malformed);
    };
    let wire_len = wire_len.max(frame.len());
    classify_at(kind, frame, l3, wire_len - l3)
}

/// Classifies a bare IP packet (no link header), e.g. one a TCP stack emitted.
pub fn classify_l3(packet: &[u8]) -> Result<Ipv4Tcp, DropReason> {
    classify_at(L3::AnyIp, packet, 0, packet.len())
}

fn classify_at(
    kind: L3,
    frame: &[u8],
    l3: usize,
    l3_wire_len: usize,
) -> Result<Ipv4Tcp, DropReason> {
    let ip = &frame[l3..];
    match kind {
        L3::Other => return Err(DropReason::NonIp),
        L3::Ipv6 | L3::Ipv4 | L3::AnyIp => {
            let Some(&first) = ip.first() else {
                return Err(DropReason::Malformed);
            };
            match (first >> 4, kind) {
                (6, L3::Ipv6 | L3::AnyIp) => return Err(DropReason::Ipv6),
                (4, L3::Ipv4 | L3::AnyIp) => {}
                _ => return Err(DropReason::Malformed),
            }
        }
    }
    if ip.len() < 20 {
        return Err(DropReason::Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || ip.len() < ihl || total < ihl || total > l3_wire_len {
        return Err(DropReason::Malformed);
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        // More-fragments set, or a non-zero offset.
        return Err(DropReason::Fragment);
    }
    if ip[9] != 6 {
        return Err(DropReason::NonTcp);
    }
    let tcp = &ip[ihl..];
    if tcp.len() < 20 || total - ihl < 20 {
        return Err(DropReason::Malformed);
    }
    // A snapped capture may cut the options (never an unsnapped one: `total` fits the frame);
    // the fixed 20 bytes are all the path needs (ports, flags, sequence numbers, checksum).
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > total - ihl {
        return Err(DropReason::Malformed);
    }
    let end = (l3 + total).min(frame.len());
    Ok(Ipv4Tcp {
        l3: l3 as u16,
        l4: (l3 + ihl) as u16,
        payload: (l3 + ihl + doff) as u16,
        end: end as u32,
        ip_len: total as u16,
        flags: tcp[13],
        tuple: FlowTuple {
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            sport: u16::from_be_bytes([tcp[0], tcp[1]]),
            dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        },
    })
}

impl Ipv4Tcp {
    /// Source and destination, address and port.
    #[inline]
    pub fn tuple(&self) -> FlowTuple {
        self.tuple
    }
    /// The TCP flags byte (see [`TcpFlags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.flags
    }
    /// True when every flag of `mask` is set.
    #[inline]
    pub fn has(&self, mask: u8) -> bool {
        self.flags & mask == mask
    }
    /// A SYN without ACK: the opening of a connection.
    #[inline]
    pub fn is_syn(&self) -> bool {
        self.flags & (TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST) == TcpFlags::SYN
    }
    /// Offset of the IPv4 header in the frame.
    pub fn l3_offset(&self) -> usize {
        usize::from(self.l3)
    }
    /// Offset of the TCP header in the frame.
    pub fn l4_offset(&self) -> usize {
        usize::from(self.l4)
    }
    /// Offset of the TCP payload in the frame.
    pub fn payload_offset(&self) -> usize {
        usize::from(self.payload)
    }
    /// The IPv4 total length (header, TCP header and payload, as on the wire).
    pub fn ip_len(&self) -> usize {
        usize::from(self.ip_len)
    }
    /// The TCP payload length on the wire (it may be longer than what was captured).
    pub fn payload_len(&self) -> usize {
        self.ip_len() - (self.payload_offset() - self.l3_offset())
    }
    /// True when the whole IPv4 datagram is in the frame (not snapped by the capture).
    pub fn is_complete(&self) -> bool {
        self.end as usize == self.l3_offset() + self.ip_len()
    }
    /// The TCP sequence number.
    pub fn seq(&self, frame: &[u8]) -> u32 {
        let at = self.l4_offset() + 4;
        u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
    }
    /// The TCP acknowledgement number.
    pub fn ack(&self, frame: &[u8]) -> u32 {
        let at = self.l4_offset() + 8;
        u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
    }
    /// The TCP payload (clipped to what was captured).
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let end = self.end as usize;
        &frame[self.payload_offset().min(end)..end]
    }
    /// The IPv4 datagram (clipped to what was captured).
    pub fn ip_bytes<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        &frame[self.l3_offset()..self.end as usize]
    }

    /// Rewrites the source address and port, updating both checksums incrementally.
    #[inline]
    pub fn set_source(&mut self, frame: &mut [u8], addr: Ipv4Addr, port: u16) {
        let (old_addr, old_port) = (self.tuple.src, self.tuple.sport);
        self.rewrite(frame, 12, 0, old_addr, old_port, addr, port);
        self.tuple.src = addr;
        self.tuple.sport = port;
    }

    /// Rewrites the destination address and port, updating both checksums incrementally.
    #[inline]
    pub fn set_destination(&mut self, frame: &mut [u8], addr: Ipv4Addr, port: u16) {
        let (old_addr, old_port) = (self.tuple.dst, self.tuple.dport);
        self.rewrite(frame, 16, 2, old_addr, old_port, addr, port);
        self.tuple.dst = addr;
        self.tuple.dport = port;
    }

    /// Rewrites the source and the destination (addresses and ports) at once, each checksum
    /// updated once for the whole change: the very bytes [`Ipv4Tcp::set_source`] then
    /// [`Ipv4Tcp::set_destination`] write (a one's-complement sum folds to zero only when it is
    /// zero, so one fold of the summed deltas equals two folds in a row).
    #[inline]
    pub fn set_both(
        &mut self,
        frame: &mut [u8],
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
    ) {
        let l3 = self.l3_offset();
        let l4 = self.l4_offset();
        let old = self.tuple;
        let addr_delta = |o: Ipv4Addr, n: Ipv4Addr| {
            let (o, n) = (o.octets(), n.octets());
            sum_words(&[
                !be(o[0], o[1]),
                !be(o[2], o[3]),
                be(n[0], n[1]),
                be(n[2], n[3]),
            ])
        };
        let addrs = addr_delta(old.src, src) + addr_delta(old.dst, dst);
        let ports =
            u32::from(!old.sport) + u32::from(sport) + u32::from(!old.dport) + u32::from(dport);
        frame[l3 + 12..l3 + 16].copy_from_slice(&src.octets());
        frame[l3 + 16..l3 + 20].copy_from_slice(&dst.octets());
        update_field(frame, l3 + 10, addrs);
        frame[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
        frame[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
        update_field(frame, l4 + 16, addrs + ports);
        self.tuple = FlowTuple {
            src,
            sport,
            dst,
            dport,
        };
    }

    /// Rewrites the TCP sequence number, updating the TCP checksum incrementally.
    #[inline]
    pub fn set_seq(&self, frame: &mut [u8], seq: u32) {
        self.set_word(frame, self.l4_offset() + 4, seq);
    }

    /// Rewrites the TCP acknowledgement number, updating the TCP checksum incrementally.
    #[inline]
    pub fn set_ack(&self, frame: &mut [u8], ack: u32) {
        self.set_word(frame, self.l4_offset() + 8, ack);
    }

    /// Rewrites every edge of every SACK block (TCP option 5) through `map`, updating the TCP
    /// checksum incrementally; returns how many edges it saw. Options the capture snapped are
    /// left alone; a malformed option list ends the walk where it goes wrong.
    pub fn map_sack(&self, frame: &mut [u8], mut map: impl FnMut(u32) -> u32) -> usize {
        let end = self.payload_offset().min(self.end as usize);
        let mut at = self.l4_offset() + 20;
        let mut edges = 0;
        while at < end {
            match frame[at] {
                0 => break, // end of the option list
                1 => at += 1,
                kind => {
                    let Some(&len) = frame.get(at + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || at + len > end {
                        break;
                    }
                    if kind == 5 && (len - 2) % 8 == 0 {
                        let mut e = at + 2;
                        while e < at + len {
                            let old = u32::from_be_bytes([
                                frame[e],
                                frame[e + 1],
                                frame[e + 2],
                                frame[e + 3],
                            ]);
                            self.set_word(frame, e, map(old));
                            edges += 1;
                            e += 4;
                        }
                    }
                    at += len;
                }
            }
        }
        edges
    }

    /// Writes a 32-bit word of the TCP header at `at`, updating the TCP checksum
    /// incrementally. A word at an odd offset of the segment (a SACK option after a lone NOP)
    /// straddles the checksum's 16-bit words: its delta is the aligned one byte-swapped (the
    /// one's-complement sum commutes with swapping bytes, RFC 1071 section 2(B)).
    #[inline]
    fn set_word(&self, frame: &mut [u8], at: usize, new: u32) {
        let old = u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
        let mut delta = sum_words(&[
            !(old >> 16) as u16,
            !old as u16,
            (new >> 16) as u16,
            new as u16,
        ]);
        if (at - self.l4_offset()) % 2 == 1 {
            delta = u32::from(fold(delta).swap_bytes());
        }
        frame[at..at + 4].copy_from_slice(&new.to_be_bytes());
        update_field(frame, self.l4_offset() + 16, delta);
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn rewrite(
        &self,
        frame: &mut [u8],
        addr_at: usize,
        port_at: usize,
        old_addr: Ipv4Addr,
        old_port: u16,
        addr: Ipv4Addr,
        port: u16,
    ) {
        let l3 = self.l3_offset();
        let l4 = self.l4_offset();
        let (o, n) = (old_addr.octets(), addr.octets());
        // The address is in the IPv4 header and in the TCP pseudo-header; the port only in TCP.
        let addr_delta = sum_words(&[
            !be(o[0], o[1]),
            !be(o[2], o[3]),
            be(n[0], n[1]),
            be(n[2], n[3]),
        ]);
        let port_delta = u32::from(!old_port) + u32::from(port);

        frame[l3 + addr_at..l3 + addr_at + 4].copy_from_slice(&n);
        update_field(frame, l3 + 10, addr_delta);

        frame[l4 + port_at..l4 + port_at + 2].copy_from_slice(&port.to_be_bytes());
        update_field(frame, l4 + 16, addr_delta + port_delta);
    }
}

#[inline]
fn be(a: u8, b: u8) -> u16 {
    u16::from_be_bytes([a, b])
}

/// RFC 1624 eqn. 3 on the checksum stored at `at`: `HC' = ~(~HC + ~m + m')`, where `delta` is the
/// sum of `~m + m'` over the changed words.
#[inline]
fn update_field(frame: &mut [u8], at: usize, delta: u32) {
    let hc = u16::from_be_bytes([frame[at], frame[at + 1]]);
    let sum = u32::from(!hc) + delta;
    let new = !fold(sum);
    frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
}
