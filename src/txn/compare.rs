//! A txn's compares and the branches they choose, decided before any op runs, as etcd does.

use super::ReadView;
use crate::mvcc::{KeyValue, RangeOptions};
use crate::proto::etcdserverpb::{compare, request_op, Compare, TxnRequest};

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
