//! Backup and restore: `Maintenance.Snapshot` / `etcdctl snapshot save` during a stream of
//! writes, `ferrocdutl snapshot status`, and `ferrocdutl snapshot restore` into a new
//! 3-member cluster; damaged files are refused with nothing written.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, ok, Member};
use etcd_client::{Client, CompactionOptions, GetOptions, LeaseTimeToLiveOptions, PutOptions};

/// Keys written before the snapshot (more with SNAPSHOT_TEST_KEYS, for measuring).
fn preload_keys() -> usize {
    std::env::var("SNAPSHOT_TEST_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn utl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrocdutl"))
        .args(args)
        .output()
        .expect("run ferrocdutl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A key-value as compared between the source and the restored members.
type Kv = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// Every key at `revision` (0: the current one), paged so a large store fits the client's
/// message limit; returns the revision read and the keys.
async fn all_kvs(c: &mut Client, revision: i64) -> (i64, Vec<Kv>) {
    let mut out = Vec::new();
    let mut start = vec![0u8];
    let mut revision = revision;
    loop {
        let mut opts = GetOptions::new()
            .with_from_key()
            .with_limit(5000)
            .with_serializable();
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let resp = c.get(start.clone(), Some(opts)).await.expect("range");
        if revision <= 0 {
            revision = resp.header().unwrap().revision();
        }
        for kv in resp.kvs() {
            out.push((
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            ));
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => return (revision, out),
        }
    }
}

/// One acknowledged write of the background writer.
struct Acked {
    key: String,
    value: String,
    revision: i64,
    started: Instant,
    latency: Duration,
}

/// Writes `w/<n>` keys one after another until `stop`.
async fn writer(mut c: Client, stop: Arc<AtomicBool>) -> Vec<Acked> {
    let mut out = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (key, value) = (format!("w/{n:06}"), format!("value-{n}"));
        let started = Instant::now();
        let resp = c.put(key.clone(), value.clone(), None).await.expect("put");
        out.push(Acked {
            key,
            value,
            revision: resp.header().unwrap().revision(),
            started,
            latency: started.elapsed(),
        });
        n += 1;
    }
    out
}

/// Saves a snapshot through the etcd-client crate; returns the revision its headers carry.
async fn save(c: &mut Client, path: &Path) -> i64 {
    let mut stream = c.snapshot().await.expect("snapshot");
    let mut data = Vec::new();
    let mut revision = None;
    let mut last_remaining = u64::MAX;
    while let Some(msg) = stream.message().await.expect("snapshot message") {
        let rev = msg.header().expect("header").revision();
        assert_eq!(*revision.get_or_insert(rev), rev, "one revision per stream");
        data.extend_from_slice(msg.blob());
        assert!(msg.remaining_bytes() < last_remaining);
        last_remaining = msg.remaining_bytes();
    }
    assert_eq!(last_remaining, 0, "the last message has nothing remaining");
    assert_eq!(
        data.len() % 512,
        32,
        "etcd's layout: 512-byte blocks + sha256"
    );
    std::fs::write(path, &data).unwrap();
    revision.expect("at least one message")
}

fn status_json(path: &Path) -> serde_json::Value {
    let out = utl(&["snapshot", "status", "-w", "json", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_saved_during_writes_restores_into_a_new_cluster_at_its_revision() {
    let src = Member::start(&[]);
    let mut c = src.client().await;
    // History the restore must keep: a deleted key, a compaction, a leased key, overwrites.
    c.put("gone", "x", None).await.unwrap();
    c.delete("gone", None).await.unwrap();
    c.put("over", "1", None).await.unwrap();
    let compacted = c.put("over", "2", None).await.unwrap();
    let compact_rev = compacted.header().unwrap().revision();
    c.compact(compact_rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    c.put("over", "3", None).await.unwrap();
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("leased", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let n = preload_keys();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut c = src.client().await;
        tasks.push(tokio::spawn(async move {
            for i in (t..n).step_by(8) {
                c.put(
                    format!("pre/{i:07}"),
                    format!("{i}-{}", "x".repeat(100)),
                    None,
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let source_cluster = c.status().await.unwrap().header().unwrap().cluster_id();

    // Save while a writer keeps writing.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = tokio::spawn(writer(src.client().await, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let save_start = Instant::now();
    let rev = save(&mut c, &file).await;
    let save_took = save_start.elapsed();
    // etcdctl too, with its own success line.
    let ctl_file = dir.path().join("etcdctl.db");
    let ctl_path = ctl_file.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking({
        let ep = src.endpoint();
        let p = ctl_path.clone();
        move || common::etcdctl(&ep, &["snapshot", "save", &p])
    })
    .await
    .unwrap();
    assert_eq!(ok(out), format!("Snapshot saved at {ctl_path}\n"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writes.await.unwrap();

    // What the source held at that revision is what the file must hold.
    let (_, expected) = all_kvs(&mut c, rev).await;
    let before: Vec<&Acked> = writes.iter().filter(|w| w.revision <= rev).collect();
    let after: Vec<&Acked> = writes.iter().filter(|w| w.revision > rev).collect();
    assert!(
        !before.is_empty() && !after.is_empty(),
        "writes on both sides of the snapshot ({} before, {} after)",
        before.len(),
        after.len()
    );
    let during: Vec<&Acked> = writes
        .iter()
        .filter(|w| w.started >= save_start && w.started <= save_start + save_took)
        .collect();
    let max_latency = during.iter().map(|w| w.latency).max().unwrap_or_default();
    let mut all: Vec<Duration> = writes.iter().map(|w| w.latency).collect();
    all.sort();
    let size = std::fs::metadata(&file).unwrap().len();
    println!(
        "snapshot of {} keys at revision {rev}: {size} bytes in {save_took:?}; {} writes \
         started during the save, max latency {max_latency:?} (all {} writes: p50 {:?}, \
         max {:?})",
        expected.len(),
        during.len(),
        all.len(),
        all[all.len() / 2],
        all[all.len() - 1]
    );

    let st = status_json(&file);
    assert_eq!(st["revision"], rev);
    assert_eq!(st["totalSize"], size);
    assert_eq!(
        st["clusterId"],
        format!("{source_cluster:x}"),
        "the file names its source cluster"
    );
    let ctl_st = status_json(&ctl_file);
    assert!(ctl_st["revision"].as_i64().unwrap() >= rev, "{ctl_st}");

    // Restore into a new 3-member cluster on new ports.
    let token = "restored-cluster";
    let names = ["n1", "n2", "n3"];
    let peers: Vec<String> = names
        .iter()
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let ic: Vec<String> = names
        .iter()
        .zip(&peers)
        .map(|(n, p)| format!("{n}={p}"))
        .collect();
    let ic = ic.join(",");
    let mut members = Vec::new();
    let restore_start = Instant::now();
    for (name, peer) in names.iter().zip(&peers) {
        let data_dir = dir.path().join(name);
        let out = utl(&[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--name",
            name,
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--initial-cluster",
            &ic,
            "--initial-cluster-token",
            token,
            "--initial-advertise-peer-urls",
            peer,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let said = text(&out.stdout);
        assert!(
            said.contains(&format!("revision {rev}, {} keys", expected.len())),
            "{said}"
        );
        let mut m = Member::unstarted(
            name,
            data_dir,
            format!("http://127.0.0.1:{}", free_port()),
            peer.clone(),
            &["--initial-cluster-token", token],
        );
        m.initial_cluster = ic.clone();
        members.push(m);
    }
    println!(
        "3 restores of {size} bytes took {:?}",
        restore_start.elapsed()
    );
    for m in &mut members {
        m.launch();
    }
    for m in &mut members {
        if let Err(e) = m.wait_ready(Duration::from_secs(30)) {
            let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
            panic!("{} did not start: {e}\n{log}", m.name);
        }
    }

    // Every member holds exactly the source's state at the snapshot's revision.
    let mut new_cluster = 0;
    for m in &members {
        let mut rc = m.client().await;
        let (header_rev, got) = all_kvs(&mut rc, 0).await;
        assert_eq!(header_rev, rev, "{} is at the snapshot's revision", m.name);
        assert_eq!(got.len(), expected.len(), "{}", m.name);
        assert!(
            got == expected,
            "{} holds the source's keys at {rev}",
            m.name
        );
        for w in &before {
            let r = rc
                .get(w.key.as_str(), Some(GetOptions::new().with_serializable()))
                .await
                .unwrap();
            let kv = &r.kvs()[0];
            assert_eq!(
                (kv.value(), kv.mod_revision()),
                (w.value.as_bytes(), w.revision)
            );
        }
        for w in &after {
            let r = rc
                .get(w.key.as_str(), Some(GetOptions::new().with_serializable()))
                .await
                .unwrap();
            assert!(
                r.kvs().is_empty(),
                "{} was written after the snapshot",
                w.key
            );
        }
        let err = rc
            .get(
                "over",
                Some(GetOptions::new().with_revision(compact_rev - 1)),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("mvcc: required revision has been compacted"),
            "{err}"
        );
        let st = rc.status().await.unwrap();
        new_cluster = st.header().unwrap().cluster_id();
        assert_ne!(new_cluster, source_cluster, "a restore makes a new cluster");
    }
    let mut rc = members[0].client().await;
    let list = rc.member_list().await.unwrap();
    let mut listed: Vec<(String, String)> = list
        .members()
        .iter()
        .map(|m| (m.name().to_string(), m.peer_urls()[0].clone()))
        .collect();
    listed.sort();
    let mut want: Vec<(String, String)> = names
        .iter()
        .map(|n| n.to_string())
        .zip(peers.iter().cloned())
        .collect();
    want.sort();
    assert_eq!(listed, want);
    let ttl = rc
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert!(
        ttl.ttl() > 0 && ttl.ttl() <= 600,
        "lease kept: {}",
        ttl.ttl()
    );
    assert_eq!(ttl.keys(), &[b"leased".to_vec()]);

    // The new cluster takes writes from the next revision.
    let put = rc.put("after-restore", "yes", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), rev + 1);
    assert_eq!(put.header().unwrap().cluster_id(), new_cluster);
    // And a follower's snapshot of it holds that write.
    let follower = members
        .iter()
        .find(|m| m.endpoint() != members[0].endpoint())
        .unwrap();
    let f_file = dir.path().join("follower.db");
    let out = follower.etcdctl(&["snapshot", "save", f_file.to_str().unwrap()]);
    ok(out);
    assert_eq!(status_json(&f_file)["revision"], rev + 1);
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// Entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn restore(file: &Path, data_dir: &Path) -> Output {
    utl(&[
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--name",
        "r1",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--initial-cluster",
        "r1=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
    ])
}

#[tokio::test]
async fn damaged_snapshots_and_used_data_dirs_are_refused_with_nothing_written() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    for i in 0..200 {
        c.put(format!("k{i}"), "v".repeat(50), None).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let targets = dir.path().join("targets");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&targets).unwrap();
    let good_path = files.join("good.db");
    save(&mut c, &good_path).await;
    let good = std::fs::read(&good_path).unwrap();
    let len = good.len();
    assert!(len > 4 * 512, "{len}");

    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x04;
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated by one byte", good[..len - 1].to_vec()),
        ("truncated to half", good[..len / 2].to_vec()),
        ("without its checksum", good[..len - 32].to_vec()),
        ("short by a whole block", good[..len - 512].to_vec()),
        ("empty", Vec::new()),
        ("bit-flipped in the header", flip(20)),
        ("bit-flipped in a record", flip(len / 2)),
        ("bit-flipped in the checksum", flip(len - 1)),
    ];
    for (what, bytes) in &cases {
        let bad = files.join("bad.db");
        write(&bad, bytes);
        let out = utl(&["snapshot", "status", bad.to_str().unwrap()]);
        assert!(!out.status.success(), "status accepted a file {what}");
        let err = text(&out.stderr);
        assert!(
            err.contains("is truncated or corrupted") && err.contains("bad.db"),
            "{what}: {err}"
        );
        let target = targets.join("member");
        let out = restore(&bad, &target);
        assert!(!out.status.success(), "restore accepted a file {what}");
        assert!(
            text(&out.stderr).contains("is truncated or corrupted"),
            "{what}: {}",
            text(&out.stderr)
        );
        assert!(
            entries(&targets).is_empty(),
            "{what}: restore left {:?}",
            entries(&targets)
        );
    }

    // Not a ferrocd snapshot at all (an etcd bbolt file starts with a page header).
    let foreign = files.join("etcd.db");
    let mut bolt = vec![0u8; 4096 * 4];
    bolt[16..20].copy_from_slice(&0xED0CDAEDu32.to_le_bytes());
    write(&foreign, &bolt);
    let out = utl(&["snapshot", "status", foreign.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not a ferrocd snapshot file"),
        "{}",
        text(&out.stderr)
    );

    // A data dir in use is never touched.
    let used = targets.join("used");
    std::fs::create_dir_all(&used).unwrap();
    write(&used.join("keep"), b"mine");
    let out = restore(&good_path, &used);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists and is not empty"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(entries(&used), vec!["keep".to_string()]);
    assert_eq!(std::fs::read(used.join("keep")).unwrap(), b"mine");

    // Flags that do not name this member consistently are refused before anything is written.
    let out = utl(&[
        "snapshot",
        "restore",
        good_path.to_str().unwrap(),
        "--name",
        "r1",
        "--data-dir",
        targets.join("mismatch").to_str().unwrap(),
        "--initial-cluster",
        "r1=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2381",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("missing from --initial-advertise-peer-urls"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(entries(&targets), vec!["used".to_string()]);

    // The good file restores, into an empty existing dir too.
    let empty = targets.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = restore(&good_path, &empty);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(entries(&empty), vec!["member".to_string()]);
    assert_eq!(
        entries(&empty.join("member")),
        vec!["db".to_string(), "wal".to_string()]
    );
    assert_eq!(
        entries(&targets),
        vec!["empty".to_string(), "used".to_string()]
    );
}
