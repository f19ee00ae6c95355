//! Properties of real TCP runs through the built-in scenario's path, over random sizes,
//! timings, buffers and faults.

mod tcp_common;

use std::time::Duration;

use plsim_control::Scenario;
use plsim_engine::{AsIs, Batch, Engine, Feeder, Fill, Options, Parts, Stages as _};
use plsim_lab::Event;
use plsim_lab::tcp::Deliveries;
use plsim_traffic::tcp::{Delivery, End, Path as TcpPath, run_echo};
use plsim_wire::{Dir, DropReason, SimTime};
use proptest::prelude::*;
use tcp_common::Stages;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_byte_comes_back_and_every_port_is_freed(
        connections in 1u32..6,
        bytes in 0u64..20_000,
        seed in any::<u64>(),
        delay_us in 1u64..5_000,
        stagger_us in 0u64..5_000,
        buffer in 1460usize..40_000,
        client_hosts in 1u32..4,
        corrupt in prop_oneof![Just(0u64), 3u64..20],
    ) {
        let (stages, mut spec) = tcp_common::of(&Scenario::builtin());
        spec.connections = connections;
        spec.bytes = bytes;
        spec.seed = seed;
        spec.delay = Duration::from_micros(delay_us);
        spec.stagger = Duration::from_micros(stagger_us);
        spec.buffer = buffer;
        spec.client_hosts = client_hosts;
        spec.corrupt_every = corrupt;
        let (o, path) = run_echo(stages, &spec).unwrap();
        let n = u64::from(connections);
        prop_assert_eq!(o.end, End::AllClosed);
        prop_assert_eq!((o.completed, o.servers_closed, o.aborted), (connections, connections, 0));
        prop_assert_eq!((o.bytes_verified, o.bytes_mismatched), (n * bytes, 0));
        prop_assert_eq!(o.dropped.total(), 0);
        prop_assert_eq!(
            o.consumer_in + o.backend_in,
            o.to_backend + o.to_consumer + o.undeliverable + o.in_flight
        );
        prop_assert_eq!((o.undeliverable, o.in_flight), (0, 0));
        if corrupt == 0 {
            prop_assert_eq!(o.payload_sent, 2 * n * bytes);
            prop_assert_eq!(o.corrupted, 0);
        } else {
            prop_assert!(o.payload_sent >= 2 * n * bytes);
        }
        let st = path.core().1.engines()[0].stats();
        prop_assert_eq!((st.created, st.closed, st.live), (n, n, 0));
        prop_assert_eq!(path.ports_busy(), (0, 0));
    }
}

/// A TCP run's path, watched: what it delivered, in order.
struct Watched {
    stages: Stages,
    delivered: Vec<Delivery>,
}

impl TcpPath for Watched {
    fn send(
        &mut self,
        packet: &mut [u8],
        dir: Dir,
        now: SimTime,
        out: &mut Vec<Delivery>,
    ) -> Option<DropReason> {
        let before = out.len();
        let r = self.stages.send(packet, dir, now, out);
        self.delivered.extend_from_slice(&out[before..]);
        r
    }
    fn tick(&mut self, now: SimTime) {
        self.stages.tick(now);
    }
}

/// What went into a TCP run, as a run's input: its packets, and the scenario's events, each
/// before the first packet at or after its instant (as a capture's feeder places them).
struct Replayed<'a> {
    packets: &'a [(Vec<u8>, plsim_engine::Meta)],
    events: std::collections::VecDeque<(SimTime, Event)>,
    next: usize,
}

impl Feeder<Event> for Replayed<'_> {
    fn fill(&mut self, batch: &mut Batch, max: usize) -> Fill<Event> {
        loop {
            let due = self
                .packets
                .get(self.next)
                .map_or(SimTime::MAX, |(_, m)| m.ts);
            if self.events.front().is_some_and(|(at, _)| *at <= due) {
                let (at, ev) = self.events.pop_front().expect("an event is due");
                return Fill::Event(ev, at);
            }
            let Some((frame, meta)) = self.packets.get(self.next) else {
                return Fill::Done;
            };
            self.next += 1;
            batch.push(frame, *meta);
            if batch.len() == max {
                return Fill::More;
            }
        }
    }
}

/// The built-in scenario, or with `rst_on_exhaustion` and `ports` ports on one NAT IP, or with
/// PROXY protocol headers, or with a backend going down (its flows reset) and coming back while
/// connections open.
fn scenario(kind: u8, ports: u16) -> Scenario {
    let mut s = Scenario::builtin();
    let svc = &mut s.services[0];
    match kind {
        1 => {
            svc.rst_on_exhaustion = true;
            svc.nat_ips.truncate(1);
            svc.reuse = plsim_control::scenario::ReuseScope::PerIp;
            svc.ports = plsim_control::scenario::PortRange::new(1024, 1024 + ports - 1);
        }
        2 => svc.enable_proxy_protocol = true,
        3 => {
            use plsim_control::scenario::{Event, OnBackendDown};
            s.load_balancer.on_backend_down = OnBackendDown::Reset;
            let backend = s.load_balancer.pools[0].backends[1];
            s.timeline.push(Event::BackendDown {
                at: 0.0031,
                backend,
            });
            s.timeline.push(Event::BackendUp {
                at: 0.0072,
                backend,
            });
        }
        _ => {}
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The TCP mode drives the engine's one trip: the very packets that went into a TCP run,
    /// run through either engine at any batch size, give the same counts, the same deliveries
    /// in the same order, and leave the stages in the same state.
    #[test]
    fn a_tcp_run_is_what_either_engine_makes_of_its_input(
        kind in 0u8..4,
        connections in 1u32..12,
        ports in 1u16..6,
        bytes in 0u64..6_000,
        seed in any::<u64>(),
        batch in prop_oneof![Just(1usize), Just(3), Just(64), Just(1024)],
    ) {
        let scenario = scenario(kind, ports);
        let (mut stages, mut spec) = tcp_common::of(&scenario);
        stages.record();
        spec.connections = connections;
        spec.bytes = bytes;
        spec.seed = seed;
        spec.give_up = Duration::from_secs(5);
        let watched = Watched { stages, delivered: Vec::new() };
        let (o, watched) = run_echo(watched, &spec).unwrap();
        let input = watched.stages.input().to_vec();
        let (tcp, _) = watched.stages.finish();
        for engine in [Engine::Sequential, Engine::Threaded] {
            let built = plsim_lab::path::Path::build(&scenario, false).unwrap();
            let mut feeder = Replayed { packets: &input, events: built.events.into(), next: 0 };
            let parts = Parts { edge: built.endpoint, core: (built.lb, built.snat), backend: AsIs };
            let opts = Options { engine, batch_size: batch, ..Options::default() };
            let mut fin = plsim_engine::run(parts, &mut feeder, Deliveries::default(), opts);
            let (a, b) = (&tcp.stats, &fin.stats);
            prop_assert_eq!(
                (a.consumer_in, a.backend_in, a.to_backend, a.to_consumer, a.answers, a.injected),
                (b.consumer_in, b.backend_in, b.to_backend, b.to_consumer, b.answers, b.injected)
            );
            prop_assert_eq!(&a.dropped, &b.dropped);
            prop_assert_eq!(&a.links, &b.links);
            prop_assert!(fin.taps.0 == watched.delivered, "{engine} at batch {batch}: other deliveries");
            // The TCP run's clock ran on past its last packet: so does the engine run's.
            fin.parts.core.tick(o.sim_time);
            let snat = |c: &plsim_lab::Core| c.1.engines().iter().map(|e| e.stats()).collect::<Vec<_>>();
            prop_assert_eq!(snat(&tcp.parts.core), snat(&fin.parts.core));
            prop_assert_eq!(tcp.parts.core.0.0.stats(), fin.parts.core.0.0.stats());
        }
    }

    /// With NAT ports for only some of the connections and `rst_on_exhaustion` on, every
    /// refused client gets its RST and ends at once; the others echo every byte.
    #[test]
    fn refused_clients_see_their_rst(
        connections in 2u32..20,
        ports in 1u16..8,
        bytes in 1u64..4_000,
        seed in any::<u64>(),
    ) {
        let (stages, mut spec) = tcp_common::of(&scenario(1, ports));
        spec.connections = connections;
        spec.bytes = bytes;
        spec.seed = seed;
        let (o, path) = run_echo(stages, &spec).unwrap();
        // Every flow holds its port for the FIN hold after it closes: the first `ports`
        // connections get one, the rest are refused, once each.
        let served = connections.min(u32::from(ports));
        let refused = connections - served;
        prop_assert_eq!(o.end, End::AllClosed);
        prop_assert_eq!(o.answers, u64::from(refused));
        prop_assert_eq!((o.completed, o.aborted), (served, refused));
        prop_assert_eq!(o.bytes_verified, u64::from(served) * bytes);
        let st = path.core().1.engines()[0].stats();
        prop_assert_eq!((st.created, st.failed), (u64::from(served), u64::from(refused)));
        prop_assert_eq!(o.dropped.get(DropReason::PortExhausted), u64::from(refused));
        // A RST, not a give-up: no client waited for its SYN to time out.
        prop_assert!(o.last_ts.unwrap() < SimTime::from_secs(30));
    }
}
