//! The bench's frames: one 64-byte template per kind of packet, flow `i`'s frame made from it
//! by writing flow `i`'s client end in.

use plsim_wire::VnetId;
use std::net::Ipv4Addr;

use plsim_engine::{Batch, Dir, Meta};
use plsim_wire::build::{CONSUMER_MAC, PROVIDER_MAC, TcpSegment, tuple};
use plsim_wire::{Ipv4Tcp, LinkType, SimTime, classify};

/// The frame length the bench pushes.
pub const FRAME_LEN: usize = 64;

/// The address and port of bench client `i`: 65,536 hosts in `base`/16, ports from 1024 up.
fn client(base: Ipv4Addr, i: u32) -> (Ipv4Addr, u16) {
    let b = u32::from(base) & 0xffff_0000;
    (Ipv4Addr::from(b | (i & 0xffff)), 1024 + (i >> 16) as u16)
}

/// One frame of every flow, as a template and its view: flow `i`'s frame is the template
/// with flow `i`'s client end written in.
#[derive(Clone)]
pub(super) struct Template {
    frame: Vec<u8>,
    view: Ipv4Tcp,
    clients: Ipv4Addr,
}

impl Template {
    /// A frame of `flags` from client 0 to the endpoint (`back`: from the endpoint to it).
    pub(super) fn new(
        clients: Ipv4Addr,
        endpoint: (Ipv4Addr, u16),
        flags: u8,
        back: bool,
    ) -> Template {
        let (c, cp) = client(clients, 0);
        let t = tuple(c, cp, endpoint.0, endpoint.1);
        let (t, src_mac, dst_mac) = if back {
            (t.reversed(), PROVIDER_MAC, CONSUMER_MAC)
        } else {
            (t, CONSUMER_MAC, PROVIDER_MAC)
        };
        let mut frame = Vec::with_capacity(FRAME_LEN);
        TcpSegment {
            payload: &[0; 10],
            seq: 2,
            ack: 2,
            src_mac,
            dst_mac,
            ..TcpSegment::new(t, flags)
        }
        .write(&mut frame);
        debug_assert_eq!(frame.len(), FRAME_LEN);
        let view = classify(LinkType::Ethernet, &frame, frame.len()).expect("a built frame");
        Template {
            frame,
            view,
            clients,
        }
    }

    /// Writes flow `i`'s frame into `buf` (the template's length) and returns its view.
    #[inline]
    pub(super) fn write(&self, i: u32, buf: &mut [u8], back: bool) -> Ipv4Tcp {
        buf.copy_from_slice(&self.frame);
        self.write_in_place(i, buf, back)
    }

    /// Appends flow `i`'s frame to `batch`.
    #[inline]
    pub(super) fn push(&self, batch: &mut Batch, i: u32, seq: u64, vnet: VnetId, dir: Dir) {
        batch.push(&self.frame, meta(seq, self.view, dir, vnet));
        let (frame, m) = batch.last_mut().expect("just pushed");
        let v = self.write_in_place(i, frame, dir == Dir::Reverse);
        m.view = Some(v);
        m.orig = v.tuple();
    }

    /// Writes flow `i`'s client end into a copy of the template's frame.
    #[inline]
    fn write_in_place(&self, i: u32, frame: &mut [u8], back: bool) -> Ipv4Tcp {
        let mut v = self.view;
        let (c, cp) = client(self.clients, i);
        if back {
            v.set_destination(frame, c, cp);
        } else {
            v.set_source(frame, c, cp);
        }
        v
    }
}

/// The metadata of a bench packet; simulated time is 10 ns a packet.
fn meta(seq: u64, view: Ipv4Tcp, dir: Dir, vnet: VnetId) -> Meta {
    Meta {
        seq,
        ts: SimTime::from_nanos(seq * 10),
        wire_len: FRAME_LEN as u32,
        linktype: LinkType::Ethernet,
        view: Some(view),
        link: Default::default(),
        vnet,
        orig: view.tuple(),
        dir,
        drop: None,
        own: None,
        stream_start: None,
        handle: plsim_engine::Meta::NO_HANDLE,
    }
}

#[cfg(test)]
mod tests {
    use plsim_wire::TcpFlags;

    use super::*;

    #[test]
    fn template_frames_are_what_the_builder_makes() {
        let clients = Ipv4Addr::new(10, 1, 0, 0);
        let endpoint = (Ipv4Addr::new(10, 0, 0, 4), 443);
        for (flags, back) in [
            (TcpFlags::SYN, false),
            (TcpFlags::SYN | TcpFlags::ACK, true),
            (TcpFlags::ACK, false),
        ] {
            let t = Template::new(clients, endpoint, flags, back);
            for i in [0, 1, 65_535, 65_536, 9_999_999] {
                let mut buf = [0u8; FRAME_LEN];
                let v = t.write(i, &mut buf, back);
                let (c, cp) = client(clients, i);
                let up = tuple(c, cp, endpoint.0, endpoint.1);
                let want_t = if back { up.reversed() } else { up };
                let (src_mac, dst_mac) = if back {
                    (PROVIDER_MAC, CONSUMER_MAC)
                } else {
                    (CONSUMER_MAC, PROVIDER_MAC)
                };
                let mut want = Vec::new();
                TcpSegment {
                    payload: &[0; 10],
                    seq: 2,
                    ack: 2,
                    src_mac,
                    dst_mac,
                    ..TcpSegment::new(want_t, flags)
                }
                .write(&mut want);
                assert_eq!(&buf[..], &want[..], "flow {i}, flags {flags:#x}");
                assert_eq!(v.tuple(), want_t);
                let mut batch = Batch::new();
                t.push(
                    &mut batch,
                    i,
                    7,
                    VnetId(0),
                    if back { Dir::Reverse } else { Dir::Forward },
                );
                let (f, m) = batch.get(0);
                assert_eq!(f, &want[..]);
                assert_eq!(m.orig, want_t);
            }
        }
    }
}
