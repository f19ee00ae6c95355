//! The backend emulation: the server's packets of a capture, sent from the backend a flow
//! reached to the NAT end it came from.

// hashbrown's default hasher (foldhash), as the feeder's: keyed by addresses from the input.
use hashbrown::HashMap;
use plsim_wire::VnetId;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use plsim_wire::{DropReason, FlowTuple};

use plsim_engine::{BackendSide, Meta};

/// The backends of a replay: each forward packet that reaches a backend teaches it the flow's
/// backend end and NAT end; each server packet of the capture is sent from that backend end to
/// that NAT end. A server packet of a flow that never reached a backend can't be sent: `no_flow`.
pub struct BackendEmulation {
    /// The capture's client-to-server tuple -> its ends.
    ends: HashMap<(VnetId, FlowTuple), Ends>,
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

impl Default for BackendEmulation {
    /// Learns from SYNs, forgets nothing.
    fn default() -> BackendEmulation {
        BackendEmulation::new(false)
    }
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
            ends: HashMap::new(),
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

    /// Forgets, at `now`, the flows idle for longer than the horizon, when it is time to.
    #[inline]
    fn forget(&mut self, now: u64) {
        if now < self.next_forget {
            return;
        }
        if self.next_forget > 0 {
            let h = self.horizon_ns;
            self.ends.retain(|_, e| now.saturating_sub(e.last) <= h);
            self.headers
                .retain(|_, &mut (_, last)| now.saturating_sub(last) <= h);
        }
        self.next_forget = now.saturating_add((self.horizon_ns / 4).max(1));
    }

    /// Backends that send one packet per flow (learnt from its SYN) and then forget it, so
    /// they hold only the flows still to be answered.
    pub fn answering_once() -> BackendEmulation {
        BackendEmulation {
            once: true,
            ..BackendEmulation::new(false)
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
        // before its flow's SYN did; without forgetting, only SYNs cost a hash here.
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
        if v.is_syn() {
            self.ends.insert(key, ends);
        } else if self.pickup {
            self.ends.entry(key).or_insert(ends).last = now;
        } else if self.horizon_ns != u64::MAX
            && let Some(e) = self.ends.get_mut(&key)
        {
            e.last = now;
        }
    }

    fn enter(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let now = meta.ts.as_nanos();
        self.forget(now);
        let key = (meta.vnet, meta.orig.reversed());
        let found = if self.once {
            self.ends.remove(&key)
        } else {
            self.ends.get_mut(&key).map(|e| {
                e.last = now;
                *e
            })
        };
        let Some(Ends {
            backend: (b, bp),
            nat: (n, np),
            ..
        }) = found
        else {
            return Err(DropReason::NoFlow);
        };
        let v = meta.view.as_mut().ok_or(DropReason::NoFlow)?;
        v.set_source(frame, b, bp);
        v.set_destination(frame, n, np);
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
