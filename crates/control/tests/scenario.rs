//! Scenario files: the built-in one, round trips, and problems with their places.

use plsim_control::scenario::{Allocator, Event, FlowDuration, Hashing, RuleKind};
use plsim_control::{Problem, Scenario};

fn problems(text: &str) -> Vec<Problem> {
    Scenario::from_toml_str(text).unwrap_err().0
}

fn builtin_text() -> String {
    Scenario::builtin().to_toml()
}

#[test]
fn builtin_round_trips_and_validates() {
    let s = Scenario::builtin();
    assert_eq!(s.validate(), Ok(()));
    let text = s.to_toml();
    assert_eq!(Scenario::from_toml_str(&text), Ok(s.clone()));
    assert_eq!(s.services[0].nat_ips.len(), 8);
    assert_eq!(s.load_balancer.pools[0].backends.len(), 4);
    assert_eq!(s.load_balancer.rules[0].kind, RuleKind::HaPorts);
}

#[test]
fn nine_nat_ips_names_the_field_and_line() {
    let text = builtin_text().replace(r#""10.10.1.11"]"#, r#""10.10.1.11", "10.10.1.12"]"#);
    let line = text.lines().position(|l| l.starts_with("nat_ips")).unwrap() + 1;
    let p = problems(&text);
    assert_eq!(
        p,
        vec![Problem {
            path: "services[0].nat_ips".into(),
            line: Some(line),
            message: "9 NAT IPs: a Private Link service has at most 8".into()
        }]
    );
    assert_eq!(
        Scenario::from_toml_str(&text).unwrap_err().to_string(),
        format!(
            "line {line}: services[0].nat_ips: 9 NAT IPs: a Private Link service has at most 8"
        )
    );
}

#[test]
fn auto_approval_outside_visibility_names_the_field() {
    let text = builtin_text().replace(
        r#"auto_approval = ["sub-consumer"]"#,
        r#"auto_approval = ["sub-consumer", "sub-x"]"#,
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("auto_approval"))
        .unwrap()
        + 1;
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "services[0].auto_approval[1]");
    assert_eq!(p[0].line, Some(line));
    assert_eq!(
        p[0].message,
        "auto-approval subscription `sub-x` is not in the visibility (auto-approval must be a subset of visibility)"
    );
}

#[test]
fn static_ip_outside_subnet_names_the_field() {
    let text = builtin_text().replace(r#"private_ip = "10.0.0.4""#, r#"private_ip = "10.0.1.4""#);
    let line = text
        .lines()
        .position(|l| l.starts_with("private_ip"))
        .unwrap()
        + 1;
    assert_eq!(
        problems(&text),
        vec![Problem {
            path: "endpoints[0].private_ip".into(),
            line: Some(line),
            message: "10.0.1.4 is outside subnet 10.0.0.0/24".into()
        }]
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let mut s = Scenario::builtin();
    s.services[0].nat_ips.push("10.10.1.12".parse().unwrap());
    s.services[0].auto_approval.push("sub-x".into());
    s.services[0].allocator = Allocator::Block(65_000);
    s.services[0].timers.idle = std::time::Duration::from_secs(3);
    s.endpoints[0].private_ip = Some("10.0.0.255".parse().unwrap());
    s.load_balancer.rules[0].hashing = Hashing::Maglev { table_size: 65536 };
    s.workload.as_mut().unwrap().flow_duration = FlowDuration::Exponential { mean_secs: 0.0 };
    s.timeline.push(Event::BackendDown {
        at: 5.0,
        backend: "10.9.9.9".parse().unwrap(),
    });
    let text = s.to_toml();
    let found = problems(&text);
    let got: Vec<String> = found.iter().map(|p| p.path.clone()).collect();
    // In file order.
    assert_eq!(
        got,
        vec![
            "load_balancer.rules[0].maglev",
            "services[0].auto_approval[1]",
            "services[0].nat_ips",
            "services[0].allocator",
            "services[0].timers.idle",
            "endpoints[0].private_ip",
            "workload.flow_duration",
            "timeline[0].backend",
        ]
    );
    assert!(
        found.windows(2).all(|w| w[0].line <= w[1].line),
        "{found:?}"
    );
    let all = Scenario::from_toml_str(&text).unwrap_err();
    assert_eq!(all.to_string().lines().count(), 8);
    assert!(all.0.iter().all(|p| p.line.is_some()), "{all}");
    // Validation in code gives the same problems, without lines.
    assert_eq!(s.validate().unwrap_err().0.len(), 8);
}

#[test]
fn unknown_key_is_an_error_with_its_place() {
    let text = builtin_text().replace("rst_hold = 15", "rst_hold = 15\nsyn_hold = 3");
    let line = text
        .lines()
        .position(|l| l.starts_with("syn_hold"))
        .unwrap()
        + 1;
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(line));
    assert_eq!(p[0].path, "services[0].timers.syn_hold");
    assert!(
        p[0].message.starts_with("unknown field `syn_hold`"),
        "{}",
        p[0].message
    );
}

#[test]
fn bad_values_are_errors_with_their_place() {
    let p = problems(&builtin_text().replace(r#"ports = "1024-65535""#, r#"ports = "2000-1000""#));
    assert_eq!(p[0].path, "services[0].ports");
    assert!(
        p[0].message.contains("`2000-1000` is not a port range"),
        "{}",
        p[0].message
    );
    let p = problems(&builtin_text().replace(r#"reuse = "per-backend""#, r#"reuse = "per-port""#));
    assert_eq!(p[0].path, "services[0].reuse");
    assert!(p[0].message.contains("per-port"), "{}", p[0].message);
    let p = problems(&builtin_text().replace(
        r#"address_space = "10.0.0.0/16""#,
        r#"address_space = "10.0.0.1/16""#,
    ));
    assert_eq!(p[0].path, "vnets[0].address_space");
    let p = problems("seed = 1\n");
    assert_eq!(p[0].message, "missing field `load_balancer`");
    let p = problems("seed = [\n");
    assert_eq!(p.len(), 1);
    assert!(p[0].line.is_some());
}

#[test]
fn timeline_is_checked_against_the_workflow() {
    let text = format!(
        "{}\n[[timeline]]\nat = 10\naction = \"reject\"\nendpoint = \"pe-app\"\n\n[[timeline]]\nat = 20\naction = \"approve\"\nendpoint = \"pe-app\"\n",
        builtin_text()
    );
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("endpoint ="))
        .nth(1)
        .unwrap()
        .0
        + 1;
    let p = problems(&text);
    assert_eq!(
        p,
        vec![Problem {
            path: "timeline[1].endpoint".into(),
            line: Some(line),
            message: "at 20s, approve: the connection of `pe-app` was rejected and can't be approved: remove it and create a new endpoint".into()
        }]
    );
    let ok = text.replace("action = \"approve\"", "action = \"remove\"");
    let s = Scenario::from_toml_str(&ok).unwrap();
    assert_eq!(
        s.timeline[0],
        Event::Reject {
            at: 10.0,
            endpoint: "pe-app".into()
        }
    );
    let bad = text.replace(
        "action = \"approve\"",
        "action = \"approve\"\nip = \"1.2.3.4\"",
    );
    assert!(problems(&bad)[0].message.contains("unknown field `ip`"));
}

#[test]
fn load_balancer_rules_are_checked() {
    let mut s = Scenario::builtin();
    let mut r = s.load_balancer.rules[0].clone();
    r.name = "web".into();
    r.kind = RuleKind::Port {
        frontend_port: 443,
        backend_port: 443,
    };
    r.pool = "nope".into();
    s.load_balancer.rules.push(r);
    let mut zero = s.load_balancer.rules[0].clone();
    zero.name = "zero".into();
    zero.frontend = "fe-x".into();
    zero.kind = RuleKind::Port {
        frontend_port: 80,
        backend_port: 0,
    };
    s.load_balancer.rules.push(zero);
    let p = s.validate().unwrap_err().0;
    let got: Vec<(&str, &str)> = p
        .iter()
        .map(|p| (p.path.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("load_balancer.rules[1].pool", "no pool `nope`"),
            (
                "load_balancer.rules[1].frontend_port",
                "rule `ha` already matches these ports of frontend `fe-app`"
            ),
            ("load_balancer.rules[2].frontend", "no frontend `fe-x`"),
            (
                "load_balancer.rules[2].backend_port",
                "port 0 is not a port"
            ),
        ]
    );
}

#[test]
fn a_rule_is_ha_ports_or_a_port_in_the_file() {
    let text = builtin_text();
    let rule = |keys: &str| text.replace("ha_ports = true\n", keys);
    let header = text
        .lines()
        .position(|l| l == "[[load_balancer.rules]]")
        .unwrap()
        + 1;
    // A port rule's backend port is its frontend port unless given, and writes back the same.
    let s = Scenario::from_toml_str(&rule("frontend_port = 443\n")).unwrap();
    let port = |frontend_port, backend_port| RuleKind::Port {
        frontend_port,
        backend_port,
    };
    assert_eq!(s.load_balancer.rules[0].kind, port(443, 443));
    assert_eq!(s.to_toml(), rule("frontend_port = 443\n"));
    let two = rule("frontend_port = 443\nbackend_port = 8443\n");
    let s = Scenario::from_toml_str(&two).unwrap();
    assert_eq!(s.load_balancer.rules[0].kind, port(443, 8443));
    assert_eq!(s.to_toml(), two);
    // Maglev hashing is its table size.
    let maglev = text.replace(
        "distribution = \"five-tuple\"\n",
        "distribution = \"five-tuple\"\nmaglev = 65537\n",
    );
    let s = Scenario::from_toml_str(&maglev).unwrap();
    assert_eq!(s.load_balancer.rules[0].hashing, Hashing::MAGLEV);
    assert_eq!(s.to_toml(), maglev);
    // A malformed rule is a type error of the file: alone, at the rule.
    for (keys, message) in [
        (
            "ha_ports = true\nfrontend_port = 80\n",
            "an HA-ports rule matches every port: no frontend_port",
        ),
        (
            "ha_ports = true\nbackend_port = 80\n",
            "an HA-ports rule keeps the port: no backend_port",
        ),
        ("", "set a frontend_port, or ha_ports = true"),
        (
            "backend_port = 80\n",
            "set a frontend_port, or ha_ports = true",
        ),
    ] {
        let bad = rule(keys).replace(r#""10.10.1.11"]"#, r#""10.10.1.11", "10.10.1.12"]"#);
        assert_eq!(
            problems(&bad),
            vec![Problem {
                path: "load_balancer.rules[0]".into(),
                line: Some(header),
                message: message.into(),
            }],
            "{keys}"
        );
    }
    // A zero port is a problem of the scenario, with the others, at its line.
    let zero = rule("frontend_port = 0\n");
    let line = zero
        .lines()
        .position(|l| l.starts_with("frontend_port"))
        .unwrap()
        + 1;
    assert_eq!(
        problems(&zero),
        vec![Problem {
            path: "load_balancer.rules[0].frontend_port".into(),
            line: Some(line),
            message: "port 0 is not a port".into(),
        }]
    );
}

#[test]
fn doc_page_shows_the_builtin_scenario_and_a_valid_timeline() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/scenario.md"
    ))
    .unwrap();
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.last().copied(), Some(builtin_text().as_str()));
    // The timeline example applies to the built-in scenario with one NAT IP less.
    let text = builtin_text().replace(r#", "10.10.1.11"]"#, "]") + "\n" + blocks[0];
    let s = Scenario::from_toml_str(&text).unwrap();
    assert_eq!(s.timeline.len(), 4);
}

#[test]
fn every_scenario_in_the_docs_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(p) = Scenario::from_toml_str(&text) {
                panic!("{}: {p:?}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no scenario in docs/");
}
