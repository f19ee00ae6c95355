//! The provider side: NAT IPs come from a subnet of the provider's VNet (static or dynamic),
//! never an address that can't be a host's, a reserved one or one already used; without the
//! provider's VNet they must at least be private. Endpoints created and deleted on the
//! timeline, a replacement taking the old address.

use std::net::Ipv4Addr;

use plsim_control::scenario::{Event, NatIpConfig};
use plsim_control::{ConnectionState, ControlPlane, Effect, Problem, Scenario};
use plsim_wire::{LinkId, SimTime};

fn problems(text: &str) -> Vec<Problem> {
    Scenario::from_toml_str(text).unwrap_err().0
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The built-in scenario with the first NAT IP replaced by `first`.
fn with_first_nat_ip(first: &str) -> String {
    Scenario::builtin().to_toml().replace(
        r#"nat_ips = ["10.10.1.4","#,
        &format!(r#"nat_ips = ["{first}","#),
    )
}

#[test]
fn nat_ips_that_cant_be_refused_with_their_line() {
    let line_of = |text: &str| text.lines().position(|l| l.starts_with("nat_ips")).unwrap() + 1;
    for (first, says) in [
        ("0.0.0.0", "the unspecified address"),
        ("255.255.255.255", "the broadcast address"),
        ("224.0.0.5", "a multicast address"),
        ("127.0.0.1", "a loopback address"),
        ("8.8.8.8", "is outside subnet 10.10.1.0/24"),
        ("10.10.1.0", "is reserved in subnet 10.10.1.0/24"),
        ("10.10.1.3", "is reserved in subnet 10.10.1.0/24"),
        ("10.10.1.255", "is reserved in subnet 10.10.1.0/24"),
        ("10.10.1.5", "NAT IP 10.10.1.5 is configured twice"),
    ] {
        let text = with_first_nat_ip(first);
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{first}: {p:?}");
        // The repeat is the second configuration.
        let at = if says.contains("twice") { 1 } else { 0 };
        assert_eq!(p[0].path, format!("services[0].nat_ips[{at}]"), "{first}");
        assert_eq!(p[0].line, Some(line_of(&text)), "{first}");
        assert!(p[0].message.contains(says), "{first}: {}", p[0].message);
    }
}

#[test]
fn without_the_provider_vnet_nat_ips_must_be_private() {
    let mut s = Scenario::builtin();
    s.provider = None;
    s.services[0].nat_subnet = None;
    assert_eq!(s.validate(), Ok(()));
    s.services[0].nat_ips[0] = NatIpConfig::Static(ip("20.1.2.3"));
    let p = s.validate().unwrap_err().0;
    assert_eq!(p[0].path, "services[0].nat_ips[0]");
    assert!(
        p[0].message.contains("not a private address"),
        "{}",
        p[0].message
    );
    // The frontend is taken, whatever the subnet.
    s.services[0].nat_ips[0] = NatIpConfig::Static(ip("10.10.0.4"));
    let p = s.validate().unwrap_err().0;
    assert_eq!(
        p[0].message,
        "10.10.0.4 is already used by frontend `fe-app`"
    );
    s.services[0].nat_ips[0] = NatIpConfig::Dynamic;
    let p = s.validate().unwrap_err().0;
    assert!(
        p[0].message.contains("a dynamic NAT IP needs"),
        "{}",
        p[0].message
    );
}

#[test]
fn the_nat_subnet_must_be_a_provider_subnet() {
    let text = Scenario::builtin()
        .to_toml()
        .replace(r#"nat_subnet = "nat""#, r#"nat_subnet = "natt""#);
    let p = problems(&text);
    assert_eq!(p[0].path, "services[0].nat_subnet");
    assert_eq!(p[0].message, "no subnet `natt` in VNet `provider`");
    let text = Scenario::builtin()
        .to_toml()
        .replace("nat_subnet = \"nat\"\n", "");
    let p = problems(&text);
    assert_eq!(p[0].path, "services[0].nat_subnet");
    assert!(
        p[0].message.starts_with("set nat_subnet"),
        "{}",
        p[0].message
    );
}

#[test]
fn dynamic_nat_ips_take_the_lowest_free_addresses() {
    let mut s = Scenario::builtin();
    s.services[0].nat_ips = vec![
        NatIpConfig::Static(ip("10.10.1.5")),
        NatIpConfig::Dynamic,
        NatIpConfig::Dynamic,
    ];
    let text = s.to_toml();
    assert!(
        text.contains(r#"nat_ips = ["10.10.1.5", "dynamic", "dynamic"]"#),
        "{text}"
    );
    assert_eq!(Scenario::from_toml_str(&text), Ok(s.clone()));
    let p = ControlPlane::new(&s).unwrap();
    assert_eq!(
        p.service("app").unwrap().nat_ips,
        [ip("10.10.1.5"), ip("10.10.1.4"), ip("10.10.1.6")]
    );
    // A static NAT IP named after a dynamic one, in the same service, is set aside for it.
    s.services[0].nat_ips = vec![NatIpConfig::Dynamic, NatIpConfig::Static(ip("10.10.1.4"))];
    let p = ControlPlane::new(&s).unwrap();
    assert_eq!(
        p.service("app").unwrap().nat_ips,
        [ip("10.10.1.5"), ip("10.10.1.4")]
    );
    // So is one a later `add-nat-ip` event names: the event finds it free.
    s.services[0].nat_ips = vec![NatIpConfig::Dynamic];
    s.timeline.push(Event::AddNatIp {
        at: 5.0,
        service: "app".into(),
        ip: NatIpConfig::Static(ip("10.10.1.4")),
    });
    assert_eq!(s.validate(), Ok(()));
    let mut p = ControlPlane::new(&s).unwrap();
    assert_eq!(p.service("app").unwrap().nat_ips, [ip("10.10.1.5")]);
    assert!(p.advance(SimTime::from_secs(5)).errors.is_empty());
    assert_eq!(
        p.service("app").unwrap().nat_ips,
        [ip("10.10.1.5"), ip("10.10.1.4")]
    );
    s.timeline.clear();
    // A /29 has three usable addresses: a fourth dynamic NAT IP finds none.
    s.provider.as_mut().unwrap().subnets[1].prefix = "10.10.1.0/29".parse().unwrap();
    s.services[0].nat_ips = vec![NatIpConfig::Dynamic; 4];
    let p = s.validate().unwrap_err().0;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "services[0].nat_ips[3]");
    assert_eq!(p[0].message, "subnet 10.10.1.0/29 has no free address left");
}

fn created_later() -> Scenario {
    let mut s = Scenario::builtin();
    let mut replacement = s.endpoints[0].clone();
    replacement.name = "pe-app-2".into();
    replacement.nic_name = Some("pe-app-2-nic".into());
    s.endpoints.push(replacement);
    s.timeline = vec![
        Event::Reject {
            at: 10.0,
            endpoint: "pe-app".into(),
        },
        Event::DeleteEndpoint {
            at: 20.0,
            endpoint: "pe-app".into(),
        },
        Event::CreateEndpoint {
            at: 30.0,
            endpoint: "pe-app-2".into(),
        },
    ];
    s
}

/// The documents: a rejected consumer removes its endpoint and creates a new one. The new one
/// takes the old address once the old one is deleted, goes through the approval rules again,
/// and gets the next link id.
#[test]
fn a_rejected_endpoint_is_replaced_at_its_own_address() {
    let s = created_later();
    assert_eq!(s.validate(), Ok(()));
    let mut p = ControlPlane::new(&s).unwrap();
    assert!(
        p.endpoint("pe-app-2").is_none(),
        "created at 30 s, not at 0"
    );
    let adv = p.advance(SimTime::MAX);
    assert!(adv.errors.is_empty(), "{:?}", adv.errors);
    let at = |t: u64| SimTime::from_secs(t);
    assert_eq!(
        adv.effects,
        vec![
            (
                at(10),
                Effect::LinkClosed {
                    link: LinkId(1),
                    service: 0,
                    state: ConnectionState::Rejected
                }
            ),
            (at(20), Effect::LinkDeleted(LinkId(1))),
            (
                at(30),
                Effect::LinkApproved(plsim_control::Link {
                    id: LinkId(2),
                    vnet: plsim_wire::VnetId(0),
                    private_ip: ip("10.0.0.4"),
                    frontend: ip("10.10.0.4"),
                    service: 0,
                    state: ConnectionState::Approved,
                })
            ),
        ]
    );
    assert_eq!(p.endpoint("pe-app-2").unwrap().private_ip, ip("10.0.0.4"));
    assert_eq!(p.endpoint("pe-app"), None);
    assert_eq!(p.deleted_endpoints()[0].name, "pe-app");
    assert_eq!(
        p.endpoint_ever("pe-app").unwrap().connection.unwrap().state,
        ConnectionState::Rejected
    );
}

#[test]
fn a_replacement_before_the_old_one_is_gone_is_refused_at_its_event() {
    let mut s = created_later();
    s.timeline.swap(1, 2); // create before the delete
    if let Event::CreateEndpoint { at, .. } = &mut s.timeline[1] {
        *at = 15.0;
    }
    let p = s.validate().unwrap_err().0;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "timeline[1].endpoint");
    assert!(
        p[0].message
            .contains("10.0.0.4 is already the address of endpoint `pe-app`"),
        "{}",
        p[0].message
    );
    // Creating an endpoint no [[endpoints]] entry defines, or one twice.
    let mut s = created_later();
    s.timeline.push(Event::CreateEndpoint {
        at: 40.0,
        endpoint: "pe-ghost".into(),
    });
    s.timeline.push(Event::CreateEndpoint {
        at: 50.0,
        endpoint: "pe-app-2".into(),
    });
    let got: Vec<(String, String)> = s
        .validate()
        .unwrap_err()
        .0
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect();
    assert_eq!(
        got[..2],
        [
            (
                "timeline[3].endpoint".to_string(),
                "no endpoint `pe-ghost` in [[endpoints]] to create".to_string()
            ),
            (
                "timeline[4].endpoint".to_string(),
                "endpoint `pe-app-2` is created twice".to_string()
            ),
        ]
    );
}

#[test]
fn traffic_tables_and_vlans() {
    let mut s = Scenario::builtin();
    s.endpoints[0].traffic = Some(plsim_control::scenario::Traffic {
        vlan: Some(4095),
        clients: vec!["10.0.1.0/24".parse().unwrap()],
        servers: vec![],
    });
    let text = s.to_toml();
    assert!(
        text.contains("[endpoints.traffic]\nvlan = 4095\nclients = [\"10.0.1.0/24\"]\n"),
        "{text}"
    );
    let p = problems(&text);
    assert_eq!(p[0].path, "endpoints[0].traffic.vlan");
    assert_eq!(p[0].message, "VLAN 4095: an 802.1Q VLAN id is 1 to 4094");
    let t = plsim_control::scenario::Traffic {
        vlan: Some(7),
        clients: vec!["10.0.1.0/24".parse().unwrap()],
        servers: vec!["192.0.2.0/24".parse().unwrap()],
    };
    assert!(t.matches(Some(7), ip("10.0.1.9"), ip("192.0.2.80")));
    assert!(!t.matches(None, ip("10.0.1.9"), ip("192.0.2.80")));
    assert!(!t.matches(Some(7), ip("10.0.2.9"), ip("192.0.2.80")));
    assert!(!t.matches(Some(7), ip("10.0.1.9"), ip("198.51.100.1")));
    assert!(plsim_control::scenario::Traffic::default().matches(
        None,
        ip("1.2.3.4"),
        ip("5.6.7.8")
    ));
}
