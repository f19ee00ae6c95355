//! Real TCP stacks (smoltcp, in `plsim_traffic::tcp`) through the path built from a scenario: the
//! three stages called in order in one thread, on the stacks' virtual clock (which starts at
//! zero: the scenario's timeline applies at its times on it).

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use plsim_control::Scenario;
use plsim_traffic::tcp::{EchoOutcome, EchoSpec, Path as TcpPath, ProxyExpect, run_echo};
use plsim_wire::{DropReason, Ipv4Tcp, LinkId, LinkType, Place, SimTime};

use plsim_engine::{AsIs, Dir, Edge, LinkCounts, Meta, NoTaps, Parts, RunStats, Stage};

use crate::path::Path;
use crate::stages::{EndpointStage, LbStage, SnatStage};
use crate::summary::{Input, Summary, Tcp, summarize};
use crate::{Error, Event, Finished, Result};

/// The stages, called in order in one thread.
pub struct Serial {
    /// The private endpoints.
    pub endpoint: EndpointStage,
    /// The load balancer.
    pub lb: LbStage,
    /// The SNAT engines.
    pub snat: SnatStage,
    /// The consumer VNet the clients live in.
    vnet: u32,
    seq: u64,
    /// The scenario's timeline, still to come (simulated time from zero).
    events: VecDeque<(SimTime, Event)>,
    /// Packets per connection, as the engine counts them.
    links: Vec<LinkCounts>,
    /// The run's connections.
    connections: Vec<crate::path::ConnectionInfo>,
}

impl Serial {
    /// Counts a packet's fate under its connection.
    fn counted(&mut self, mut meta: Meta, r: Result<(), DropReason>) -> Result<(), DropReason> {
        meta.drop = r.err();
        LinkCounts::count(&mut self.links, &meta);
        r
    }

    /// Applies the events due by `now`, in order.
    fn catch_up(&mut self, now: SimTime) {
        while self.events.front().is_some_and(|(at, _)| *at <= now) {
            let (at, ev) = self.events.pop_front().expect("an event is due");
            self.endpoint.apply(&ev, at);
            // What the load balancer makes of it (flows it reset) goes to the SNAT stage too.
            let derived = self.lb.apply(&ev, at);
            self.snat.apply(&ev, at);
            for d in &derived {
                self.snat.apply(d, at);
            }
        }
    }

    fn meta(&mut self, packet: &[u8], view: &Ipv4Tcp, now: SimTime, dir: Dir) -> Meta {
        self.seq += 1;
        Meta {
            seq: self.seq,
            ts: now,
            wire_len: packet.len() as u32,
            linktype: LinkType::RawIpv4,
            view: Some(*view),
            link: LinkId::default(),
            vnet: self.vnet,
            orig: view.tuple(),
            dir,
            drop: None,
            after: false,
            stream_start: None,
        }
    }

    /// NAT ports (in use, held), over every NAT IP of every service.
    pub fn ports_busy(&self) -> (u64, u64) {
        let mut busy = (0, 0);
        for e in self.snat.engines() {
            for n in e.stats().nat_ips {
                busy.0 += n.in_use;
                busy.1 += n.held;
            }
        }
        busy
    }
}

impl TcpPath for Serial {
    fn to_backend(
        &mut self,
        packet: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<(), DropReason> {
        self.catch_up(now);
        let mut meta = self.meta(packet, view, now, Dir::Forward);
        let r = self
            .endpoint
            .forward(packet, &mut meta)
            .and_then(|()| self.lb.forward(packet, &mut meta))
            .and_then(|()| self.snat.forward(packet, &mut meta));
        self.counted(meta, r)?;
        *view = meta.view.expect("the stages keep the view");
        Ok(())
    }

    fn to_consumer(
        &mut self,
        packet: &mut [u8],
        view: &mut Ipv4Tcp,
        now: SimTime,
    ) -> Result<(), DropReason> {
        self.catch_up(now);
        let mut meta = self.meta(packet, view, now, Dir::Return);
        let r = self
            .snat
            .reverse(packet, &mut meta)
            .and_then(|()| self.lb.reverse(packet, &mut meta))
            .and_then(|()| self.endpoint.reverse(packet, &mut meta));
        self.counted(meta, r)?;
        *view = meta.view.expect("the stages keep the view");
        Ok(())
    }

    fn tick(&mut self, now: SimTime) {
        self.catch_up(now);
        self.lb.tick(now);
        self.snat.tick(now);
    }

    fn take_injected(&mut self, out: &mut Vec<u8>) -> Option<Place> {
        self.snat.take_injected(out)
    }
}

/// The path of `scenario` as a serial path, and an echo spec aimed at its first endpoint (port
/// 443) and its first pool's backends (listening on 443, as an HA-ports rule keeps the port), with
/// clients from the scenario's workload hosts, lingering past the first service's FIN hold.
pub fn serial(scenario: &Scenario, connections: u32, bytes: u64) -> Result<(Serial, EchoSpec)> {
    let built = Path::build(scenario, false)?;
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
    let serial = Serial {
        endpoint: built.endpoint,
        lb: built.lb,
        snat: built.snat,
        vnet,
        seq: 0,
        events: built.events.into(),
        links: Vec::new(),
        connections: built.connections,
    };
    Ok((serial, spec))
}

/// Runs the echo workload and summarizes it like any other run, with its `tcp` section. With
/// `stop`, a requested stop ends the run at its next step, and the summary says `interrupted`.
pub fn echo_summary(
    scenario: &Scenario,
    connections: u32,
    bytes: u64,
    stop: Option<&crate::stop::Stop>,
) -> Result<(Summary, EchoOutcome<Serial>)> {
    let (path, mut spec) = serial(scenario, connections, bytes)?;
    spec.stop = stop.map(crate::stop::Stop::flag);
    let proxied = spec.proxy.is_some();
    let start = Instant::now();
    let out = run_echo(path, &spec)?;
    let wall = start.elapsed();
    let mut path = out.path;
    let connections = std::mem::take(&mut path.connections);
    let links = std::mem::take(&mut path.links);
    let out = EchoOutcome { path, ..out };
    let mut dropped = out.dropped;
    // Packets the path passed to nobody are none of the path's drops, but they were not
    // delivered: count them as `no_flow`, so the summary still adds up.
    for _ in 0..out.undeliverable + out.in_flight {
        dropped.add(DropReason::NoFlow);
    }
    let stats = RunStats {
        consumer_in: out.consumer_in,
        backend_in: out.backend_in,
        to_backend: out.to_backend,
        to_consumer: out.to_consumer,
        answers: 0,
        injected: out.injected,
        dropped,
        latency_ns: plsim_engine::histogram(),
        wall,
        busy: Vec::new(),
        links,
        first_ts: out.first_ts,
        last_ts: out.last_ts,
    };
    let fin: Finished<AsIs, NoTaps> = Finished {
        stats,
        parts: Parts {
            edge: out.path.endpoint,
            core: (out.path.lb, out.path.snat),
            backend: AsIs,
        },
        taps: NoTaps,
    };
    let input = Input {
        packets: out.consumer_in + out.backend_in,
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
    let (lb, snat) = fin.parts.core;
    let path = Serial {
        endpoint: fin.parts.edge,
        lb,
        snat,
        vnet: 0,
        seq: 0,
        events: VecDeque::new(),
        links: Vec::new(),
        connections,
    };
    let outcome = EchoOutcome { path, ..out };
    Ok((summary, outcome))
}
