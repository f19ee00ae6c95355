//! One run of the echo workload: the hosts, the packets in flight, the virtual clock.

mod apps;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use plsim_wire::hash::splitmix64;
use plsim_wire::{Dir, DropCounts, SimTime, classify_l3};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use apps::{client_app, listen, server_app};

use super::device::{Bufs, Port};
use super::{Delivery, EchoOutcome, EchoSpec, End, FIRST_CLIENT_PORT, Path};

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
    /// A segment the path sent of its own (counted as `injected` or `answers`, not as
    /// delivered).
    own: bool,
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
    answers: u64,
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
    /// What the path delivers because of the packet being carried.
    deliveries: Vec<Delivery>,
    scratch: Vec<u8>,
    t: Tally,
}

/// Runs a checked spec through `path`.
pub(super) fn run<P: Path>(path: P, spec: &EchoSpec) -> (EchoOutcome, P) {
    let mut run = Sim::new(path, spec);
    let (end, steps, now, in_flight) = run.run();
    let t = run.t;
    let outcome = EchoOutcome {
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
        answers: t.answers,
        proxy_verified: t.proxy_verified,
        proxy_bad: t.proxy_bad,
        payload_sent: t.payload_sent,
        first_ts: t.first_ts,
        last_ts: t.last_ts,
        sim_time: sim(now),
        steps,
    };
    (outcome, run.path)
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
            deliveries: Vec::new(),
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
                let to_client = f.host < self.clients;
                *match (f.own, to_client) {
                    (true, true) => &mut self.t.answers,
                    (true, false) => &mut self.t.injected,
                    (false, true) => &mut self.t.to_consumer,
                    (false, false) => &mut self.t.to_backend,
                } += 1;
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
        let in_flight = self.flight.iter().filter(|f| !f.own).count() as u64;
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

    /// Carries one packet a host sent through the path, and what the path delivers because of
    /// it on to its destinations.
    fn carry(&mut self, mut buf: Vec<u8>, from_client: bool, now: i64, delay: i64) {
        let ts = sim(now);
        self.t.first_ts.get_or_insert(ts);
        self.t.last_ts = Some(ts);
        let dir = if from_client {
            self.t.consumer_in += 1;
            Dir::Forward
        } else {
            self.t.backend_in += 1;
            Dir::Reverse
        };
        if let Ok(view) = classify_l3(&buf) {
            self.t.payload_sent += view.payload_len() as u64;
        }
        let mut deliveries = std::mem::take(&mut self.deliveries);
        if let Some(reason) = self.path.send(&mut buf, dir, ts, &mut deliveries) {
            self.t.dropped.add(reason);
        }
        self.bufs.give(buf);
        let at = now.saturating_add(delay);
        for d in deliveries.drain(..) {
            self.deliver(d, at);
        }
        self.deliveries = deliveries;
    }

    /// Puts a packet the path delivers in flight to the host at its destination, to arrive
    /// `at`; a host's own packet with a payload may be corrupted on the way
    /// ([`EchoSpec::corrupt_every`]).
    fn deliver(&mut self, d: Delivery, at: i64) {
        let Delivery {
            dir,
            own,
            mut packet,
        } = d;
        let to_client = dir == Dir::Reverse;
        let view = classify_l3(&packet).ok();
        let host = view
            .and_then(|v| self.by_addr.get(&v.tuple().dst).copied())
            .filter(|&h| (h < self.clients) == to_client);
        let (Some(host), Some(view)) = (host, view) else {
            if !own {
                self.t.undeliverable += 1;
            }
            return;
        };
        if !own && view.payload_len() > 0 {
            self.t.with_payload += 1;
            let n = self.spec.corrupt_every;
            if n > 0 && splitmix64(self.spec.seed ^ self.t.with_payload).is_multiple_of(n) {
                packet[view.payload_offset()] ^= 0xff;
                self.t.corrupted += 1;
            }
        }
        self.flight.push_back(InFlight {
            at,
            host,
            buf: packet,
            own,
        });
    }
}
