//! The WAL's error type.
//!
//! Every message is written for the operator who reads it in a log at 3 a.m.: it says what
//! happened, where (file and offset), and what to do about it.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the WAL.
///
/// The variants are distinct because the caller reacts differently to each: `Corrupt` and
/// `UnexpectedFile` are fatal at startup and need an operator, `Io` may be a full disk, and
/// `Failed` means this process must stop appending and restart.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An operating-system call failed; `path` is the file or directory it was about.
    #[error("WAL I/O error on {}: {source}{}", .path.display(), io_hint(.source))]
    Io {
        /// The file or directory the failing call was about.
        path: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },

    /// The log holds bytes that a crash cannot explain (a CRC mismatch, an unknown record
    /// type, a torn record in a segment that is not the last one, a missing segment, ...).
    /// Nothing was modified on disk, so an operator can still inspect or copy the files.
    #[error(
        "corrupt WAL segment {} at offset {offset}: {reason}. No file was modified. The log \
         cannot be trusted past this point, so this member cannot start from it: restore the \
         member's data from a snapshot (ferrocdutl snapshot restore), or remove the member's \
         data directory and re-add it to the cluster (etcdctl member remove, then member add)",
        .file.display()
    )]
    Corrupt {
        /// The segment file holding the bad bytes.
        file: PathBuf,
        /// Byte offset in `file` of the record (or point) where reading stopped.
        offset: u64,
        /// What exactly is wrong.
        reason: String,
    },

    /// A file ending in `.wal` whose name is not a segment name. We refuse to guess whether
    /// it is a misnamed segment (skipping it could silently drop data) or a stray copy.
    #[error(
        "unexpected file {} in the WAL directory: its name is not a segment name \
         (<16 hex digits>-<16 hex digits>.wal); move it out of the directory and start again",
        .path.display()
    )]
    UnexpectedFile {
        /// The offending file.
        path: PathBuf,
    },

    /// `create` was asked to build a WAL where one already exists; overwriting it would
    /// throw away acknowledged writes.
    #[error(
        "a WAL already exists in {}; refusing to create a new one over it (open it instead, or \
         move the directory away if this member really must start from scratch)",
        .dir.display()
    )]
    AlreadyExists {
        /// The directory that already holds segments.
        dir: PathBuf,
    },

    /// `open`/`read_only` found no segment at all.
    #[error("no WAL in {} (no *.wal segment files found)", .dir.display())]
    NotFound {
        /// The directory that was searched.
        dir: PathBuf,
    },

    /// The caller asked to append something the format cannot hold. Nothing was written.
    #[error("cannot append to the WAL: {reason}")]
    InvalidRecord {
        /// Why the record was refused.
        reason: String,
    },

    /// An earlier write or fsync failed. After a failed fsync the kernel may have dropped the
    /// dirty pages, and after a failed write a partial record may sit at the end of the file,
    /// so appending more could put good records behind a bad one. The only safe way on is to
    /// reopen the log (restart the member), which repairs the torn tail.
    #[error(
        "the WAL is unusable after an earlier write or fsync failure ({reason}); restart the \
         member so it reopens and repairs the log"
    )]
    Failed {
        /// The first failure, as text.
        reason: String,
    },
}

/// Adds the likely fix for the I/O errors operators actually hit.
fn io_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::StorageFull => {
            " (the disk is full: free space or move the data directory to a bigger disk, then \
             restart the member)"
        }
        io::ErrorKind::PermissionDenied => {
            " (check the owner and permissions of the data directory)"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            " (the filesystem is read-only: check the mount and the disk's health)"
        }
        _ => "",
    }
}
