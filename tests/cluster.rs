//! Clusters of 3 and 5 real ferrocd processes: replication, linearizable reads on every member,
//! leader failure, minority/majority loss, catch-up by snapshot, and membership changes with
//! etcdctl. Cluster tests run one at a time: several clusters on two cores would make
//! elections flap.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{converge, hash_kv, ok, Cluster, Member};
use etcd_client::{Client, GetOptions};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

async fn client(m: &Member) -> Client {
    Client::connect([m.endpoint()], None)
        .await
        .expect("connect")
}

#[tokio::test]
async fn writes_on_any_member_are_read_linearizably_on_every_member() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]);
    let mut clients = Vec::new();
    for m in &c.members {
        clients.push(client(m).await);
    }
    for i in 0..30usize {
        let w = i % 3;
        let rev = clients[w]
            .put(format!("k{i}"), format!("v{i}"), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        for (r, cl) in clients.iter_mut().enumerate() {
            let g = cl.get(format!("k{i}"), None).await.unwrap();
            assert_eq!(
                g.kvs().len(),
                1,
                "write {i} via member {w} not visible on member {r}"
            );
            assert_eq!(g.kvs()[0].value(), format!("v{i}").as_bytes());
            assert_eq!(g.kvs()[0].mod_revision(), rev);
        }
    }
    // One cluster, one leader, three voters; every member agrees.
    let st: Vec<_> = {
        let mut v = Vec::new();
        for cl in clients.iter_mut() {
            v.push(cl.status().await.unwrap());
        }
        v
    };
    let leader = st[0].leader();
    assert!(st.iter().all(|s| s.leader() == leader
        && s.header().unwrap().cluster_id() == st[0].header().unwrap().cluster_id()));
    let ml = clients[1].member_list().await.unwrap();
    assert_eq!(ml.members().len(), 3);
    assert!(ml
        .members()
        .iter()
        .all(|m| !m.name().is_empty() && m.client_urls().len() == 1));
    let rev = converge(&c.members.iter().collect::<Vec<_>>()).await;
    let h = hash_kv(&c.members[0], rev).await;
    for m in &c.members[1..] {
        assert_eq!(hash_kv(m, rev).await, h, "HashKV differs on {}", m.name);
    }
    // etcdctl's cluster-wide views.
    let out = ok(c.members[0].etcdctl(&["endpoint", "status", "--cluster", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    let out = ok(c.members[0].etcdctl(&["endpoint", "hashkv", "--cluster"]));
    let hashes: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit(", ").next().unwrap())
        .collect();
    assert_eq!(hashes.len(), 3);
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{out}");
}

#[tokio::test]
async fn leader_kill9_during_writes_loses_no_acknowledged_write() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader(0).await;
    let writer_member = (leader + 1) % 3;
    let endpoint = c.members[writer_member].endpoint();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut cl = Client::connect([endpoint], None).await.unwrap();
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w/{i:06}");
                if let Ok(r) = cl.put(key.clone(), format!("{i}"), None).await {
                    acked.push((key, r.header().unwrap().revision()));
                }
                i += 1;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.members[leader].kill9();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(
        acked.len() > 20,
        "writes were acknowledged ({})",
        acked.len()
    );
    let new_leader = c.leader(writer_member).await;
    assert_ne!(new_leader, leader, "a new leader was elected");
    for i in 0..3 {
        if i == leader {
            continue;
        }
        let mut cl = client(&c.members[i]).await;
        for (key, rev) in &acked {
            let g = cl.get(key.as_str(), None).await.unwrap();
            assert_eq!(g.kvs().len(), 1, "{key} lost on {}", c.members[i].name);
            assert_eq!(g.kvs()[0].mod_revision(), *rev);
        }
    }
    // The old leader rejoins and converges.
    c.members[leader].restart_same_urls();
    let rev = converge(&c.members.iter().collect::<Vec<_>>()).await;
    let h = hash_kv(&c.members[0], rev).await;
    for m in &c.members[1..] {
        assert_eq!(hash_kv(m, rev).await, h, "HashKV differs on {}", m.name);
    }
    let g = client(&c.members[leader])
        .await
        .get(
            "w/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert!(g.count() as usize >= acked.len());
}

#[tokio::test]
async fn minority_down_serves_majority_down_fails_cleanly() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]);
    let l = c.leader(0).await;
    let (f1, f2) = ((l + 1) % 3, (l + 2) % 3);
    let mut c0 = client(&c.members[l]).await;
    c0.put("before", "1", None).await.unwrap();
    c.members[f2].kill9();
    // Minority down: writes and linearizable reads continue.
    let r = c0.put("minority", "ok", None).await.unwrap();
    let g = client(&c.members[f1])
        .await
        .get("minority", None)
        .await
        .unwrap();
    assert_eq!(g.kvs()[0].mod_revision(), r.header().unwrap().revision());
    // Majority down: a write fails within the request timeout with etcd's error, no hang.
    c.members[f1].kill9();
    let started = Instant::now();
    let err = c0.put("majority", "x", None).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the write failed in {took:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("etcdserver: request timed out") || msg.contains("etcdserver: no leader"),
        "{msg}"
    );
    // Serializable reads still answer from local state.
    let g = c0
        .get("minority", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(g.kvs()[0].value(), b"ok");
    // A client that requires a leader (etcd's `hasleader` metadata) is refused with etcd's error.
    let mut kv =
        ferrocd::proto::etcdserverpb::kv_client::KvClient::connect(c.members[l].client_url.clone())
            .await
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut req = tonic::Request::new(ferrocd::proto::etcdserverpb::RangeRequest {
            key: b"minority".to_vec(),
            serializable: true,
            ..Default::default()
        });
        req.metadata_mut()
            .insert("hasleader", "true".parse().unwrap());
        match kv.range(req).await {
            Err(s) => {
                assert_eq!(
                    (s.code(), s.message()),
                    (tonic::Code::Unavailable, "etcdserver: no leader")
                );
                break;
            }
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the member never noticed it lost its leader"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Health says so.
    let (code, body) = common::http_get(&c.members[l].endpoint(), "/health").unwrap();
    assert_eq!(code, 503, "{body}");
}

#[tokio::test]
async fn lagging_member_catches_up_by_snapshot() {
    let _g = serial().await;
    let mut c = Cluster::start(
        3,
        &[
            "--snapshot-count",
            "50",
            "--experimental-snapshot-catchup-entries",
            "10",
        ],
    );
    let l = c.leader(0).await;
    let lag = (l + 1) % 3;
    c.members[lag].kill9();
    let mut c0 = client(&c.members[l]).await;
    for i in 0..300 {
        c0.put(format!("s{i:03}"), format!("{i}"), None)
            .await
            .unwrap();
    }
    c0.compact(100, None).await.unwrap();
    c.members[lag].restart_same_urls();
    let rev = converge(&c.members.iter().collect::<Vec<_>>()).await;
    let mut c2 = client(&c.members[lag]).await;
    let g = c2
        .get(
            "s",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_serializable(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(g.count(), 300);
    let log = std::fs::read_to_string(&c.members[lag].log_path).unwrap();
    assert!(
        log.contains("state replaced by the leader's snapshot"),
        "caught up by snapshot:\n{log}"
    );
    let h = hash_kv(&c.members[l], rev).await;
    assert_eq!(hash_kv(&c.members[lag], rev).await, h);
    // History below the leader's compaction is compacted on the new member too.
    let e = c2
        .get("s000", Some(GetOptions::new().with_revision(50)))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("required revision has been compacted"),
        "{e}"
    );
    // And it keeps replicating afterwards.
    let r = c0.put("after", "snap", None).await.unwrap();
    let g = c2.get("after", None).await.unwrap();
    assert_eq!(g.kvs()[0].mod_revision(), r.header().unwrap().revision());
}

/// Runs etcdctl, retrying while the cluster answers `unhealthy cluster` (etcd refuses
/// reconfiguration until peers have been connected for its health interval; users retry).
fn etcdctl_retry(m: &Member, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = m.etcdctl(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() || !err.contains("unhealthy cluster") || Instant::now() > deadline {
            return ok(out);
        }
        eprintln!("etcdctl {args:?}: unhealthy cluster, retrying");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn member_id_of(m: &Member, name: &str) -> String {
    let out = ok(m.etcdctl(&["member", "list"]));
    out.lines()
        .find(|l| l.split(", ").nth(2) == Some(name))
        .unwrap_or_else(|| panic!("{name} not in member list:\n{out}"))
        .split(", ")
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn membership_changes_with_etcdctl() {
    let _g = serial().await;
    let mut c = Cluster::start(3, &[]);
    let m0 = &c.members[0];
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    // Errors first.
    let dup = m0.etcdctl(&[
        "member",
        "add",
        "dup",
        &format!("--peer-urls={}", c.members[1].peer_url),
    ]);
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("Peer URLs already exists"),
        "{dup:?}"
    );
    let missing = m0.etcdctl(&["member", "remove", "1234"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("member not found"),
        "{missing:?}"
    );
    let voter = member_id_of(m0, "m2");
    let not_learner = m0.etcdctl(&["member", "promote", &voter]);
    assert!(
        String::from_utf8_lossy(&not_learner.stderr).contains("can only promote a learner member"),
        "{not_learner:?}"
    );

    // Add a learner, start it with --initial-cluster-state existing: it catches up.
    let out = etcdctl_retry(
        m0,
        &[
            "member",
            "add",
            "m4",
            &format!("--peer-urls={peer}"),
            "--learner",
        ],
    );
    let ic = out
        .lines()
        .find(|l| l.starts_with("ETCD_INITIAL_CLUSTER="))
        .unwrap();
    let ic = ic
        .trim_start_matches("ETCD_INITIAL_CLUSTER=")
        .trim_matches('"')
        .to_string();
    let mut m4 = Member::unstarted(
        "m4",
        c.dir.path().join("m4"),
        format!("http://127.0.0.1:{}", common::free_port()),
        peer.clone(),
        &[],
    );
    m4.initial_cluster = ic;
    m4.cluster_state = "existing".into();
    m4.launch();
    m4.wait_ready(Duration::from_secs(30)).expect("m4 joins");
    client(m0)
        .await
        .put("seen-by-m4", "yes", None)
        .await
        .unwrap();
    let id4 = member_id_of(m0, "m4");
    let list = ok(m0.etcdctl(&["member", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id4) && l.ends_with(", true")),
        "m4 is a learner:\n{list}"
    );
    // Promote once in sync (retry while it catches up).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = m0.etcdctl(&["member", "promote", &id4]);
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("in sync with leader"), "{err}");
        assert!(Instant::now() < deadline, "learner never got in sync");
        std::thread::sleep(Duration::from_millis(300));
    }
    let list = ok(m0.etcdctl(&["member", "list"]));
    assert_eq!(list.lines().count(), 4);
    assert!(
        list.lines()
            .all(|l| l.ends_with(", false") && l.contains(", started, ")),
        "{list}"
    );
    let g = client(&m4).await.get("seen-by-m4", None).await.unwrap();
    assert_eq!(g.kvs()[0].value(), b"yes");

    // Move leadership to m4 (from the current leader's endpoint).
    let leader = c.leader(0).await;
    ok(c.members[leader].etcdctl(&["move-leader", &id4]));
    let st = client(&m4).await.status().await.unwrap();
    assert_eq!(format!("{:x}", st.leader()), id4);
    let bad = m4.etcdctl(&["move-leader", "1234"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("bad leader transferee"),
        "{bad:?}"
    );

    // Update m3's peer URLs to the same value (no-op change goes through raft) and check it shows.
    let id3 = member_id_of(m0, "m3");
    ok(m0.etcdctl(&[
        "member",
        "update",
        &id3,
        &format!("--peer-urls={}", c.members[2].peer_url),
    ]));

    // Remove the leader (m4): it stops itself; the others elect a new leader and keep serving.
    etcdctl_retry(&c.members[1], &["member", "remove", &id4]);
    let st = m4.wait_exit(Duration::from_secs(20));
    assert!(st.is_some(), "a removed member stops");
    let list = ok(c.members[1].etcdctl(&["member", "list"]));
    assert_eq!(list.lines().count(), 3, "{list}");
    let new_leader = c.leader(1).await;
    assert!(new_leader < 3, "one of the remaining members leads");
    let r = client(&c.members[2])
        .await
        .put("after-remove", "1", None)
        .await
        .unwrap();
    assert!(r.header().unwrap().revision() > 0);
    drop(m4);
    c.members[0].kill9();
}

#[tokio::test]
async fn five_members_survive_two_failures_and_a_replaced_member() {
    let _g = serial().await;
    let mut c = Cluster::start(5, &[]);
    let leader = c.leader(0).await;
    let other = (leader + 1) % 5;
    c.members[leader].kill9();
    c.members[other].kill9();
    let alive: Vec<usize> = (0..5).filter(|i| *i != leader && *i != other).collect();
    // A proposal forwarded to the dead leader would be lost (as in etcd): wait for the new one.
    let new_leader = c.leader(alive[0]).await;
    assert!(alive.contains(&new_leader));
    let mut cl = client(&c.members[alive[0]]).await;
    for i in 0..20 {
        cl.put(format!("five{i}"), "v", None).await.unwrap();
    }
    for &i in &alive {
        let g = client(&c.members[i])
            .await
            .get(
                "five",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap();
        assert_eq!(g.count(), 20, "member {i}");
    }
    // The old leader comes back and catches up.
    c.members[leader].restart_same_urls();
    // Replace the member that is still down while a client writes: remove, wipe, re-add, start
    // with --initial-cluster-state existing. (etcd refuses to add a voter while any voter is
    // down, so the dead one is removed first.)
    let victim = other;
    let id = member_id_of(&c.members[alive[0]], &c.members[victim].name);
    etcdctl_retry(&c.members[alive[0]], &["member", "remove", &id]);
    let stop = Arc::new(AtomicBool::new(false));
    let endpoint = c.members[alive[1]].endpoint();
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut cl = Client::connect([endpoint], None).await.unwrap();
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if cl.put(format!("repl/{i:05}"), "v", None).await.is_ok() {
                    acked.push(format!("repl/{i:05}"));
                }
                i += 1;
            }
            acked
        })
    };
    let name = c.members[victim].name.clone();
    let _ = std::fs::remove_dir_all(&c.members[victim].data_dir);
    let out = etcdctl_retry(
        &c.members[alive[0]],
        &[
            "member",
            "add",
            &name,
            &format!("--peer-urls={}", c.members[victim].peer_url),
        ],
    );
    let ic = out
        .lines()
        .find(|l| l.starts_with("ETCD_INITIAL_CLUSTER="))
        .unwrap();
    c.members[victim].initial_cluster = ic
        .trim_start_matches("ETCD_INITIAL_CLUSTER=")
        .trim_matches('"')
        .to_string();
    c.members[victim].cluster_state = "existing".into();
    c.members[victim].launch();
    c.members[victim]
        .wait_ready(Duration::from_secs(30))
        .expect("replacement joins");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(!acked.is_empty());
    let running: Vec<&Member> = c.members.iter().collect();
    let rev = converge(&running).await;
    let h = hash_kv(running[0], rev).await;
    for m in &running[1..] {
        assert_eq!(hash_kv(m, rev).await, h, "HashKV differs on {}", m.name);
    }
    let mut rc = client(&c.members[victim]).await;
    for k in &acked {
        assert_eq!(
            rc.get(k.as_str(), None).await.unwrap().kvs().len(),
            1,
            "{k} missing on the replacement"
        );
    }
}

#[tokio::test]
async fn a_member_of_another_cluster_is_refused() {
    let _g = serial().await;
    let c = Cluster::start(3, &[]);
    // A member started with a different --initial-cluster-token computes a different cluster id;
    // the real members refuse its raft messages and say why.
    let mut stranger = Member::unstarted(
        "m3",
        c.dir.path().join("stranger"),
        format!("http://127.0.0.1:{}", common::free_port()),
        format!("http://127.0.0.1:{}", common::free_port()),
        &["--initial-cluster-token", "another-cluster"],
    );
    stranger.initial_cluster = format!(
        "m1={},m2={},m3={}",
        c.members[0].peer_url, c.members[1].peer_url, stranger.peer_url
    );
    stranger.launch();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&stranger.log_path).unwrap_or_default();
        if log.contains("cluster ID mismatch") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no clear refusal in the stranger's log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The real cluster is untouched: same three members, still serving writes.
    let mut cl = client(&c.members[0]).await;
    assert_eq!(cl.member_list().await.unwrap().members().len(), 3);
    cl.put("still", "fine", None).await.unwrap();
    let g = client(&c.members[2])
        .await
        .get("still", None)
        .await
        .unwrap();
    assert_eq!(g.kvs()[0].value(), b"fine");
}
