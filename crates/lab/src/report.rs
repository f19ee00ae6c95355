//! What the commands print for people, as text (`--json` prints the structures themselves).

use std::fmt::Write as _;

use plsim_engine::Engine;

use crate::bench::BenchReport;
use crate::inspect::Report;
use crate::plan::Plan;
use crate::summary::Summary;
use crate::theory::beside::{Beside, sig};
use crate::theory::rate::Answer;

/// `writeln!` into a `String`, which can't fail.
macro_rules! wl {
    ($o:expr, $($t:tt)*) => {{
        let _ = writeln!($o, $($t)*);
    }};
}

/// The drop reasons that counted anything, as `reason count`.
fn nonzero(d: &crate::summary::Dropped) -> Vec<String> {
    d.by_reason()
        .filter(|&(_, n)| n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect()
}

/// A run's summary.
pub fn summary(what: &str, s: &Summary) -> String {
    let mut o = String::new();
    let p = &s.packets;
    wl!(
        o,
        "{what}: {} packets over {:.3} s of simulated time, run in {:.3} s ({:.2} Mpps){}",
        s.input.packets,
        s.sim_time_s,
        s.throughput.wall_s,
        s.throughput.packets_per_sec / 1e6,
        match (s.interrupted, s.input.truncated) {
            (true, _) => ", INTERRUPTED: the input after these was not read",
            (false, true) => ", capture cut short",
            (false, false) => "",
        }
    );
    wl!(
        o,
        "  consumer side  {:>10} in, {:>10} delivered to the consumer",
        p.consumer_in,
        p.to_consumer
    );
    wl!(
        o,
        "  backend side   {:>10} in, {:>10} delivered to the backends",
        p.backend_in,
        p.to_backend
    );
    let reasons = nonzero(&p.dropped);
    wl!(
        o,
        "  dropped        {:>10}{}",
        p.dropped.total(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!("  ({})", reasons.join(", "))
        }
    );
    let f = &s.flows;
    wl!(
        o,
        "  flows          {} created, {} closed, {} expired, {} torn down, records: {} at most, {} at the end (open or holding a port)",
        f.created,
        f.closed,
        f.expired,
        f.torn_down,
        f.active_peak,
        f.active_end
    );
    wl!(o, "  SNAT failures  {}", f.snat_failures);
    if s.packets.rst_to_consumer > 0 {
        wl!(
            o,
            "  RSTs sent      {} (to SYNs no NAT port was left for)",
            s.packets.rst_to_consumer
        );
    }
    if s.packets.proxy_headers > 0 {
        wl!(
            o,
            "  PROXY headers  {} (PROXY protocol v2, to the backends)",
            s.packets.proxy_headers
        );
    }
    for c in &s.connections {
        let drops = nonzero(&c.dropped);
        wl!(
            o,
            "  link {:<3} {} -> {} ({}): {} to the backends, {} to the consumer, {} flows{}",
            c.link_id,
            c.endpoint,
            c.service,
            c.state,
            c.to_backend,
            c.to_consumer,
            c.flows_created,
            if drops.is_empty() {
                String::new()
            } else {
                format!(", dropped {}", drops.join(", "))
            }
        );
    }
    for n in &s.nat_ips {
        wl!(
            o,
            "  NAT IP {:<15} {:>8} flows; ports busy (in use + held) {:>7} at most of {}, in use {:>7} at most; at the end {} in use, {} held",
            n.ip,
            n.flows,
            n.ports_busy_peak,
            n.ports_total,
            n.ports_in_use_peak,
            n.ports_in_use_end,
            n.ports_held_end
        );
    }
    if let Some(t) = s.tcp {
        wl!(
            o,
            "  tcp            {} of {} connections completed, {} bytes verified",
            t.completed,
            t.connections,
            t.bytes_verified
        );
        if let Some(n) = t.proxy_headers_verified {
            wl!(
                o,
                "  PROXY headers  {n} of {} verified by the backends",
                t.connections
            );
        }
    } else {
        wl!(
            o,
            "  latency        p50 {:.1} us, p99 {:.1} us, max {:.1} us (in the engine, wall clock)",
            s.latency_ns.p50 as f64 / 1e3,
            s.latency_ns.p99 as f64 / 1e3,
            s.latency_ns.max as f64 / 1e3
        );
    }
    o
}

/// `plsim scenario check` of a scenario that passed: what it holds.
pub fn scenario_ok(file: &std::path::Path, s: &plsim_control::Scenario) -> String {
    format!(
        "{}: ok ({} services, {} endpoints, {} timeline events)\n",
        file.display(),
        s.services.len(),
        s.endpoints.len(),
        s.timeline.len()
    )
}

/// `plsim inspect`.
pub fn inspect(r: &Report) -> String {
    let mut o = String::new();
    let c = &r.classes;
    let pct = |n: u64| {
        if r.packets == 0 {
            0.0
        } else {
            100.0 * n as f64 / r.packets as f64
        }
    };
    wl!(o, "{} ({}, {})", r.file, r.format, r.link_types.join(", "));
    wl!(
        o,
        "  packets      {:>10}{}",
        r.packets,
        if r.truncated {
            "  (capture cut short)"
        } else {
            ""
        }
    );
    wl!(
        o,
        "  bytes        {:>10} captured, {} on the wire",
        r.bytes,
        r.wire_bytes
    );
    wl!(o, "  time span    {:>10.3} s", r.span_s);
    wl!(
        o,
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
        wl!(o, "  {name:<12} {n:>10}  {:5.1}%  dropped", pct(n));
    }
    wl!(
        o,
        "  tcp flows    {:>10}  ({} start with a SYN in the capture)",
        r.tcp_flows,
        r.tcp_flows_with_syn
    );
    o
}

/// `plsim plan`.
pub fn plan(input: &str, plan: &Plan) -> String {
    let mut o = String::new();
    match plan.nat_ips_needed {
        None if plan.interrupted => wl!(
            o,
            "{}: INTERRUPTED after {} replays: {}",
            input,
            plan.runs.len(),
            match plan.nat_ips_enough {
                Some(n) => format!("{n} NAT IPs lose no flow, fewer were not all tried"),
                None => "no answer yet".to_owned(),
            }
        ),
        Some(n) => wl!(
            o,
            "{}: {n} NAT IP{} lose no flow to port exhaustion",
            input,
            if n == 1 { "" } else { "s" }
        ),
        None => wl!(
            o,
            "{}: even {} NAT IPs lose {} flows to port exhaustion",
            input,
            plan.nat_ips_available,
            plan.snat_failures
        ),
    }
    let t = &plan.timers;
    wl!(
        o,
        "  ports {} per NAT IP, reuse {}, timers idle {} s, transitory {} s, FIN hold {} s, RST hold {} s",
        plan.ports_per_nat_ip,
        plan.reuse,
        t.idle.as_secs(),
        t.transitory.as_secs(),
        t.fin_hold.as_secs(),
        t.rst_hold.as_secs()
    );
    wl!(
        o,
        "  peak: {} concurrent flows; busiest NAT IP {} of {} ports in use or held ({:.1}% headroom)",
        plan.peak_concurrent_flows,
        plan.peak_ports_per_nat_ip,
        plan.ports_total_per_nat_ip,
        plan.headroom * 100.0
    );
    for r in &plan.runs {
        wl!(
            o,
            "  with {} NAT IPs: {} flows, {} SNAT failures",
            r.nat_ips,
            r.flows,
            r.snat_failures
        );
    }
    match &plan.theory {
        Some(t) => theory(&mut o, t),
        None => wl!(
            o,
            "  theory: none (the replay at the most NAT IPs did not run to its end, or the \
             capture opened no flow over any time)"
        ),
    }
    o
}

/// A share of flows lost: six decimals, or three significant digits below one in a million
/// (none at all: 0).
fn loss(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if x < 1e-6 {
        format!("{x:.2e}")
    } else {
        format!("{x:.6}")
    }
}

/// The fewest NAT IPs for a loss target, in words.
fn sized(target: f64, n: Option<usize>) -> String {
    match n {
        Some(n) => format!(
            "at most {} of flows lost with {n} NAT IP{}",
            sig(target),
            if n == 1 { "" } else { "s" }
        ),
        None => format!(
            "more than {} of flows lost even with 8 NAT IPs",
            sig(target)
        ),
    }
}

/// The theory beside a plan: what the capture offered, Erlang B beside each count's replay,
/// and why they part where they do.
fn theory(o: &mut String, t: &Beside) {
    let off = &t.offered;
    let m = &off.measure;
    wl!(
        o,
        "  offered: {} flows over {} s ({} a second), each holding its port {} s on average: {} erlangs",
        off.flows,
        sig(m.span_s),
        sig(off.rate_per_s),
        sig(off.hold_s),
        sig(off.load_erlangs)
    );
    match off.scopes.as_slice() {
        [one] if one.scope == "all" => wl!(o, "  port scopes: one, every flow's (per-ip)"),
        scopes => wl!(
            o,
            "  port scopes: {} backends, the busiest offered {:.1}% of the flows ({} erlangs)",
            scopes.len(),
            100.0 * off.busiest_scope_share,
            sig(scopes.iter().map(|s| s.load_erlangs).fold(0.0, f64::max))
        ),
    }
    if let Some(d) = m.dispersion {
        wl!(
            o,
            "  arrivals: index of dispersion {} over {} s windows (1 for Poisson); {} consumer hosts, the busiest {:.1}% of the flows",
            sig(d.index),
            sig(d.window_s),
            m.hosts,
            100.0 * m.busiest_host_share
        );
    }
    wl!(o, "  NAT IPs      ports   replay loss     Erlang B");
    for c in &t.counts {
        wl!(
            o,
            "  {:>7} {:>10} {:>13} {:>12}{}",
            c.nat_ips,
            c.ports,
            c.replay_loss.map_or("-".to_owned(), loss),
            loss(c.erlang_b),
            if c.parts { "   they part" } else { "" }
        );
    }
    wl!(o, "  theory: {}", sized(t.loss_target, t.nat_ips_for_loss));
    for r in &t.reasons {
        wl!(o, "  where they part: {r}");
    }
}

/// `plsim plan --rate R --hold S` (and `--check`).
pub fn plan_rate(a: &Answer) -> String {
    let mut o = String::new();
    let scopes = match a.reuse {
        plsim_snat::ReuseScope::PerBackend => format!(
            "per-backend: {} backends, {} erlangs each",
            a.backends,
            sig(a.load_erlangs / f64::from(a.backends.max(1)))
        ),
        plsim_snat::ReuseScope::PerIp => "per-ip: one scope".to_owned(),
    };
    wl!(
        o,
        "{} flows a second holding their ports {} s: {} erlangs ({scopes}), {} ports per NAT IP",
        sig(a.rate_per_s),
        sig(a.hold_s),
        sig(a.load_erlangs),
        a.ports_per_nat_ip
    );
    let checked = a.counts.iter().any(|c| c.simulated.is_some());
    wl!(
        o,
        "  NAT IPs      ports     Erlang B{}",
        if checked {
            "    simulated  (flows, SNAT failures)"
        } else {
            ""
        }
    );
    for c in &a.counts {
        let sim = c.simulated.map_or(String::new(), |s| {
            format!(" {:>12}  ({}, {})", loss(s.loss), s.flows, s.snat_failures)
        });
        wl!(
            o,
            "  {:>7} {:>10} {:>12}{sim}",
            c.nat_ips,
            c.ports,
            loss(c.erlang_b)
        );
    }
    wl!(o, "  {}", sized(a.loss_target, a.nat_ips_needed));
    if let Some(c) = &a.check {
        let m = &c.measured;
        wl!(
            o,
            "  checked: {} Poisson flows a run, lives {}, FIN hold {} s, {} data packets a flow, {} hosts; as run: {} flows a second, each holding its port {} s",
            c.flows,
            c.durations,
            sig(c.fin_hold_s),
            c.packets_per_flow,
            c.hosts,
            sig(m.flows as f64 / m.span_s.max(f64::MIN_POSITIVE)),
            sig(m.hold_s)
        );
    }
    o
}

/// `plsim bench`.
pub fn bench(engine: Engine, r: &BenchReport) -> String {
    let mut o = String::new();
    wl!(
        o,
        "plsim bench: {} live flows on {} backends, {} frames of 64 bytes through the {engine} engine",
        r.flows,
        r.backends,
        r.packets
    );
    if r.proxy_protocol {
        wl!(
            o,
            "  PROXY protocol v2 on: {} headers sent as the flows opened, every timed frame shifted",
            r.proxy_headers
        );
    }
    if !r.complete {
        wl!(
            o,
            "  NOT A THROUGHPUT FIGURE: {} packets dropped while opening the flows, {} in the timed phase ({} of {} delivered)",
            r.setup_dropped,
            r.dropped,
            r.delivered,
            r.packets
        );
    }
    match (r.reference_mpps, r.ratio) {
        (Some(reference), Some(ratio)) => {
            wl!(
                o,
                "  throughput     {:.2} Mpps ({:.3} s); the single-core reference NAT loop: {:.2} Mpps ({:.2}x)",
                r.mpps,
                r.wall_s,
                reference,
                ratio
            );
            let each: Vec<String> = r
                .rounds
                .iter()
                .filter_map(|x| x.ratio.map(|q| format!("{q:.2}x")))
                .collect();
            wl!(
                o,
                "  rounds         {} (the path, then the reference loop, each round): {}",
                r.rounds.len(),
                each.join(", ")
            );
        }
        _ => wl!(
            o,
            "  throughput     {:.2} Mpps ({:.3} s); the reference loop left out (--no-reference)",
            r.mpps,
            r.wall_s
        ),
    }
    wl!(
        o,
        "  flow setup     {:.0} flows/s (SYN, SYN-ACK, ACK through the whole path)",
        r.setup_per_sec
    );
    wl!(
        o,
        "  flow state     {:.1} bytes per live flow: load balancer {:.1}, SNAT {:.1}, connection table {:.1}; peak RSS {:.1} MiB",
        r.bytes_per_flow.lb + r.bytes_per_flow.snat + r.bytes_per_flow.table,
        r.bytes_per_flow.lb,
        r.bytes_per_flow.snat,
        r.bytes_per_flow.table,
        r.peak_rss_bytes as f64 / (1 << 20) as f64
    );
    wl!(
        o,
        "  delivered      {} of {} (dropped {}; while opening the flows {})",
        r.delivered,
        r.packets,
        r.dropped,
        r.setup_dropped
    );
    let st = &r.stage_ns_per_packet;
    wl!(
        o,
        "  stage time     endpoint {:.1} ns, core (load balancer and SNAT) {:.1} ns per packet (batches of {})",
        st.endpoint,
        st.core,
        r.batch
    );
    o
}

#[cfg(test)]
mod tests {
    use plsim_control::Scenario;
    use plsim_engine::NoTaps;

    use crate::replay::Frames;
    use crate::run::{RunSpec, run};

    #[test]
    fn a_summary_in_words_names_every_count_and_drop() {
        let frames: Vec<_> = plsim_traffic::captures::mix()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        let s = Scenario::builtin();
        let (out, _) = run(&mut Frames::new(&frames), &RunSpec::new(&s), NoTaps).unwrap();
        let text = super::summary("mix", &out.summary);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("mix: 20 packets over "), "{text}");
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with("dropped") && l.contains("malformed 9")),
            "{text}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("NAT IP 10.10.1."))
                .count(),
            8
        );
    }
}
