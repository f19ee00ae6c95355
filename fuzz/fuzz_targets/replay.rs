//! Any bytes as a capture, through the whole path of the built-in scenario: never a panic;
//! every packet read is counted once (delivered or dropped for one reason); both output
//! captures parse back whole, with exactly the packets written; and the threaded engine (in
//! batches of 3) gives the sequential engine's result, byte for byte. With the service sending
//! PROXY protocol v2 headers (which parse the capture's TCP options for SACK blocks), the
//! consumer side and every count but the headers are those of the run without them, and the
//! threaded engine still gives the sequential result.
#![no_main]

use std::io::Cursor;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plsim_control::Scenario;
use plsim_lab::Engine;
use plsim_lab::replay::PcapTaps;
use plsim_lab::run::{self, RunSpec};
use plsim_pcap::Reader;

fn scenario(proxy: bool) -> &'static Scenario {
    static S: OnceLock<[Scenario; 2]> = OnceLock::new();
    &S.get_or_init(|| {
        let mut proxied = Scenario::builtin();
        proxied.services[0].enable_proxy_protocol = true;
        [Scenario::builtin(), proxied]
    })[usize::from(proxy)]
}

fuzz_target!(|data: &[u8]| {
    let go = |engine, batch, proxy| {
        let mut reader = Reader::from_read("fuzz", Cursor::new(data.to_vec())).ok()?;
        let spec = RunSpec {
            engine,
            batch,
            ..RunSpec::new(scenario(proxy))
        };
        let (out, taps) = run::run(&mut reader, &spec, PcapTaps::in_memory()).expect("it runs");
        let (written, consumer, backend) = taps.finish().expect("in memory");
        let mut s = out.summary;
        s.latency_ns = Default::default();
        s.throughput = Default::default();
        Some((s, written, consumer, backend))
    };
    let Some((s, written, consumer, backend)) = go(Engine::Sequential, 1, false) else {
        return;
    };
    let p = &s.packets;
    assert_eq!(
        p.consumer_in + p.backend_in,
        s.input.packets,
        "every packet read enters"
    );
    assert_eq!(
        p.consumer_in + p.backend_in,
        p.to_backend + p.to_consumer + p.dropped.total(),
        "every packet is delivered or dropped, once"
    );
    for (bytes, n) in [(&consumer, written.consumer), (&backend, written.backend)] {
        let mut r = Reader::from_read("out", Cursor::new(bytes.clone())).expect("a capture");
        let mut k = 0;
        while r.next_frame().is_some() {
            k += 1;
        }
        assert!(!r.truncated(), "an output capture is cut");
        assert_eq!(k, n, "an output capture holds what was written");
    }
    let threaded = go(Engine::Threaded, 3, false).expect("it opened once");
    assert!(
        threaded == (s.clone(), written, consumer.clone(), backend),
        "the threaded engine differs from the sequential one"
    );
    let (mut ps, pwritten, pconsumer, pbackend) = go(Engine::Sequential, 1, true).expect("again");
    assert!(
        pconsumer == consumer,
        "PROXY headers changed the consumer side"
    );
    assert!(ps.packets.proxy_headers <= ps.packets.to_backend);
    assert_eq!(pwritten.consumer, written.consumer);
    assert_eq!(pwritten.backend, written.backend + ps.packets.proxy_headers);
    let proxied = go(Engine::Threaded, 3, true).expect("again");
    assert!(
        proxied == (ps.clone(), pwritten, pconsumer, pbackend),
        "with PROXY headers, the threaded engine differs from the sequential one"
    );
    ps.packets.proxy_headers = 0;
    assert!(ps == s, "PROXY headers changed a count");
});
