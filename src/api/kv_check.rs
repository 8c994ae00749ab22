//! Request validation done before anything is proposed, exactly as etcd's gRPC layer does it:
//! empty keys, ignore_value/ignore_lease misuse, sort options, txn size and duplicate keys.

use std::collections::HashSet;

use crate::error::EtcdError;
use crate::proto::etcdserverpb::{
    range_request, request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// etcd's checkRangeRequest.
pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if range_request::SortOrder::try_from(r.sort_order).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    if range_request::SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

/// etcd's checkPutRequest.
pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// etcd's checkDeleteRequest.
pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// etcd's checkTxnRequest plus its duplicate-key check.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(r, max_txn_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(p)) => check_put(p),
        Some(request_op::Request::RequestDeleteRange(d)) => check_delete(d),
        Some(request_op::Request::RequestTxn(t)) => check_txn_ops(t, max_txn_ops),
        None => Ok(()),
    }
}

/// A deleted key range, with etcd's range_end conventions (empty = one key, "\0" = to the end).
struct Deleted {
    key: Vec<u8>,
    end: Vec<u8>,
}

impl Deleted {
    fn contains(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            return self.key == k;
        }
        if self.end == [0] {
            return k >= self.key.as_slice();
        }
        k >= self.key.as_slice() && k < self.end.as_slice()
    }
}

/// Two puts of one key, or a put of a key deleted on the same branch, is an error; the two
/// branches of a nested txn may name the same keys (only one runs).
fn check_intervals(ops: &[RequestOp]) -> Result<(), EtcdError> {
    intervals(ops).map(|_| ())
}

fn intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Deleted {
                key: d.key.clone(),
                end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    let hits = |dels: &[Deleted], k: &[u8]| dels.iter().any(|d| d.contains(k));
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
            if hits(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || hits(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.into(),
                    range_end: end.into(),
                    ..Default::default()
                },
            )),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    #[test]
    fn duplicate_puts_are_refused() {
        let t = TxnRequest {
            compare: vec![],
            success: vec![put("a"), put("a")],
            failure: vec![],
        };
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn put_inside_deleted_range_is_refused() {
        let t = TxnRequest {
            compare: vec![],
            success: vec![del("a", "c"), put("b")],
            failure: vec![],
        };
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
        let t = TxnRequest {
            compare: vec![],
            success: vec![del("a", "c"), put("c")],
            failure: vec![],
        };
        assert_eq!(check_txn(&t, 128), Ok(()));
    }

    #[test]
    fn branches_may_share_keys() {
        let t = TxnRequest {
            compare: vec![],
            success: vec![put("a")],
            failure: vec![put("a")],
        };
        assert_eq!(check_txn(&t, 128), Ok(()));
        let nested = TxnRequest {
            compare: vec![],
            success: vec![txn(vec![put("x")], vec![put("x")])],
            failure: vec![],
        };
        assert_eq!(check_txn(&nested, 128), Ok(()));
        let clash = TxnRequest {
            compare: vec![],
            success: vec![txn(vec![put("x")], vec![]), put("x")],
            failure: vec![],
        };
        assert_eq!(check_txn(&clash, 128), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn op_limit_and_empty_keys() {
        let t = TxnRequest {
            compare: vec![],
            success: (0..129).map(|i| put(&i.to_string())).collect(),
            failure: vec![],
        };
        assert_eq!(check_txn(&t, 128), Err(EtcdError::TooManyOps));
        let t = TxnRequest {
            compare: vec![],
            success: vec![put("")],
            failure: vec![],
        };
        assert_eq!(check_txn(&t, 128), Err(EtcdError::EmptyKey));
        let bad_sort = RangeRequest {
            key: b"a".to_vec(),
            sort_order: 7,
            ..Default::default()
        };
        assert_eq!(check_range(&bad_sort), Err(EtcdError::InvalidSortOption));
        let p = PutRequest {
            key: b"a".to_vec(),
            value: b"x".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(check_put(&p), Err(EtcdError::ValueProvided));
        let p = PutRequest {
            key: b"a".to_vec(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(check_put(&p), Err(EtcdError::LeaseProvided));
    }
}
