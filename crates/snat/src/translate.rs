//! The translation path: [`Snat::forward`] (`C:cp -> B:bp` leaves as `N:np -> B:bp`, opening
//! a flow on a SYN) and [`Snat::reverse`] (`B:bp -> N:np` back to `B:bp -> C:cp`), their
//! prefetch hooks, and what one packet does to its flow (TCP state, timer, port gauges).

use std::net::Ipv4Addr;

use plsim_flowtab::Record;
use plsim_wire::{DropReason, Ipv4Tcp, LinkId, SimTime, TcpFlags};

use crate::Snat;
use crate::flow::{Flow, in_hash, out_hash};
use crate::part::SnatKey;
use crate::tcp::Dir;

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
        let now = self.clock(now);
        let created = self.created;
        let t = view.tuple();
        let k = SnatKey::of(link, t);
        let h = out_hash(link, t);
        let found = self
            .table
            .find_fwd(h, |f| f.out_is(link.0, k.c_ip, k.c_port, k.b_ip, k.b_port));
        let idx = match found {
            Some(i) => {
                self.on_packet(i, Dir::Forward, view.flags(), now);
                i
            }
            None => {
                let p = self.open(k, frame, view, now)?;
                let flow = Flow::of(k, p);
                let deadline = self.timeouts.deadline(&flow);
                self.table.insert_hashed(flow, h, flow.rev_hash(), deadline)
            }
        };
        // Opened or reopened by this packet: `created` moved.
        let opened = self.created != created;
        self.proxy_forward(idx, opened, link, frame, view);
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
        let now = self.clock(now);
        let t = view.tuple();
        let Some(nat) = self.ports.nat_index(u32::from(t.dst)) else {
            return Err(self.no_flow());
        };
        let b_ip = u32::from(t.src);
        let h = in_hash(nat, t);
        let found = self
            .table
            .find_rev(h, |f| f.in_is(nat, t.dport, b_ip, t.sport));
        let Some(idx) = found else {
            return Err(self.no_flow());
        };
        self.on_packet(idx, Dir::Reverse, view.flags(), now);
        self.proxy_reverse(idx, frame, view);
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

    /// Updates flow `idx` of the engine's own table for one packet (see [`Snat::step`]), and
    /// its timer when the deadline moved earlier.
    #[inline]
    fn on_packet(&mut self, idx: u32, dir: Dir, flags: u8, now: u64) {
        let f = *self.table.get(idx);
        let mut p = f.part();
        let rearm = self.step(f.key(), &mut p, dir, flags, now);
        let rec = self.table.get_mut(idx);
        rec.last = p.last;
        rec.state = p.state;
        if let Some(deadline) = rearm {
            self.table.rearm(idx, deadline);
        }
    }

    /// Writes the RST answering the refused SYN of `frame` into `self.rst`.
    pub(crate) fn build_rst(&mut self, frame: &[u8], view: &Ipv4Tcp) {
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
