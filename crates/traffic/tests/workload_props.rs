//! Property tests of the synthetic workloads: any valid spec gives a stream a real TCP stack and
//! plsim accept, and the flag forms print and parse back.

mod workload_common;

use std::net::Ipv4Addr;

use plsim_traffic::workload::{Arrivals, Close, FlowDuration, Profile, Workload, WorkloadSpec};
use proptest::prelude::*;
use workload_common::check;

fn arrivals() -> impl Strategy<Value = Arrivals> {
    prop_oneof![
        (1.0f64..1e5).prop_map(|per_sec| Arrivals::Poisson { per_sec }),
        (1.0f64..1e5).prop_map(|per_sec| Arrivals::Constant { per_sec }),
    ]
}

fn duration() -> impl Strategy<Value = FlowDuration> {
    prop_oneof![
        (0.0f64..2.0).prop_map(|secs| FlowDuration::Fixed { secs }),
        (1e-4f64..2.0).prop_map(|mean_secs| FlowDuration::Exponential { mean_secs }),
        (-6.0f64..1.0, 0.0f64..2.0).prop_map(|(mu, sigma)| FlowDuration::LogNormal { mu, sigma }),
        (1e-4f64..1.0, 0.3f64..4.0)
            .prop_map(|(scale_secs, shape)| FlowDuration::Pareto { scale_secs, shape }),
    ]
}

fn close() -> impl Strategy<Value = Close> {
    prop_oneof![Just(Close::Fin), Just(Close::Rst), Just(Close::Idle)]
}

prop_compose! {
    fn spec()(
        hosts in 1u32..4,
        arrivals in arrivals(),
        duration in duration(),
        packets in 0u32..7,
        fill in 0.0f64..=1.0,
        close in close(),
        flows in 1u64..300,
        seed in any::<u64>(),
        rtt_ms in 0.0f64..50.0,
        reuse in prop_oneof![Just(0.0), 0.0f64..1.0],
    ) -> WorkloadSpec {
        WorkloadSpec { client_base: Ipv4Addr::new(10, 0, 1, 0), rtt_ms, reuse_delay_secs: reuse, ..WorkloadSpec::from(Profile { hosts, arrivals, flow_duration: duration, packets_per_flow: packets, bytes_per_flow: (f64::from(packets) * 1460.0 * fill) as u64, close, flows: Some(flows), seed: Some(seed), ..Profile::default() }) }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every packet classifies with valid checksums, time never goes back, seq/ack are a real
    /// conversation, no two live flows share a tuple, every flow is whole and carries its bytes.
    #[test]
    fn any_spec_gives_a_valid_stream(s in spec()) {
        let mut w = Workload::new(&s).unwrap();
        let seen = check(&s, w.by_ref());
        let st = w.stats();
        prop_assert_eq!(st.flows_started + st.flows_unplaced, s.profile.flows.unwrap());
        prop_assert_eq!(st.flows_unplaced, 0);
        prop_assert_eq!(seen.flows.len() as u64, st.flows_done);
        let per_flow = 3 + u64::from(s.profile.packets_per_flow) + u64::from(s.profile.close.packets());
        prop_assert_eq!(seen.packets, st.flows_done * per_flow);
        prop_assert_eq!(st.bytes, st.flows_done * s.profile.bytes_per_flow);
        // Each flow's first packet is at its planned start, and its close no earlier than
        // start + duration.
        for plan in s.schedule().unwrap() {
            let f = &seen.flows[&plan.id];
            prop_assert_eq!(f.first_ns, plan.start_ns);
            if s.profile.close != Close::Idle {
                prop_assert!(f.last_ns >= plan.start_ns + plan.duration_ns);
            }
        }
    }

}

proptest! {
    // 80,000 flows a case: a few cases are enough to catch a tuple reused too early.
    #![proptest_config(ProptestConfig::with_cases(3))]

    /// A tiny port space forces reuse: the 4-tuple of a flow is not reused within the reuse
    /// delay of its last packet.
    #[test]
    fn reuse_delay_is_respected(seed in any::<u64>(), delay in 0.0f64..0.5) {
        let s = WorkloadSpec { reuse_delay_secs: delay, ..WorkloadSpec::from(Profile { hosts: 1, arrivals: Arrivals::Poisson { per_sec: 200_000.0 }, flow_duration: FlowDuration::Exponential { mean_secs: 0.05 }, packets_per_flow: 1, bytes_per_flow: 10, close: Close::Rst, flows: Some(80_000), seed: Some(seed), ..Profile::default() }) };
        let mut w = Workload::new(&s).unwrap();
        let seen = check(&s, w.by_ref());
        let mut by_tuple: std::collections::HashMap<_, Vec<(u64, u64)>> = Default::default();
        for f in seen.flows.values() {
            by_tuple.entry(f.tuple.unwrap()).or_default().push((f.first_ns, f.last_ns));
        }
        let delay_ns = (delay * 1e9).round() as u64;
        for uses in by_tuple.values_mut() {
            uses.sort();
            for pair in uses.windows(2) {
                prop_assert!(pair[1].0 >= pair[0].1 + delay_ns);
            }
        }
        prop_assert_eq!(
            w.stats().flows_started + w.stats().flows_unplaced,
            80_000
        );
    }

}

proptest! {
    #[test]
    fn flag_forms_print_and_parse_back(a in arrivals(), d in duration(), c in close()) {
        prop_assert_eq!(a.to_string().parse::<Arrivals>(), Ok(a));
        prop_assert_eq!(d.to_string().parse::<FlowDuration>(), Ok(d));
        prop_assert_eq!(c.to_string().parse::<Close>(), Ok(c));
    }

    /// Parsing arbitrary text never panics.
    #[test]
    fn parsing_never_panics(s in ".{0,24}") {
        let _ = s.parse::<Arrivals>();
        let _ = s.parse::<FlowDuration>();
        let _ = s.parse::<Close>();
    }
}
