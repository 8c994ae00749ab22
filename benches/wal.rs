//! WAL micro-benchmarks: the cost of the durability point.
//!
//! `append_sync_1x256` is one small proposal per Ready (the latency floor of a write);
//! `append_64x256_sync` is group commit, 64 proposals paying for one fdatasync.
//! Numbers depend entirely on the disk under the temp dir (set TMPDIR to measure another).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrocd::wal::{Record, Wal};

const DATA_LEN: usize = 256;
const BATCH: usize = 64;

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::Entry {
            index: i as u64 + 1,
            term: 1,
            data: vec![0xa5; DATA_LEN],
        })
        .collect()
}

/// Gives the batch the next `batch.len()` indexes, as raft would.
fn renumber(batch: &mut [Record], next: &mut u64) {
    for r in batch.iter_mut() {
        if let Record::Entry { index, .. } = r {
            *index = *next;
            *next += 1;
        }
    }
}

fn bench_wal(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal");

    group.throughput(Throughput::Elements(1));
    group.bench_function("append_sync_1x256", |b| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create(&tmp.path().join("wal"), b"bench").expect("create");
        let mut batch = records(1);
        let mut next = 1;
        b.iter(|| {
            renumber(&mut batch, &mut next);
            wal.append(black_box(&batch)).expect("append");
            wal.sync().expect("sync");
        });
    });

    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("append_64x256_sync", |b| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create(&tmp.path().join("wal"), b"bench").expect("create");
        let mut batch = records(BATCH);
        let mut next = 1;
        b.iter(|| {
            renumber(&mut batch, &mut next);
            wal.append(black_box(&batch)).expect("append");
            wal.sync().expect("sync");
        });
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench_wal
}
criterion_main!(benches);
