//! A member caught up by a leader's snapshot, then treated as operators treat members: stopped
//! and started again (SIGTERM and kill -9), made leader, killed at every step of the install.
//! Earlier snapshot tests only checked the member right after the catch-up; every bug here
//! (issue 21) showed up on the restart or the leadership change that came after it.
//!
//! Clusters use `--snapshot-count 100` and keep 10 entries behind a snapshot, so a few hundred
//! writes while a member is down make the leader send it a snapshot. Tests in this binary run
//! one at a time: two 3-member clusters on two cores would make elections flap.

mod common;

use std::time::{Duration, Instant};

use common::{converge, hash_kv, Cluster, Member};
use etcd_client::{Client, GetOptions, PutOptions};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FLAGS: &[&str] = &[
    "--snapshot-count",
    "100",
    "--experimental-snapshot-catchup-entries",
    "10",
];

/// etcd's default election timeout (the clusters here use it).
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

async fn client(m: &Member) -> Client {
    Client::connect([m.endpoint()], None)
        .await
        .expect("connect")
}

/// `n` puts of `prefix/NNN` through member `m`.
async fn write(m: &Member, prefix: &str, n: usize) {
    let mut c = client(m).await;
    for i in 0..n {
        c.put(format!("{prefix}/{i:03}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
}

/// How many keys under `prefix` member `m` serves from its own state.
async fn local_count(m: &Member, prefix: &str) -> i64 {
    client(m)
        .await
        .get(
            format!("{prefix}/"),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_serializable(),
            ),
        )
        .await
        .expect("count")
        .count()
}

/// Waits until the member's log contains `needle`, at most `timeout`.
fn wait_log(m: &Member, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
        if log.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never logged {needle:?}:\n{log}",
            m.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a stopped member and waits until it serves.
fn start(m: &mut Member) {
    m.launch();
    if let Err(e) = m.wait_ready(Duration::from_secs(30)) {
        let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
        panic!("{} did not come back: {e}\n--- log ---\n{log}", m.name);
    }
}

/// Every member holds the same data: same revision, same HashKV, `keys` keys under `prefix`.
async fn assert_same_everywhere(c: &Cluster, prefix: &str, keys: i64) {
    let all: Vec<&Member> = c.members.iter().collect();
    let rev = converge(&all).await;
    let h = hash_kv(&c.members[0], rev).await;
    for m in &c.members {
        assert_eq!(hash_kv(m, rev).await, h, "{} HashKV at {rev}", m.name);
        assert_eq!(local_count(m, prefix).await, keys, "{} keys", m.name);
    }
}

/// Member ids by name, asked of `via` (works while other members are busy).
async fn ids(via: &Member) -> Vec<(String, u64)> {
    let list = client(via).await.member_list().await.expect("member list");
    list.members()
        .iter()
        .map(|m| (m.name().to_string(), m.id()))
        .collect()
}

/// Asks the current leader to hand leadership to member `to`, then waits until `to` leads.
/// Only the other members are asked who leads: `to` may not serve clients yet.
async fn move_leader_to(c: &Cluster, to: usize) {
    let via = &c.members[(to + 1) % 3];
    let ids = ids(via).await;
    let id = |name: &str| ids.iter().find(|(n, _)| n == name).expect("member").1;
    let target = id(&c.members[to].name);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = client(via).await.status().await.expect("status").leader();
        if leader == target {
            return;
        }
        if let Some(l) = c.members.iter().find(|m| id(&m.name) == leader) {
            // A transfer can time out while the transferee catches up; etcdctl users retry.
            let _ = client(l).await.move_leader(target).await;
        }
        assert!(Instant::now() < deadline, "{to} never became leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// On member `m`, which leads: keep-alives of `kept` (granted with `kept_ttl`) are answered,
/// and a TTL-5 lease granted on it expires within its TTL plus an election timeout.
async fn assert_lease_clock_runs(m: &Member, kept: i64, kept_ttl: i64) {
    let mut c = client(m).await;
    let (mut keeper, mut replies) = c.lease_keep_alive(kept).await.expect("keep-alive");
    keeper.keep_alive().await.expect("send keep-alive");
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("a keep-alive reply within 5 s")
        .expect("keep-alive stream")
        .expect("a reply");
    assert_eq!((reply.id(), reply.ttl()), (kept, kept_ttl));
    let ttl = c.lease_time_to_live(kept, None).await.unwrap().ttl();
    assert!(ttl > kept_ttl - 3 && ttl <= kept_ttl, "time-to-live {ttl}");

    let short = c.lease_grant(5, None).await.expect("grant").id();
    let put = c
        .put("short", "lived", Some(PutOptions::new().with_lease(short)))
        .await
        .unwrap();
    let granted = Instant::now();
    let put_rev = put.header().unwrap().revision();
    loop {
        let g = c.get("short", None).await.unwrap();
        if g.kvs().is_empty() {
            break;
        }
        assert!(
            granted.elapsed() < Duration::from_secs(5) + ELECTION_TIMEOUT + Duration::from_secs(2),
            "a TTL-5 lease granted on the leader was still there after {:?}",
            granted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = granted.elapsed();
    assert!(
        took >= Duration::from_millis(4500),
        "expired early: {took:?}"
    );
    let ttl = c.lease_time_to_live(short, None).await.unwrap().ttl();
    assert_eq!(ttl, -1, "the expired lease is gone");
    let g = c
        .get("short", Some(GetOptions::new().with_revision(put_rev)))
        .await
        .unwrap();
    assert_eq!(g.kvs()[0].lease(), short, "history kept the leased put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_caught_up_by_snapshot_restarts_leads_and_restarts_again() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(3, FLAGS);
    let l = c.leader(0).await;
    let f = (l + 1) % 3;
    let kept = client(&c.members[l])
        .await
        .lease_grant(60, None)
        .await
        .unwrap()
        .id();
    c.members[f].kill9();
    write(&c.members[l], "s", 300).await;
    start(&mut c.members[f]);
    wait_log(
        &c.members[f],
        "state replaced by the leader's snapshot",
        Duration::from_secs(30),
    );
    assert_same_everywhere(&c, "s", 300).await;

    // A plain restart (SIGTERM) used to fail: "WAL is missing raft entries 8..N".
    assert!(c.members[f].stop().success());
    start(&mut c.members[f]);
    assert_same_everywhere(&c, "s", 300).await;
    // And kill -9.
    c.members[f].restart_same_urls();
    write(&c.members[l], "t", 20).await;
    assert_same_everywhere(&c, "t", 20).await;

    // Leadership moves to it; its lease clock runs.
    move_leader_to(&c, f).await;
    assert_lease_clock_runs(&c.members[f], kept, 60).await;
    write(&c.members[f], "u", 20).await;

    // Restarted again as leader.
    c.members[f].restart_same_urls();
    assert_same_everywhere(&c, "u", 20).await;
    assert_same_everywhere(&c, "s", 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_made_leader_while_installing_a_snapshot_keeps_the_lease_clock() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(3, FLAGS);
    let l = c.leader(0).await;
    let f = (l + 1) % 3;
    let kept = client(&c.members[l])
        .await
        .lease_grant(30, None)
        .await
        .unwrap()
        .id();
    c.members[f].kill9();
    write(&c.members[l], "s", 300).await;
    // The applier stalls 4 s before replacing its state: long enough to make it leader first,
    // so the promotion comes before the snapshot's leases are loaded.
    c.members[f].env = vec![
        ("FERROCD_FAULT_INJECTION".into(), "1".into()),
        (
            "FERROCD_FAULT_POINT".into(),
            "snap-install-begin:sleep=4000".into(),
        ),
    ];
    c.members[f].launch();
    wait_log(
        &c.members[f],
        "fault injection: stalling",
        Duration::from_secs(30),
    );
    move_leader_to(&c, f).await;
    wait_log(
        &c.members[f],
        "state replaced by the leader's snapshot",
        Duration::from_secs(30),
    );
    let log = std::fs::read_to_string(&c.members[f].log_path).unwrap();
    let promoted = log.rfind("lessor promoted").expect("promoted");
    let loaded = log.rfind("leases loaded").expect("loaded");
    assert!(
        promoted < loaded,
        "the promotion should come before the snapshot's leases load:\n{log}"
    );
    c.members[f]
        .wait_ready(Duration::from_secs(30))
        .expect("serves");
    assert_lease_clock_runs(&c.members[f], kept, 30).await;
    // Keep-alives forwarded by a follower reach it too.
    let other = (f + 1) % 3;
    let mut oc = client(&c.members[other]).await;
    let (mut keeper, mut replies) = oc.lease_keep_alive(kept).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("a forwarded keep-alive is answered")
        .unwrap()
        .unwrap();
    assert_eq!(reply.ttl(), 30);
    assert_same_everywhere(&c, "s", 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_at_every_step_of_a_snapshot_install_recovers() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(3, FLAGS);
    let l = c.leader(0).await;
    let f = (l + 1) % 3;
    let points = [
        "snap-received",
        "snap-wal-recorded",
        "snap-install-begin",
        "snap-install-cleared",
        "snap-install-loaded",
        "snap-installed",
    ];
    for (round, point) in points.iter().enumerate() {
        let prefix = format!("r{round}");
        c.members[f].kill9();
        write(&c.members[l], &prefix, 150).await;
        c.members[f].env = vec![
            ("FERROCD_FAULT_INJECTION".into(), "1".into()),
            ("FERROCD_FAULT_POINT".into(), point.to_string()),
        ];
        c.members[f].launch();
        let status = c.members[f].wait_exit(Duration::from_secs(60));
        let log = std::fs::read_to_string(&c.members[f].log_path).unwrap();
        assert!(
            status.is_some(),
            "{point}: the member never reached the point:\n{log}"
        );
        assert!(
            log.contains(&format!("point=\"{point}\"")) || log.contains(&format!("point={point}")),
            "{point}: died elsewhere:\n{log}"
        );
        c.members[f].env.clear();
        start(&mut c.members[f]);
        assert_same_everywhere(&c, &prefix, 150).await;
        // The next start is clean too.
        c.members[f].restart_same_urls();
        assert_same_everywhere(&c, &prefix, 150).await;
    }
}
