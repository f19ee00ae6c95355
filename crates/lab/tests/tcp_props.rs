//! Properties of real TCP runs through the built-in scenario's path, over random sizes,
//! timings, buffers and faults.

mod tcp_common;

use std::time::Duration;

use plsim_control::Scenario;
use plsim_traffic::tcp::{End, run_echo};
use proptest::prelude::*;

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
