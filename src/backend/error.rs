//! Errors of the storage backend, worded so an operator knows what to do next.

use std::io;
use std::path::PathBuf;

/// A failure of the backend database under `--data-dir`.
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
        /// What the engine said.
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
    /// The directory holds a database this version of ferrocd cannot read.
    #[error(
        "the backend database {dir} was written by an incompatible storage engine ({detail}): \
         restore this member from a snapshot (etcdctl snapshot save on a running member of the \
         old version, then ferrocdutl snapshot restore), or remove the member and add it back"
    )]
    Incompatible {
        /// The database directory.
        dir: PathBuf,
        /// What was found.
        detail: String,
    },
}

impl BackendError {
    /// Maps an I/O error, telling a full disk apart.
    pub(crate) fn from_io(dir: &std::path::Path, op: &'static str, source: io::Error) -> Self {
        let dir = dir.to_path_buf();
        if is_disk_full(&source) {
            BackendError::DiskFull { dir, op, source }
        } else {
            BackendError::Io { dir, op, source }
        }
    }

    /// Maps an LSM-tree error, classifying the cases an operator can act on.
    pub(crate) fn from_lsm(dir: &std::path::Path, op: &'static str, err: lsm_tree::Error) -> Self {
        match err {
            lsm_tree::Error::Io(source) => Self::from_io(dir, op, source),
            other => BackendError::Corrupt {
                dir: dir.to_path_buf(),
                detail: format!("{other:?} during {op}"),
            },
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
