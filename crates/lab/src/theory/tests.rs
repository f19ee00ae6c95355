use super::*;

/// `B(A, N)` exactly for whole `A` and small `N`: `A^N / Σ_k A^k·N!/k!`, in integers.
fn exact(a: u128, n: u32) -> f64 {
    let mut sum = 0u128;
    let mut falling = 1u128; // N!/k!, for k = N, N-1, ...
    let mut terms = Vec::new();
    for k in (0..=n).rev() {
        terms.push((k, falling));
        falling *= u128::from(k);
    }
    for (k, f) in terms {
        sum += a.pow(k) * f;
    }
    a.pow(n) as f64 / sum as f64
}

/// The log-space form: `1/B = Σ_j Π_{i<j} (N-i)/A`, the terms' logarithms summed
/// (compensated) and added up by log-sum-exp. Independent of the recurrence.
fn log_space(a: f64, n: u64) -> f64 {
    let mut logs = Vec::with_capacity(n as usize + 1);
    let (mut s, mut c) = (0.0f64, 0.0f64);
    logs.push(0.0);
    for i in 0..n {
        let y = ((n - i) as f64 / a).ln() - c;
        let t = s + y;
        c = (t - s) - y;
        s = t;
        logs.push(s);
    }
    let max = logs.iter().copied().fold(f64::MIN, f64::max);
    let sum: f64 = logs.iter().map(|l| (l - max).exp()).sum();
    (-(max + sum.ln())).exp()
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

#[test]
fn small_groups_are_exact() {
    assert_eq!(erlang_b(1.0, 0), 1.0);
    assert_eq!(erlang_b(1.0, 1), 0.5);
    assert!(close(erlang_b(1.0, 2), 0.2, 1e-15));
    for (a, n) in [(2u128, 5u32), (5, 10), (10, 20), (3, 7), (20, 25)] {
        let want = exact(a, n);
        let got = erlang_b(a as f64, u64::from(n));
        assert!(
            close(got, want, 1e-14),
            "B({a}, {n}) = {got}, exactly {want}"
        );
    }
    assert_eq!(erlang_b(0.0, 3), 0.0);
}

/// Published Erlang B tables (the offered load that loses 1% on N trunks, to the tables'
/// precision): 4.461 erlangs on 10, 12.03 on 20, 37.90 on 50, 84.06 on 100.
#[test]
fn published_tables() {
    for (a, n) in [(4.461, 10), (12.03, 20), (37.90, 50), (84.06, 100)] {
        let b = erlang_b(a, n);
        assert!((b - 0.01).abs() < 1e-5, "B({a}, {n}) = {b}");
    }
}

/// Half a million ports (eight NAT IPs of 1024-65535): the recurrence against the log-space
/// form and against values computed apart (mpmath at 40 digits, as the Poisson probability of
/// N over its distribution function up to N: `e^-A·A^N/N! / Q(N+1, A)`).
#[test]
// The values as mpmath printed them, more digits than an f64 holds.
#[allow(clippy::excessive_precision)]
fn half_a_million_ports_to_many_digits() {
    let n = 8 * 64_512;
    for (a, want) in [
        (500_000.0, 2.602_099_478_412_985_9e-115),
        (516_096.0, 0.001_109_821_923_270_115_9),
        (540_000.0, 0.044_306_573_595_981_51),
    ] {
        let got = erlang_b(a, n);
        assert!(close(got, want, 1e-9), "B({a}, {n}) = {got}, want {want}");
        let other = log_space(a, n);
        assert!(
            close(got, other, 1e-9),
            "B({a}, {n}) = {got}, log-space {other}"
        );
    }
    for (a, n, want) in [
        (100.0, 40, 0.606_330_347_489_224_4),
        (100.0, 80, 0.229_494_175_796_340_1),
        (100.0, 120, 0.005_690_054_606_869_932),
        (100.0, 160, 7.890_337_398_690_218e-9),
        (45.5, 64, 0.001_780_552_036_407_538),
    ] {
        let got = erlang_b(a, n);
        assert!(close(got, want, 1e-12), "B({a}, {n}) = {got}, want {want}");
        assert!(close(got, log_space(a, n), 1e-12));
    }
}

#[test]
fn one_pass_gives_every_count() {
    let at = erlang_b_at(100.0, &[160, 40, 0, 80, 120]);
    let each: Vec<f64> = [160, 40, 0, 80, 120]
        .iter()
        .map(|&n| erlang_b(100.0, n))
        .collect();
    assert_eq!(at, each);
    // Underflow stops the recurrence; what is left is zero.
    assert_eq!(erlang_b_at(1.0, &[10_000, 1]), vec![0.0, 0.5]);
}

#[test]
fn counts_weigh_each_scope_by_its_flows_and_find_the_fewest() {
    let scope = |rate: f64, load: f64| ScopeLoad {
        scope: String::new(),
        flows: 0,
        rate_per_s: rate,
        load_erlangs: load,
    };
    // Two backends, one three times the other's rate.
    let c = counts(&[scope(3.0, 60.0), scope(1.0, 20.0)], 40, 3);
    assert_eq!(c.len(), 3);
    for (i, c) in c.iter().enumerate() {
        let n = 40 * (i as u64 + 1);
        let want = (3.0 * erlang_b(60.0, n) + erlang_b(20.0, n)) / 4.0;
        assert_eq!((c.nat_ips, c.ports), (i + 1, n));
        assert!(close(c.erlang_b, want, 1e-15));
    }
    assert_eq!(fewest(&c, 0.01), Some(2));
    assert_eq!(fewest(&c, 1e-30), None);
}

#[test]
fn a_loss_past_the_smallest_normal_float_is_zero() {
    // 50,976 erlangs on 64,512 ports (what a 0.26 s capture of flows held 240 s offers one of
    // its backends): the true loss is far below 1e-308, and the recurrence's subnormal rounding
    // noise must not be printed as if it were a figure.
    let b = erlang_b(50_976.0, 64_512);
    assert_eq!(b, 0.0);
    // Just above the cut, a tiny loss is still given as it is.
    let small = erlang_b(100.0, 200);
    assert!(small > 1e-20 && small < 1e-10, "{small}");
}
