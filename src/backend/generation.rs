//! Database generations: the sled database lives in `<db dir>/gen-N`, and the file
//! `<db dir>/CURRENT` names the live one. Defragmentation writes a compact copy into the next
//! generation while the old one keeps serving, then switches `CURRENT` atomically; the old
//! generation is deleted once nothing reads it any more. (A database created by an earlier
//! ferrocd, with sled's files directly in the db dir, is generation `.` until its first
//! defragmentation.)

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The file naming the live generation.
pub(super) const CURRENT: &str = "CURRENT";
/// The name of a database kept directly in the db dir.
pub(super) const LEGACY: &str = ".";
/// sled's own entries in its directory, for removing a legacy generation.
const SLED_FILES: [&str; 3] = ["conf", "db", "blobs"];
/// How long after its last reader is gone an obsolete generation is deleted: sled's background
/// threads hold the files a moment longer than the last handle.
const DELETE_DELAY: Duration = Duration::from_secs(2);
/// When the freed memory of the old generation is handed back to the OS.
const TRIM_DELAY: Duration = Duration::from_millis(600);

/// One open sled database and where it lives.
pub(super) struct Generation {
    pub(super) db: sled::Db,
    pub(super) name: String,
    pub(super) path: PathBuf,
    /// Set when a newer generation took over: dropping the last handle deletes it.
    pub(super) obsolete: AtomicBool,
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.obsolete.load(Ordering::Acquire) {
            return;
        }
        let (path, legacy) = (self.path.clone(), self.name == LEGACY);
        let _ = std::thread::Builder::new()
            .name("backend-gc".into())
            .spawn(move || {
                // sled's own threads let go of the old database within a flush interval;
                // then its memory is free and can go back to the OS.
                std::thread::sleep(TRIM_DELAY);
                release_free_memory();
                std::thread::sleep(DELETE_DELAY.saturating_sub(TRIM_DELAY));
                let res = if legacy {
                    remove_legacy(&path)
                } else {
                    fs::remove_dir_all(&path)
                };
                // The old database's page cache is gone; give the freed heap back to the OS
                // rather than let the allocator keep it as RSS.
                release_free_memory();
                match res {
                    Ok(()) => tracing::info!(path = %path.display(), "removed the old backend generation"),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "removing the old backend generation failed; it is retried on the next start"),
                }
            });
    }
}

/// The live generation's name: from `CURRENT`, or the legacy layout, or `gen-1` for a new
/// database (recorded in `CURRENT` first).
pub(super) fn current_name(dir: &Path) -> std::io::Result<String> {
    match fs::read_to_string(dir.join(CURRENT)) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if SLED_FILES.iter().any(|f| dir.join(f).exists()) {
                Ok(LEGACY.to_string())
            } else {
                let name = "gen-1".to_string();
                set_current(dir, &name)?;
                Ok(name)
            }
        }
        Err(e) => Err(e),
    }
}

/// The generation after `name`.
pub(super) fn next_name(name: &str) -> String {
    let n = name
        .strip_prefix("gen-")
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    format!("gen-{}", n + 1)
}

/// Makes `name` the live generation, durably: a crash leaves either the old or the new name.
pub(super) fn set_current(dir: &Path, name: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CURRENT}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(name.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(CURRENT))?;
    fs::File::open(dir)?.sync_all()
}

/// Whether the db dir holds a generation other than `name`.
pub(super) fn has_other(dir: &Path, name: &str) -> bool {
    fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("gen-") && n != name
            })
        })
        .unwrap_or(false)
}

/// Deletes generations other than `live` left by a crash or an interrupted defragmentation.
pub(super) fn remove_stale(dir: &Path, live: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("gen-") && name != live {
            match fs::remove_dir_all(e.path()) {
                Ok(()) => tracing::info!(generation = %name, "removed a stale backend generation"),
                Err(err) => {
                    tracing::warn!(generation = %name, error = %err, "cannot remove a stale backend generation")
                }
            }
        }
    }
    if live != LEGACY && SLED_FILES.iter().any(|f| dir.join(f).exists()) {
        if let Err(err) = remove_legacy(dir) {
            tracing::warn!(error = %err, "cannot remove the pre-generation backend files");
        }
    }
}

fn remove_legacy(dir: &Path) -> std::io::Result<()> {
    for f in SLED_FILES {
        let p = dir.join(f);
        if p.is_dir() {
            fs::remove_dir_all(&p)?;
        } else if p.exists() {
            fs::remove_file(&p)?;
        }
    }
    for e in fs::read_dir(dir)?.flatten() {
        if e.file_name().to_string_lossy().starts_with("snap.") {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Returns freed heap pages to the OS (glibc keeps them otherwise, showing as RSS).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
