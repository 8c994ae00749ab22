//! Running a txn's chosen branches: etcd's pre-flight checks against the state before the
//! txn, a read-only run over a read view, and a writing run inside one MVCC write txn (all its
//! writes share one revision).

use super::{delete_range, get, header, put, range, txn_path, LeaseCheck, ReadView};
use crate::error::EtcdError;
use crate::mvcc::WriteTxn;
use crate::proto::etcdserverpb::{
    request_op, response_op, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};

/// etcd's pre-flight checks on the chosen branches, against the state before the txn: ranges
/// must not name a compacted or future revision; puts with ignore_* need an existing key; puts
/// need an existing lease.
pub fn check_txn(
    view: &dyn ReadView,
    t: &TxnRequest,
    path: &[bool],
    current_rev: i64,
    compact_rev: i64,
    lease_exists: LeaseCheck<'_>,
) -> Result<(), EtcdError> {
    let mut cursor = 0;
    check_branch(
        view,
        t,
        path,
        &mut cursor,
        current_rev,
        compact_rev,
        lease_exists,
    )
}

fn check_branch(
    view: &dyn ReadView,
    t: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
    current_rev: i64,
    compact_rev: i64,
    lease_exists: LeaseCheck<'_>,
) -> Result<(), EtcdError> {
    let ok = path[*cursor];
    *cursor += 1;
    for op in if ok { &t.success } else { &t.failure } {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                if r.revision > current_rev {
                    return Err(EtcdError::FutureRev);
                }
                if r.revision != 0 && r.revision < compact_rev {
                    return Err(EtcdError::Compacted);
                }
            }
            Some(request_op::Request::RequestPut(p)) => {
                if (p.ignore_value || p.ignore_lease) && get(view, &p.key)?.is_none() {
                    return Err(EtcdError::KeyNotFound);
                }
                if p.lease != 0 && !lease_exists(p.lease) {
                    return Err(EtcdError::LeaseNotFound);
                }
            }
            Some(request_op::Request::RequestTxn(n)) => check_branch(
                view,
                n,
                path,
                cursor,
                current_rev,
                compact_rev,
                lease_exists,
            )?,
            _ => {}
        }
    }
    Ok(())
}

/// Runs a read-only txn over a read view.
pub fn read_only_txn(
    view: &dyn ReadView,
    t: &TxnRequest,
    current_rev: i64,
    compact_rev: i64,
) -> Result<TxnResponse, EtcdError> {
    let path = txn_path(view, t);
    check_txn(view, t, &path, current_rev, compact_rev, &|_| false)?;
    let mut cursor = 0;
    let mut resp = read_branch(view, t, &path, &mut cursor)?;
    resp.header = header(current_rev);
    Ok(resp)
}

fn read_branch(
    view: &dyn ReadView,
    t: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
) -> Result<TxnResponse, EtcdError> {
    let ok = path[*cursor];
    *cursor += 1;
    let mut responses = Vec::new();
    for op in if ok { &t.success } else { &t.failure } {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                Some(response_op::Response::ResponseRange(range(view, r)?))
            }
            Some(request_op::Request::RequestTxn(n)) => Some(response_op::Response::ResponseTxn(
                read_branch(view, n, path, cursor)?,
            )),
            _ => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: Some(ResponseHeader::default()),
        succeeded: ok,
        responses,
    })
}

/// Runs a txn that writes, inside one MVCC write txn: all its writes share one revision.
pub fn write_txn(
    txn: &mut WriteTxn<'_>,
    t: &TxnRequest,
    path: &[bool],
    begin_rev: i64,
    lease_exists: LeaseCheck<'_>,
) -> Result<TxnResponse, EtcdError> {
    let mut cursor = 0;
    let mut changed = false;
    write_branch(
        txn,
        t,
        path,
        &mut cursor,
        begin_rev,
        &mut changed,
        lease_exists,
    )
}

fn write_branch(
    txn: &mut WriteTxn<'_>,
    t: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
    begin_rev: i64,
    changed: &mut bool,
    lease_exists: LeaseCheck<'_>,
) -> Result<TxnResponse, EtcdError> {
    let ok = path[*cursor];
    *cursor += 1;
    let mut responses = Vec::new();
    for op in if ok { &t.success } else { &t.failure } {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                Some(response_op::Response::ResponseRange(range(&*txn, r)?))
            }
            Some(request_op::Request::RequestPut(p)) => {
                let resp = put(txn, begin_rev, p, lease_exists)?;
                *changed = true;
                Some(response_op::Response::ResponsePut(resp))
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                let resp = delete_range(txn, begin_rev, *changed, d);
                if resp.deleted > 0 {
                    *changed = true;
                }
                Some(response_op::Response::ResponseDeleteRange(resp))
            }
            Some(request_op::Request::RequestTxn(n)) => Some(response_op::Response::ResponseTxn(
                write_branch(txn, n, path, cursor, begin_rev, changed, lease_exists)?,
            )),
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: Some(ResponseHeader::default()),
        succeeded: ok,
        responses,
    })
}
