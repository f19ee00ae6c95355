//! The endpoint stage's forward path: table lookup, approval check, destination rewrite.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plsim_endpoint::{Endpoint, EndpointTable, VnetId};
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{LinkId, LinkType, SimTime, TcpFlags, classify};

fn forward(c: &mut Criterion) {
    let mut t = EndpointTable::new();
    // 1024 endpoints over 16 VNets.
    for i in 0..1024u32 {
        t.insert(Endpoint {
            link: LinkId(i + 1),
            vnet: VnetId(i % 16),
            address: Ipv4Addr::new(10, 0, (i / 16 / 250) as u8, (i / 16 % 250 + 4) as u8),
            frontend: Ipv4Addr::new(10, 10, 0, 4),
            approved: true,
        })
        .unwrap();
    }
    let frame = TcpSegment::new(
        tuple(
            Ipv4Addr::new(10, 0, 1, 10),
            40000,
            Ipv4Addr::new(10, 0, 0, 9),
            443,
        ),
        TcpFlags::ACK,
    )
    .to_vec();
    let len = frame.len();
    let view = classify(LinkType::Ethernet, &frame, len).unwrap();
    let mut g = c.benchmark_group("endpoint");
    g.throughput(Throughput::Elements(1));
    g.bench_function("forward", |b| {
        let mut f = frame.clone();
        b.iter(|| {
            f.copy_from_slice(&frame);
            let mut v = view;
            black_box(t.forward(VnetId(5), &mut f, &mut v, SimTime::ZERO)).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
