//! The offline tool against a stopped member's data dir.

mod common;

use std::process::Command;

use common::Member;

#[tokio::test]
async fn status_and_wal_dump_report_the_members_state() {
    let mut m = Member::start(&[]);
    let mut c = m.client().await;
    for i in 0..5 {
        c.put(format!("k{i}"), "v", None).await.unwrap(); // revisions 2..=6
    }
    c.delete("k0", None).await.unwrap(); // revision 7
    drop(c);
    assert!(m.stop().success());

    let out = Command::new(env!("CARGO_BIN_EXE_ferrocdutl"))
        .args(["status", "--data-dir"])
        .arg(&m.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("revision: 7\n"), "{text}");
    assert!(text.contains("keys: 4\n"), "{text}");
    assert!(
        text.contains("compact_revision: -1\n") || text.contains("compact_revision: 0\n"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ferrocdutl"))
        .args(["wal-dump", "--data-dir"])
        .arg(&m.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("metadata\t"), "{text}");
    assert!(
        text.contains("snapshot\tindex=1\tterm=1"),
        "the log starts at a snapshot point:\n{text}"
    );
    let entries = text.lines().filter(|l| l.starts_with("entry\t")).count();
    // 6 client writes + the member's publish + one empty entry per election: at least 8.
    assert!(entries >= 8, "{entries} entries:\n{text}");
    assert!(
        text.lines().last().unwrap().starts_with("total: "),
        "{text}"
    );
}

#[test]
fn a_missing_data_dir_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocdutl"))
        .args(["status", "--data-dir", "/nonexistent/ferrocd"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no backend at /nonexistent/ferrocd/member/db"));
}
