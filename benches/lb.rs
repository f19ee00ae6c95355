//! The load balancer frontend forwarder, per packet: packets of existing flows (lookup and
//! rewrite), replies of existing flows, and packets that open new flows (rule match, backend
//! pick, insert, amortised expiry), with the plain hash and with Maglev.
//!
//! `lb_batched`: at 1M flows, packets of existing flows (and their replies) in random flow order,
//! in batches of 256: without prefetch, with every bucket prefetched before the batch
//! (`buckets`, what the pipeline's hook does), and a sliding window (`window/K`: the bucket of
//! packet i+K prefetched while i is forwarded). (A second prefetch of the flow records, after
//! the buckets, measured about 20% slower than the buckets alone: it was dropped.)
//!
//! `cargo bench --bench lb -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plsim_lb::{Frontend, Hashing, Lb, LbConfig, Pool, Rule};
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{Ipv4Tcp, LinkId, LinkType, SimTime, TcpFlags, classify};

mod common;
use common::Mode;

const FLOWS: usize = 10_000;
const F: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 4);
const LINK: LinkId = LinkId(7);

/// Equal-length frames in one buffer, with their views.
#[derive(Clone)]
struct Batch {
    buf: Vec<u8>,
    views: Vec<Ipv4Tcp>,
    stride: usize,
}

impl Batch {
    /// `n` frames of `template`, the source of frame `i` set by `source(i)`.
    fn new(template: &[u8], n: usize, source: impl Fn(usize) -> (Ipv4Addr, u16)) -> Batch {
        let stride = template.len();
        let mut buf = Vec::with_capacity(stride * n);
        let mut views = Vec::with_capacity(n);
        for i in 0..n {
            buf.extend_from_slice(template);
            let frame = &mut buf[i * stride..];
            let mut v = classify(LinkType::Ethernet, frame, stride).unwrap();
            let (ip, port) = source(i);
            v.set_source(frame, ip, port);
            views.push(v);
        }
        Batch { buf, views, stride }
    }

    fn packets(&mut self) -> impl Iterator<Item = (&mut [u8], &mut Ipv4Tcp)> {
        self.buf
            .chunks_exact_mut(self.stride)
            .zip(self.views.iter_mut())
    }
}

fn client(i: usize) -> (Ipv4Addr, u16) {
    let i = i as u32;
    (
        Ipv4Addr::from(0x0a00_0000 | (i >> 8)),
        1024 + (i & 0xff) as u16,
    )
}

fn lb(hashing: Hashing) -> Lb {
    Lb::new(LbConfig {
        frontends: vec![Frontend { ip: F }],
        pools: vec![Pool::new(
            "web",
            (1..=8).map(|i| Ipv4Addr::new(192, 168, 1, i)),
        )],
        rules: vec![Rule {
            hashing,
            ..Rule::ha_ports(F, "web")
        }],
        idle_timeout: Duration::from_secs(2),
        ..LbConfig::default()
    })
    .unwrap()
}

fn forwarder(c: &mut Criterion) {
    let consumer =
        TcpSegment::new(tuple(Ipv4Addr::new(10, 0, 0, 1), 1, F, 443), TcpFlags::ACK).to_vec();
    let mut g = c.benchmark_group("lb");
    g.throughput(Throughput::Elements(FLOWS as u64));

    for (name, hashing) in [("plain", Hashing::Plain), ("maglev", Hashing::MAGLEV)] {
        // Existing flows: 10k flows in the table, one packet of each per iteration.
        let mut lb1 = lb(hashing);
        let pristine = Batch::new(&consumer, FLOWS, client);
        let mut opened = pristine.clone();
        let mut backends = Vec::with_capacity(FLOWS);
        for (f, v) in opened.packets() {
            let fw = lb1.forward(LINK, f, v, SimTime::ZERO).unwrap();
            backends.push(fw.backend);
        }
        g.bench_function(format!("forward_existing/{name}"), |b| {
            b.iter_batched_ref(
                || pristine.clone(),
                |batch| {
                    for (f, v) in batch.packets() {
                        black_box(lb1.forward(LINK, f, v, SimTime::from_secs(1)).unwrap());
                    }
                },
                BatchSize::LargeInput,
            )
        });

        // Replies of the same flows: B:443 -> C:cp.
        let reply_template = TcpSegment::new(
            tuple(Ipv4Addr::new(192, 168, 1, 1), 443, F, 1),
            TcpFlags::ACK,
        )
        .to_vec();
        let mut replies = Batch::new(&reply_template, FLOWS, |i| (backends[i], 443));
        for (i, (f, v)) in replies.packets().enumerate() {
            let (ip, port) = client(i);
            v.set_destination(f, ip, port);
        }
        g.bench_function(format!("reply_existing/{name}"), |b| {
            b.iter_batched_ref(
                || replies.clone(),
                |batch| {
                    for (f, v) in batch.packets() {
                        black_box(lb1.reverse(LINK, f, v, SimTime::from_secs(1))).unwrap();
                    }
                },
                BatchSize::LargeInput,
            )
        });

        // New flows: every batch is 10k tuples never seen, one simulated second after the
        // last; with a 2 s idle timeout the table holds 20-30k flows and each new flow also
        // expires due ones (the steady state of a busy forwarder).
        let mut lb2 = lb(hashing);
        let mut epoch = 0usize;
        g.bench_function(format!("forward_new/{name}"), |b| {
            b.iter_batched_ref(
                || {
                    epoch += 1;
                    let base = epoch * FLOWS;
                    (
                        Batch::new(&consumer, FLOWS, |i| client(base + i)),
                        SimTime::from_secs(epoch as u64),
                    )
                },
                |(batch, now)| {
                    for (f, v) in batch.packets() {
                        black_box(lb2.forward(LINK, f, v, *now).unwrap());
                    }
                },
                BatchSize::LargeInput,
            )
        });
        eprintln!(
            "lb/forward_new/{name}: {} flows in the table at the end",
            lb2.stats().flows.active
        );
    }
    g.finish();
}

/// Runs one batch through `forward` (or `reverse`), prefetching as `mode` says.
#[inline(always)]
fn lb_batch(
    lb: &mut Lb,
    batch: &mut [u8],
    views: &mut [Ipv4Tcp],
    stride: usize,
    mode: Mode,
    reply: bool,
) {
    let now = SimTime::from_secs(1);
    let bucket = |lb: &Lb, v: &Ipv4Tcp| {
        if reply {
            lb.prefetch_reverse(LINK, v)
        } else {
            lb.prefetch_forward(LINK, v)
        }
    };
    let n = views.len();
    match mode {
        Mode::None => {}
        Mode::Buckets => views.iter().for_each(|v| bucket(lb, v)),
        Mode::Window(k) => views[..k.min(n)].iter().for_each(|v| bucket(lb, v)),
    }
    for (i, f) in batch.chunks_exact_mut(stride).enumerate() {
        if let Mode::Window(k) = mode
            && i + k < n
        {
            bucket(lb, &views[i + k]);
        }
        let v = &mut views[i];
        if reply {
            black_box(lb.reverse(LINK, f, v, now)).unwrap();
        } else {
            black_box(lb.forward(LINK, f, v, now)).unwrap();
        }
    }
}

fn batched(c: &mut Criterion) {
    const N: usize = 1_000_000;
    const CHUNK: usize = 1024;
    const B: usize = 256;
    let consumer =
        TcpSegment::new(tuple(Ipv4Addr::new(10, 0, 0, 1), 1, F, 443), TcpFlags::ACK).to_vec();
    // Flow k*7919 mod N at place k: neighbours far apart in the table.
    let order = |k: usize| k * 7_919 % N;
    let mut lb = lb(Hashing::Plain);
    let pristine = Batch::new(&consumer, N, |k| client(order(k)));
    let mut opened = pristine.clone();
    let mut backends = Vec::with_capacity(N);
    for (f, v) in opened.packets() {
        backends.push(lb.forward(LINK, f, v, SimTime::ZERO).unwrap().backend);
    }
    drop(opened);
    eprintln!(
        "lb: {N} flows: memory_bytes {} = {:.1} B/flow",
        lb.memory_bytes(),
        lb.memory_bytes() as f64 / N as f64
    );
    let reply_template = TcpSegment::new(
        tuple(Ipv4Addr::new(192, 168, 1, 1), 443, F, 1),
        TcpFlags::ACK,
    )
    .to_vec();
    let mut replies = Batch::new(&reply_template, N, |k| (backends[k], 443));
    for (k, (f, v)) in replies.packets().enumerate() {
        let (ip, port) = client(order(k));
        v.set_destination(f, ip, port);
    }
    let mut g = c.benchmark_group("lb_batched");
    g.throughput(Throughput::Elements(CHUNK as u64));
    let stride = pristine.stride;
    let mut scratch = vec![0u8; CHUNK * stride];
    let mut views = vec![pristine.views[0]; CHUNK];
    for (dir, src) in [("forward", &pristine), ("reply", &replies)] {
        let mut at = 0usize;
        for mode in [Mode::None, Mode::Buckets, Mode::Window(8), Mode::Window(16)] {
            g.bench_function(BenchmarkId::new(format!("{dir}/{}", mode.name()), N), |b| {
                b.iter(|| {
                    scratch.copy_from_slice(&src.buf[at * stride..(at + CHUNK) * stride]);
                    views.copy_from_slice(&src.views[at..at + CHUNK]);
                    for (f, v) in scratch
                        .chunks_exact_mut(B * stride)
                        .zip(views.chunks_exact_mut(B))
                    {
                        lb_batch(&mut lb, f, v, stride, mode, dir == "reply");
                    }
                    at = (at + CHUNK) % (N - CHUNK);
                })
            });
        }
    }
    g.finish();
    let s = lb.stats();
    assert_eq!((s.flows.active, s.drops.total()), (N as u64, 0));
}

criterion_group!(benches, forwarder, batched);
criterion_main!(benches);
