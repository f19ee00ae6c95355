//! Many consumers and many services, end to end, on captures plsim's generator makes: two
//! consumers with the very same addresses on two VLANs, a Pending twin, two services with their
//! own frontends, backends and NAT IPs, endpoints rejected, deleted and replaced on the
//! timeline, a provider that tries to open a connection, traffic no endpoint takes.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use common::*;
use plsim_pcap::Reader;
use plsim_wire::{classify, vlan};

/// Per VLAN: (packets from the consumer hosts, packets from the servers) of a capture whose
/// consumer hosts are in `hosts`.
fn per_vlan(pcap: &Path, hosts: &[(u8, u8)]) -> HashMap<Option<u16>, (u64, u64)> {
    let mut r = Reader::open(pcap).unwrap();
    let mut out: HashMap<Option<u16>, (u64, u64)> = HashMap::new();
    while let Some(p) = r.next_frame() {
        let v = classify(p.link, p.data, p.wire_len).unwrap();
        let o = v.tuple().src.octets();
        let e = out.entry(vlan(p.link, p.data)).or_default();
        if hosts.contains(&(o[1], o[2])) {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    out
}

/// A frame's VLAN, source end and destination end.
type Frame = (Option<u16>, (Ipv4Addr, u16), (Ipv4Addr, u16));

/// Every frame of a capture.
fn frames(pcap: &Path) -> Vec<Frame> {
    let mut r = Reader::open(pcap).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_frame() {
        let t = classify(p.link, p.data, p.wire_len).unwrap().tuple();
        out.push((vlan(p.link, p.data), (t.src, t.sport), (t.dst, t.dport)));
    }
    out
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Two consumers on the same address space 10.0.0.0/16, endpoints at 10.0.0.4 in both, their
/// traffic on VLANs 20 and 30; `b_pending`: the second's subscription is not auto-approved.
fn twins(dir: &Path, b_pending: bool) -> (PathBuf, PathBuf) {
    let base = stdout(&plsim(&["scenario", "default"]));
    let vnet_b = base
        .split("[[vnets]]")
        .nth(1)
        .unwrap()
        .split("[provider]")
        .next()
        .unwrap()
        .replace("name = \"consumer\"", "name = \"consumer-b\"")
        .replace("sub-consumer", "sub-b");
    let endpoint_b = base
        .split("[[endpoints]]")
        .nth(1)
        .unwrap()
        .split("[workload]")
        .next()
        .unwrap()
        .replace("name = \"pe-app\"", "name = \"pe-app-b\"")
        .replace("pe-app-nic", "pe-app-b-nic")
        .replace("vnet = \"consumer\"", "vnet = \"consumer-b\"")
        .replace("sub-consumer", "sub-b");
    let mut text = base
        .replace("[provider]", &format!("[[vnets]]{vnet_b}[provider]"))
        .replace(
            "[workload]",
            &format!("[endpoints.traffic]\nvlan = 20\n\n[[endpoints]]{endpoint_b}[endpoints.traffic]\nvlan = 30\n\n[workload]"),
        )
        .replace("visibility = [\"sub-consumer\"]", "visibility = \"all\"")
        .replace("duration = 60.0", "flows = 25\nduration = 10.0");
    if !b_pending {
        text = text.replace(
            "auto_approval = [\"sub-consumer\"]",
            "auto_approval = [\"sub-consumer\", \"sub-b\"]",
        );
    }
    let scenario = dir.join("twins.toml");
    std::fs::write(&scenario, text).unwrap();
    let check = plsim(&["scenario", "check", scenario.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
    let pcap = dir.join("twins.pcap");
    let g = plsim(&[
        "generate",
        "workload",
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        pcap.to_str().unwrap(),
    ]);
    assert!(g.status.success(), "{}", stderr(&g));
    (scenario, pcap)
}

#[test]
fn identical_consumers_on_two_vlans_never_mix() {
    let dir = scratch("tenants_twins");
    let (scenario, pcap) = twins(&dir, false);
    let counts = per_vlan(&pcap, &[(0, 1)]);
    let (a, b) = (counts[&Some(20)], counts[&Some(30)]);
    assert_eq!(a, b, "the very same traffic on both VLANs");
    assert!(a.0 > 100 && a.1 > 50, "{a:?}");
    let out = dir.join("out");
    let s = json(&plsim(&[
        "replay",
        "--json",
        pcap.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let c = s["connections"].as_array().unwrap();
    assert_eq!(c.len(), 2, "{s}");
    for (conn, link, (client, server)) in [(&c[0], 1, a), (&c[1], 2, b)] {
        assert_eq!(n(&conn["link_id"]), link);
        assert_eq!(conn["state"], "Approved");
        assert_eq!(n(&conn["consumer_in"]), client);
        assert_eq!(n(&conn["to_backend"]), client);
        assert_eq!(n(&conn["backend_in"]), server);
        assert_eq!(n(&conn["to_consumer"]), server);
        assert_eq!(n(&conn["flows_created"]), 25);
        assert_eq!(n(&conn["snat_failures"]), 0);
    }
    assert_eq!(
        (c[0]["endpoint"].as_str(), c[1]["endpoint"].as_str()),
        (Some("pe-app"), Some("pe-app-b"))
    );
    // The backends see every flow on its own NAT end: none shared by the two consumers.
    // (Ports are unique per NAT IP and backend under per-backend reuse: the NAT end with the
    // backend it leads to is what no two flows share.)
    let nat_ends = |v: u16| -> HashSet<((Ipv4Addr, u16), Ipv4Addr)> {
        frames(&out.join("backend.pcap"))
            .into_iter()
            .filter(|f| f.0 == Some(v) && f.1.0.octets()[2] == 1)
            .map(|f| (f.1, f.2.0))
            .collect()
    };
    let (na, nb) = (nat_ends(20), nat_ends(30));
    assert_eq!((na.len(), nb.len()), (25, 25));
    assert!(
        na.is_disjoint(&nb),
        "a NAT port shared by the two consumers"
    );
    // Each consumer gets exactly its own answers back, on its own VLAN.
    let back_to = |v: u16| {
        frames(&out.join("consumer.pcap"))
            .into_iter()
            .filter(|f| f.0 == Some(v) && f.1.0 == Ipv4Addr::new(10, 0, 0, 4))
            .count() as u64
    };
    assert_eq!((back_to(20), back_to(30)), (a.1, b.1));
}

#[test]
fn a_pending_twin_loses_exactly_its_own_packets() {
    let dir = scratch("tenants_pending");
    let (scenario, pcap) = twins(&dir, true);
    let counts = per_vlan(&pcap, &[(0, 1)]);
    let (a, b) = (counts[&Some(20)], counts[&Some(30)]);
    let s = json(&plsim(&[
        "replay",
        "--json",
        pcap.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
    ]));
    let c = s["connections"].as_array().unwrap();
    assert_eq!(c[1]["state"], "Pending");
    assert_eq!(n(&c[1]["consumer_in"]), b.0);
    assert_eq!(n(&c[1]["dropped"]["not_approved"]), b.0);
    assert_eq!(n(&c[1]["to_backend"]) + n(&c[1]["to_consumer"]), 0);
    assert_eq!(n(&c[1]["flows_created"]), 0);
    // The approved twin is untouched.
    assert_eq!((n(&c[0]["to_backend"]), n(&c[0]["to_consumer"])), a);
    let d = &s["packets"]["dropped"];
    assert_eq!(n(&d["not_approved"]), b.0);
    // The servers' answers to SYNs that never reached them have no flow to come back on.
    assert_eq!(n(&d["no_flow"]), b.1);
    assert_eq!(n(&s["packets"]["to_consumer"]), a.1);
}

/// The worked example: two services, four consumers, one rejected mid-run and replaced.
#[test]
fn two_services_and_the_timeline_of_the_worked_example() {
    let dir = scratch("tenants_example");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tenants.toml");
    let pcap = dir.join("tenants.pcap");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/tenants.pcap");
    assert!(
        plsim(&[
            "generate",
            "workload",
            "--scenario",
            scenario.to_str().unwrap(),
            "--out",
            pcap.to_str().unwrap()
        ])
        .status
        .success()
    );
    // The shipped capture is exactly what the generator makes of the worked example.
    assert!(
        std::fs::read(&shipped).expect("pcaps/tenants.pcap") == std::fs::read(&pcap).unwrap(),
        "pcaps/tenants.pcap differs from `plsim generate workload --scenario docs/tenants.toml`"
    );
    let out = dir.join("out");
    let s = json(&plsim(&[
        "replay",
        "--json",
        pcap.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let c = s["connections"].as_array().unwrap();
    let got: Vec<(u64, &str, &str, &str)> = c
        .iter()
        .map(|c| {
            (
                n(&c["link_id"]),
                c["endpoint"].as_str().unwrap(),
                c["service"].as_str().unwrap(),
                c["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "pe-contoso", "web", "Approved"),
            (2, "pe-fab-a", "web", "Approved"),
            (3, "pe-north", "db", "Deleted"),
            (4, "pe-fab-b", "web", "Approved"),
            (5, "pe-north-2", "db", "Approved"),
        ]
    );
    // The capture, by VLAN and time: what each consumer sent before and after its approval.
    let mut r = Reader::open(&pcap).unwrap();
    let mut t0 = None;
    let mut sent: HashMap<(u16, u8), u64> = HashMap::new();
    while let Some(p) = r.next_frame() {
        let t = classify(p.link, p.data, p.wire_len).unwrap().tuple();
        let at = (p.ts_ns - *t0.get_or_insert(p.ts_ns)) as f64 / 1e9;
        let from_host = t.src.octets()[2] == 1;
        let v = vlan(p.link, p.data).unwrap();
        if from_host {
            // fabrikam-b requests at 5 s (Pending) and is approved at 20 s; northwind's
            // replacement is created at 25 s (Pending) and approved at 30 s. Before a request,
            // a packet is no connection's.
            let state = match (v, at) {
                (30, t) if t < 5.0 => 0,
                (30, t) if t < 20.0 => 1,
                (40, t) if (25.0..30.0).contains(&t) => 1,
                (40, t) if t < 30.0 => 0,
                _ => 2,
            };
            *sent.entry((v, state)).or_default() += 1;
        }
    }
    let conn = |link: usize| &c[link - 1];
    // After its approval, a connection passes everything but the rest of flows whose SYN it
    // refused before: those have no flow (`no_flow`).
    let after = |link| n(&conn(link)["to_backend"]) + n(&conn(link)["dropped"]["no_flow"]);
    assert_eq!(n(&conn(4)["dropped"]["not_approved"]), sent[&(30, 1)]);
    assert_eq!(after(4), sent[&(30, 2)]);
    assert_eq!(
        n(&conn(3)["dropped"]["not_approved"]),
        n(&conn(3)["consumer_in"])
    );
    assert!(n(&conn(3)["consumer_in"]) > 0);
    assert_eq!(n(&conn(3)["to_backend"]), 0, "never approved");
    assert_eq!(n(&conn(5)["dropped"]["not_approved"]), sent[&(40, 1)]);
    assert_eq!(after(5), sent[&(40, 2)]);
    for link in [1, 2] {
        assert_eq!(n(&conn(link)["to_backend"]), n(&conn(link)["consumer_in"]));
        assert_eq!(n(&conn(link)["dropped"]["not_approved"]), 0);
    }
    // Each service's flows leave on its own NAT IPs, to its own backends.
    let web_nat: HashSet<Ipv4Addr> = ["10.10.1.4", "10.10.1.5"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let mut seen = HashSet::new();
    for (_, src, dst) in frames(&out.join("backend.pcap")) {
        let (nat, backend) = if src.0.octets()[2] == 1 {
            (src, dst)
        } else {
            (dst, src)
        };
        let web = backend.0.octets()[3] < 10;
        assert_eq!(web, web_nat.contains(&nat.0), "{nat:?} -> {backend:?}");
        if web {
            assert_eq!(backend.1, 8443, "the https rule maps 443 to 8443");
        } else {
            assert_eq!(nat.0, Ipv4Addr::new(10, 10, 1, 20));
        }
        seen.insert(web);
    }
    assert_eq!(seen.len(), 2, "both services carried traffic");
    // The worked example in docs/ shows these very results.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tenants.md"))
            .unwrap();
    for conn in c {
        let line = format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            conn["link_id"],
            conn["endpoint"].as_str().unwrap(),
            conn["service"].as_str().unwrap(),
            conn["state"].as_str().unwrap(),
            conn["to_backend"],
            conn["to_consumer"],
            conn["dropped"]["not_approved"],
        );
        assert!(doc.contains(&line), "docs/tenants.md lacks `{line}`");
    }
}

/// A SYN from a backend is the provider opening a connection: it enters at the backend side
/// and is dropped as `no_flow`, and so is the consumer's answer (no flow was ever opened).
#[test]
fn the_provider_cannot_open_a_connection() {
    use plsim_wire::TcpFlags as F;
    use plsim_wire::build::{TcpSegment, tuple};
    let dir = scratch("tenants_provider_syn");
    let backend = (Ipv4Addr::new(10, 10, 2, 4), 8443);
    let host = (Ipv4Addr::new(10, 0, 1, 5), 5000);
    let syn = TcpSegment::new(tuple(backend.0, backend.1, host.0, host.1), F::SYN);
    let synack = TcpSegment::new(tuple(host.0, host.1, backend.0, backend.1), F::SYN | F::ACK);
    let frames: Vec<plsim_pcap::FrameBuf> = [syn, synack]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            plsim_pcap::FrameBuf::new(
                1_700_000_000_000_000_000 + i as u64 * 1_000_000,
                plsim_wire::LinkType::Ethernet,
                s.to_vec(),
            )
        })
        .collect();
    let pcap = dir.join("provider-syn.pcap");
    plsim_traffic::captures::write_pcap(&pcap, &frames).unwrap();
    let s = json(&plsim(&["replay", "--json", pcap.to_str().unwrap()]));
    assert_eq!(
        n(&s["packets"]["backend_in"]),
        1,
        "the SYN entered at the backend side"
    );
    assert_eq!(n(&s["packets"]["dropped"]["no_flow"]), 2);
    assert_eq!(
        n(&s["packets"]["to_backend"]) + n(&s["packets"]["to_consumer"]),
        0
    );
    assert_eq!(n(&s["flows"]["created"]), 0);
}

/// With traffic tables, what no endpoint takes is dropped as `no_endpoint`.
#[test]
fn traffic_no_endpoint_takes_is_no_endpoint() {
    let dir = scratch("tenants_no_endpoint");
    let scenario = dir.join("s.toml");
    let text = stdout(&plsim(&["scenario", "default"]))
        .replace("[workload]", "[endpoints.traffic]\nvlan = 20\n\n[workload]");
    std::fs::write(&scenario, text).unwrap();
    // The shipped conversations carry no VLAN tag: none of them is the endpoint's.
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/conversations-200.pcap");
    let s = json(&plsim(&[
        "replay",
        "--json",
        pcap.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
    ]));
    assert_eq!(n(&s["packets"]["dropped"]["no_endpoint"]), 1600);
    assert_eq!(n(&s["flows"]["created"]), 0);
    assert_eq!(n(&s["connections"][0]["consumer_in"]), 0);
}

/// `scenario show --json` of the worked example, field by field: what a user reads before a run.
#[test]
fn scenario_show_of_the_worked_example() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tenants.toml");
    let out = plsim(&["scenario", "show", "--json", scenario.to_str().unwrap()]);
    assert!(out.status.success());
    let v = json(&out);
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let svc = v["services"].as_array().unwrap();
    assert_eq!(svc.len(), 2);
    let (web, db) = (&svc[0], &svc[1]);
    assert_eq!(web["name"], "web");
    assert!(
        web["alias"].as_str().unwrap().starts_with("web.")
            && web["alias"]
                .as_str()
                .unwrap()
                .ends_with(".westeurope.azure.privatelinkservice")
    );
    assert_eq!(
        web["resource_id"],
        "/subscriptions/sub-provider/resourceGroups/rg/providers/Microsoft.Network/privateLinkServices/web"
    );
    assert_eq!(strs(&web["visibility"]), ["all"]);
    assert_eq!(strs(&web["auto_approval"]), ["sub-contoso", "sub-fabrikam"]);
    assert_eq!(web["frontend_ip"], "10.10.0.4");
    assert_eq!(web["rules"][0]["ports"], "443->8443");
    assert_eq!(strs(&web["backends"]), ["10.10.2.4", "10.10.2.5"]);
    assert_eq!(web["nat_subnet"], "nat");
    // Two dynamic NAT IPs: the first two usable addresses of 10.10.1.0/24.
    assert_eq!(strs(&web["nat_ips"]), ["10.10.1.4", "10.10.1.5"]);
    assert_eq!(strs(&web["connections"]), ["pe-contoso", "pe-fab-a"]);
    assert_eq!(db["frontend_ip"], "10.10.0.5");
    assert_eq!(db["rules"][0]["ports"], "all");
    assert_eq!(strs(&db["backends"]), ["10.10.2.10", "10.10.2.11"]);
    assert_eq!(strs(&db["nat_ips"]), ["10.10.1.20"]);
    assert_eq!(strs(&db["visibility"]), ["sub-northwind"]);
    assert!(db["auto_approval"].as_array().unwrap().is_empty());
    assert_eq!(strs(&db["connections"]), ["pe-north"]);

    // Endpoints as created: name, VNet, address, how it got it, when, state, link id, VLAN.
    let eps: Vec<_> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["vnet"].as_str().unwrap().to_owned(),
                e["private_ip"].as_str().unwrap().to_owned(),
                e["static_ip"].as_bool().unwrap(),
                e["created_at"].as_f64().unwrap(),
                e["state"].as_str().unwrap().to_owned(),
                e["link_id"].as_u64(),
                e["traffic"]["vlan"].as_u64(),
            )
        })
        .collect();
    let row = |n: &str, vnet: &str, ip: &str, st: bool, at: f64, state: &str, link, vlan| {
        (
            n.to_owned(),
            vnet.to_owned(),
            ip.to_owned(),
            st,
            at,
            state.to_owned(),
            link,
            Some(vlan),
        )
    };
    assert_eq!(
        eps,
        [
            row(
                "pe-contoso",
                "contoso",
                "10.1.0.4",
                false,
                0.0,
                "Approved",
                Some(1),
                10
            ),
            row(
                "pe-fab-a",
                "fabrikam-a",
                "10.0.0.4",
                true,
                0.0,
                "Approved",
                Some(2),
                20
            ),
            row(
                "pe-fab-b",
                "fabrikam-b",
                "10.0.0.4",
                true,
                0.0,
                "none",
                None,
                30
            ),
            row(
                "pe-north",
                "northwind",
                "10.2.0.4",
                false,
                0.0,
                "Pending",
                Some(3),
                40
            ),
            row(
                "pe-north-2",
                "northwind",
                "10.2.0.4",
                false,
                25.0,
                "Pending",
                Some(5),
                40
            ),
        ]
    );

    // The timeline with what each event does to the data plane.
    let tl: Vec<_> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["at"].as_f64().unwrap(),
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
                strs(&e["effects"]),
            )
        })
        .collect();
    let ev = |at: f64, action: &str, target: &str, effects: &[&str]| {
        (
            at,
            action.to_owned(),
            target.to_owned(),
            effects.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        tl,
        [
            ev(
                5.0,
                "request",
                "pe-fab-b",
                &["link 4 Pending: endpoint 10.0.0.4 (VNet 2) passes nothing yet"]
            ),
            ev(15.0, "reject", "pe-north", &[]),
            ev(
                20.0,
                "approve",
                "pe-fab-b",
                &["link 4 Approved: endpoint 10.0.0.4 (VNet 2) to frontend 10.10.0.4"]
            ),
            ev(
                20.0,
                "delete-endpoint",
                "pe-north",
                &["link 3 deleted: its address is free"]
            ),
            ev(
                25.0,
                "create-endpoint",
                "pe-north-2",
                &["link 5 Pending: endpoint 10.2.0.4 (VNet 3) passes nothing yet"]
            ),
            ev(
                30.0,
                "approve",
                "pe-north-2",
                &["link 5 Approved: endpoint 10.2.0.4 (VNet 3) to frontend 10.10.0.5"]
            ),
        ]
    );
}

/// `simulate` runs every endpoint's own workload (pe-north's and pe-north-2's own, the
/// scenario's for the others): exactly what replaying the generated capture gives, connection
/// by connection.
#[test]
fn simulate_runs_each_endpoints_workload() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenario = root.join("docs/tenants.toml");
    let sim = json(&plsim(&[
        "simulate",
        "--json",
        "--scenario",
        scenario.to_str().unwrap(),
    ]));
    let rep = json(&plsim(&[
        "replay",
        "--json",
        root.join("pcaps/tenants.pcap").to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
    ]));
    assert_eq!(sim["packets"], rep["packets"]);
    assert_eq!(sim["flows"], rep["flows"]);
    assert_eq!(sim["connections"], rep["connections"]);
    // Flows per endpoint: 60 each from the scenario's workload, 40 and 30 from their own,
    // pe-north's all refused (never approved), pe-north-2's from its approval at 30 s.
    let flows: Vec<u64> = sim["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| n(&c["flows_created"]))
        .collect();
    assert_eq!(flows, [60, 60, 0, 20, 20]);
    let consumer_in: Vec<u64> = sim["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| n(&c["consumer_in"]))
        .collect();
    // Each flow sends 7 packets from the consumer (handshake, data, FIN) and 5 back, over a
    // second. pe-fab-b's packets before its request at 5 s belong to no connection yet: the
    // first 9 flows' 63 and 2 of the flow started at 4.5 s (its other 5 are pe-fab-b's). Those
    // of pe-north after its deletion at 20 s belong to none any more: 5 of its last flow's 7.
    // pe-north-2 sends its 30 flows' 210 from 25 s.
    assert_eq!(consumer_in, [420, 420, 280 - 5, 350 + 5, 210]);
    assert_eq!(
        consumer_in.iter().sum::<u64>() + 70,
        n(&sim["packets"]["consumer_in"])
    );
}
