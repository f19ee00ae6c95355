//! Classify + NAT rewrite per packet: the cost every stage pays.
//!
//! `cargo bench --bench wire`

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkType, TcpFlags, classify};

fn frames(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let t = tuple(
                Ipv4Addr::from(0x0a00_0000 + i),
                1024 + (i % 60000) as u16,
                Ipv4Addr::new(10, 1, 0, 4),
                443,
            );
            TcpSegment {
                seq: i,
                payload: &[0u8; 10],
                ..TcpSegment::new(t, TcpFlags::ACK)
            }
            .to_vec()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut batch = frames(1024);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("classify", |b| {
        b.iter(|| {
            for f in &batch {
                black_box(classify(LinkType::Ethernet, black_box(f), f.len()).is_ok());
            }
        })
    });
    g.bench_function("classify+snat_rewrite", |b| {
        let nat = Ipv4Addr::new(10, 10, 1, 4);
        let mut port = 1024u16;
        b.iter(|| {
            for f in batch.iter_mut() {
                let len = f.len();
                let mut v = classify(LinkType::Ethernet, f, len).unwrap();
                port = port.wrapping_add(1);
                v.set_source(f, nat, port);
            }
        })
    });
    g.bench_function("classify+src+dst_rewrite", |b| {
        let (nat, backend) = (Ipv4Addr::new(10, 10, 1, 4), Ipv4Addr::new(10, 10, 2, 4));
        b.iter(|| {
            for f in batch.iter_mut() {
                let len = f.len();
                let mut v = classify(LinkType::Ethernet, f, len).unwrap();
                v.set_destination(f, backend, 8443);
                v.set_source(f, nat, 2000);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
