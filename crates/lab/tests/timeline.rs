//! Control-plane event sequences with traffic: random approve, reject, remove, request,
//! create, delete, add-NAT-IP and backend up and down, at random instants, over three
//! endpoints' workloads and a handful of NAT ports. Whatever the sequence:
//!
//! * nothing reaches a backend, and nothing reaches a consumer, on a connection that is not
//!   Approved at that instant (so a Rejected connection never passes a packet again);
//! * every port is free once its flows are gone (the run goes on past every timer);
//! * every packet is counted once, and the threaded engine equals the sequential one.

use std::collections::HashMap;

use plsim_control::scenario::{Event, NatIpConfig};
use plsim_control::{ControlPlane, Effect, Scenario, secs_to_time};
use plsim_engine::{Dir, Engine, Meta, Taps};
use plsim_lab::run::{self, RunSpec};
use plsim_lab::workload::{Overrides, Workloads, specs};
use proptest::prelude::*;

/// One service with two NAT IPs of six ports each to four backends; three endpoints, each
/// with its own VLAN: `pe-a` approved at once, `pe-b` waiting for its request, `pe-c` created
/// later. Every endpoint runs 30 flows, two a second, of two seconds each.
const BASE: &str = r#"
seed = 3

[[vnets]]
name = "consumer"
subscription = "sub-consumer"
address_space = "10.0.0.0/16"

[[vnets.subnets]]
name = "endpoints"
prefix = "10.0.0.0/24"

[provider]
address_space = "10.10.0.0/16"

[[provider.subnets]]
name = "nat"
prefix = "10.10.1.0/24"

[[load_balancer.frontends]]
name = "fe"
ip = "10.10.0.4"

[[load_balancer.pools]]
name = "pool"
backends = ["10.10.2.4", "10.10.2.5", "10.10.2.6", "10.10.2.7"]

[[load_balancer.rules]]
name = "ha"
frontend = "fe"
pool = "pool"
ha_ports = true

[[services]]
name = "app"
subscription = "sub-provider"
visibility = "all"
auto_approval = ["sub-consumer"]
frontend = "fe"
nat_subnet = "nat"
nat_ips = ["dynamic", "dynamic"]
ports = "1024-1029"

[services.timers]
idle = 4
transitory = 5
fin_hold = 5
rst_hold = 1

[[endpoints]]
name = "pe-a"
subscription = "sub-consumer"
vnet = "consumer"
subnet = "endpoints"
target = "/subscriptions/sub-provider/resourceGroups/rg/providers/Microsoft.Network/privateLinkServices/app"

[endpoints.traffic]
vlan = 10

[[endpoints]]
name = "pe-b"
subscription = "sub-other"
vnet = "other"
subnet = "endpoints"
target = "/subscriptions/sub-provider/resourceGroups/rg/providers/Microsoft.Network/privateLinkServices/app"
connect = false

[endpoints.traffic]
vlan = 20

[[endpoints]]
name = "pe-c"
subscription = "sub-consumer"
vnet = "consumer"
subnet = "endpoints"
target = "/subscriptions/sub-provider/resourceGroups/rg/providers/Microsoft.Network/privateLinkServices/app"

[endpoints.traffic]
vlan = 30

[[vnets]]
name = "other"
subscription = "sub-other"
address_space = "10.0.0.0/16"

[[vnets.subnets]]
name = "endpoints"
prefix = "10.0.0.0/24"

[workload]
hosts_per_endpoint = 4
packets_per_flow = 6
bytes_per_flow = 600
flows = 30
duration = 15.0

[workload.arrival]
kind = "constant"
rate = 2.0

[workload.flow_duration]
kind = "fixed"
secs = 2.0
"#;

const ENDPOINTS: [&str; 3] = ["pe-a", "pe-b", "pe-c"];
const BACKENDS: [&str; 4] = ["10.10.2.4", "10.10.2.5", "10.10.2.6", "10.10.2.7"];

/// A random event: (half-seconds, kind, target).
fn event(half_secs: u32, kind: u8, target: usize) -> Event {
    let at = f64::from(half_secs) / 2.0;
    let endpoint = ENDPOINTS[target % 3].to_owned();
    let backend = BACKENDS[target % 4].parse().unwrap();
    match kind {
        0 => Event::Approve { at, endpoint },
        1 => Event::Reject { at, endpoint },
        2 => Event::Remove { at, endpoint },
        3 => Event::DeleteEndpoint { at, endpoint },
        4 => Event::Request { at, endpoint },
        5 => Event::BackendDown { at, backend },
        6 => Event::BackendUp { at, backend },
        _ => Event::AddNatIp {
            at,
            service: "app".into(),
            ip: NatIpConfig::Dynamic,
        },
    }
}

/// The base scenario with `pe-c` created at `create` and the events that keep to the
/// workflow's rules (those that would break one are left out, one at a time).
fn scenario(create: u32, events: &[(u32, u8, usize)]) -> Scenario {
    let mut s = Scenario::from_toml_str(BASE).unwrap();
    s.timeline.push(Event::CreateEndpoint {
        at: f64::from(create) / 2.0,
        endpoint: "pe-c".into(),
    });
    s.timeline
        .extend(events.iter().map(|&(t, k, x)| event(t, k, x)));
    // The run goes on past every timer (the lb's idle timeout is 240 s): a backend goes down
    // and up again long after the traffic, one of the two a change whatever came before.
    let b = BACKENDS[0].parse().unwrap();
    s.timeline.push(Event::BackendDown {
        at: 1_000.0,
        backend: b,
    });
    s.timeline.push(Event::BackendUp {
        at: 1_000.5,
        backend: b,
    });
    loop {
        let Err(problems) = s.validate() else {
            return s;
        };
        let bad = problems
            .0
            .iter()
            .find_map(|p| {
                let rest = p.path.strip_prefix("timeline[")?;
                rest[..rest.find(']')?].parse::<usize>().ok()
            })
            .unwrap_or_else(|| panic!("a problem outside the timeline: {problems}"));
        let fixed = match &s.timeline[bad] {
            Event::CreateEndpoint { .. } => true,
            Event::BackendDown { at, .. } | Event::BackendUp { at, .. } => *at >= 1_000.0,
            _ => false,
        };
        assert!(!fixed, "the fixed events are valid: {problems}");
        s.timeline.remove(bad);
    }
}

/// Which packets were delivered, on which connection, when.
#[derive(Default)]
struct Delivered {
    /// (ns, link, to the backend)
    packets: Vec<(u64, u32, bool)>,
    first: Option<u64>,
}

impl Taps for Delivered {
    fn consumer(&mut self, _frame: &[u8], m: &Meta) {
        self.first.get_or_insert(m.ts.as_nanos());
        if m.dir == Dir::Reverse {
            self.packets.push((m.ts.as_nanos(), m.link.0, false));
        }
    }
    fn backend(&mut self, _frame: &[u8], m: &Meta) {
        if m.dir == Dir::Forward {
            self.packets.push((m.ts.as_nanos(), m.link.0, true));
        }
    }
}

/// Per link, the instants (ns from the start) at which it became Approved (true) or stopped
/// being so (false), in order.
fn approvals(s: &Scenario) -> HashMap<u32, Vec<(u64, bool)>> {
    let mut plane = ControlPlane::new(s).unwrap();
    let mut out: HashMap<u32, Vec<(u64, bool)>> = HashMap::new();
    for l in plane.links() {
        let approved = l.state == plsim_control::ConnectionState::Approved;
        out.entry(l.id.0).or_default().push((0, approved));
    }
    let advance = plane.advance(secs_to_time(2_000.0));
    assert!(advance.errors.is_empty(), "{:?}", advance.errors);
    for (t, e) in advance.effects {
        let t = t.as_nanos();
        match e {
            Effect::LinkApproved(l) => out.entry(l.id.0).or_default().push((t, true)),
            Effect::LinkPending(l) => out.entry(l.id.0).or_default().push((t, false)),
            Effect::LinkClosed { link, .. } | Effect::LinkDeleted(link) => {
                out.entry(link.0).or_default().push((t, false))
            }
            _ => {}
        }
    }
    out
}

fn run(s: &Scenario, engine: Engine, batch: usize) -> (plsim_lab::summary::Summary, Delivered) {
    let mut specs = specs(s, &Overrides::default()).unwrap();
    for (_, w, _) in &mut specs {
        w.profile.until_secs = None;
    }
    let mut source = Workloads::new(s, specs).unwrap();
    let spec = RunSpec {
        engine,
        batch,
        ..RunSpec::new(s)
    };
    let (out, taps) = run::run(&mut source, &spec, Delivered::default()).unwrap();
    let mut summary = out.summary;
    summary.latency_ns = Default::default();
    summary.throughput = Default::default();
    (summary, taps)
}

/// The checks of one sequence (see the file's docs).
fn check(create: u32, events: &[(u32, u8, usize)]) -> Result<(), TestCaseError> {
    let s = scenario(create, events);
    let (summary, delivered) = run(&s, Engine::Sequential, 1);
    // pe-a's 30 flows at least, a dozen packets each.
    prop_assert!(summary.input.packets >= 300, "{}", summary.input.packets);
    let states = approvals(&s);
    let first = delivered.first.unwrap_or(0);
    for &(ts, link, to_backend) in &delivered.packets {
        let at = ts - first;
        let approved = states
            .get(&link)
            .and_then(|v| v.iter().rev().find(|&&(t, _)| t <= at))
            .is_some_and(|&(_, a)| a);
        prop_assert!(
            approved,
            "link {link} passed a packet {} at {} s while not Approved (changes {:?})",
            if to_backend {
                "to a backend"
            } else {
                "to a consumer"
            },
            at as f64 / 1e9,
            states.get(&link)
        );
    }
    // Every port is free once the flows are gone: the run went on past every timer.
    prop_assert!(summary.sim_time_s >= 1_000.0);
    prop_assert_eq!(summary.flows.active_end, 0);
    for n in &summary.nat_ips {
        prop_assert_eq!(n.ports_in_use_end, 0, "{}", n.ip);
    }
    let p = &summary.packets;
    prop_assert_eq!(
        p.consumer_in + p.backend_in,
        p.to_backend + p.to_consumer + p.dropped.total()
    );
    // The threaded engine equals the sequential one.
    let (threaded, again) = run(&s, Engine::Threaded, 7);
    prop_assert_eq!(&threaded, &summary);
    prop_assert_eq!(again.packets, delivered.packets);
    Ok(())
}

/// Found by the property below: two events at one instant, then a packet at that instant.
/// Only the first event was applied before the packet; pe-a's reject at 7 s came after it,
/// and its packet of 7 s reached a backend.
#[test]
fn every_event_due_goes_before_the_packet() {
    check(0, &[(14, 1, 2), (14, 1, 0)]).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_connection_passes_a_packet_unless_approved(
        create in 0u32..40,
        events in prop::collection::vec((0u32..60, 0u8..8, 0usize..12), 0..14),
    ) {
        check(create, &events)?;
    }
}
