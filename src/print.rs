//! What the commands print for people (`--json` prints the library's structures instead).

use std::path::Path;

use plsim_engine::Engine;
use plsim_lab::bench::BenchReport;
use plsim_lab::inspect::Report;
use plsim_lab::plan::Plan;
use plsim_lab::summary::Summary;

/// A run's summary.
pub fn summary(what: &str, s: &Summary) {
    let p = &s.packets;
    println!(
        "{what}: {} packets over {:.3} s of simulated time, run in {:.3} s ({:.2} Mpps){}",
        s.input.packets,
        s.sim_time_s,
        s.throughput.wall_s,
        s.throughput.packets_per_sec / 1e6,
        if s.input.truncated {
            ", capture cut short"
        } else {
            ""
        }
    );
    println!(
        "  consumer side  {:>10} in, {:>10} delivered to the consumer",
        p.consumer_in, p.to_consumer
    );
    println!(
        "  backend side   {:>10} in, {:>10} delivered to the backends",
        p.backend_in, p.to_backend
    );
    let reasons: Vec<String> = p
        .dropped
        .by_reason()
        .filter(|&(_, n)| n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "  dropped        {:>10}{}",
        p.dropped.total(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!("  ({})", reasons.join(", "))
        }
    );
    let f = &s.flows;
    println!(
        "  flows          {} created, {} closed, {} expired, {} torn down, records: {} at most, {} at the end (open or holding a port)",
        f.created, f.closed, f.expired, f.torn_down, f.active_peak, f.active_end
    );
    println!("  SNAT failures  {}", f.snat_failures);
    for n in &s.nat_ips {
        println!(
            "  NAT IP {:<15} {:>8} flows, {:>7} ports in use at most, {:>7} at the end",
            n.ip, n.flows, n.ports_in_use_peak, n.ports_in_use_end
        );
    }
    if let Some(t) = s.tcp {
        println!(
            "  tcp            {} of {} connections completed, {} bytes verified",
            t.completed, t.connections, t.bytes_verified
        );
    } else {
        println!(
            "  latency        p50 {:.1} us, p99 {:.1} us, max {:.1} us (in the engine, wall clock)",
            s.latency_ns.p50 as f64 / 1e3,
            s.latency_ns.p99 as f64 / 1e3,
            s.latency_ns.max as f64 / 1e3
        );
    }
}

/// `plsim inspect`.
pub fn inspect(r: &Report) {
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
}

/// `plsim plan`.
pub fn plan(pcap: &Path, plan: &Plan) {
    match plan.nat_ips_needed {
        Some(n) => println!(
            "{}: {n} NAT IP{} lose no flow to port exhaustion",
            pcap.display(),
            if n == 1 { "" } else { "s" }
        ),
        None => println!(
            "{}: even {} NAT IPs lose {} flows to port exhaustion",
            pcap.display(),
            plan.nat_ips_available,
            plan.snat_failures
        ),
    }
    let t = &plan.timers;
    println!(
        "  ports {} per NAT IP, reuse {}, timers idle {} s, transitory {} s, FIN hold {} s, RST hold {} s",
        plan.ports_per_nat_ip,
        plan.reuse,
        t.idle.as_secs(),
        t.transitory.as_secs(),
        t.fin_hold.as_secs(),
        t.rst_hold.as_secs()
    );
    println!(
        "  peak: {} concurrent flows; busiest NAT IP {} of {} ports in use or held ({:.1}% headroom)",
        plan.peak_concurrent_flows,
        plan.peak_ports_per_nat_ip,
        plan.ports_total_per_nat_ip,
        plan.headroom * 100.0
    );
    for r in &plan.runs {
        println!(
            "  with {} NAT IPs: {} flows, {} SNAT failures",
            r.nat_ips, r.flows, r.snat_failures
        );
    }
}

/// `plsim bench`.
pub fn bench(engine: Engine, r: &BenchReport) {
    println!(
        "plsim bench: {} live flows, {} frames of 64 bytes through the {engine} engine",
        r.flows, r.packets
    );
    println!(
        "  throughput     {:.2} Mpps ({:.3} s); the single-core reference NAT loop: {:.2} Mpps ({:.2}x)",
        r.mpps,
        r.wall_s,
        r.reference_mpps,
        r.mpps / r.reference_mpps
    );
    println!(
        "  flow setup     {:.0} flows/s (SYN, SYN-ACK, ACK through the whole path)",
        r.setup_per_sec
    );
    println!(
        "  flow state     {:.1} bytes per live flow in the SNAT stage",
        r.bytes_per_flow
    );
    println!("  delivered      {} (dropped {})", r.delivered, r.dropped);
    let st = &r.stage_ns_per_packet;
    println!(
        "  stage time     endpoint {:.1} ns, load balancer {:.1} ns, SNAT {:.1} ns per packet (batches of {})",
        st.endpoint, st.lb, st.snat, r.batch
    );
}
