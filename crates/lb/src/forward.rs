//! The packet path: [`Lb::forward`] and [`Lb::reverse`], their prefetch hooks, and the two
//! index hashes they share.

use std::net::Ipv4Addr;

use plsim_wire::{DropReason, FlowTuple, Ipv4Tcp, LinkId, SimTime};

use crate::table::Flow;
use crate::{Lb, hash};

/// Where [`Lb::forward`] sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The backend (B), now the packet's destination.
    pub backend: Ipv4Addr,
    /// The backend port (bp), now the packet's destination port.
    pub port: u16,
    /// True when this packet opened the flow (it picked the backend).
    pub new_flow: bool,
}

impl Lb {
    /// Forwards one consumer packet C:cp -> F:fp of connection `link`: rewrites its destination
    /// to the flow's backend B:bp (checksums updated incrementally, `view` kept in step).
    ///
    /// A packet of a known flow goes to that flow's backend. Any other packet opens a flow: it
    /// must match a rule ([`DropReason::NoRule`]) whose pool has a healthy backend
    /// ([`DropReason::NoBackend`]). A dropped packet is left unchanged.
    // Always inlined: called out of line, its `Result<Forwarded, _>` was packed through the
    // stack and read back across two stores (a stalled store-to-load forward, about a seventh
    // of the stage's time at 1M flows), even where the caller drops it.
    #[inline(always)]
    pub fn forward(
        &mut self,
        link: LinkId,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<Forwarded, DropReason> {
        let t = view.tuple();
        let (client, frontend) = (u32::from(t.src), u32::from(t.dst));
        let h = fwd_hash(link, t);
        if let Some(slot) = self
            .table
            .find_fwd(h, |f| f.fwd_is(link.0, client, t.sport, frontend, t.dport))
        {
            let f = *self.table.get(slot);
            let mut part = f.part();
            match self.forward_known(&mut part, view.is_syn(), now) {
                Ok(()) => {
                    self.table.get_mut(slot).set_part(part);
                    let (ip, port) = (Ipv4Addr::from(f.backend_ip), f.bport);
                    view.set_destination(frame, ip, port);
                    return Ok(Forwarded {
                        backend: ip,
                        port,
                        new_flow: false,
                    });
                }
                // Expired (not yet collected), or a new connection on the tuple of a flow
                // whose backend is gone: picked afresh below.
                Err(_) => {
                    self.table.remove(slot);
                }
            }
        }
        self.expire_budget(now.as_nanos(), 2);
        let choice = self.choose(link, t);
        let taken = choice.is_ok_and(|c| {
            let (ip, bport) = (u32::from(c.backend()), c.port());
            let rh = hash::reply(link.0, client, t.sport, ip, bport);
            self.table
                .find_rev(rh, |f| f.rev_is(link.0, client, t.sport, ip, bport))
                .is_some()
        });
        let (ip, bport) = choice.map_or((Ipv4Addr::UNSPECIFIED, 0), |c| (c.backend(), c.port()));
        let part = self.open(choice, taken, now)?;
        let mut flow = Flow {
            link: link.0,
            client,
            frontend,
            backend: 0,
            backend_ip: u32::from(ip),
            cport: t.sport,
            fport: t.dport,
            bport,
            rule: 0,
            last_seen: 0,
            generation: 0,
        };
        flow.set_part(part);
        let rh = hash::reply(link.0, client, t.sport, flow.backend_ip, bport);
        self.table.insert_hashed(flow, h, rh, self.deadline(&part));
        view.set_destination(frame, ip, bport);
        Ok(Forwarded {
            backend: ip,
            port: bport,
            new_flow: true,
        })
    }

    /// Rewrites one reply B:bp -> C:cp of connection `link` (the SNAT stage has restored the
    /// consumer as its destination) to come from the frontend, F:fp -> C:cp, and refreshes the
    /// flow. A reply of no forwarded flow is dropped as [`DropReason::NoFlow`], unchanged.
    #[inline]
    pub fn reverse(
        &mut self,
        link: LinkId,
        frame: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<(), DropReason> {
        let t = view.tuple();
        let (backend_ip, client) = (u32::from(t.src), u32::from(t.dst));
        let rh = rev_hash(link, t);
        let Some(slot) = self.table.find_rev(rh, |f| {
            f.rev_is(link.0, client, t.dport, backend_ip, t.sport)
        }) else {
            return Err(self.no_flow());
        };
        let f = *self.table.get(slot);
        let mut part = f.part();
        if let Err(r) = self.reverse_known(&mut part, now) {
            self.table.remove(slot);
            return Err(r);
        }
        self.table.get_mut(slot).set_part(part);
        view.set_source(frame, Ipv4Addr::from(f.frontend), f.fport);
        Ok(())
    }

    /// Prefetches what [`forward`](Lb::forward) of this packet will read first: the bucket of
    /// its flow in the forward index (the hash is the one `forward` computes). Call it for the
    /// packets of a batch some packets ahead of forwarding them; changes nothing.
    #[inline]
    pub fn prefetch_forward(&self, link: LinkId, view: &Ipv4Tcp) {
        self.table.prefetch_fwd(fwd_hash(link, view.tuple()));
    }

    /// Prefetches what [`reverse`](Lb::reverse) of this packet (B:bp -> C:cp) will read first: the
    /// bucket of its flow in the return index. Changes nothing.
    #[inline]
    pub fn prefetch_reverse(&self, link: LinkId, view: &Ipv4Tcp) {
        self.table.prefetch_rev(rev_hash(link, view.tuple()));
    }
}

/// The forward index's hash of a packet C:cp -> F:fp of `link` (as [`Lb::forward`] computes it).
#[inline]
pub(crate) fn fwd_hash(link: LinkId, t: FlowTuple) -> u64 {
    hash::flow(link.0, u32::from(t.src), t.sport, u32::from(t.dst), t.dport)
}

/// The return index's hash of a reply B:bp -> C:cp of `link` (as [`Lb::reverse`] computes it).
#[inline]
pub(crate) fn rev_hash(link: LinkId, t: FlowTuple) -> u64 {
    hash::reply(link.0, u32::from(t.dst), t.dport, u32::from(t.src), t.sport)
}
