//! PROXY protocol v2, the service option `enable_proxy_protocol` (Azure's "TCP proxy v2"): the
//! backend side of every connection starts with a header naming the consumer and the private
//! endpoint's link id.
//!
//! # The header
//!
//! [`header`] writes it as the PROXY protocol specification (HAProxy, version 2) and Azure define
//! it, 36 bytes:
//!
//! ```text
//! 0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a   the signature
//! 21                                    version 2, command PROXY
//! 11                                    TCP over IPv4
//! 00 14                                 20 bytes follow
//! C C C C  PE PE PE PE  cp cp  pp pp    source: the consumer as the private endpoint received
//!                                       it; destination: the private endpoint
//! ee 00 05 01 L L L L                   TLV PP2_TYPE_AZURE, 5 bytes: subtype
//!                                       PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID, then the link
//!                                       id as a little-endian u32
//! ```
//!
//! # One stream on each side
//!
//! The header is its own segment at sequence number ISN + 1: it takes the first [`HEADER_LEN`]
//! bytes of the backend-side stream. It goes with the first packet of the connection after the
//! SYN: just after it when that packet is the handshake's last ACK (a bare ACK at ISN + 1, which
//! passes as it is: the backend then sees the handshake end, then the header, as from a proxy
//! that writes the header once connected); just before it when it carries data or a FIN (that
//! packet then moves up by the header's length). From then on every consumer packet's sequence
//! number is [`HEADER_LEN`] higher on the backend side, and
//! every backend packet's acknowledgement number and SACK edges are [`HEADER_LEN`] lower on the
//! consumer side (an acknowledgement inside the header reads as ISN + 1). The backend sees one
//! valid stream that starts with the header; the consumer sees exactly its own. Checksums are
//! updated incrementally, as every rewrite.
//!
//! Each SYN from the consumer starts a connection and makes a header due anew (a SYN on a live
//! flow, a tuple reused at once, is a new connection to the backend, as to the replay's backend
//! emulation). A flow opened without its SYN (`pickup`) gets no header: where its stream starts
//! is unknown. Neither does a connection whose first packet after the SYN is a RST.
//! [`crate::Snat::proxy_sent`] says, for each packet passed, whether its flow's header went and
//! where it starts, so that a backend emulation can acknowledge it exactly as the engine
//! expects. The path never loses
//! the header segment (a simulated path loses nothing), so it never needs sending again.

use std::net::SocketAddrV4;

use plsim_wire::{Ipv4Tcp, LinkId, Place, TcpFlags, checksum};

/// The length of the header plsim sends: 16 bytes of preamble, 12 of IPv4 addresses and ports,
/// 8 of the link-id TLV.
pub const HEADER_LEN: usize = 36;

/// The PROXY protocol v2 signature.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The TLV type of Azure's private endpoint information.
pub const PP2_TYPE_AZURE: u8 = 0xEE;

/// The subtype of that TLV holding the private endpoint's link id.
pub const PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID: u8 = 0x01;

/// The PROXY protocol v2 header of a connection from `consumer` (as the private endpoint received
/// it) to the private endpoint `endpoint`, of the connection `link`.
pub fn header(consumer: SocketAddrV4, endpoint: SocketAddrV4, link: LinkId) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..12].copy_from_slice(&SIGNATURE);
    h[12] = 0x21; // version 2, PROXY
    h[13] = 0x11; // AF_INET, STREAM
    h[14..16].copy_from_slice(&((HEADER_LEN - 16) as u16).to_be_bytes());
    h[16..20].copy_from_slice(&consumer.ip().octets());
    h[20..24].copy_from_slice(&endpoint.ip().octets());
    h[24..26].copy_from_slice(&consumer.port().to_be_bytes());
    h[26..28].copy_from_slice(&endpoint.port().to_be_bytes());
    h[28] = PP2_TYPE_AZURE;
    h[29..31].copy_from_slice(&5u16.to_be_bytes());
    h[31] = PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID;
    h[32..36].copy_from_slice(&link.0.to_le_bytes());
    h
}

const SHIFT: u32 = HEADER_LEN as u32;

/// Where a flow's header stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// No header: opened without its SYN, or reset before any other packet.
    #[default]
    None,
    /// The SYN passed; the header goes before the next packet.
    Awaiting,
    /// The header went: the streams are shifted.
    Sent,
}

/// One flow's header state: 8 bytes, kept beside the flow table only when the option is on.
#[derive(Clone, Copy, Debug, Default)]
struct Shift {
    /// ISN + 1 of the consumer's stream: where the header starts.
    start: u32,
    phase: Phase,
}

/// The header segment due before the packet the last forward call passed.
#[derive(Clone, Copy, Debug)]
struct Due {
    start: u32,
    consumer: SocketAddrV4,
    link: LinkId,
    place: Place,
}

/// The PROXY protocol state of an engine: per flow slot, and the segment due.
#[derive(Debug, Default)]
pub(crate) struct Proxy {
    flows: Vec<Shift>,
    due: Option<Due>,
    /// Where the header starts in the stream of the flow of the packet the last forward call
    /// passed, when its header went.
    sent: Option<u32>,
}

impl Proxy {
    /// Nothing is due (every packet call starts so).
    pub(crate) fn clear_due(&mut self) {
        self.due = None;
        self.sent = None;
    }

    /// Where the header starts in the backend-side stream of the last passed packet's flow,
    /// once the header went (with that packet or before).
    pub(crate) fn sent(&self) -> Option<u32> {
        self.sent
    }

    fn slot(&mut self, idx: u32) -> &mut Shift {
        let i = idx as usize;
        if self.flows.len() <= i {
            self.flows.resize(i + 1, Shift::default());
        }
        &mut self.flows[i]
    }

    /// A consumer packet of flow `idx` passed (`opened`: it opened or reopened the flow);
    /// `frame` is still `C:cp -> B:bp`. Shifts its sequence number when the header went or goes
    /// now, and notes the header as due.
    pub(crate) fn forward(
        &mut self,
        idx: u32,
        opened: bool,
        link: LinkId,
        frame: &mut [u8],
        view: &Ipv4Tcp,
    ) {
        self.due = None;
        let syn = view.is_syn();
        let seq = view.seq(frame);
        let s = self.slot(idx);
        if opened || syn {
            // A SYN starts a connection (again: the backend takes a SYN on a live tuple for a
            // new one, as the replay's backends do), and its header is due anew.
            *s = Shift {
                start: seq.wrapping_add(1),
                phase: if syn { Phase::Awaiting } else { Phase::None },
            };
        }
        if syn {
            return;
        }
        match s.phase {
            Phase::Awaiting if view.flags() & TcpFlags::RST != 0 => s.phase = Phase::None,
            Phase::Awaiting => {
                s.phase = Phase::Sent;
                // A bare ACK keeps its place (ISN + 1) and the header follows it; anything
                // with data or a FIN comes after the header.
                let bare = view.payload_len() == 0 && view.flags() & TcpFlags::FIN == 0;
                let t = view.tuple();
                self.due = Some(Due {
                    start: s.start,
                    consumer: SocketAddrV4::new(t.src, t.sport),
                    link,
                    place: if bare { Place::After } else { Place::Before },
                });
                if !bare {
                    view.set_seq(frame, seq.wrapping_add(SHIFT));
                }
            }
            Phase::Sent => view.set_seq(frame, seq.wrapping_add(SHIFT)),
            Phase::None => {}
        }
        let s = self.flows[idx as usize];
        if s.phase == Phase::Sent {
            self.sent = Some(s.start);
        }
    }

    /// A backend packet of flow `idx` passed: its acknowledgement number and SACK edges come
    /// back to the consumer's stream when the header went.
    pub(crate) fn reverse(&self, idx: u32, frame: &mut [u8], view: &Ipv4Tcp) {
        let Some(&Shift { start, phase }) = self.flows.get(idx as usize) else {
            return;
        };
        if phase != Phase::Sent || view.flags() & TcpFlags::ACK == 0 {
            return;
        }
        let back = |a: u32| {
            let past = a.wrapping_sub(start) as i32;
            if past >= SHIFT as i32 {
                a.wrapping_sub(SHIFT)
            } else if past > 0 {
                start // inside the header: nothing of the consumer's stream yet
            } else {
                a
            }
        };
        let ack = view.ack(frame);
        let mapped = back(ack);
        if mapped != ack {
            view.set_ack(frame, mapped);
        }
        if view.payload_offset() > view.l4_offset() + 20 {
            view.map_sack(frame, back);
        }
    }

    /// Writes the header segment due (if any) into `out` and says where it goes: the passed
    /// packet's link, IPv4 and TCP headers (after the rewrite, so `N:np -> B:bp`), sequence
    /// number ISN + 1, ACK and PSH, then the header; both checksums computed in full.
    pub(crate) fn segment(
        &self,
        endpoint: SocketAddrV4,
        frame: &[u8],
        view: &Ipv4Tcp,
        out: &mut Vec<u8>,
    ) -> Option<Place> {
        let due = self.due?;
        let (l3, l4, pay) = (view.l3_offset(), view.l4_offset(), view.payload_offset());
        if pay > frame.len() {
            return None; // the capture snapped the passed packet's TCP header
        }
        out.clear();
        out.extend_from_slice(&frame[..pay]);
        out.extend_from_slice(&header(due.consumer, endpoint, due.link));
        let ip_len = (out.len() - l3) as u16;
        out[l3 + 2..l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
        out[l4 + 4..l4 + 8].copy_from_slice(&due.start.to_be_bytes());
        out[l4 + 13] = view.flags() & TcpFlags::ACK | TcpFlags::PSH;
        out[l4 + 18..l4 + 20].copy_from_slice(&[0, 0]); // no urgent pointer
        let ip = checksum::ipv4_header(&out[l3..l4]);
        out[l3 + 10..l3 + 12].copy_from_slice(&ip.to_be_bytes());
        let t = view.tuple();
        let tcp = checksum::tcp(&out[l4..], t.src, t.dst);
        out[l4 + 16..l4 + 18].copy_from_slice(&tcp.to_be_bytes());
        Some(due.place)
    }

    /// Makes room for flow slots up to `slots` without growing on the packet path.
    pub(crate) fn reserve(&mut self, slots: usize) {
        self.flows
            .reserve_exact(slots.saturating_sub(self.flows.len()));
    }

    /// Heap bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.flows.capacity() * size_of::<Shift>()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use plsim_wire::build::{TcpSegment, tuple};
    use plsim_wire::{FlowTuple, LinkType, classify};
    use proptest::prelude::*;

    use super::*;
    use crate::{Snat, SnatConfig};

    const LINK: LinkId = LinkId(0x0102_0304);
    const C: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 4);
    const B: Ipv4Addr = Ipv4Addr::new(10, 10, 2, 5);
    const PE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
    const ISN: u32 = 0xffff_fff0; // wraps within the connection
    const ACK: u8 = TcpFlags::ACK;

    fn endpoint() -> SocketAddrV4 {
        SocketAddrV4::new(PE, 443)
    }

    /// The consumer's packet `C:40000 -> B:443` after the load balancer.
    fn out_pkt(flags: u8, seq: u32, payload: &[u8]) -> (Vec<u8>, Ipv4Tcp) {
        packet(tuple(C, 40000, B, 443), flags, seq, 0, &[], payload)
    }

    fn packet(
        t: FlowTuple,
        flags: u8,
        seq: u32,
        ack: u32,
        options: &[u8],
        payload: &[u8],
    ) -> (Vec<u8>, Ipv4Tcp) {
        let f = TcpSegment {
            seq,
            ack,
            options,
            payload,
            ..TcpSegment::new(t, flags)
        }
        .to_vec();
        let v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
        (f, v)
    }

    fn engine(on: bool) -> Snat {
        Snat::new(SnatConfig {
            proxy_protocol: on,
            ..SnatConfig::default()
        })
        .unwrap()
    }

    /// A packet as it left, its view, and the header segment due with it and where it goes.
    type Sent = (Vec<u8>, Ipv4Tcp, Option<(Vec<u8>, Place)>);

    /// Sends a consumer packet; returns it as it left and the segment due with it.
    fn send(s: &mut Snat, flags: u8, seq: u32, payload: &[u8]) -> Sent {
        let (mut f, mut v) = out_pkt(flags, seq, payload);
        s.forward(LINK, &mut f, &mut v, plsim_wire::SimTime::ZERO)
            .unwrap();
        let mut seg = Vec::new();
        let due = s
            .proxy_segment(endpoint(), &f, &v, &mut seg)
            .map(|p| (seg, p));
        (f, v, due)
    }

    /// A backend packet `B:443 -> N:np` acknowledging `ack` with SACK blocks `sack`, as the
    /// consumer gets it back.
    fn answer(s: &mut Snat, ack: u32, sack: &[u32]) -> (u32, Vec<u32>) {
        let info = s.flow(LINK, tuple(C, 40000, B, 443)).unwrap();
        let mut opts = vec![1, 1, 5, (2 + 4 * sack.len()) as u8];
        for e in sack {
            opts.extend_from_slice(&e.to_be_bytes());
        }
        let t = tuple(B, 443, info.nat_ip, info.nat_port);
        let (mut f, mut v) = packet(t, ACK, 7, ack, &opts, b"x");
        s.reverse(&mut f, &mut v, plsim_wire::SimTime::ZERO)
            .unwrap();
        assert!(checksum::verify(&f, &v).ok());
        let mut edges = Vec::new();
        v.map_sack(&mut f.clone(), |e| {
            edges.push(e);
            e
        });
        (v.ack(&f), edges)
    }

    #[test]
    fn the_header_is_the_specifications_bytes_and_ppp_reads_it_back() {
        let consumer = SocketAddrV4::new(Ipv4Addr::new(192, 168, 7, 9), 50123);
        let h = header(consumer, SocketAddrV4::new(PE, 8443), LinkId(0x0a0b_0c0d));
        #[rustfmt::skip]
        let want: [u8; 36] = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
            0x21, 0x11, 0x00, 0x14,
            192, 168, 7, 9, 10, 0, 0, 4, 0xc3, 0xcb, 0x20, 0xfb,
            0xee, 0x00, 0x05, 0x01, 0x0d, 0x0c, 0x0b, 0x0a,
        ];
        assert_eq!(h, want);
        // An independent parser agrees.
        let p = ppp::v2::Header::try_from(&h[..]).unwrap();
        assert_eq!(p.len(), HEADER_LEN);
        assert_eq!(p.command, ppp::v2::Command::Proxy);
        assert_eq!(p.protocol, ppp::v2::Protocol::Stream);
        let ppp::v2::Addresses::IPv4(a) = p.addresses else {
            panic!("not IPv4: {:?}", p.addresses)
        };
        assert_eq!(
            (a.source_address, a.source_port),
            (*consumer.ip(), consumer.port())
        );
        assert_eq!((a.destination_address, a.destination_port), (PE, 8443));
        let tlvs: Vec<_> = p.tlvs().map(|t| t.unwrap()).collect();
        assert_eq!(tlvs.len(), 1);
        assert_eq!(tlvs[0].kind, PP2_TYPE_AZURE);
        assert_eq!(&tlvs[0].value[..], &[1, 0x0d, 0x0c, 0x0b, 0x0a]);
    }

    #[test]
    fn a_connection_gets_one_header_after_its_handshake_and_both_streams_stay_whole() {
        let mut s = engine(true);
        let (_, _, due) = send(&mut s, TcpFlags::SYN, ISN, &[]);
        assert!(due.is_none(), "nothing before the SYN");
        // The SYN-ACK acknowledges ISN + 1: no header went yet, nothing moves.
        assert_eq!(
            answer(&mut s, ISN.wrapping_add(1), &[]).0,
            ISN.wrapping_add(1)
        );
        // The handshake's last ACK passes as it is; the header follows it at ISN + 1.
        let (f, v, due) = send(&mut s, ACK, ISN.wrapping_add(1), &[]);
        assert_eq!(v.seq(&f), ISN.wrapping_add(1));
        let (seg, place) = due.expect("the header is due");
        assert_eq!(place, Place::After);
        let sv = classify(LinkType::Ethernet, &seg, seg.len()).unwrap();
        assert!(checksum::verify(&seg, &sv).ok(), "both checksums valid");
        assert_eq!(sv.tuple(), v.tuple(), "N:np -> B:bp, as the packet");
        assert_eq!(sv.seq(&seg), ISN.wrapping_add(1));
        assert_eq!(sv.flags(), TcpFlags::ACK | TcpFlags::PSH);
        assert_eq!(
            sv.payload(&seg),
            header(SocketAddrV4::new(C, 40000), endpoint(), LINK)
        );
        // Data moves up by the header; nothing else is due.
        let (f, v, due) = send(&mut s, ACK | TcpFlags::PSH, ISN.wrapping_add(1), b"hello");
        assert!(due.is_none());
        assert_eq!(v.seq(&f), ISN.wrapping_add(1 + 36));
        assert!(checksum::verify(&f, &v).ok());
        // The backend's acknowledgements and SACK edges come back down; one inside the header
        // reads as ISN + 1.
        let past = ISN.wrapping_add(1 + 36 + 5);
        assert_eq!(
            answer(
                &mut s,
                past,
                &[past.wrapping_add(100), past.wrapping_add(200)]
            ),
            (
                ISN.wrapping_add(6),
                vec![ISN.wrapping_add(106), ISN.wrapping_add(206)]
            )
        );
        assert_eq!(
            answer(&mut s, ISN.wrapping_add(20), &[]).0,
            ISN.wrapping_add(1)
        );
        // A FIN moves up too.
        let (f, v, _) = send(&mut s, TcpFlags::FIN | ACK, ISN.wrapping_add(6), &[]);
        assert_eq!(v.seq(&f), ISN.wrapping_add(42));
    }

    #[test]
    fn data_with_the_handshake_goes_after_the_header() {
        let mut s = engine(true);
        send(&mut s, TcpFlags::SYN, 100, &[]);
        let (f, v, due) = send(&mut s, ACK | TcpFlags::PSH, 101, b"GET /");
        let (seg, place) = due.expect("the header is due");
        assert_eq!(place, Place::Before);
        let sv = classify(LinkType::Ethernet, &seg, seg.len()).unwrap();
        assert_eq!(sv.seq(&seg), 101);
        assert_eq!(v.seq(&f), 137);
    }

    #[test]
    fn no_header_without_a_syn_or_after_a_reset_and_a_new_one_after_a_reopening() {
        // Picked up mid-stream: where the stream starts is unknown.
        let mut s = Snat::new(SnatConfig {
            proxy_protocol: true,
            pickup: true,
            ..SnatConfig::default()
        })
        .unwrap();
        let (f, v, due) = send(&mut s, ACK, 5000, b"x");
        assert!(due.is_none());
        assert_eq!(v.seq(&f), 5000);

        // Reset right after the SYN: no stream, no header, no shift.
        let mut s = engine(true);
        send(&mut s, TcpFlags::SYN, 100, &[]);
        let (f, v, due) = send(&mut s, TcpFlags::RST, 101, &[]);
        assert!(due.is_none());
        assert_eq!(v.seq(&f), 101);
        // The port is held; a new SYN reopens the flow: a new connection, a new header.
        send(&mut s, TcpFlags::SYN, 9000, &[]);
        let (_, _, due) = send(&mut s, ACK, 9001, &[]);
        let (seg, _) = due.expect("a header for the new connection");
        let sv = classify(LinkType::Ethernet, &seg, seg.len()).unwrap();
        assert_eq!(sv.seq(&seg), 9001);
    }

    #[test]
    fn with_the_option_off_nothing_moves_and_no_state_is_kept() {
        let mut s = engine(false);
        send(&mut s, TcpFlags::SYN, 100, &[]);
        let (f, v, due) = send(&mut s, ACK, 101, &[]);
        assert!(due.is_none());
        assert_eq!(v.seq(&f), 101);
        assert_eq!(answer(&mut s, 500, &[600, 700]), (500, vec![600, 700]));
        assert!(s.proxy.is_none(), "no per-flow state without the option");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever the ISN and however far the backend acknowledges past the header, the
        /// consumer reads its own stream's number back: the shift is undone exactly.
        #[test]
        fn acknowledgements_past_the_header_come_back_exactly(isn in any::<u32>(), past in 0u32..1 << 30) {
            let mut s = engine(true);
            send(&mut s, TcpFlags::SYN, isn, &[]);
            send(&mut s, ACK, isn.wrapping_add(1), &[]);
            let consumer = isn.wrapping_add(1).wrapping_add(past);
            let backend = consumer.wrapping_add(SHIFT);
            prop_assert_eq!(answer(&mut s, backend, &[backend, backend.wrapping_add(9)]),
                (consumer, vec![consumer, consumer.wrapping_add(9)]));
        }
    }
}
