//! The backend emulation: the server's packets of a capture, sent from the backend a flow
//! reached to the NAT end it came from.

use std::hash::BuildHasher;
// hashbrown's default hasher (foldhash, seeded per run), as the feeder's: keyed by addresses
// from the input.
use hashbrown::{DefaultHashBuilder, HashMap};
use plsim_flowtab::FlowIndex;
use plsim_wire::VnetId;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use plsim_wire::{DropReason, FlowTuple};

use plsim_engine::{BackendSide, Meta};

/// The backends of a replay: each forward packet that reaches a backend teaches it the flow's
/// backend end and NAT end; each server packet of the capture is sent from that backend end to
/// that NAT end. A server packet of a flow that never reached a backend can't be sent: `no_flow`.
///
/// A flow is found by the handle its packets carry ([`Meta::handle`], the feeder's index of
/// the connection, the same both ways): the handle leads to the flow's slot without hashing,
/// and the slot's own key is checked, since a handle outlives its connection (a later
/// connection may get it, or a port be reused). When the check fails, or a packet carries no
/// handle, one lookup of the index by key finds the flow, and the handle is pointed at it. The
/// index alone says which flows there are: the handles only find them faster, so what is
/// sent is exactly what a table keyed by the capture's tuple would send.
pub struct BackendEmulation {
    /// The flows, by slot; a free slot is `None`.
    slots: Vec<Option<Flow>>,
    /// Free slots, reused last-freed first.
    free: Vec<u32>,
    /// (vnet, the capture's client-to-server tuple) -> slot.
    index: FlowIndex,
    hasher: DefaultHashBuilder,
    /// Handle -> the slot its connection's flow had when last looked up (`NONE`: none yet).
    by_handle: Vec<u32>,
    /// Flows may open mid-stream: learn from any packet, not only from SYNs.
    pickup: bool,
    /// Forget a flow once it has sent its one packet (the bench's backends: a SYN-ACK each).
    once: bool,
    /// Forget a flow that saw no packet for longer than this (ns); `u64::MAX`: never.
    horizon_ns: u64,
    /// When to look for flows to forget next (ns).
    next_forget: u64,
    /// Flows whose backend-side stream starts with a PROXY protocol header, by their backend
    /// side (NAT end, backend end), as the SNAT stage said on their last forward packet: where
    /// the header starts, and when that packet went. Empty unless some service sends headers.
    headers: HashMap<(SocketAddrV4, SocketAddrV4), (u32, u64)>,
}

/// No slot.
const NONE: u32 = u32::MAX;

impl Default for BackendEmulation {
    /// Learns from SYNs, forgets nothing.
    fn default() -> BackendEmulation {
        BackendEmulation::new(false)
    }
}

/// A flow's key: the vnet it came from and the capture's client-to-server tuple.
type Key = (VnetId, FlowTuple);

/// A flow the backends know.
#[derive(Clone, Copy, Debug)]
struct Flow {
    key: Key,
    ends: Ends,
}

/// Where a flow's server packets come from and go to, and when it last saw a packet.
#[derive(Clone, Copy, Debug)]
struct Ends {
    backend: (Ipv4Addr, u16),
    nat: (Ipv4Addr, u16),
    last: u64,
}

impl BackendEmulation {
    /// A backend side that learns a flow from its SYN, or, with `pickup`, from its first packet
    /// that reaches a backend.
    pub fn new(pickup: bool) -> BackendEmulation {
        BackendEmulation {
            slots: Vec::new(),
            free: Vec::new(),
            index: FlowIndex::new(),
            hasher: DefaultHashBuilder::default(),
            by_handle: Vec::new(),
            pickup,
            once: false,
            horizon_ns: u64::MAX,
            next_forget: u64::MAX,
            headers: HashMap::new(),
        }
    }

    /// Forgets a flow once it has seen no packet either way for longer than `horizon` (the
    /// path's longest timer: no stage holds anything of it then, and its server packets would
    /// find no flow anyway). Keeps the table to the flows of the last horizon and a quarter.
    pub fn forgetting_after(mut self, horizon: Duration) -> Self {
        self.horizon_ns = u64::try_from(horizon.as_nanos()).unwrap_or(u64::MAX);
        self.next_forget = 0;
        self
    }

    /// Backends that send one packet per flow (learnt from its SYN) and then forget it, so
    /// they hold only the flows still to be answered.
    pub fn answering_once() -> BackendEmulation {
        BackendEmulation {
            once: true,
            ..BackendEmulation::new(false)
        }
    }

    /// The number of flows the backends know.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }

    /// Forgets, at `now`, the flows idle for longer than the horizon, when it is time to.
    #[inline]
    fn forget(&mut self, now: u64) {
        if now < self.next_forget {
            return;
        }
        if self.next_forget > 0 {
            let h = self.horizon_ns;
            for s in 0..self.slots.len() {
                if let Some(f) = self.slots[s]
                    && now.saturating_sub(f.ends.last) > h
                {
                    self.release(s as u32);
                }
            }
            self.headers
                .retain(|_, &mut (_, last)| now.saturating_sub(last) <= h);
        }
        self.next_forget = now.saturating_add((self.horizon_ns / 4).max(1));
    }

    /// The slot of the flow `key`, through `handle` when it still leads there, else by one
    /// lookup (and the handle then leads there).
    #[inline]
    fn find(&mut self, key: &Key, handle: u32) -> Option<u32> {
        let cached = self.by_handle.get(handle as usize).copied().unwrap_or(NONE);
        if let Some(Some(f)) = self.slots.get(cached as usize)
            && f.key == *key
        {
            return Some(cached);
        }
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let s = self
            .index
            .find(hash, |s| slots[s as usize].is_some_and(|f| f.key == *key))?;
        self.point(handle, s);
        Some(s)
    }

    /// Points `handle` (if any) at slot `s`.
    #[inline]
    fn point(&mut self, handle: u32, s: u32) {
        if handle == Meta::NO_HANDLE {
            return;
        }
        let h = handle as usize;
        if h >= self.by_handle.len() {
            self.by_handle.resize(h + 1, NONE);
        }
        self.by_handle[h] = s;
    }

    /// Adds flow `key`, not known yet, reached through `handle`.
    fn add(&mut self, key: Key, ends: Ends, handle: u32) {
        let flow = Some(Flow { key, ends });
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = flow;
                s
            }
            None => {
                self.slots.push(flow);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(self.hasher.hash_one(key), s);
        self.point(handle, s);
    }

    /// Forgets the flow in slot `s`.
    fn release(&mut self, s: u32) {
        if let Some(f) = self.slots[s as usize].take() {
            self.index.remove(self.hasher.hash_one(f.key), s);
            self.free.push(s);
        }
    }
}

impl BackendSide for BackendEmulation {
    fn delivered(&mut self, _frame: &[u8], meta: &Meta) {
        let Some(v) = meta.view else { return };
        let t = v.tuple();
        let now = meta.ts.as_nanos();
        self.forget(now);
        // A SYN (re)opens the connection. Without pickup, no other packet reaches a backend
        // before its flow's SYN did; without forgetting, only SYNs look a flow up here.
        let ends = Ends {
            backend: (t.dst, t.dport),
            nat: (t.src, t.sport),
            last: now,
        };
        // The SNAT stage's word on the flow's PROXY protocol header, on every forward packet
        // of a service that sends them (the flow may be a new one on the same ports).
        let flow = (
            SocketAddrV4::new(t.src, t.sport),
            SocketAddrV4::new(t.dst, t.dport),
        );
        match meta.stream_start {
            Some(start) => {
                self.headers.insert(flow, (start, now));
            }
            None if !self.headers.is_empty() => {
                self.headers.remove(&flow);
            }
            None => {}
        }
        let key = (meta.vnet, meta.orig);
        let syn = v.is_syn();
        if !syn && !self.pickup && self.horizon_ns == u64::MAX {
            return;
        }
        match self.find(&key, meta.handle) {
            Some(s) => {
                let f = self.slots[s as usize].as_mut().expect("a found flow");
                if syn {
                    f.ends = ends;
                } else {
                    f.ends.last = now;
                }
            }
            None if syn || self.pickup => self.add(key, ends, meta.handle),
            None => {}
        }
    }

    fn enter(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let now = meta.ts.as_nanos();
        self.forget(now);
        let key = (meta.vnet, meta.orig.reversed());
        let s = self.find(&key, meta.handle).ok_or(DropReason::NoFlow)?;
        let f = self.slots[s as usize].as_mut().expect("a found flow");
        f.ends.last = now;
        let Ends {
            backend: (b, bp),
            nat: (n, np),
            ..
        } = f.ends;
        if self.once {
            self.release(s);
        }
        let v = meta.view.as_mut().ok_or(DropReason::NoFlow)?;
        v.set_both(frame, b, bp, n, np);
        // A backend that received a PROXY protocol header acknowledges it; the capture's
        // server never saw one, so its acknowledgements (and SACK edges) past the header's
        // start move up by its length, as the SNAT stage moves them back down.
        if !self.headers.is_empty()
            && v.has(plsim_wire::TcpFlags::ACK)
            && let Some(&(start, _)) = self
                .headers
                .get(&(SocketAddrV4::new(n, np), SocketAddrV4::new(b, bp)))
        {
            let len = plsim_snat::proxy::HEADER_LEN as u32;
            let cover = |a: u32| {
                if a.wrapping_sub(start) as i32 >= 0 {
                    a.wrapping_add(len)
                } else {
                    a
                }
            };
            v.set_ack(frame, cover(v.ack(frame)));
            v.map_sack(frame, cover);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plsim_wire::build::{TcpSegment, tuple};
    use plsim_wire::{Dir, LinkType, SimTime, TcpFlags, classify};

    const NAT: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
    const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 4);

    /// A packet of the capture's tuple `orig` at `at_s` seconds carrying `handle`, as it
    /// reaches a backend (forward: from NAT port `nat_port`) or leaves the server (reverse).
    fn packet(
        orig: FlowTuple,
        dir: Dir,
        flags: u8,
        nat_port: u16,
        handle: u32,
        at_s: u64,
    ) -> (Vec<u8>, Meta) {
        let on_wire = match dir {
            Dir::Forward => tuple(NAT, nat_port, BACKEND, orig.dport),
            Dir::Reverse => orig.reversed(),
        };
        let frame = TcpSegment::new(on_wire, flags).to_vec();
        let view = classify(LinkType::Ethernet, &frame, frame.len()).unwrap();
        let meta = Meta {
            seq: 0,
            ts: SimTime::from_nanos(at_s * 1_000_000_000),
            wire_len: frame.len() as u32,
            linktype: LinkType::Ethernet,
            view: Some(view),
            link: Default::default(),
            vnet: VnetId(1),
            orig: match dir {
                Dir::Forward => orig,
                Dir::Reverse => orig.reversed(),
            },
            dir,
            drop: None,
            own: None,
            stream_start: None,
            handle,
        };
        (frame, meta)
    }

    /// Sends the server's packet of `orig` with `handle`: the NAT port it goes to, or the drop.
    fn answer(
        b: &mut BackendEmulation,
        orig: FlowTuple,
        handle: u32,
        at_s: u64,
    ) -> Result<u16, DropReason> {
        let (mut f, mut m) = packet(orig, Dir::Reverse, TcpFlags::ACK, 0, handle, at_s);
        b.enter(&mut f, &mut m)?;
        let v = classify(LinkType::Ethernet, &f, f.len()).unwrap();
        Ok(v.tuple().dport)
    }

    fn learn(b: &mut BackendEmulation, orig: FlowTuple, nat_port: u16, handle: u32, at_s: u64) {
        let (f, m) = packet(orig, Dir::Forward, TcpFlags::SYN, nat_port, handle, at_s);
        b.delivered(&f, &m);
    }

    #[test]
    fn a_handle_leads_only_to_its_own_flow() {
        let a = tuple(
            Ipv4Addr::new(10, 0, 0, 1),
            40000,
            Ipv4Addr::new(10, 9, 0, 1),
            443,
        );
        let c = tuple(
            Ipv4Addr::new(10, 0, 0, 2),
            40000,
            Ipv4Addr::new(10, 9, 0, 1),
            443,
        );
        let mut b = BackendEmulation::new(false).forgetting_after(Duration::from_secs(10));
        learn(&mut b, a, 1024, 0, 0);
        assert_eq!(answer(&mut b, a, 0, 1), Ok(1024));
        // Without a handle, or with one that leads elsewhere, the key finds it.
        assert_eq!(answer(&mut b, a, Meta::NO_HANDLE, 1), Ok(1024));
        assert_eq!(answer(&mut b, a, 7, 1), Ok(1024));
        // Handle 0 now belongs to another connection: a's flow is not c's.
        assert_eq!(answer(&mut b, c, 0, 1), Err(DropReason::NoFlow));
        learn(&mut b, c, 1025, 0, 2);
        assert_eq!(answer(&mut b, c, 0, 2), Ok(1025));
        assert_eq!(answer(&mut b, a, 0, 2), Ok(1024));
        assert_eq!(b.len(), 2);
        // Forgotten at 15 s (idle since 2 s, over 10 s), a's slot goes to a new flow d
        // under another handle: a is not found through its old handle 7, d is.
        let d = tuple(
            Ipv4Addr::new(10, 0, 0, 3),
            40000,
            Ipv4Addr::new(10, 9, 0, 1),
            443,
        );
        learn(&mut b, c, 1025, 0, 14);
        learn(&mut b, d, 1026, 3, 15);
        assert_eq!(b.len(), 2, "a forgotten, d learnt");
        assert_eq!(answer(&mut b, a, 7, 15), Err(DropReason::NoFlow));
        assert_eq!(answer(&mut b, d, 7, 15), Ok(1026));
        assert_eq!(answer(&mut b, d, 3, 15), Ok(1026));
    }

    #[test]
    fn answering_once_forgets_the_flow_it_answered() {
        let a = tuple(
            Ipv4Addr::new(10, 0, 0, 1),
            40000,
            Ipv4Addr::new(10, 9, 0, 1),
            443,
        );
        let mut b = BackendEmulation::answering_once();
        learn(&mut b, a, 1024, 5, 0);
        assert_eq!(answer(&mut b, a, 5, 0), Ok(1024));
        assert_eq!(b.len(), 0);
        assert_eq!(answer(&mut b, a, 5, 0), Err(DropReason::NoFlow));
    }
}
