//! etcd's KV semantics over an MVCC view: Range (limit, sort, filters), Put (prev_kv,
//! ignore_value, ignore_lease), DeleteRange and Txn (compares, branches, nested txns).
//!
//! Shared by the applier (writes, inside one MVCC write txn) and by the read path (ranges and
//! read-only txns over a read view), so both compute exactly what etcd's applier computes.

use crate::error::EtcdError;
use crate::mvcc::{KeyValue, MvccError, RangeOptions, RangeResult, Store, WriteTxn};
use crate::proto::etcdserverpb::{
    compare, range_request, request_op, response_op, Compare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
    ResponseOp, TxnRequest, TxnResponse,
};
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

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// etcd's Range: fetch (limit+1 unless sorting or filtering), filter, sort, cut to limit.
pub fn range(view: &dyn ReadView, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    use range_request::{SortOrder, SortTarget};
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let mut limit = r.limit;
    if r.sort_order != SortOrder::None as i32 || filtered {
        limit = 0;
    }
    if limit > 0 {
        limit += 1;
    }
    let opts = RangeOptions {
        limit: limit.max(0) as usize,
        rev: r.revision,
        count_only: r.count_only,
    };
    let rr = view.range(&r.key, &r.range_end, &opts).map_err(mvcc_err)?;
    let mut kvs = rr.kvs;
    if filtered {
        kvs.retain(|kv| {
            !(r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision
                || r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision
                || r.max_create_revision != 0 && kv.create_revision > r.max_create_revision
                || r.min_create_revision != 0 && kv.create_revision < r.min_create_revision)
        });
    }
    let mut order = SortOrder::try_from(r.sort_order).map_err(|_| EtcdError::InvalidSortOption)?;
    let target = SortTarget::try_from(r.sort_target).map_err(|_| EtcdError::InvalidSortOption)?;
    if target != SortTarget::Key && order == SortOrder::None {
        // The store returns keys ascending; any other target needs an explicit sort.
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        kvs.sort_by(|a, b| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        });
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: header(rr.rev),
        kvs: kvs.into_iter().map(to_pb).collect(),
        more,
        count: rr.count as i64,
    })
}

/// The live value of one key in `view`, if any.
fn get(view: &dyn ReadView, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
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

/// Evaluates one compare as etcd does: every key in the range must satisfy it; a missing key
/// compares as zero revisions/version/lease, and a VALUE compare on a missing key is false.
fn compare_holds(view: &dyn ReadView, c: &Compare) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let rr = match view.range(&c.key, &c.range_end, &RangeOptions::default()) {
        Ok(rr) => rr,
        Err(_) => return false,
    };
    let Ok(target) = CompareTarget::try_from(c.target) else {
        return false;
    };
    let check = |kv: &KeyValue| -> bool {
        let ord = match target {
            CompareTarget::Value => {
                let want: &[u8] = match &c.target_union {
                    Some(TargetUnion::Value(v)) => v,
                    _ => &[],
                };
                kv.value.as_slice().cmp(want)
            }
            CompareTarget::Version
            | CompareTarget::Create
            | CompareTarget::Mod
            | CompareTarget::Lease => {
                let (have, want) = match (target, &c.target_union) {
                    (CompareTarget::Version, Some(TargetUnion::Version(v))) => (kv.version, *v),
                    (CompareTarget::Version, _) => (kv.version, 0),
                    (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => {
                        (kv.create_revision, *v)
                    }
                    (CompareTarget::Create, _) => (kv.create_revision, 0),
                    (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => {
                        (kv.mod_revision, *v)
                    }
                    (CompareTarget::Mod, _) => (kv.mod_revision, 0),
                    (_, Some(TargetUnion::Lease(v))) => (kv.lease, *v),
                    (_, _) => (kv.lease, 0),
                };
                have.cmp(&want)
            }
        };
        match CompareResult::try_from(c.result) {
            Ok(CompareResult::Equal) => ord.is_eq(),
            Ok(CompareResult::NotEqual) => ord.is_ne(),
            Ok(CompareResult::Greater) => ord.is_gt(),
            Ok(CompareResult::Less) => ord.is_lt(),
            Err(_) => true,
        }
    };
    if rr.kvs.is_empty() {
        if target == CompareTarget::Value {
            return false;
        }
        return check(&KeyValue::default());
    }
    rr.kvs.iter().all(check)
}

/// The branch taken by `t` and, depth-first, by every nested txn on that branch — all decided
/// before any op runs, as etcd does.
pub fn txn_path(view: &dyn ReadView, t: &TxnRequest) -> Vec<bool> {
    let mut path = Vec::new();
    fill_path(view, t, &mut path);
    path
}

fn fill_path(view: &dyn ReadView, t: &TxnRequest, path: &mut Vec<bool>) {
    let ok = t.compare.iter().all(|c| compare_holds(view, c));
    path.push(ok);
    for op in if ok { &t.success } else { &t.failure } {
        if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
            fill_path(view, nested, path);
        }
    }
}

/// Whether no op on either branch (recursively) writes: such a txn is served as a read.
pub fn is_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => true,
            Some(request_op::Request::RequestTxn(n)) => is_read_only(n),
            _ => false,
        })
}

/// Whether every range on either branch asked for serializable reads.
pub fn is_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => r.serializable,
            Some(request_op::Request::RequestTxn(n)) => is_serializable(n),
            _ => true,
        })
}

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
