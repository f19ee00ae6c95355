//! A checker the workload tests share: replays a workload's packets through a strict TCP
//! conversation tracker and fails on the first thing a real stack or plsim would not accept.

use std::collections::HashMap;

use plsim_traffic::workload::{Close, Packet, WorkloadSpec};
use plsim_wire::Dir;
use plsim_wire::{FlowTuple, LinkType, TcpFlags, checksum, classify};

/// What one flow looked like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowSeen {
    /// The consumer-side tuple (client -> server).
    pub tuple: Option<FlowTuple>,
    /// (direction is to server, flags, payload length) of every packet.
    pub packets: Vec<(bool, u8, usize)>,
    /// Payload bytes both ways.
    pub payload: u64,
    /// First and last timestamps.
    pub first_ns: u64,
    pub last_ns: u64,
}

/// Everything seen, by flow number.
pub struct Seen {
    pub flows: HashMap<u64, FlowSeen>,
    pub packets: u64,
}

struct Live {
    client_next: u32,
    server_next: Option<u32>,
}

fn ack_of(frame: &[u8], l4: usize) -> u32 {
    u32::from_be_bytes(frame[l4 + 8..l4 + 12].try_into().unwrap())
}

/// Checks every packet (classification, checksums, order, tuples, seq/ack, no two live flows on
/// one 4-tuple, the packet count of each flow) and returns what each flow looked like.
pub fn check(spec: &WorkloadSpec, packets: impl IntoIterator<Item = Packet>) -> Seen {
    let steps = 3 + spec.profile.packets_per_flow as usize + spec.profile.close.packets() as usize;
    let mut flows: HashMap<u64, FlowSeen> = HashMap::new();
    let mut live: HashMap<u64, Live> = HashMap::new();
    let mut tuples: HashMap<FlowTuple, u64> = HashMap::new();
    let mut last_ts = 0;
    let mut count = 0;
    for p in packets {
        count += 1;
        let f = &p.frame;
        assert_eq!(f.wire_len, f.data.len());
        assert!(f.ts_ns >= last_ts, "time went back at packet {count}");
        last_ts = f.ts_ns;
        let view = classify(LinkType::Ethernet, &f.data, f.wire_len).expect("classifies");
        let verdict = checksum::verify(&f.data, &view);
        assert!(verdict.ip && verdict.tcp == Some(true), "{verdict:?}");
        let to_server = p.dir == Dir::Forward;
        let t = view.tuple();
        let up = if to_server { t } else { t.reversed() };
        assert_eq!((up.dst, up.dport), (*spec.server.ip(), spec.server.port()));
        let seen = flows.entry(p.flow).or_default();
        let seq = view.seq(&f.data);
        let ack = ack_of(&f.data, view.l4_offset());
        let flags = view.flags();
        let len = view.payload_len();
        if seen.packets.is_empty() {
            assert!(
                to_server && flags == TcpFlags::SYN && ack == 0,
                "flow starts with a SYN"
            );
            assert_eq!(tuples.insert(up, p.flow), None, "{up} reused while live");
            seen.tuple = Some(up);
            seen.first_ns = f.ts_ns;
            live.insert(
                p.flow,
                Live {
                    client_next: seq,
                    server_next: None,
                },
            );
        }
        assert_eq!(seen.tuple, Some(up));
        let l = live.get_mut(&p.flow).expect("packet of a finished flow");
        let used = len as u32 + u32::from(view.has(TcpFlags::SYN) || view.has(TcpFlags::FIN));
        if to_server {
            assert_eq!(seq, l.client_next, "client seq of flow {}", p.flow);
            if let Some(s) = l.server_next {
                assert_eq!(ack, s, "client ack of flow {}", p.flow);
            }
            l.client_next = seq.wrapping_add(used);
        } else {
            if let Some(s) = l.server_next {
                assert_eq!(seq, s, "server seq of flow {}", p.flow);
            } else {
                assert_eq!(flags, TcpFlags::SYN | TcpFlags::ACK);
            }
            assert_eq!(ack, l.client_next, "server ack of flow {}", p.flow);
            l.server_next = Some(seq.wrapping_add(used));
        }
        assert!(view.has(TcpFlags::ACK) || seen.packets.is_empty());
        seen.packets.push((to_server, flags, len));
        seen.payload += len as u64;
        seen.last_ns = f.ts_ns;
        if seen.packets.len() == steps {
            live.remove(&p.flow);
            tuples.remove(&up);
        }
        assert!(seen.packets.len() <= steps);
    }
    for (id, s) in &flows {
        assert_eq!(s.packets.len(), steps, "flow {id} is complete");
        assert_eq!(s.payload, spec.profile.bytes_per_flow);
        match spec.profile.close {
            Close::Fin | Close::ServerFin => {
                assert!(s.packets.iter().any(|p| p.1 & TcpFlags::FIN != 0))
            }
            Close::Rst | Close::Idle => assert!(s.packets.iter().all(|p| p.1 & TcpFlags::FIN == 0)),
        }
    }
    Seen {
        flows,
        packets: count,
    }
}
