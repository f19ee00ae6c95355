//! Any bytes as a capture, through the whole path of the built-in scenario: never a panic;
//! every packet read is counted once (delivered or dropped for one reason); both output
//! captures parse back whole, with exactly the packets written; and the threaded engine (in
//! batches of 3) gives the sequential engine's result, byte for byte.
#![no_main]

use std::io::Cursor;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plsim_control::Scenario;
use plsim_lab::Engine;
use plsim_lab::replay::PcapTaps;
use plsim_lab::run::{self, RunSpec};
use plsim_pcap::Reader;

fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(Scenario::builtin)
}

fuzz_target!(|data: &[u8]| {
    let go = |engine, batch| {
        let mut reader = Reader::from_read("fuzz", Cursor::new(data.to_vec())).ok()?;
        let spec = RunSpec {
            engine,
            batch,
            ..RunSpec::new(scenario())
        };
        let (out, taps) = run::run(&mut reader, &spec, PcapTaps::in_memory()).expect("it runs");
        let (written, consumer, backend) = taps.finish().expect("in memory");
        let mut s = out.summary;
        s.latency_ns = Default::default();
        s.throughput = Default::default();
        Some((s, written, consumer, backend))
    };
    let Some((s, written, consumer, backend)) = go(Engine::Sequential, 1) else {
        return;
    };
    let p = &s.packets;
    assert_eq!(p.consumer_in + p.backend_in, s.input.packets, "every packet read enters");
    assert_eq!(
        p.consumer_in + p.backend_in,
        p.to_backend + p.to_consumer + p.dropped.total(),
        "every packet is delivered or dropped, once"
    );
    for (bytes, n) in [(&consumer, written.consumer), (&backend, written.backend)] {
        let mut r = Reader::from_read("out", Cursor::new(bytes.clone())).expect("a capture");
        let mut k = 0;
        while r.next_packet().is_some() {
            k += 1;
        }
        assert!(!r.truncated(), "an output capture is cut");
        assert_eq!(k, n, "an output capture holds what was written");
    }
    let threaded = go(Engine::Threaded, 3).expect("it opened once");
    assert!(
        threaded == (s, written, consumer, backend),
        "the threaded engine differs from the sequential one"
    );
});
