//! Real TCP endpoints: smoltcp consumer hosts and backends talking through the simulated path.
//!
//! [`run_echo`] gives every consumer host and every backend its own smoltcp [`Interface`]
//! (`Medium::Ip`, default checksum capabilities: every received checksum is checked) whose
//! device is a port of the path. Each of `connections` clients connects to the private
//! endpoint, sends `bytes` bytes of a seeded pseudo-random pattern, verifies every byte the
//! backend echoes, and closes; the backend closes in turn. Every packet a host sends goes
//! through the caller's [`Path`] (endpoint, load balancer and SNAT stages), synchronously, on
//! one virtual clock: a run is deterministic, and bounded in virtual time and in steps.
//!
//! smoltcp scans every socket of an interface per packet: this is for hundreds of real
//! connections; tens of thousands of flows are the synthetic generator's job
//! ([`crate::workload`]).

mod device;
mod pattern;
mod sim;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use plsim_wire::{Dir, DropCounts, DropReason, SimTime};

pub use pattern::pattern_byte;

/// The simulated path between the consumer hosts and the backends, as [`run_echo`] drives it
/// (plsim's whole path implements it over the engine's one definition of a packet's trip).
pub trait Path {
    /// A packet a host sent into the path: a consumer host's (`C:cp -> PE:pp`) travels
    /// [`Dir::Forward`], a backend's (`B:bp -> N:np`) [`Dir::Reverse`]. Everything the path
    /// delivers because of it is appended to `out`, in the order it is delivered: the packet
    /// itself translated (`N:np -> B:bp` for a backend, `PE:pp -> C:cp` for a consumer host),
    /// unless the path dropped it, and the segments the path sends of its own beside it (a
    /// PROXY protocol header to the same backend, a RST back to the consumer host for a SYN no
    /// NAT port was free for). Returns why the packet was dropped, if it was. `packet` is the
    /// path's to rewrite.
    fn send(
        &mut self,
        packet: &mut [u8],
        dir: Dir,
        now: SimTime,
        out: &mut Vec<Delivery>,
    ) -> Option<DropReason>;
    /// Virtual time has reached `now`: run every timer due (expire idle flows, free the ports
    /// whose hold ended). Called whenever the clock moves, and once after the linger.
    fn tick(&mut self, now: SimTime);
}

/// A packet the path delivers: bare IPv4, to the host at its destination address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Which way it travels: [`Dir::Forward`] to a backend, [`Dir::Reverse`] to a consumer host.
    pub dir: Dir,
    /// Whether the path sent it of its own (a PROXY protocol header, an answer) rather than
    /// passing a host's packet on.
    pub own: bool,
    /// Its bytes.
    pub packet: Vec<u8>,
}

/// What the backends expect at the start of every connection: a PROXY protocol v2 header (the
/// service's `enable_proxy_protocol`), parsed with the `ppp` crate, not with plsim's writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyExpect {
    /// The link id the Azure TLV must carry (the private endpoint's connection).
    pub link_id: u32,
}

/// The first port a client host connects from; connection `i` of a run uses host
/// `i % hosts` and port `FIRST_CLIENT_PORT + i / hosts`.
pub const FIRST_CLIENT_PORT: u16 = 40000;

/// What to run: who connects where, how much each sends, and the bounds of the run.
#[derive(Clone, Debug)]
pub struct EchoSpec {
    /// Where the clients connect: the private endpoint's address and port.
    pub endpoint: SocketAddrV4,
    /// The backends, each listening (and echoing) on its address and port.
    pub backends: Vec<SocketAddrV4>,
    /// The first client host's address; the others follow it (`first_client + 1`, ...).
    pub first_client: Ipv4Addr,
    /// Client hosts at most; with more connections, hosts open several (one port each).
    pub client_hosts: u32,
    /// Connections to open, one every `stagger` from time zero.
    pub connections: u32,
    /// Bytes each client sends (and gets back).
    pub bytes: u64,
    /// Seeds the payload pattern and the hosts' TCP initial sequence numbers.
    pub seed: u64,
    /// Virtual time between two connections' openings.
    pub stagger: Duration,
    /// One-way delay of the path, each direction (virtual time, microsecond resolution).
    pub delay: Duration,
    /// Receive and send buffer of every socket, in bytes.
    pub buffer: usize,
    /// A socket that hears nothing from its peer for this long gives up (and counts as aborted).
    pub give_up: Duration,
    /// After the last connection has closed, the clock moves on by this much and the path's
    /// timers run: set it past the SNAT FIN hold (240 s in the built-in scenario) to see every
    /// NAT port free again.
    pub linger: Duration,
    /// The run stops at this virtual time if connections are still open (the linger is extra).
    pub time_limit: Duration,
    /// The run stops after this many steps (a step handles one instant of virtual time).
    pub max_steps: u64,
    /// When set and raised (a Ctrl-C handler, say), the run stops at the next step and says so
    /// ([`End::Interrupted`]).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Fault injection, for tests: when `n > 0`, on average one in `n` packets with a payload
    /// that the path delivers (a seeded pseudo-random choice) gets its first payload byte
    /// inverted (checksums untouched), so the receiving smoltcp must drop it and TCP must
    /// retransmit. 0 (the default) never. Not every `n`-th: a fixed period can line up with a
    /// retransmission pattern and corrupt the same segment's every retry.
    pub corrupt_every: u64,
    /// When set, every backend connection must start with a PROXY protocol v2 header naming
    /// its client and the endpoint, with this link id; the backend checks it, strips it and
    /// echoes the rest. `None` (the default): the stream is echoed as it comes.
    pub proxy: Option<ProxyExpect>,
}

impl EchoSpec {
    /// One connection of 1000 bytes to `endpoint`, from client hosts starting at 10.0.1.4 (the
    /// built-in scenario's host subnet), with a 250 µs one-way delay, 1 ms between openings,
    /// 32 KiB socket buffers, a 60 s give-up, a 241 s linger, a one-hour time limit and ten
    /// million steps.
    pub fn new(endpoint: SocketAddrV4, backends: Vec<SocketAddrV4>) -> EchoSpec {
        EchoSpec {
            endpoint,
            backends,
            first_client: Ipv4Addr::new(10, 0, 1, 4),
            client_hosts: 250,
            connections: 1,
            bytes: 1000,
            seed: 0,
            stagger: Duration::from_millis(1),
            delay: Duration::from_micros(250),
            buffer: 32 << 10,
            give_up: Duration::from_secs(60),
            linger: Duration::from_secs(241),
            time_limit: Duration::from_secs(3600),
            max_steps: 10_000_000,
            corrupt_every: 0,
            proxy: None,
            stop: None,
        }
    }

    /// Checks the spec; [`run_echo`] does it first.
    pub fn check(&self) -> Result<(), EchoError> {
        if self.endpoint.port() == 0 {
            return Err(EchoError::PortZero("the endpoint"));
        }
        if self.backends.is_empty() {
            return Err(EchoError::NoBackends);
        }
        if self.client_hosts == 0 && self.connections > 0 {
            return Err(EchoError::NoClientHosts);
        }
        if self.buffer < MIN_BUFFER {
            return Err(EchoError::BufferTooSmall(self.buffer));
        }
        let mut seen: Vec<Ipv4Addr> = vec![self.endpoint.ip().to_owned()];
        for b in &self.backends {
            if b.port() == 0 {
                return Err(EchoError::PortZero("a backend"));
            }
            if seen.contains(b.ip()) {
                return Err(EchoError::AddressClash(*b.ip()));
            }
            seen.push(*b.ip());
        }
        let hosts = self.hosts_used();
        let first = u32::from(self.first_client);
        let last = first
            .checked_add(hosts.saturating_sub(1))
            .ok_or(EchoError::ClientsOverflow(self.first_client, hosts))?;
        if let Some(ip) = seen
            .iter()
            .find(|ip| hosts > 0 && (first..=last).contains(&u32::from(**ip)))
        {
            return Err(EchoError::AddressClash(*ip));
        }
        let ports = u64::from(u16::MAX - FIRST_CLIENT_PORT) + 1;
        let capacity = u64::from(self.client_hosts) * ports;
        if u64::from(self.connections) > capacity {
            return Err(EchoError::TooManyConnections {
                connections: self.connections,
                capacity,
            });
        }
        Ok(())
    }

    fn hosts_used(&self) -> u32 {
        self.client_hosts.min(self.connections)
    }
}

/// The smallest socket buffer [`EchoSpec::buffer`] may be: one full segment.
pub const MIN_BUFFER: usize = 1460;

/// Why an [`EchoSpec`] can't be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EchoError {
    /// There is no backend to echo.
    #[error("no backend to connect to")]
    NoBackends,
    /// Connections were asked for, but no client host.
    #[error("connections need at least one client host")]
    NoClientHosts,
    /// Port 0 can't be connected to.
    #[error("{0} has port 0")]
    PortZero(&'static str),
    /// Two hosts of the run (endpoint, backends, clients) would share an address.
    #[error("address {0} is used twice (endpoint, backends and client hosts must differ)")]
    AddressClash(Ipv4Addr),
    /// The client addresses run past 255.255.255.255.
    #[error("{1} client hosts from {0} run past the end of the IPv4 space")]
    ClientsOverflow(Ipv4Addr, u32),
    /// More connections than the client hosts have ports.
    #[error("{connections} connections, but the client hosts have {capacity} ports")]
    TooManyConnections {
        /// Connections asked for.
        connections: u32,
        /// Client hosts times the ports each has from [`FIRST_CLIENT_PORT`] up.
        capacity: u64,
    },
    /// The socket buffers can't hold one segment.
    #[error("socket buffer of {0} bytes: at least {MIN_BUFFER} needed")]
    BufferTooSmall(usize),
}

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Every connection ended (cleanly or not) and nothing is in flight.
    AllClosed,
    /// Nothing was left to happen, yet some connection had not ended (a bug).
    Stalled,
    /// [`EchoSpec::time_limit`] was reached.
    TimeLimit,
    /// [`EchoSpec::max_steps`] was reached.
    StepLimit,
    /// [`EchoSpec::stop`] was raised.
    Interrupted,
}

/// What a run did. The packet counts balance: `consumer_in + backend_in == to_backend +
/// to_consumer + dropped.total() + undeliverable + in_flight`.
#[derive(Clone, Debug, PartialEq)]
pub struct EchoOutcome {
    /// Why the run stopped.
    pub end: End,
    /// Connections opened.
    pub connections: u32,
    /// Connections whose client verified every byte and then closed cleanly (it reached
    /// TIME-WAIT after its FIN and the backend's were both acknowledged).
    pub completed: u32,
    /// Bytes the clients received back equal to what they sent.
    pub bytes_verified: u64,
    /// Bytes the clients received back that differ from what they sent (or came in excess).
    pub bytes_mismatched: u64,
    /// Backend sockets that closed after echoing everything (CLOSE-WAIT, LAST-ACK, CLOSED).
    pub servers_closed: u32,
    /// Sockets, client or backend, that ended without a clean close (a RST, or giving up).
    pub aborted: u32,
    /// Packets the consumer hosts sent into the path.
    pub consumer_in: u64,
    /// Packets the backends sent into the path.
    pub backend_in: u64,
    /// Packets delivered to a backend (after the path's delay).
    pub to_backend: u64,
    /// Packets delivered to a consumer host (after the path's delay).
    pub to_consumer: u64,
    /// Packets the path dropped, by reason.
    pub dropped: DropCounts,
    /// Packets the path passed to an address where no host of the right side lives (the
    /// hosts' own; what the path sent of its own is counted apart).
    pub undeliverable: u64,
    /// Packets still travelling when the run stopped (0 unless it hit a limit; the hosts' own).
    pub in_flight: u64,
    /// Packets [`EchoSpec::corrupt_every`] corrupted.
    pub corrupted: u64,
    /// Segments the path sent to the backends of its own (PROXY protocol headers), delivered
    /// (outside the balance above).
    pub injected: u64,
    /// Segments the path sent to the consumer hosts of its own (RSTs answering SYNs no NAT port
    /// was free for), delivered (outside the balance above).
    pub answers: u64,
    /// With [`EchoSpec::proxy`]: backend connections whose PROXY protocol header parsed and
    /// named a client of the run (each once), the endpoint and the link id expected.
    pub proxy_verified: u32,
    /// With [`EchoSpec::proxy`]: backend connections whose stream did not start with such a
    /// header (missing, malformed, or naming anything else).
    pub proxy_bad: u32,
    /// TCP payload bytes every host sent, retransmissions included: `2 * connections * bytes`
    /// when nothing was lost.
    pub payload_sent: u64,
    /// Virtual time of the first and last packet sent.
    pub first_ts: Option<SimTime>,
    /// See `first_ts`.
    pub last_ts: Option<SimTime>,
    /// Virtual time at the end (after the linger).
    pub sim_time: SimTime,
    /// Steps taken.
    pub steps: u64,
}

/// Runs `spec` through `path`: opens the connections, echoes, verifies, closes, lingers, and
/// hands back what happened, and the path with its stages' state. Errors only when the spec fails [`EchoSpec::check`]
/// (before anything runs).
pub fn run_echo<P: Path>(path: P, spec: &EchoSpec) -> Result<(EchoOutcome, P), EchoError> {
    spec.check()?;
    Ok(sim::run(path, spec))
}

#[cfg(test)]
mod tests;
