//! MVCC store micro-benchmarks: the applier's put path and the two common read shapes.
//!
//! Each runs on a fresh backend database in a temporary directory (no fsync per write, as in
//! the server: the WAL is the durability point). `..._grouped_100` is what the applier does
//! (see `mvcc/group.rs`).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrocd::backend::{Backend, BackendOptions};
use ferrocd::mvcc::{RangeOptions, Store};

fn open_store(dir: &std::path::Path) -> Store {
    let backend = Arc::new(Backend::open(dir, BackendOptions::default()).expect("open backend"));
    Store::open(backend).expect("open store").0
}

fn bench_put(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open_store(tmp.path());
    let value = vec![b'v'; 256];
    let keys: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("/registry/pods/default/pod-{i:05}").into_bytes())
        .collect();
    let mut i = 0usize;
    let mut group = c.benchmark_group("mvcc");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put_1key_256B_per_txn", |b| {
        b.iter(|| {
            i += 1;
            let mut txn = store.write(i as u64);
            txn.put(&keys[i % keys.len()], &value, 0);
            black_box(txn.commit().unwrap());
        })
    });

    // The same, with the applier's group commit: 100 transactions per backend batch.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut grouped = open_store(tmp2.path());
    let (mut j, mut in_group) = (0usize, 0usize);
    group.bench_function("put_1key_256B_per_txn_grouped_100", |b| {
        b.iter(|| {
            j += 1;
            if in_group == 0 {
                grouped.begin_group();
            }
            let mut txn = grouped.write(j as u64);
            txn.put(&keys[j % keys.len()], &value, 0);
            black_box(txn.commit().unwrap());
            in_group += 1;
            if in_group == 100 {
                grouped.end_group().unwrap();
                in_group = 0;
            }
        })
    });
    group.finish();
    grouped.end_group().unwrap();
}

fn bench_range(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open_store(tmp.path());
    let value = vec![b'v'; 256];
    // 100 prefixes x 100 keys, one write transaction per key like the applier
    let mut ci = 0;
    for p in 0..100 {
        for k in 0..100 {
            ci += 1;
            let mut txn = store.write(ci);
            txn.put(format!("/p{p:02}/k{k:03}").as_bytes(), &value, 0);
            txn.commit().unwrap();
        }
    }
    let opts = RangeOptions::default();
    let mut group = c.benchmark_group("mvcc");

    let keys: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("/p{:02}/k{:03}", i / 100, i % 100).into_bytes())
        .collect();
    let mut i = 0usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("range_1key", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            let r = store.range(&keys[i], b"", &opts).unwrap();
            debug_assert_eq!(r.kvs.len(), 1);
            black_box(r);
        })
    });

    let prefixes: Vec<(Vec<u8>, Vec<u8>)> = (0..100)
        .map(|p| {
            (
                format!("/p{p:02}/").into_bytes(),
                format!("/p{p:02}0").into_bytes(),
            )
        })
        .collect();
    let mut p = 0usize;
    group.throughput(Throughput::Elements(100));
    group.bench_function("range_100keys_prefix", |b| {
        b.iter(|| {
            p = (p + 37) % prefixes.len();
            let (start, end) = &prefixes[p];
            let r = store.range(start, end, &opts).unwrap();
            debug_assert_eq!(r.kvs.len(), 100);
            black_box(r);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_put, bench_range);
criterion_main!(benches);
