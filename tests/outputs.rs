//! Nothing lost: a damaged capture is said to be damaged by `plan` and `sweep` as by `replay`.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

fn shipped(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A capture damaged after its first packet: `plan` and `sweep` say so as `replay` does (the
/// same warning, once) and mark every result they give with `truncated`.
#[test]
fn plan_and_sweep_say_a_capture_is_damaged() {
    let root = scratch("outputs-damaged");
    let cut = root.join("cut.pcap");
    let whole = std::fs::read(shipped("conversations-200.pcap")).unwrap();
    std::fs::write(&cut, &whole[..100_000]).unwrap();
    let cut = s(&cut);
    let replay = plsim(&["replay", cut, "-q"]);
    assert_eq!(replay.status.code(), Some(0));
    let warning = stderr(&replay);
    assert!(warning.starts_with("plsim: warning: ") && warning.lines().count() == 1);
    let once = |o: &Output, what: &str| {
        assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(o));
        assert!(
            stderr(o)
                .lines()
                .filter(|l| format!("{l}\n") == warning)
                .count()
                == 1,
            "{what} says the capture is damaged once, as replay does: {}",
            stderr(o)
        );
    };
    // plan
    let o = plsim(&["plan", cut, "--json"]);
    once(&o, "plan");
    let plan = json(&o);
    assert_eq!(plan["truncated"], true, "{plan}");
    let plan_pts = root.join("plan-pts");
    for k in 0..8 {
        let k = k.to_string();
        let o = plsim(&["plan", cut, "--point", &k, "--out", s(&plan_pts)]);
        once(&o, "plan --point");
        let point: serde_json::Value = serde_json::from_slice(
            &std::fs::read(plan_pts.join(format!("plan-point-{k}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(point["result"]["point"]["truncated"], true, "{point}");
    }
    // sweep
    let out = root.join("sweep");
    let o = plsim(&["sweep", cut, "--nat-ips", "1,2", "--out", s(&out), "--json"]);
    once(&o, "sweep");
    let rows = json(&o);
    for r in rows.as_array().unwrap() {
        assert_eq!(r["truncated"], true, "{r}");
    }
    let pts = root.join("pts");
    for k in ["0", "1"] {
        let o = plsim(&[
            "sweep",
            cut,
            "--nat-ips",
            "1,2",
            "--point",
            k,
            "--out",
            s(&pts),
        ]);
        once(&o, "sweep --point");
        let point: serde_json::Value =
            serde_json::from_slice(&std::fs::read(pts.join(format!("point-{k}.json"))).unwrap())
                .unwrap();
        assert_eq!(point["result"]["truncated"], true, "{point}");
    }
    // The merges carry the mark to what they give.
    let merged = root.join("merged");
    let o = plsim(&["sweep", "merge", s(&pts), "--out", s(&merged), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for r in json(&o).as_array().unwrap() {
        assert_eq!(r["truncated"], true, "{r}");
    }
    let o = plsim(&["plan", "merge", s(&plan_pts), "--json"]);
    assert_eq!(json(&o)["truncated"], true);
    // A whole capture's results have no mark (and the same sweep.csv).
    let o = plsim(&["plan", &shipped("conversations-200.pcap"), "--json"]);
    assert!(json(&o).get("truncated").is_none());
    assert_eq!(
        std::fs::read_to_string(out.join("sweep.csv"))
            .unwrap()
            .lines()
            .next(),
        Some(
            "nat_ips,allocator,ports,idle,fin_hold,load,flows,snat_failures,failure_rate,\
             peak_ports_in_use,peak_ports_busy,peak_flows,packets,dropped"
        )
    );
}
