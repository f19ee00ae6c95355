//! How fast a workload makes packets (into one reused buffer) and schedules flows.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plsim_traffic::workload::{Profile, Workload, WorkloadSpec};
use std::hint::black_box;

fn spec() -> WorkloadSpec {
    // 10,000 flows of 10 packets (handshake, 4 data, FIN close), about 500 open at once.
    WorkloadSpec::from(Profile {
        flows: Some(10_000),
        ..Profile::default()
    })
}

fn bench(c: &mut Criterion) {
    let s = spec();
    let mut g = c.benchmark_group("workload");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("packets_next_into", |b| {
        let mut buf = Vec::with_capacity(2048);
        b.iter(|| {
            let mut w = Workload::new(&s).unwrap();
            let mut n = 0u64;
            while let Some(m) = w.next_into(&mut buf) {
                n += m.ts_ns & 1;
            }
            black_box(n)
        })
    });
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("schedule_flows", |b| {
        b.iter(|| black_box(s.schedule().unwrap().map(|p| p.duration_ns).sum::<u64>()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
