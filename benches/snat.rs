//! The SNAT engine: established-flow translation at 10k and 1M flows beside a minimal reference
//! NAT loop (one hash lookup, rewrite, incremental checksum), new-flow setup, and the flow state's
//! bytes per live flow (the engine's own count and a counting global allocator's).
//!
//! `snat_batched`: at 1M flows, batches of 256 packets in random flow order, without prefetch,
//! with every bucket prefetched before the batch (`buckets`, what the pipeline's hook does), and
//! with a sliding window (`window/K`: the bucket of packet i+K prefetched while i is
//! translated). (A second prefetch of the flow records, after the buckets, measured 20-30%
//! slower than the buckets alone, as a pass and as a window: it was dropped.)
//!
//! `cargo bench --bench snat -- --warm-up-time 1 --measurement-time 3`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plsim_snat::{Snat, SnatConfig};
use plsim_wire::build::{TcpSegment, tuple};
use plsim_wire::{FlowTuple, Ipv4Tcp, LinkId, LinkType, SimTime, TcpFlags, classify};

mod common;
use common::Mode;

/// Counts the bytes live on the heap, to cross-check `Snat::memory_bytes`.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method hands the caller's arguments to the system allocator unchanged, so it
// keeps `GlobalAlloc`'s contract exactly as `System` does; the counter is only a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires of it.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from this allocator (that is, from `System`) with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `System` with layout `l`; `new` is the caller's, as required.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FRAME: usize = 54; // Ethernet + IPv4 + TCP, no payload
const BATCH: usize = 1024;
const LINK: LinkId = LinkId(1);

fn nat_ips() -> Vec<Ipv4Addr> {
    (1..=8).map(|i| Ipv4Addr::new(100, 64, 0, i)).collect()
}

/// The consumer-side tuple of flow `i`: hosts of 50,000 ports each, over 4 backends.
fn flow_tuple(i: u32) -> FlowTuple {
    tuple(
        Ipv4Addr::from(0xc0a8_0000 + i / 50_000),
        1024 + (i % 50_000) as u16,
        Ipv4Addr::new(10, 1, 0, 4 + (i % 4) as u8),
        443,
    )
}

fn frame(t: FlowTuple, flags: u8) -> Vec<u8> {
    TcpSegment::new(t, flags).to_vec()
}

/// Packets of `n` flows, one frame each, in a scrambled order, laid out back to back.
struct Packets {
    bytes: Vec<u8>,
    views: Vec<Ipv4Tcp>,
}

fn packets(n: u32, flags: u8) -> Packets {
    let mut bytes = Vec::with_capacity(n as usize * FRAME);
    let mut views = Vec::with_capacity(n as usize);
    // A stride coprime with n visits every flow once, far from its neighbours.
    let stride = (0..)
        .map(|k| 7_919 + 2 * k)
        .find(|s| gcd(*s, n) == 1)
        .unwrap();
    for k in 0..n {
        let i = (u64::from(k) * u64::from(stride) % u64::from(n)) as u32;
        let f = frame(flow_tuple(i), flags);
        assert_eq!(f.len(), FRAME);
        views.push(classify(LinkType::Ethernet, &f, FRAME).unwrap());
        bytes.extend_from_slice(&f);
    }
    Packets { bytes, views }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// An engine with `n` established flows (SYN out, SYN-ACK in, ACK out).
fn established(n: u32) -> Snat {
    let mut s = Snat::new(SnatConfig {
        nat_ips: nat_ips(),
        ..SnatConfig::default()
    })
    .unwrap();
    let now = SimTime::from_secs(1);
    for i in 0..n {
        let t = flow_tuple(i);
        let mut f = frame(t, TcpFlags::SYN);
        let mut v = classify(LinkType::Ethernet, &f, FRAME).unwrap();
        s.forward(LINK, &mut f, &mut v, now).unwrap();
        let n = v.tuple();
        let mut r = frame(n.reversed(), TcpFlags::SYN | TcpFlags::ACK);
        let mut v = classify(LinkType::Ethernet, &r, FRAME).unwrap();
        s.reverse(&mut r, &mut v, now).unwrap();
        let mut f = frame(t, TcpFlags::ACK);
        let mut v = classify(LinkType::Ethernet, &f, FRAME).unwrap();
        s.forward(LINK, &mut f, &mut v, now).unwrap();
    }
    s
}

/// A minimal non-DoS hasher for the reference loop (FxHash's multiply-rotate).
#[derive(Default)]
struct Fx(u64);
impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("snat_established");
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in [10_000u32, 1_000_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut snat = established(n);
        let heap = LIVE.load(Ordering::Relaxed) - before;
        eprintln!(
            "snat: {n} flows: memory_bytes {} = {:.1} B/flow; counting allocator {:.1} B/flow",
            snat.memory_bytes(),
            snat.memory_bytes() as f64 / f64::from(n),
            heap as f64 / f64::from(n)
        );
        let pk = packets(n, TcpFlags::ACK);
        let mut scratch = vec![0u8; BATCH * FRAME];
        let mut at = 0usize;
        let now = SimTime::from_secs(2);
        g.bench_function(BenchmarkId::new("snat", n), |b| {
            b.iter(|| {
                let start = at * FRAME;
                scratch.copy_from_slice(&pk.bytes[start..start + BATCH * FRAME]);
                for (k, f) in scratch.chunks_exact_mut(FRAME).enumerate() {
                    let mut v = pk.views[at + k];
                    black_box(snat.forward(LINK, f, &mut v, now)).unwrap();
                }
                at = (at + BATCH) % (n as usize - BATCH);
            })
        });
        let stats = snat.stats();
        assert_eq!((stats.live, stats.drops.total()), (u64::from(n), 0));
        drop(snat);

        // The reference: a plain map from the consumer tuple to the NAT end, and the rewrite.
        let mut map: HashMap<FlowTuple, (Ipv4Addr, u16), BuildHasherDefault<Fx>> =
            HashMap::default();
        for i in 0..n {
            map.insert(
                flow_tuple(i),
                (nat_ips()[(i % 8) as usize], 1024 + (i / 8 % 60_000) as u16),
            );
        }
        let mut at = 0usize;
        g.bench_function(BenchmarkId::new("reference", n), |b| {
            b.iter(|| {
                let start = at * FRAME;
                scratch.copy_from_slice(&pk.bytes[start..start + BATCH * FRAME]);
                for (k, f) in scratch.chunks_exact_mut(FRAME).enumerate() {
                    let mut v = pk.views[at + k];
                    let &(ip, port) = map.get(&v.tuple()).unwrap();
                    v.set_source(f, ip, port);
                    black_box(&v);
                }
                at = (at + BATCH) % (n as usize - BATCH);
            })
        });
    }
    g.finish();
}

/// Translates one batch (frames back to back, their views) forward, prefetching as `mode` says.
#[inline(always)]
fn forward_batch(s: &mut Snat, frames: &mut [u8], views: &mut [Ipv4Tcp], mode: Mode, now: SimTime) {
    let n = views.len();
    match mode {
        Mode::None => {}
        Mode::Buckets => views.iter().for_each(|v| s.prefetch_forward(LINK, v)),
        Mode::Window(k) => views[..k.min(n)]
            .iter()
            .for_each(|v| s.prefetch_forward(LINK, v)),
    }
    for (i, f) in frames.chunks_exact_mut(FRAME).enumerate() {
        match mode {
            Mode::Window(k) if i + k < n => s.prefetch_forward(LINK, &views[i + k]),
            _ => {}
        }
        black_box(s.forward(LINK, f, &mut views[i], now)).unwrap();
    }
}

fn batched(c: &mut Criterion) {
    const N: u32 = 1_000_000;
    const B: usize = 256;
    let mut snat = established(N);
    let pk = packets(N, TcpFlags::ACK);
    let mut g = c.benchmark_group("snat_batched");
    g.throughput(Throughput::Elements(BATCH as u64));
    let now = SimTime::from_secs(2);
    let mut scratch = vec![0u8; BATCH * FRAME];
    let mut views = vec![pk.views[0]; BATCH];
    let mut at = 0usize;
    let modes = [Mode::None, Mode::Buckets, Mode::Window(8), Mode::Window(16)];
    for mode in modes {
        g.bench_function(BenchmarkId::new(mode.name(), N), |b| {
            b.iter(|| {
                let start = at * FRAME;
                scratch.copy_from_slice(&pk.bytes[start..start + BATCH * FRAME]);
                views.copy_from_slice(&pk.views[at..at + BATCH]);
                for (f, v) in scratch
                    .chunks_exact_mut(B * FRAME)
                    .zip(views.chunks_exact_mut(B))
                {
                    forward_batch(&mut snat, f, v, mode, now);
                }
                at = (at + BATCH) % (N as usize - BATCH);
            })
        });
    }
    g.finish();
    let stats = snat.stats();
    assert_eq!((stats.live, stats.drops.total()), (u64::from(N), 0));
}

fn setup(c: &mut Criterion) {
    const NEW: u32 = 100_000;
    let pk = packets(NEW, TcpFlags::SYN);
    let mut g = c.benchmark_group("snat_setup");
    g.throughput(Throughput::Elements(u64::from(NEW)));
    g.sample_size(10);
    g.bench_function("new_flows_100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut scratch = pk.bytes.clone();
            for _ in 0..iters {
                let mut s = Snat::new(SnatConfig {
                    nat_ips: nat_ips(),
                    ..SnatConfig::default()
                })
                .unwrap();
                scratch.copy_from_slice(&pk.bytes);
                let now = SimTime::from_secs(1);
                let t0 = Instant::now();
                for (k, f) in scratch.chunks_exact_mut(FRAME).enumerate() {
                    let mut v = pk.views[k];
                    black_box(s.forward(LINK, f, &mut v, now)).unwrap();
                }
                total += t0.elapsed();
                assert_eq!(s.stats().created, u64::from(NEW));
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, translate, batched, setup);
criterion_main!(benches);
