//! The three sans-IO stage crates as engine stages: the endpoint is the [`Edge`], the load
//! balancer and the SNAT engines are the core.

use std::net::Ipv4Addr;
use std::time::Duration;

use plsim_endpoint::{Endpoint, EndpointTable};
use plsim_lb::Lb;
use plsim_snat::Snat;
use plsim_wire::{DropReason, Ipv4Tcp, LinkId, Place, SimTime};

use plsim_control::{Effect, Link};
use plsim_engine::{Dir, Edge, Meta, Stage};

use crate::Event;
use crate::series::{Sample, Series};

#[inline]
fn view(meta: &mut Meta) -> &mut Ipv4Tcp {
    meta.view
        .as_mut()
        .expect("a packet that reaches a stage is IPv4 TCP")
}

/// The private endpoints of every consumer VNet.
pub struct EndpointStage(pub EndpointTable);

impl Edge<Event> for EndpointStage {
    #[inline]
    fn forward(&self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let (vnet, ts) = (meta.vnet, meta.ts);
        match self.0.forward(vnet, frame, view(meta), ts) {
            Ok(link) => {
                meta.link = link;
                Ok(())
            }
            Err(refused) => {
                // Counted under the endpoint's connection, when the address is one's.
                meta.link = refused.link.unwrap_or_default();
                Err(refused.into())
            }
        }
    }
    #[inline]
    fn reverse(&self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let (link, ts) = (meta.link, meta.ts);
        meta.vnet = self.0.reverse(link, frame, view(meta), ts)?;
        Ok(())
    }
    fn apply(&mut self, event: &Event, now: SimTime) {
        let Event::Control(effect) = event else {
            return; // flows reset by the load balancer are no business of the endpoints
        };
        match *effect {
            Effect::LinkApproved(l) => {
                if self.0.get(l.id).is_some() {
                    let _ = self.0.set_approved(l.id, true, now);
                } else {
                    // The control plane never hands out an address twice in one VNet.
                    let _ = self.0.insert(endpoint_of(&l, true));
                }
            }
            Effect::LinkPending(l) => {
                let _ = self.0.insert(endpoint_of(&l, false));
            }
            Effect::LinkClosed { link, .. } => {
                let _ = self.0.set_approved(link, false, now);
            }
            Effect::LinkDeleted(link) => {
                let _ = self.0.remove(link);
            }
            Effect::BackendDown(_) | Effect::BackendUp(_) | Effect::NatIpAdded { .. } => {}
        }
    }
}

/// The endpoint of a connection, as the endpoint stage holds it.
pub(crate) fn endpoint_of(l: &Link, approved: bool) -> Endpoint {
    Endpoint {
        link: l.id,
        vnet: l.vnet,
        address: l.private_ip,
        frontend: l.frontend,
        approved,
    }
}

/// The load balancer frontend forwarder.
pub struct LbStage(pub Lb);

impl Stage<Event> for LbStage {
    #[inline]
    fn forward(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let (link, ts) = (meta.link, meta.ts);
        self.0.forward(link, frame, view(meta), ts).map(|_| ())
    }
    #[inline]
    fn reverse(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let (link, ts) = (meta.link, meta.ts);
        self.0.reverse(link, frame, view(meta), ts)
    }
    const PREFETCH: bool = true;
    #[inline]
    fn prefetch(&self, _frame: &[u8], meta: &Meta, dir: Dir) {
        if let Some(v) = meta.view.as_ref() {
            match dir {
                Dir::Forward => self.0.prefetch_forward(meta.link, v),
                Dir::Reverse => self.0.prefetch_reverse(meta.link, v),
            }
        }
    }
    fn tick(&mut self, now: SimTime) {
        self.0.expire(now);
    }
    fn apply(&mut self, event: &Event, now: SimTime) -> Vec<Event> {
        match event {
            &Event::Control(e @ (Effect::BackendDown(ip) | Effect::BackendUp(ip))) => {
                // A backend the scenario does not know is caught when the scenario is checked.
                let up = matches!(e, Effect::BackendUp(_));
                match self.0.set_backend_up(ip, up, now) {
                    // Under `reset`, its flows ended here: the SNAT stage must free them too.
                    Ok(closed) if !closed.is_empty() => return vec![Event::FlowsReset(closed)],
                    _ => {}
                }
            }
            &Event::Control(Effect::LinkClosed { link, .. }) => {
                self.0.forget_link(link);
            }
            Event::Control(
                Effect::LinkApproved(_)
                | Effect::LinkPending(_)
                | Effect::NatIpAdded { .. }
                | Effect::LinkDeleted(_),
            )
            | Event::FlowsReset(_) => {}
        }
        Vec::new()
    }
}

/// The SNAT engines, one per Private Link service: a packet goes to its connection's service
/// (forward) or to the service that owns its NAT IP (return).
pub struct SnatStage {
    engines: Vec<Snat>,
    /// Samples of the gauges over simulated time, when asked for.
    series: Option<Series>,
    /// Service index by link id.
    services: Vec<Option<u16>>,
    /// Every NAT IP and its service.
    owners: Vec<(Ipv4Addr, usize)>,
    /// Per service, the backends its NAT IPs serve (what `ports_total` counts under
    /// per-backend reuse).
    backends: Vec<u64>,
    /// Some service answers a SYN it has no port for with a RST.
    answers: bool,
    /// The RST for the SYN the last `forward` refused (its link header, then the IPv4 packet).
    answer: Vec<u8>,
    /// Some service sends PROXY protocol headers.
    proxies: bool,
    /// The private endpoint's address by link id (what a PROXY protocol header names).
    endpoints: Vec<Ipv4Addr>,
    /// The PROXY protocol segment due with the packet the last `forward` passed, and where.
    injected: Vec<u8>,
    injected_place: Option<Place>,
}

impl SnatStage {
    /// One engine per service (in service order), with the NAT IPs each owns, the number of
    /// backends each serves, and the service and private endpoint address of each link known
    /// at the start.
    pub fn new(
        engines: Vec<Snat>,
        backends: Vec<u64>,
        links: impl IntoIterator<Item = (LinkId, usize, Ipv4Addr)>,
    ) -> SnatStage {
        let owners = engines
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.config().nat_ips.iter().map(move |&ip| (ip, i)))
            .collect();
        let answers = engines.iter().any(|e| e.config().rst_on_exhaustion);
        let proxies = engines.iter().any(|e| e.config().proxy_protocol);
        let mut s = SnatStage {
            engines,
            series: None,
            services: Vec::new(),
            owners,
            backends,
            answers,
            answer: Vec::new(),
            proxies,
            endpoints: Vec::new(),
            injected: Vec::new(),
            injected_place: None,
        };
        for (link, service, endpoint) in links {
            s.set_service(link, service, endpoint);
        }
        s
    }

    fn set_service(&mut self, link: LinkId, service: usize, endpoint: Ipv4Addr) {
        let i = link.0 as usize;
        if self.services.len() <= i {
            self.services.resize(i + 1, None);
            self.endpoints.resize(i + 1, Ipv4Addr::UNSPECIFIED);
        }
        self.services[i] = Some(service as u16);
        self.endpoints[i] = endpoint;
    }

    /// Makes room in every engine for `flows` more flows without growing on the packet path.
    pub fn reserve(&mut self, flows: usize) {
        for e in &mut self.engines {
            e.reserve(flows);
        }
    }

    /// Makes room in every engine for what it keeps beside parts a shared table holds under
    /// slots below `slots`.
    pub(crate) fn reserve_slots(&mut self, slots: usize) {
        for e in &mut self.engines {
            e.reserve_slots(slots);
        }
    }

    /// The engines, in service order.
    pub fn engines(&self) -> &[Snat] {
        &self.engines
    }

    /// The engine a packet goes to: its connection's service (forward), or the service that
    /// owns its NAT IP (return).
    #[inline]
    fn engine_of(&self, meta: &Meta, dir: Dir) -> Option<&Snat> {
        let s = match dir {
            Dir::Forward => {
                usize::from(self.services.get(meta.link.0 as usize).copied().flatten()?)
            }
            Dir::Reverse if self.engines.len() == 1 => 0,
            Dir::Reverse => {
                let dst = meta.view.as_ref()?.tuple().dst;
                self.owners.iter().find(|(ip, _)| *ip == dst)?.1
            }
        };
        self.engines.get(s)
    }

    /// Per service, the backends its NAT IPs serve.
    pub fn backends_per_service(&self) -> &[u64] {
        &self.backends
    }

    /// Flows opened per connection, every service together, indexed by link id.
    pub fn created_by_link(&self) -> Vec<u64> {
        let mut v: Vec<u64> = Vec::new();
        for e in &self.engines {
            let c = e.created_by_link();
            if v.len() < c.len() {
                v.resize(c.len(), 0);
            }
            for (a, b) in v.iter_mut().zip(c) {
                *a += b;
            }
        }
        v
    }

    /// Samples the gauges whenever simulated time crosses a multiple of `every` (see
    /// [`Series`]).
    pub fn sample_every(&mut self, every: Duration) {
        self.series = Some(Series::new(every));
    }

    /// The samples taken, and one at `now` for the end of the run.
    pub fn take_series(&mut self, now: SimTime) -> Vec<Sample> {
        match self.series.take() {
            Some(series) => series.finish(self.sample(now)),
            None => Vec::new(),
        }
    }

    /// Frees the ports and flows whose timers ran out by `now` (the engines run due timers in
    /// their packet calls; this runs them without a packet, e.g. at the end of a run).
    pub fn expire(&mut self, now: SimTime) -> usize {
        self.engines.iter_mut().map(|e| e.expire(now)).sum()
    }

    /// After engine `s` passed (`passed`) or refused a consumer packet: the PROXY protocol
    /// segment due with it (and where its backend-side stream starts, in `meta`), or the RST
    /// answering a SYN refused for want of a port. (The engines' own table and a shared one
    /// alike.)
    #[inline]
    pub(crate) fn after_forward(&mut self, s: usize, frame: &[u8], meta: &mut Meta, passed: bool) {
        let engine = &self.engines[s];
        if self.proxies {
            self.injected.clear();
            self.injected_place = None;
            if passed {
                // The header names the private endpoint as the consumer addressed it.
                let pe = self.endpoints[meta.link.0 as usize];
                let endpoint = std::net::SocketAddrV4::new(pe, meta.orig.dport);
                self.injected_place =
                    engine.proxy_segment(endpoint, frame, view(meta), &mut self.injected);
                meta.stream_start = engine.proxy_sent();
            }
        }
        if let Some(rst) = engine.rst_reply() {
            // The answer: the SYN's link header (addresses swapped), then the RST.
            self.answer.clear();
            let l3 = view(meta).l3_offset();
            self.answer.extend_from_slice(&frame[..l3]);
            if meta.linktype == plsim_wire::LinkType::Ethernet && l3 >= 12 {
                let (dst, src) = self.answer.split_at_mut(6);
                dst.swap_with_slice(&mut src[..6]);
            }
            self.answer.extend_from_slice(rst);
        }
    }

    /// The engine that owns a backend packet's destination NAT IP (the only one when there is
    /// one engine, whatever the address), or `None`.
    #[inline]
    pub(crate) fn owner_of(&self, dst: Ipv4Addr) -> Option<usize> {
        if self.engines.len() == 1 {
            return Some(0);
        }
        self.owners
            .iter()
            .find(|(ip, _)| *ip == dst)
            .map(|&(_, s)| s)
    }

    /// The service (engine) of connection `link`, once approved.
    #[inline]
    pub(crate) fn service_of(&self, link: LinkId) -> Option<usize> {
        self.services
            .get(link.0 as usize)
            .copied()
            .flatten()
            .map(usize::from)
    }

    /// The engines, to change (a shared table's path calls their part functions).
    pub(crate) fn engines_mut(&mut self) -> &mut [Snat] {
        &mut self.engines
    }

    /// Samples the gauges when a sample is due at `now` (after the timers ran).
    #[inline]
    pub(crate) fn sample_if_due(&mut self, now: SimTime) {
        if self.series.as_ref().is_some_and(|s| s.due(now)) {
            let sample = self.sample(now);
            if let Some(s) = self.series.as_mut() {
                s.push(sample);
            }
        }
    }

    fn sample(&self, t: SimTime) -> Sample {
        let mut s = Sample {
            t,
            live_flows: 0,
            snat_failures: 0,
            ports_held: 0,
            ports_in_use: Vec::new(),
            ports_held_by_ip: Vec::new(),
            live_by_link: Vec::new(),
        };
        for e in &self.engines {
            let st = e.stats();
            s.live_flows += st.live;
            s.snat_failures += st.failed;
            s.ports_held += st.nat_ips.iter().map(|n| n.held).sum::<u64>();
            s.ports_in_use
                .extend(st.nat_ips.iter().map(|n| (n.ip, n.in_use)));
            s.ports_held_by_ip
                .extend(st.nat_ips.iter().map(|n| (n.ip, n.held)));
            for (link, &n) in e.live_by_link().iter().enumerate() {
                let ever = e.created_by_link().get(link).is_some_and(|&c| c > 0);
                if ever {
                    match s.live_by_link.iter_mut().find(|(l, _)| *l == link as u32) {
                        Some((_, m)) => *m += u64::from(n),
                        None => s.live_by_link.push((link as u32, u64::from(n))),
                    }
                }
            }
        }
        s.live_by_link.sort_unstable();
        s
    }
}

impl Stage<Event> for SnatStage {
    fn may_answer(&self) -> bool {
        self.answers
    }
    fn take_answer(&mut self, out: &mut Vec<u8>) -> bool {
        if self.answer.is_empty() {
            return false;
        }
        out.append(&mut self.answer);
        true
    }
    fn may_inject(&self) -> bool {
        self.proxies
    }
    fn take_injected(&mut self, out: &mut Vec<u8>) -> Option<Place> {
        let place = self.injected_place.take()?;
        out.append(&mut self.injected);
        Some(place)
    }
    #[inline]
    fn forward(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let (link, ts) = (meta.link, meta.ts);
        let s = self
            .services
            .get(link.0 as usize)
            .copied()
            .flatten()
            .ok_or(DropReason::NoFlow)?;
        let r = self.engines[usize::from(s)].forward(link, frame, view(meta), ts);
        self.after_forward(usize::from(s), frame, meta, r.is_ok());
        r
    }
    #[inline]
    fn reverse(&mut self, frame: &mut [u8], meta: &mut Meta) -> Result<(), DropReason> {
        let ts = meta.ts;
        let s = self
            .owner_of(view(meta).tuple().dst)
            .ok_or(DropReason::NoFlow)?;
        meta.link = self.engines[s].reverse(frame, view(meta), ts)?;
        Ok(())
    }
    const PREFETCH: bool = true;
    #[inline]
    fn prefetch(&self, _frame: &[u8], meta: &Meta, dir: Dir) {
        if let (Some(v), Some(e)) = (meta.view.as_ref(), self.engine_of(meta, dir)) {
            match dir {
                Dir::Forward => e.prefetch_forward(meta.link, v),
                Dir::Reverse => e.prefetch_reverse(v),
            }
        }
    }
    #[inline]
    fn tick(&mut self, now: SimTime) {
        for e in &mut self.engines {
            e.expire(now);
        }
        self.sample_if_due(now);
    }
    fn apply(&mut self, event: &Event, now: SimTime) -> Vec<Event> {
        match event {
            &Event::Control(Effect::LinkApproved(l)) => {
                self.set_service(l.id, l.service, l.private_ip)
            }
            &Event::Control(Effect::LinkClosed { link, service, .. }) => {
                if let Some(e) = self.engines.get_mut(service) {
                    e.teardown(link, now);
                }
            }
            &Event::Control(Effect::NatIpAdded { service, ip }) => {
                // More than eight, or a duplicate, is caught when the scenario is checked.
                if let Some(e) = self.engines.get_mut(service)
                    && e.add_nat_ip(ip).is_ok()
                {
                    self.owners.push((ip, service));
                }
            }
            Event::FlowsReset(flows) => {
                for f in flows {
                    let service = self.services.get(f.link.0 as usize).copied().flatten();
                    if let Some(e) = service.and_then(|s| self.engines.get_mut(usize::from(s))) {
                        e.reset_flow(f.link, f.forwarded(), now);
                    }
                }
            }
            Event::Control(
                Effect::BackendDown(_)
                | Effect::BackendUp(_)
                | Effect::LinkDeleted(_)
                | Effect::LinkPending(_),
            ) => {}
        }
        Vec::new()
    }
}
