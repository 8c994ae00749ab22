//! Small filesystem helpers for crash-safe directory changes.
//!
//! A file's `fdatasync` makes its data durable, but not its name: creating, renaming or
//! deleting a file is only durable once the directory holding it is fsync'd. These helpers
//! exist so every such change in the WAL is followed by that fsync.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::WalError;

/// Wraps an `io::Error` with the path it was about, so messages name the file.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The directory holding `path`; `.` for a bare relative name, because `Path::parent`
/// returns an empty path there, which cannot be opened.
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `<dir>.tmp`, the staging directory `create` builds the WAL in before renaming it into
/// place, so a crash during create never leaves a half-made WAL under the real name.
pub(crate) fn tmp_dir_for(dir: &Path) -> Result<PathBuf, WalError> {
    match dir.file_name() {
        Some(name) => {
            let mut tmp = name.to_os_string();
            tmp.push(".tmp");
            Ok(dir.with_file_name(tmp))
        }
        None => Err(WalError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the WAL directory path must end in a directory name",
            ),
        }),
    }
}

/// `create_dir_all` plus an fsync of the parent of every directory it created, so the new
/// directories survive a power loss together with what is later written into them.
pub(crate) fn create_dir_durable(path: &Path) -> Result<(), WalError> {
    let mut missing = Vec::new();
    let mut p = path.to_path_buf();
    while !p.exists() {
        missing.push(p.clone());
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => break,
        }
    }
    fs::create_dir_all(path).map_err(io_err(path))?;
    for created in missing.iter().rev() {
        fsync_dir(&parent_dir(created))?;
    }
    Ok(())
}

/// Removes `path` whether it is a directory tree or a single file (a leftover of a crash
/// can be either if someone poked at it by hand).
pub(crate) fn remove_any(path: &Path) -> Result<(), WalError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        fs::remove_dir_all(path).map_err(io_err(path))
    } else {
        fs::remove_file(path).map_err(io_err(path))
    }
}
