//! The load balancer's part of a flow record, and the rules that make and change it. The
//! forwarder's own table keeps a part in each of its records ([`Lb::forward`]); a path whose
//! stages share one record per connection (`docs/architecture.md`, section 4) keeps one in
//! its own record and calls these instead, with the keys it holds (the consumer's tuple,
//! the backend the part chose).

use std::net::Ipv4Addr;

use plsim_wire::{DropReason, FlowTuple, LinkId, SimTime};

use crate::rules::BackendState;
use crate::{FlowStats, Lb};

/// The load balancer's part of one flow: the backend it goes to and by which rule, and when
/// it last saw a packet. 16 bytes. Only the load balancer reads or changes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbFlow {
    /// Nanoseconds of the last packet, either way.
    pub(crate) last_seen: u64,
    /// The backend's id (index in `Lb::backends`).
    pub(crate) backend: u32,
    /// The rule's index.
    pub(crate) rule: u16,
}

/// The backend [`Lb::choose`] chose for a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    rule: u16,
    backend: u32,
    ip: Ipv4Addr,
    bport: u16,
}

impl Choice {
    /// The backend (B).
    #[inline]
    pub fn backend(&self) -> Ipv4Addr {
        self.ip
    }
    /// The backend port (bp).
    #[inline]
    pub fn port(&self) -> u16 {
        self.bport
    }
}

/// Why a flow's part ended at a packet (the caller drops it; [`Lb::forward_known`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Idle past the timeout, not yet collected.
    Expired,
    /// A new connection (a SYN) on the tuple of a flow whose backend is down: it is picked
    /// afresh.
    Replaced,
}

impl Lb {
    /// The backend a new flow C:cp -> F:fp of connection `link` would get: the rule matching
    /// F:fp, the backend the distribution picks among the rule's healthy ones, its port.
    /// Changes nothing: [`Lb::open`] makes the flow.
    #[inline]
    pub fn choose(&self, link: LinkId, t: FlowTuple) -> Result<Choice, DropReason> {
        let h = crate::forward::fwd_hash(link, t);
        let (rule, backend, bport) = self.pick_inner(link.0, t, h)?;
        Ok(Choice {
            rule,
            backend,
            ip: self.backends[backend as usize].ip,
            bport,
        })
    }

    /// Makes the new flow [`Lb::choose`] chose (or counts why there is none), at `now`.
    /// `taken`: a flow of the same consumer already leaves for the chosen B:bp (the way back
    /// could not tell the two apart: dropped as `no_backend`). Counted as created.
    #[inline]
    pub fn open(
        &mut self,
        choice: Result<Choice, DropReason>,
        taken: bool,
        now: SimTime,
    ) -> Result<LbFlow, DropReason> {
        let c = match choice {
            Ok(c) if !taken => c,
            Ok(_) => {
                self.flow_stats.ambiguous += 1;
                self.drops.add(DropReason::NoBackend);
                return Err(DropReason::NoBackend);
            }
            Err(reason) => {
                self.drops.add(reason);
                return Err(reason);
            }
        };
        self.flow_stats.created += 1;
        self.flow_stats.active += 1;
        let r = &mut self.rules[usize::from(c.rule)];
        r.hits += 1;
        r.flows += 1;
        let b = &mut self.backends[c.backend as usize].counters;
        b.flows += 1;
        b.active_flows += 1;
        b.packets += 1;
        Ok(LbFlow {
            last_seen: now.as_nanos(),
            backend: c.backend,
            rule: c.rule,
        })
    }

    /// A consumer packet of a flow it knows (`syn`: the packet is a SYN): the flow goes on,
    /// refreshed and counted, or its part ends here (counted; the caller drops it and opens
    /// anew).
    #[inline]
    pub fn forward_known(&mut self, f: &mut LbFlow, syn: bool, now: SimTime) -> Result<(), Ended> {
        let now_ns = now.as_nanos();
        if self.deadline(f) <= now_ns {
            self.ended(f);
            self.flow_stats.expired += 1;
            return Err(Ended::Expired);
        }
        let b = &mut self.backends[f.backend as usize];
        if syn && !b.up {
            self.ended(f);
            self.flow_stats.replaced += 1;
            return Err(Ended::Replaced);
        }
        f.last_seen = f.last_seen.max(now_ns);
        b.counters.packets += 1;
        self.rules[usize::from(f.rule)].hits += 1;
        Ok(())
    }

    /// A consumer packet of a flow whose part is live and not due (the path ticked to `now`),
    /// and not a SYN: what [`Lb::forward_known`] does to it, without its checks.
    #[inline(always)]
    pub fn forward_fast(&mut self, f: &mut LbFlow, now: SimTime) {
        f.last_seen = f.last_seen.max(now.as_nanos());
        self.backends[f.backend as usize].counters.packets += 1;
        self.rules[usize::from(f.rule)].hits += 1;
    }

    /// A reply of a flow it knows: refreshed and counted, or dropped (`no_flow`) when the flow
    /// is idle past its timeout (its part ends: the caller drops it).
    #[inline]
    pub fn reverse_known(&mut self, f: &mut LbFlow, now: SimTime) -> Result<(), DropReason> {
        let now_ns = now.as_nanos();
        if self.deadline(f) <= now_ns {
            self.ended(f);
            self.flow_stats.expired += 1;
            self.drops.add(DropReason::NoFlow);
            return Err(DropReason::NoFlow);
        }
        self.reverse_fast(f, now);
        Ok(())
    }

    /// A reply of a flow whose part is live and not due: what [`Lb::reverse_known`] does to it,
    /// without its check.
    #[inline(always)]
    pub fn reverse_fast(&mut self, f: &mut LbFlow, now: SimTime) {
        f.last_seen = f.last_seen.max(now.as_nanos());
        self.backends[f.backend as usize].counters.reply_packets += 1;
    }

    /// A packet that found no flow of the load balancer (a reply to nothing): dropped as
    /// `no_flow`, counted.
    pub fn no_flow(&mut self) -> DropReason {
        self.drops.add(DropReason::NoFlow);
        DropReason::NoFlow
    }

    /// When the flow's part ends unless a packet comes: its last packet plus the idle timeout
    /// (nanoseconds).
    #[inline]
    pub fn deadline(&self, f: &LbFlow) -> u64 {
        f.last_seen.saturating_add(self.idle_ns)
    }

    /// The flow's part ended at its deadline (counted; the caller drops it).
    pub fn expired(&mut self, f: &LbFlow) {
        self.ended(f);
        self.flow_stats.expired += 1;
    }

    /// The flow's part ended because its connection left `Approved` (counted).
    pub fn forgotten(&mut self, f: &LbFlow) {
        self.ended(f);
        self.flow_stats.forgotten += 1;
    }

    /// The flow's part ended because its backend went down under `reset` (counted).
    pub fn reset(&mut self, f: &LbFlow) {
        self.ended(f);
        self.flow_stats.reset += 1;
    }

    /// Marks a backend up or down in every pool it is in (see [`Lb::set_backend_up`]).
    /// Returns the backend's id when its flows must end now (it went down under
    /// [`crate::OnBackendDown::Reset`]): the caller ends every part with that
    /// [`LbFlow::backend`] through [`Lb::reset`].
    pub fn set_health(
        &mut self,
        ip: Ipv4Addr,
        up: bool,
    ) -> Result<Option<u32>, crate::ConfigError> {
        let id = self
            .backend_id(ip)
            .ok_or(crate::ConfigError::UnknownBackend(ip))?;
        let b = &mut self.backends[id as usize];
        if b.up == up {
            return Ok(None);
        }
        b.up = up;
        b.counters.up = up;
        self.rebuild_rules_with(id);
        Ok((!up && self.on_down == crate::OnBackendDown::Reset).then_some(id))
    }

    /// A part ended, for whatever reason: the backend has one flow fewer.
    fn ended(&mut self, f: &LbFlow) {
        ended(&mut self.backends, &mut self.flow_stats, f);
    }
}

/// A part ended, for whatever reason: the backend has one flow fewer (a function of the
/// counters alone, for callers that hold the flow table borrowed).
#[inline]
pub(crate) fn ended(backends: &mut [BackendState], stats: &mut FlowStats, f: &LbFlow) {
    backends[f.backend as usize].counters.active_flows -= 1;
    stats.active -= 1;
}

impl LbFlow {
    /// The backend's id (what [`Lb::set_health`] names).
    #[inline]
    pub fn backend(&self) -> u32 {
        self.backend
    }
}
