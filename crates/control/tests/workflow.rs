//! The approval workflow: every row of the documents' state table and every rule.

use std::net::Ipv4Addr;

use plsim_control::scenario::{Endpoint, Event, NatIpConfig, Visibility};
use plsim_control::{
    ConnectionState::*, ControlError, ControlPlane, Effect, Link, Scenario, secs_to_time,
};
use plsim_wire::LinkId;

const CONSUMER: &str = "sub-consumer";

/// The built-in scenario with the service visible to `sub-consumer` and `sub-other`, auto-approving
/// nobody, and no endpoints: each test adds its own.
fn base() -> Scenario {
    let mut s = Scenario::builtin();
    s.services[0].visibility = Visibility::Subscriptions(vec![CONSUMER.into(), "sub-other".into()]);
    s.services[0].auto_approval.clear();
    s.endpoints.clear();
    s
}

fn endpoint(name: &str, ip: Option<Ipv4Addr>) -> Endpoint {
    let mut e = Scenario::builtin().endpoints[0].clone();
    e.name = name.into();
    e.nic_name = None;
    e.private_ip = ip;
    e
}

/// A plane with one endpoint `pe` whose request is Pending.
fn pending() -> ControlPlane {
    let mut p = ControlPlane::new(&base()).unwrap();
    p.create_endpoint(&endpoint("pe", None)).unwrap();
    assert_eq!(
        p.request("pe"),
        Ok(vec![Effect::LinkPending(Link {
            state: Pending,
            ..approved_link()
        })])
    );
    assert_eq!(p.connection_state("pe"), Some(Pending));
    p
}

fn approved_link() -> Link {
    Link {
        id: LinkId(1),
        vnet: plsim_wire::VnetId(0),
        private_ip: Ipv4Addr::new(10, 0, 0, 4),
        frontend: Ipv4Addr::new(10, 10, 0, 4),
        service: 0,
        state: Approved,
    }
}

// ---- The state table: None -> Pending, Approve -> Approved, Reject -> Rejected, Remove -> Disconnected.

#[test]
fn row_none_manual_request_is_pending_and_listed_on_the_service() {
    let p = pending();
    assert_eq!(
        p.service("app").unwrap().connections,
        vec!["pe".to_string()]
    );
    assert_eq!(p.links()[0].state, Pending);
}

#[test]
fn row_approve_pending_becomes_approved_with_link_effect() {
    let mut p = pending();
    assert_eq!(
        p.approve("pe"),
        Ok(vec![Effect::LinkApproved(approved_link())])
    );
    assert_eq!(p.connection_state("pe"), Some(Approved));
    // Approving an Approved connection again changes nothing.
    assert_eq!(p.approve("pe"), Ok(vec![]));
    assert_eq!(p.connection_state("pe"), Some(Approved));
}

#[test]
fn row_reject_pending_and_approved() {
    let mut p = pending();
    assert_eq!(p.reject("pe"), Ok(vec![]));
    assert_eq!(p.connection_state("pe"), Some(Rejected));
    assert_eq!(p.reject("pe"), Ok(vec![]));
    let mut p = pending();
    p.approve("pe").unwrap();
    assert_eq!(
        p.reject("pe"),
        Ok(vec![Effect::LinkClosed {
            link: LinkId(1),
            service: 0,
            state: Rejected
        }])
    );
    assert_eq!(p.connection_state("pe"), Some(Rejected));
}

#[test]
fn row_remove_from_every_state_gives_disconnected() {
    for setup in ["pending", "approved", "rejected"] {
        let mut p = pending();
        match setup {
            "approved" => drop(p.approve("pe").unwrap()),
            "rejected" => drop(p.reject("pe").unwrap()),
            _ => {}
        }
        let effects = p.remove("pe").unwrap();
        let expect = if setup == "approved" {
            vec![Effect::LinkClosed {
                link: LinkId(1),
                service: 0,
                state: Disconnected,
            }]
        } else {
            vec![]
        };
        assert_eq!(effects, expect, "{setup}");
        assert_eq!(p.connection_state("pe"), Some(Disconnected), "{setup}");
        assert!(p.service("app").unwrap().connections.is_empty(), "{setup}");
    }
}

#[test]
fn rejected_can_never_be_approved() {
    let mut p = pending();
    p.reject("pe").unwrap();
    assert_eq!(
        p.approve("pe"),
        Err(ControlError::RejectedCannotBeApproved("pe".into()))
    );
    assert_eq!(p.connection_state("pe"), Some(Rejected));
    // Remove, then a new endpoint: that one can be approved.
    p.remove("pe").unwrap();
    assert_eq!(
        p.approve("pe"),
        Err(ControlError::ConnectionRemoved("pe".into()))
    );
    assert_eq!(
        p.request("pe"),
        Err(ControlError::AlreadyRequested {
            endpoint: "pe".into(),
            state: Disconnected
        })
    );
    p.delete_endpoint("pe").unwrap();
    p.create_endpoint(&endpoint("pe2", None)).unwrap();
    p.request("pe2").unwrap();
    let effects = p.approve("pe2").unwrap();
    assert_eq!(
        effects,
        vec![Effect::LinkApproved(Link {
            id: LinkId(2),
            ..approved_link()
        })]
    );
}

#[test]
fn disconnected_endpoint_can_only_be_deleted() {
    let mut p = pending();
    p.remove("pe").unwrap();
    assert_eq!(
        p.approve("pe"),
        Err(ControlError::ConnectionRemoved("pe".into()))
    );
    assert_eq!(
        p.reject("pe"),
        Err(ControlError::ConnectionRemoved("pe".into()))
    );
    assert_eq!(
        p.remove("pe"),
        Err(ControlError::ConnectionRemoved("pe".into()))
    );
    assert_eq!(
        p.delete_endpoint("pe"),
        Ok(vec![Effect::LinkDeleted(LinkId(1))])
    );
    assert_eq!(p.endpoint("pe"), None);
}

#[test]
fn deleting_an_approved_endpoint_closes_then_deletes_its_link() {
    let mut p = pending();
    p.approve("pe").unwrap();
    assert_eq!(
        p.delete_endpoint("pe"),
        Ok(vec![
            Effect::LinkClosed {
                link: LinkId(1),
                service: 0,
                state: Disconnected
            },
            Effect::LinkDeleted(LinkId(1))
        ])
    );
    assert!(p.service("app").unwrap().connections.is_empty());
}

// ---- Approval on request: auto-approval, RBAC, visibility.

#[test]
fn auto_approval_list_approves_at_once() {
    let mut s = base();
    s.services[0].auto_approval = vec![CONSUMER.into()];
    let mut p = ControlPlane::new(&s).unwrap();
    p.create_endpoint(&endpoint("pe", None)).unwrap();
    assert_eq!(
        p.request("pe"),
        Ok(vec![Effect::LinkApproved(approved_link())])
    );
}

#[test]
fn provider_subscription_has_rbac_rights_and_is_approved_even_with_rbac_visibility() {
    let mut s = base();
    s.services[0].visibility = Visibility::Rbac;
    s.vnets[0].subscription = "sub-provider".into();
    let mut p = ControlPlane::new(&s).unwrap();
    let mut e = endpoint("pe", None);
    e.subscription = "sub-provider".into();
    p.create_endpoint(&e).unwrap();
    assert_eq!(
        p.request("pe"),
        Ok(vec![Effect::LinkApproved(approved_link())])
    );
}

#[test]
fn invisible_subscription_is_refused_and_gets_no_connection() {
    for vis in [
        Visibility::Rbac,
        Visibility::Subscriptions(vec!["sub-other".into()]),
    ] {
        let mut s = base();
        s.services[0].visibility = vis;
        let mut p = ControlPlane::new(&s).unwrap();
        p.create_endpoint(&endpoint("pe", None)).unwrap();
        assert_eq!(
            p.request("pe"),
            Err(ControlError::NotVisible {
                service: "app".into(),
                subscription: CONSUMER.into()
            })
        );
        assert_eq!(p.connection_state("pe"), None);
        assert!(p.links().is_empty());
    }
}

#[test]
fn visibility_all_gives_pending() {
    let mut s = base();
    s.services[0].visibility = Visibility::All;
    let mut p = ControlPlane::new(&s).unwrap();
    p.create_endpoint(&endpoint("pe", None)).unwrap();
    p.request("pe").unwrap();
    assert_eq!(p.connection_state("pe"), Some(Pending));
}

#[test]
fn auto_approval_must_be_a_subset_of_visibility() {
    let mut s = base();
    s.services[0].auto_approval = vec!["sub-stranger".into()];
    assert_eq!(
        ControlPlane::new(&s).unwrap_err(),
        ControlError::AutoApprovalNotVisible("sub-stranger".into())
    );
    s.services[0].visibility = Visibility::All;
    assert!(ControlPlane::new(&s).is_ok());
    s.services[0].visibility = Visibility::Rbac;
    assert_eq!(
        ControlPlane::new(&s).unwrap_err(),
        ControlError::AutoApprovalNotVisible("sub-stranger".into())
    );
}

#[test]
fn target_by_alias_or_resource_id() {
    let p = ControlPlane::new(&base()).unwrap();
    let alias = p.service("app").unwrap().alias.clone();
    let mut p = p;
    let mut e = endpoint("by-alias", None);
    e.target = alias;
    p.create_endpoint(&e).unwrap();
    p.create_endpoint(&endpoint("by-id", None)).unwrap();
    let mut e = endpoint("nowhere", None);
    e.target =
        "app.00000000-0000-4000-8000-000000000000.westeurope.azure.privatelinkservice".into();
    assert_eq!(
        p.create_endpoint(&e),
        Err(ControlError::UnknownTarget(e.target.clone()))
    );
}

// ---- Aliases.

#[test]
fn alias_is_prefix_guid_region_suffix_deterministic_and_unique() {
    let mut s = base();
    let mut second = s.services[0].clone();
    second.name = "app2".into();
    second.alias_prefix = Some("shop".into());
    second.frontend = "fe-2".into();
    second.nat_ips = vec![Ipv4Addr::new(10, 10, 1, 20).into()];
    s.load_balancer
        .frontends
        .push(plsim_control::scenario::Frontend {
            name: "fe-2".into(),
            ip: Ipv4Addr::new(10, 10, 0, 5),
        });
    s.services.push(second);
    let p = ControlPlane::new(&s).unwrap();
    let a1 = p.service("app").unwrap().alias.clone();
    let a2 = p.service("app2").unwrap().alias.clone();
    for (a, prefix) in [(&a1, "app"), (&a2, "shop")] {
        let parts: Vec<&str> = a.split('.').collect();
        assert_eq!(parts.len(), 5, "{a}");
        assert_eq!(parts[0], prefix);
        assert_eq!(parts[1].len(), 36);
        assert_eq!(parts[1].as_bytes()[14], b'4');
        assert_eq!(&parts[2..], &["westeurope", "azure", "privatelinkservice"]);
    }
    assert_ne!(a1, a2);
    // The same seed gives the same aliases, another seed others.
    assert_eq!(
        ControlPlane::new(&s).unwrap().service("app").unwrap().alias,
        a1
    );
    s.seed += 1;
    assert_ne!(
        ControlPlane::new(&s).unwrap().service("app").unwrap().alias,
        a1
    );
}

#[test]
fn alias_is_immutable() {
    let s = base();
    let mut p = ControlPlane::new(&s).unwrap();
    let a = p.service("app").unwrap().alias.clone();
    p.add_nat_ip("app", Ipv4Addr::new(10, 10, 1, 30).into())
        .unwrap_err(); // already 8: refused
    assert_eq!(p.service("app").unwrap().alias, a);
    p.delete_service("app").unwrap();
    assert_eq!(p.service("app"), None);
}

// ---- NAT IPs.

#[test]
fn nat_ips_one_to_eight_add_only() {
    let mut s = base();
    s.services[0].nat_ips.truncate(6);
    let mut p = ControlPlane::new(&s).unwrap();
    let ip7 = Ipv4Addr::new(10, 10, 1, 10);
    assert_eq!(
        p.add_nat_ip("app", ip7.into()),
        Ok(vec![Effect::NatIpAdded {
            service: 0,
            ip: ip7
        }])
    );
    assert_eq!(
        p.add_nat_ip("app", ip7.into()),
        Err(ControlError::DuplicateNatIp(ip7))
    );
    let fe = Ipv4Addr::new(10, 10, 0, 4);
    assert_eq!(
        p.add_nat_ip("app", fe.into()),
        Err(ControlError::OutsideSubnet {
            ip: fe,
            subnet: "10.10.1.0/24".parse().unwrap()
        })
    );
    // A dynamic one takes the lowest free address of the NAT subnet.
    assert_eq!(
        p.add_nat_ip("app", NatIpConfig::Dynamic),
        Ok(vec![Effect::NatIpAdded {
            service: 0,
            ip: Ipv4Addr::new(10, 10, 1, 11)
        }])
    );
    assert_eq!(p.service("app").unwrap().nat_ips.len(), 8);
    assert_eq!(
        p.add_nat_ip("app", Ipv4Addr::new(10, 10, 1, 12).into()),
        Err(ControlError::TooManyNatIps { count: 9 })
    );
    assert_eq!(p.service("app").unwrap().nat_ips.len(), 8);
    s.services[0].nat_ips = (4..13)
        .map(|i| Ipv4Addr::new(10, 10, 1, i).into())
        .collect();
    assert_eq!(
        ControlPlane::new(&s).unwrap_err(),
        ControlError::TooManyNatIps { count: 9 }
    );
    s.services[0].nat_ips.clear();
    assert_eq!(ControlPlane::new(&s).unwrap_err(), ControlError::NoNatIp);
}

// ---- Deleting a service.

#[test]
fn service_with_pending_or_approved_connections_cannot_be_deleted() {
    let mut p = pending();
    assert_eq!(
        p.delete_service("app"),
        Err(ControlError::ServiceHasConnections {
            service: "app".into(),
            count: 1
        })
    );
    p.approve("pe").unwrap();
    assert_eq!(
        p.delete_service("app"),
        Err(ControlError::ServiceHasConnections {
            service: "app".into(),
            count: 1
        })
    );
    // "You can reject all connections and delete the service."
    p.reject("pe").unwrap();
    assert_eq!(p.delete_service("app"), Ok(vec![]));
    assert_eq!(p.connection_state("pe"), Some(Disconnected));
    assert_eq!(
        p.delete_service("app"),
        Err(ControlError::UnknownService("app".into()))
    );
}

// ---- Private IPs.

#[test]
fn static_ip_must_be_in_subnet_not_reserved_not_taken() {
    let mut p = ControlPlane::new(&base()).unwrap();
    let subnet = "10.0.0.0/24".parse().unwrap();
    let ip = Ipv4Addr::new(10, 0, 1, 4);
    assert_eq!(
        p.create_endpoint(&endpoint("a", Some(ip))),
        Err(ControlError::OutsideSubnet { ip, subnet })
    );
    for last in [0, 1, 2, 3, 255] {
        let ip = Ipv4Addr::new(10, 0, 0, last);
        assert_eq!(
            p.create_endpoint(&endpoint("a", Some(ip))),
            Err(ControlError::ReservedAddress { ip, subnet })
        );
    }
    let ip = Ipv4Addr::new(10, 0, 0, 254);
    p.create_endpoint(&endpoint("a", Some(ip))).unwrap();
    assert_eq!(
        p.create_endpoint(&endpoint("b", Some(ip))),
        Err(ControlError::AddressTaken {
            ip,
            endpoint: "a".into()
        })
    );
    assert_eq!(p.endpoint("a").unwrap().private_ip, ip);
    assert!(p.endpoint("a").unwrap().static_ip);
}

#[test]
fn dynamic_ips_are_the_lowest_free_and_never_clash() {
    let mut s = base();
    s.vnets[0].subnets[0].prefix = "10.0.0.8/29".parse().unwrap();
    let mut p = ControlPlane::new(&s).unwrap();
    p.create_endpoint(&endpoint("s", Some(Ipv4Addr::new(10, 0, 0, 13))))
        .unwrap();
    p.create_endpoint(&endpoint("d1", None)).unwrap();
    p.create_endpoint(&endpoint("d2", None)).unwrap();
    assert_eq!(
        p.endpoint("d1").unwrap().private_ip,
        Ipv4Addr::new(10, 0, 0, 12)
    );
    assert_eq!(
        p.endpoint("d2").unwrap().private_ip,
        Ipv4Addr::new(10, 0, 0, 14)
    );
    assert_eq!(
        p.create_endpoint(&endpoint("d3", None)),
        Err(ControlError::SubnetFull("10.0.0.8/29".parse().unwrap()))
    );
    p.delete_endpoint("d1").unwrap();
    p.create_endpoint(&endpoint("d3", None)).unwrap();
    assert_eq!(
        p.endpoint("d3").unwrap().private_ip,
        Ipv4Addr::new(10, 0, 0, 12)
    );
    // Default NIC names are `{name}.nic.{GUID}`.
    assert!(p.endpoint("d3").unwrap().nic_name.starts_with("d3.nic."));
    assert_eq!(
        p.endpoint("d3").unwrap().nic_name.len(),
        "d3.nic.".len() + 36
    );
}

#[test]
fn endpoint_lives_in_its_vnets_subscription() {
    let mut p = ControlPlane::new(&base()).unwrap();
    let mut e = endpoint("pe", None);
    e.subscription = "sub-other".into();
    assert_eq!(
        p.create_endpoint(&e),
        Err(ControlError::SubscriptionMismatch {
            subscription: "sub-other".into(),
            vnet_subscription: CONSUMER.into()
        })
    );
}

// ---- The timeline.

#[test]
fn timeline_effects_come_at_their_instants_in_order() {
    let mut s = base();
    s.endpoints.push(endpoint("pe", None));
    let ev = |at: f64, e: fn(f64, String) -> Event| e(at, "pe".into());
    s.timeline = vec![
        ev(30.0, |at, endpoint| Event::Reject { at, endpoint }),
        ev(10.0, |at, endpoint| Event::Approve { at, endpoint }),
        Event::BackendDown {
            at: 20.0,
            backend: Ipv4Addr::new(10, 10, 2, 5),
        },
        Event::BackendDown {
            at: 20.0,
            backend: Ipv4Addr::new(10, 10, 2, 5),
        },
    ];
    let mut p = ControlPlane::new(&s).unwrap();
    assert_eq!(p.connection_state("pe"), Some(Pending));
    let a = p.advance(secs_to_time(9.999));
    assert!(a.effects.is_empty() && a.errors.is_empty());
    let a = p.advance(secs_to_time(25.0));
    assert_eq!(
        a.effects,
        vec![
            (secs_to_time(10.0), Effect::LinkApproved(approved_link())),
            (
                secs_to_time(20.0),
                Effect::BackendDown(Ipv4Addr::new(10, 10, 2, 5))
            ),
        ]
    );
    assert!(a.errors.is_empty());
    let a = p.advance(secs_to_time(30.0));
    assert_eq!(
        a.effects,
        vec![(
            secs_to_time(30.0),
            Effect::LinkClosed {
                link: LinkId(1),
                service: 0,
                state: Rejected
            }
        )]
    );
}

#[test]
fn failing_timeline_event_is_reported_and_the_rest_applies() {
    let mut s = base();
    s.endpoints.push(endpoint("pe", None));
    s.timeline = vec![
        Event::Reject {
            at: 1.0,
            endpoint: "pe".into(),
        },
        Event::Approve {
            at: 2.0,
            endpoint: "pe".into(),
        },
        Event::BackendDown {
            at: 3.0,
            backend: Ipv4Addr::new(10, 10, 2, 4),
        },
    ];
    let mut p = ControlPlane::new(&s).unwrap();
    let a = p.advance(secs_to_time(5.0));
    assert_eq!(
        a.effects,
        vec![(
            secs_to_time(3.0),
            Effect::BackendDown(Ipv4Addr::new(10, 10, 2, 4))
        )]
    );
    assert_eq!(
        a.errors,
        vec![ControlError::Event {
            index: 1,
            action: "approve",
            source: Box::new(ControlError::RejectedCannotBeApproved("pe".into()))
        }]
    );
    assert_eq!(
        a.errors[0].to_string(),
        "timeline[1] (approve): the connection of `pe` was rejected and can't be approved: remove it and create a new endpoint"
    );
}
