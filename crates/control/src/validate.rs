//! Validation of scenarios: every problem, with its place in the file.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use plsim_wire::SimTime;

use crate::net::Prefix;
use crate::plane::{ControlError, ControlPlane, Path, Seg};
use crate::scenario::{Event, Hashing, RuleKind, Scenario};

/// One problem of a scenario: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The TOML path of the field, like `services[0].nat_ips` (empty: the whole file).
    pub path: String,
    /// The 1-based line in the file, when the problem came from a file and the place is in it.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (false, Some(l)) => write!(f, "line {l}: {}: {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(l)) => write!(f, "line {l}: {}", self.message),
            (true, None) => f.write_str(&self.message),
        }
    }
}

/// Every problem of a scenario, in file order of discovery. `Display` prints one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

pub(crate) fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Name(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

struct Collector {
    found: Vec<(Path, String)>,
}

impl Collector {
    fn at(&mut self, path: &[Seg], message: impl Into<String>) {
        self.found.push((path.to_vec(), message.into()));
    }
}

fn k(k: &'static str) -> Seg {
    Seg::Key(k)
}
fn ix(i: usize) -> Seg {
    Seg::Index(i)
}

/// Every problem of `s`, each with its path (lines are filled in by the caller that has the text).
pub(crate) fn problems(s: &Scenario) -> Vec<(Path, String)> {
    let mut c = Collector { found: Vec::new() };
    check_vnets(s, &mut c);
    check_load_balancer(s, &mut c);
    check_nat_settings(s, &mut c);
    if let Some(w) = &s.workload {
        check_workload(&[k("workload")], w, &mut c);
    }
    check_endpoints(s, &mut c);
    for (i, ev) in s.timeline.iter().enumerate() {
        let at = ev.at();
        if !at.is_finite() || at < 0.0 {
            c.at(
                &[k("timeline"), ix(i), k("at")],
                format!("{at} is not a time: seconds, 0 or more"),
            );
        }
    }
    // The workflow rules: build the control plane and run the timeline on it.
    let mut broken: HashSet<String> = HashSet::new();
    let mut plane = ControlPlane::build(s, &mut |path, err| {
        match (&path[..], &err) {
            ([Seg::Key("services"), Seg::Index(i), ..], _) => {
                broken.insert(s.services[*i].name.clone());
            }
            ([Seg::Key("endpoints"), Seg::Index(i), ..], _) => {
                broken.insert(s.endpoints[*i].name.clone());
            }
            _ => {}
        }
        // A target naming a service that is itself broken was reported there.
        if let ControlError::UnknownTarget(t) = &err
            && s.services.iter().any(|x| &x.resource_id() == t)
        {
            return; // (the endpoint is marked broken above)
        }
        c.found.push((path, err.to_string()));
    });
    for err in plane.advance(SimTime::MAX).errors {
        let ControlError::Event { index, source, .. } = err else {
            continue;
        };
        let ev = &s.timeline[index];
        let (field, name) = match ev {
            Event::Request { endpoint, .. }
            | Event::Approve { endpoint, .. }
            | Event::Reject { endpoint, .. }
            | Event::Remove { endpoint, .. }
            | Event::DeleteEndpoint { endpoint, .. } => ("endpoint", Some(endpoint)),
            Event::CreateEndpoint { .. } => ("endpoint", None),
            Event::DeleteService { service, .. } => ("service", Some(service)),
            Event::AddNatIp { service, .. } => match *source {
                ControlError::UnknownService(_) => ("service", Some(service)),
                _ => ("ip", None),
            },
            Event::BackendDown { .. } | Event::BackendUp { .. } => ("backend", None),
        };
        if name.is_some_and(|n| broken.contains(n)) {
            continue; // already reported where it is defined
        }
        c.at(
            &[k("timeline"), ix(index), k(field)],
            format!("at {}s, {}: {source}", ev.at(), ev.action()),
        );
    }
    c.found
}

fn check_vnets(s: &Scenario, c: &mut Collector) {
    let mut names = HashSet::new();
    for (i, v) in s.vnets.iter().enumerate() {
        let here = [k("vnets"), ix(i)];
        if let Some(p) = crate::alias::name_problem(&v.name, true) {
            c.at(&[k("vnets"), ix(i), k("name")], p);
        } else if !names.insert(v.name.as_str()) {
            c.at(
                &[k("vnets"), ix(i), k("name")],
                format!("VNet `{}` is defined twice", v.name),
            );
        }
        if v.subscription.is_empty() {
            c.at(
                &[here[0].clone(), here[1].clone(), k("subscription")],
                "the subscription is empty",
            );
        }
        check_subnets(&here, &v.name, &v.address_space, &v.subnets, c);
    }
    if let Some(p) = &s.provider {
        check_subnets(&[k("provider")], &p.name, &p.address_space, &p.subnets, c);
    }
}

/// The subnets of a VNet: unique names, inside the address space, /29 or larger, no overlap.
fn check_subnets(
    vnet_path: &[Seg],
    vnet: &str,
    space: &crate::net::Prefix,
    subnets: &[crate::scenario::Subnet],
    c: &mut Collector,
) {
    let mut sub_names = HashSet::new();
    let mut earlier = EarlierPrefixes::default();
    for (j, sn) in subnets.iter().enumerate() {
        let at = |f| {
            let mut p = vnet_path.to_vec();
            p.extend([k("subnets"), ix(j), k(f)]);
            p
        };
        if !sub_names.insert(sn.name.as_str()) {
            c.at(
                &at("name"),
                format!("subnet `{}` is defined twice in VNet `{vnet}`", sn.name),
            );
        }
        if !space.covers(&sn.prefix) {
            c.at(
                &at("prefix"),
                format!("{} is not inside the address space {space}", sn.prefix),
            );
        } else if sn.prefix.prefix_len() > 29 {
            c.at(
                &at("prefix"),
                format!("{} is too small: the smallest subnet is a /29", sn.prefix),
            );
        } else if let Some(o) = earlier.overlapping(&sn.prefix).map(|i| &subnets[i]) {
            c.at(
                &at("prefix"),
                format!("{} overlaps subnet `{}` ({})", sn.prefix, o.name, o.prefix),
            );
        }
        earlier.add(sn.prefix, j);
    }
}

/// The prefixes seen so far, to find one that overlaps a new one in a few lookups: one that
/// covers it (one of the 33 that could: the first of them in the file), else one inside it (the
/// lowest). Either way a subnet it overlaps; the first in the file when only one does.
#[derive(Default)]
struct EarlierPrefixes {
    /// Each prefix's first index, by (network, length); a map in address order.
    first: BTreeMap<(u32, u8), usize>,
}

impl EarlierPrefixes {
    fn add(&mut self, p: Prefix, i: usize) {
        let key = (u32::from(p.network()), p.prefix_len());
        self.first.entry(key).or_insert(i);
    }

    /// The index of an earlier prefix that overlaps `p`.
    fn overlapping(&self, p: &Prefix) -> Option<usize> {
        let net = u32::from(p.network());
        let covering = (0..=p.prefix_len())
            .filter_map(|len| {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                self.first.get(&(net & mask, len)).copied()
            })
            .min();
        covering.or_else(|| {
            // Nothing that starts inside `p` can be larger than `p`: these are all inside.
            let last = u32::from(p.last());
            self.first
                .range((net, p.prefix_len())..=(last, 32))
                .next()
                .map(|(_, &i)| i)
        })
    }
}

fn check_load_balancer(s: &Scenario, c: &mut Collector) {
    let lb = &s.load_balancer;
    let base = k("load_balancer");
    if lb.frontends.is_empty() {
        c.at(
            &[base.clone(), k("frontends")],
            "the load balancer needs at least one frontend",
        );
    }
    let (mut names, mut ips) = (HashSet::new(), HashSet::new());
    for (i, f) in lb.frontends.iter().enumerate() {
        let at = |x| [k("load_balancer"), k("frontends"), ix(i), k(x)];
        if !names.insert(f.name.as_str()) {
            c.at(
                &at("name"),
                format!("frontend `{}` is defined twice", f.name),
            );
        }
        if !ips.insert(f.ip) {
            c.at(
                &at("ip"),
                format!("{} is the address of another frontend", f.ip),
            );
        }
    }
    let mut pools = HashSet::new();
    for (i, p) in lb.pools.iter().enumerate() {
        if !pools.insert(p.name.as_str()) {
            c.at(
                &[base.clone(), k("pools"), ix(i), k("name")],
                format!("pool `{}` is defined twice", p.name),
            );
        }
        let mut seen = HashSet::new();
        for (j, b) in p.backends.iter().enumerate() {
            let at = [k("load_balancer"), k("pools"), ix(i), k("backends"), ix(j)];
            if !seen.insert(*b) {
                c.at(&at, format!("backend {b} is twice in the pool"));
            } else if ips.contains(b) {
                c.at(&at, format!("backend {b} is a frontend's address"));
            }
        }
    }
    for (i, r) in lb.rules.iter().enumerate() {
        let at = |x| [k("load_balancer"), k("rules"), ix(i), k(x)];
        if lb.rules[..i].iter().any(|o| o.name == r.name) {
            c.at(&at("name"), format!("rule `{}` is defined twice", r.name));
        }
        if !lb.frontends.iter().any(|f| f.name == r.frontend) {
            c.at(&at("frontend"), format!("no frontend `{}`", r.frontend));
        }
        if !lb.pools.iter().any(|p| p.name == r.pool) {
            c.at(&at("pool"), format!("no pool `{}`", r.pool));
        }
        if let RuleKind::Port {
            frontend_port,
            backend_port,
        } = r.kind
        {
            if frontend_port == 0 {
                c.at(&at("frontend_port"), "port 0 is not a port");
            } else if backend_port == 0 {
                c.at(&at("backend_port"), "port 0 is not a port");
            }
        }
        let clash = lb.rules[..i].iter().find(|o| {
            o.frontend == r.frontend
                && match (o.kind, r.kind) {
                    (
                        RuleKind::Port {
                            frontend_port: a, ..
                        },
                        RuleKind::Port {
                            frontend_port: b, ..
                        },
                    ) => a == b,
                    _ => true, // an HA-ports rule matches every port
                }
        });
        if let Some(o) = clash {
            let field = match r.kind {
                RuleKind::HaPorts => "ha_ports",
                RuleKind::Port { .. } => "frontend_port",
            };
            c.at(
                &at(field),
                format!(
                    "rule `{}` already matches these ports of frontend `{}`",
                    o.name, r.frontend
                ),
            );
        }
        if let Hashing::Maglev { table_size } = r.hashing
            && let Err(e) = Hashing::maglev(table_size)
        {
            c.at(&at("maglev"), e.to_string());
        }
    }
}

fn check_nat_settings(s: &Scenario, c: &mut Collector) {
    for (i, svc) in s.services.iter().enumerate() {
        if let Err(e) = svc.allocator.check(svc.ports) {
            c.at(&[k("services"), ix(i), k("allocator")], e.to_string());
        }
        if let Err(e) = svc.timers.validate_azure() {
            let field = match e {
                plsim_snat::ConfigError::AzureTransitory(_) => "transitory",
                _ => "idle",
            };
            c.at(
                &[k("services"), ix(i), k("timers"), k(field)],
                e.to_string(),
            );
        }
    }
}

fn check_workload(base: &[Seg], w: &crate::scenario::Profile, c: &mut Collector) {
    let at = |x: &[&'static str]| {
        let mut p = base.to_vec();
        p.extend(x.iter().map(|&s| k(s)));
        p
    };
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if w.hosts == 0 {
        c.at(
            &at(&["hosts_per_endpoint"]),
            "at least one host per endpoint",
        );
    }
    if let Err(e) = w.arrivals.validate() {
        c.at(&at(&["arrival", "rate"]), e.to_string());
    }
    if let Err(e) = w.flow_duration.validate() {
        c.at(&at(&["flow_duration"]), e.to_string());
    }
    if w.packets_per_flow == 0 {
        c.at(&at(&["packets_per_flow"]), "at least one packet per flow");
    }
    match (w.flows, w.until_secs) {
        (None, None) => c.at(
            base,
            "set `flows`, `duration` or both: when the workload stops",
        ),
        (Some(0), _) => c.at(&at(&["flows"]), "at least one flow"),
        (_, Some(d)) if !positive(d) => c.at(
            &at(&["duration"]),
            format!("{d}: must be a positive number of seconds"),
        ),
        _ => {}
    }
}

/// What the endpoints carry beside the control plane's rules: their traffic tables and
/// workloads, and the events that create them.
fn check_endpoints(s: &Scenario, c: &mut Collector) {
    for (i, e) in s.endpoints.iter().enumerate() {
        if let Some(v) = e.traffic.as_ref().and_then(|t| t.vlan)
            && !(1..=4094).contains(&v)
        {
            c.at(
                &[k("endpoints"), ix(i), k("traffic"), k("vlan")],
                format!("VLAN {v}: an 802.1Q VLAN id is 1 to 4094"),
            );
        }
        if let Some(w) = &e.workload {
            check_workload(&[k("endpoints"), ix(i), k("workload")], w, c);
        }
    }
    let mut created = HashSet::new();
    let defined: HashSet<&str> = s.endpoints.iter().map(|e| e.name.as_str()).collect();
    for (i, ev) in s.timeline.iter().enumerate() {
        if let Event::CreateEndpoint { endpoint, .. } = ev {
            let at = [k("timeline"), ix(i), k("endpoint")];
            if !defined.contains(endpoint.as_str()) {
                c.at(
                    &at,
                    format!("no endpoint `{endpoint}` in [[endpoints]] to create"),
                );
            } else if !created.insert(endpoint.as_str()) {
                c.at(&at, format!("endpoint `{endpoint}` is created twice"));
            }
        }
    }
}
