//! Store-level tests: revisions, versions, ranges, transactions, compaction, restart.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::backend::{Backend, BackendOptions, WriteBatch};
use crate::schema::{meta, Bucket};

fn open_at(dir: &Path) -> (Store, Option<Compaction>) {
    let backend = Arc::new(Backend::open(dir, BackendOptions::default()).unwrap());
    Store::open(backend).unwrap()
}

fn fresh() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (store, resume) = open_at(tmp.path());
    assert!(resume.is_none());
    (tmp, store)
}

fn put(s: &mut Store, key: &[u8], value: &[u8]) -> TxnResult {
    let mut t = s.write(0);
    t.put(key, value, 0);
    t.commit().unwrap()
}

fn del(s: &mut Store, key: &[u8], end: &[u8]) -> TxnResult {
    let mut t = s.write(0);
    t.delete_range(key, end);
    t.commit().unwrap()
}

fn at(rev: i64) -> RangeOptions {
    RangeOptions {
        rev,
        ..RangeOptions::default()
    }
}

fn get(s: &Store, key: &[u8], rev: i64) -> Option<KeyValue> {
    let r = s.range(key, b"", &at(rev)).unwrap();
    assert!(r.kvs.len() <= 1);
    assert_eq!(r.count, r.kvs.len());
    r.kvs.into_iter().next()
}

fn keys_of(r: &RangeResult) -> Vec<Vec<u8>> {
    r.kvs.iter().map(|kv| kv.key.clone()).collect()
}

fn kv(key: &[u8], value: &[u8], create: i64, modr: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        create_revision: create,
        mod_revision: modr,
        version,
        value: value.to_vec(),
        lease: 0,
    }
}

/// Every key-bucket entry as (revision, tombstone).
fn backend_revs(b: &Backend) -> Vec<(i64, i64, bool)> {
    b.range(Bucket::Key, b"", None)
        .map(|r| {
            let (k, _) = r.unwrap();
            let (rev, t) = Revision::parse_key(&k).unwrap();
            (rev.main, rev.sub, t)
        })
        .collect()
}

#[test]
fn revision_arithmetic() {
    let (_tmp, mut s) = fresh();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), -1);
    assert_eq!(s.keys_total(), 0);

    let r = put(&mut s, b"a", b"1");
    assert_eq!(r.rev, 2);
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].kind, EventType::Put);
    assert_eq!(r.events[0].kv, kv(b"a", b"1", 2, 2, 1));
    assert_eq!(r.events[0].prev_kv, None);

    // same value still bumps
    let r = put(&mut s, b"a", b"1");
    assert_eq!(r.rev, 3);
    assert_eq!(r.events[0].kv, kv(b"a", b"1", 2, 3, 2));
    assert_eq!(r.events[0].prev_kv, Some(kv(b"a", b"1", 2, 2, 1)));

    // delete of nothing changes nothing
    let mut t = s.write(0);
    assert!(t.delete_range(b"zzz", b"").is_empty());
    assert!(t.delete_range(b"b", b"c").is_empty());
    let r = t.commit().unwrap();
    assert_eq!(r.rev, 3);
    assert!(r.events.is_empty());
    assert_eq!(s.current_revision(), 3);

    // delete
    let r = del(&mut s, b"a", b"");
    assert_eq!(r.rev, 4);
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].kind, EventType::Delete);
    assert_eq!(
        r.events[0].kv,
        KeyValue {
            key: b"a".to_vec(),
            mod_revision: 4,
            ..KeyValue::default()
        }
    );
    assert_eq!(r.events[0].prev_kv, Some(kv(b"a", b"1", 2, 3, 2)));
    assert_eq!(s.keys_total(), 0);

    // multi-op txn: one revision, increasing sub
    let mut t = s.write(0);
    assert_eq!(t.revision(), 5);
    assert_eq!(t.put(b"x", b"1", 0), None);
    assert_eq!(t.put(b"y", b"2", 0), None);
    assert_eq!(t.put(b"a", b"3", 0), None);
    let r = t.commit().unwrap();
    assert_eq!(r.rev, 5);
    assert_eq!(r.events.len(), 3);
    for e in &r.events {
        assert_eq!(e.kv.mod_revision, 5);
        assert_eq!(e.kv.create_revision, 5);
        assert_eq!(e.kv.version, 1);
    }
    assert_eq!(s.keys_total(), 3);
    assert_eq!(
        backend_revs(s.backend()),
        vec![
            (2, 0, false),
            (3, 0, false),
            (4, 0, true),
            (5, 0, false),
            (5, 1, false),
            (5, 2, false),
        ]
    );

    // delete of several keys in one txn: one revision
    let mut t = s.write(0);
    let gone = t.delete_range(b"x", b"\x00");
    assert_eq!(
        keys_of(&RangeResult {
            kvs: gone,
            ..Default::default()
        }),
        vec![b"x".to_vec(), b"y".to_vec()]
    );
    let r = t.commit().unwrap();
    assert_eq!(r.rev, 6);
    assert_eq!(r.events.len(), 2);
    assert_eq!(backend_revs(s.backend())[6..], [(6, 0, true), (6, 1, true)]);
    assert_eq!(s.keys_total(), 1);
}

#[test]
fn versions_through_delete_and_recreate() {
    let (_tmp, mut s) = fresh();
    put(&mut s, b"k", b"v1"); // 2
    put(&mut s, b"other", b"o"); // 3
    put(&mut s, b"k", b"v2"); // 4
    del(&mut s, b"k", b""); // 5
    put(&mut s, b"k", b"v3"); // 6
    put(&mut s, b"k", b"v4"); // 7
    assert_eq!(get(&s, b"k", 1), None);
    assert_eq!(get(&s, b"k", 2), Some(kv(b"k", b"v1", 2, 2, 1)));
    assert_eq!(get(&s, b"k", 3), Some(kv(b"k", b"v1", 2, 2, 1)));
    assert_eq!(get(&s, b"k", 4), Some(kv(b"k", b"v2", 2, 4, 2)));
    assert_eq!(get(&s, b"k", 5), None);
    assert_eq!(get(&s, b"k", 6), Some(kv(b"k", b"v3", 6, 6, 1)));
    assert_eq!(get(&s, b"k", 7), Some(kv(b"k", b"v4", 6, 7, 2)));
    assert_eq!(get(&s, b"k", 0), Some(kv(b"k", b"v4", 6, 7, 2)));
    assert_eq!(get(&s, b"other", 7), Some(kv(b"other", b"o", 3, 3, 1)));
}

#[test]
fn range_results_report_current_revision_and_errors() {
    let (_tmp, mut s) = fresh();
    for i in 0..5 {
        put(&mut s, format!("k{i}").as_bytes(), b"v");
    }
    // current = 6
    let r = s.range(b"k0", b"", &at(2)).unwrap();
    assert_eq!(r.rev, 6);
    assert_eq!(r.kvs.len(), 1);
    assert!(matches!(
        s.range(b"k0", b"", &at(7)),
        Err(MvccError::FutureRev)
    ));
    assert_eq!(
        MvccError::FutureRev.to_string(),
        "mvcc: required revision is a future revision"
    );
    s.compact(4, 0).unwrap().run(s.backend()).unwrap();
    assert!(matches!(
        s.range(b"k0", b"", &at(3)),
        Err(MvccError::Compacted)
    ));
    assert_eq!(
        MvccError::Compacted.to_string(),
        "mvcc: required revision has been compacted"
    );
    // the compaction revision itself is readable
    let r = s.range(b"k", b"l", &at(4)).unwrap();
    assert_eq!(
        keys_of(&r),
        vec![b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()]
    );
    assert_eq!(r.rev, 6);
    // future is checked before compacted
    assert!(matches!(
        s.range(b"k0", b"", &at(100)),
        Err(MvccError::FutureRev)
    ));
}

#[test]
fn range_end_forms_and_binary_keys() {
    let (_tmp, mut s) = fresh();
    let keys: Vec<&[u8]> = vec![
        b"\x00",
        b"\x00\x00",
        b"a",
        b"ab",
        b"abc",
        b"ab\xff",
        b"ac",
        b"b",
        b"\xff",
        b"\xff\xff",
    ];
    for k in &keys {
        let mut value = k.to_vec();
        value.extend_from_slice(b"\x00\xff");
        put(&mut s, k, &value);
    }
    let all: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    let q = |k: &[u8], e: &[u8]| keys_of(&s.range(k, e, &RangeOptions::default()).unwrap());
    assert_eq!(q(b"\x00", b"\x00"), all);
    assert_eq!(q(b"ab", b""), vec![b"ab".to_vec()]);
    assert_eq!(q(b"a\x00", b""), Vec::<Vec<u8>>::new());
    // prefix "ab" = [ab, ac)
    assert_eq!(q(b"ab", b"ac"), all[3..6].to_vec());
    // prefix "ab\xff" = [ab\xff, ac) (trailing 0xff dropped, then +1)
    assert_eq!(q(b"ab\xff", b"ac"), all[5..6].to_vec());
    // every key >= b
    assert_eq!(q(b"b", b"\x00"), all[7..].to_vec());
    assert_eq!(q(b"\xff", b"\x00"), all[8..].to_vec());
    // inverted and empty ranges
    assert!(q(b"b", b"a").is_empty());
    assert!(q(b"b", b"b").is_empty());
    // values are binary-safe
    let r = s.range(b"\xff\xff", b"", &RangeOptions::default()).unwrap();
    assert_eq!(r.kvs[0].value, b"\xff\xff\x00\xff".to_vec());
    let r = s.range(b"\x00", b"", &RangeOptions::default()).unwrap();
    assert_eq!(r.kvs[0].value, b"\x00\x00\xff".to_vec());
}

#[test]
fn limit_count_and_count_only() {
    let (_tmp, mut s) = fresh();
    for i in 0..10 {
        put(
            &mut s,
            format!("key{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        );
    }
    del(&mut s, b"key5", b"");
    let r = s
        .range(
            b"key",
            b"kez",
            &RangeOptions {
                limit: 3,
                ..RangeOptions::default()
            },
        )
        .unwrap();
    assert_eq!(
        keys_of(&r),
        vec![b"key0".to_vec(), b"key1".to_vec(), b"key2".to_vec()]
    );
    assert_eq!(r.count, 9);
    assert_eq!(r.rev, 12);
    let r = s
        .range(
            b"key",
            b"kez",
            &RangeOptions {
                limit: 100,
                ..RangeOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.kvs.len(), 9);
    assert_eq!(r.count, 9);
    let r = s
        .range(
            b"key",
            b"kez",
            &RangeOptions {
                count_only: true,
                ..RangeOptions::default()
            },
        )
        .unwrap();
    assert!(r.kvs.is_empty());
    assert_eq!(r.count, 9);
    // count at an older revision (before key5 was deleted and key9 put)
    let r = s
        .range(
            b"key",
            b"kez",
            &RangeOptions {
                count_only: true,
                rev: 10,
                ..RangeOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.count, 9);
    assert_eq!(r.rev, 12);
    let r = s
        .range(
            b"key",
            b"kez",
            &RangeOptions {
                limit: 2,
                rev: 3,
                ..RangeOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.count, 2);
    assert_eq!(keys_of(&r), vec![b"key0".to_vec(), b"key1".to_vec()]);
}

#[test]
fn txn_range_sees_its_own_writes() {
    let (_tmp, mut s) = fresh();
    put(&mut s, b"a", b"1"); // 2
    put(&mut s, b"c", b"3"); // 3
    let all = RangeOptions::default();
    let mut t = s.write(9);
    let r = t.range(b"a", b"\x00", &all).unwrap();
    assert_eq!(r.rev, 3, "nothing changed yet: current revision");
    assert_eq!(keys_of(&r), vec![b"a".to_vec(), b"c".to_vec()]);
    assert!(matches!(
        t.range(b"a", b"", &at(4)),
        Err(MvccError::FutureRev)
    ));

    assert_eq!(t.put(b"b", b"2", 0), None);
    let r = t.range(b"a", b"\x00", &all).unwrap();
    assert_eq!(r.rev, 4, "changed: current + 1");
    assert_eq!(
        keys_of(&r),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(r.kvs[1], kv(b"b", b"2", 4, 4, 1));
    // explicit txn revision and the old revision
    assert_eq!(t.range(b"a", b"\x00", &at(4)).unwrap().count, 3);
    let old = t.range(b"a", b"\x00", &at(3)).unwrap();
    assert_eq!(keys_of(&old), vec![b"a".to_vec(), b"c".to_vec()]);
    assert_eq!(old.rev, 4);
    assert!(matches!(
        t.range(b"a", b"", &at(5)),
        Err(MvccError::FutureRev)
    ));

    // overwrite a committed key, delete another, then read
    let prev = t.put(b"a", b"1b", 0).unwrap();
    assert_eq!(prev, kv(b"a", b"1", 2, 2, 1));
    let gone = t.delete_range(b"c", b"");
    assert_eq!(gone, vec![kv(b"c", b"3", 3, 3, 1)]);
    let r = t.range(b"\x00", b"\x00", &all).unwrap();
    assert_eq!(
        r.kvs,
        vec![kv(b"a", b"1b", 2, 4, 2), kv(b"b", b"2", 4, 4, 1)]
    );
    let r = t
        .range(
            b"\x00",
            b"\x00",
            &RangeOptions {
                limit: 1,
                ..RangeOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.kvs.len(), 1);
    assert_eq!(r.count, 2);
    let r = t
        .range(
            b"\x00",
            b"\x00",
            &RangeOptions {
                count_only: true,
                ..RangeOptions::default()
            },
        )
        .unwrap();
    assert_eq!((r.kvs.len(), r.count), (0, 2));
    // nothing is visible outside before commit
    let res = t.commit().unwrap();
    assert_eq!(res.rev, 4);
    assert_eq!(res.events.len(), 3);
    let r = s.range(b"\x00", b"\x00", &all).unwrap();
    assert_eq!(
        r.kvs,
        vec![kv(b"a", b"1b", 2, 4, 2), kv(b"b", b"2", 4, 4, 1)]
    );
    assert_eq!(
        backend_revs(s.backend())[2..],
        [(4, 0, false), (4, 1, false), (4, 2, true)]
    );
    assert_eq!(s.backend().consistent_index().unwrap(), 9);
}

#[test]
fn same_key_twice_and_delete_then_put_in_one_txn() {
    let (_tmp, mut s) = fresh();
    put(&mut s, b"k", b"v0"); // 2
    let mut t = s.write(0);
    assert_eq!(t.put(b"k", b"v1", 0), Some(kv(b"k", b"v0", 2, 2, 1)));
    assert_eq!(t.put(b"k", b"v2", 5), Some(kv(b"k", b"v1", 2, 3, 2)));
    let r = t.commit().unwrap();
    assert_eq!(r.rev, 3);
    assert_eq!(r.events[1].kv.version, 3);
    assert_eq!(
        backend_revs(s.backend()),
        vec![(2, 0, false), (3, 0, false), (3, 1, false)]
    );
    let got = get(&s, b"k", 3).unwrap();
    assert_eq!(
        got,
        KeyValue {
            lease: 5,
            ..kv(b"k", b"v2", 2, 3, 3)
        }
    );

    // delete then re-create inside one txn: a new generation
    let mut t = s.write(0);
    assert_eq!(t.delete_range(b"k", b"").len(), 1);
    assert_eq!(t.put(b"k", b"new", 0), None);
    assert_eq!(t.delete_range(b"k", b"").len(), 1);
    assert_eq!(t.put(b"k", b"newer", 0), None);
    let r = t.commit().unwrap();
    assert_eq!(r.rev, 4);
    assert_eq!(r.events.len(), 4);
    assert_eq!(get(&s, b"k", 4), Some(kv(b"k", b"newer", 4, 4, 1)));
    assert_eq!(get(&s, b"k", 3).unwrap().version, 3);
    assert_eq!(s.keys_total(), 1);
    // the next put continues that generation
    let r = put(&mut s, b"k", b"x");
    assert_eq!(r.events[0].kv, kv(b"k", b"x", 4, 5, 2));
}

#[test]
fn dropped_or_empty_txn_writes_nothing() {
    let (_tmp, mut s) = fresh();
    put(&mut s, b"a", b"1");
    let ci = s.backend().consistent_index().unwrap();
    {
        let mut t = s.write(77);
        t.put(b"b", b"2", 0);
        t.extra().put(Bucket::Lease, b"l", &b"x"[..]);
        // dropped without commit
    }
    assert_eq!(s.current_revision(), 2);
    assert_eq!(get(&s, b"b", 0), None);
    assert!(s.backend().get(Bucket::Lease, b"l").unwrap().is_none());
    assert_eq!(s.backend().consistent_index().unwrap(), ci);
    assert_eq!(backend_revs(s.backend()).len(), 1);

    // nothing changed: consistent index not written either (documented)
    let r = s.write(78).commit().unwrap();
    assert_eq!(r.rev, 2);
    assert_eq!(s.backend().consistent_index().unwrap(), ci);

    // extra only: committed with the consistent index, no revision bump
    let mut t = s.write(79);
    t.extra().put(Bucket::Lease, b"l", &b"x"[..]);
    let r = t.commit().unwrap();
    assert_eq!(r.rev, 2);
    assert!(r.events.is_empty());
    assert_eq!(s.backend().consistent_index().unwrap(), 79);
    assert_eq!(
        s.backend()
            .get(Bucket::Lease, b"l")
            .unwrap()
            .unwrap()
            .as_ref(),
        b"x"
    );

    // kv + extra + index together
    let mut t = s.write(80);
    t.put(b"c", b"3", 0);
    t.extra().delete(Bucket::Lease, b"l");
    t.commit().unwrap();
    assert_eq!(s.backend().consistent_index().unwrap(), 80);
    assert!(s.backend().get(Bucket::Lease, b"l").unwrap().is_none());
    assert_eq!(get(&s, b"c", 3).unwrap().value, b"3".to_vec());
}

#[test]
fn compaction_semantics() {
    let (_tmp, mut s) = fresh();
    put(&mut s, b"a", b"a1"); // 2
    put(&mut s, b"a", b"a2"); // 3
    put(&mut s, b"b", b"b1"); // 4
    del(&mut s, b"b", b""); // 5 (tombstone)
    put(&mut s, b"c", b"c1"); // 6
    put(&mut s, b"a", b"a3"); // 7
    del(&mut s, b"c", b""); // 8
    put(&mut s, b"d", b"d1"); // 9

    assert!(matches!(s.compact(10, 1), Err(MvccError::FutureRev)));
    let c = s.compact(6, 42).unwrap();
    assert_eq!(c.revision(), 6);
    assert_eq!(s.compact_revision(), 6);
    assert_eq!(s.backend().consistent_index().unwrap(), 42);
    assert!(matches!(s.compact(6, 1), Err(MvccError::Compacted)));
    assert!(matches!(s.compact(5, 1), Err(MvccError::Compacted)));

    // reads at the compaction revision are unchanged (before and after the physical part)
    let check = |s: &Store| {
        let r = s.range(b"\x00", b"\x00", &at(6)).unwrap();
        assert_eq!(
            r.kvs,
            vec![kv(b"a", b"a2", 2, 3, 2), kv(b"c", b"c1", 6, 6, 1)]
        );
        let r = s.range(b"\x00", b"\x00", &at(0)).unwrap();
        assert_eq!(
            r.kvs,
            vec![kv(b"a", b"a3", 2, 7, 3), kv(b"d", b"d1", 9, 9, 1)]
        );
        assert_eq!(s.range(b"\x00", b"\x00", &at(8)).unwrap().count, 1);
        assert!(matches!(
            s.range(b"a", b"", &at(5)),
            Err(MvccError::Compacted)
        ));
    };
    check(&s);
    // kept: a@3 (newest <= 6), c@6; dropped: a@2, b@4, b@5 (tombstone <= 6)
    c.run(s.backend()).unwrap();
    assert_eq!(
        backend_revs(s.backend()),
        vec![
            (3, 0, false),
            (6, 0, false),
            (7, 0, false),
            (8, 0, true),
            (9, 0, false),
        ]
    );
    check(&s);
    assert_eq!(s.keys_total(), 2);

    // compacting at a tombstone drops it and the key's history
    let c = s.compact(8, 43).unwrap();
    c.run(s.backend()).unwrap();
    assert_eq!(
        backend_revs(s.backend()),
        vec![(7, 0, false), (9, 0, false)]
    );
    let r = s.range(b"\x00", b"\x00", &at(8)).unwrap();
    assert_eq!(r.kvs, vec![kv(b"a", b"a3", 2, 7, 3)]);
    // the key can be re-created with a fresh generation
    let r = put(&mut s, b"c", b"c2");
    assert_eq!(r.events[0].kv, kv(b"c", b"c2", 10, 10, 1));
    // later puts continue versions across compaction
    let r = put(&mut s, b"a", b"a4");
    assert_eq!(r.events[0].kv, kv(b"a", b"a4", 2, 11, 4));
    assert_eq!(
        s.backend()
            .get(Bucket::Meta, meta::FINISHED_COMPACT_REV)
            .unwrap()
            .unwrap()
            .as_ref(),
        &Revision::new(8, 0).to_bytes()[..]
    );
}

#[test]
fn compaction_runs_in_batches_and_at_current() {
    let (tmp, mut s) = fresh();
    // 2500 revisions of 3 keys, then delete one
    for i in 0..2500 {
        put(
            &mut s,
            format!("k{}", i % 3).as_bytes(),
            format!("{i}").as_bytes(),
        );
    }
    del(&mut s, b"k0", b"");
    let cur = s.current_revision();
    assert_eq!(cur, 2502);
    let c = s.compact(cur, 1).unwrap();
    c.run(s.backend()).unwrap();
    let revs = backend_revs(s.backend());
    // k1 last put at 2499, k2 at 2500; k0 (2501) deleted at 2502 = the compaction revision
    assert_eq!(revs, vec![(2499, 0, false), (2500, 0, false)]);
    let r = s.range(b"k", b"l", &at(cur)).unwrap();
    assert_eq!(keys_of(&r), vec![b"k1".to_vec(), b"k2".to_vec()]);
    assert_eq!(r.kvs[0].version, 833);
    drop(s);
    let (s, resume) = open_at(tmp.path());
    assert!(resume.is_none());
    assert_eq!(s.current_revision(), cur);
    assert_eq!(s.compact_revision(), cur);
    let r2 = s.range(b"k", b"l", &at(cur)).unwrap();
    assert_eq!(r2.kvs, r.kvs);
}

#[test]
fn current_revision_survives_compacting_everything() {
    let (tmp, mut s) = fresh();
    put(&mut s, b"a", b"1"); // 2
    del(&mut s, b"a", b""); // 3
    s.compact(3, 5).unwrap().run(s.backend()).unwrap();
    assert!(backend_revs(s.backend()).is_empty());
    drop(s);
    let (mut s, resume) = open_at(tmp.path());
    assert!(resume.is_none());
    assert_eq!(s.current_revision(), 3);
    assert_eq!(s.compact_revision(), 3);
    assert_eq!(s.keys_total(), 0);
    let r = put(&mut s, b"a", b"2");
    assert_eq!(r.rev, 4);
    assert_eq!(r.events[0].kv, kv(b"a", b"2", 4, 4, 1));
}

#[test]
fn unfinished_compaction_resumes_on_open() {
    let (tmp, mut s) = fresh();
    put(&mut s, b"a", b"1"); // 2
    put(&mut s, b"a", b"2"); // 3
    put(&mut s, b"b", b"1"); // 4
    del(&mut s, b"b", b""); // 5
    let c = s.compact(5, 9).unwrap();
    drop(c); // crash before the physical part
    drop(s);
    let (s, resume) = open_at(tmp.path());
    let resume = resume.expect("scheduled compaction resumes");
    assert_eq!(resume.revision(), 5);
    assert_eq!(s.compact_revision(), 5);
    assert_eq!(s.current_revision(), 5);
    assert_eq!(s.backend().consistent_index().unwrap(), 9);
    assert!(matches!(
        s.range(b"a", b"", &at(4)),
        Err(MvccError::Compacted)
    ));
    assert_eq!(get(&s, b"a", 5), Some(kv(b"a", b"2", 2, 3, 2)));
    assert_eq!(get(&s, b"b", 5), None);
    resume.run(s.backend()).unwrap();
    assert_eq!(backend_revs(s.backend()), vec![(3, 0, false)]);
    drop(s);
    let (s, resume) = open_at(tmp.path());
    assert!(resume.is_none());
    assert_eq!(s.compact_revision(), 5);
    assert_eq!(get(&s, b"a", 5), Some(kv(b"a", b"2", 2, 3, 2)));
}

#[test]
fn restart_restores_leases_and_events_between() {
    let (tmp, mut s) = fresh();
    let mut t = s.write(1);
    t.put(b"l1", b"x", 7);
    t.put(b"l2", b"x", 8);
    t.put(b"n", b"x", 0);
    t.commit().unwrap(); // 2
    let mut t = s.write(2);
    t.put(b"l2", b"y", 0); // lease detached
    t.put(b"l3", b"y", 9);
    t.commit().unwrap(); // 3
    del(&mut s, b"l3", b""); // 4

    let evs: Vec<(Revision, Event)> = events_between(s.backend(), 3, 4)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[0].0, Revision::new(3, 0));
    assert_eq!(evs[0].1.kv.key, b"l2".to_vec());
    assert_eq!(evs[0].1.kv.version, 2);
    assert_eq!(evs[2].0, Revision::new(4, 0));
    assert_eq!(evs[2].1.kind, EventType::Delete);
    assert_eq!(evs[2].1.kv.mod_revision, 4);
    assert_eq!(events_between(s.backend(), 2, 2).count(), 3);
    assert_eq!(events_between(s.backend(), 5, 100).count(), 0);

    drop(s);
    let (mut s, _) = open_at(tmp.path());
    assert_eq!(s.take_restored_leases(), vec![(b"l1".to_vec(), 7)]);
    assert!(s.take_restored_leases().is_empty());
}

#[test]
fn corrupt_backend_data_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let backend = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
        let mut b = WriteBatch::new();
        b.put(
            Bucket::Key,
            &Revision::new(2, 0).to_bytes(),
            &b"\x09garbage"[..],
        );
        backend.commit(b).unwrap();
    }
    let backend = Arc::new(Backend::open(tmp.path(), BackendOptions::default()).unwrap());
    let err = Store::open(Arc::clone(&backend)).unwrap_err();
    assert!(matches!(err, MvccError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("revision 2.0"), "{err}");

    let mut b = WriteBatch::new();
    b.delete(Bucket::Key, &Revision::new(2, 0).to_bytes());
    b.put(Bucket::Key, b"bad-key", &b""[..]);
    backend.commit(b).unwrap();
    assert!(matches!(
        Store::open(Arc::clone(&backend)),
        Err(MvccError::Corrupt(_))
    ));

    let mut b = WriteBatch::new();
    b.delete(Bucket::Key, b"bad-key");
    b.put(Bucket::Meta, meta::SCHEDULED_COMPACT_REV, &b"x"[..]);
    backend.commit(b).unwrap();
    assert!(matches!(
        Store::open(Arc::clone(&backend)),
        Err(MvccError::Corrupt(_))
    ));
}

#[test]
fn missing_revision_poisons_the_txn() {
    let (_tmp, mut s) = fresh();
    put(&mut s, b"a", b"1"); // 2
                             // lose the value behind the index's back
    let mut b = WriteBatch::new();
    b.delete(Bucket::Key, &Revision::new(2, 0).to_bytes());
    s.backend().commit(b).unwrap();
    assert!(matches!(
        s.range(b"a", b"", &at(0)),
        Err(MvccError::Corrupt(_))
    ));
    // count_only does not touch values
    assert_eq!(
        s.range(
            b"a",
            b"",
            &RangeOptions {
                count_only: true,
                ..RangeOptions::default()
            }
        )
        .unwrap()
        .count,
        1
    );
    let mut t = s.write(5);
    t.put(b"a", b"2", 0);
    let err = t.commit().unwrap_err();
    assert!(matches!(err, MvccError::Corrupt(_)), "{err}");
    assert_eq!(s.current_revision(), 2);
    assert!(backend_revs(s.backend()).is_empty());
    let mut t = s.write(5);
    t.delete_range(b"a", b"");
    assert!(t.commit().is_err());
    assert_eq!(s.current_revision(), 2);
}

// ---- model-based: random histories checked against a simple model, across restarts ----

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type State = BTreeMap<Vec<u8>, KeyValue>;

/// Applies one random transaction to the store and the model; returns whether it changed.
fn random_txn(rng: &mut Rng, s: &mut Store, history: &mut Vec<State>) {
    const KEYS: [&[u8]; 7] = [b"\x00", b"a", b"a/1", b"a/2", b"b", b"c\xff", b"\xff"];
    let rev = s.current_revision() + 1;
    let mut state = history.last().unwrap().clone();
    let mut changed = false;
    let mut t = s.write(rev as u64);
    for _ in 0..1 + rng.below(3) {
        let key = KEYS[rng.below(KEYS.len() as u64) as usize];
        match rng.below(10) {
            0..=5 => {
                let value = format!("{rev}-{}", rng.below(1000)).into_bytes();
                let lease = rng.below(3) as i64;
                let prev = state.get(key).cloned();
                let got = t.put(key, &value, lease);
                assert_eq!(got, prev);
                let (create, version) = prev
                    .map(|p| (p.create_revision, p.version + 1))
                    .unwrap_or((rev, 1));
                state.insert(
                    key.to_vec(),
                    KeyValue {
                        key: key.to_vec(),
                        create_revision: create,
                        mod_revision: rev,
                        version,
                        value,
                        lease,
                    },
                );
                changed = true;
            }
            6..=7 => {
                let want: Vec<KeyValue> = state.remove(key).into_iter().collect();
                assert_eq!(t.delete_range(key, b""), want);
                changed |= !want.is_empty();
            }
            8 => {
                let end: &[u8] = b"a0";
                let want: Vec<KeyValue> = state
                    .range::<[u8], _>((Bound::Included(&b"a/"[..]), Bound::Excluded(end)))
                    .map(|(_, v)| v.clone())
                    .collect();
                for kv in &want {
                    state.remove(&kv.key);
                }
                assert_eq!(t.delete_range(b"a/", end), want);
                changed |= !want.is_empty();
            }
            _ => {
                let r = t.range(b"\x00", b"\x00", &RangeOptions::default()).unwrap();
                assert_eq!(r.kvs, state.values().cloned().collect::<Vec<_>>());
                assert_eq!(r.rev, if changed { rev } else { rev - 1 });
            }
        }
    }
    let res = t.commit().unwrap();
    if changed {
        assert_eq!(res.rev, rev);
        history.push(state);
    } else {
        assert_eq!(res.rev, rev - 1);
    }
}

fn check_history(s: &Store, history: &[State]) {
    assert_eq!(s.current_revision() as usize, history.len() - 1);
    assert_eq!(s.keys_total(), history.last().unwrap().len());
    for rev in 1..history.len() as i64 {
        let r = s.range(b"\x00", b"\x00", &at(rev));
        if rev < s.compact_revision() {
            assert!(matches!(r, Err(MvccError::Compacted)), "rev {rev}");
            continue;
        }
        let r = r.unwrap();
        let want: Vec<KeyValue> = history[rev as usize].values().cloned().collect();
        assert_eq!(r.kvs, want, "rev {rev}");
        assert_eq!(r.count, want.len());
        assert_eq!(r.rev, s.current_revision());
        // prefix read
        let r = s.range(b"a/", b"a0", &at(rev)).unwrap();
        let want: Vec<KeyValue> = history[rev as usize]
            .range::<[u8], _>((Bound::Included(&b"a/"[..]), Bound::Excluded(&b"a0"[..])))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(r.kvs, want, "prefix at rev {rev}");
    }
}

#[test]
fn random_histories_match_model_across_compaction_and_restart() {
    for seed in [1u64, 7, 42, 1234] {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        // history[rev] = state at rev; revisions start at 1 (empty)
        let mut history: Vec<State> = vec![State::new(), State::new()];
        let (mut s, _) = open_at(tmp.path());
        for round in 0..4 {
            for _ in 0..6 {
                // some stretches grouped (one backend batch), some not
                let grouped = rng.below(2) == 0;
                if grouped {
                    s.begin_group();
                }
                for _ in 0..10 {
                    random_txn(&mut rng, &mut s, &mut history);
                }
                if grouped && rng.below(2) == 0 {
                    check_history(&s, &history); // reads served from the open group
                }
                s.end_group().unwrap();
            }
            check_history(&s, &history);
            if round == 1 {
                s.begin_group(); // compaction inside an open group
            }
            // compact somewhere between the last compaction and now
            let lo = s.compact_revision().max(0) + 1;
            let cur = s.current_revision();
            if lo <= cur {
                let r = lo + rng.below((cur - lo + 1) as u64) as i64;
                let c = s.compact(r, 1000 + round).unwrap();
                check_history(&s, &history);
                if round % 2 == 0 {
                    c.run(s.backend()).unwrap();
                }
                // else: left unfinished; resumed on open
            }
            check_history(&s, &history);
            s.end_group().unwrap();
            let (cur, comp, keys) = (s.current_revision(), s.compact_revision(), s.keys_total());
            drop(s);
            let (s2, resume) = open_at(tmp.path());
            s = s2;
            assert_eq!(s.current_revision(), cur);
            assert_eq!(s.compact_revision(), comp);
            assert_eq!(s.keys_total(), keys);
            assert_eq!(resume.is_some(), round % 2 == 1 && lo <= cur);
            check_history(&s, &history);
            if let Some(c) = resume {
                c.run(s.backend()).unwrap();
                check_history(&s, &history);
            }
        }
    }
}

#[test]
fn compaction_runs_beside_reads_and_writes() {
    let (_tmp, mut s) = fresh();
    for i in 0..3000 {
        put(
            &mut s,
            format!("k{:02}", i % 50).as_bytes(),
            format!("{i}").as_bytes(),
        );
    }
    let store = Arc::new(std::sync::RwLock::new(s));
    let c = store.write().unwrap().compact(3001, 1).unwrap();
    let backend = Arc::clone(store.read().unwrap().backend());
    let runner = std::thread::spawn(move || c.run(&backend));
    for i in 0..300 {
        {
            let mut s = store.write().unwrap();
            put(&mut s, format!("k{:02}", i % 50).as_bytes(), b"new");
        }
        let s = store.read().unwrap();
        let r = s.range(b"k", b"l", &at(3001)).unwrap();
        assert_eq!(r.count, 50);
        assert_eq!(r.kvs[0].mod_revision, 2952);
        let r = s.range(b"k", b"l", &RangeOptions::default()).unwrap();
        assert_eq!(r.count, 50);
    }
    runner.join().unwrap().unwrap();
    let s = store.read().unwrap();
    assert_eq!(s.current_revision(), 3301);
    // 50 kept at the compaction revision + 300 newer
    assert_eq!(backend_revs(s.backend()).len(), 350);
}

#[test]
fn group_commit_is_one_batch_and_visible_before_it() {
    let (tmp, mut s) = fresh();
    let mut t = s.write(10);
    t.put(b"a", b"0", 0);
    t.commit().unwrap(); // 2, outside any group
    s.begin_group();
    assert!(s.in_group());
    for (i, ci) in (11..14).enumerate() {
        let mut t = s.write(ci);
        let prev = t.put(b"a", format!("{}", i + 1).as_bytes(), 0);
        assert_eq!(prev.unwrap().value, format!("{i}").into_bytes());
        t.put(format!("k{i}").as_bytes(), b"v", 0);
        t.commit().unwrap();
    }
    // a no-op txn does not move the group's consistent index
    s.write(14).commit().unwrap();
    // visible through the store...
    assert_eq!(s.current_revision(), 5);
    assert_eq!(get(&s, b"a", 0), Some(kv(b"a", b"3", 2, 5, 4)));
    assert_eq!(get(&s, b"a", 3), Some(kv(b"a", b"1", 2, 3, 2)));
    assert_eq!(s.range(b"k", b"l", &at(0)).unwrap().kvs.len(), 3);
    let mut t = s.write(15);
    assert_eq!(t.delete_range(b"k", b"l").len(), 3);
    t.commit().unwrap(); // 6
                         // ...but not yet in the backend
    assert_eq!(backend_revs(s.backend()), vec![(2, 0, false)]);
    assert_eq!(s.backend().consistent_index().unwrap(), 10);
    s.end_group().unwrap();
    assert!(!s.in_group());
    assert_eq!(backend_revs(s.backend()).len(), 10);
    assert_eq!(s.backend().consistent_index().unwrap(), 15);

    // a crash inside a group loses the whole group, consistently with the consistent index
    s.begin_group();
    put(&mut s, b"lost", b"x"); // 7
    assert_eq!(get(&s, b"lost", 0).unwrap().mod_revision, 7);
    drop(s);
    let (s, _) = open_at(tmp.path());
    assert_eq!(s.current_revision(), 6);
    assert_eq!(s.backend().consistent_index().unwrap(), 15);
    assert_eq!(get(&s, b"lost", 0), None);
    assert_eq!(get(&s, b"a", 0), Some(kv(b"a", b"3", 2, 5, 4)));
    assert_eq!(s.keys_total(), 1);
}

#[test]
fn shared_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Store>();
    send_sync::<Backend>();
    send::<Compaction>();
    send::<WriteBatch>();
}
