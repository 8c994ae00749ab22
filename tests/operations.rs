//! Operations against real ferrocd processes: the space quota and NOSPACE on every member,
//! recovery by compact + defrag + disarm, auto compaction, online defragmentation during a
//! write stream, and the periodic corruption check raising CORRUPT for a diverged member.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{code_and_message, member_id, ok, Cluster, Member};
use etcd_client::{AlarmAction, AlarmType, Client, CompactionOptions, GetOptions};
use ferrocd::backend::{Backend, BackendOptions, WriteBatch};
use ferrocd::schema::Bucket;

/// Cluster tests run one at a time (several clusters on two cores make elections flap).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn alarms(m: &Member) -> Vec<(u64, AlarmType)> {
    let mut c = m.client().await;
    let r = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    r.alarms()
        .iter()
        .map(|a| (a.member_id(), a.alarm()))
        .collect()
}

#[tokio::test]
async fn quota_raises_nospace_on_every_member_and_compact_defrag_disarm_recover() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, &["--quota-backend-bytes", "6000000"]);
    let m0 = &cluster.members[0];
    let mut c = m0.client().await;
    let value = "x".repeat(20_000);
    let mut last_ok = 0;
    let mut refused = None;
    for i in 0..2000 {
        match c.put(format!("k{}", i % 10), value.clone(), None).await {
            Ok(r) => last_ok = r.header().unwrap().revision(),
            Err(e) => {
                refused = Some(code_and_message(e));
                break;
            }
        }
    }
    assert_eq!(
        refused.expect("the quota is reached within 2000 puts of 20 kB"),
        (
            tonic::Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded".into()
        )
    );
    let id0 = member_id(m0).await;
    // The alarm went through raft: every member has it and refuses writes, even one whose own
    // database is below the quota; reads and deletes still work.
    for m in &cluster.members {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !alarms(m).await.contains(&(id0, AlarmType::Nospace)) {
            assert!(Instant::now() < deadline, "{} lacks NOSPACE", m.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut mc = m.client().await;
        let e = mc.put("small", "v", None).await.unwrap_err();
        assert_eq!(
            code_and_message(e).1,
            "etcdserver: mvcc: database space exceeded"
        );
        let g = mc.get("k1", None).await.unwrap();
        assert_eq!(g.kvs()[0].value().len(), 20_000);
    }
    let del = c.delete("k9", None).await.unwrap();
    assert_eq!(del.deleted(), 1);
    // Other members may have raised NOSPACE for themselves too (their own check on the
    // refused puts above); every alarm is a NOSPACE and member 0's is among them.
    let out = ok(m0.etcdctl(&["alarm", "list"]));
    assert!(
        out.lines()
            .any(|l| l.trim_end() == format!("memberID:{id0} alarm:NOSPACE")),
        "{out}"
    );
    assert!(
        out.lines()
            .all(|l| l.trim_end().ends_with(" alarm:NOSPACE")),
        "{out}"
    );

    // Free space: compact everything but the latest, defragment every member, disarm.
    let rev = c
        .get("k1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert!(rev >= last_ok);
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    for m in &cluster.members {
        let mut mc = m.client().await;
        let before = mc.status().await.unwrap().db_size();
        mc.defragment().await.unwrap();
        let after = mc.status().await.unwrap().db_size();
        println!("{}: db size {before} -> {after} after defrag", m.name);
        assert!(after < before, "{}: {before} -> {after}", m.name);
    }
    let out = ok(m0.etcdctl(&["alarm", "disarm"]));
    assert!(
        out.lines()
            .any(|l| l.trim_end() == format!("memberID:{id0} alarm:NOSPACE")),
        "{out}"
    );
    for m in &cluster.members {
        assert_eq!(alarms(m).await, vec![]);
    }
    let r = c.put("after", "recovered", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), rev + 1);
}

#[tokio::test]
async fn periodic_auto_compaction_bounds_history() {
    let m = Member::start(&[
        "--auto-compaction-mode",
        "periodic",
        "--auto-compaction-retention",
        "2s",
    ]);
    let mut c = m.client().await;
    let first = c
        .put("k", "0", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let start = Instant::now();
    let mut i = 0;
    // Write for up to 15 s, until revision `first` is compacted.
    let compacted_at = loop {
        i += 1;
        c.put("k", i.to_string(), None).await.unwrap();
        match c
            .get("k", Some(GetOptions::new().with_revision(first)))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(
                    code_and_message(e),
                    (
                        tonic::Code::OutOfRange,
                        "etcdserver: mvcc: required revision has been compacted".into()
                    )
                );
                break start.elapsed();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "history not compacted after 15 s with a 2 s retention"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("revision {first} compacted {compacted_at:?} into the write stream");
    assert!(
        compacted_at >= Duration::from_secs(2),
        "not before the retention"
    );
    // The latest value is intact and recent history (within the retention) still readable.
    let now = c.get("k", None).await.unwrap();
    assert_eq!(now.kvs()[0].value_str().unwrap(), i.to_string());
    let recent = now.header().unwrap().revision() - 2;
    c.get("k", Some(GetOptions::new().with_revision(recent)))
        .await
        .unwrap();
    let log = std::fs::read_to_string(&m.log_path).unwrap();
    assert!(log.contains("compacted by auto compaction"), "{log}");
}

#[tokio::test]
async fn defrag_during_a_write_stream_never_fails_or_stalls_a_write_for_the_whole_defrag() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let value = "v".repeat(2000);
    for round in 0..3 {
        for i in 0..1000 {
            c.put(format!("key/{i:04}"), format!("{round}{value}"), None)
                .await
                .unwrap();
        }
    }
    let rev = c
        .get("key/0000", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let before = c.status().await.unwrap().db_size();

    let stop = Arc::new(AtomicBool::new(false));
    let max_us = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, max_us, writes) = (stop.clone(), max_us.clone(), writes.clone());
        let mut wc = m.client().await;
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let t = Instant::now();
                wc.put(format!("during/{i}"), "x", None)
                    .await
                    .expect("no write fails during defrag");
                max_us.fetch_max(t.elapsed().as_micros() as u64, Ordering::AcqRel);
                writes.fetch_add(1, Ordering::AcqRel);
                i += 1;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    c.defragment().await.unwrap();
    let took = t.elapsed();
    stop.store(true, Ordering::Release);
    let n = writer.await.unwrap();
    let after = c.status().await.unwrap().db_size();
    println!(
        "defrag took {took:?}; db {before} -> {after} bytes; {n} writes during the run, slowest {} us",
        max_us.load(Ordering::Acquire)
    );
    assert!(after < before, "{before} -> {after}");
    assert!(writes.load(Ordering::Acquire) > 0);
    // Every write made during the defrag is there.
    let g = c
        .get(
            "during/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(g.count() as u64, n);
    let k = c.get("key/0999", None).await.unwrap();
    assert!(k.kvs()[0].value_str().unwrap().starts_with('2'));
    let out = ok(m.etcdctl(&["defrag"]));
    assert_eq!(
        out.trim(),
        format!("Finished defragmenting etcd member[{}]", m.endpoint())
    );
    // The defragmented database is the one a restart opens.
    let mut m = m;
    m.stop();
    m.restart();
    let mut c = m.client().await;
    let g = c
        .get(
            "during/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(g.count() as u64, n);
}

/// A member whose stored history is altered behind raft's back is found by the leader's
/// periodic hash check and marked CORRUPT; the cluster then refuses requests.
#[tokio::test]
async fn corruption_check_raises_corrupt_for_a_diverged_member() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, &["--experimental-corrupt-check-time", "1s"]);
    let leader = cluster.leader(0).await;
    let victim = (leader + 1) % 3;
    let mut c = Client::connect([cluster.members[leader].endpoint()], None)
        .await
        .unwrap();
    for i in 0..20 {
        c.put(format!("c{i}"), "corrupt-me", None).await.unwrap();
    }
    let rev = c
        .get("c0", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // Converged: the same hash everywhere.
    let mut hashes = Vec::new();
    for m in &cluster.members {
        let mut mc = m.client().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match mc.hash_kv(rev).await {
                Ok(h) => {
                    hashes.push(h.hash());
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("hashkv on {}: {e}", m.name),
            }
        }
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    let victim_id = member_id(&cluster.members[victim]).await;

    // Alter one stored value on the stopped victim (same length: it still decodes).
    cluster.members[victim].stop();
    {
        let db = cluster.members[victim].data_dir.join("member").join("db");
        let backend = Backend::open(&db, BackendOptions::default()).unwrap();
        let (k, v) = backend
            .range(Bucket::Key, b"", None)
            .map(|r| r.unwrap())
            .find(|(_, v)| v.windows(10).any(|w| w == b"corrupt-me"))
            .expect("a stored value to alter");
        let altered: Vec<u8> = {
            let pos = v.windows(10).position(|w| w == b"corrupt-me").unwrap();
            let mut a = v.to_vec();
            a[pos..pos + 10].copy_from_slice(b"CORRUPT-ME");
            a
        };
        let mut b = WriteBatch::new();
        b.put(Bucket::Key, &k, altered);
        backend.commit(b).unwrap();
        backend.flush().unwrap();
    }
    // Not `restart_same_urls`: it waits for /health, which the member may never pass, since
    // the leader can mark it CORRUPT within milliseconds of its return.
    cluster.members[victim].launch();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = alarms(&cluster.members[leader]).await;
        if a.contains(&(victim_id, AlarmType::Corrupt)) {
            assert_eq!(a.len(), 1, "only the victim is marked: {a:?}");
            break;
        }
        assert!(Instant::now() < deadline, "CORRUPT not raised: {a:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = c.put("new", "v", None).await.unwrap_err();
    assert_eq!(
        code_and_message(e),
        (tonic::Code::DataLoss, "etcdserver: corrupt cluster".into())
    );
    let e = c.get("c0", None).await.unwrap_err();
    assert_eq!(code_and_message(e).1, "etcdserver: corrupt cluster");
    let log = std::fs::read_to_string(&cluster.members[leader].log_path).unwrap();
    assert!(log.contains("raising CORRUPT"));
}
