//! etcd's Put and DeleteRange inside one MVCC write txn, with their response revisions.

use super::{get, header, to_pb, LeaseCheck};
use crate::error::EtcdError;
use crate::mvcc::WriteTxn;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
};

/// etcd's Put inside a write txn. `begin_rev` is the store revision before the txn.
pub fn put(
    txn: &mut WriteTxn<'_>,
    begin_rev: i64,
    p: &PutRequest,
    lease_exists: LeaseCheck<'_>,
) -> Result<PutResponse, EtcdError> {
    let mut value = &p.value;
    let mut lease = p.lease;
    let prev_for_ignore;
    if p.ignore_value || p.ignore_lease {
        prev_for_ignore = get(txn, &p.key)?.ok_or(EtcdError::KeyNotFound)?;
        if p.ignore_value {
            value = &prev_for_ignore.value;
        }
        if p.ignore_lease {
            lease = prev_for_ignore.lease;
        }
    }
    if lease != 0 && !lease_exists(lease) {
        return Err(EtcdError::LeaseNotFound);
    }
    let value = value.clone();
    let prev = txn.put(&p.key, &value, lease);
    Ok(PutResponse {
        header: header(begin_rev + 1),
        prev_kv: if p.prev_kv { prev.map(to_pb) } else { None },
    })
}

/// etcd's DeleteRange inside a write txn. `changed_before` says whether the txn already wrote.
pub fn delete_range(
    txn: &mut WriteTxn<'_>,
    begin_rev: i64,
    changed_before: bool,
    d: &DeleteRangeRequest,
) -> DeleteRangeResponse {
    let deleted = txn.delete_range(&d.key, &d.range_end);
    let rev = if !deleted.is_empty() || changed_before {
        begin_rev + 1
    } else {
        begin_rev
    };
    DeleteRangeResponse {
        header: header(rev),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv {
            deleted.into_iter().map(to_pb).collect()
        } else {
            Vec::new()
        },
    }
}
