//! The SNAT's part of a flow record, and the rules that make, change and end it. The engine's
//! own table keeps a part in each of its records ([`Snat::forward`], [`Snat::reverse`]); a
//! path whose stages share one record per connection (`docs/architecture.md`, section 4) keeps
//! one in its own record, with the keys it holds ([`SnatKey`]), and calls these instead.

use std::net::Ipv4Addr;

use plsim_wire::{DropReason, FlowTuple, Ipv4Tcp, LinkId, TcpFlags};

use crate::Snat;
use crate::flow::Flow;
use crate::tcp::{self, Dir, OPENED, PLAIN_EST, STATE_FLAGS, closed};

/// The SNAT's part of one flow: its NAT IP and port, its TCP state and its last packet. 16
/// bytes. Only the SNAT engine reads or changes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnatFlow {
    /// Nanoseconds of the last packet (of the closing packet once closed).
    pub(crate) last: u64,
    pub(crate) n_port: u16,
    /// The index of its NAT IP.
    pub(crate) nat: u8,
    /// TCP state bits ([`crate::tcp`]); never 0.
    pub(crate) state: u8,
}

/// The keys a flow's part is kept under: its connection, and the flow as it left the load
/// balancer, `C:cp -> B:bp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnatKey {
    /// The connection's link id.
    pub link: u32,
    /// The consumer's address (C).
    pub c_ip: u32,
    /// The backend's address (B).
    pub b_ip: u32,
    /// The consumer's port (cp).
    pub c_port: u16,
    /// The backend's port (bp).
    pub b_port: u16,
}

impl SnatKey {
    /// The key of a consumer packet `C:cp -> B:bp` of connection `link`.
    #[inline]
    pub fn of(link: LinkId, t: FlowTuple) -> SnatKey {
        SnatKey {
            link: link.0,
            c_ip: u32::from(t.src),
            b_ip: u32::from(t.dst),
            c_port: t.sport,
            b_port: t.dport,
        }
    }
}

impl Flow {
    /// The record of a part under its keys.
    #[inline]
    pub(crate) fn of(k: SnatKey, p: SnatFlow) -> Flow {
        Flow {
            last: p.last,
            link: k.link,
            c_ip: k.c_ip,
            b_ip: k.b_ip,
            gen_: 0,
            c_port: k.c_port,
            b_port: k.b_port,
            n_port: p.n_port,
            nat: p.nat,
            state: p.state,
        }
    }

    /// Its keys.
    #[inline]
    pub(crate) fn key(&self) -> SnatKey {
        SnatKey {
            link: self.link,
            c_ip: self.c_ip,
            b_ip: self.b_ip,
            c_port: self.c_port,
            b_port: self.b_port,
        }
    }

    /// Its part.
    #[inline]
    pub(crate) fn part(&self) -> SnatFlow {
        SnatFlow {
            last: self.last,
            n_port: self.n_port,
            nat: self.nat,
            state: self.state,
        }
    }
}

/// How a flow record left: what it is counted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// Its timer ran out.
    Expired,
    /// Its connection left `Approved`.
    TornDown,
    /// The load balancer reset it (its backend went down under `reset`).
    Reset,
}

impl Snat {
    /// Moves the engine's clock to `now` (never back) and runs the timers of its own table
    /// (an engine whose parts a shared record keeps has none there); returns the clock, in
    /// nanoseconds. Every packet call does it first.
    #[inline]
    pub fn clock(&mut self, now: plsim_wire::SimTime) -> u64 {
        self.rst.clear();
        if let Some(p) = self.proxy.as_mut() {
            p.clear_due();
        }
        self.advance(now)
    }

    /// A consumer packet (`view`) with no flow: opens one when it may (a SYN; with `pickup`,
    /// anything but a RST) on a free NAT port, or says why not: `no_flow`, or
    /// `port_exhausted` (an SNAT failure, counted, answered with a RST when configured: see
    /// [`Snat::rst_reply`]). `now` as [`Snat::clock`] returned it.
    #[inline]
    pub fn open(
        &mut self,
        k: SnatKey,
        frame: &[u8],
        view: &Ipv4Tcp,
        now: u64,
    ) -> Result<SnatFlow, DropReason> {
        let syn = view.is_syn();
        let flags = view.flags();
        if !(syn || self.cfg.pickup && flags & TcpFlags::RST == 0) {
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        }
        let Some((nat, n_port)) = self
            .ports
            .allocate(k.link, k.c_ip, k.c_port, k.b_ip, k.b_port)
        else {
            if self.ports.has_free(k.b_ip, k.b_port) {
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
        let mut p = SnatFlow {
            last: now,
            n_port,
            nat,
            state: OPENED,
        };
        if let Some(r) = self.reuse.as_mut() {
            r.made(&Flow::of(k, p), now);
        }
        self.created += 1;
        self.open += 1;
        self.live += 1;
        self.opened(k.link, true);
        self.live_peak = self.live_peak.max(self.live);
        if !syn {
            // Mid-stream pickup: take the handshake as done.
            p.state = PLAIN_EST;
            self.step(k, &mut p, Dir::Forward, flags, now);
        }
        Ok(p)
    }

    /// One packet of a flow it knows, going `dir` with TCP `flags`: its TCP state, last-seen
    /// time, counters and port gauges. Returns the part's new deadline when it moved earlier
    /// (the caller re-arms its timer).
    #[inline]
    pub fn step(
        &mut self,
        k: SnatKey,
        p: &mut SnatFlow,
        dir: Dir,
        flags: u8,
        now: u64,
    ) -> Option<u64> {
        if p.state == PLAIN_EST && flags & STATE_FLAGS == 0 {
            p.last = now;
            return None;
        }
        let old = Flow::of(k, *p);
        let old_deadline = self.timeouts.deadline(&old);
        let s = tcp::next(old.state, dir, flags)?; // closed, and not reopened: frozen
        if closed(old.state) {
            // A new SYN from the consumer reopens it on the same port.
            self.created += 1;
            self.open += 1;
            self.opened(old.link, false);
            self.ports.reopen(&old);
        }
        p.state = s;
        p.last = now;
        let new_deadline = self.deadline(k, p);
        if closed(s) && !closed(old.state) {
            self.closed += 1;
            self.open -= 1;
            self.ports.hold(&old);
        }
        (new_deadline < old_deadline).then_some(new_deadline)
    }

    /// A packet, either way, of a plain established flow with none of SYN, FIN or RST: all
    /// [`Snat::step`] would do is note its time. False (nothing done) for any other packet.
    #[inline(always)]
    pub fn step_fast(p: &mut SnatFlow, flags: u8, now: u64) -> bool {
        let plain = p.state == PLAIN_EST && flags & STATE_FLAGS == 0;
        if plain {
            p.last = now;
        }
        plain
    }

    /// When the part's port is freed unless a packet comes (nanoseconds).
    #[inline]
    pub fn deadline(&self, k: SnatKey, p: &SnatFlow) -> u64 {
        self.timeouts.deadline(&Flow::of(k, *p))
    }

    /// The part left the record at `now` (`why`): counted, its port freed, its close on the
    /// reuse record.
    pub fn gone(&mut self, k: SnatKey, p: &SnatFlow, why: Gone, now: u64) {
        if !closed(p.state) {
            self.open -= 1;
            *match why {
                Gone::Expired => &mut self.expired,
                Gone::TornDown => &mut self.torn_down,
                Gone::Reset => &mut self.reset,
            } += 1;
        }
        let f = Flow::of(k, *p);
        self.ports.release(&f);
        if let Some(r) = self.reuse.as_mut() {
            r.freed(&f, now);
        }
        if let Some(n) = self.live_by_link.get_mut(f.link as usize) {
            *n -= 1;
        }
        self.live -= 1;
    }

    /// The NAT IP a part uses, and its port: the packet leaves as `N:np -> B:bp`.
    #[inline]
    pub fn nat_of(&self, p: &SnatFlow) -> (Ipv4Addr, u16) {
        (self.ports.nat_ip(p.nat), p.n_port)
    }

    /// The index of NAT IP `ip` among this engine's, if it is one.
    #[inline]
    pub fn nat_index(&self, ip: Ipv4Addr) -> Option<u8> {
        self.ports.nat_index(u32::from(ip))
    }

    /// A backend packet that reached no flow: dropped as `no_flow`, counted.
    pub fn no_flow(&mut self) -> DropReason {
        self.drops.add(DropReason::NoFlow);
        DropReason::NoFlow
    }

    /// With PROXY protocol on: a consumer packet of the flow whose part is kept under `slot`
    /// passed (`opened`: it opened or reopened the flow): the header is due with it, or its
    /// sequence number is shifted (see [`crate::proxy`]).
    #[inline]
    pub fn proxy_forward(
        &mut self,
        slot: u32,
        opened: bool,
        link: LinkId,
        frame: &mut [u8],
        view: &Ipv4Tcp,
    ) {
        if let Some(p) = self.proxy.as_mut() {
            p.forward(slot, opened, link, frame, view);
        }
    }

    /// With PROXY protocol on: a backend packet of the flow whose part is kept under `slot`
    /// passed: its acknowledgements are shifted back.
    #[inline]
    pub fn proxy_reverse(&self, slot: u32, frame: &mut [u8], view: &Ipv4Tcp) {
        if let Some(p) = self.proxy.as_ref() {
            p.reverse(slot, frame, view);
        }
    }
}

impl SnatFlow {
    /// Its NAT IP's index in its engine (part of the backend-side key).
    #[inline]
    pub fn nat(&self) -> u8 {
        self.nat
    }

    /// Its NAT port (part of the backend-side key).
    #[inline]
    pub fn n_port(&self) -> u16 {
        self.n_port
    }
}
