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

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use plsim_wire::hash::splitmix64;
use plsim_wire::{DropCounts, DropReason, Ipv4Tcp, Place, SimTime, classify_l3};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use device::{Bufs, Port};

/// The simulated path between the consumer hosts and the backends, as [`run_echo`] drives it.
///
/// Both calls translate one bare IPv4 TCP packet in place (`view` was classified from it with
/// [`plsim_wire::classify_l3`] and must be kept in step with every rewrite, as the stages'
/// rewrites do) and say whether it goes on. The pipeline's three stages implement it by calling
/// `forward` (endpoint, lb, snat) or `reverse` (snat, lb, endpoint) in order.
pub trait Path {
    /// A consumer host's packet `C:cp -> PE:pp`; on `Ok` it is `N:np -> B:bp`, for the backend
    /// at its destination address.
    fn to_backend(
        &mut self,
        packet: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<(), DropReason>;
    /// A backend's packet `B:bp -> N:np`; on `Ok` it is `PE:pp -> C:cp`, for the consumer host
    /// at its destination address.
    fn to_consumer(
        &mut self,
        packet: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<(), DropReason>;
    /// Virtual time has reached `now`: run every timer due (expire idle flows, free the ports
    /// whose hold ended). Called whenever the clock moves, and once after the linger.
    fn tick(&mut self, now: SimTime);
    /// After a `to_backend` that passed: a segment the path sends to the same backend with
    /// that packet (a PROXY protocol header), its bare IPv4 bytes appended to `out`, and
    /// whether it goes just before or just after the packet.
    fn take_injected(&mut self, out: &mut Vec<u8>) -> Option<Place> {
        let _ = out;
        None
    }
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
#[derive(Debug)]
pub struct EchoOutcome<P> {
    /// The path, handed back with its stages' counters.
    pub path: P,
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
    /// Packets the path passed to an address where no host of the right side lives.
    pub undeliverable: u64,
    /// Packets still travelling when the run stopped (0 unless it hit a limit).
    pub in_flight: u64,
    /// Packets [`EchoSpec::corrupt_every`] corrupted.
    pub corrupted: u64,
    /// Segments the path sent to the backends of its own (PROXY protocol headers), delivered
    /// (outside the balance above).
    pub injected: u64,
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

/// Byte `offset` of the payload connection `conn` sends in a run seeded with `seed`.
pub fn pattern_byte(seed: u64, conn: u32, offset: u64) -> u8 {
    let w = pattern_word(seed, conn, offset / 8);
    w.to_le_bytes()[(offset % 8) as usize]
}

fn pattern_word(seed: u64, conn: u32, word: u64) -> u64 {
    splitmix64(seed ^ splitmix64(u64::from(conn) ^ 0x5eed_0000_0000) ^ word.rotate_left(17))
}

/// Writes the pattern of connection `conn` from `offset` into `out`.
fn fill_pattern(seed: u64, conn: u32, mut offset: u64, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        let bytes = pattern_word(seed, conn, offset / 8).to_le_bytes();
        let from = (offset % 8) as usize;
        let n = (8 - from).min(out.len() - i);
        out[i..i + n].copy_from_slice(&bytes[from..from + n]);
        i += n;
        offset += n as u64;
    }
}

/// Counts the bytes of `data` equal to the pattern of `conn` from `offset`.
fn count_matching(seed: u64, conn: u32, mut offset: u64, data: &[u8]) -> u64 {
    let mut ok = 0;
    let mut i = 0;
    while i < data.len() {
        let bytes = pattern_word(seed, conn, offset / 8).to_le_bytes();
        let from = (offset % 8) as usize;
        let n = (8 - from).min(data.len() - i);
        ok += data[i..i + n]
            .iter()
            .zip(&bytes[from..from + n])
            .filter(|(a, b)| a == b)
            .count() as u64;
        i += n;
        offset += n as u64;
    }
    ok
}

/// One client connection.
struct ClientConn {
    conn: u32,
    handle: SocketHandle,
    sent: u64,
    received: u64,
    verified: u64,
    closing: bool,
    /// It has ended (closed cleanly, or aborted).
    done: bool,
}

/// One backend connection.
struct ServerConn {
    handle: SocketHandle,
    closing: bool,
    /// A PROXY protocol header is still expected at the start of its stream.
    header_due: bool,
}

enum Role {
    Client(Vec<ClientConn>),
    Server {
        port: u16,
        listener: SocketHandle,
        conns: Vec<ServerConn>,
    },
}

struct Host {
    iface: Interface,
    sockets: SocketSet<'static>,
    rx: VecDeque<Vec<u8>>,
    /// When smoltcp wants to be polled next (µs); `None`: only when a packet comes.
    next_poll: Option<i64>,
    /// Something happened to it this step (a packet came, a connection opened).
    dirty: bool,
    role: Role,
}

struct InFlight {
    at: i64,
    host: usize,
    buf: Vec<u8>,
    /// A segment the path sent of its own (counted as `injected`, not as delivered).
    injected: bool,
}

/// Counters of a run, everything but the path.
#[derive(Default)]
struct Tally {
    opened: u32,
    completed: u32,
    bytes_verified: u64,
    bytes_mismatched: u64,
    servers_closed: u32,
    aborted: u32,
    consumer_in: u64,
    backend_in: u64,
    to_backend: u64,
    to_consumer: u64,
    dropped: DropCounts,
    undeliverable: u64,
    corrupted: u64,
    with_payload: u64,
    payload_sent: u64,
    injected: u64,
    proxy_verified: u32,
    proxy_bad: u32,
    /// The clients PROXY protocol headers named so far.
    proxied: std::collections::HashSet<SocketAddrV4>,
    first_ts: Option<SimTime>,
    last_ts: Option<SimTime>,
}

fn sim(us: i64) -> SimTime {
    SimTime::from_nanos((us.max(0) as u64).saturating_mul(1000))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

fn new_socket(buffer: usize, give_up: Duration) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    );
    s.set_timeout(Some(SmolDuration::from_micros(
        u64::try_from(give_up.as_micros()).unwrap_or(u64::MAX),
    )));
    s
}

fn new_host(addr: Ipv4Addr, seed: u64, index: usize, role: Role, bufs: &Bufs) -> Host {
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = splitmix64(seed ^ (index as u64).wrapping_mul(0x1000_0001));
    let mut rx = VecDeque::new();
    let mut port = Port { rx: &mut rx, bufs };
    let mut iface = Interface::new(config, &mut port, Instant::ZERO);
    // A /0 prefix: every address is on-link, so there is no route or gateway to set up (the
    // medium has no link layer and no neighbour discovery).
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::Ipv4(addr), 0))
            .expect("a fresh interface has room for one address");
    });
    Host {
        iface,
        sockets: SocketSet::new(Vec::new()),
        rx,
        next_poll: None,
        dirty: false,
        role,
    }
}

/// The simulation of one run.
struct Sim<'s, P> {
    spec: &'s EchoSpec,
    path: P,
    hosts: Vec<Host>,
    clients: usize,
    /// Host index of every address.
    by_addr: HashMap<Ipv4Addr, usize>,
    flight: VecDeque<InFlight>,
    bufs: Bufs,
    out: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    t: Tally,
}

/// Runs `spec` through `path`: opens the connections, echoes, verifies, closes, lingers, and
/// hands the path back with what happened. Errors only when the spec fails [`EchoSpec::check`]
/// (before anything runs).
pub fn run_echo<P: Path>(path: P, spec: &EchoSpec) -> Result<EchoOutcome<P>, EchoError> {
    spec.check()?;
    let mut run = Sim::new(path, spec);
    let (end, steps, now, in_flight) = run.run();
    let t = run.t;
    Ok(EchoOutcome {
        path: run.path,
        end,
        connections: t.opened,
        completed: t.completed,
        bytes_verified: t.bytes_verified,
        bytes_mismatched: t.bytes_mismatched,
        servers_closed: t.servers_closed,
        aborted: t.aborted,
        consumer_in: t.consumer_in,
        backend_in: t.backend_in,
        to_backend: t.to_backend,
        to_consumer: t.to_consumer,
        dropped: t.dropped,
        undeliverable: t.undeliverable,
        in_flight,
        corrupted: t.corrupted,
        injected: t.injected,
        proxy_verified: t.proxy_verified,
        proxy_bad: t.proxy_bad,
        payload_sent: t.payload_sent,
        first_ts: t.first_ts,
        last_ts: t.last_ts,
        sim_time: sim(now),
        steps,
    })
}

impl<'s, P: Path> Sim<'s, P> {
    fn new(path: P, spec: &'s EchoSpec) -> Self {
        let bufs = Bufs::default();
        let clients = spec.hosts_used() as usize;
        let mut hosts = Vec::with_capacity(clients + spec.backends.len());
        let mut by_addr = HashMap::new();
        for i in 0..clients {
            let addr = Ipv4Addr::from(u32::from(spec.first_client) + i as u32);
            hosts.push(new_host(
                addr,
                spec.seed,
                i,
                Role::Client(Vec::new()),
                &bufs,
            ));
            by_addr.insert(addr, i);
        }
        for b in &spec.backends {
            let i = hosts.len();
            let mut host = new_host(*b.ip(), spec.seed, i, Role::Client(Vec::new()), &bufs);
            let listener = listen(&mut host.sockets, b.port(), spec);
            host.role = Role::Server {
                port: b.port(),
                listener,
                conns: Vec::new(),
            };
            hosts.push(host);
            by_addr.insert(*b.ip(), i);
        }
        Sim {
            spec,
            path,
            hosts,
            clients,
            by_addr,
            flight: VecDeque::new(),
            bufs,
            out: Vec::new(),
            scratch: vec![0; spec.buffer],
            t: Tally::default(),
        }
    }

    fn open_at(&self, conn: u32) -> i64 {
        micros(self.spec.stagger).saturating_mul(i64::from(conn))
    }

    /// Runs to the end; returns why it stopped, the steps, the final clock (µs) and the packets
    /// left in flight.
    fn run(&mut self) -> (End, u64, i64, u64) {
        let spec = self.spec;
        let limit = micros(spec.time_limit);
        let delay = micros(spec.delay);
        let mut now: i64 = 0;
        let mut steps = 0u64;
        let mut end = End::Stalled;
        // Set once everything has closed: the run goes on to this time, then stops.
        let mut stop_at: Option<i64> = None;
        let mut last_tick: Option<i64> = None;
        loop {
            if steps >= spec.max_steps {
                end = End::StepLimit;
                break;
            }
            if spec
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
            {
                end = End::Interrupted;
                break;
            }
            steps += 1;
            if last_tick != Some(now) {
                self.path.tick(sim(now));
                last_tick = Some(now);
            }
            while self.t.opened < spec.connections && self.open_at(self.t.opened) <= now {
                self.open();
            }
            while self.flight.front().is_some_and(|f| f.at <= now) {
                let f = self.flight.pop_front().expect("checked");
                if f.injected {
                    self.t.injected += 1;
                } else if f.host < self.clients {
                    self.t.to_consumer += 1;
                } else {
                    self.t.to_backend += 1;
                }
                let host = &mut self.hosts[f.host];
                host.rx.push_back(f.buf);
                host.dirty = true;
            }
            for h in 0..self.hosts.len() {
                let host = &self.hosts[h];
                if host.dirty || host.next_poll.is_some_and(|t| t <= now) {
                    self.service(h, now, delay);
                }
            }
            if stop_at.is_none() && self.all_closed() {
                end = End::AllClosed;
                stop_at = Some(now.saturating_add(micros(spec.linger)));
            }
            let next = [
                self.flight.front().map(|f| f.at),
                (self.t.opened < spec.connections).then(|| self.open_at(self.t.opened)),
                self.hosts.iter().filter_map(|h| h.next_poll).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            match (next, stop_at) {
                (Some(t), Some(stop)) if t <= stop => now = t.max(now),
                (_, Some(stop)) => {
                    now = stop;
                    for h in 0..self.hosts.len() {
                        self.service(h, now, delay);
                    }
                    self.path.tick(sim(now));
                    break;
                }
                (None, None) => break,
                (Some(t), None) => {
                    if t > limit {
                        end = End::TimeLimit;
                        break;
                    }
                    now = t.max(now);
                }
            }
        }
        let in_flight = self.flight.len() as u64;
        (end, steps, now, in_flight)
    }

    fn all_closed(&self) -> bool {
        self.t.opened == self.spec.connections
            && self.flight.is_empty()
            && self.hosts.iter().all(|h| match &h.role {
                Role::Client(conns) => conns.iter().all(|c| c.done),
                Role::Server { conns, .. } => conns.is_empty(),
            })
    }

    /// Opens the next connection.
    fn open(&mut self) {
        let conn = self.t.opened;
        self.t.opened += 1;
        let h = conn as usize % self.clients;
        let port = FIRST_CLIENT_PORT + (conn / self.clients as u32) as u16;
        let host = &mut self.hosts[h];
        let mut socket = new_socket(self.spec.buffer, self.spec.give_up);
        let remote = (
            IpAddress::Ipv4(*self.spec.endpoint.ip()),
            self.spec.endpoint.port(),
        );
        host.dirty = true;
        let handle = match socket.connect(host.iface.context(), remote, port) {
            Ok(()) => Some(host.sockets.add(socket)),
            // Unreachable: the address is set, the ports are non-zero and unused.
            Err(_) => None,
        };
        let Role::Client(conns) = &mut host.role else {
            unreachable!("hosts below `clients` are clients")
        };
        match handle {
            Some(handle) => conns.push(ClientConn {
                conn,
                handle,
                sent: 0,
                received: 0,
                verified: 0,
                closing: false,
                done: false,
            }),
            None => self.t.aborted += 1,
        }
    }

    /// Polls host `h` at `now`: takes in what it received, runs its application, sends what it
    /// has to send, and carries that into the path.
    fn service(&mut self, h: usize, now: i64, delay: i64) {
        let at = Instant::from_micros(now);
        let spec = self.spec;
        let Host {
            iface,
            sockets,
            rx,
            next_poll,
            dirty,
            role,
        } = &mut self.hosts[h];
        *dirty = false;
        let mut port = Port {
            rx,
            bufs: &self.bufs,
        };
        while !port.rx.is_empty() {
            iface.poll_ingress_single(at, &mut port, sockets);
            if let Role::Server {
                port: p,
                listener,
                conns,
            } = role
                && sockets.get::<tcp::Socket>(*listener).state() != State::Listen
            {
                conns.push(ServerConn {
                    handle: *listener,
                    closing: false,
                    header_due: spec.proxy.is_some(),
                });
                *listener = listen(sockets, *p, spec);
            }
        }
        // The applications run twice: on what came in, and on what the egress pass changed
        // (a socket that timed out, a TIME-WAIT that ended).
        for _ in 0..2 {
            match role {
                Role::Client(conns) => {
                    for c in conns.iter_mut().filter(|c| !c.done) {
                        client_app(c, sockets, spec, &mut self.t);
                    }
                }
                Role::Server { conns, .. } => {
                    conns.retain_mut(|c| {
                        server_app(c, sockets, spec, &mut self.scratch, &mut self.t)
                    });
                }
            }
            // smoltcp sends at most one segment per socket per egress pass: pass until quiet.
            for _ in 0..1024 {
                let before = self.bufs.out_len();
                iface.poll_egress(at, &mut port, sockets);
                if self.bufs.out_len() == before {
                    break;
                }
            }
        }
        *next_poll = iface
            .poll_at(at, sockets)
            .map(|t| t.total_micros().max(now));
        let client = h < self.clients;
        let mut out = std::mem::take(&mut self.out);
        self.bufs.drain_out(&mut out);
        for buf in out.drain(..) {
            self.carry(buf, client, now, delay);
        }
        self.out = out;
    }

    /// Carries one packet a host sent through the path, and on to its destination.
    fn carry(&mut self, mut buf: Vec<u8>, from_client: bool, now: i64, delay: i64) {
        let ts = sim(now);
        self.t.first_ts.get_or_insert(ts);
        self.t.last_ts = Some(ts);
        if from_client {
            self.t.consumer_in += 1;
        } else {
            self.t.backend_in += 1;
        }
        let mut view = match classify_l3(&buf) {
            Ok(v) => v,
            Err(reason) => {
                self.t.dropped.add(reason);
                self.bufs.give(buf);
                return;
            }
        };
        self.t.payload_sent += view.payload_len() as u64;
        let passed = if from_client {
            self.path.to_backend(&mut buf, &mut view, ts)
        } else {
            self.path.to_consumer(&mut buf, &mut view, ts)
        };
        if let Err(reason) = passed {
            self.t.dropped.add(reason);
            self.bufs.give(buf);
            return;
        }
        // A segment the path sends with the packet (a PROXY protocol header) goes to the same
        // backend after the same delay, just before or after it. No buffer until there is one.
        let mut injected = Vec::new();
        let place = if from_client {
            self.path.take_injected(&mut injected)
        } else {
            None
        };
        let host = self
            .by_addr
            .get(&view.tuple().dst)
            .copied()
            .filter(|&h| (h >= self.clients) == from_client);
        let Some(host) = host else {
            self.t.undeliverable += 1 + u64::from(place.is_some());
            self.bufs.give(buf);
            return;
        };
        if view.payload_len() > 0 {
            self.t.with_payload += 1;
            let n = self.spec.corrupt_every;
            if n > 0 && splitmix64(self.spec.seed ^ self.t.with_payload).is_multiple_of(n) {
                buf[view.payload_offset()] ^= 0xff;
                self.t.corrupted += 1;
            }
        }
        let at = now.saturating_add(delay);
        let flight = |buf, injected| InFlight {
            at,
            host,
            buf,
            injected,
        };
        let header = place.map(|p| (p, flight(injected, true)));
        if let Some((Place::Before, f)) = header {
            self.flight.push_back(f);
            self.flight.push_back(flight(buf, false));
        } else {
            self.flight.push_back(flight(buf, false));
            self.flight.extend(header.map(|(_, f)| f));
        }
    }
}

fn listen(sockets: &mut SocketSet<'static>, port: u16, spec: &EchoSpec) -> SocketHandle {
    let mut s = new_socket(spec.buffer, spec.give_up);
    s.listen(port)
        .expect("a fresh socket listens on a non-zero port");
    sockets.add(s)
}

/// The client: send the pattern, verify what comes back, close once all came back.
fn client_app(
    c: &mut ClientConn,
    sockets: &mut SocketSet<'static>,
    spec: &EchoSpec,
    t: &mut Tally,
) {
    let s = sockets.get_mut::<tcp::Socket>(c.handle);
    let (seed, conn, bytes) = (spec.seed, c.conn, spec.bytes);
    while s.can_recv() {
        let received = c.received;
        let Ok((n, ok)) = s.recv(|data| {
            let want = bytes.saturating_sub(received).min(data.len() as u64) as usize;
            let ok = count_matching(seed, conn, received, &data[..want]);
            (data.len(), (data.len(), ok))
        }) else {
            break;
        };
        if n == 0 {
            break;
        }
        c.received += n as u64;
        c.verified += ok;
        t.bytes_verified += ok;
        t.bytes_mismatched += n as u64 - ok;
    }
    while c.sent < bytes && s.can_send() {
        let sent = c.sent;
        let n = s
            .send(|buf| {
                let n = (bytes - sent).min(buf.len() as u64) as usize;
                fill_pattern(seed, conn, sent, &mut buf[..n]);
                (n, n)
            })
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        c.sent += n as u64;
    }
    if !c.closing && c.received >= bytes && s.may_send() {
        s.close();
        c.closing = true;
    }
    let state = s.state();
    if c.closing && state == State::TimeWait {
        // A clean close; the connection completed if every byte came back right.
        c.done = true;
        if c.verified == bytes && c.received == bytes {
            t.completed += 1;
        }
    } else if state == State::Closed {
        c.done = true;
        t.aborted += 1;
    }
}

/// The backend: echo everything, close after the client did. Returns false once the socket has
/// ended (it is removed from the set then).
fn server_app(
    c: &mut ServerConn,
    sockets: &mut SocketSet<'static>,
    spec: &EchoSpec,
    scratch: &mut [u8],
    t: &mut Tally,
) -> bool {
    let s = sockets.get_mut::<tcp::Socket>(c.handle);
    if c.header_due
        && let Some(expect) = spec.proxy
        && s.can_recv()
    {
        proxy_header(c, s, spec, expect, scratch, t);
    }
    while !c.header_due && s.can_recv() && s.may_send() {
        let room = s.send_capacity() - s.send_queue();
        let room = room.min(scratch.len());
        if room == 0 {
            break;
        }
        let n = s.recv_slice(&mut scratch[..room]).unwrap_or(0);
        if n == 0 {
            break;
        }
        let sent = s.send_slice(&scratch[..n]).unwrap_or(0);
        debug_assert_eq!(sent, n, "the send buffer had room");
    }
    if !c.closing && s.state() == State::CloseWait && s.recv_queue() == 0 {
        s.close();
        c.closing = true;
    }
    match s.state() {
        State::Closed | State::TimeWait => {
            if c.closing {
                t.servers_closed += 1;
            } else {
                t.aborted += 1;
            }
            sockets.remove(c.handle);
            false
        }
        _ => true,
    }
}

/// Reads the PROXY protocol v2 header at the start of a backend connection's stream with the
/// `ppp` crate, checks it names a client of the run (each client once), the endpoint and the
/// expected link id, and strips it. A stream that can't start with one counts as bad and is
/// echoed as it is.
fn proxy_header(
    c: &mut ServerConn,
    s: &mut tcp::Socket<'static>,
    spec: &EchoSpec,
    expect: ProxyExpect,
    scratch: &mut [u8],
    t: &mut Tally,
) {
    let n = s.peek_slice(scratch).unwrap_or(0);
    let parsed = match ppp::v2::Header::try_from(&scratch[..n]) {
        Err(ppp::v2::ParseError::Incomplete(_) | ppp::v2::ParseError::Partial(..)) => return,
        Err(_) => None,
        Ok(h) => Some((h.len(), header_ok(&h, spec, expect))),
    };
    c.header_due = false;
    match parsed {
        Some((len, Some(client))) if t.proxied.insert(client) => {
            t.proxy_verified += 1;
            let _ = s.recv_slice(&mut scratch[..len]);
        }
        Some((len, _)) => {
            t.proxy_bad += 1;
            let _ = s.recv_slice(&mut scratch[..len]);
        }
        None => t.proxy_bad += 1,
    }
}

/// The client a parsed header names, when it is what the run expects: PROXY over TCP/IPv4,
/// from a client host of the run on a client port, to the endpoint, and one Azure TLV holding
/// the link id.
fn header_ok(
    h: &ppp::v2::Header<'_>,
    spec: &EchoSpec,
    expect: ProxyExpect,
) -> Option<SocketAddrV4> {
    use ppp::v2::{Addresses, Command, Protocol};
    if h.command != Command::Proxy || h.protocol != Protocol::Stream {
        return None;
    }
    let Addresses::IPv4(a) = h.addresses else {
        return None;
    };
    let first = u32::from(spec.first_client);
    let host = u32::from(a.source_address).wrapping_sub(first);
    let client_ok = host < spec.hosts_used() && a.source_port >= FIRST_CLIENT_PORT;
    let endpoint = SocketAddrV4::new(a.destination_address, a.destination_port);
    let mut tlvs = h.tlvs();
    let link = match (tlvs.next(), tlvs.next()) {
        (Some(Ok(tlv)), None) if tlv.kind == 0xEE && tlv.value.len() == 5 && tlv.value[0] == 1 => {
            Some(u32::from_le_bytes([
                tlv.value[1],
                tlv.value[2],
                tlv.value[3],
                tlv.value[4],
            ]))
        }
        _ => None,
    };
    (client_ok && endpoint == spec.endpoint && link == Some(expect.link_id))
        .then(|| SocketAddrV4::new(a.source_address, a.source_port))
}

#[cfg(test)]
mod tests;
