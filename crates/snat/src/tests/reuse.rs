//! The reuse record: every reuse, gap and hazard of a hand-made sequence, worked out by hand;
//! what it costs per tuple.

use super::*;

/// Two ports, `sequential`: a flow the backend closed first, one the consumer closed first, a
/// RST, an idle timeout, a teardown, a reopen, each port used again later.
fn two_ports(time_wait: u64) -> Snat {
    let mut c = cfg(1, 2000, 2001, ReuseScope::PerIp);
    c.timers.fin_hold = Duration::from_secs(10);
    c.timers.rst_hold = Duration::from_secs(5);
    c.timers.transitory = Duration::from_secs(30);
    c.track_reuse = Some(Duration::from_secs(time_wait));
    let mut s = Snat::new(c).unwrap();
    let host = |i: u8| ip(192, 168, 0, i);
    let t = |i: u8| tuple(host(i), 40_000, B, 443);
    let back = |port: u16| tuple(B, 443, nat(0), port);
    // A on 2000: the backend's FIN at 1 s, the consumer's at 2 s (the close), held to 12 s.
    assert_eq!(src_of(&out(&mut s, 1, t(1), SYN, secs(0)).unwrap()).1, 2000);
    inb(&mut s, back(2000), FINACK, secs(1)).unwrap();
    out(&mut s, 1, t(1), FINACK, secs(2)).unwrap();
    // B on 2001: the consumer's FIN at 4 s, the backend's at 5 s (the close), held to 15 s.
    assert_eq!(src_of(&out(&mut s, 1, t(2), SYN, secs(3)).unwrap()).1, 2001);
    out(&mut s, 1, t(2), FINACK, secs(4)).unwrap();
    inb(&mut s, back(2001), FINACK, secs(5)).unwrap();
    // C at 20 s: 2000 again (the cursor wrapped), 18 s after A's close: a hazard under 60 s.
    assert_eq!(
        src_of(&out(&mut s, 1, t(3), SYN, secs(20)).unwrap()).1,
        2000
    );
    // D at 21 s: 2001 again, 16 s after B's close, which the consumer began: no hazard.
    assert_eq!(
        src_of(&out(&mut s, 1, t(4), SYN, secs(21)).unwrap()).1,
        2001
    );
    // C is reset by its backend at 22 s (held to 27 s); D hears nothing more and goes at
    // 21 + 30 s. A SYN reopening C's held record at 23 s is no reuse; C's close is then its
    // RST at 24 s.
    inb(&mut s, back(2000), RSTF, secs(22)).unwrap();
    out(&mut s, 1, t(3), SYN, secs(23)).unwrap();
    inb(&mut s, back(2000), FINACK, secs(23)).unwrap();
    inb(&mut s, back(2000), RSTF, secs(24)).unwrap();
    // E at 100 s on 2000: 76 s after C's RST. F at 120 s on 2001: 99 s after D's last packet.
    assert_eq!(
        src_of(&out(&mut s, 1, t(5), SYN, secs(100)).unwrap()).1,
        2000
    );
    assert_eq!(
        src_of(&out(&mut s, 1, t(6), SYN, secs(120)).unwrap()).1,
        2001
    );
    // E and F torn down at 125 s: closes at their SYNs (100 s and 120 s). G and H at 131 s.
    assert_eq!(s.teardown(LinkId(1), secs(125)), 2);
    assert_eq!(
        src_of(&out(&mut s, 2, t(7), SYN, secs(131)).unwrap()).1,
        2000
    );
    assert_eq!(
        src_of(&out(&mut s, 2, t(8), SYN, secs(131)).unwrap()).1,
        2001
    );
    s.audit();
    s
}

#[test]
fn every_reuse_gap_and_hazard_of_a_hand_made_sequence() {
    let s = two_ports(60);
    let r = s.reuse().unwrap();
    assert_eq!(r.time_wait(), Duration::from_secs(60));
    let gaps: Vec<u64> = r.gaps(0).iter().map(|ns| ns / 1_000_000_000).collect();
    assert_eq!(gaps, [18, 16, 76, 99, 31, 11]);
    assert!(r.gaps(0).iter().all(|ns| ns % 1_000_000_000 == 0));
    assert_eq!(r.hazards(0), 1);
    let want = Reuse {
        reuses: 6,
        hazards: 1,
        gap_min: Some(Duration::from_secs(11)),
        // Sorted: 11, 16, 18, 31, 76, 99; the lower median is the third.
        gap_p50: Some(Duration::from_secs(18)),
    };
    assert_eq!(r.nat_ip(0), want);
    assert_eq!(r.total(), want);
    assert_eq!(r.tuples(), 2);
    // The hazard's gap is 18 s: strictly under the TIME_WAIT only.
    assert_eq!(two_ports(19).reuse().unwrap().total().hazards, 1);
    assert_eq!(two_ports(18).reuse().unwrap().total().hazards, 0);
    // Off: no record, the same ports.
    let mut c = cfg(1, 2000, 2001, ReuseScope::PerIp);
    c.track_reuse = None;
    assert!(Snat::new(c).unwrap().reuse().is_none());
}

#[test]
fn gaps_merge_into_one_median() {
    assert_eq!(Reuse::of(&[], 0), Reuse::default());
    assert_eq!(
        Reuse::of(&[&[5, 1], &[], &[9, 3]], 2),
        Reuse {
            reuses: 4,
            hazards: 2,
            gap_min: Some(Duration::from_nanos(1)),
            gap_p50: Some(Duration::from_nanos(3)),
        }
    );
    assert_eq!(Reuse::of(&[&[7]], 0).gap_p50, Some(Duration::from_nanos(7)));
}

/// What the record costs per distinct reply tuple: 200,000 flows on 200,000 tuples (four
/// backends), each closed and freed.
#[test]
fn the_record_costs_about_20_to_40_bytes_a_tuple() {
    let mut c = cfg(1, 1024, 65535, ReuseScope::PerBackend);
    c.track_reuse = Some(DEFAULT_TIME_WAIT);
    c.timers.rst_hold = Duration::from_secs(1);
    let mut s = Snat::new(c).unwrap();
    let n = 200_000u32;
    for i in 0..n {
        let c = Ipv4Addr::from(0x0a00_0000 + i / 50_000);
        let b = ip(10, 0, 0, 4 + (i % 4) as u8);
        let t = tuple(c, (i % 50_000) as u16 + 1, b, 443);
        out(&mut s, 1, t, SYN, secs(0)).unwrap();
        out(&mut s, 1, t, RSTF, secs(0)).unwrap();
    }
    let before = s.memory_bytes() - s.reuse().unwrap().memory_bytes();
    s.expire(secs(2));
    let r = s.reuse().unwrap();
    assert_eq!(r.tuples(), n as usize);
    assert_eq!(r.total().reuses, 0);
    let per_tuple = r.memory_bytes() as f64 / f64::from(n);
    // 262,144 buckets of 17 bytes for 200,000 tuples.
    assert!(
        (19.0..39.0).contains(&per_tuple),
        "{per_tuple} bytes a tuple"
    );
    eprintln!("the reuse record: {per_tuple:.1} bytes a tuple");
    assert!(s.memory_bytes() >= before + r.memory_bytes());
}
