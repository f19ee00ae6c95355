//! The translation path: [`Snat::forward`] (`C:cp -> B:bp` leaves as `N:np -> B:bp`, opening
//! a flow on a SYN) and [`Snat::reverse`] (`B:bp -> N:np` back to `B:bp -> C:cp`), their
//! prefetch hooks, and what one packet does to its flow (TCP state, timer, port gauges).

use std::net::Ipv4Addr;

use plsim_flowtab::Record;
use plsim_wire::{DropReason, FlowTuple, Ipv4Tcp, LinkId, SimTime, TcpFlags};

use crate::Snat;
use crate::flow::{Flow, in_hash, out_hash};
use crate::tcp::{self, Dir, OPENED, PLAIN_EST, STATE_FLAGS, closed};

impl Snat {
    /// Translates a consumer packet `C:cp -> B:bp` of connection `link` to `N:np -> B:bp`.
    ///
    /// A SYN with no flow opens one (any packet but a RST does with `pickup`). Errors:
    /// `no_flow` for another packet with no flow, `port_exhausted` when a SYN finds no free port
    /// (an SNAT failure; see [`Snat::rst_reply`]). The frame is only changed on `Ok`.
    #[inline]
    pub fn forward(
        &mut self,
        link: LinkId,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<(), DropReason> {
        self.rst.clear();
        if let Some(p) = self.proxy.as_mut() {
            p.clear_due();
        }
        let now = self.advance(now);
        let created = self.created;
        let t = view.tuple();
        let (c_ip, b_ip) = (u32::from(t.src), u32::from(t.dst));
        let h = out_hash(link, t);
        let found = self
            .table
            .find_fwd(h, |f| f.out_is(link.0, c_ip, t.sport, b_ip, t.dport));
        let flags = view.flags();
        let idx = match found {
            Some(i) => {
                self.on_packet(i, Dir::Forward, flags, now);
                i
            }
            None => {
                let syn = view.is_syn();
                if !(syn || self.cfg.pickup && flags & TcpFlags::RST == 0) {
                    self.drops.add(DropReason::NoFlow);
                    return Err(DropReason::NoFlow);
                }
                let Some(i) = self.open(link.0, t, h, now) else {
                    if self.ports.has_free(b_ip, t.dport) {
                        self.gave_up += 1;
                    } else {
                        self.exhausted += 1;
                    }
                    self.drops.add(DropReason::PortExhausted);
                    if self.cfg.rst_on_exhaustion {
                        self.build_rst(frame, view);
                    }
                    return Err(DropReason::PortExhausted);
                };
                if !syn {
                    // Mid-stream pickup: take the handshake as done.
                    self.table.get_mut(i).state = PLAIN_EST;
                    self.on_packet(i, Dir::Forward, flags, now);
                }
                i
            }
        };
        if let Some(p) = self.proxy.as_mut() {
            // Opened or reopened by this packet: `created` moved.
            p.forward(idx, self.created != created, link, frame, view);
        }
        let f = self.table.get(idx);
        view.set_source(frame, self.ports.nat_ip(f.nat), f.n_port);
        Ok(())
    }

    /// Translates a backend packet `B:bp -> N:np` back to `B:bp -> C:cp` and returns the flow's
    /// link id. A packet that matches no flow is `no_flow`: the provider can't open connections.
    #[inline]
    pub fn reverse(
        &mut self,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<LinkId, DropReason> {
        self.rst.clear();
        if let Some(p) = self.proxy.as_mut() {
            p.clear_due();
        }
        let now = self.advance(now);
        let t = view.tuple();
        let Some(nat) = self.ports.nat_index(u32::from(t.dst)) else {
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        };
        let b_ip = u32::from(t.src);
        let h = in_hash(nat, t);
        let found = self
            .table
            .find_rev(h, |f| f.in_is(nat, t.dport, b_ip, t.sport));
        let Some(idx) = found else {
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        };
        self.on_packet(idx, Dir::Reverse, view.flags(), now);
        if let Some(p) = self.proxy.as_ref() {
            p.reverse(idx, frame, view);
        }
        let f = self.table.get(idx);
        view.set_destination(frame, Ipv4Addr::from(f.c_ip), f.c_port);
        Ok(LinkId(f.link))
    }

    /// Prefetches what [`forward`](Snat::forward) of this packet (`C:cp -> B:bp` of `link`)
    /// will read first: its bucket in the forward index (the very hash `forward` computes).
    /// Call it for the packets of a batch some packets ahead of translating them. Changes
    /// nothing.
    #[inline]
    pub fn prefetch_forward(&self, link: LinkId, view: &Ipv4Tcp) {
        self.table.prefetch_fwd(out_hash(link, view.tuple()));
    }

    /// Prefetches what [`reverse`](Snat::reverse) of this packet (`B:bp -> N:np`) will read
    /// first: its bucket in the reverse index. Does nothing for a packet to no NAT IP of this
    /// engine. Changes nothing.
    #[inline]
    pub fn prefetch_reverse(&self, view: &Ipv4Tcp) {
        let t = view.tuple();
        if let Some(nat) = self.ports.nat_index(u32::from(t.dst)) {
            self.table.prefetch_rev(in_hash(nat, t));
        }
    }

    /// Updates flow `idx` for one packet: its TCP state, last-seen time, counters and port
    /// gauges, and its timer when the deadline moved earlier.
    #[inline]
    fn on_packet(&mut self, idx: u32, dir: Dir, flags: u8, now: u64) {
        let f = self.table.get_mut(idx);
        if f.state == PLAIN_EST && flags & STATE_FLAGS == 0 {
            f.last = now;
            return;
        }
        let old = *f;
        let old_deadline = self.timeouts.deadline(&old);
        let Some(s) = tcp::next(old.state, dir, flags) else {
            return; // closed, and not reopened: frozen
        };
        if closed(old.state) {
            // A new SYN from the consumer reopens it on the same port.
            self.created += 1;
            self.open += 1;
            self.opened(old.link, false);
            self.ports.reopen(&old);
        }
        let f = self.table.get_mut(idx);
        f.state = s;
        f.last = now;
        let new_deadline = self.timeouts.deadline(f);
        if closed(s) && !closed(old.state) {
            self.closed += 1;
            self.open -= 1;
            self.ports.hold(&old);
        }
        if new_deadline < old_deadline {
            self.table.rearm(idx, new_deadline);
        }
    }

    /// Picks a NAT IP and a port for a new flow and makes its record; `None` when no port is
    /// free.
    fn open(&mut self, link: u32, t: FlowTuple, h: u64, now: u64) -> Option<u32> {
        let (c_ip, b_ip) = (u32::from(t.src), u32::from(t.dst));
        let (nat, n_port) = self.ports.allocate(link, c_ip, t.sport, b_ip, t.dport)?;
        let flow = Flow {
            last: now,
            link,
            c_ip,
            b_ip,
            gen_: 0,
            c_port: t.sport,
            b_port: t.dport,
            n_port,
            nat,
            state: OPENED,
        };
        let deadline = self.timeouts.deadline(&flow);
        let idx = self.table.insert_hashed(flow, h, flow.rev_hash(), deadline);
        if let Some(r) = self.reuse.as_mut() {
            r.made(&flow, now);
        }
        self.created += 1;
        self.open += 1;
        self.opened(link, true);
        self.live_peak = self.live_peak.max(self.table.len() as u64);
        Some(idx)
    }

    /// Writes the RST answering the refused SYN of `frame` into `self.rst`.
    fn build_rst(&mut self, frame: &[u8], view: &Ipv4Tcp) {
        let t = view.tuple();
        let ack = view
            .seq(frame)
            .wrapping_add(1)
            .wrapping_add(view.payload_len() as u32);
        let r = &mut self.rst;
        r.clear();
        r.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        r.extend_from_slice(&t.dst.octets());
        r.extend_from_slice(&t.src.octets());
        r.extend_from_slice(&t.dport.to_be_bytes());
        r.extend_from_slice(&t.sport.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(&ack.to_be_bytes());
        r.extend_from_slice(&[0x50, TcpFlags::RST | TcpFlags::ACK, 0, 0, 0, 0, 0, 0]);
        match plsim_wire::classify_l3(r) {
            Ok(v) => plsim_wire::checksum::fill(r, &v),
            Err(_) => r.clear(),
        }
    }
}
