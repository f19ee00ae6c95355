//! `plsim inspect`: a capture's traffic mix and what the path would drop, and why.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;

use plsim_pcap::Reader;
use plsim_wire::{DropReason, classify};
use serde::Serialize;

use crate::Failure;

/// What `inspect` reports (and `--json` prints).
#[derive(Serialize, Debug, Default)]
pub struct Report {
    pub file: String,
    pub format: String,
    pub packets: u64,
    /// Captured bytes.
    pub bytes: u64,
    /// Bytes on the wire (larger when the capture snapped frames).
    pub wire_bytes: u64,
    pub truncated: bool,
    pub link_types: Vec<String>,
    pub first_ts_s: Option<f64>,
    pub last_ts_s: Option<f64>,
    pub span_s: f64,
    pub classes: Classes,
    pub tcp_flows: u64,
    pub tcp_flows_with_syn: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Packets per class; the six add up to `packets`.
#[derive(Serialize, Debug, Default, PartialEq, Eq)]
pub struct Classes {
    pub ipv4_tcp: u64,
    pub ipv6: u64,
    pub non_tcp: u64,
    pub non_ip: u64,
    pub fragment: u64,
    pub malformed: u64,
}

/// Both directions of a TCP connection: the lower end first.
type ConnKey = ((Ipv4Addr, u16), (Ipv4Addr, u16));

/// Reads a whole capture and tallies it.
pub fn inspect(path: &Path) -> Result<Report, plsim_pcap::ReadError> {
    let mut reader = Reader::open(path)?;
    let mut r = Report {
        file: path.display().to_string(),
        format: reader.format().to_string(),
        ..Report::default()
    };
    let mut links = BTreeSet::new();
    // Whether the first packet of each connection seen was a SYN.
    let mut flows: HashMap<ConnKey, bool> = HashMap::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    while let Some(p) = reader.next_packet() {
        r.packets += 1;
        r.bytes += p.data.len() as u64;
        r.wire_bytes += p.wire_len as u64;
        links.insert(p.link.name());
        first = first.min(p.ts_ns);
        last = last.max(p.ts_ns);
        match classify(p.link, p.data, p.wire_len) {
            Ok(v) => {
                r.classes.ipv4_tcp += 1;
                flows
                    .entry(v.tuple().connection())
                    .or_insert_with(|| v.is_syn());
            }
            Err(DropReason::Ipv6) => r.classes.ipv6 += 1,
            Err(DropReason::NonTcp) => r.classes.non_tcp += 1,
            Err(DropReason::NonIp) => r.classes.non_ip += 1,
            Err(DropReason::Fragment) => r.classes.fragment += 1,
            Err(_) => r.classes.malformed += 1,
        }
    }
    r.truncated = reader.truncated();
    r.warning = reader.warning().map(str::to_string);
    r.link_types = links.into_iter().collect();
    if r.packets > 0 {
        r.first_ts_s = Some(first as f64 / 1e9);
        r.last_ts_s = Some(last as f64 / 1e9);
        r.span_s = (last - first) as f64 / 1e9;
    }
    r.tcp_flows = flows.len() as u64;
    r.tcp_flows_with_syn = flows.values().filter(|&&s| s).count() as u64;
    Ok(r)
}

pub fn run(path: &Path, json: bool) -> Result<(), Failure> {
    let r = inspect(path).map_err(|e| Failure::Input(e.to_string()))?;
    if let Some(w) = &r.warning {
        eprintln!("plsim: warning: {w}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("a report serializes")
        );
        return Ok(());
    }
    let c = &r.classes;
    let pct = |n: u64| {
        if r.packets == 0 {
            0.0
        } else {
            100.0 * n as f64 / r.packets as f64
        }
    };
    println!("{} ({}, {})", r.file, r.format, r.link_types.join(", "));
    println!(
        "  packets      {:>10}{}",
        r.packets,
        if r.truncated {
            "  (capture cut short)"
        } else {
            ""
        }
    );
    println!(
        "  bytes        {:>10} captured, {} on the wire",
        r.bytes, r.wire_bytes
    );
    println!("  time span    {:>10.3} s", r.span_s);
    println!(
        "  ipv4 tcp     {:>10}  {:5.1}%  carried",
        c.ipv4_tcp,
        pct(c.ipv4_tcp)
    );
    for (name, n) in [
        ("ipv6", c.ipv6),
        ("non_tcp", c.non_tcp),
        ("non_ip", c.non_ip),
        ("fragment", c.fragment),
        ("malformed", c.malformed),
    ] {
        println!("  {name:<12} {n:>10}  {:5.1}%  dropped", pct(n));
    }
    println!(
        "  tcp flows    {:>10}  ({} start with a SYN in the capture)",
        r.tcp_flows, r.tcp_flows_with_syn
    );
    Ok(())
}
