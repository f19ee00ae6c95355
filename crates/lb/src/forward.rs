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
        let now_ns = now.as_nanos();
        if let Some(slot) = self
            .table
            .find_fwd(h, |f| f.fwd_is(link.0, client, t.sport, frontend, t.dport))
        {
            let f = self.table.get_mut(slot);
            let b = &mut self.backends[f.backend as usize];
            if f.deadline(self.idle_ns) <= now_ns {
                // Idle past the timeout, not yet collected: it has ended.
                self.remove_slot(slot);
                self.flow_stats.expired += 1;
            } else if !view.is_syn() || b.up {
                f.last_seen = f.last_seen.max(now_ns);
                b.counters.packets += 1;
                self.rules[usize::from(f.rule)].hits += 1;
                let (ip, port) = (Ipv4Addr::from(f.backend_ip), f.bport);
                view.set_destination(frame, ip, port);
                return Ok(Forwarded {
                    backend: ip,
                    port,
                    new_flow: false,
                });
            } else {
                // A new connection on the tuple of a flow whose backend is gone: pick afresh.
                self.remove_slot(slot);
                self.flow_stats.replaced += 1;
            }
        }
        self.expire_budget(now_ns, 2);
        let (rule, backend, bport) = match self.pick_inner(link.0, t, h) {
            Ok(picked) => picked,
            Err(reason) => {
                self.drops.add(reason);
                return Err(reason);
            }
        };
        let backend_ip = u32::from(self.backends[backend as usize].ip);
        let rh = hash::reply(link.0, client, t.sport, backend_ip, bport);
        if self
            .table
            .find_rev(rh, |f| f.rev_is(link.0, client, t.sport, backend_ip, bport))
            .is_some()
        {
            self.flow_stats.ambiguous += 1;
            self.drops.add(DropReason::NoBackend);
            return Err(DropReason::NoBackend);
        }
        let flow = Flow {
            link: link.0,
            client,
            frontend,
            backend,
            backend_ip,
            cport: t.sport,
            fport: t.dport,
            bport,
            rule,
            last_seen: now_ns,
            generation: 0,
        };
        self.table
            .insert_hashed(flow, h, rh, flow.deadline(self.idle_ns));
        self.flow_stats.created += 1;
        let r = &mut self.rules[usize::from(rule)];
        r.hits += 1;
        r.flows += 1;
        let c = &mut self.backends[backend as usize].counters;
        c.flows += 1;
        c.active_flows += 1;
        c.packets += 1;
        let ip = Ipv4Addr::from(backend_ip);
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
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        };
        let f = self.table.get_mut(slot);
        let now_ns = now.as_nanos();
        if f.deadline(self.idle_ns) <= now_ns {
            self.remove_slot(slot);
            self.flow_stats.expired += 1;
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        }
        f.last_seen = f.last_seen.max(now_ns);
        self.backends[f.backend as usize].counters.reply_packets += 1;
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
