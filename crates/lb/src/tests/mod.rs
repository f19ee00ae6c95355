//! The forwarder's tests: its behaviour with exact counts, bytes and states (`forwarder`), the
//! properties (`props`), and what only the inside shows (the prefetch hooks' buckets, the
//! table's invariants, below).

mod forwarder;
mod props;

use plsim_flowtab::Record;
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkType, TcpFlags, classify};

use super::*;
use crate::forward::{fwd_hash, rev_hash};

/// What the tests ask of the forwarder beyond what the path does: where a new flow would go,
/// where a live flow goes, the table's size and the drops.
impl Lb {
    /// The backend and port a new flow C:cp -> F:fp of `link` would get now (what
    /// [`forward`](Lb::forward) would pick for it if no flow had this tuple). Changes nothing.
    pub(crate) fn pick(
        &self,
        link: LinkId,
        consumer: FlowTuple,
    ) -> Result<(Ipv4Addr, u16), DropReason> {
        let h = hash::flow(
            link.0,
            u32::from(consumer.src),
            consumer.sport,
            u32::from(consumer.dst),
            consumer.dport,
        );
        self.pick_inner(link.0, consumer, h)
            .map(|(_, b, port)| (self.backends[b as usize].ip, port))
    }

    /// The backend and port of the live flow C:cp -> F:fp of `link`, if there is one.
    pub(crate) fn flow(&self, link: LinkId, consumer: FlowTuple) -> Option<(Ipv4Addr, u16)> {
        let (c, f) = (u32::from(consumer.src), u32::from(consumer.dst));
        let h = hash::flow(link.0, c, consumer.sport, f, consumer.dport);
        let slot = self.table.find_fwd(h, |x| {
            x.fwd_is(link.0, c, consumer.sport, f, consumer.dport)
        })?;
        let flow = self.table.get(slot);
        Some((Ipv4Addr::from(flow.backend_ip), flow.bport))
    }

    /// The number of flows in the table.
    pub(crate) fn active_flows(&self) -> usize {
        self.table.len()
    }

    /// The packets dropped so far, by reason.
    pub(crate) fn drops(&self) -> &DropCounts {
        &self.drops
    }
}

/// The prefetch hooks hash a packet exactly as `forward` and `reverse` do, so they prefetch the
/// very bucket the lookup reads (and its first entry is the flow's); they change nothing.
#[test]
fn prefetch_targets_the_lookups_bucket() {
    let f = Ipv4Addr::new(10, 100, 0, 4);
    let mut lb = Lb::new(LbConfig {
        frontends: vec![Frontend { ip: f }],
        pools: vec![Pool::new(
            "p",
            (1..=4).map(|i| Ipv4Addr::new(192, 168, 1, i)),
        )],
        rules: vec![Rule::port(f, 443, 8443, "p")],
        ..LbConfig::default()
    })
    .unwrap();
    // On an empty table (no bucket at all) the hooks do nothing.
    let probe =
        TcpSegment::new(tuple(Ipv4Addr::new(10, 0, 0, 1), 1, f, 443), TcpFlags::SYN).to_vec();
    let pv = classify(LinkType::Ethernet, &probe, probe.len()).unwrap();
    lb.prefetch_forward(LinkId(1), &pv);
    lb.prefetch_reverse(LinkId(1), &pv);
    for i in 0..500u16 {
        let link = LinkId(u32::from(i % 3));
        let t = tuple(Ipv4Addr::new(10, 0, (i / 100) as u8, 1), 1000 + i, f, 443);
        let mut fr = TcpSegment::new(t, TcpFlags::SYN).to_vec();
        let mut v = classify(LinkType::Ethernet, &fr, fr.len()).unwrap();
        let before = lb.stats();
        lb.prefetch_forward(link, &v);
        lb.prefetch_reverse(link, &v);
        assert_eq!(lb.stats(), before);
        let h = fwd_hash(link, v.tuple());
        let fw = lb.forward(link, &mut fr, &mut v, SimTime::ZERO).unwrap();
        let slot = lb
            .table
            .find_fwd(h, |x| {
                x.fwd_is(link.0, u32::from(t.src), t.sport, u32::from(f), 443)
            })
            .unwrap();
        let flow = *lb.table.get(slot);
        assert_eq!(h, flow.fwd_hash());
        assert_eq!(lb.table.candidate_fwd(h), Some(slot));
        // The backend's reply B:8443 -> C:cp.
        let r = tuple(fw.backend, 8443, t.src, t.sport);
        assert_eq!(fw.port, 8443);
        assert_eq!(rev_hash(link, r), flow.rev_hash());
        assert_eq!(lb.table.candidate_rev(rev_hash(link, r)), Some(slot));
    }
    assert_eq!(lb.active_flows(), 500);
    assert_eq!(size_of::<table::Flow>(), 40);
}

/// Under a long random mix of new flows, packets, replies, expiry, backends going down
/// (with `Reset`) and links forgotten, the flow table keeps its invariants (both indexes,
/// one current timer per flow never later than its idle deadline, the free list) and the
/// backends' active counts add up to it.
#[test]
fn the_table_stays_consistent_under_churn() {
    use plsim_wire::hash::splitmix64;

    let f = Ipv4Addr::new(10, 100, 0, 4);
    let backend = |i: u64| Ipv4Addr::new(192, 168, 1, 1 + i as u8);
    for seed in 0..4u64 {
        let mut lb = Lb::new(LbConfig {
            frontends: vec![Frontend { ip: f }],
            pools: vec![Pool::new("p", (0..4).map(backend))],
            rules: vec![Rule::ha_ports(f, "p")],
            idle_timeout: std::time::Duration::from_secs(5),
            on_backend_down: OnBackendDown::Reset,
        })
        .unwrap();
        let mut now = SimTime::ZERO;
        for step in 0..3_000u64 {
            let r = splitmix64(seed << 32 | step);
            let link = LinkId((r % 3) as u32);
            let c = tuple(
                Ipv4Addr::new(10, 0, 0, (r >> 8) as u8 % 4),
                1000 + (r >> 16) as u16 % 64,
                f,
                443,
            );
            match (r >> 32) % 16 {
                0..=8 => {
                    let flags = if r >> 40 & 1 == 0 {
                        TcpFlags::SYN
                    } else {
                        TcpFlags::ACK
                    };
                    let mut fr = TcpSegment::new(c, flags).to_vec();
                    let mut v = classify(LinkType::Ethernet, &fr, fr.len()).unwrap();
                    if let Ok(fw) = lb.forward(link, &mut fr, &mut v, now) {
                        let back = tuple(fw.backend, fw.port, c.src, c.sport);
                        let mut fr = TcpSegment::new(back, TcpFlags::ACK).to_vec();
                        let mut v = classify(LinkType::Ethernet, &fr, fr.len()).unwrap();
                        lb.reverse(link, &mut fr, &mut v, now).unwrap();
                    }
                }
                9..=12 => now = now + std::time::Duration::from_millis(r >> 48 & 2047),
                13 => {
                    lb.expire(now);
                }
                14 => {
                    let up = r >> 44 & 1 == 0;
                    lb.set_backend_up(backend(r >> 45 & 3), up, now).unwrap();
                }
                _ => {
                    lb.forget_link(link);
                }
            }
            let idle = lb.idle_ns;
            lb.table.assert_consistent(|f| f.deadline(idle));
            let active: u64 = lb.stats().backends.iter().map(|b| b.active_flows).sum();
            assert_eq!(active, lb.active_flows() as u64);
        }
    }
}
