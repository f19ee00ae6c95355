//! The TCP state machine of a SNAT flow: its state bits, the transition one packet makes, the
//! state [`TcpState`] reports, and the timer each state runs (see the crate docs, "Timers and
//! the port lifecycle").

pub(crate) use plsim_wire::Dir;
use plsim_wire::TcpFlags;

use crate::Timers;
use crate::flow::Flow;

// Flow state bits. `LIVE` marks a used slab slot.
pub(crate) const LIVE: u8 = 1;
pub(crate) const SYN_OUT: u8 = 2;
pub(crate) const SYNACK_IN: u8 = 4;
pub(crate) const EST: u8 = 8;
pub(crate) const FIN_OUT: u8 = 16;
pub(crate) const FIN_IN: u8 = 32;
pub(crate) const RST: u8 = 64;
/// The backend sent the first FIN (set with `FIN_IN` while no `FIN_OUT` was seen): it closed
/// actively, so it keeps the 4-tuple in TIME_WAIT once the consumer's FIN reaches it.
pub(crate) const IN_FIRST: u8 = 128;
pub(crate) const FIN_BOTH: u8 = FIN_OUT | FIN_IN;
/// A new flow: the consumer's SYN went out.
pub(crate) const OPENED: u8 = LIVE | SYN_OUT;
/// An established flow with nothing else going on: the hot path's only check.
pub(crate) const PLAIN_EST: u8 = LIVE | SYN_OUT | SYNACK_IN | EST;

/// The flags a packet of a [`PLAIN_EST`] flow must not carry to leave its state as it is.
pub(crate) const STATE_FLAGS: u8 = TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST;

/// True once both sides sent a FIN or a RST was seen: the port is held.
#[inline]
pub(crate) fn closed(state: u8) -> bool {
    state & RST != 0 || state & FIN_BOTH == FIN_BOTH
}

/// The state after a packet with `flags` going `dir`, or `None` when it changes nothing: a
/// closed flow ignores everything but a consumer's SYN (without ACK or RST), which reopens it.
#[inline]
pub(crate) fn next(state: u8, dir: Dir, flags: u8) -> Option<u8> {
    let mut s = state;
    if closed(s) {
        let reopen = dir == Dir::Forward
            && flags & (TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST) == TcpFlags::SYN;
        return reopen.then_some(OPENED);
    }
    if flags & TcpFlags::RST != 0 {
        return Some(s | RST);
    }
    if dir == Dir::Reverse
        && flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN | TcpFlags::ACK
    {
        s |= SYNACK_IN;
    }
    if dir == Dir::Forward
        && flags & (TcpFlags::ACK | TcpFlags::SYN) == TcpFlags::ACK
        && s & SYNACK_IN != 0
    {
        s |= EST;
    }
    if flags & TcpFlags::FIN != 0 {
        s |= match dir {
            Dir::Forward => FIN_OUT,
            Dir::Reverse if s & FIN_OUT == 0 => FIN_IN | IN_FIRST,
            Dir::Reverse => FIN_IN,
        };
    }
    Some(s)
}

/// True when the flow closed with FINs both ways, the backend's first (no RST): the backend
/// holds the 4-tuple in TIME_WAIT from the close.
#[inline]
pub(crate) fn backend_began(state: u8) -> bool {
    state & (FIN_BOTH | IN_FIRST | RST) == FIN_BOTH | IN_FIRST
}

/// The TCP state of one flow, as the tests read it.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TcpState {
    /// The consumer's SYN went out; no SYN-ACK yet.
    SynSent,
    /// The backend answered with a SYN-ACK; the consumer has not ACKed it yet.
    SynReceived,
    /// The handshake completed (or the flow was picked up mid-stream).
    Established,
    /// One side sent a FIN.
    HalfClosed,
    /// Both sides sent a FIN: the port is held for [`Timers::fin_hold`].
    FinHold,
    /// A RST was seen: the port is held for [`Timers::rst_hold`].
    RstHold,
}

#[cfg(test)]
impl TcpState {
    /// The state of the state bits `s`.
    pub(crate) fn of(s: u8) -> TcpState {
        if s & RST != 0 {
            TcpState::RstHold
        } else if s & FIN_BOTH == FIN_BOTH {
            TcpState::FinHold
        } else if s & FIN_BOTH != 0 {
            TcpState::HalfClosed
        } else if s & EST != 0 {
            TcpState::Established
        } else if s & SYNACK_IN != 0 {
            TcpState::SynReceived
        } else {
            TcpState::SynSent
        }
    }
}

/// The timeouts of [`Timers`] in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    idle: u64,
    transitory: u64,
    fin_hold: u64,
    rst_hold: u64,
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Timeouts {
    pub(crate) fn new(t: &Timers) -> Timeouts {
        Timeouts {
            idle: nanos(t.idle),
            transitory: nanos(t.transitory),
            fin_hold: nanos(t.fin_hold),
            rst_hold: nanos(t.rst_hold),
        }
    }

    /// When flow `f` ends (its port is freed): its last packet plus its state's timeout.
    #[inline]
    pub(crate) fn deadline(&self, f: &Flow) -> u64 {
        f.last.saturating_add(self.of(f.state))
    }

    /// The timeout of state `s`: how long after its last packet its port is freed.
    #[inline]
    fn of(&self, s: u8) -> u64 {
        if s & RST != 0 {
            self.rst_hold
        } else if s & FIN_BOTH == FIN_BOTH {
            self.fin_hold
        } else if s & EST != 0 && s & FIN_BOTH == 0 {
            self.idle
        } else {
            self.transitory
        }
    }
}

/// A flow's TCP state as the engine follows it, for a tool that follows a capture's flows as
/// the engine would without translating them (`plsim plan` measures how long flows hold their
/// ports with it): the engine's own transitions and timers, none of its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowState(u8);

impl FlowState {
    /// A flow the consumer's SYN opened.
    pub const OPENED: FlowState = FlowState(OPENED);
    /// A flow picked up mid-stream: taken as established.
    pub const PICKED_UP: FlowState = FlowState(PLAIN_EST);

    /// The state after a packet going `dir` (forward: from the consumer) with TCP `flags`, or
    /// `None` when it changes nothing. A closed flow ignores everything but a consumer's SYN
    /// (without ACK or RST), which reopens it as [`FlowState::OPENED`] on the same port.
    pub fn next(self, dir: Dir, flags: u8) -> Option<FlowState> {
        next(self.0, dir, flags).map(FlowState)
    }

    /// Both sides sent a FIN or a RST was seen: the port is held.
    pub fn closed(self) -> bool {
        closed(self.0)
    }

    /// How long after the flow's last packet its port is freed in this state: the FIN or RST
    /// hold once closed, else the idle timeout when established, the transitory one otherwise.
    pub fn timeout(self, timers: &Timers) -> std::time::Duration {
        std::time::Duration::from_nanos(Timeouts::new(timers).of(self.0))
    }
}
