//! Multi-version key-value store with etcd 3.5's revision semantics.
//!
//! Every change is recorded under a [`Revision`] in the backend's key bucket; the in-memory
//! index maps each key to its revisions so that reads at any retained revision find the right
//! version without keeping values in memory. One writer (the applier, holding `&mut Store`
//! through a `RwLock`) makes changes through a [`WriteTxn`]; readers use [`Store::range`].
//! Bracket the entries of one raft `Ready` with [`Store::begin_group`] / [`Store::end_group`]
//! so the backend receives one batch for all of them (see `group.rs` for why).
//!
//! Meta bucket keys used here (etcd's names): `scheduledCompactRev` and `finishedCompactRev`,
//! each a 17-byte revision key of `(rev, 0)`.

mod compaction;
mod group;
mod hash;
mod history;
mod index;
mod key_index;
mod kv;
mod revision;
mod store;
#[cfg(test)]
mod tests;
mod txn;
pub mod watch;

pub use compaction::Compaction;
pub use history::events_between;
pub use kv::{Event, EventType, KeyValue};
pub use revision::{Revision, MARKED_REV_BYTES_LEN, REV_BYTES_LEN, TOMBSTONE_MARK};
pub use store::{RangeOptions, RangeResult, Store};
pub use txn::{TxnResult, WriteTxn};

use crate::backend::BackendError;

/// Why a store operation failed.
///
/// `Compacted` and `FutureRev` are client errors the api layer maps to etcd's `OutOfRange`
/// errors; the others mean the member's storage is broken.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// The revision asked for has been compacted away.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The revision asked for has not happened yet.
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    /// The backend failed (its message says what to do).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The data in the backend contradicts itself or cannot be decoded.
    #[error(
        "the mvcc data in the backend database is corrupt: {0}; restore this member from a \
         snapshot, or remove it and add it back to the cluster"
    )]
    Corrupt(String),
}
