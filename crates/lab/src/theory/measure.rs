//! What a capture offers the ports, measured as its packets go past a run: how many flows
//! open, how long each holds its port, how bursty their arrivals are, and how they spread over
//! consumer hosts.
//!
//! A [`Census`] follows every flow of the capture as the SNAT engine would, with the engine's
//! own TCP state machine and timers ([`FlowState`]), but holds no port: a flow opens at a SYN
//! that finds none (or, with `pickup`, at any packet that finds none), and ends when its port
//! would be freed: its closing packet plus the FIN or RST hold, or its last packet plus the
//! idle (or transitory) timeout, the capture's end included. A SYN that reopens a closed flow
//! (the consumer reusing its tuple while the port is held) ends it there and opens the next on
//! the same port, as the engine counts it. Its *hold* runs from its opening to its end.
//!
//! The census sees the packets as the run reads them ([`Observed`]): the capture is read once,
//! and the path itself does no work for it. Its cost is one classification and one map lookup
//! per packet, and an arrival counted at 44 time scales per flow; its memory, the open flows
//! and the consumer hosts.

use std::net::Ipv4Addr;

use hashbrown::HashMap;
use plsim_pcap::Frame;
use plsim_snat::{FlowState, Timers};
use plsim_wire::{Dir, FlowKey, classify};
use serde::{Deserialize, Serialize};

use crate::replay::{Packet, PacketSource};

/// What a census found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// Flows opened.
    pub flows: u64,
    /// From the first packet to the last, in seconds.
    pub span_s: f64,
    /// The mean time a flow holds its port, in seconds.
    pub hold_s: f64,
    /// How bursty the arrivals are (none when the capture is too short to say).
    pub dispersion: Option<Dispersion>,
    /// Consumer hosts (addresses that opened flows).
    pub hosts: u64,
    /// The share of the flows the busiest consumer host opened.
    pub busiest_host_share: f64,
    /// The share of the flows between the busiest pair of hosts (consumer and server
    /// addresses).
    pub busiest_pair_share: f64,
}

/// The index of dispersion of the arrivals: the variance of the flows opened in a window over
/// their mean (1 for Poisson arrivals, above for bursts, below for arrivals more even than
/// random), in windows as long as the mean hold (the time scale at which the ports feel
/// bursts), or shorter when the capture holds fewer than ten of those.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dispersion {
    /// The windows' length, in seconds (a millisecond times a power of two).
    pub window_s: f64,
    /// Whole windows in the capture.
    pub windows: u64,
    /// Variance over mean of the flows opened per window.
    pub index: f64,
}

/// One flow being followed.
#[derive(Clone, Copy, Debug)]
struct Open {
    /// The consumer's end (the SYN's sender).
    client: (Ipv4Addr, u16),
    state: FlowState,
    /// When it opened (ns).
    opened: u64,
    /// Its last packet (ns): its closing packet once closed.
    last: u64,
}

/// The shortest window of the arrival counts: a millisecond.
const WINDOW_NS: u64 = 1_000_000;
/// Window lengths: a millisecond times 2^0 to 2^43 (about 280 years).
const SCALES: usize = 44;

/// The arrivals counted in windows of one length.
#[derive(Clone, Copy, Debug, Default)]
struct Scale {
    /// The window the next arrival is counted in.
    index: u64,
    count: u64,
    /// Whole windows counted, their sum and sum of squares.
    windows: u64,
    sum: f64,
    squares: f64,
}

impl Scale {
    /// Closes windows up to (not including) window `index`.
    fn close_to(&mut self, index: u64) {
        if index > self.index {
            let c = self.count as f64;
            self.windows += index - self.index;
            self.sum += c;
            self.squares += c * c;
            self.index = index;
            self.count = 0;
        }
    }
}

/// Follows a capture's flows (see the module docs).
#[derive(Debug)]
pub struct Census {
    timers: Timers,
    pickup: bool,
    open: HashMap<FlowKey, Open>,
    /// Open flows after the last sweep of those past their end.
    swept: usize,
    first: Option<u64>,
    now: u64,
    flows: u64,
    /// Sum of the holds of the flows ended (ns).
    held: u128,
    scales: [Scale; SCALES],
    hosts: HashMap<Ipv4Addr, u64>,
    pairs: HashMap<(Ipv4Addr, Ipv4Addr), u64>,
}

impl Census {
    /// A census under the SNAT timers `timers`; `pickup` opens flows seen mid-stream.
    pub fn new(timers: Timers, pickup: bool) -> Census {
        Census {
            timers,
            pickup,
            open: HashMap::new(),
            swept: 0,
            first: None,
            now: 0,
            flows: 0,
            held: 0,
            scales: [Scale::default(); SCALES],
            hosts: HashMap::new(),
            pairs: HashMap::new(),
        }
    }

    /// When flow `o` frees its port if no packet comes.
    fn end_of(&self, o: &Open) -> u64 {
        let t = u64::try_from(o.state.timeout(&self.timers).as_nanos()).unwrap_or(u64::MAX);
        o.last.saturating_add(t)
    }

    /// One packet, in capture order (time made monotonic, as a run makes it).
    pub fn packet(&mut self, frame: &Frame<'_>) {
        let first = *self.first.get_or_insert(frame.ts_ns);
        self.now = self.now.max(frame.ts_ns).max(first);
        let Ok(v) = classify(frame.link, frame.data, frame.wire_len) else {
            return;
        };
        let (now, t, flags) = (self.now, v.tuple(), v.flags());
        let key = t.flow_key();
        if let Some(&o) = self.open.get(&key) {
            let end = self.end_of(&o);
            if now < end {
                let dir = if (t.src, t.sport) == o.client {
                    Dir::Forward
                } else {
                    Dir::Reverse
                };
                if let Some(s) = o.state.next(dir, flags) {
                    let mut o = o;
                    if o.state.closed() {
                        // A consumer's SYN reopens it: the next flow on the same port.
                        self.held += u128::from(now - o.opened);
                        o.opened = now;
                        self.arrive(now, o.client.0, t.dst);
                    }
                    o.state = s;
                    o.last = now;
                    self.open.insert(key, o);
                }
                return;
            }
            self.open.remove(&key);
            self.held += u128::from(end - o.opened);
        }
        let state = if v.is_syn() {
            FlowState::OPENED
        } else if self.pickup {
            match FlowState::PICKED_UP.next(Dir::Forward, flags) {
                Some(s) => s,
                None => return,
            }
        } else {
            return;
        };
        let client = (t.src, t.sport);
        self.open.insert(
            key,
            Open {
                client,
                state,
                opened: now,
                last: now,
            },
        );
        self.arrive(now, t.src, t.dst);
        if self.open.len() >= 2 * self.swept.max(1024) {
            self.sweep();
        }
    }

    /// A flow opened at `now` from `client` to `server`.
    fn arrive(&mut self, now: u64, client: Ipv4Addr, server: Ipv4Addr) {
        self.flows += 1;
        *self.hosts.entry(client).or_default() += 1;
        *self.pairs.entry((client, server)).or_default() += 1;
        let since = now - self.first.unwrap_or(now);
        for (k, s) in self.scales.iter_mut().enumerate() {
            s.close_to(since / (WINDOW_NS << k));
            s.count += 1;
        }
    }

    /// Ends the flows whose ports are free by now: the map holds the flows still open, not
    /// every flow of the capture.
    fn sweep(&mut self) {
        let now = self.now;
        let mut held = 0u128;
        let timers = self.timers;
        self.open.retain(|_, o| {
            let t = u64::try_from(o.state.timeout(&timers).as_nanos()).unwrap_or(u64::MAX);
            let end = o.last.saturating_add(t);
            if now >= end {
                held += u128::from(end - o.opened);
            }
            now < end
        });
        self.held += held;
        self.swept = self.open.len();
    }

    /// What the census found, every flow still open ending when its timer would run out.
    pub fn finish(mut self) -> Measure {
        let open = std::mem::take(&mut self.open);
        for o in open.values() {
            self.held += u128::from(self.end_of(o) - o.opened);
        }
        let span = self.now - self.first.unwrap_or(self.now);
        let hold_s = if self.flows == 0 {
            0.0
        } else {
            self.held as f64 / self.flows as f64 / 1e9
        };
        let share = |most: Option<u64>| most.map_or(0.0, |m| m as f64 / self.flows.max(1) as f64);
        Measure {
            flows: self.flows,
            span_s: span as f64 / 1e9,
            hold_s,
            dispersion: dispersion(&mut self.scales, span, hold_s),
            hosts: self.hosts.len() as u64,
            busiest_host_share: share(self.hosts.values().copied().max()),
            busiest_pair_share: share(self.pairs.values().copied().max()),
        }
    }
}

/// The index of dispersion in the longest windows no longer than `hold_s` of which the span
/// `span` (ns) holds at least ten (the longest of which it holds ten when even a millisecond
/// is longer than the hold); none when it holds fewer than ten milliseconds.
fn dispersion(scales: &mut [Scale; SCALES], span: u64, hold_s: f64) -> Option<Dispersion> {
    let hold = (hold_s * 1e9) as u64;
    let mut best = None;
    for (k, s) in scales.iter_mut().enumerate() {
        let w = WINDOW_NS << k;
        let whole = span / w;
        if whole < 10 || (w > hold && best.is_some()) {
            break;
        }
        // Every whole window closed; the last one, cut by the capture's end, left out.
        s.close_to(whole);
        let n = whole as f64;
        let mean = s.sum / n;
        let var = s.squares / n - mean * mean;
        best = Some(Dispersion {
            window_s: w as f64 / 1e9,
            windows: whole,
            index: if mean > 0.0 { var.max(0.0) / mean } else { 0.0 },
        });
    }
    best
}

/// A packet source whose packets a [`Census`] sees on their way to the run.
pub struct Observed<'c, S> {
    source: S,
    census: &'c mut Census,
}

impl<'c, S: PacketSource> Observed<'c, S> {
    /// `source`'s packets, each shown to `census` first.
    pub fn new(source: S, census: &'c mut Census) -> Self {
        Observed { source, census }
    }

    /// The source itself, to read it unobserved.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.source
    }
}

impl<S: PacketSource> PacketSource for Observed<'_, S> {
    fn next_packet(&mut self) -> Option<Packet<'_>> {
        let p = self.source.next_packet()?;
        self.census.packet(&p.frame);
        Some(p)
    }

    fn warning(&self) -> Option<&str> {
        self.source.warning()
    }
}

#[cfg(test)]
mod tests {
    use plsim_traffic::captures::{conversations, syn_burst};

    use super::*;

    fn census(frames: &[plsim_pcap::FrameBuf], timers: Timers) -> Measure {
        let mut c = Census::new(timers, false);
        for f in frames {
            c.packet(&f.as_frame());
        }
        c.finish()
    }

    fn timers(fin_hold: u64) -> Timers {
        Timers {
            fin_hold: std::time::Duration::from_secs(fin_hold),
            ..Timers::default()
        }
    }

    /// Conversations of 3 RTTs closed by FIN both ways at 2.5 RTTs: each holds its port from
    /// its SYN to the second FIN, then the FIN hold.
    #[test]
    fn a_closed_flow_holds_its_port_to_its_close_and_the_fin_hold() {
        let (rtt, gap) = (20_000_000u64, 1_000_000_000u64);
        let m = census(&conversations(100, gap, rtt), timers(10));
        assert_eq!(m.flows, 100);
        let want = 2.5 * rtt as f64 / 1e9 + 10.0;
        assert!((m.hold_s - want).abs() < 1e-9, "{} vs {want}", m.hold_s);
        assert!((m.span_s - (99.0 + 0.06)).abs() < 1e-9, "{}", m.span_s);
        assert_eq!(m.hosts, 100);
        assert!((m.busiest_host_share - 0.01).abs() < 1e-12);
        // One flow a second, exactly: far more even than Poisson.
        let d = m.dispersion.unwrap();
        assert!(d.index < 0.2, "{d:?}");
        assert!(d.window_s <= 10.06 && d.window_s > 4.0, "{d:?}");
    }

    /// Unanswered SYNs idle out after the transitory timeout; at the capture's end every
    /// flow still open ends when its timer would.
    #[test]
    fn open_flows_end_with_their_timeout() {
        let m = census(&syn_burst(50), timers(240));
        assert_eq!(m.flows, 50);
        assert!((m.hold_s - 240.0).abs() < 1e-3, "{}", m.hold_s);
        // Fifty microseconds: too short to say how bursty.
        assert_eq!(m.dispersion, None);
    }

    /// The same tuples again after their holds ended are new flows; within the hold, a SYN
    /// reopens the held flow.
    #[test]
    fn reused_tuples_open_new_flows_and_reopen_held_ones() {
        let once = conversations(10, 1_000_000, 1_000_000);
        let mut frames = once.clone();
        for shift in [5_000_000_000u64, 100_000_000_000] {
            frames.extend(once.iter().map(|f| plsim_pcap::FrameBuf {
                ts_ns: f.ts_ns + shift,
                ..f.clone()
            }));
        }
        let m = census(&frames, timers(60));
        assert_eq!(m.flows, 30);
        // The first ten held to their reopening 5 s on, the second ten their 2.5 ms and the
        // hold, the last ten the same.
        let want = (10.0 * 5.0 + 20.0 * (0.0025 + 60.0)) / 30.0;
        assert!((m.hold_s - want).abs() < 1e-9, "{} vs {want}", m.hold_s);
    }

    /// Bursts of a hundred flows every ten seconds: a large index of dispersion.
    #[test]
    fn bursts_are_overdispersed() {
        let mut frames = Vec::new();
        for b in 0..30u64 {
            frames.extend(conversations(100, 1000, 1_000_000).into_iter().map(|f| {
                plsim_pcap::FrameBuf {
                    ts_ns: f.ts_ns + b * 10_000_000_000,
                    ..f
                }
            }));
        }
        let m = census(&frames, timers(1));
        assert_eq!(m.flows, 3000);
        let d = m.dispersion.unwrap();
        assert!(d.index > 20.0, "{d:?}");
    }
}
