//! The core as one stage: the load balancer and the SNAT engines keep their parts of a
//! connection in one record ([`Conn`]) of one table ([`ConnTable`]), found by one probe of one
//! index (`docs/architecture.md`, section 4). The record's keys are this composition's: the
//! consumer's tuple as the load balancer gets it (its forward key, while the load balancer's
//! part lives), the flow as it leaves the load balancer (while any part lives), and the
//! backend-side tuple (while the SNAT's part lives). Each part is its stage's own type, read
//! and changed by its stage's code only.
//!
//! A packet that creates, closes or changes a connection takes each stage's full rules, as
//! the stages do on their own tables (the slow path); any other packet of an established
//! connection applies what those rules decided: both parts refreshed, both rewrites and one
//! checksum update (the fast path). The result is the stages' own, exactly: the threaded
//! engine runs this core, the sequential engine runs the stages on their own tables
//! ([`crate::stages`]), and the differential tests compare the two.

use std::net::Ipv4Addr;

use plsim_engine::{Dir, Meta, Stage};
use plsim_flowtab::ConnTable;
use plsim_lb::Lb;
use plsim_snat::{Gone, Snat, SnatKey};
use plsim_wire::{DropReason, Ipv4Tcp, LinkId, Place, SimTime, TcpFlags};

use crate::stages::{LbStage, SnatStage};
use crate::{Effect, Event};

mod conn;

pub use conn::{Conn, part_bytes};
use conn::{LB, SNAT, backend_hash, consumer_hash, leaving_hash};

/// The core: the load balancer, the SNAT engines, and the one table of their connections.
pub struct CoreStage {
    table: ConnTable<Conn>,
    lb: LbStage,
    snat: SnatStage,
    /// No engine sends PROXY protocol headers: a packet may take the fast path (a header is
    /// due, or a stream shifted, on the slow one only).
    fast: bool,
    /// The record, link layer and time of the packet the SNAT just refused, for its answer:
    /// the answer goes back through the load balancer's part as through the load balancer.
    answering: Option<(u32, plsim_wire::LinkType, SimTime)>,
}

#[inline]
fn view(meta: &mut Meta) -> &mut Ipv4Tcp {
    meta.view
        .as_mut()
        .expect("a packet that reaches a stage is IPv4 TCP")
}

/// The earliest deadline of a record's live parts.
#[inline]
fn deadline_of(lb: &Lb, engines: &[Snat], r: &Conn) -> u64 {
    let mut d = u64::MAX;
    if r.has(LB) {
        d = lb.deadline(&r.lb);
    }
    if r.has(SNAT) {
        d = d.min(engines[usize::from(r.service)].deadline(r.snat_key(), &r.snat));
    }
    d
}

/// The connections' timers: what a record's deadline is, and what ends when it is due.
struct Timers<'a> {
    lb: &'a mut Lb,
    engines: &'a mut [Snat],
    now: u64,
}

impl plsim_flowtab::Expiry<Conn> for Timers<'_> {
    #[inline]
    fn deadline(&mut self, r: &Conn) -> u64 {
        deadline_of(self.lb, self.engines, r)
    }
    fn due(&mut self, _slot: u32, r: &mut Conn) -> bool {
        if r.has(LB) && self.lb.deadline(&r.lb) <= self.now {
            self.lb.expired(&r.lb);
            r.parts &= !LB;
        }
        if r.has(SNAT) {
            let e = &mut self.engines[usize::from(r.service)];
            let k = r.snat_key();
            if e.deadline(k, &r.snat) <= self.now {
                e.gone(k, &r.snat, Gone::Expired, self.now);
                r.parts &= !SNAT;
            }
        }
        r.parts != 0
    }
}

impl CoreStage {
    /// The core of the load balancer and the SNAT engines built from a scenario (their own
    /// tables stay empty: the connections are here).
    pub fn new(lb: LbStage, snat: SnatStage) -> CoreStage {
        CoreStage {
            table: ConnTable::new(),
            fast: !snat.may_inject(),
            answering: None,
            lb,
            snat,
        }
    }

    /// Makes room for `flows` more connections without growing on the packet path.
    pub fn reserve(&mut self, flows: usize) {
        self.table.reserve(flows, 3 * flows);
        self.snat.reserve_slots(self.table.slot_count() + flows);
    }

    /// The load balancer.
    pub fn lb(&self) -> &LbStage {
        &self.lb
    }

    /// The SNAT engines.
    pub fn snat(&self) -> &SnatStage {
        &self.snat
    }

    /// The SNAT engines, to set up sampling or take the samples.
    pub fn snat_mut(&mut self) -> &mut SnatStage {
        &mut self.snat
    }

    /// Heap bytes of the connection table (records, index, timers).
    pub fn table_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    /// Connections in the table (records with a live part).
    pub fn connections(&self) -> usize {
        self.table.len()
    }

    /// Runs every timer due by `now`: the stages' own (empty) tables, then the connections'.
    pub fn expire(&mut self, now: SimTime) {
        self.lb.0.expire(now);
        for e in self.snat.engines_mut() {
            e.expire(now);
        }
        let now = now.as_nanos();
        let (lb, engines) = (&mut self.lb.0, self.snat.engines_mut());
        self.table
            .expire(now, usize::MAX, Timers { lb, engines, now });
    }

    /// Arms the record's timer at its earliest deadline when that moved earlier than `was`.
    #[inline]
    fn rearm_if_earlier(&mut self, slot: u32, was: u64) {
        let d = deadline_of(&self.lb.0, self.snat.engines(), self.table.get(slot));
        if d < was {
            self.table.rearm(slot, d);
        }
    }

    /// Ends the load balancer's part of the record in `slot` (the stage counted why); the
    /// record goes with it unless the SNAT's part lives on.
    fn drop_lb_part(&mut self, slot: u32) {
        if self.table.get(slot).has(SNAT) {
            self.table.update(slot, |r| r.parts &= !LB);
        } else {
            self.table.remove(slot);
        }
    }

    /// The load balancer's half of a consumer packet: the record of its connection, with a
    /// live load balancer part (found, or made: a flow picked anew).
    #[inline]
    fn lb_forward(&mut self, link: LinkId, v: &Ipv4Tcp, now: SimTime) -> Result<u32, DropReason> {
        let t = v.tuple();
        let (c_ip, f_ip) = (u32::from(t.src), u32::from(t.dst));
        let h = consumer_hash(link.0, c_ip, t.sport, f_ip, t.dport);
        if let Some(slot) = self
            .table
            .find(h, |r| r.is_consumer(link.0, c_ip, t.sport, f_ip, t.dport))
        {
            let mut part = self.table.get(slot).lb;
            match self.lb.0.forward_known(&mut part, v.is_syn(), now) {
                Ok(()) => {
                    self.table.get_mut(slot).lb = part;
                    return Ok(slot);
                }
                Err(_) => self.drop_lb_part(slot),
            }
        }
        let choice = self.lb.0.choose(link, t);
        // A record leaving for the chosen B:bp: another flow's (then this one is ambiguous),
        // or a SNAT part alone whose flow the load balancer let go (this flow takes it on).
        let leaving = choice.ok().and_then(|c| {
            let k = SnatKey {
                link: link.0,
                c_ip,
                b_ip: u32::from(c.backend()),
                c_port: t.sport,
                b_port: c.port(),
            };
            let h = leaving_hash(k.link, k.c_ip, k.c_port, k.b_ip, k.b_port);
            self.table.find(h, |r| r.is_leaving(&k))
        });
        let taken = leaving.is_some_and(|s| self.table.get(s).has(LB));
        let (b_ip, b_port) = choice.map_or((0, 0), |c| (u32::from(c.backend()), c.port()));
        let part = self.lb.0.open(choice, taken, now)?;
        let slot = match leaving {
            Some(slot) => {
                let was = deadline_of(&self.lb.0, self.snat.engines(), self.table.get(slot));
                self.table.update(slot, |r| {
                    r.f_ip = f_ip;
                    r.f_port = t.dport;
                    r.lb = part;
                    r.parts |= LB;
                });
                self.rearm_if_earlier(slot, was);
                slot
            }
            None => {
                let rec = Conn {
                    lb: part,
                    link: link.0,
                    c_ip,
                    f_ip,
                    b_ip,
                    c_port: t.sport,
                    f_port: t.dport,
                    b_port,
                    parts: LB,
                    ..Conn::default()
                };
                self.table.insert(rec, self.lb.0.deadline(&part))
            }
        };
        Ok(slot)
    }

    /// The SNAT's half of a consumer packet of the record in `slot` (its destination already
    /// rewritten to B:bp): the SNAT's part found or opened, the source rewritten to N:np.
    #[inline]
    fn snat_forward(
        &mut self,
        slot: u32,
        s: usize,
        frame: &mut [u8],
        meta: &mut Meta,
    ) -> Result<(), DropReason> {
        let link = meta.link;
        let engine = &mut self.snat.engines_mut()[s];
        let now = engine.clock(meta.ts);
        let created = engine.created();
        let r = *self.table.get(slot);
        let k = r.snat_key();
        let was = deadline_of(&self.lb.0, self.snat.engines(), &r);
        let engine = &mut self.snat.engines_mut()[s];
        if r.has(SNAT) {
            let mut p = r.snat;
            let flags = view(meta).flags();
            engine.step(k, &mut p, Dir::Forward, flags, now);
            self.table.get_mut(slot).snat = p;
        } else {
            let p = engine.open(k, frame, view(meta), now)?;
            self.table.update(slot, |r| {
                r.snat = p;
                r.service = s as u8;
                r.parts |= SNAT;
            });
        }
        self.rearm_if_earlier(slot, was);
        let engine = &mut self.snat.engines_mut()[s];
        let opened = engine.created() != created;
        engine.proxy_forward(slot, opened, link, frame, view(meta));
        let (n, np) = engine.nat_of(&self.table.get(slot).snat);
        view(meta).set_source(frame, n, np);
        Ok(())
    }

    /// A consumer packet of an established connection that changes nothing but times and
    /// counts: both parts refreshed, both rewrites at once. False (nothing done) for any
    /// other packet.
    #[inline(always)]
    fn forward_fast(&mut self, frame: &mut [u8], meta: &mut Meta) -> bool {
        if !self.fast {
            return false;
        }
        let (link, now) = (meta.link.0, meta.ts);
        let v = view(meta);
        let (t, flags) = (v.tuple(), v.flags());
        if flags & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0 {
            return false;
        }
        let (c_ip, f_ip) = (u32::from(t.src), u32::from(t.dst));
        let h = consumer_hash(link, c_ip, t.sport, f_ip, t.dport);
        let Some(slot) = self
            .table
            .find(h, |r| r.is_consumer(link, c_ip, t.sport, f_ip, t.dport))
        else {
            return false;
        };
        let r = self.table.get_mut(slot);
        if !r.has(SNAT) {
            return false;
        }
        let engine = &self.snat.engines()[usize::from(r.service)];
        if !Snat::step_fast(&mut r.snat, flags, now.as_nanos()) {
            return false;
        }
        self.lb.0.forward_fast(&mut r.lb, now);
        let (n, np) = engine.nat_of(&r.snat);
        let (b, bp) = (Ipv4Addr::from(r.b_ip), r.b_port);
        v.set_both(frame, n, np, b, bp);
        true
    }

    /// A backend packet of an established connection that changes nothing but times and
    /// counts: both parts refreshed, both rewrites at once. False (nothing done) for any
    /// other packet.
    #[inline(always)]
    fn reverse_fast(&mut self, frame: &mut [u8], meta: &mut Meta) -> bool {
        if !self.fast {
            return false;
        }
        let now = meta.ts;
        let v = view(meta);
        let (t, flags) = (v.tuple(), v.flags());
        if flags & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0 {
            return false;
        }
        let Some(s) = self.snat.owner_of(t.dst) else {
            return false;
        };
        let engine = &self.snat.engines()[s];
        let Some(nat) = engine.nat_index(t.dst) else {
            return false;
        };
        let (b_ip, svc) = (u32::from(t.src), s as u8);
        let h = backend_hash(svc, nat, t.dport, b_ip, t.sport);
        let Some(slot) = self
            .table
            .find(h, |r| r.is_backend(svc, nat, t.dport, b_ip, t.sport))
        else {
            return false;
        };
        let r = self.table.get_mut(slot);
        if !r.has(LB) {
            return false;
        }
        if !Snat::step_fast(&mut r.snat, flags, now.as_nanos()) {
            return false;
        }
        self.lb.0.reverse_fast(&mut r.lb, now);
        let (c, cp, f, fp) = (
            Ipv4Addr::from(r.c_ip),
            r.c_port,
            Ipv4Addr::from(r.f_ip),
            r.f_port,
        );
        meta.link = LinkId(r.link);
        view(meta).set_both(frame, f, fp, c, cp);
        true
    }

    /// The backend's packet through the SNAT's part (its destination rewritten to C:cp), then
    /// the load balancer's (its source rewritten to F:fp).
    fn reverse_slow(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let t = view(meta).tuple();
        let s = self.snat.owner_of(t.dst).ok_or(DropReason::NoFlow)?;
        let engine = &mut self.snat.engines_mut()[s];
        let now = engine.clock(meta.ts);
        let Some(nat) = engine.nat_index(t.dst) else {
            return Err(engine.no_flow());
        };
        let (b_ip, svc) = (u32::from(t.src), s as u8);
        let h = backend_hash(svc, nat, t.dport, b_ip, t.sport);
        let Some(slot) = self
            .table
            .find(h, |r| r.is_backend(svc, nat, t.dport, b_ip, t.sport))
        else {
            return Err(self.snat.engines_mut()[s].no_flow());
        };
        let r = *self.table.get(slot);
        let was = deadline_of(&self.lb.0, self.snat.engines(), &r);
        let engine = &mut self.snat.engines_mut()[s];
        let mut p = r.snat;
        engine.step(r.snat_key(), &mut p, Dir::Reverse, view(meta).flags(), now);
        self.table.get_mut(slot).snat = p;
        self.rearm_if_earlier(slot, was);
        self.snat.engines()[s].proxy_reverse(slot, frame, view(meta));
        view(meta).set_destination(frame, Ipv4Addr::from(r.c_ip), r.c_port);
        meta.link = LinkId(r.link);
        // The load balancer's return key is the flow as it left it: this record's.
        if !r.has(LB) {
            return Err(self.lb.0.no_flow());
        }
        let mut part = r.lb;
        if let Err(e) = self.lb.0.reverse_known(&mut part, meta.ts) {
            self.drop_lb_part(slot);
            return Err(e);
        }
        self.table.get_mut(slot).lb = part;
        view(meta).set_source(frame, Ipv4Addr::from(r.f_ip), r.f_port);
        Ok(())
    }

    /// Every record of connection `link` goes (it left `Approved`): each part counted as its
    /// stage counts a teardown.
    fn forget_link(&mut self, link: LinkId, now: SimTime) {
        let slots = self.table.live_slots(|r| r.link == link.0);
        for slot in slots {
            let r = self.table.remove(slot);
            if r.has(LB) {
                self.lb.0.forgotten(&r.lb);
            }
            if r.has(SNAT) {
                let e = &mut self.snat.engines_mut()[usize::from(r.service)];
                let now = e.clock(now);
                e.gone(r.snat_key(), &r.snat, Gone::TornDown, now);
            }
        }
    }

    /// A backend's health changed; under `reset`, every flow on a backend that went down ends
    /// at once in both stages.
    fn backend_health(&mut self, ip: Ipv4Addr, up: bool, now: SimTime) {
        // A backend the scenario does not know is caught when the scenario is checked.
        let Ok(Some(id)) = self.lb.0.set_health(ip, up) else {
            return;
        };
        let slots = self.table.live_slots(|r| r.has(LB) && r.lb.backend() == id);
        for slot in slots {
            let r = self.table.remove(slot);
            self.lb.0.reset(&r.lb);
            if r.has(SNAT) {
                let e = &mut self.snat.engines_mut()[usize::from(r.service)];
                let now = e.clock(now);
                e.gone(r.snat_key(), &r.snat, Gone::Reset, now);
            }
        }
    }
}

impl Stage<Event> for CoreStage {
    #[inline]
    fn forward(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        if self.forward_fast(frame, meta) {
            return Ok(());
        }
        let (link, now) = (meta.link, meta.ts);
        let slot = self.lb_forward(link, view(meta), now)?;
        let r = *self.table.get(slot);
        view(meta).set_destination(frame, Ipv4Addr::from(r.b_ip), r.b_port);
        let Some(s) = self.snat.service_of(link) else {
            return Err(DropReason::NoFlow);
        };
        let passed = self.snat_forward(slot, s, frame, meta);
        self.snat.after_forward(s, frame, meta, passed.is_ok());
        self.answering = passed.is_err().then_some((slot, meta.linktype, meta.ts));
        passed
    }

    #[inline]
    fn reverse(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        if self.reverse_fast(frame, meta) {
            return Ok(());
        }
        self.reverse_slow(frame, meta)
    }

    const PREFETCH: bool = true;
    #[inline]
    fn prefetch(&self, _frame: &[u8], meta: &Meta, dir: Dir) {
        let Some(v) = meta.view.as_ref() else { return };
        let t = v.tuple();
        let h = match dir {
            Dir::Forward => consumer_hash(
                meta.link.0,
                u32::from(t.src),
                t.sport,
                u32::from(t.dst),
                t.dport,
            ),
            Dir::Reverse => {
                let Some(s) = self.snat.owner_of(t.dst) else {
                    return;
                };
                let Some(nat) = self.snat.engines()[s].nat_index(t.dst) else {
                    return;
                };
                backend_hash(s as u8, nat, t.dport, u32::from(t.src), t.sport)
            }
        };
        self.table.prefetch(h);
    }

    fn may_answer(&self) -> bool {
        self.snat.may_answer()
    }
    fn take_answer(&mut self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        if !self.snat.take_answer(out) {
            return false;
        }
        let Some((slot, linktype, now)) = self.answering.take() else {
            return true;
        };
        // Back through the load balancer's part: its reply counted, its source the frontend.
        let r = *self.table.get(slot);
        if !r.has(LB) {
            self.lb.0.no_flow();
            out.truncate(start);
            return false;
        }
        let mut part = r.lb;
        if self.lb.0.reverse_known(&mut part, now).is_err() {
            self.drop_lb_part(slot);
            out.truncate(start);
            return false;
        }
        self.table.get_mut(slot).lb = part;
        let len = out.len() - start;
        if let Ok(mut v) = plsim_wire::classify(linktype, &out[start..], len) {
            v.set_source(&mut out[start..], Ipv4Addr::from(r.f_ip), r.f_port);
        }
        true
    }
    fn may_inject(&self) -> bool {
        self.snat.may_inject()
    }
    fn take_injected(&mut self, out: &mut Vec<u8>) -> Option<Place> {
        self.snat.take_injected(out)
    }

    #[inline]
    fn tick(&mut self, now: SimTime) {
        // The stages' own tables hold nothing (their clocks move with each slow-path call,
        // which is all they are read for): only the connections' timers run, when due.
        if self
            .table
            .next_deadline()
            .is_some_and(|d| d <= now.as_nanos())
        {
            self.expire(now);
        }
        self.snat.sample_if_due(now);
    }

    fn apply(&mut self, event: &Event, now: SimTime) -> Vec<Event> {
        match *event {
            Event::Control(Effect::BackendDown(ip)) => self.backend_health(ip, false, now),
            Event::Control(Effect::BackendUp(ip)) => self.backend_health(ip, true, now),
            Event::Control(Effect::LinkClosed { link, .. }) => self.forget_link(link, now),
            _ => {
                let _ = self.snat.apply(event, now);
            }
        }
        Vec::new()
    }
}
