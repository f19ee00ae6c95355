//! Stopping early: a run asked to stop reads no more input, lets what it read through, and says
//! `interrupted`; the events still to come are not applied. A plan and a sweep stop between
//! their runs and keep what ran to its end.

use plsim_control::Scenario;
use plsim_control::scenario::{Event as Timeline, PortRange, ReuseScope};
use plsim_engine::{Engine, NoTaps};
use plsim_lab::replay::{Frames, Packet, PacketSource};
use plsim_lab::run::{self, RunSpec};
use plsim_lab::stop::Stop;
use plsim_traffic::captures::{conversations, syn_burst};

/// A source that asks `stop` to stop once it has handed out `after` packets.
struct StopAfter<'a> {
    inner: Frames<'a>,
    stop: Stop,
    after: u64,
    given: u64,
}

impl PacketSource for StopAfter<'_> {
    fn next_packet(&mut self) -> Option<Packet<'_>> {
        if self.given == self.after {
            self.stop.request();
        }
        self.given += 1;
        self.inner.next_packet()
    }
}

#[test]
fn a_run_stops_at_the_batch_it_was_reading() {
    // 100 conversations of 8 packets, one a second, and a reject after the last packet.
    let frames = conversations(100, 1_000_000_000, 1_000_000);
    let mut scenario = Scenario::builtin();
    scenario.timeline.push(Timeline::Reject {
        at: 500.0,
        endpoint: "pe-app".into(),
    });
    let whole = {
        let spec = RunSpec::new(&scenario);
        let mut src = Frames::new(&frames);
        run::run(&mut src, &spec, NoTaps).unwrap().0.summary
    };
    assert!(!whole.interrupted);
    assert_eq!(whole.input.packets, 800);
    assert_eq!(whole.connections[0].state, "Rejected");
    for (engine, batch, read) in [
        (Engine::Threaded, 64, 128),
        (Engine::Threaded, 1, 101),
        (Engine::Sequential, 64, 101),
    ] {
        let stop = Stop::new();
        let spec = RunSpec {
            engine,
            batch,
            stop: Some(&stop),
            ..RunSpec::new(&scenario)
        };
        let mut src = StopAfter {
            inner: Frames::new(&frames),
            stop: stop.clone(),
            after: 100,
            given: 0,
        };
        let s = run::run(&mut src, &spec, NoTaps).unwrap().0.summary;
        assert!(s.interrupted, "{engine} {batch}");
        // The batch being read when the stop came is finished, nothing after it.
        assert_eq!(s.input.packets, read, "{engine} {batch}");
        let p = &s.packets;
        assert_eq!(
            p.consumer_in + p.backend_in,
            p.to_backend + p.to_consumer + p.dropped.total(),
            "every packet read is counted once"
        );
        assert_eq!(p.consumer_in + p.backend_in, read);
        // The reject after the last packet was not applied: time stopped with the input.
        assert!(s.sim_time_s < 30.0, "{}", s.sim_time_s);
    }
}

#[test]
fn a_plan_stopped_before_it_began_knows_nothing() {
    let frames = syn_burst(2_500);
    let mut s = Scenario::builtin();
    s.services[0].ports = PortRange::new(1024, 2023);
    s.services[0].reuse = ReuseScope::PerIp;
    let stop = Stop::new();
    stop.request();
    let p = plsim_lab::plan::plan(&s, false, Some(&stop), || Ok(Frames::new(&frames))).unwrap();
    assert!(p.interrupted);
    assert_eq!((p.nat_ips_needed, p.nat_ips_enough), (None, None));
    assert!(p.runs.is_empty());
    // Not stopped: 3, as the plan's own test finds.
    let p = plsim_lab::plan::plan(&s, false, None, || Ok(Frames::new(&frames))).unwrap();
    assert!(!p.interrupted);
    assert_eq!((p.nat_ips_needed, p.nat_ips_enough), (Some(3), Some(3)));
}

#[test]
fn a_stopped_sweep_keeps_only_the_points_that_ran_to_their_end() {
    use plsim_lab::sweep::{Grid, Input, Sweep};
    use plsim_lab::workload::Overrides;
    let sweep = |stop: Option<Stop>| Sweep {
        input: Input::Workload {
            flags: Overrides {
                flows: Some(200),
                ..Overrides::default()
            },
            load: Vec::new(),
        },
        grid: Grid {
            nat_ips: vec![1, 2, 3],
            ..Grid::default()
        },
        scenario: None,
        reuse: None,
        pickup: false,
        stop,
    };
    let all = sweep(None).run_all(2).unwrap();
    assert!(!all.interrupted);
    assert_eq!(all.rows.len(), 3);
    let stop = Stop::new();
    stop.request();
    let none = sweep(Some(stop)).run_all(2).unwrap();
    assert!(none.interrupted);
    assert!(none.rows.is_empty());
}
