use std::time::Instant;

use bytes::BytesMut;
use plsim_wire::{DropReason, FlowTuple, Ipv4Tcp, LinkId, LinkType, SimTime};

/// Which way a packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Consumer to backend.
    Forward,
    /// Backend to consumer.
    Return,
}

/// What travels with a packet through the stages.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// The packet's place in the input: stages see packets in an order fixed by it.
    pub seq: u64,
    /// Simulated time: the input's timestamp, made monotonic.
    pub ts: SimTime,
    /// The frame's length on the wire.
    pub wire_len: u32,
    /// The frame's link layer.
    pub linktype: LinkType,
    /// The IPv4 TCP view of the frame, kept in step with every rewrite; `None` for a packet
    /// dropped before any stage (not IPv4 TCP), which travels only to be seen by the taps.
    pub view: Option<Ipv4Tcp>,
    /// The private endpoint connection, once the endpoint stage (forward) or the SNAT stage
    /// (return) has found it.
    pub link: LinkId,
    /// The consumer VNet the packet came from or goes to.
    pub vnet: u32,
    /// The packet's tuple as the input had it (a replay maps the server's packets with it).
    pub orig: FlowTuple,
    /// Which way it travels.
    pub dir: Dir,
    /// Why it was dropped, once it is.
    pub drop: Option<DropReason>,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    off: u32,
    len: u32,
    meta: Meta,
}

/// A batch of packets: the unit the channels carry. The frames live in one reused buffer, so a
/// batch costs no allocation once the pipeline is warm.
#[derive(Debug)]
pub struct Batch {
    pub(crate) index: u64,
    pub(crate) born: Instant,
    data: BytesMut,
    slots: Vec<Slot>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            index: 0,
            born: Instant::now(),
            data: BytesMut::with_capacity(64 << 10),
            slots: Vec::with_capacity(1024),
        }
    }

    pub(crate) fn reset(&mut self, index: u64) {
        self.index = index;
        self.born = Instant::now();
        self.data.clear();
        self.slots.clear();
    }

    /// Appends a packet.
    pub fn push(&mut self, frame: &[u8], meta: Meta) {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(frame);
        self.slots.push(Slot {
            off,
            len: frame.len() as u32,
            meta,
        });
    }

    /// Packets in the batch.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every packet, frame and metadata, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&mut [u8], &mut Meta)> {
        let data = &mut self.data[..];
        // Slots never overlap: hand out disjoint slices in order.
        let mut rest: &mut [u8] = data;
        let mut at = 0usize;
        self.slots.iter_mut().map(move |s| {
            let skip = s.off as usize - at;
            let taken = std::mem::take(&mut rest);
            let (_, tail) = taken.split_at_mut(skip);
            let (frame, tail) = tail.split_at_mut(s.len as usize);
            rest = tail;
            at = (s.off + s.len) as usize;
            (frame, &mut s.meta)
        })
    }

    /// Every packet, frame and metadata.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Meta)> {
        self.slots.iter().map(|s| {
            (
                &self.data[s.off as usize..(s.off + s.len) as usize],
                &s.meta,
            )
        })
    }

    /// The last packet pushed, mutably.
    pub fn last_mut(&mut self) -> Option<(&mut [u8], &mut Meta)> {
        let s = self.slots.last_mut()?;
        Some((
            &mut self.data[s.off as usize..(s.off + s.len) as usize],
            &mut s.meta,
        ))
    }

    /// The first packet's time, if any.
    pub fn first_ts(&self) -> Option<SimTime> {
        self.slots.first().map(|s| s.meta.ts)
    }

    /// The last packet's time, if any.
    pub fn last_ts(&self) -> Option<SimTime> {
        self.slots.last().map(|s| s.meta.ts)
    }
}
