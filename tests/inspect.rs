//! `plsim inspect` end to end: real captures (counts checked against tshark), the hand-made mix,
//! and bad files.

mod common;

use common::*;

/// (file, packets, captured bytes, [ipv4_tcp, ipv6, non_tcp, non_ip, fragment, malformed],
/// tcp_flows, tcp_flows_with_syn, truncated).
///
/// The packet, IPv6 and IPv4-TCP counts are tshark's (`tshark -r F`, `-Y ipv6`, `-Y "ip && tcp"`),
/// and so are the byte counts (the sum of `frame.cap_len`). tshark counts the snapped SYN of the
/// zeek capture as TCP, and so does plsim: its fixed TCP header is all there, only options are
/// cut. tshark refuses the damaged pcapng (0 packets); plsim reads 0 packets and flags it.
type Row = (&'static str, u64, u64, [u64; 6], u64, u64, bool);

const REAL: &[Row] = &[
    (
        "chrissanders_http_espn.pcapng",
        956,
        652181,
        [928, 0, 28, 0, 0, 0],
        25,
        25,
        false,
    ),
    (
        "pcapplusplus_example.pcap",
        4631,
        3738523,
        [4492, 0, 139, 0, 0, 0],
        66,
        65,
        false,
    ),
    (
        "pcapplusplus_raw_ip.pcap",
        100,
        31018,
        [42, 50, 8, 0, 0, 0],
        4,
        2,
        false,
    ),
    (
        "pcapplusplus_sll.pcap",
        518,
        451558,
        [483, 1, 27, 7, 0, 0],
        1,
        1,
        false,
    ),
    (
        "stratosphere_test-cc-capture-1.pcap",
        7931,
        1945926,
        [7931, 0, 0, 0, 0, 0],
        297,
        297,
        false,
    ),
    (
        "suricata_http-mime-truncated.pcap",
        2696,
        2672299,
        [2696, 0, 0, 0, 0, 0],
        1,
        1,
        true,
    ),
    (
        "tcpdump_ipv4_invalid_hdr_length.pcap",
        1,
        98,
        [0, 0, 0, 0, 0, 1],
        0,
        0,
        false,
    ),
    (
        "tcpreplay_test.pcap",
        179,
        69000,
        [106, 10, 44, 19, 0, 0],
        6,
        5,
        false,
    ),
    (
        "tcpreplay_test_nano.pcap",
        179,
        69000,
        [106, 10, 44, 19, 0, 0],
        6,
        5,
        false,
    ),
    (
        "zeek_tcp-truncated-header.pcap",
        24,
        1314,
        [24, 0, 0, 0, 0, 0],
        1,
        1,
        false,
    ),
];

const CLASSES: [&str; 6] = [
    "ipv4_tcp",
    "ipv6",
    "non_tcp",
    "non_ip",
    "fragment",
    "malformed",
];

#[test]
fn real_captures_match_tshark() {
    let Some(dir) = real_pcaps() else { return };
    // Its section header's option runs past the block: damaged before its first packet, which
    // tshark refuses too. Not a capture: exit 1 with the reason.
    let shb = dir.join("libpcap_shb-option-too-long.pcapng");
    let out = plsim(&["inspect", "--json", shb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("damaged before its first packet: damaged record at byte 52"),
        "{}",
        stderr(&out)
    );
    for &(file, packets, bytes, classes, flows, with_syn, truncated) in REAL {
        let path = dir.join(file);
        let out = plsim(&["inspect", "--json", path.to_str().unwrap()]);
        let j = json(&out);
        assert_eq!(j["packets"], packets, "{file}");
        assert_eq!(j["bytes"], bytes, "{file}");
        for (name, n) in CLASSES.iter().zip(classes) {
            assert_eq!(j["classes"][name], n, "{file}: {name}");
        }
        let sum: u64 = CLASSES
            .iter()
            .map(|c| j["classes"][c].as_u64().unwrap())
            .sum();
        assert_eq!(sum, packets, "{file}: the classes add up to the packets");
        assert_eq!(j["tcp_flows"], flows, "{file}");
        assert_eq!(j["tcp_flows_with_syn"], with_syn, "{file}");
        assert_eq!(j["truncated"], truncated, "{file}");
        assert_eq!(
            stderr(&out).contains("warning"),
            truncated,
            "{file}: a warning exactly when truncated"
        );
    }
}

#[test]
fn real_captures_link_types_and_time() {
    let Some(dir) = real_pcaps() else { return };
    let j = json(&plsim(&[
        "inspect",
        "--json",
        dir.join("pcapplusplus_sll.pcap").to_str().unwrap(),
    ]));
    assert_eq!(j["link_types"], serde_json::json!(["linux_sll"]));
    let j = json(&plsim(&[
        "inspect",
        "--json",
        dir.join("pcapplusplus_raw_ip.pcap").to_str().unwrap(),
    ]));
    assert_eq!(j["link_types"], serde_json::json!(["raw"]));
    assert!(
        j["span_s"].as_f64().unwrap() > 10.0 * 365.0 * 86400.0,
        "two traces merged ten years apart"
    );
    // The nanosecond copy has the same packets and mix as the microsecond one.
    let us = json(&plsim(&[
        "inspect",
        "--json",
        dir.join("tcpreplay_test.pcap").to_str().unwrap(),
    ]));
    let ns = json(&plsim(&[
        "inspect",
        "--json",
        dir.join("tcpreplay_test_nano.pcap").to_str().unwrap(),
    ]));
    assert_eq!(us["classes"], ns["classes"]);
    assert_eq!(us["first_ts_s"], ns["first_ts_s"]);
}

#[test]
fn the_mix_is_classified_exactly() {
    let dir = scratch("inspect_mix");
    let pcap = dir.join("mix.pcap");
    let out = plsim(&["generate", "mix", "--out", pcap.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j = json(&plsim(&["inspect", "--json", pcap.to_str().unwrap()]));
    assert_eq!(j["packets"], 20);
    assert_eq!(
        j["classes"],
        serde_json::json!({"ipv4_tcp": 5, "ipv6": 1, "non_tcp": 2, "non_ip": 1, "fragment": 2, "malformed": 9})
    );
    assert_eq!(j["tcp_flows"], 2);
    assert_eq!(j["tcp_flows_with_syn"], 1);
    assert_eq!(j["truncated"], false);
}

/// Each frame of the mix, one by one: the class it was made to have.
#[test]
fn each_mix_frame_gets_its_class() {
    for (i, (frame, expected)) in plsim_traffic::captures::mix().into_iter().enumerate() {
        let got = plsim_wire::classify(plsim_wire::LinkType::Ethernet, &frame.data, frame.wire_len)
            .map(|_| ());
        assert_eq!(got, expected, "frame {i}");
    }
}

#[test]
fn plain_text_report() {
    let dir = scratch("inspect_text");
    let pcap = dir.join("mix.pcap");
    assert!(
        plsim(&["generate", "mix", "--out", pcap.to_str().unwrap()])
            .status
            .success()
    );
    let out = plsim(&["inspect", pcap.to_str().unwrap()]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("(pcap, ethernet)"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["malformed", "9", "45.0%", "dropped"]),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["ipv4", "tcp", "5", "25.0%", "carried"]),
        "{text}"
    );
}

#[test]
fn bad_files_fail_cleanly() {
    let dir = scratch("inspect_bad");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is not a capture\n").unwrap();
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let missing = dir.join("missing.pcap");
    let cases = [
        (&text, "not a pcap or pcapng capture (starts with 74686973)"),
        (&empty, "empty file, not a capture"),
        (&missing, "no such file"),
    ];
    for (path, reason) in cases {
        let out = plsim(&["inspect", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        assert_eq!(
            stderr(&out),
            format!("plsim: {}: {reason}\n", path.display())
        );
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn damaged_captures_keep_the_good_part() {
    let dir = scratch("inspect_damaged");
    let good = dir.join("good.pcap");
    assert!(
        plsim(&[
            "generate",
            "conversations",
            "--flows",
            "3",
            "--out",
            good.to_str().unwrap()
        ])
        .status
        .success()
    );
    let bytes = std::fs::read(&good).unwrap();

    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let out = plsim(&["inspect", "--json", cut.to_str().unwrap()]);
    let j = json(&out);
    assert_eq!(j["packets"], 23);
    assert_eq!(j["truncated"], true);
    assert!(
        stderr(&out).contains("the last record is cut short"),
        "{}",
        stderr(&out)
    );

    let garbage = dir.join("garbage.pcap");
    let mut g = bytes[..24].to_vec();
    g.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&garbage, &g).unwrap();
    // Damaged before its first packet (the first record header claims gigabytes): nothing to
    // read, so not a capture: exit 1 with the reason, for inspect and replay alike.
    for cmd in ["inspect", "replay"] {
        let out = plsim(&[cmd, garbage.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert!(
            stderr(&out)
                .contains("damaged before its first packet: a record at byte 24 claims more than"),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
    }
    // Cut inside its first record: the same.
    let first_cut = dir.join("first_cut.pcap");
    std::fs::write(&first_cut, &bytes[..24 + 20]).unwrap();
    let out = plsim(&["replay", first_cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("damaged before its first packet: the last record is cut short"),
        "{}",
        stderr(&out)
    );
    // A header and no record at all is a capture of no packet: exit 0.
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, &bytes[..24]).unwrap();
    let j = json(&plsim(&["inspect", "--json", empty.to_str().unwrap()]));
    assert_eq!((&j["packets"], &j["truncated"]), (&0.into(), &false.into()));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(plsim(&["inspect"]).status.code(), Some(2));
    assert_eq!(plsim(&["no-such-command"]).status.code(), Some(2));
    let help = plsim(&["--help"]);
    assert!(help.status.success());
    for cmd in [
        "replay", "inspect", "simulate", "sweep", "plan", "bench", "scenario",
    ] {
        assert!(stdout(&help).contains(cmd), "--help lists {cmd}");
    }
}

#[test]
fn shipped_captures_are_what_the_generator_makes() {
    let dir = scratch("inspect_shipped");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    for (name, args) in [
        ("mix.pcap", vec!["generate", "mix"]),
        (
            "conversations-200.pcap",
            vec!["generate", "conversations", "--flows", "200"],
        ),
        (
            "syns-3000.pcap",
            vec!["generate", "syns", "--flows", "3000"],
        ),
        (
            "two-conversations-300s.pcap",
            vec![
                "generate",
                "conversations",
                "--flows",
                "2",
                "--gap-us",
                "300000000",
            ],
        ),
    ] {
        let fresh = dir.join(name);
        let mut a = args.clone();
        a.extend(["--out", fresh.to_str().unwrap()]);
        assert!(plsim(&a).status.success());
        let shipped =
            std::fs::read(root.join(name)).unwrap_or_else(|e| panic!("pcaps/{name}: {e}"));
        assert!(
            shipped == std::fs::read(&fresh).unwrap(),
            "pcaps/{name} differs from `plsim {}`",
            args.join(" ")
        );
    }
}
