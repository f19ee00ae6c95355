//! PROXY protocol v2 (`enable_proxy_protocol`) end to end: a replay sends one header per
//! connection, which tshark decodes in `backend.pcap` with the consumer's address and the link
//! id, finds no TCP analysis problem in the shifted stream, and leaves `consumer.pcap` byte for
//! byte as with the option off; both engines and any batch size agree; the real TCP stacks of
//! `simulate --workload tcp` parse every header with the `ppp` crate and verify every byte.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{json, plsim, real_pcaps, scratch, stdout};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

/// The built-in scenario with the service sending PROXY protocol v2 headers.
fn proxied_scenario(dir: &Path) -> PathBuf {
    let text = stdout(&plsim(&["scenario", "default"]));
    let text = text.replacen(
        "[[services]]\n",
        "[[services]]\nenable_proxy_protocol = true\n",
        1,
    );
    assert!(text.contains("enable_proxy_protocol = true"));
    let file = dir.join("proxied.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn have_tshark() -> bool {
    let ok = Command::new("tshark").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipping: tshark is not installed (.ci/run installs it)");
    }
    ok
}

/// tshark's fields of the frames of `file` that `filter` selects, one row per frame. The PROXY
/// dissector is a heuristic one: it only sees port 443 before TLS with heuristics first.
fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-o", "tcp.try_heuristic_first:TRUE", "-n", "-r"])
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn replay(input: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "replay",
        "--quiet",
        "--json",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    json(&plsim(&args))
}

/// The summary without what depends on the machine (wall time, latency) or on the option.
fn comparable(s: &serde_json::Value) -> serde_json::Value {
    let mut s = s.clone();
    let o = s.as_object_mut().unwrap();
    o.remove("throughput");
    o.remove("latency_ns");
    o["packets"]
        .as_object_mut()
        .unwrap()
        .remove("proxy_headers");
    s
}

#[test]
fn replay_sends_one_header_per_connection_and_leaves_the_consumer_stream_alone() {
    if !have_tshark() {
        return;
    }
    let dir = scratch("proxy_replay");
    let scenario = proxied_scenario(&dir);
    let on_args = ["--scenario", scenario.to_str().unwrap()];
    let mut inputs = vec![(shipped("conversations-200.pcap"), Some(200))];
    if let Some(real) = real_pcaps() {
        inputs.push((real.join("chrissanders_http_espn.pcapng"), None));
    }
    for (k, (input, connections)) in inputs.iter().enumerate() {
        let at = |name: &str| dir.join(format!("{k}-{name}"));
        let off = replay(input, &at("off"), &[]);
        let on = replay(input, &at("on"), &on_args);
        let headers = on["packets"]["proxy_headers"].as_u64().unwrap();
        assert_eq!(off["packets"]["proxy_headers"], 0);
        if let Some(n) = connections {
            assert_eq!(
                headers,
                *n,
                "{}: one header per connection",
                input.display()
            );
            assert_eq!(on["flows"]["created"], *n);
        }
        assert!(headers > 0, "{}", input.display());

        // The consumer sees exactly what it saw without the option; so does every count.
        assert_eq!(comparable(&on), comparable(&off), "{}", input.display());
        let read = |run: &str, f: &str| std::fs::read(at(run).join(f)).unwrap();
        assert!(
            read("on", "consumer.pcap") == read("off", "consumer.pcap"),
            "{}: consumer.pcap differs with the option on",
            input.display()
        );
        // Both engines and any batch size write the same backend side.
        replay(
            input,
            &at("seq"),
            &[&on_args[..], &["--engine", "sequential"]].concat(),
        );
        replay(
            input,
            &at("b7"),
            &[&on_args[..], &["--batch", "7"]].concat(),
        );
        for other in ["seq", "b7"] {
            assert!(
                read("on", "backend.pcap") == read(other, "backend.pcap"),
                "{}: backend.pcap of `{other}` differs",
                input.display()
            );
        }

        // tshark decodes one header per connection, each of its own flow (NAT end and backend:
        // ports are unique per backend), naming a
        // consumer that opened a connection and the private endpoint, and carrying the Azure
        // TLV with the link id (tshark 4.0 does not dissect TLVs: the bytes are checked).
        let backend = at("on").join("backend.pcap");
        let rows = tshark(
            &backend,
            "proxy.v2.magic",
            &[
                "ip.src",
                "tcp.srcport",
                "ip.dst",
                "proxy.src.ipv4",
                "proxy.srcport",
                "proxy.dst.ipv4",
                "proxy.dstport",
                "proxy.v2.tlv.type",
                "tcp.payload",
            ],
        );
        assert_eq!(rows.len() as u64, headers, "{}", input.display());
        let link = on["connections"][0]["link_id"].as_u64().unwrap() as u32;
        let tlv: String = [0xee, 0x00, 0x05, 0x01]
            .iter()
            .chain(&link.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect();
        let consumer = at("on").join("consumer.pcap");
        let syns: HashSet<(String, String)> = tshark(
            &consumer,
            "tcp.flags.syn == 1 && tcp.flags.ack == 0",
            &["ip.src", "tcp.srcport"],
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
        let endpoints: HashSet<(String, String)> = tshark(
            &consumer,
            "tcp.flags.syn == 1 && tcp.flags.ack == 0",
            &["ip.dst", "tcp.dstport"],
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
        let mut nat_ends = HashSet::new();
        for r in &rows {
            assert!(nat_ends.insert(r[..3].to_vec()), "{r:?}");
            assert!(syns.contains(&(r[3].clone(), r[4].clone())), "{r:?}");
            assert!(endpoints.contains(&(r[5].clone(), r[6].clone())), "{r:?}");
            assert!(r[7].is_empty() || r[7] == "0xee" || r[7] == "238", "{r:?}");
            assert_eq!(r[8].len(), 72, "36 bytes: {r:?}");
            assert!(r[8].ends_with(&tlv), "{r:?}");
        }
        // The shift causes no TCP analysis problem: as many as without the option (none in the
        // generated capture).
        let problems = |run: &str| {
            tshark(
                &at(run).join("backend.pcap"),
                "tcp.analysis.flags",
                &["frame.number"],
            )
            .len()
        };
        assert_eq!(problems("on"), problems("off"), "{}", input.display());
        if connections.is_some() {
            assert_eq!(problems("on"), 0);
        }
    }
}

#[test]
fn real_tcp_stacks_parse_every_header_and_verify_every_byte() {
    let dir = scratch("proxy_tcp");
    let scenario = proxied_scenario(&dir);
    let s = json(&plsim(&[
        "simulate",
        "--workload",
        "tcp",
        "--connections",
        "20",
        "--bytes",
        "10000",
        "--json",
        "--scenario",
        scenario.to_str().unwrap(),
    ]));
    assert_eq!(
        s["tcp"],
        serde_json::json!({"connections": 20, "completed": 20, "bytes_verified": 200000,
            "proxy_headers_verified": 20})
    );
    let p = &s["packets"];
    assert_eq!(p["proxy_headers"], 20);
    assert_eq!(
        p["consumer_in"], p["to_backend"],
        "the headers are outside the balance"
    );
    assert_eq!(p["backend_in"], p["to_consumer"]);
    assert_eq!(
        s["flows"]["active_end"], 0,
        "every port free after the hold"
    );
}

#[test]
fn scenario_show_says_whether_a_service_sends_headers() {
    let dir = scratch("proxy_show");
    let scenario = proxied_scenario(&dir);
    let on = json(&plsim(&[
        "scenario",
        "show",
        scenario.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(on["services"][0]["proxy_protocol"], true);
    let text = stdout(&plsim(&["scenario", "show", scenario.to_str().unwrap()]));
    assert!(text.contains("PROXY protocol  v2"), "{text}");
    let default = dir.join("default.toml");
    std::fs::write(&default, stdout(&plsim(&["scenario", "default"]))).unwrap();
    let off = json(&plsim(&[
        "scenario",
        "show",
        default.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(off["services"][0]["proxy_protocol"], false);
}
