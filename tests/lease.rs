//! Leases against real ferrocd processes: grant rules and errors, attach/detach, revocation in
//! one revision, keep-alive stream semantics, expiry with a delete event, persistence across
//! kill -9, metrics, etcdctl's lease commands, and (3 members) an honest lease clock across a
//! leader change.

mod common;

use std::time::{Duration, Instant};

use common::{code_and_message, http_get, ok, Cluster, Member};
use etcd_client::{
    Client, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, Txn,
    TxnOp, WatchOptions,
};
use ferrocd::proto::etcdserverpb::lease_client::LeaseClient;
use ferrocd::proto::etcdserverpb::LeaseKeepAliveRequest;
use tokio_stream::StreamExt;

/// Timing-sensitive tests (expiry windows, leader changes) run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn ttl(c: &mut Client, id: i64) -> (i64, i64, Vec<Vec<u8>>) {
    let r = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("time to live");
    (r.ttl(), r.granted_ttl(), r.keys().to_vec())
}

async fn raw_lease_client(m: &Member) -> LeaseClient<tonic::transport::Channel> {
    LeaseClient::connect(format!("http://{}", m.endpoint()))
        .await
        .expect("connect")
}

#[tokio::test]
async fn grant_ttl_rules_ids_and_errors() {
    let m = Member::start(&[]);
    let mut c = m.client().await;

    // Below the minimum (ceil(1.5 × 1 s election timeout) = 2 s) is raised to it.
    for asked in [0, 1, -5] {
        let g = c.lease_grant(asked, None).await.unwrap();
        assert_eq!(g.ttl(), 2, "asked for {asked}");
        assert!(g.id() > 0);
    }
    let a = c.lease_grant(10, None).await.unwrap();
    let b = c.lease_grant(10, None).await.unwrap();
    assert_eq!(a.ttl(), 10);
    assert_ne!(a.id(), b.id());

    // A chosen id, then the same id again.
    let g = c
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await
        .unwrap();
    assert_eq!((g.id(), g.ttl()), (0x1234, 30));
    let e = c
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(e),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: lease already exists".into()
        )
    );

    // etcd's MaxLeaseTTL is 9e9 s: that is granted, one more is refused.
    let max = c.lease_grant(9_000_000_000, None).await.unwrap();
    assert_eq!(max.ttl(), 9_000_000_000);
    let e = c.lease_grant(9_000_000_001, None).await.unwrap_err();
    assert_eq!(
        code_and_message(e),
        (
            tonic::Code::OutOfRange,
            "etcdserver: too large lease TTL".into()
        )
    );

    let mut listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    listed.sort();
    let mut expected = vec![a.id(), b.id(), 0x1234, max.id()];
    let mut granted_min = Vec::new();
    for l in &listed {
        if !expected.contains(l) {
            granted_min.push(*l);
        }
    }
    assert_eq!(granted_min.len(), 3, "the three minimum-TTL leases");
    expected.extend(granted_min);
    expected.sort();
    assert_eq!(listed, expected);

    // Revoking or renewing what does not exist.
    let e = c.lease_revoke(0x9999).await.unwrap_err();
    assert_eq!(
        code_and_message(e),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
    assert_eq!(ttl(&mut c, 0x9999).await, (-1, 0, vec![]));
}

#[tokio::test]
async fn keys_attach_detach_and_revoke_in_one_revision() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let lease = c.lease_grant(60, None).await.unwrap().id();
    let other = c.lease_grant(60, None).await.unwrap().id();

    c.put("k1", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.put("k2", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.put("k3", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let (left, granted, keys) = ttl(&mut c, lease).await;
    assert_eq!(granted, 60);
    assert!((58..=60).contains(&left), "remaining {left}");
    assert_eq!(keys, vec![b"k1".to_vec(), b"k2".to_vec(), b"k3".to_vec()]);

    // A put without a lease detaches; ignore_lease keeps; another lease moves the key.
    c.put("k2", "plain", None).await.unwrap();
    c.put("k1", "new", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    c.put("k3", "v", Some(PutOptions::new().with_lease(other)))
        .await
        .unwrap();
    assert_eq!(ttl(&mut c, lease).await.2, vec![b"k1".to_vec()]);
    assert_eq!(ttl(&mut c, other).await.2, vec![b"k3".to_vec()]);
    let k1 = c.get("k1", None).await.unwrap();
    assert_eq!(k1.kvs()[0].lease(), lease);
    assert_eq!(k1.kvs()[0].value(), b"new");

    // An unknown lease is refused on put and in a txn.
    let e = c
        .put("k4", "v", Some(PutOptions::new().with_lease(0x7777)))
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(e),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
    let e = c
        .txn(Txn::new().and_then([TxnOp::put(
            "k4",
            "v",
            Some(PutOptions::new().with_lease(0x7777)),
        )]))
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(e).1,
        "etcdserver: requested lease not found"
    );

    // Two keys on `other` are deleted together: one revision, one watch reply.
    c.put("k5", "v", Some(PutOptions::new().with_lease(other)))
        .await
        .unwrap();
    let before = c.get("x", None).await.unwrap().header().unwrap().revision();
    let mut stream = c
        .watch("k", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let revoked = c.lease_revoke(other).await.unwrap();
    assert_eq!(revoked.header().unwrap().revision(), before + 1);
    let resp = loop {
        let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("delete events in time")
            .unwrap()
            .unwrap();
        // The first reply only says the watcher was created.
        if !r.events().is_empty() {
            break r;
        }
    };
    let evs: Vec<(EventType, Vec<u8>, i64)> = resp
        .events()
        .iter()
        .map(|e| {
            let kv = e.kv().unwrap();
            (e.event_type(), kv.key().to_vec(), kv.mod_revision())
        })
        .collect();
    assert_eq!(
        evs,
        vec![
            (EventType::Delete, b"k3".to_vec(), before + 1),
            (EventType::Delete, b"k5".to_vec(), before + 1)
        ]
    );
    assert_eq!(c.get("k3", None).await.unwrap().count(), 0);
    assert_eq!(ttl(&mut c, other).await.0, -1);
    // The key that left the lease survives it.
    assert_eq!(c.get("k2", None).await.unwrap().kvs()[0].value(), b"plain");
    let e = c.lease_revoke(other).await.unwrap_err();
    assert_eq!(code_and_message(e).0, tonic::Code::NotFound);
}

#[tokio::test]
async fn keepalive_stream_contract() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let lease = c.lease_grant(7, None).await.unwrap().id();
    let mut raw = raw_lease_client(&m).await;

    // Several requests on one stream, including an unknown lease (TTL 0, not an error); the
    // client half-closes after sending and still reads every reply, then the end.
    let reqs = vec![
        LeaseKeepAliveRequest { id: lease },
        LeaseKeepAliveRequest { id: 0x4242 },
        LeaseKeepAliveRequest { id: lease },
    ];
    let mut replies = raw
        .lease_keep_alive(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .expect("reply or end in time")
    {
        let r = r.expect("no error on the stream");
        assert!(r.header.as_ref().unwrap().revision >= 1);
        got.push((r.id, r.ttl));
    }
    assert_eq!(got, vec![(lease, 7), (0x4242, 0), (lease, 7)]);

    // etcd-client's keeper: a renewal reports the granted TTL and resets the clock.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = ttl(&mut c, lease).await.0;
    let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = stream.message().await.unwrap().unwrap();
    assert_eq!((r.id(), r.ttl()), (lease, 7));
    let after = ttl(&mut c, lease).await.0;
    assert!(
        after > before,
        "renewal resets the TTL: {before} -> {after}"
    );
    assert_eq!(after, 6);

    // A revoked lease answers TTL 0 on an open stream.
    c.lease_revoke(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = stream.message().await.unwrap().unwrap();
    assert_eq!((r.id(), r.ttl()), (lease, 0));
}

#[tokio::test]
async fn expiry_deletes_keys_and_keepalive_keeps_them() {
    let _serial = SERIAL.lock().await;
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let mut watch = c
        .watch("exp/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();

    let short = c.lease_grant(2, None).await.unwrap().id();
    let granted_at = Instant::now();
    let kept = c.lease_grant(2, None).await.unwrap().id();
    c.put("exp/short", "v", Some(PutOptions::new().with_lease(short)))
        .await
        .unwrap();
    c.put("exp/kept", "v", Some(PutOptions::new().with_lease(kept)))
        .await
        .unwrap();
    let put_rev = c.get("exp/kept", None).await.unwrap().kvs()[0].mod_revision();

    let (mut keeper, mut ka) = c.lease_keep_alive(kept).await.unwrap();
    let keep = tokio::spawn(async move {
        for _ in 0..20 {
            keeper.keep_alive().await.unwrap();
            let r = ka.message().await.unwrap().unwrap();
            assert_eq!(r.ttl(), 2);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    // Skip the two puts, then the delete of exp/short.
    let mut deleted_at = None;
    while deleted_at.is_none() {
        let resp = tokio::time::timeout(Duration::from_secs(6), watch.message())
            .await
            .expect("the short lease's key is deleted within 6 s")
            .unwrap()
            .unwrap();
        for e in resp.events() {
            if e.event_type() == EventType::Delete {
                let kv = e.kv().unwrap();
                assert_eq!(kv.key(), b"exp/short");
                assert_eq!(kv.mod_revision(), put_rev + 1);
                deleted_at = Some(granted_at.elapsed());
            }
        }
    }
    let d = deleted_at.unwrap();
    println!("2 s lease expired after {d:?}");
    assert!(
        d >= Duration::from_millis(1900) && d <= Duration::from_millis(3500),
        "a 2 s lease must go between 2 s and 3.5 s, went after {d:?}"
    );
    assert_eq!(c.get("exp/short", None).await.unwrap().count(), 0);
    assert_eq!(ttl(&mut c, short).await.0, -1);

    keep.await.unwrap();
    // Kept alive for 10 s: still there, still leased.
    let r = c.get("exp/kept", None).await.unwrap();
    assert_eq!(r.kvs()[0].lease(), kept);
    let metrics = http_get(&m.endpoint(), "/metrics").unwrap().1;
    for line in [
        "etcd_debugging_server_lease_expired_total 1",
        "etcd_debugging_lease_granted_total 2",
        "etcd_debugging_lease_revoked_total 1",
        "etcd_debugging_lease_ttl_total_bucket{le=\"2\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in metrics");
    }
    let renewed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_lease_renewed_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("renewed metric");
    assert!(renewed >= 20, "renewed {renewed}");
}

#[tokio::test]
async fn leases_survive_kill9() {
    let mut m = Member::start(&[]);
    let mut c = m.client().await;
    let lease = c
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0xabc)))
        .await
        .unwrap()
        .id();
    c.put("durable", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    m.kill9();
    m.restart();
    let mut c = m.client().await;
    let (left, granted, keys) = ttl(&mut c, lease).await;
    assert_eq!(granted, 30);
    assert!((1..=30).contains(&left), "remaining {left}");
    assert_eq!(keys, vec![b"durable".to_vec()]);
    // The re-attached key still goes with its lease.
    let rev = c.lease_revoke(lease).await.unwrap();
    assert!(rev.header().unwrap().revision() > 0);
    assert_eq!(c.get("durable", None).await.unwrap().count(), 0);
}

#[tokio::test]
async fn etcdctl_lease_commands() {
    let m = Member::start(&[]);
    let out = ok(m.etcdctl(&["lease", "grant", "100"]));
    let id = out
        .strip_prefix("lease ")
        .and_then(|s| s.split_whitespace().next())
        .expect("lease id")
        .to_string();
    assert_eq!(out.trim(), format!("lease {id} granted with TTL(100s)"));
    assert_eq!(
        ok(m.etcdctl(&["put", "--lease", &id, "ek", "ev"])).trim(),
        "OK"
    );
    let out = ok(m.etcdctl(&["lease", "timetolive", "--keys", &id]));
    assert!(
        out.starts_with(&format!("lease {id} granted with TTL(100s), remaining(")),
        "{out}"
    );
    assert!(out.trim().ends_with("attached keys([ek])"), "{out}");
    assert_eq!(
        ok(m.etcdctl(&["lease", "keep-alive", "--once", &id])).trim(),
        format!("lease {id} keepalived with TTL(100)")
    );
    let list = ok(m.etcdctl(&["lease", "list"]));
    assert_eq!(list, format!("found 1 leases\n{id}\n"));
    assert_eq!(
        ok(m.etcdctl(&["lease", "revoke", &id])).trim(),
        format!("lease {id} revoked")
    );
    assert_eq!(
        ok(m.etcdctl(&["lease", "timetolive", &id])).trim(),
        format!("lease {id} already expired")
    );
    assert_eq!(ok(m.etcdctl(&["get", "ek"])), "");
    let bad = m.etcdctl(&["lease", "revoke", &id]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("etcdserver: requested lease not found"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// The lease clock across a leader change: kill -9 the leader while a 10 s lease is 4 s old.
/// The new leader reports no more than the lease had left (not a reset to 10 s), a lease
/// renewed just before the crash keeps its renewal, and the unrenewed lease expires on time.
#[tokio::test]
async fn lease_clock_survives_leader_change() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader(0).await;
    let follower = (leader + 1) % 3;
    let mut c = Client::connect([cluster.members[follower].endpoint()], None)
        .await
        .unwrap();

    // Granted through a follower; renewals and time-to-live are forwarded to the leader.
    let plain = c.lease_grant(10, None).await.unwrap().id();
    let granted_at = Instant::now();
    let renewed = c.lease_grant(10, None).await.unwrap().id();
    c.put(
        "clock/plain",
        "v",
        Some(PutOptions::new().with_lease(plain)),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (mut keeper, mut ka) = c.lease_keep_alive(renewed).await.unwrap();
    keeper.keep_alive().await.unwrap();
    assert_eq!(ka.message().await.unwrap().unwrap().ttl(), 10);
    drop((keeper, ka));
    // Let the leader checkpoint the renewal (it does every 500 ms).
    tokio::time::sleep(granted_at + Duration::from_secs(4) - Instant::now()).await;
    let before = ttl(&mut c, plain).await.0;
    assert!(
        (5..=6).contains(&before),
        "a 10 s lease 4 s old has {before} s"
    );

    cluster.members[leader].kill9();
    let new_leader = cluster.leader(follower).await;
    assert_ne!(new_leader, leader);
    let mut c = Client::connect([cluster.members[follower].endpoint()], None)
        .await
        .unwrap();
    let after = ttl(&mut c, plain).await.0;
    let elapsed = granted_at.elapsed();
    println!("before kill: {before} s left; after election ({elapsed:?} after grant): {after} s");
    assert!(
        after <= before,
        "the new leader must not reset the lease: {before} s before, {after} s after"
    );
    let after_renewed = ttl(&mut c, renewed).await.0;
    assert!(
        after_renewed >= after + 2,
        "the renewal 2.5 s after grant must survive the crash: plain {after}, renewed {after_renewed}"
    );

    // Expires on time: gone by 10 s + the leader's extension and the expiry tick; not before
    // about 9 s (with a second of slack for when the follower learned of the grant).
    let mut c = Client::connect([cluster.members[new_leader].endpoint()], None)
        .await
        .unwrap();
    loop {
        let n = c
            .get("clock/plain", Some(GetOptions::new().with_serializable()))
            .await
            .unwrap()
            .count();
        let t = granted_at.elapsed();
        if n == 0 {
            println!("10 s lease expired {t:?} after grant");
            assert!(t >= Duration::from_secs(9), "expired early: {t:?}");
            break;
        }
        assert!(t < Duration::from_millis(13_500), "not expired after {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ttl(&mut c, plain).await.0, -1);
    assert!(ttl(&mut c, renewed).await.0 >= 0);
}

/// Keep-alives through a follower reach the leader and survive the loss of the old leader.
#[tokio::test]
async fn follower_keepalive_forwarding_across_leader_loss() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader(0).await;
    let follower = (leader + 1) % 3;
    let mut c = Client::connect([cluster.members[follower].endpoint()], None)
        .await
        .unwrap();
    let lease = c.lease_grant(3, None).await.unwrap().id();
    c.put("fwd", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let (mut keeper, mut ka) = c.lease_keep_alive(lease).await.unwrap();
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(9) {
        keeper.keep_alive().await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(8), ka.message())
            .await
            .expect("keep-alive answered")
            .unwrap()
            .unwrap();
        assert_eq!(r.ttl(), 3, "renewed through the follower");
        if !killed && start.elapsed() > Duration::from_secs(2) {
            cluster.members[leader].kill9();
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let r = c.get("fwd", None).await.unwrap();
    assert_eq!(r.kvs()[0].lease(), lease, "the key outlived the old leader");
    let (left, granted, keys) = ttl(&mut c, lease).await;
    assert_eq!((granted, keys), (3, vec![b"fwd".to_vec()]));
    assert!((1..=3).contains(&left));
}

/// A member that catches up by snapshot gets the leases and their attached keys: when the
/// lease is revoked it deletes the same keys as everyone else (same HashKV).
#[tokio::test]
async fn leases_reach_a_member_caught_up_by_snapshot() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(
        3,
        &[
            "--snapshot-count",
            "50",
            "--experimental-snapshot-catchup-entries",
            "10",
        ],
    );
    let leader = cluster.leader(0).await;
    let lag = (leader + 1) % 3;
    cluster.members[lag].kill9();
    let mut c = Client::connect([cluster.members[leader].endpoint()], None)
        .await
        .unwrap();
    let lease = c.lease_grant(120, None).await.unwrap().id();
    for i in 0..20 {
        c.put(
            format!("leased/{i:02}"),
            "v",
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    }
    for i in 0..200 {
        c.put(format!("filler/{i:03}"), "v", None).await.unwrap();
    }
    cluster.members[lag].restart_same_urls();
    let mut lagging = Client::connect([cluster.members[lag].endpoint()], None)
        .await
        .unwrap();
    // Serializable reads on the caught-up member, until it has everything.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = lagging
            .get(
                "filler/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_count_only()
                        .with_serializable(),
                ),
            )
            .await
            .map(|r| r.count())
            .unwrap_or(0);
        if n == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "member did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&cluster.members[lag].log_path).unwrap();
    assert!(log.contains("state replaced by the leader's snapshot"));
    // LeaseLeases is answered from the member's own lessor.
    let listed: Vec<i64> = lagging
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(listed, vec![lease]);

    let rev = c
        .lease_revoke(lease)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in &cluster.members {
        let mut mc = Client::connect([m.endpoint()], None).await.unwrap();
        loop {
            let r = mc
                .get(
                    "leased/",
                    Some(GetOptions::new().with_prefix().with_serializable()),
                )
                .await
                .unwrap();
            if r.header().unwrap().revision() >= rev {
                assert_eq!(r.count(), 0, "{} still has leased keys", m.name);
                break;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut hashes = Vec::new();
    for m in &cluster.members {
        let mut mc = Client::connect([m.endpoint()], None).await.unwrap();
        hashes.push(mc.hash_kv(rev).await.unwrap().hash());
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

/// etcd's `hasleader` for keep-alive streams: an open stream on a member that has lost its
/// leader ends with `no leader` after three election timeouts, even with no request pending.
#[tokio::test]
async fn require_leader_keepalive_stream_ends_without_a_leader() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader(0).await;
    let keep = (leader + 1) % 3;
    let mut c = Client::connect([cluster.members[keep].endpoint()], None)
        .await
        .unwrap();
    let lease = c.lease_grant(60, None).await.unwrap().id();
    let mut raw = raw_lease_client(&cluster.members[keep]).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(LeaseKeepAliveRequest { id: lease }).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("hasleader", "true".parse().unwrap());
    let mut replies = raw.lease_keep_alive(req).await.unwrap().into_inner();
    let first = replies.next().await.unwrap().unwrap();
    assert_eq!((first.id, first.ttl), (lease, 60));

    cluster.members[leader].kill9();
    cluster.members[(leader + 2) % 3].kill9();
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(20), replies.next())
        .await
        .expect("the stream is canceled")
        .expect("an error, not a clean end")
        .expect_err("canceled with an error");
    assert_eq!(
        (end.code(), end.message()),
        (tonic::Code::Unavailable, "etcdserver: no leader")
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "three election timeouts: {:?}",
        started.elapsed()
    );
    drop(tx);
}
