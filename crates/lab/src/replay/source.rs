//! Where a feeder's packets come from: a capture ([`Reader`]) or frames held in memory.

use plsim_pcap::{Frame, FrameBuf, Reader};

/// One packet of a source: a frame, and whose traffic it is when the source knows.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// The frame.
    pub frame: Frame<'a>,
    /// The endpoint (an index of [`Path::routes`](crate::path::Path::routes)) whose consumers
    /// sent it, when the source knows (a workload does; a capture doesn't: the scenario's
    /// traffic tables say).
    pub endpoint: Option<usize>,
}

/// Where a feeder's packets come from: a capture, or a synthetic workload.
pub trait PacketSource {
    /// The next packet, in time order.
    fn next_packet(&mut self) -> Option<Packet<'_>>;

    /// What was wrong with the source once read, if anything: a capture cut short or damaged
    /// after its first packet, read up to there ([`Reader::warning`]).
    fn warning(&self) -> Option<&str> {
        None
    }

    /// The run's stop: a source that can work long for one packet (a workload) looks at it
    /// meanwhile. The feeder checks it between batches itself; by default, nothing more.
    fn stop_on(&mut self, _stop: &crate::stop::Stop) {}
}

impl PacketSource for Reader {
    fn next_packet(&mut self) -> Option<Packet<'_>> {
        let frame = self.next_frame()?;
        Some(Packet {
            frame,
            endpoint: None,
        })
    }

    fn warning(&self) -> Option<&str> {
        Reader::warning(self)
    }
}

/// Frames held in memory (a generated capture) as a packet source.
pub struct Frames<'a>(std::slice::Iter<'a, FrameBuf>);

impl<'a> Frames<'a> {
    /// The frames, in order.
    pub fn new(frames: &'a [FrameBuf]) -> Self {
        Frames(frames.iter())
    }
}

impl PacketSource for Frames<'_> {
    fn next_packet(&mut self) -> Option<Packet<'_>> {
        Some(Packet {
            frame: self.0.next()?.as_frame(),
            endpoint: None,
        })
    }
}
