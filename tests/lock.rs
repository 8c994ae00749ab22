//! The Lock service (`v3lockpb.Lock`) through the etcd-client crate, and `etcdctl lock` (which
//! builds its own mutex from leases, txns and watches) against real ferrocd processes.
//!
//! Expected keys, errors and codes follow etcd 3.5's lock server (`v3lock/lock.go` running
//! `clientv3/concurrency.Mutex`): key `name/<lease hex>`, `mutex: session is expired` with
//! code Unknown, lease errors with their own code.

mod common;

use std::time::{Duration, Instant};

use common::{grpc_status, BackgroundEtcdctl, Cluster, Member};
use etcd_client::{Client, GetOptions, LockOptions};

/// A generous bound for things that should happen "soon" (never a performance assertion).
const SOON: Duration = Duration::from_secs(10);

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.expect("lease grant").id()
}

fn lock_opts(lease: i64) -> Option<LockOptions> {
    Some(LockOptions::new().with_lease(lease))
}

/// The keys under `prefix`, by create revision.
async fn waiters(c: &mut Client, prefix: &str) -> Vec<(String, i64)> {
    let resp = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .expect("get prefix");
    let mut v: Vec<(String, i64)> = resp
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.create_revision()))
        .collect();
    v.sort_by_key(|(_, rev)| *rev);
    v
}

#[tokio::test]
async fn lock_key_is_name_slash_lease_hex_and_unlock_deletes_it() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let lease = grant(&mut c, 30).await;
    let resp = c.lock("lk", lock_opts(lease)).await.expect("lock");
    let key = String::from_utf8(resp.key().to_vec()).unwrap();
    assert_eq!(key, format!("lk/{lease:x}"));
    let got = c.get(key.as_str(), None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!(kv.value(), b"");
    assert_eq!(kv.lease(), lease);
    // Uncontended: the header is the lock txn's, which created the key.
    assert_eq!(resp.header().unwrap().revision(), kv.create_revision());

    // Locking again with the same lease is the same acquisition, at once.
    let again = tokio::time::timeout(SOON, c.lock("lk", lock_opts(lease)))
        .await
        .expect("re-lock with the same lease must not wait")
        .expect("re-lock");
    assert_eq!(again.key(), key.as_bytes());
    let after = c.get(key.as_str(), None).await.unwrap();
    assert_eq!(after.kvs()[0].create_revision(), kv.create_revision());

    let un = c.unlock(key.as_str()).await.expect("unlock");
    let rev_after = c
        .get("lk/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert_eq!(un.header().unwrap().revision(), rev_after);
    assert!(c.get(key.as_str(), None).await.unwrap().kvs().is_empty());
}

#[tokio::test]
async fn waiters_get_the_lock_in_creation_order_after_each_unlock() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let (la, lb, lc) = (
        grant(&mut c, 60).await,
        grant(&mut c, 60).await,
        grant(&mut c, 60).await,
    );
    let a = c.lock("queue", lock_opts(la)).await.expect("a locks");

    let mut cb = m.client().await;
    let b = tokio::spawn(async move { cb.lock("queue", lock_opts(lb)).await });
    // b must be queued (its key created) before c, so wait for its key.
    let deadline = Instant::now() + SOON;
    while waiters(&mut c, "queue/").await.len() < 2 {
        assert!(Instant::now() < deadline, "b's key never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut cc = m.client().await;
    let cl = tokio::spawn(async move { cc.lock("queue", lock_opts(lc)).await });
    while waiters(&mut c, "queue/").await.len() < 3 {
        assert!(Instant::now() < deadline, "c's key never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queue = waiters(&mut c, "queue/").await;
    let expected: Vec<String> = [la, lb, lc]
        .iter()
        .map(|l| format!("queue/{l:x}"))
        .collect();
    assert_eq!(
        queue.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        expected
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "b got the lock while a holds it");
    assert!(!cl.is_finished(), "c got the lock while a holds it");

    let un_a = c.unlock(a.key()).await.expect("a unlocks");
    let b = tokio::time::timeout(SOON, b)
        .await
        .expect("b gets the lock once a unlocks")
        .unwrap()
        .expect("b locks");
    assert_eq!(b.key(), expected[1].as_bytes());
    // b's answer comes from a read after a's delete.
    assert!(b.header().unwrap().revision() >= un_a.header().unwrap().revision());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cl.is_finished(), "c got the lock while b holds it");

    let un_b = c.unlock(b.key()).await.expect("b unlocks");
    let cres = tokio::time::timeout(SOON, cl)
        .await
        .expect("c gets the lock once b unlocks")
        .unwrap()
        .expect("c locks");
    assert_eq!(cres.key(), expected[2].as_bytes());
    assert!(cres.header().unwrap().revision() >= un_b.header().unwrap().revision());
}

#[tokio::test]
async fn concurrent_lockers_hold_the_lock_one_at_a_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let m = Member::start(&[]);
    let holders = Arc::new(AtomicUsize::new(0));
    let rounds = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = m.client().await;
        let (holders, rounds) = (holders.clone(), rounds.clone());
        tasks.push(tokio::spawn(async move {
            let lease = grant(&mut c, 60).await;
            for _ in 0..5 {
                let l = c.lock("busy", lock_opts(lease)).await.expect("lock");
                assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                tokio::time::sleep(Duration::from_millis(10)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                rounds.fetch_add(1, Ordering::SeqCst);
                c.unlock(l.key()).await.expect("unlock");
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("lockers finish")
            .unwrap();
    }
    assert_eq!(rounds.load(Ordering::SeqCst), 20);
    let mut c = m.client().await;
    assert!(waiters(&mut c, "busy/").await.is_empty());
}

#[tokio::test]
async fn waiter_whose_lease_is_revoked_gets_session_expired() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let (la, lb) = (grant(&mut c, 60).await, grant(&mut c, 60).await);
    let a = c.lock("exp", lock_opts(la)).await.expect("a locks");
    let mut cb = m.client().await;
    let b = tokio::spawn(async move { cb.lock("exp", lock_opts(lb)).await });
    let deadline = Instant::now() + SOON;
    while waiters(&mut c, "exp/").await.len() < 2 {
        assert!(Instant::now() < deadline, "b's key never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.lease_revoke(lb).await.expect("revoke b's lease");
    // b learns it at once, while a still holds the lock.
    let err = tokio::time::timeout(SOON, b)
        .await
        .expect("b's lock must fail once its lease is gone")
        .unwrap()
        .expect_err("b must not get the lock");
    let st = grpc_status(err);
    assert_eq!(st.code(), tonic::Code::Unknown);
    assert_eq!(st.message(), "mutex: session is expired");
    let left = waiters(&mut c, "exp/").await;
    assert_eq!(left, vec![(format!("exp/{la:x}"), left[0].1)]);
    assert_eq!(c.get(a.key(), None).await.unwrap().kvs().len(), 1);
}

#[tokio::test]
async fn lock_with_an_unknown_lease_is_refused() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let err = c
        .lock("nolease", lock_opts(0x1234))
        .await
        .expect_err("unknown lease");
    let st = grpc_status(err);
    assert_eq!(st.code(), tonic::Code::NotFound);
    assert_eq!(st.message(), "etcdserver: requested lease not found");
    assert!(waiters(&mut c, "nolease/").await.is_empty());
}

#[tokio::test]
async fn lock_without_a_lease_is_held_by_a_fresh_60s_lease() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let resp = c.lock("session", None).await.expect("lock");
    let key = String::from_utf8(resp.key().to_vec()).unwrap();
    let hex = key.strip_prefix("session/").expect("key under the name");
    let lease = i64::from_str_radix(hex, 16).expect("hex lease id");
    let kv = c.get(key.as_str(), None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.lease(), lease);
    let ttl = c.lease_time_to_live(lease, None).await.expect("ttl");
    assert_eq!(ttl.granted_ttl(), 60);
}

#[tokio::test]
async fn cancelled_waiter_leaves_no_key_behind() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let (la, lb, lc) = (
        grant(&mut c, 60).await,
        grant(&mut c, 60).await,
        grant(&mut c, 60).await,
    );
    let a = c.lock("cancel", lock_opts(la)).await.expect("a locks");
    let mut cb = m.client().await;
    let gave_up =
        tokio::time::timeout(Duration::from_millis(500), cb.lock("cancel", lock_opts(lb))).await;
    assert!(gave_up.is_err(), "b cannot get the lock while a holds it");
    // The server notices the cancelled call and removes b's key.
    let deadline = Instant::now() + SOON;
    loop {
        let w = waiters(&mut c, "cancel/").await;
        if w.len() == 1 {
            assert_eq!(w[0].0, format!("cancel/{la:x}"));
            break;
        }
        assert!(Instant::now() < deadline, "b's key stayed: {w:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // So c gets the lock right after a, without waiting for b's lease.
    c.unlock(a.key()).await.unwrap();
    let cres = tokio::time::timeout(SOON, c.lock("cancel", lock_opts(lc)))
        .await
        .expect("c must not wait for the abandoned b")
        .expect("c locks");
    assert_eq!(cres.key(), format!("cancel/{lc:x}").as_bytes());
}

#[tokio::test]
async fn waiting_locks_and_observers_do_not_hold_up_shutdown() {
    let mut m = Member::start(&[]);
    let mut c = m.client().await;
    let (la, lb) = (grant(&mut c, 60).await, grant(&mut c, 60).await);
    c.lock("stop", lock_opts(la)).await.expect("a locks");
    let mut cb = m.client().await;
    let waiter = tokio::spawn(async move { cb.lock("stop", lock_opts(lb)).await });
    let mut obs = c.observe("stop-election").await.expect("observe");
    let deadline = Instant::now() + SOON;
    while waiters(&mut c, "stop/").await.len() < 2 {
        assert!(Instant::now() < deadline, "waiter never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A graceful stop waits for open calls: the waiting ones must end.
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || m.stop()),
    )
    .await
    .expect("the member stops although a lock call and an observe stream are open")
    .unwrap();
    assert!(status.success(), "clean exit: {status}");
    let err = waiter
        .await
        .unwrap()
        .expect_err("the waiter cannot get the lock");
    let st = grpc_status(err);
    assert_eq!(
        (st.code(), st.message()),
        (tonic::Code::Unavailable, "etcdserver: server stopped")
    );
    match obs.message().await {
        Err(etcd_client::Error::GRpcStatus(st)) => {
            assert_eq!(st.message(), "etcdserver: server stopped")
        }
        other => panic!("observe must end with server stopped, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// etcdctl lock

/// `etcdctl lock <args...>` in the background.
fn ctl_lock(endpoint: &str, args: &[&str], envs: &[(&str, &str)]) -> BackgroundEtcdctl {
    let mut all = vec!["lock"];
    all.extend_from_slice(args);
    BackgroundEtcdctl::spawn(endpoint, &all, envs)
}

#[tokio::test]
async fn etcdctl_lock_holders_never_overlap() {
    let m = Member::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("held.log");
    let log_s = log.to_str().unwrap().to_string();
    // Each holder writes start/end around a pause while it holds the lock; etcdctl's exec
    // mode runs the command with the lock held and unlocks when it exits.
    let script = format!(
        "echo \"start $WHO $ETCD_LOCK_KEY\" >> {log_s}; sleep 0.4; echo \"end $WHO\" >> {log_s}"
    );
    let holders: Vec<BackgroundEtcdctl> = ["a", "b", "c"]
        .iter()
        .map(|who| {
            ctl_lock(
                &m.endpoint(),
                &["--ttl", "5", "shared", "--", "sh", "-c", &script],
                &[("WHO", who)],
            )
        })
        .collect();
    for h in holders {
        h.wait_success(Duration::from_secs(30));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "every holder ran once: {text}");
    let mut seen = Vec::new();
    for pair in lines.chunks(2) {
        let start: Vec<&str> = pair[0].split(' ').collect();
        assert_eq!(start[0], "start", "interleaved holders: {text}");
        assert!(start[2].starts_with("shared/"), "ETCD_LOCK_KEY: {text}");
        assert_eq!(
            pair[1],
            format!("end {}", start[1]),
            "interleaved holders: {text}"
        );
        seen.push(start[1].to_string());
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"]);
    // Every holder unlocked on exit.
    let mut c = m.client().await;
    assert!(waiters(&mut c, "shared/").await.is_empty());
}

#[tokio::test]
async fn etcdctl_lock_is_freed_when_the_killed_holder_lease_expires() {
    let m = Member::start(&[]);
    let mut holder = ctl_lock(&m.endpoint(), &["--ttl", "2", "crash"], &[]);
    let key = holder.line(SOON).expect("holder prints its lock key");
    assert!(key.starts_with("crash/"), "{key}");
    let waiter = ctl_lock(&m.endpoint(), &["--ttl", "2", "crash"], &[]);
    // The waiter queues behind the holder, and stays there while the holder lives (its
    // keep-alives renew the 2 s lease well past its TTL).
    let mut c = m.client().await;
    let deadline = Instant::now() + SOON;
    while waiters(&mut c, "crash/").await.len() < 2 {
        assert!(Instant::now() < deadline, "waiter never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        waiter.line(Duration::from_secs(3)),
        None,
        "waiter got a held lock"
    );

    holder.kill9();
    let killed = Instant::now();
    let got = waiter
        .line(Duration::from_secs(2 + 8))
        .expect("waiter gets the lock once the dead holder's lease expires");
    assert!(got.starts_with("crash/") && got != key, "{got} vs {key}");
    // It cannot have come before the lease ran out (2 s minus clock granularity).
    assert!(
        killed.elapsed() >= Duration::from_millis(1000),
        "lock freed before expiry"
    );
    let left = waiters(&mut c, "crash/").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, got);
}

// ---------------------------------------------------------------------------------------------
// cluster

#[tokio::test]
async fn lock_through_followers_and_freed_by_lease_expiry_on_a_cluster() {
    let cl = Cluster::start(3, &[]);
    let leader = cl.leader(0).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (f1, f2) = (&cl.members[followers[0]], &cl.members[followers[1]]);

    // Uncontended, through a follower: the key and revision agree with the leader's view.
    let mut c1 = f1.client().await;
    let lease = grant(&mut c1, 30).await;
    let resp = c1
        .lock("cl", lock_opts(lease))
        .await
        .expect("lock via follower");
    assert_eq!(resp.key(), format!("cl/{lease:x}").as_bytes());
    let mut cl_leader = cl.members[leader].client().await;
    let kv = cl_leader.get(resp.key(), None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.create_revision(), resp.header().unwrap().revision());
    c1.unlock(resp.key()).await.expect("unlock via follower");

    // A holder through one follower (etcdctl, 2 s session), a server-side waiter through the
    // other; killing the holder frees the lock once the leader expires its lease.
    let mut holder = ctl_lock(&f1.endpoint(), &["--ttl", "2", "cl"], &[]);
    let held = holder.line(SOON).expect("holder prints its key");
    let mut c2 = f2.client().await;
    let wl = grant(&mut c2, 30).await;
    let waiter = tokio::spawn(async move { c2.lock("cl", lock_opts(wl)).await });
    let deadline = Instant::now() + SOON;
    while waiters(&mut cl_leader, "cl/").await.len() < 2 {
        assert!(Instant::now() < deadline, "waiter never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !waiter.is_finished(),
        "waiter got a lock that is still held"
    );

    holder.kill9();
    let got = tokio::time::timeout(Duration::from_secs(2 + 10), waiter)
        .await
        .expect("the lock is freed once the holder's lease expires")
        .unwrap()
        .expect("waiter locks");
    assert_eq!(got.key(), format!("cl/{wl:x}").as_bytes());
    let left = waiters(&mut cl_leader, "cl/").await;
    assert_eq!(left.len(), 1, "{left:?} (holder key was {held})");
    assert_eq!(left[0].0.as_bytes(), got.key());
}
