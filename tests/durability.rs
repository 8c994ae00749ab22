//! Nothing acknowledged is lost: kill -9 mid-stream, a torn WAL tail, and corruption that must
//! stop start-up without touching the files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Member;
use etcd_client::GetOptions;

fn wal_segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir.join("member").join("wal"))
        .expect("wal dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|e| e == "wal").unwrap_or(false))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn kill9_mid_stream_loses_no_acknowledged_write() {
    let mut m = Member::start(&[]);
    let endpoint = m.endpoint();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let endpoint = endpoint.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = etcd_client::Client::connect([endpoint], None)
                    .await
                    .unwrap();
                let mut acked = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}/{i:06}");
                    match c.put(key.clone(), format!("value-{i}"), None).await {
                        Ok(r) => acked.push((key, i, r.header().unwrap().revision())),
                        Err(_) => break, // the server died under us
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    m.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "the writers made progress before the kill ({} acks)",
        acked.len()
    );
    let max_rev = acked.iter().map(|a| a.2).max().unwrap();

    m.restart();
    let mut c = m.client().await;
    for (key, i, rev) in &acked {
        let r = c.get(key.as_str(), None).await.unwrap();
        assert_eq!(r.kvs().len(), 1, "acknowledged key {key} lost");
        assert_eq!(r.kvs()[0].value(), format!("value-{i}").as_bytes());
        assert_eq!(r.kvs()[0].mod_revision(), *rev, "{key} kept its revision");
    }
    let current = c.get("x", None).await.unwrap().header().unwrap().revision();
    assert!(
        current >= max_rev,
        "revision went backwards: {current} < {max_rev}"
    );
    let next = c
        .put("after", "restart", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert_eq!(next, current + 1, "the revision continues by exactly one");
}

#[tokio::test]
async fn restart_after_snapshots_and_compaction_keeps_everything() {
    let mut m = Member::start(&[
        "--snapshot-count",
        "50",
        "--experimental-snapshot-catchup-entries",
        "10",
    ]);
    let mut c = m.client().await;
    for i in 0..300 {
        c.put(format!("k{i:03}"), format!("{i}"), None)
            .await
            .unwrap();
    }
    c.delete("k000", None).await.unwrap(); // rev 302
    c.compact(100, None).await.unwrap();
    drop(c);
    m.restart();
    let mut c = m.client().await;
    let r = c
        .get("k", Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap();
    assert_eq!(r.count(), 299);
    assert_eq!(r.header().unwrap().revision(), 302);
    let kv = c.get("k150", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.value(), kv.mod_revision(), kv.version()),
        (&b"150"[..], 152, 1)
    );
    let e = c
        .get("k150", Some(GetOptions::new().with_revision(99)))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("required revision has been compacted"),
        "{e}"
    );
    // With --snapshot-count 50 the WAL has been released behind snapshots and still replays.
    assert_eq!(
        c.put("k999", "x", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        303
    );
}

#[tokio::test]
async fn torn_wal_tail_is_repaired() {
    let mut m = Member::start(&[]);
    let mut c = m.client().await;
    for i in 0..20 {
        c.put(format!("t{i:02}"), "v", None).await.unwrap();
    }
    drop(c);
    m.kill9();
    // Cut the last record in half: what a crash in the middle of a write leaves.
    let last = wal_segments(&m.data_dir).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);

    m.restart();
    let log = std::fs::read_to_string(&m.log_path).unwrap();
    assert!(
        log.to_lowercase().contains("torn") || log.contains("truncat"),
        "the repair is logged:\n{log}"
    );
    let mut c = m.client().await;
    let r = c
        .get("t", Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap();
    assert!(
        r.count() >= 19,
        "only the torn record may be missing, found {}",
        r.count()
    );
    let rev = r.header().unwrap().revision();
    assert_eq!(
        c.put("after", "x", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        rev + 1
    );
}

/// Byte offset of the last raft entry record in a WAL segment (records are
/// `{type: u8, crc32c: u32, len: u32, data}`; type 2 is an entry).
fn last_entry_offset(bytes: &[u8]) -> usize {
    let mut pos = 0;
    let mut last = None;
    while pos + 9 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 5..pos + 9].try_into().unwrap()) as usize;
        if bytes[pos] == 2 {
            last = Some(pos);
        }
        pos += 9 + len;
    }
    last.expect("the segment holds an entry")
}

#[tokio::test]
async fn wal_cut_inside_an_entry_the_backend_applied_starts_with_everything() {
    // A clean stop writes the backend out through the last entry; then the disk loses the
    // WAL's last entry (cut in its middle). The backend is ahead of the WAL: the member used
    // to panic in raft-rs ("applied(N) is out of range"). It must start with every key.
    let mut m = Member::start(&[]);
    let mut c = m.client().await;
    let mut revs = Vec::new();
    for i in 0..20 {
        let r = c
            .put(format!("t{i:02}"), format!("v{i}"), None)
            .await
            .unwrap();
        revs.push(r.header().unwrap().revision());
    }
    drop(c);
    assert!(m.stop().success());
    let last = wal_segments(&m.data_dir).pop().unwrap();
    let bytes = std::fs::read(&last).unwrap();
    let cut = last_entry_offset(&bytes) + 12;
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(cut as u64).unwrap();
    drop(f);

    m.restart();
    let log = std::fs::read_to_string(&m.log_path).unwrap();
    assert!(
        log.contains("resuming the raft log from the backend's applied index"),
        "the repair is logged:\n{log}"
    );
    let mut c = m.client().await;
    for (i, rev) in revs.iter().enumerate() {
        let r = c.get(format!("t{i:02}"), None).await.unwrap();
        assert_eq!(r.kvs().len(), 1, "t{i:02} present");
        assert_eq!(r.kvs()[0].value(), format!("v{i}").as_bytes());
        assert_eq!(r.kvs()[0].mod_revision(), *rev);
    }
    let last_rev = *revs.last().unwrap();
    let r = c.put("after", "x", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), last_rev + 1);
    drop(c);
    // And the repaired log is consistent for the next start, clean or not.
    m.restart();
    let mut c = m.client().await;
    let g = c.get("after", None).await.unwrap();
    assert_eq!(g.kvs()[0].mod_revision(), last_rev + 1);
    let r = c.put("again", "y", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), last_rev + 2);
}

#[tokio::test]
async fn corrupt_wal_stops_startup_and_leaves_files_untouched() {
    let mut m = Member::start(&[]);
    let mut c = m.client().await;
    for i in 0..50 {
        c.put(format!("c{i:02}"), "some value here", None)
            .await
            .unwrap();
    }
    drop(c);
    m.kill9();
    let seg = wal_segments(&m.data_dir).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();

    let client = format!("http://127.0.0.1:{}", common::free_port());
    let out = Command::new(common::ferrocd_bin())
        .args(["--name", "m1", "--data-dir"])
        .arg(&m.data_dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{}", common::free_port()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "start-up must fail on a corrupt WAL");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        stderr.contains(&name),
        "error names the file {name}:\n{stderr}"
    );
    assert!(
        stderr.contains("offset"),
        "error names the offset:\n{stderr}"
    );
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        bytes,
        "the corrupt segment is left as it was"
    );
}
