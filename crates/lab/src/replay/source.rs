//! Where a feeder's packets come from: a capture ([`Reader`]) or frames held in memory.

use plsim_pcap::Reader;
use plsim_wire::LinkType;

/// One packet of a source.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Capture time, ns.
    pub ts_ns: u64,
    /// The link layer.
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The length on the wire.
    pub wire_len: usize,
    /// The endpoint (an index of [`Path::routes`](crate::path::Path::routes)) whose consumers
    /// sent it, when the source knows (a workload does; a capture doesn't: the scenario's
    /// traffic tables say).
    pub endpoint: Option<usize>,
}

/// Where a feeder's packets come from: a capture, or a synthetic workload.
pub trait PacketSource {
    /// The next packet, in time order.
    fn next_packet(&mut self) -> Option<Packet<'_>>;
}

impl PacketSource for Reader {
    fn next_packet(&mut self) -> Option<Packet<'_>> {
        Reader::next_packet(self).map(|p| Packet {
            ts_ns: p.ts_ns,
            link: p.link,
            data: p.data,
            wire_len: p.wire_len,
            endpoint: None,
        })
    }
}

/// Frames held in memory (a generated capture) as a packet source, on one link type.
pub struct FrameSource<'a> {
    frames: std::slice::Iter<'a, plsim_traffic::captures::Frame>,
    link: LinkType,
}

impl<'a> FrameSource<'a> {
    /// The frames in order, all on `link`.
    pub fn new(frames: &'a [plsim_traffic::captures::Frame], link: LinkType) -> Self {
        FrameSource {
            frames: frames.iter(),
            link,
        }
    }
}

impl PacketSource for FrameSource<'_> {
    fn next_packet(&mut self) -> Option<Packet<'_>> {
        let f = self.frames.next()?;
        Some(Packet {
            ts_ns: f.ts_ns,
            link: self.link,
            data: &f.data,
            wire_len: f.wire_len,
            endpoint: None,
        })
    }
}
