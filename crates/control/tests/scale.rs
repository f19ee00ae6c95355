//! A scenario of thousands of endpoints and NAT IPs checks in time linear in them: each name,
//! target and address in use is one lookup, and the lowest free address of a subnet is found
//! past the addresses taken in one step. (It was cubic in dynamic endpoints: every candidate
//! address tried against every endpoint, for every endpoint.)

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use plsim_control::scenario::{Endpoint, Frontend, NatIpConfig, Service, Subnet};
use plsim_control::{ControlPlane, Scenario};

/// The built-in scenario with `endpoints` endpoints of dynamic address in a /10 of a /8
/// consumer VNet (one static one, the built-in `pe-app`, at 10.64.0.10 among them), and
/// `services` more services of eight dynamic NAT IPs each from a /14 of a /8 provider VNet.
fn scenario(endpoints: usize, services: usize) -> Scenario {
    let mut s = Scenario::builtin();
    let p = |t: &str| t.parse().unwrap();
    let vnet = &mut s.vnets[0];
    vnet.address_space = p("10.0.0.0/8");
    vnet.subnets.push(Subnet {
        name: "wide".into(),
        prefix: p("10.64.0.0/10"),
    });
    let provider = s.provider.as_mut().unwrap();
    provider.address_space = p("172.16.0.0/12");
    provider.subnets = vec![Subnet {
        name: "nat".into(),
        prefix: p("172.16.0.0/14"),
    }];
    let app = &mut s.services[0];
    app.nat_ips = vec![NatIpConfig::Dynamic; 8];
    let template = s.endpoints[0].clone();
    s.endpoints[0].subnet = "wide".into();
    s.endpoints[0].private_ip = Some(Ipv4Addr::new(10, 64, 0, 10));
    for i in 0..services {
        let name = format!("svc-{i}");
        s.load_balancer.frontends.push(Frontend {
            name: format!("fe-{i}"),
            ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 0, 0)) + i as u32),
        });
        s.services.push(Service {
            name,
            frontend: format!("fe-{i}"),
            ..s.services[0].clone()
        });
    }
    for i in 0..endpoints {
        s.endpoints.push(Endpoint {
            name: format!("pe-{i}"),
            subnet: "wide".into(),
            private_ip: None,
            nic_name: None,
            ..template.clone()
        });
    }
    s
}

/// The shortest of three checks of `text`.
fn check_time(text: &str) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let s = Scenario::from_toml_str(text).expect("a valid scenario");
            assert!(s.endpoints.len() > 1);
            t.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn dynamic_addresses_are_the_lowest_free_ones_in_order() {
    let s = scenario(20, 3);
    let plane = ControlPlane::new(&s).unwrap();
    // The static endpoint first (10.64.0.10), then the dynamic ones from the fifth address of
    // the /10 up, past it.
    let addrs: Vec<u32> = s.endpoints[1..]
        .iter()
        .map(|e| u32::from(plane.endpoint(&e.name).unwrap().private_ip) - (10 << 24 | 64 << 16))
        .collect();
    let expect: Vec<u32> = (4..).filter(|&a| a != 10).take(20).collect();
    assert_eq!(addrs, expect);
    // Eight NAT IPs a service, in service order, from the fifth address of the /14 up.
    let nat: Vec<u32> = (0..4)
        .flat_map(|i| plane.service_at(i).unwrap().nat_ips.clone())
        .map(|ip| u32::from(ip) - (172 << 24 | 16 << 16))
        .collect();
    assert_eq!(nat, (4..36).collect::<Vec<_>>());
}

#[test]
fn a_deleted_endpoints_address_goes_to_the_next_dynamic_one() {
    let s = scenario(5, 0);
    let mut plane = ControlPlane::new(&s).unwrap();
    let second = plane.endpoint("pe-1").unwrap().private_ip;
    plane.delete_endpoint("pe-1").unwrap();
    let mut again = s.endpoints[2].clone();
    again.name = "pe-again".into();
    plane.create_endpoint(&again).unwrap();
    assert_eq!(plane.endpoint("pe-again").unwrap().private_ip, second);
    assert_eq!(plane.endpoints().last().unwrap().name, "pe-again");
    // Every other endpoint is still found by name, at its place.
    for e in plane.endpoints() {
        assert_eq!(plane.endpoint(&e.name).unwrap(), e);
    }
}

/// 8,000 dynamic endpoints and 1,000 services of eight dynamic NAT IPs each (8,008 NAT IPs)
/// check in well under a second in a release build; a debug build is slower, so the test asks
/// for near-linear growth (a quarter of the endpoints and services take more than a sixth of
/// the time; quadratic would be a sixteenth) and a generous bound.
#[test]
fn thousands_of_dynamic_endpoints_and_nat_ips_check_in_linear_time() {
    let small = scenario(500, 63).to_toml();
    let mid = scenario(2_000, 250).to_toml();
    let t_small = check_time(&small);
    let t_mid = check_time(&mid);
    // Before the big one (which took hours when it was cubic): the growth so far.
    assert!(
        t_mid < t_small * 8 + Duration::from_millis(20),
        "4 times the endpoints took {t_mid:?} against {t_small:?}"
    );
    let big = scenario(8_000, 1_000).to_toml();
    assert!(big.len() > 1_000_000, "about 1 MB of TOML");
    let t_big = check_time(&big);
    assert!(
        t_big < t_mid * 8 + Duration::from_millis(50),
        "4 times the endpoints took {t_big:?} against {t_mid:?}"
    );
    let bound = if cfg!(debug_assertions) { 20 } else { 1 };
    assert!(t_big < Duration::from_secs(bound), "{t_big:?}");
}
