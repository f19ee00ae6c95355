//! What a workload can't be, and how it stops when asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use plsim_traffic::workload::{
    Arrivals, FlowDuration, MAX_RATE, Profile, SpecError, Workload, WorkloadSpec,
};

#[test]
fn an_arrival_rate_above_one_flow_a_nanosecond_is_refused_with_the_limit() {
    assert_eq!(MAX_RATE, 1e9);
    for ok in ["poisson:1e9", "constant:1000000000", "constant:0.001"] {
        assert!(ok.parse::<Arrivals>().is_ok(), "{ok}");
    }
    for bad in [
        "poisson:1e15",
        "constant:1e15",
        "poisson:1000000001",
        "constant:1.5e9",
    ] {
        let e = bad.parse::<Arrivals>().unwrap_err();
        assert!(matches!(e, SpecError::RateTooHigh { .. }), "{bad}: {e}");
    }
    assert_eq!(
        "poisson:1e15".parse::<Arrivals>().unwrap_err().to_string(),
        "an arrival rate of 1e15 flows a second is more than simulated time can tell apart: it \
         counts whole nanoseconds, so at most 1e9 flows a second"
    );
    // A spec built in code is checked the same way.
    let spec = WorkloadSpec::from(Profile {
        arrivals: Arrivals::Constant { per_sec: 1e15 },
        ..Profile::default()
    });
    assert_eq!(
        spec.validate(),
        Err(SpecError::RateTooHigh { per_sec: 1e15 })
    );
    assert!(Workload::new(&spec).is_err());
    // A sweep's load multiplies the rate: the product is checked the same way.
    let busy = Arrivals::Poisson { per_sec: 100.0 }.times(1e13);
    assert_eq!(busy, Arrivals::Poisson { per_sec: 1e15 });
    assert_eq!(
        busy.validate(),
        Err(SpecError::RateTooHigh { per_sec: 1e15 })
    );
    assert!(
        Arrivals::Constant { per_sec: 100.0 }
            .times(1e7)
            .validate()
            .is_ok()
    );
}

/// One host whose flows hold its 64,512 client ports for a day, a billion flows a second:
/// after the handshakes, the next packet is hours away, and every flow due before it finds no
/// port. Asked to stop, the generator starts no more of them and returns the packet waiting.
#[test]
fn a_stop_ends_the_flow_starts_ahead_of_the_next_packet() {
    let spec = WorkloadSpec::from(Profile {
        hosts: 1,
        arrivals: Arrivals::Constant { per_sec: MAX_RATE },
        flow_duration: FlowDuration::Fixed { secs: 86_400.0 },
        flows: None,
        until_secs: Some(100_000.0),
        ..Profile::default()
    });
    let mut w = Workload::new(&spec).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    w.stop_on(Arc::clone(&flag));
    let mut buf = Vec::new();
    // The handshakes of the flows that got a port (3 packets each) come first; then the next
    // packet is hours away. Raise the flag while the generator is past them.
    let (handshakes_done, wait) = std::sync::mpsc::channel();
    let raiser = {
        let flag = Arc::clone(&flag);
        std::thread::spawn(move || {
            wait.recv().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
            flag.store(true, Ordering::Relaxed);
        })
    };
    let mut packets = 0u64;
    while w.next_into(&mut buf).is_some() {
        packets += 1;
        if packets == 3 * 64_512 {
            handshakes_done.send(()).unwrap();
        }
    }
    raiser.join().unwrap();
    let st = w.stats();
    // Every flow it started made every packet (and nothing started after the stop).
    assert_eq!(st.flows_done, st.flows_started);
    assert!(st.flows_started <= 64_512, "one host's ports: {st:?}");
    assert!(
        st.flows_unplaced > 0,
        "it was starting flows with no port: {st:?}"
    );
}

#[test]
fn a_workload_stopped_before_it_starts_makes_no_packet() {
    let mut w = Workload::new(&WorkloadSpec::default()).unwrap();
    w.stop_on(Arc::new(AtomicBool::new(true)));
    assert_eq!(w.next_into(&mut Vec::new()), None);
    assert_eq!(w.stats().flows_started, 0);
}

#[test]
fn a_stop_after_the_first_packet_lets_the_open_flows_finish() {
    let mut w = Workload::new(&WorkloadSpec::default()).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    w.stop_on(Arc::clone(&flag));
    let mut buf = Vec::new();
    assert!(w.next_into(&mut buf).is_some(), "the first SYN");
    flag.store(true, Ordering::Relaxed);
    let mut rest = 0;
    while w.next_into(&mut buf).is_some() {
        rest += 1;
    }
    let st = w.stats();
    assert_eq!((st.flows_started, st.flows_done), (1, 1), "{st:?}");
    // The default profile: a handshake, 4 data packets and a FIN close (3): 10 packets.
    assert_eq!((rest + 1, st.packets), (10, 10));
}
