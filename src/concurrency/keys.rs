//! The keys and requests the recipes are made of, as etcd's client library builds them
//! (`name/<lease hex>` keys, "first created" and "last created before" ranges, create-revision
//! compares), so the txns we apply are the ones etcd would apply.

use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RangeResponse, RequestOp, TxnResponse,
};

/// `name + "/"`: every waiter's key for `name` lives under it.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// A waiter's key: the prefix and its lease id in lower-case hex, as Go's `%x` prints an
/// int64 (so a lock can be found again from its lease, and re-locking with the same lease
/// reuses it).
pub fn own_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    k.extend_from_slice(hex.as_bytes());
    k
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`): the last
/// byte below 0xff incremented, trailing 0xff bytes dropped; all-0xff means "to the end".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The oldest key under `prefix` (clientv3's `WithFirstCreate`): the current holder.
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// The newest key under `prefix` created at or before `max_create_revision` (clientv3's
/// `WithLastCreate` + `WithMaxCreateRev`): the waiter just ahead of us.
pub fn last_created_up_to(prefix: &[u8], max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

/// A plain linearizable get of one key.
pub fn get(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

/// `create_revision(key) == rev` (0 = the key does not exist).
pub fn create_revision_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
    }
}

/// A txn put of `key` attached to `lease`.
pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

/// A txn range.
pub fn range_op(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(r)),
    }
}

/// A txn delete of one key.
pub fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// The range result at `index` of a txn's chosen branch.
pub fn range_result(resp: &TxnResponse, index: usize) -> Option<&RangeResponse> {
    match resp.responses.get(index)?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => Some(r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_etcds() {
        assert_eq!(prefix(b"lk"), b"lk/");
        assert_eq!(own_key(b"lk/", 0x694d7a2b3c1e5f07), b"lk/694d7a2b3c1e5f07");
        assert_eq!(own_key(b"lk/", 10), b"lk/a");
        assert_eq!(own_key(b"lk/", -1), b"lk/-1");
        assert_eq!(prefix_end(b"lk/"), b"lk0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
