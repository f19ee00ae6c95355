//! Real smoltcp connections through the built-in scenario's whole path: how many packets a
//! second the driver, smoltcp and the path (one trip a packet) manage together, in one thread.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plsim_control::Scenario;
use plsim_traffic::tcp::{EchoSpec, run_echo};
use std::hint::black_box;

use plsim_lab::tcp::{TcpStages, tcp_path};

fn setup(connections: u32, bytes: u64) -> (TcpStages, EchoSpec) {
    tcp_path(&Scenario::builtin(), connections, bytes).expect("the built-in scenario builds")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tcp_echo");
    g.sample_size(10);
    for (n, bytes) in [(50u32, 100_000u64), (200, 10_000)] {
        let (stages, spec) = setup(n, bytes);
        let (o, _) = run_echo(stages, &spec).expect("a valid spec");
        assert_eq!(o.completed, n);
        g.throughput(Throughput::Elements(o.consumer_in + o.backend_in));
        g.bench_function(format!("{n}x{bytes}B_packets"), |b| {
            b.iter(|| {
                let (stages, spec) = setup(n, bytes);
                black_box(run_echo(stages, &spec).expect("a valid spec").0.completed)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
