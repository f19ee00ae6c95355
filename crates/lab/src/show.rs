//! The control plane as a scenario builds it (`plsim scenario show`): every service with the
//! alias a provider hands out, every endpoint with its connection, and the timeline with what
//! each event does.

use std::net::Ipv4Addr;

use plsim_control::net::Prefix;
use plsim_control::scenario::{Event, Hashing, RuleKind, Traffic, Visibility};
use plsim_control::{ControlPlane, Effect, PrivateEndpoint, Scenario, secs_to_time};
use plsim_wire::SimTime;
use serde::Serialize;

use crate::Result;

/// The whole control plane.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Show {
    /// Every service, in file order.
    pub services: Vec<ServiceView>,
    /// Every endpoint, in file order (those a `create-endpoint` event creates, as it creates
    /// them).
    pub endpoints: Vec<EndpointView>,
    /// Every event, in time order, with what it does.
    pub timeline: Vec<EventView>,
}

/// A service.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ServiceView {
    /// Its name.
    pub name: String,
    /// `prefix.{GUID}.region.azure.privatelinkservice`: what the provider hands to consumers.
    pub alias: String,
    /// Its resource id (consumers may target it too).
    pub resource_id: String,
    /// Succeeded, Updating, Deleting or Failed.
    pub provisioning_state: String,
    /// `rbac`, `all`, or the subscriptions that see it.
    pub visibility: Vec<String>,
    /// Subscriptions whose requests are approved at once.
    pub auto_approval: Vec<String>,
    /// Its load balancer frontend: name and address.
    pub frontend: String,
    /// The frontend's address.
    pub frontend_ip: Ipv4Addr,
    /// The rules on that frontend.
    pub rules: Vec<RuleView>,
    /// The backends those rules reach.
    pub backends: Vec<Ipv4Addr>,
    /// The subnet of the provider's VNet its NAT IPs come from.
    pub nat_subnet: Option<String>,
    /// Its NAT IPs, dynamic ones as assigned.
    pub nat_ips: Vec<Ipv4Addr>,
    /// Whether it starts the backend side of every connection with a PROXY protocol v2
    /// header.
    pub proxy_protocol: bool,
    /// The endpoints whose connections it lists.
    pub connections: Vec<String>,
}

/// A load-balancing rule.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleView {
    /// Its name.
    pub name: String,
    /// `all` (HA ports) or `FRONTEND_PORT->BACKEND_PORT`.
    pub ports: String,
    /// Its backend pool.
    pub pool: String,
    /// `five-tuple`, `source-ip` or `source-ip-protocol`.
    pub distribution: String,
    /// The Maglev table size, when it uses one.
    pub maglev: Option<u32>,
}

/// A private endpoint and its connection.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EndpointView {
    /// Its name.
    pub name: String,
    /// The consumer's subscription.
    pub subscription: String,
    /// Its VNet.
    pub vnet: String,
    /// Its subnet.
    pub subnet: String,
    /// Its private IP, as assigned.
    pub private_ip: Ipv4Addr,
    /// Whether the IP was given (static) or allocated (dynamic).
    pub static_ip: bool,
    /// Its NIC name.
    pub nic_name: String,
    /// The alias or resource id it targets.
    pub target: String,
    /// When it is created, in seconds (0: at the start).
    pub created_at: f64,
    /// Which packets of a replayed capture are its consumers' (`None`: what no other
    /// endpoint takes).
    pub traffic: Option<Traffic>,
    /// Its connection's state once created (`none`: no request yet).
    pub state: String,
    /// Its connection's link id (what the PROXY protocol TLV carries).
    pub link_id: Option<u32>,
}

/// A timeline event.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EventView {
    /// When, in seconds.
    pub at: f64,
    /// The action.
    pub action: String,
    /// What it names (an endpoint, a service, a backend).
    pub target: String,
    /// What it does to the data plane, in words.
    pub effects: Vec<String>,
}

/// An endpoint's traffic table in words.
fn traffic_text(t: Option<&Traffic>) -> String {
    let Some(t) = t else {
        return "what no other endpoint takes".to_owned();
    };
    let list = |v: &[Prefix]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if let Some(v) = t.vlan {
        parts.push(format!("VLAN {v}"));
    }
    if !t.clients.is_empty() {
        parts.push(format!("clients {}", list(&t.clients)));
    }
    if !t.servers.is_empty() {
        parts.push(format!("servers {}", list(&t.servers)));
    }
    if parts.is_empty() {
        "every connection".to_owned()
    } else {
        parts.join(", ")
    }
}

fn visibility(v: &Visibility) -> Vec<String> {
    match v {
        Visibility::Rbac => vec!["rbac".into()],
        Visibility::All => vec!["all".into()],
        Visibility::Subscriptions(s) => s.clone(),
    }
}

fn endpoint_view(e: &PrivateEndpoint, created_at: f64, traffic: Option<Traffic>) -> EndpointView {
    EndpointView {
        name: e.name.clone(),
        subscription: e.subscription.clone(),
        vnet: e.vnet.clone(),
        subnet: e.subnet.clone(),
        private_ip: e.private_ip,
        static_ip: e.static_ip,
        nic_name: e.nic_name.clone(),
        target: e.target.clone(),
        created_at,
        traffic,
        state: e
            .connection
            .map_or_else(|| "none".to_owned(), |c| c.state.to_string()),
        link_id: e.connection.map(|c| c.link.0),
    }
}

fn effect_text(e: &Effect) -> String {
    match e {
        Effect::LinkApproved(l) => format!(
            "link {} Approved: endpoint {} (VNet {}) to frontend {}",
            l.id.0, l.private_ip, l.vnet, l.frontend
        ),
        Effect::LinkPending(l) => format!(
            "link {} Pending: endpoint {} (VNet {}) passes nothing yet",
            l.id.0, l.private_ip, l.vnet
        ),
        Effect::LinkClosed { link, state, .. } => {
            format!("link {} {state}: its packets stop, its flows end", link.0)
        }
        Effect::LinkDeleted(link) => format!("link {} deleted: its address is free", link.0),
        Effect::BackendDown(ip) => format!("backend {ip} down"),
        Effect::BackendUp(ip) => format!("backend {ip} up"),
        Effect::NatIpAdded { ip, .. } => format!("NAT IP {ip} added"),
    }
}

fn target(ev: &Event) -> String {
    match ev {
        Event::Request { endpoint, .. }
        | Event::Approve { endpoint, .. }
        | Event::Reject { endpoint, .. }
        | Event::Remove { endpoint, .. }
        | Event::CreateEndpoint { endpoint, .. }
        | Event::DeleteEndpoint { endpoint, .. } => endpoint.clone(),
        Event::DeleteService { service, .. } => service.clone(),
        Event::BackendDown { backend, .. } | Event::BackendUp { backend, .. } => {
            backend.to_string()
        }
        Event::AddNatIp { service, ip, .. } => format!("{service} {ip}"),
    }
}

/// The control plane of a (valid) scenario: its services and endpoints as built at time zero
/// (endpoints created later as they are created), and its timeline with the effects of each
/// event.
pub fn show(scenario: &Scenario) -> Result<Show> {
    let plane = ControlPlane::new(scenario)?;
    let lbs = &scenario.load_balancer;
    let mut services = Vec::new();
    for (i, s) in scenario.services.iter().enumerate() {
        let Some(p) = plane.service_at(i) else {
            continue;
        };
        let rules: Vec<&plsim_control::scenario::Rule> = lbs
            .rules
            .iter()
            .filter(|r| r.frontend == s.frontend)
            .collect();
        let mut backends: Vec<Ipv4Addr> = rules
            .iter()
            .flat_map(|r| lbs.pools.iter().filter(move |pool| pool.name == r.pool))
            .flat_map(|pool| pool.backends.iter().copied())
            .collect();
        backends.dedup();
        services.push(ServiceView {
            name: p.name.clone(),
            alias: p.alias.clone(),
            resource_id: p.resource_id.clone(),
            provisioning_state: format!("{:?}", p.provisioning_state),
            visibility: visibility(&p.visibility),
            auto_approval: p.auto_approval.clone(),
            frontend: p.frontend.clone(),
            frontend_ip: p.frontend_ip,
            rules: rules
                .iter()
                .map(|r| RuleView {
                    name: r.name.clone(),
                    ports: match r.kind {
                        RuleKind::HaPorts => "all".to_owned(),
                        RuleKind::Port {
                            frontend_port,
                            backend_port,
                        } => format!("{frontend_port}->{backend_port}"),
                    },
                    pool: r.pool.clone(),
                    distribution: serde_json::to_value(r.distribution)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    maglev: match r.hashing {
                        Hashing::Plain => None,
                        Hashing::Maglev { table_size } => Some(table_size),
                    },
                })
                .collect(),
            backends,
            nat_subnet: s.nat_subnet.clone(),
            nat_ips: p.nat_ips.clone(),
            proxy_protocol: s.enable_proxy_protocol,
            connections: p.connections.clone(),
        });
    }
    // The timeline, event by event, for its effects and the endpoints it creates.
    let mut later = plane.clone();
    let mut timeline = Vec::new();
    let mut events: Vec<(SimTime, usize, &Event)> = scenario
        .timeline
        .iter()
        .enumerate()
        .map(|(i, e)| (secs_to_time(e.at()), i, e))
        .collect();
    events.sort_by_key(|&(t, i, _)| (t, i));
    let mut created = Vec::new();
    let traffic_of = |name: &str| {
        scenario
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.traffic.clone())
    };
    for (_, _, ev) in events {
        let effects = match later.apply(ev) {
            Ok(effects) => effects.iter().map(effect_text).collect(),
            Err(e) => vec![format!("refused: {e}")],
        };
        if let Event::CreateEndpoint { endpoint, at } = ev
            && let Some(e) = later.endpoint(endpoint)
        {
            created.push(endpoint_view(e, *at, traffic_of(endpoint)));
        }
        timeline.push(EventView {
            at: ev.at(),
            action: ev.action().to_owned(),
            target: target(ev),
            effects,
        });
    }
    let endpoints = scenario
        .endpoints
        .iter()
        .filter_map(|e| match plane.endpoint(&e.name) {
            Some(pe) => Some(endpoint_view(pe, 0.0, e.traffic.clone())),
            None => created.iter().find(|c| c.name == e.name).cloned(),
        })
        .collect();
    Ok(Show {
        services,
        endpoints,
        timeline,
    })
}

/// The control plane in words.
pub fn text(s: &Show) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for svc in &s.services {
        let _ = writeln!(o, "service {} ({})", svc.name, svc.provisioning_state);
        let _ = writeln!(o, "  alias           {}", svc.alias);
        let _ = writeln!(o, "  resource id     {}", svc.resource_id);
        let _ = writeln!(o, "  visibility      {}", svc.visibility.join(", "));
        let _ = writeln!(
            o,
            "  auto-approval   {}",
            if svc.auto_approval.is_empty() {
                "none".to_owned()
            } else {
                svc.auto_approval.join(", ")
            }
        );
        let _ = writeln!(o, "  frontend        {} {}", svc.frontend, svc.frontend_ip);
        for r in &svc.rules {
            let _ = writeln!(
                o,
                "  rule            {}: ports {} to pool {} ({}{})",
                r.name,
                r.ports,
                r.pool,
                r.distribution,
                r.maglev.map_or(String::new(), |m| format!(", Maglev {m}"))
            );
        }
        let list = |v: &[Ipv4Addr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(o, "  backends        {}", list(&svc.backends));
        let _ = writeln!(
            o,
            "  NAT IPs         {}{}",
            list(&svc.nat_ips),
            svc.nat_subnet
                .as_ref()
                .map_or(String::new(), |n| format!(" (subnet {n})"))
        );
        let _ = writeln!(
            o,
            "  PROXY protocol  {}",
            if svc.proxy_protocol { "v2" } else { "off" }
        );
        let _ = writeln!(o, "  connections     {}", svc.connections.join(", "));
    }
    for e in &s.endpoints {
        let _ = writeln!(
            o,
            "endpoint {}{}",
            e.name,
            if e.created_at > 0.0 {
                format!(" (created at {} s)", e.created_at)
            } else {
                String::new()
            }
        );
        let _ = writeln!(o, "  subscription    {}", e.subscription);
        let _ = writeln!(o, "  VNet, subnet    {}, {}", e.vnet, e.subnet);
        let _ = writeln!(
            o,
            "  private IP      {} ({})",
            e.private_ip,
            if e.static_ip { "static" } else { "dynamic" }
        );
        let _ = writeln!(o, "  NIC             {}", e.nic_name);
        let _ = writeln!(o, "  target          {}", e.target);
        let _ = writeln!(o, "  traffic         {}", traffic_text(e.traffic.as_ref()));
        let _ = writeln!(
            o,
            "  connection      {}{}",
            e.state,
            e.link_id
                .map_or(String::new(), |l| format!(", link id {l}"))
        );
    }
    if !s.timeline.is_empty() {
        let _ = writeln!(o, "timeline");
        for ev in &s.timeline {
            let _ = writeln!(o, "  at {} s  {} {}", ev.at, ev.action, ev.target);
            for e in &ev.effects {
                let _ = writeln!(o, "            {e}");
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_scenario_shows_its_alias_connection_and_nat_ips() {
        let s = show(&Scenario::builtin()).unwrap();
        assert_eq!(s.services.len(), 1);
        let svc = &s.services[0];
        assert!(svc.alias.starts_with("app."), "{}", svc.alias);
        assert!(svc.alias.ends_with(".westeurope.azure.privatelinkservice"));
        assert_eq!(svc.nat_ips.len(), 8);
        assert_eq!(svc.rules[0].ports, "all");
        assert_eq!(svc.connections, ["pe-app"]);
        assert_eq!(s.endpoints[0].state, "Approved");
        assert_eq!(s.endpoints[0].link_id, Some(1));
        assert!(s.timeline.is_empty());
        let t = text(&s);
        assert!(
            t.contains(&format!("  alias           {}\n", svc.alias)),
            "{t}"
        );
        assert!(t.contains("  connection      Approved, link id 1\n"), "{t}");
    }
}
