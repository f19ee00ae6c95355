//! The reference: the hand-written single-core NAT loop the engine must beat.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use plsim_wire::{FlowTuple, TcpFlags};

use super::frames::{FRAME_LEN, Template};
use super::timed::BenchAddrs;

/// The hand-written single-core NAT loop the engine must beat, with the same access pattern:
/// for each packet, flow after flow round robin, make its frame as the bench's feeder does
/// (copy the template, write the client end in), one hash lookup of its flow (`hashbrown`
/// with its default hasher, foldhash), the source rewrite with the incremental checksum
/// update.
pub struct Reference {
    ack: Template,
    table: hashbrown::HashMap<FlowTuple, (Ipv4Addr, u16)>,
    flows: u32,
}

impl Reference {
    /// The loop's table of `flows` flows, each with a NAT end.
    pub fn new(addrs: BenchAddrs, flows: u32) -> Reference {
        let ack = Template::new(addrs.clients, addrs.endpoint, TcpFlags::ACK, false);
        let mut table = hashbrown::HashMap::with_capacity(flows as usize);
        let mut buf = [0u8; FRAME_LEN];
        for i in 0..flows {
            let t = ack.write(i, &mut buf, false).tuple();
            table.insert(
                t,
                (
                    Ipv4Addr::from(0x0a0a_0104 + (i & 7)),
                    1024 + ((i >> 3) % 64_512) as u16,
                ),
            );
        }
        Reference {
            ack,
            table,
            flows: flows.max(1),
        }
    }

    /// Runs packets `from .. from + n` of the round robin (packet `k` is flow `k % flows`'s);
    /// returns the time they took.
    pub fn run(&mut self, from: u64, n: u64) -> Duration {
        let mut buf = [0u8; FRAME_LEN];
        let mut sum = 0u64;
        let start = Instant::now();
        let mut i = (from % u64::from(self.flows)) as u32;
        for _ in 0..n {
            let mut v = self.ack.write(i, &mut buf, false);
            if let Some(&(ip, port)) = self.table.get(&v.tuple()) {
                v.set_source(&mut buf, ip, port);
            }
            sum = sum.wrapping_add(u64::from(buf[24]));
            i += 1;
            if i == self.flows {
                i = 0;
            }
        }
        let wall = start.elapsed();
        std::hint::black_box(sum);
        wall
    }
}
