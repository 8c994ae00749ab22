//! Errors of the storage backend, worded so an operator knows what to do next.

use std::io;
use std::path::PathBuf;

/// A failure of the sled database under `--data-dir`.
///
/// Every variant names the database directory and the next step, because these errors end up
/// in logs read by an operator at a bad moment, not by the developer who wrote the call.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The disk is full: nothing can be written until space is freed.
    #[error(
        "the disk holding the backend database {dir} is full ({op}): free space on that disk \
         (or move --data-dir to a larger one) and restart ferrocd"
    )]
    DiskFull {
        /// The database directory.
        dir: PathBuf,
        /// What the backend was doing.
        op: &'static str,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the database lock.
    #[error(
        "the backend database {dir} is locked by another process ({detail}): stop the other \
         ferrocd or ferrocdutl that uses this --data-dir, or choose another --data-dir"
    )]
    Locked {
        /// The database directory.
        dir: PathBuf,
        /// sled's message.
        detail: String,
    },
    /// Any other I/O failure (permissions, a failing disk, ...).
    #[error(
        "I/O error on the backend database {dir} ({op}): {source}; check the disk and the \
         permissions of --data-dir"
    )]
    Io {
        /// The database directory.
        dir: PathBuf,
        /// What the backend was doing.
        op: &'static str,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The database files or the data in them are damaged.
    #[error(
        "the backend database {dir} is corrupt ({detail}): restore this member from a snapshot \
         (ferrocdutl snapshot restore), or remove the member and add it back to the cluster"
    )]
    Corrupt {
        /// The database directory.
        dir: PathBuf,
        /// What was found to be wrong.
        detail: String,
    },
    /// A defragmentation found the key history changed under it (a snapshot install) and
    /// left the database as it was.
    #[error("defragmentation of {dir} was interrupted by a snapshot install; run it again")]
    DefragInterrupted {
        /// The database directory.
        dir: PathBuf,
    },
    /// sled refused an operation or hit an internal bug; not recoverable by retrying.
    #[error("the backend database {dir} failed ({op}): {detail}; this is a bug, please report it")]
    Internal {
        /// The database directory.
        dir: PathBuf,
        /// What the backend was doing.
        op: &'static str,
        /// sled's message.
        detail: String,
    },
}

impl BackendError {
    /// Maps a sled error, classifying the cases an operator can act on.
    pub(crate) fn from_sled(dir: &std::path::Path, op: &'static str, err: sled::Error) -> Self {
        let dir = dir.to_path_buf();
        match err {
            sled::Error::Io(source) => {
                if is_disk_full(&source) {
                    BackendError::DiskFull { dir, op, source }
                } else if source.to_string().contains("could not acquire lock") {
                    BackendError::Locked {
                        dir,
                        detail: source.to_string(),
                    }
                } else {
                    BackendError::Io { dir, op, source }
                }
            }
            sled::Error::Corruption { at, .. } => BackendError::Corrupt {
                dir,
                detail: match at {
                    Some(at) => format!("sled found corrupt data at {at:?} during {op}"),
                    None => format!("sled found corrupt data during {op}"),
                },
            },
            sled::Error::CollectionNotFound(name) => BackendError::Internal {
                dir,
                op,
                detail: format!("tree {name:?} not found"),
            },
            sled::Error::Unsupported(detail) | sled::Error::ReportableBug(detail) => {
                BackendError::Internal { dir, op, detail }
            }
        }
    }

    /// True when the error means the disk ran out of space (callers raise the NOSPACE alarm).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, BackendError::DiskFull { .. })
    }
}

fn is_disk_full(err: &io::Error) -> bool {
    // ENOSPC (28) and EDQUOT (122) on Linux; StorageFull/QuotaExceeded where std maps them.
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28) | Some(122))
}
