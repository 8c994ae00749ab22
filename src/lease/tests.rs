use std::time::{Duration, Instant};

use super::*;
use crate::backend::{Backend, BackendOptions, WriteBatch};
use crate::error::EtcdError;
use crate::mvcc::{Event, EventType, KeyValue};
use crate::proto::ferrocdpb::LeaseCheckpoint;

fn put(key: &str, lease: i64) -> Event {
    Event {
        kind: EventType::Put,
        kv: KeyValue {
            key: key.as_bytes().to_vec(),
            lease,
            ..Default::default()
        },
        prev_kv: None,
    }
}

fn del(key: &str) -> Event {
    Event {
        kind: EventType::Delete,
        kv: KeyValue {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        },
        prev_kv: None,
    }
}

#[test]
fn min_ttl_is_one_and_a_half_election_timeouts_rounded_up() {
    assert_eq!(min_ttl(Duration::from_millis(1000)), 2);
    assert_eq!(min_ttl(Duration::from_millis(2000)), 3);
    assert_eq!(min_ttl(Duration::from_millis(5000)), 8);
    assert_eq!(min_ttl(Duration::from_millis(100)), 1);
}

#[test]
fn grant_rejects_duplicates_and_tracks_keys() {
    let l = Lessor::new(2);
    let mut b = WriteBatch::default();
    l.grant(&mut b, 7, 10).unwrap();
    assert_eq!(l.grant(&mut b, 7, 10), Err(EtcdError::LeaseExist));
    assert!(l.exists(7));
    assert!(!l.exists(8));
    l.grant(&mut b, 8, 10).unwrap();
    l.apply_events(&[put("a", 7), put("b", 7), put("c", 8)]);
    assert_eq!(
        l.attached_keys(7).unwrap(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    // Moving a key to another lease detaches it; a put without a lease detaches; a delete too.
    l.apply_events(&[put("a", 8), put("b", 0), del("c")]);
    assert_eq!(l.attached_keys(7).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(l.attached_keys(8).unwrap(), vec![b"a".to_vec()]);
    l.remove(&mut b, 8);
    assert!(l.attached_keys(8).is_none());
    assert_eq!(l.leases(), vec![7]);
    // A put naming a lease that does not exist attaches nothing.
    l.apply_events(&[put("z", 99)]);
    assert!(l.attached_keys(99).is_none());
}

#[test]
fn only_the_primary_renews_and_expires() {
    let l = Lessor::new(1);
    let mut b = WriteBatch::default();
    l.grant(&mut b, 1, 1).unwrap();
    assert_eq!(l.renew(1), Err(EtcdError::NotLeader));
    assert!(l.expired(10).is_empty());
    l.promote(Duration::ZERO);
    assert_eq!(l.renew(1), Ok(1));
    assert_eq!(l.renew(2), Err(EtcdError::LeaseNotFound));
    assert!(l.expired(10).is_empty());
    std::thread::sleep(Duration::from_millis(1100));
    let exp = l.expired(10);
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0].id, 1);
    assert_eq!(exp[0].checkpoint_seq, 0);
    // Proposed once; not again until the retry interval or an explicit retry.
    assert!(l.expired(10).is_empty());
    l.retry_revocations(&[1]);
    assert_eq!(l.expired(10).len(), 1);
    // An expired lease cannot be renewed back to life.
    assert_eq!(l.renew(1), Err(EtcdError::LeaseNotFound));
    l.demote();
    assert!(l.expired(10).is_empty());
    assert_eq!(l.queued(), 0);
}

#[test]
fn revocations_are_rate_limited_per_call() {
    let l = Lessor::new(1);
    let mut b = WriteBatch::default();
    for id in 1..=10 {
        l.grant(&mut b, id, 1).unwrap();
    }
    l.promote(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(l.expired(4).len(), 4);
    assert_eq!(l.expired(4).len(), 4);
    assert_eq!(l.expired(4).len(), 2);
}

#[test]
fn promotion_starts_from_the_checkpointed_deadline_not_the_full_ttl() {
    let l = Lessor::new(1);
    let mut b = WriteBatch::default();
    l.grant(&mut b, 5, 100).unwrap();
    // The old leader said 3 s were left.
    l.checkpoint(
        &mut b,
        &[LeaseCheckpoint {
            id: 5,
            remaining_ms: 3000,
        }],
    );
    assert_eq!(l.checkpoint_seq(5), Some(1));
    let before = l.time_to_live(5, false).unwrap();
    assert!(before.remaining <= 3, "{before:?}");
    assert_eq!(before.granted, 100);
    l.promote(Duration::from_millis(500));
    let after = l.time_to_live(5, false).unwrap();
    assert!(
        after.remaining <= 3,
        "promotion must not reset the TTL: {after:?}"
    );
    // Renewal gives the full TTL back and queues a checkpoint of it.
    assert_eq!(l.renew(5), Ok(100));
    let cps = l.take_checkpoints(10);
    assert_eq!(cps.len(), 1);
    assert!(cps[0].remaining_ms > 99_000 && cps[0].remaining_ms <= 100_000);
    assert!(l.take_checkpoints(10).is_empty());
}

#[test]
fn a_lease_past_its_deadline_gets_a_grace_period_on_promotion() {
    let l = Lessor::new(1);
    let mut b = WriteBatch::default();
    l.grant(&mut b, 5, 100).unwrap();
    l.checkpoint(
        &mut b,
        &[LeaseCheckpoint {
            id: 5,
            remaining_ms: 0,
        }],
    );
    let start = Instant::now();
    l.promote(Duration::from_millis(300));
    assert!(l.expired(10).is_empty());
    while l.expired(10).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn state_survives_a_reload_from_the_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
    let l = Lessor::new(1);
    let mut b = WriteBatch::default();
    l.grant(&mut b, 1, 30).unwrap();
    l.grant(&mut b, 2, 60).unwrap();
    l.grant(&mut b, 3, 60).unwrap();
    l.checkpoint(
        &mut b,
        &[LeaseCheckpoint {
            id: 2,
            remaining_ms: 10_000,
        }],
    );
    l.remove(&mut b, 3);
    backend.commit(b).unwrap();

    let r = Lessor::new(1);
    r.load(
        &backend,
        vec![
            (b"k1".to_vec(), 1),
            (b"k2".to_vec(), 2),
            (b"gone".to_vec(), 3),
        ],
    )
    .unwrap();
    assert_eq!(r.leases(), vec![1, 2]);
    assert_eq!(r.checkpoint_seq(2), Some(1));
    let t1 = r.time_to_live(1, true).unwrap();
    assert_eq!((t1.granted, t1.keys), (30, vec![b"k1".to_vec()]));
    assert!(t1.remaining >= 29);
    let t2 = r.time_to_live(2, true).unwrap();
    assert_eq!(t2.granted, 60);
    assert!(t2.remaining <= 10 && t2.remaining >= 9, "{t2:?}");
    assert!(!r.is_primary());
}

#[test]
fn a_primary_stays_primary_and_expiring_across_a_snapshot_load() {
    // The member became leader (promoted) while its applier was still installing a leader's
    // snapshot, which then loads the snapshot's leases: the lessor used to come out of the
    // load as a follower's, renewing nothing and expiring nothing, forever.
    let tmp = tempfile::tempdir().unwrap();
    let backend = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
    let leader = Lessor::new(1);
    let mut b = WriteBatch::default();
    leader.grant(&mut b, 1, 1).unwrap();
    leader.grant(&mut b, 2, 30).unwrap();
    backend.commit(b).unwrap();

    let l = Lessor::new(1);
    l.promote(Duration::from_millis(200));
    let loaded_at = Instant::now();
    l.load(&backend, vec![(b"k".to_vec(), 1)]).unwrap();
    assert!(l.is_primary(), "still the primary after the load");
    assert_eq!(l.renew(2), Ok(30), "keep-alives are answered");
    let t = l.time_to_live(2, false).unwrap();
    assert!(t.remaining >= 29, "{t:?}");
    // Lease 1 (TTL 1 s) expires on this clock, about 1 s after the load.
    while l.expired(10).is_empty() {
        assert!(
            loaded_at.elapsed() < Duration::from_secs(3),
            "the loaded lease never expired"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(loaded_at.elapsed() >= Duration::from_millis(900));
    // A lease granted after the load is on the clock too.
    let mut b = WriteBatch::default();
    l.grant(&mut b, 3, 5).unwrap();
    assert_eq!(l.renew(3), Ok(5));
    // Demotion still works after such a load.
    l.demote();
    assert_eq!(l.renew(2), Err(EtcdError::NotLeader));
}
