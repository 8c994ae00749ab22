//! `fsync`: etcd's documented disk test (fio with 2300-byte writes and fdatasync after each),
//! without fio. Every durable write in etcd and ferrocd waits for at least one such fdatasync,
//! so its p50/p99 is the floor under write latency on this disk.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::progress::Progress;
use crate::report::Report;

/// The write size of etcd's fio recipe (about one WAL record of a small put).
pub const WRITE_SIZE: usize = 2300;

/// Appends `count` writes of [`WRITE_SIZE`] bytes to a fresh file in `dir`, each followed by
/// fdatasync, and reports each pair's latency. Blocking: run it off the async workers.
pub fn run(dir: &Path, count: u64) -> anyhow::Result<Report> {
    let path = dir.join(format!(".ferrocd-bench-fsync-{}", std::process::id()));
    let result = write_and_sync(&path, count);
    let _ = std::fs::remove_file(&path);
    result
}

fn write_and_sync(path: &Path, count: u64) -> anyhow::Result<Report> {
    let mut f = std::fs::File::create(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    let buf = vec![0xabu8; WRITE_SIZE];
    let mut report = Report::new("fsync (2300 B write + fdatasync)");
    let progress = Progress::start("fsync", count);
    let done = progress.counter();
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        report.record(t.elapsed());
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    drop(progress);
    report.elapsed = start.elapsed();
    report
        .extra
        .insert("bytes_written".into(), (count * WRITE_SIZE as u64).into());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_count_times_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let r = run(dir.path(), 5).unwrap();
        assert_eq!(r.requests(), 5);
        assert_eq!(r.error_count(), 0);
        assert_eq!(r.extra["bytes_written"], 5 * 2300);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_dir_is_a_clear_error() {
        let e = run(Path::new("/nonexistent/ferrocd-bench"), 1).unwrap_err();
        assert!(e.to_string().contains("cannot create"), "{e}");
    }
}
