//! Real smoltcp connections through the whole simulated path (endpoint, load balancer, SNAT)
//! of the built-in scenario.

mod tcp_common;

use std::time::Duration;

use plsim_control::Scenario;
use plsim_traffic::tcp::{EchoOutcome, End, run_echo};
use plsim_wire::DropReason;
use tcp_common::Stages;

fn balanced(o: &EchoOutcome) -> bool {
    o.consumer_in + o.backend_in
        == o.to_backend + o.to_consumer + o.dropped.total() + o.undeliverable + o.in_flight
}

/// Everything a clean run of `n` connections of `bytes` each must show, to the byte.
fn assert_clean(o: &EchoOutcome, path: &Stages, n: u32, bytes: u64) {
    assert_eq!(o.end, End::AllClosed);
    assert_eq!(
        (o.connections, o.completed, o.servers_closed, o.aborted),
        (n, n, n, 0)
    );
    assert_eq!(
        (o.bytes_verified, o.bytes_mismatched),
        (u64::from(n) * bytes, 0)
    );
    // Lossless: not one byte retransmitted, nothing dropped or lost.
    assert_eq!(o.payload_sent, 2 * u64::from(n) * bytes);
    assert_eq!(o.dropped.total(), 0, "{:?}", o.dropped);
    assert_eq!((o.undeliverable, o.in_flight, o.corrupted), (0, 0, 0));
    assert_eq!(o.to_backend, o.consumer_in);
    assert_eq!(o.to_consumer, o.backend_in);
    assert!(balanced(o));
    let st = &path.core().1.engines()[0].stats();
    assert_eq!(
        (st.created, st.closed, st.expired, st.failed),
        (u64::from(n), u64::from(n), 0, 0)
    );
    let lb = path.core().0.0.stats();
    assert_eq!(
        lb.backends.iter().map(|b| b.flows).sum::<u64>(),
        u64::from(n)
    );
    assert_eq!(
        lb.backends.iter().map(|b| b.packets).sum::<u64>(),
        o.to_backend
    );
}

#[test]
fn twenty_connections_echo_close_and_free_every_port() {
    let (stages, mut spec) = tcp_common::of(&Scenario::builtin());
    spec.connections = 20;
    spec.bytes = 10_000;
    spec.seed = 1;
    let (o, path) = run_echo(stages, &spec).unwrap();
    assert_clean(&o, &path, 20, 10_000);
    // Exact packet counts (deterministic; see the toy-path unit tests for their shape).
    // 10,000 bytes are 7 segments of at most 1460. A client sends its SYN, 7 data segments
    // (each also acknowledging the echo so far), its FIN and the last ACK; a backend its SYN-ACK,
    // 7 echo segments and its FIN (acknowledging the client's).
    assert_eq!((o.consumer_in, o.backend_in), (20 * 10, 20 * 9));
    assert_eq!(path.ports_busy(), (0, 0));
    let st = path.core().1.engines()[0].stats();
    assert_eq!(st.live, 0);
    assert_eq!(st.nat_ips.iter().map(|n| n.flows_created).sum::<u64>(), 20);
    // The run lingered past the 240 s FIN hold.
    assert!(o.sim_time >= o.last_ts.unwrap() + Duration::from_secs(241));
}

#[test]
fn ports_stay_held_until_the_fin_hold_ends() {
    for (linger, held) in [(0, 8), (239, 8), (241, 0)] {
        let (stages, mut spec) = tcp_common::of(&Scenario::builtin());
        spec.connections = 8;
        spec.bytes = 5_000;
        spec.linger = Duration::from_secs(linger);
        let (o, path) = run_echo(stages, &spec).unwrap();
        assert_clean(&o, &path, 8, 5_000);
        assert_eq!(path.ports_busy(), (0, held), "linger {linger} s");
    }
}

#[test]
fn corrupted_rewrites_are_caught_by_smoltcp_and_retransmitted() {
    let (stages, mut spec) = tcp_common::of(&Scenario::builtin());
    spec.connections = 10;
    spec.bytes = 30_000;
    spec.corrupt_every = 6;
    let (o, path) = run_echo(stages, &spec).unwrap();
    assert_eq!(o.end, End::AllClosed);
    assert_eq!((o.completed, o.servers_closed, o.aborted), (10, 10, 0));
    // Every corrupted payload byte was refused: the clients saw only right bytes.
    assert_eq!((o.bytes_verified, o.bytes_mismatched), (300_000, 0));
    assert!(o.corrupted >= 20, "corrupted {}", o.corrupted);
    // What was refused was sent again.
    assert!(o.payload_sent > 600_000, "payload sent {}", o.payload_sent);
    assert_eq!(o.dropped.total(), 0);
    assert_eq!(path.ports_busy(), (0, 0));
}

#[test]
fn a_pending_connection_passes_nothing() {
    let mut scenario = Scenario::builtin();
    scenario.services[0].auto_approval.clear();
    let (stages, mut spec) = tcp_common::of(&scenario);
    spec.connections = 3;
    spec.give_up = Duration::from_secs(10);
    let (o, path) = run_echo(stages, &spec).unwrap();
    assert_eq!(o.end, End::AllClosed);
    assert_eq!((o.completed, o.aborted, o.backend_in), (0, 3, 0));
    assert!(o.consumer_in >= 6, "SYNs and their retransmissions");
    assert_eq!(o.dropped.get(DropReason::NotApproved), o.consumer_in);
    assert_eq!(path.core().1.engines()[0].stats().created, 0);
}

#[test]
fn the_outcome_fills_the_pipeline_summary() {
    let (s, o) =
        plsim_lab::tcp::echo_summary(&Scenario::builtin(), 4, 2_000, Default::default(), None)
            .unwrap();
    assert_eq!(s.packets.consumer_in, o.consumer_in);
    assert_eq!(s.packets.backend_in, o.backend_in);
    assert_eq!(s.input.packets, o.consumer_in + o.backend_in);
    assert_eq!(s.packets.dropped.total(), 0);
    assert_eq!(
        s.packets.to_backend + s.packets.to_consumer,
        s.input.packets
    );
    assert_eq!(
        (s.flows.created, s.flows.closed, s.flows.active_end),
        (4, 4, 0)
    );
    assert!(
        s.nat_ips
            .iter()
            .all(|n| n.ports_in_use_end == 0 && n.ports_held_end == 0)
    );
    assert_eq!(s.nat_ips.iter().map(|n| n.flows).sum::<u64>(), 4);
    assert_eq!(s.sim_time_s, o.sim_time.as_secs_f64());
    let tcp = s.tcp.expect("a tcp section");
    assert_eq!(
        (tcp.connections, tcp.completed, tcp.bytes_verified),
        (4, 4, 8_000)
    );
}

/// The test: 200 connections of 100 kB each, every byte verified, every connection
/// closed cleanly on both sides, every NAT port free after the hold.
#[test]
fn two_hundred_connections_of_100_kb() {
    let (stages, mut spec) = tcp_common::of(&Scenario::builtin());
    spec.connections = 200;
    spec.bytes = 100_000;
    spec.seed = 42;
    let started = std::time::Instant::now();
    let (o, path) = run_echo(stages, &spec).unwrap();
    eprintln!(
        "200 x 100 kB: {:?} wall, {} steps, {} + {} packets, last packet at {:?}",
        started.elapsed(),
        o.steps,
        o.consumer_in,
        o.backend_in,
        o.last_ts
    );
    assert_clean(&o, &path, 200, 100_000);
    assert_eq!(o.bytes_verified, 20_000_000);
    // 69 segments each way per connection; the rest are handshakes, FINs, ACKs and window
    // updates (measured once; the run is deterministic).
    assert_eq!((o.consumer_in, o.backend_in), (14_800, 14_400));
    assert_eq!(path.ports_busy(), (0, 0));
    let st = path.core().1.engines()[0].stats();
    assert_eq!((st.live, st.open), (0, 0));
    assert!(st.live_peak > 0);
}
