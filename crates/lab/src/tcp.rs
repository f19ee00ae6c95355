//! Real TCP stacks (smoltcp, in `plsim_traffic::tcp`) through the path built from a scenario.
//! The stacks make their packets one at a time and answer what they receive, so the path is
//! driven one packet at a time through the engine's [`Trip`]: the very definition of a packet's
//! trip that the sequential engine is, answers and injected segments included. Time is the
//! stacks' virtual clock, from zero: the scenario's timeline applies at its times on it.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use plsim_control::Scenario;
use plsim_engine::{AsIs, Dir, Meta, Taps, Trip};
use plsim_snat::ReuseTracking;
use plsim_traffic::tcp::{
    Delivery, EchoError, EchoOutcome, EchoSpec, FIRST_CLIENT_PORT, Path as TcpPath, ProxyExpect,
    run_echo,
};
use plsim_wire::{DropReason, LinkId, LinkType, SimTime, VnetId, classify_l3};

use crate::path::{ConnectionInfo, Path};
use crate::stages::EndpointStage;
use crate::summary::{Input, Summary, Tcp, summarize};
use crate::{Core, Error, Event, Finished, Result};

/// What the hosts receive: every packet the path delivers, in order (the trip's taps; any run's
/// taps, for a test that compares).
#[derive(Debug, Default)]
pub struct Deliveries(pub Vec<Delivery>);

impl Taps for Deliveries {
    fn consumer(&mut self, frame: &[u8], meta: &Meta) {
        // What leaves at the consumer side (the forward calls are what the hosts sent).
        if meta.dir == Dir::Reverse {
            self.0.push(delivery(frame, meta));
        }
    }
    fn backend(&mut self, frame: &[u8], meta: &Meta) {
        if meta.dir == Dir::Forward {
            self.0.push(delivery(frame, meta));
        }
    }
}

fn delivery(frame: &[u8], meta: &Meta) -> Delivery {
    Delivery {
        dir: meta.dir,
        own: meta.own.is_some(),
        packet: frame.to_vec(),
    }
}

/// The path of a scenario as the TCP stacks see it: a [`Trip`] through its stages, and the
/// timeline still to come.
pub struct TcpStages {
    trip: Trip<Event, EndpointStage, Core, AsIs, Deliveries>,
    /// The consumer VNet the clients live in.
    vnet: VnetId,
    seq: u64,
    /// The scenario's timeline, still to come (simulated time from zero).
    events: VecDeque<(SimTime, Event)>,
    /// The run's connections.
    connections: Vec<ConnectionInfo>,
    /// The packets that went in, when asked for ([`TcpStages::record`]).
    log: Option<Vec<(Vec<u8>, Meta)>>,
}

impl TcpStages {
    /// Keeps every packet that goes in from now on ([`TcpStages::input`]), as it enters, so
    /// that the same input can be run through the engines and compared.
    pub fn record(&mut self) {
        self.log = Some(Vec::new());
    }

    /// The packets that went in since [`TcpStages::record`], in order, each with the metadata
    /// it entered with.
    pub fn input(&self) -> &[(Vec<u8>, Meta)] {
        self.log.as_deref().unwrap_or_default()
    }

    /// Applies the events due by `now`, in order.
    fn catch_up(&mut self, now: SimTime) {
        while self.events.front().is_some_and(|(at, _)| *at <= now) {
            let (at, ev) = self.events.pop_front().expect("an event is due");
            self.trip.event(&ev, at);
        }
    }

    /// The load balancer and the SNAT engines, as the packets so far left them.
    pub fn core(&self) -> &Core {
        self.trip.core()
    }

    /// NAT ports (in use, held), over every NAT IP of every service.
    pub fn ports_busy(&self) -> (u64, u64) {
        let mut busy = (0, 0);
        for e in self.core().1.engines() {
            for n in e.stats().nat_ips {
                busy.0 += n.in_use;
                busy.1 += n.held;
            }
        }
        busy
    }

    /// The end of the run: what the trip counted, the stages, and the run's connections.
    pub fn finish(self) -> (Finished<Core, AsIs, Deliveries>, Vec<ConnectionInfo>) {
        (self.trip.finish(), self.connections)
    }
}

impl TcpPath for TcpStages {
    fn send(
        &mut self,
        packet: &mut [u8],
        dir: Dir,
        now: SimTime,
        out: &mut Vec<Delivery>,
    ) -> Option<DropReason> {
        self.catch_up(now);
        // A packet as a feeder makes it: bare IPv4, classified (or dropped as it fails to be).
        let view = classify_l3(packet);
        let mut meta = Meta {
            seq: self.seq,
            ts: now,
            wire_len: packet.len() as u32,
            linktype: LinkType::RawIpv4,
            view: view.ok(),
            link: LinkId::default(),
            vnet: self.vnet,
            orig: view.map(|v| v.tuple()).unwrap_or_default(),
            dir,
            drop: view.err(),
            own: None,
            stream_start: None,
            handle: plsim_engine::Meta::NO_HANDLE,
        };
        self.seq += 1;
        if let Some(log) = self.log.as_mut() {
            log.push((packet.to_vec(), meta));
        }
        self.trip.packet(packet, &mut meta);
        out.append(&mut self.trip.taps_mut().0);
        meta.drop
    }

    fn tick(&mut self, now: SimTime) {
        self.catch_up(now);
        self.trip.tick(now);
    }
}

/// The path of `scenario` for TCP stacks, and an echo spec aimed at its first endpoint (port
/// 443) and its first pool's backends (listening on 443, as an HA-ports rule keeps the port), with
/// clients from the scenario's workload hosts, lingering past the longest FIN or RST hold.
pub fn tcp_path(
    scenario: &Scenario,
    connections: u32,
    bytes: u64,
) -> Result<(TcpStages, EchoSpec)> {
    tcp_path_with(scenario, connections, bytes, None)
}

/// [`tcp_path`], with the reuse record (the summary's `reuse`) under these settings.
pub fn tcp_path_with(
    scenario: &Scenario,
    connections: u32,
    bytes: u64,
    reuse: Option<ReuseTracking>,
) -> Result<(TcpStages, EchoSpec)> {
    let built = Path::build_with(scenario, false, reuse)?;
    let route = built
        .routes
        .first()
        .ok_or_else(|| Error::Input("the scenario has no private endpoint".into()))?;
    let (vnet, pe) = (route.vnet, route.address);
    let pool = scenario
        .load_balancer
        .pools
        .first()
        .ok_or_else(|| Error::Input("the load balancer has no pool".into()))?;
    let backends = pool
        .backends
        .iter()
        .map(|&b| SocketAddrV4::new(b, 443))
        .collect();
    let mut spec = EchoSpec::new(SocketAddrV4::new(pe, 443), backends);
    spec.first_client = crate::workload::spec(scenario)?.client_base;
    spec.connections = connections;
    spec.bytes = bytes;
    let hold = scenario
        .services
        .iter()
        .map(|s| s.timers.fin_hold.max(s.timers.rst_hold))
        .max()
        .unwrap_or(Duration::from_secs(240));
    spec.linger = hold + Duration::from_secs(1);
    // The backends check the PROXY protocol header when the endpoint's service sends one.
    spec.proxy = built
        .connections
        .iter()
        .find(|c| c.endpoint == route.name)
        .filter(|c| {
            scenario
                .services
                .iter()
                .any(|s| s.name == c.service && s.enable_proxy_protocol)
        })
        .map(|c| ProxyExpect { link_id: c.link.0 });
    let parts = plsim_engine::Parts {
        edge: built.endpoint,
        core: (built.lb, built.snat),
        backend: AsIs,
    };
    let stages = TcpStages {
        trip: Trip::new(parts, Deliveries::default()),
        vnet,
        seq: 0,
        events: built.events.into(),
        connections: built.connections,
        log: None,
    };
    Ok((stages, spec))
}

/// Refuses, before anything runs, what the flags ask that the run can't serve: more
/// connections than the client hosts have ports, or more memory than the machine has. A
/// connection holds its client's socket to the end of the run and its backend's while it is
/// open (two buffers each; all of them at once when every connection is open), and smoltcp's
/// state around them: about 68 KiB each measured, counted as 4 buffers and 4 KiB to be safe.
fn guard(spec: &EchoSpec) -> Result<()> {
    if let Err(EchoError::TooManyConnections {
        connections,
        capacity,
    }) = spec.check()
    {
        return Err(Error::Beyond {
            flag: "--connections",
            value: connections.to_string(),
            limit: format!(
                "a TCP run has at most {capacity} connections, one for each client port ({} \
                 client hosts, ports {FIRST_CLIENT_PORT} to 65535 of each)",
                spec.client_hosts
            ),
        });
    }
    let per_connection = 4 * spec.buffer as u64 + 4096;
    crate::memory::check(
        "--connections",
        u64::from(spec.connections),
        per_connection,
        "a connection",
        32 << 20,
    )
}

/// Runs the echo workload and summarizes it like any other run, from what the trip counted,
/// with its `tcp` section and its port reuses. With `stop`, a requested stop ends the run at its next step, and the
/// summary says `interrupted`. Hands back the outcome without its path (the summary has it).
pub fn echo_summary(
    scenario: &Scenario,
    connections: u32,
    bytes: u64,
    reuse: ReuseTracking,
    stop: Option<&crate::stop::Stop>,
) -> Result<(Summary, EchoOutcome)> {
    let (path, mut spec) = tcp_path_with(scenario, connections, bytes, Some(reuse))?;
    guard(&spec)?;
    spec.stop = stop.map(crate::stop::Stop::flag);
    let proxied = spec.proxy.is_some();
    let start = Instant::now();
    let (out, path) = run_echo(path, &spec)?;
    let wall = start.elapsed();
    let (mut fin, connections) = path.finish();
    fin.stats.wall = wall;
    let input = Input {
        packets: fin.stats.consumer_in + fin.stats.backend_in,
        ..Input::default()
    };
    let mut summary = summarize(&fin, input, out.sim_time, &connections);
    summary.interrupted = out.end == plsim_traffic::tcp::End::Interrupted;
    summary.tcp = Some(Tcp {
        connections: out.connections,
        completed: out.completed,
        bytes_verified: out.bytes_verified,
        proxy_headers_verified: proxied.then_some(out.proxy_verified),
    });
    Ok((summary, out))
}
