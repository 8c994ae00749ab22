//! etcd's KV request semantics over an MVCC view: Range (limit, sort, filters), Put (prev_kv,
//! ignore_value, ignore_lease), DeleteRange and Txn (compares, branches, nested txns), and the
//! response headers' revisions as etcd 3.5 computes them (etcd: `etcdserver/txn`).
//!
//! Shared by the applier (writes, inside one MVCC write txn) and by the read path (ranges and
//! read-only txns over the store), so both compute exactly what etcd's applier computes. Pure
//! functions of a view and a request: no locking, no IO beyond the view, no raft.
//!
//! Files: `range.rs` (Range), `put.rs` (Put, DeleteRange), `compare.rs` (compares and the
//! branch a txn takes), `branches.rs` (a txn's pre-flight checks, read-only and writing runs).

mod branches;
mod compare;
mod put;
mod range;
#[cfg(test)]
mod tests;

pub use branches::{check_txn, read_only_txn, write_txn};
pub use compare::{is_read_only, is_serializable, txn_path};
pub use put::{delete_range, put};
pub use range::range;

use crate::error::EtcdError;
use crate::mvcc::{KeyValue, MvccError, RangeOptions, RangeResult, Store, WriteTxn};
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::mvccpb;

/// Something ranges can be served from: the store (reads) or a write txn (sees its own writes).
pub trait ReadView {
    /// Keys in `[key, range_end)` at `opts.rev`, etcd's range_end conventions.
    fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        opts: &RangeOptions,
    ) -> Result<RangeResult, MvccError>;
}

impl ReadView for Store {
    fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        opts: &RangeOptions,
    ) -> Result<RangeResult, MvccError> {
        Store::range(self, key, range_end, opts)
    }
}

impl ReadView for WriteTxn<'_> {
    fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        opts: &RangeOptions,
    ) -> Result<RangeResult, MvccError> {
        WriteTxn::range(self, key, range_end, opts)
    }
}

/// Whether a lease id is granted; the lessor answers it once leases exist.
pub type LeaseCheck<'a> = &'a dyn Fn(i64) -> bool;

/// Maps store errors onto etcd's client errors.
pub fn mvcc_err(e: MvccError) -> EtcdError {
    match e {
        MvccError::Compacted => EtcdError::Compacted,
        MvccError::FutureRev => EtcdError::FutureRev,
        other => EtcdError::Internal(other.to_string()),
    }
}

/// Converts a stored key-value into etcd's wire type.
pub fn to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A response header carrying `revision` (the server fills in the rest).
pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The live value of one key in `view`, if any.
pub(crate) fn get(view: &dyn ReadView, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
    let rr = view
        .range(
            key,
            &[],
            &RangeOptions {
                limit: 1,
                rev: 0,
                count_only: false,
            },
        )
        .map_err(mvcc_err)?;
    Ok(rr.kvs.into_iter().next())
}
