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
    c.track_reuse = Some(ReuseTracking {
        time_wait: Duration::from_secs(time_wait),
        ..ReuseTracking::default()
    });
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
    // Every gap, in whole seconds: the histogram keeps each to three significant digits.
    let h = r.gaps(0);
    let mut gaps = Vec::new();
    for v in h.iter_recorded() {
        for _ in 0..v.count_at_value() {
            gaps.push(v.value_iterated_to());
        }
    }
    let want_s = [11u64, 16, 18, 31, 76, 99];
    assert_eq!(gaps.len(), want_s.len());
    for (&got, want) in gaps.iter().zip(want_s) {
        assert!(h.equivalent(got, want * 1_000_000), "{got} us for {want} s");
    }
    let got = r.nat_ip(0);
    assert_eq!((got.reuses, got.hazards), (6, 1));
    assert_eq!(
        got.gap_min,
        Some(Duration::from_secs(11)),
        "the shortest gap is exact"
    );
    // Sorted: 11, 16, 18, 31, 76, 99; the lower median is the third, to 3 digits.
    let p50 = got.gap_p50.unwrap().as_secs_f64();
    assert!((p50 - 18.0).abs() <= 18.0 * 1e-3, "p50 {p50} s");
    assert_eq!(r.total(), got);
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
    let hist = |gaps_us: &[u64]| {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        for &g in gaps_us {
            h.record(g).unwrap();
        }
        h
    };
    let none = hist(&[]);
    assert_eq!(Reuse::of([&none], None, 0), Reuse::default());
    let (a, b, c) = (hist(&[5, 1]), hist(&[]), hist(&[9, 3]));
    assert_eq!(
        Reuse::of([&a, &b, &c], Some(1_000), 2),
        Reuse {
            reuses: 4,
            hazards: 2,
            gap_min: Some(Duration::from_nanos(1_000)),
            gap_p50: Some(Duration::from_micros(3)),
        }
    );
    let one = hist(&[7]);
    assert_eq!(
        Reuse::of([&one], Some(7_000), 0).gap_p50,
        Some(Duration::from_micros(7))
    );
}

/// A tuple is forgotten once the horizon has passed since its record left the table: a reuse
/// further apart is not counted, and the record holds only what the horizon covers.
#[test]
fn the_horizon_bounds_what_is_counted_and_kept() {
    let mut c = cfg(1, 2000, 2000, ReuseScope::PerIp);
    c.timers.rst_hold = Duration::from_secs(1);
    c.track_reuse = Some(ReuseTracking {
        time_wait: Duration::from_secs(60),
        horizon: Duration::from_secs(100),
    });
    let mut s = Snat::new(c).unwrap();
    let t = |i: u8| tuple(ip(192, 168, 0, i), 40_000, B, 443);
    // One port: each flow reset at once and freed a second later; the next one reuses it.
    let mut at = 0;
    for (i, gap) in [(1u8, 0u64), (2, 50), (3, 100), (4, 101), (5, 30)] {
        at += gap;
        out(&mut s, 1, t(i), SYN, secs(at)).unwrap();
        out(&mut s, 1, t(i), RSTF, secs(at)).unwrap();
        s.expire(secs(at + 1));
    }
    let r = s.reuse().unwrap().total();
    // Gaps 50, 100 (at the horizon: counted), 101 (past it: not), 30.
    assert_eq!(r.reuses, 3);
    assert_eq!(r.gap_min, Some(Duration::from_secs(30)));
    // Long after: no reuse, and what the queue remembered from before is forgotten as the
    // next record leaves the table; the tuple is on record again from that close.
    out(&mut s, 1, t(6), SYN, secs(at + 501)).unwrap();
    out(&mut s, 1, t(6), RSTF, secs(at + 501)).unwrap();
    s.expire(secs(at + 550));
    let r = s.reuse().unwrap();
    assert_eq!((r.total().reuses, r.tuples()), (3, 1));
    // A record that leaves the table past the horizon from its close is forgotten at once.
    out(&mut s, 1, t(7), SYN, secs(at + 700)).unwrap();
    out(&mut s, 1, t(7), RSTF, secs(at + 700)).unwrap();
    s.expire(secs(at + 900));
    let r = s.reuse().unwrap();
    assert_eq!((r.total().reuses, r.tuples()), (3, 0));
}

/// What the record costs per distinct reply tuple: 200,000 flows on 200,000 tuples (four
/// backends), each closed and freed.
#[test]
fn the_record_costs_about_35_to_70_bytes_a_tuple_within_its_horizon() {
    let mut c = cfg(1, 1024, 65535, ReuseScope::PerBackend);
    c.track_reuse = Some(ReuseTracking::default());
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
    let fixed = (0..r.nat_ips())
        .map(|i| r.gaps(i).distinct_values() * 8)
        .sum::<usize>();
    let per_tuple = (r.memory_bytes() - fixed) as f64 / f64::from(n);
    // 262,144 map buckets of 17 bytes and 262,144 queue places of 16 for 200,000 tuples.
    assert!(
        (35.0..70.0).contains(&per_tuple),
        "{per_tuple} bytes a tuple"
    );
    eprintln!("the reuse record: {per_tuple:.1} bytes a tuple");
    assert!(s.memory_bytes() >= before + r.memory_bytes());
}
