//! Batches: the unit the threaded engine moves between threads.

use std::ops::Range;
use std::time::Instant;

use bytes::BytesMut;
use plsim_wire::{Dir, DropReason, FlowTuple, Ipv4Tcp, LinkId, LinkType, Place, SimTime, VnetId};

/// What travels with a packet through the stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The packet's place in the input (0, 1, 2, ...): every stage sees packets in this order.
    pub seq: u64,
    /// Simulated time: the input's timestamp, never decreasing along `seq`.
    pub ts: SimTime,
    /// The frame's length on the wire.
    pub wire_len: u32,
    /// The frame's link layer.
    pub linktype: LinkType,
    /// The IPv4 TCP view of the frame, kept in step with every rewrite; `None` for a packet
    /// dropped before any stage (not IPv4 TCP), which travels only to be counted and seen by
    /// the taps.
    pub view: Option<Ipv4Tcp>,
    /// The private endpoint connection, once a stage has found it.
    pub link: LinkId,
    /// The consumer VNet the packet came from or goes to.
    pub vnet: VnetId,
    /// The packet's tuple as the input had it.
    pub orig: FlowTuple,
    /// Which way it travels.
    pub dir: Dir,
    /// Why it was dropped, once it is.
    pub drop: Option<DropReason>,
    /// For a segment the path sent of its own beside the input packet `seq` (one a stage
    /// injected, see [`crate::Stage::take_injected`], or an answer, see
    /// [`crate::Stage::take_answer`]): where it goes, just before or just after that packet.
    /// `None` for every input packet.
    pub own: Option<Place>,
    /// Set by a core stage that adds bytes of its own to the backend side of this packet's
    /// connection (a PROXY protocol header), on the forward packets it passes once they went:
    /// where those bytes start in the backend-side stream, so that the backend side can
    /// acknowledge them as a real backend does. `None` for everything else.
    pub stream_start: Option<u32>,
    /// The input's own handle on the packet's connection (a feeder's index of it, the same
    /// for both ways), so that what the backend side keeps of a connection is found without a
    /// lookup of its own; [`Meta::NO_HANDLE`] when the input has none. A handle may be reused
    /// by a later connection: whoever keeps something under it checks it is still theirs.
    pub handle: u32,
}

impl Meta {
    /// The handle of a packet whose input keeps none.
    pub const NO_HANDLE: u32 = u32::MAX;
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    off: u32,
    len: u32,
    meta: Meta,
}

/// A batch of packets in input order. The frames live in one reused buffer, so a batch costs no
/// allocation once the engine is warm.
#[derive(Debug)]
pub struct Batch {
    pub(crate) born: Instant,
    data: BytesMut,
    slots: Vec<Slot>,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch {
            born: Instant::now(),
            data: BytesMut::with_capacity(64 << 10),
            slots: Vec::with_capacity(1024),
        }
    }

    /// Empties the batch, keeping its buffers, and restarts its latency clock.
    pub(crate) fn reset(&mut self) {
        self.born = Instant::now();
        self.clear();
    }

    /// Empties the batch, keeping its buffers.
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.slots.clear();
    }

    /// Appends a packet.
    #[inline]
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
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the batch holds no packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The metadata of packet `i`.
    #[inline]
    pub fn meta(&self, i: usize) -> &Meta {
        &self.slots[i].meta
    }

    /// Packet `i`, frame and metadata.
    #[inline]
    pub fn get(&self, i: usize) -> (&[u8], &Meta) {
        let s = &self.slots[i];
        (
            &self.data[s.off as usize..(s.off + s.len) as usize],
            &s.meta,
        )
    }

    /// Packet `i`, frame and metadata, mutably.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], &mut Meta) {
        let s = &mut self.slots[i];
        (
            &mut self.data[s.off as usize..(s.off + s.len) as usize],
            &mut s.meta,
        )
    }

    /// The packets of `range`, frame and metadata, mutably.
    pub fn range_mut(
        &mut self,
        range: Range<usize>,
    ) -> impl Iterator<Item = (&mut [u8], &mut Meta)> {
        let slots = &mut self.slots[range];
        let base = slots.first().map_or(0, |s| s.off as usize);
        let end = slots.last().map_or(base, |s| (s.off + s.len) as usize);
        // Slots are contiguous and in order: hand out disjoint slices one after another.
        let mut rest: &mut [u8] = &mut self.data[base..end];
        let mut at = base;
        slots.iter_mut().map(move |s| {
            let taken = std::mem::take(&mut rest);
            let (_, tail) = taken.split_at_mut(s.off as usize - at);
            let (frame, tail) = tail.split_at_mut(s.len as usize);
            rest = tail;
            at = (s.off + s.len) as usize;
            (frame, &mut s.meta)
        })
    }

    /// Every packet, frame and metadata, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&mut [u8], &mut Meta)> {
        self.range_mut(0..self.len())
    }

    /// Every packet, frame and metadata.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Meta)> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The last packet pushed, mutably.
    pub fn last_mut(&mut self) -> Option<(&mut [u8], &mut Meta)> {
        let n = self.len();
        (n > 0).then(|| self.get_mut(n - 1))
    }

    /// The first packet's time, if any.
    pub fn first_ts(&self) -> Option<SimTime> {
        self.slots.first().map(|s| s.meta.ts)
    }

    /// The last packet's time, if any.
    pub fn last_ts(&self) -> Option<SimTime> {
        self.slots.last().map(|s| s.meta.ts)
    }

    /// The end of the run of packets starting at `start` that travel the same way.
    #[inline]
    pub(crate) fn run_end(&self, start: usize) -> usize {
        let dir = self.slots[start].meta.dir;
        self.slots[start..]
            .iter()
            .position(|s| s.meta.dir != dir)
            .map_or(self.slots.len(), |n| start + n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plsim_wire::build::{TcpSegment, tuple};
    use plsim_wire::{TcpFlags, classify};
    use std::net::Ipv4Addr;

    fn packet(k: u64, dir: Dir, len: usize) -> (Vec<u8>, Meta) {
        let t = tuple(
            Ipv4Addr::new(10, 0, 0, 1),
            1000 + k as u16,
            Ipv4Addr::new(10, 0, 0, 2),
            80,
        );
        let payload = vec![k as u8; len];
        let frame = TcpSegment {
            payload: &payload,
            ..TcpSegment::new(t, TcpFlags::ACK)
        }
        .to_vec();
        let view = classify(LinkType::Ethernet, &frame, frame.len()).unwrap();
        let meta = Meta {
            seq: k,
            ts: SimTime::from_nanos(k),
            wire_len: frame.len() as u32,
            linktype: LinkType::Ethernet,
            view: Some(view),
            link: LinkId::default(),
            vnet: VnetId(0),
            orig: t,
            dir,
            drop: None,
            own: None,
            stream_start: None,
            handle: Meta::NO_HANDLE,
        };
        (frame, meta)
    }

    #[test]
    fn ranges_hand_out_each_frame_once_and_runs_split_by_direction() {
        let mut b = Batch::new();
        let dirs = [
            Dir::Forward,
            Dir::Forward,
            Dir::Reverse,
            Dir::Forward,
            Dir::Reverse,
            Dir::Reverse,
        ];
        let mut frames = Vec::new();
        for (k, &d) in dirs.iter().enumerate() {
            let (f, m) = packet(k as u64, d, k * 3);
            b.push(&f, m);
            frames.push(f);
        }
        assert_eq!(b.run_end(0), 2);
        assert_eq!(b.run_end(2), 3);
        assert_eq!(b.run_end(3), 4);
        assert_eq!(b.run_end(4), 6);
        let got: Vec<(Vec<u8>, u64)> = b
            .range_mut(2..5)
            .map(|(f, m)| (f.to_vec(), m.seq))
            .collect();
        assert_eq!(
            got,
            vec![
                (frames[2].clone(), 2),
                (frames[3].clone(), 3),
                (frames[4].clone(), 4)
            ]
        );
        for (f, _) in b.range_mut(1..3) {
            f[0] ^= 0xff;
        }
        assert_eq!(b.get(0).0, &frames[0][..]);
        assert_eq!(b.get(1).0[0], frames[1][0] ^ 0xff);
        assert_eq!(b.get(2).0[0], frames[2][0] ^ 0xff);
        assert_eq!(b.get(3).0, &frames[3][..]);
        assert_eq!(b.iter().count(), 6);
        b.reset();
        assert!(b.is_empty());
        assert_eq!(b.range_mut(0..0).count(), 0);
    }
}
