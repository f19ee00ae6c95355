//! A capture's traffic mix and what the path would drop, and why (`plsim inspect`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use plsim_pcap::Reader;
use plsim_wire::{DropReason, FlowKey, classify};
use serde::Serialize;

/// What `inspect` reports (and `--json` prints).
#[derive(Serialize, Debug, Default)]
pub struct Report {
    /// The capture's path.
    pub file: String,
    /// pcap or pcapng, and the timestamp resolution.
    pub format: String,
    /// Packets read.
    pub packets: u64,
    /// Captured bytes.
    pub bytes: u64,
    /// Bytes on the wire (larger when the capture snapped frames).
    pub wire_bytes: u64,
    /// The capture was cut short or damaged; it was read up to there.
    pub truncated: bool,
    /// The link types of its packets.
    pub link_types: Vec<String>,
    /// The first packet's time, seconds since the epoch.
    pub first_ts_s: Option<f64>,
    /// The last packet's time, seconds since the epoch.
    pub last_ts_s: Option<f64>,
    /// From the first packet to the last, in seconds.
    pub span_s: f64,
    /// Packets per class.
    pub classes: Classes,
    /// TCP connections (both directions of each together).
    pub tcp_flows: u64,
    /// Those whose first packet in the capture is a SYN.
    pub tcp_flows_with_syn: u64,
    /// What the reader warned of (the damage that cut the capture short).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Packets per class; the six add up to `packets`.
#[derive(Serialize, Debug, Default, PartialEq, Eq)]
pub struct Classes {
    /// IPv4 TCP: what the path carries.
    pub ipv4_tcp: u64,
    /// IPv6.
    pub ipv6: u64,
    /// IPv4, not TCP.
    pub non_tcp: u64,
    /// Not IP.
    pub non_ip: u64,
    /// IPv4 fragments.
    pub fragment: u64,
    /// Malformed headers.
    pub malformed: u64,
}

/// Reads a whole capture and tallies it.
pub fn inspect(path: &Path) -> crate::Result<Report> {
    let mut reader = Reader::open(path)?;
    let mut r = Report {
        file: path.display().to_string(),
        format: reader.format().to_string(),
        ..Report::default()
    };
    let mut links = BTreeSet::new();
    // Whether the first packet of each connection seen was a SYN.
    let mut flows: HashMap<FlowKey, bool> = HashMap::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    while let Some(p) = reader.next_frame() {
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
                    .entry(v.tuple().flow_key())
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
