//! Criterion benchmarks: compare, merge, encode and decode at N = 8, 64, 256.
//!
//! Run with `cargo bench -p shutter-vclock`. Encoded sizes are printed once per N so the
//! closing notes can quote dense versus compact bytes on the wire.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shutter_vclock::compact::{CompactConfig, Decoder, Encoder};
use shutter_vclock::{NodeId, VClock};

fn clock(n: usize, salt: u64) -> VClock {
    (0..n as u64)
        .map(|i| 1 + (i * 7919 + salt) % 1000)
        .collect()
}

fn benches(c: &mut Criterion) {
    for n in [8usize, 64, 256] {
        let a = clock(n, 1);
        let mut b = a.clone();
        b.tick(NodeId(0));
        let other = clock(n, 2);
        let dense = postcard::to_allocvec(&a).unwrap();

        // A steady-state compact message: baseline acknowledged, a few entries changed.
        let cfg = CompactConfig::default();
        let (mut enc, mut dec) = (Encoder::new(cfg), Decoder::new(cfg));
        let me = NodeId(0);
        let m0 = enc.encode(0, me, &a);
        dec.decode(0, &m0).unwrap();
        enc.on_ack(0);
        let mut next = a.clone();
        next.tick(me);
        next.tick(NodeId(n as u32 / 2));
        next.tick(NodeId(n as u32 - 1));
        let m1 = enc.encode(1, me, &next);
        let compact = postcard::to_allocvec(&m1).unwrap();
        let full = postcard::to_allocvec(&m0).unwrap();
        println!(
            "N={n}: dense {} bytes, compact-full {} bytes, compact-steady (3 changed) {} bytes",
            dense.len(),
            full.len(),
            compact.len()
        );

        let mut g = c.benchmark_group("vclock");
        g.bench_with_input(BenchmarkId::new("compare", n), &n, |bch, _| {
            bch.iter(|| black_box(&a).partial_cmp(black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("merge", n), &n, |bch, _| {
            bch.iter(|| {
                let mut x = black_box(&a).clone();
                x.merge(black_box(&other));
                x
            })
        });
        g.bench_with_input(BenchmarkId::new("encode_dense", n), &n, |bch, _| {
            bch.iter(|| postcard::to_allocvec(black_box(&a)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("decode_dense", n), &n, |bch, _| {
            bch.iter(|| postcard::from_bytes::<VClock>(black_box(&dense)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("encode_compact", n), &n, |bch, _| {
            let mut seq = 1u64;
            bch.iter(|| {
                // Baseline stays at 0 (no further acks), like a stream between acks.
                seq = if seq + 1 >= cfg.window { 1 } else { seq + 1 };
                let m = enc.encode(seq, me, black_box(&next));
                enc.on_abandoned(seq);
                postcard::to_allocvec(&m).unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("decode_compact", n), &n, |bch, _| {
            bch.iter(|| {
                let m: shutter_vclock::compact::CompactClock =
                    postcard::from_bytes(black_box(&compact)).unwrap();
                dec.decode(1, &m).unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(vclock_benches, benches);
criterion_main!(vclock_benches);
