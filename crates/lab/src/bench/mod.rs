//! `plsim bench`: builds live flows through the whole path, then times established-flow frames
//! through the engine, in memory, against a single-core NAT loop over the same frames in the
//! same order, in the same process.
//!
//! The bench can't lie: its scenario has backends enough for every flow to get a NAT port
//! (the built-in one with more backends: under per-backend reuse each backend adds 64,512
//! ports to each of the eight NAT IPs), and a run that dropped any packet says so and is not
//! a throughput figure ([`BenchReport::complete`]).
//!
//! Frames are made on the fly, never stored per flow: each is a copy of one 64-byte template
//! with its client end written in (the source rewrite with its incremental checksum update), so
//! the process holds the path's flow state and little else. The reference loop makes its frames
//! the same way.
//!
//! The timed frames go in rounds: each round pushes its share through the path, then through
//! the reference loop. A shared machine's slow minutes then hit both alike, and the ratio
//! compares like with like (on the 2-vCPU machine the README names, the reference alone varied
//! twofold between two consecutive runs).
//!
//! The module's rooms: `options` (how it runs), `sizing` (the scenario with backends enough),
//! `frames` (the frame template), `feeders` (the setup's and the timed phase's), `timed` (the
//! setup and the timed rounds through the engine), `reference` (the single-core loop), `report`
//! (what it prints), `rss` (the peak memory, from `/proc`) and `guard` (what a bench needs in
//! memory, refused when the machine has less).

mod feeders;
mod frames;
mod guard;
mod options;
mod reference;
mod report;
mod rss;
mod sizing;
mod timed;

use std::net::Ipv4Addr;

use plsim_control::Scenario;
use plsim_engine::{AsIs, Parts};

use crate::summary::Latency;

pub use frames::FRAME_LEN;
pub use options::BenchOptions;
pub use reference::Reference;
pub use report::{BenchReport, Round, StageNs, StateBytes};
pub use rss::peak_rss_bytes;
pub use sizing::{max_flows, scenario_for};
pub use timed::{BenchAddrs, BenchResult, bench};

use timed::mpps;

/// `plsim bench`: `flows` live flows on [`scenario_for`]'s scenario (its service sending PROXY
/// protocol v2 headers with `proxy_protocol`), then `packets` frames.
pub fn run_builtin(o: &BenchOptions) -> crate::Result<BenchReport> {
    let mut scenario = scenario_for(u64::from(o.flows))?;
    scenario.services[0].enable_proxy_protocol = o.proxy_protocol;
    run_on(&scenario, o)
}

/// The bench on `scenario` (its first endpoint's VNet and address; its first pool's backends).
/// A scenario that can't give every flow a port makes an incomplete report, not an error; so
/// do no flows at all (the timed frames find none). Flows that need more memory than the
/// machine has are refused before anything is built ([`Error::Memory`](crate::Error::Memory)).
pub fn run_on(scenario: &Scenario, o: &BenchOptions) -> crate::Result<BenchReport> {
    guard::check(o)?;
    let (flows, packets, batch) = (o.flows, o.packets, o.batch);
    let backends = scenario.load_balancer.pools[0].backends.len();
    let sim = crate::path::Path::build(scenario, false)?;
    let proxy_protocol = scenario.services[0].enable_proxy_protocol;
    let route = &sim.routes[0];
    let addrs = BenchAddrs {
        clients: Ipv4Addr::new(10, 1, 0, 0),
        endpoint: (route.address, 443),
        vnet: route.vnet,
    };
    // The reference's table is built before the rounds, so both run on warm, built state.
    let mut reference = (!o.no_reference).then(|| Reference::new(addrs, flows));
    let mut reference_times = Vec::new();
    let between = |from, n| {
        if let Some(r) = reference.as_mut() {
            reference_times.push(r.run(from, n));
        }
    };
    // The engine's own core: the stages on their own tables for the sequential engine, the
    // shared connection table for the threaded one. The tables take every flow without
    // growing on the packet path.
    let (res, bytes_per_flow) = match o.engine {
        plsim_engine::Engine::Sequential => {
            let (mut lb, mut snat) = (sim.lb, sim.snat);
            lb.0.reserve(flows as usize);
            snat.reserve(flows as usize);
            let parts = Parts {
                edge: sim.endpoint,
                core: (lb, snat),
                backend: AsIs,
            };
            let (res, parts) = bench(parts, addrs, o, between);
            let (lb, snat) = &parts.core;
            let live = live_flows(snat);
            let per_flow = |bytes: usize| bytes as f64 / live.max(1) as f64;
            let state = StateBytes {
                lb: per_flow(lb.0.memory_bytes()),
                snat: per_flow(snat.engines().iter().map(|e| e.memory_bytes()).sum()),
                table: 0.0,
            };
            (res, state)
        }
        plsim_engine::Engine::Threaded => {
            let mut core = crate::core::CoreStage::new(sim.lb, sim.snat);
            core.reserve(flows as usize);
            let parts = Parts {
                edge: sim.endpoint,
                core: (core,),
                backend: AsIs,
            };
            let (res, parts) = bench(parts, addrs, o, between);
            let core = &parts.core.0;
            let live = live_flows(core.snat());
            let per_flow = |bytes: usize| bytes as f64 / live.max(1) as f64;
            let (lb_part, snat_part) = crate::core::part_bytes();
            let records = core.connections();
            let parts_bytes = |part: usize| (part * records) as f64 / live.max(1) as f64;
            let state = StateBytes {
                lb: parts_bytes(lb_part) + per_flow(core.lb().0.memory_bytes()),
                snat: parts_bytes(snat_part)
                    + per_flow(core.snat().engines().iter().map(|e| e.memory_bytes()).sum()),
                table: per_flow(core.table_bytes()) - parts_bytes(lb_part) - parts_bytes(snat_part),
            };
            (res, state)
        }
    };
    let reference_mpps = reference
        .is_some()
        .then(|| mpps(packets, reference_times.iter().sum()));
    let rounds = res
        .rounds
        .iter()
        .enumerate()
        .map(|(i, &(n, path))| {
            let (path, reference) = (mpps(n, path), reference_times.get(i).map(|&d| mpps(n, d)));
            Round {
                packets: n,
                mpps: path,
                reference_mpps: reference,
                ratio: reference.map(|r| path / r),
            }
        })
        .collect();
    let per = |d: std::time::Duration| d.as_nanos() as f64 / packets as f64;
    let busy = |i: usize| res.stats.busy.get(i).copied().unwrap_or_default();
    let dropped = res.stats.dropped.total();
    let setup_dropped = res.setup.dropped.total();
    Ok(BenchReport {
        mpps: res.mpps,
        reference_mpps,
        ratio: reference_mpps.map(|r| res.mpps / r),
        rounds,
        flows,
        packets,
        backends,
        complete: dropped == 0 && setup_dropped == 0 && res.stats.to_backend == packets,
        delivered: res.stats.to_backend,
        dropped,
        setup_dropped,
        setup_per_sec: res.setup_per_sec,
        bytes_per_flow,
        peak_rss_bytes: peak_rss_bytes(),
        wall_s: res.stats.wall.as_secs_f64(),
        latency_ns: Latency::from(&res.stats.latency_ns),
        stage_ns_per_packet: StageNs {
            endpoint: per(busy(0)),
            // One stage, or the load balancer and the SNAT stage one after the other.
            core: per(busy(1) + busy(2)),
        },
        batch,
        proxy_protocol,
        proxy_headers: res.setup.injected,
    })
}

/// Live flow records of the SNAT engines (a flow of the bench has one).
fn live_flows(snat: &crate::stages::SnatStage) -> u64 {
    snat.engines().iter().map(|e| e.stats().live).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bench_that_dropped_anything_is_incomplete() {
        let o = BenchOptions {
            flows: 500,
            packets: 2_000,
            batch: 64,
            rounds: 3,
            ..BenchOptions::default()
        };
        let ok = run_on(&Scenario::builtin(), &o).unwrap();
        assert!(ok.complete);
        assert_eq!((ok.delivered, ok.dropped, ok.setup_dropped), (2_000, 0, 0));
        // One NAT IP of 10 ports to 4 backends: 40 flows get a port, 460 SYNs are refused,
        // and so are their SYN-ACKs (no flow) and ACKs (no flow at the SNAT).
        let mut tight = Scenario::builtin();
        crate::path::Overrides {
            nat_ips: Some(1),
            ports: Some(plsim_control::scenario::PortRange::new(1024, 1033)),
            ..Default::default()
        }
        .apply(&mut tight)
        .unwrap();
        let r = run_on(&tight, &o).unwrap();
        assert!(!r.complete);
        assert_eq!(r.setup_dropped, 3 * 460);
        // Round robin over 500 flows, 40 of them live: 4 frames each of the live ones.
        assert_eq!((r.delivered, r.dropped), (160, 1_840));
    }

    /// With no flow to time, the frames of the round robin find none: an incomplete report,
    /// never a panic. (The command's flags take 1 flow or more.)
    #[test]
    fn a_bench_of_no_flows_is_incomplete() {
        let o = BenchOptions {
            flows: 0,
            packets: 100,
            batch: 64,
            rounds: 2,
            ..BenchOptions::default()
        };
        let r = run_on(&Scenario::builtin(), &o).unwrap();
        assert!(!r.complete);
        assert_eq!((r.delivered, r.dropped, r.setup_dropped), (0, 100, 0));
    }
}
