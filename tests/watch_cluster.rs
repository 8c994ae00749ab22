//! Watch on 3-member clusters: a follower's watchers see writes made through the leader, a
//! watcher resumes on a restarted member from its last revision + 1, and an open watcher on a
//! follower that is replaced by the leader's snapshot continues without a gap. One test at a
//! time: several clusters on two cores would make elections flap.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{Cluster, Member};
use etcd_client::{Client, EventType, WatchOptions, WatchStream};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn client(m: &Member) -> Client {
    Client::connect([m.endpoint()], None)
        .await
        .expect("connect")
}

/// Reads a watch until it has delivered events up to `upto`; returns (revision, key, value)
/// of each event, checking that revisions only go up and never split across responses.
async fn events_until(w: &mut WatchStream, upto: i64) -> Vec<(i64, String, String)> {
    let mut out: Vec<(i64, String, String)> = Vec::new();
    while out.last().map(|e| e.0) != Some(upto) {
        let r = match tokio::time::timeout(Duration::from_secs(30), w.message()).await {
            Ok(Ok(Some(r))) => r,
            other => panic!(
                "watch ended or stalled after {} events: {other:?}",
                out.len()
            ),
        };
        assert!(!r.canceled(), "canceled: {r:?}");
        if r.created() {
            continue;
        }
        let first = r
            .events()
            .first()
            .expect("events")
            .kv()
            .unwrap()
            .mod_revision();
        assert!(
            out.last().is_none_or(|e| e.0 < first),
            "revision {first} repeated or out of order"
        );
        for e in r.events() {
            let kv = e.kv().expect("kv");
            let value = match e.event_type() {
                EventType::Put => kv.value_str().unwrap().to_string(),
                EventType::Delete => "<deleted>".to_string(),
            };
            out.push((kv.mod_revision(), kv.key_str().unwrap().to_string(), value));
        }
    }
    out
}

#[tokio::test]
async fn follower_watchers_see_writes_made_through_the_leader() {
    let _g = SERIAL.lock().await;
    let c = Cluster::start(3, &[]);
    let l = c.leader(0).await;
    let f = (l + 1) % 3;
    let mut leader = client(&c.members[l]).await;
    let mut follower = client(&c.members[f]).await;
    let mut live = follower
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("watch");
    let created = live.message().await.unwrap().unwrap();
    assert!(created.created());
    let base = created.header().unwrap().revision();
    let mut want = Vec::new();
    for i in 0..100 {
        let r = leader
            .put(format!("w/{}", i % 10), format!("v{i}"), None)
            .await
            .unwrap();
        want.push((
            r.header().unwrap().revision(),
            format!("w/{}", i % 10),
            format!("v{i}"),
        ));
    }
    let d = leader
        .delete("w/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(d.deleted(), 10);
    let last = d.header().unwrap().revision();
    for k in 0..10 {
        want.push((last, format!("w/{k}"), "<deleted>".to_string()));
    }
    assert_eq!(events_until(&mut live, last).await, want);
    // a watcher opened later on the other follower replays the same history from its start
    let f2 = (l + 2) % 3;
    let mut other = client(&c.members[f2]).await;
    let mut replay = other
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(base + 1),
            ),
        )
        .await
        .expect("watch");
    assert_eq!(events_until(&mut replay, last).await, want);
}

#[tokio::test]
async fn watcher_resumes_on_a_restarted_member() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(3, &[]);
    let l = c.leader(0).await;
    let f = (l + 1) % 3;
    let mut leader = client(&c.members[l]).await;
    let mut w = client(&c.members[f])
        .await
        .watch("r/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    assert!(w.message().await.unwrap().unwrap().created());
    let mut acked: BTreeMap<i64, (String, String)> = BTreeMap::new();
    for i in 0..40 {
        let (k, v) = (format!("r/{}", i % 5), format!("a{i}"));
        let r = leader.put(k.clone(), v.clone(), None).await.unwrap();
        acked.insert(r.header().unwrap().revision(), (k, v));
    }
    let seen = events_until(&mut w, *acked.keys().last().unwrap()).await;
    let mut last_seen = seen.last().unwrap().0;
    // the member dies; writes go on through the leader meanwhile
    c.members[f].kill9();
    while let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_millis(200), w.message()).await
    {
        if let Some(e) = r.events().last() {
            last_seen = e.kv().unwrap().mod_revision();
        }
    }
    drop(w);
    for i in 40..80 {
        let (k, v) = (format!("r/{}", i % 5), format!("b{i}"));
        let r = leader.put(k.clone(), v.clone(), None).await.unwrap();
        acked.insert(r.header().unwrap().revision(), (k, v));
    }
    c.members[f].restart_same_urls();
    let mut w = client(&c.members[f])
        .await
        .watch(
            "r/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(last_seen + 1),
            ),
        )
        .await
        .expect("watch");
    let r = leader.put("r/x", "after", None).await.unwrap();
    acked.insert(
        r.header().unwrap().revision(),
        ("r/x".into(), "after".into()),
    );
    let want: Vec<(i64, String, String)> = acked
        .range(last_seen + 1..)
        .map(|(rev, (k, v))| (*rev, k.clone(), v.clone()))
        .collect();
    let got = events_until(&mut w, *acked.keys().last().unwrap()).await;
    assert_eq!(got, want);
}

/// A follower frozen while the leader compacts its log is brought back by a snapshot; its
/// open watcher gets every revision it missed, in order, from the new state.
#[tokio::test]
async fn open_watch_continues_across_a_snapshot_install() {
    let _g = SERIAL.lock().await;
    let c = Cluster::start(
        3,
        &[
            "--snapshot-count",
            "50",
            "--experimental-snapshot-catchup-entries",
            "10",
        ],
    );
    let l = c.leader(0).await;
    let f = (l + 1) % 3;
    let mut leader = client(&c.members[l]).await;
    let mut w = client(&c.members[f])
        .await
        .watch("s/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    assert!(w.message().await.unwrap().unwrap().created());
    let mut want = Vec::new();
    let put = |i: usize| (format!("s/{}", i % 7), format!("v{i}"));
    for i in 0..20 {
        let (k, v) = put(i);
        let r = leader.put(k.clone(), v.clone(), None).await.unwrap();
        want.push((r.header().unwrap().revision(), k, v));
    }
    assert_eq!(events_until(&mut w, want.last().unwrap().0).await, want);
    let pid = c.members[f].pid().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let mut missed = Vec::new();
    for i in 20..320 {
        let (k, v) = put(i);
        let r = leader.put(k.clone(), v.clone(), None).await.unwrap();
        missed.push((r.header().unwrap().revision(), k, v));
    }
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let got = events_until(&mut w, missed.last().unwrap().0).await;
    assert_eq!(got, missed);
    let log = std::fs::read_to_string(&c.members[f].log_path).unwrap();
    assert!(
        log.contains("state replaced by the leader's snapshot")
            && log.contains("watch hub restored"),
        "the follower was not caught up by a snapshot:\n{log}"
    );
}

/// etcd's `hasleader` (clientv3's `WithRequireLeader`): a member without a leader refuses new
/// such streams with `no leader` and cancels open ones after three election timeouts; other
/// streams keep working.
#[tokio::test]
async fn require_leader_streams_end_without_a_leader() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(3, &[]);
    let l = c.leader(0).await;
    let keep = (l + 1) % 3;
    let require = etcd_client::ConnectOptions::new().with_require_leader(true);
    let mut strict = Client::connect([c.members[keep].endpoint()], Some(require.clone()))
        .await
        .expect("connect");
    let mut open = strict.watch("k", None).await.expect("watch with a leader");
    assert!(open.message().await.unwrap().unwrap().created());
    // the other two go: no quorum, no leader
    c.members[l].kill9();
    c.members[(l + 2) % 3].kill9();
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(20), open.message())
        .await
        .expect("the open stream is canceled");
    let e = end.expect_err("canceled with an error");
    assert!(
        e.to_string().contains("etcdserver: no leader"),
        "unexpected error: {e}"
    );
    // etcd waits three election timeouts (1 s each here) before canceling open streams
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // new streams are refused at once
    let mut strict = Client::connect([c.members[keep].endpoint()], Some(require))
        .await
        .expect("connect");
    let e = strict.watch("k", None).await.expect_err("refused");
    assert!(e.to_string().contains("etcdserver: no leader"), "{e}");
    // a client that does not require a leader still watches (and sees nothing new)
    let mut lax = client(&c.members[keep]).await;
    let mut w = lax.watch("k", None).await.expect("watch");
    let r = w.message().await.unwrap().unwrap();
    assert!(r.created() && !r.canceled());
}
