//! The KV semantics against etcd 3.5's behaviour, over a real store: response revisions,
//! range options, put/delete options, compares on present and missing keys, nested txns and
//! the pre-flight checks.

use std::sync::Arc;

use super::*;
use crate::backend::{Backend, BackendOptions};
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, TxnRequest, TxnResponse,
};

fn fresh() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let backend = Arc::new(Backend::open(tmp.path(), BackendOptions::default()).unwrap());
    (tmp, Store::open(backend).unwrap().0)
}

const NO_LEASES: &dyn Fn(i64) -> bool = &|_| false;

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

/// Applies one Put as the applier does; returns its response.
fn do_put(s: &mut Store, p: PutRequest, leases: LeaseCheck<'_>) -> Result<PutResponse, EtcdError> {
    let begin = s.current_revision();
    let mut t = s.write(0);
    let r = put(&mut t, begin, &p, leases);
    t.commit().unwrap();
    r
}

fn range_req(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

fn cmp(key: &str, target: CompareTarget, result: CompareResult, with: TargetUnion) -> Compare {
    Compare {
        key: key.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(with),
        ..Default::default()
    }
}

fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(key, value))),
    }
}

fn op_range(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range_req(key, ""))),
    }
}

/// Runs a writing txn as the applier does; returns (response, revision after).
fn do_txn(s: &mut Store, t: &TxnRequest) -> Result<(TxnResponse, i64), EtcdError> {
    let begin = s.current_revision();
    let compact = s.compact_revision();
    let mut w = s.write(0);
    let path = txn_path(&w, t);
    check_txn(&w, t, &path, begin, compact, NO_LEASES)?;
    let resp = write_txn(&mut w, t, &path, begin, NO_LEASES)?;
    let res = w.commit().unwrap();
    Ok((resp, res.rev))
}

#[test]
fn put_revisions_prev_kv_and_ignore_options() {
    let (_t, mut s) = fresh();
    let r = do_put(&mut s, put_req("a", "1"), NO_LEASES).unwrap();
    assert_eq!(r.header.unwrap().revision, 2);
    assert!(r.prev_kv.is_none());
    let r = do_put(
        &mut s,
        PutRequest {
            prev_kv: true,
            ..put_req("a", "2")
        },
        NO_LEASES,
    )
    .unwrap();
    let prev = r.prev_kv.unwrap();
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], 2));
    // ignore_value keeps the value; on a missing key it is etcd's "key not found".
    let keep = PutRequest {
        key: b"a".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    do_put(&mut s, keep.clone(), NO_LEASES).unwrap();
    let got = range(&s, &range_req("a", "")).unwrap();
    assert_eq!(got.kvs[0].value, b"2");
    assert_eq!((got.kvs[0].version, got.kvs[0].mod_revision), (3, 4));
    let missing = PutRequest {
        key: b"zz".to_vec(),
        ..keep
    };
    assert_eq!(
        do_put(&mut s, missing, NO_LEASES),
        Err(EtcdError::KeyNotFound)
    );
    // A lease that does not exist is refused; one that does is attached.
    let leased = PutRequest {
        lease: 7,
        ..put_req("l", "x")
    };
    assert_eq!(
        do_put(&mut s, leased.clone(), NO_LEASES),
        Err(EtcdError::LeaseNotFound)
    );
    do_put(&mut s, leased, &|id| id == 7).unwrap();
    assert_eq!(range(&s, &range_req("l", "")).unwrap().kvs[0].lease, 7);
}

#[test]
fn range_limit_more_count_sort_and_filters() {
    let (_t, mut s) = fresh();
    for (k, v) in [("b", "3"), ("a", "2"), ("c", "1"), ("d", "0")] {
        do_put(&mut s, put_req(k, v), NO_LEASES).unwrap();
    }
    do_put(&mut s, put_req("a", "9"), NO_LEASES).unwrap(); // a: version 2, mod 6
    let all = range(&s, &range_req("a", "\0")).unwrap();
    assert_eq!(keys(&all), ["a", "b", "c", "d"]);
    assert_eq!((all.count, all.more), (4, false));
    assert_eq!(all.header.unwrap().revision, 6);

    let limited = range(
        &s,
        &RangeRequest {
            limit: 2,
            ..range_req("a", "\0")
        },
    )
    .unwrap();
    assert_eq!(keys(&limited), ["a", "b"]);
    assert_eq!((limited.count, limited.more), (4, true));

    let by_value_desc = range(
        &s,
        &RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Value as i32,
            limit: 3,
            ..range_req("a", "\0")
        },
    )
    .unwrap();
    assert_eq!(keys(&by_value_desc), ["a", "b", "c"]);
    assert!(by_value_desc.more);
    // A target other than KEY with order NONE sorts ascending, as etcd does.
    let by_mod = range(
        &s,
        &RangeRequest {
            sort_target: SortTarget::Mod as i32,
            ..range_req("a", "\0")
        },
    )
    .unwrap();
    assert_eq!(keys(&by_mod), ["b", "c", "d", "a"]);

    let filtered = range(
        &s,
        &RangeRequest {
            min_create_revision: 4, // not b (2) nor a (3)
            max_mod_revision: 5,    // not a (6)
            ..range_req("a", "\0")
        },
    )
    .unwrap();
    assert_eq!(keys(&filtered), ["c", "d"]);
    let filtered = range(
        &s,
        &RangeRequest {
            min_mod_revision: 4,
            max_create_revision: 3,
            ..range_req("a", "\0")
        },
    )
    .unwrap();
    assert_eq!(keys(&filtered), ["a"]);

    let keys_only = range(
        &s,
        &RangeRequest {
            keys_only: true,
            ..range_req("a", "")
        },
    )
    .unwrap();
    assert!(keys_only.kvs[0].value.is_empty());
    let count_only = range(
        &s,
        &RangeRequest {
            count_only: true,
            ..range_req("a", "\0")
        },
    )
    .unwrap();
    assert_eq!((count_only.count, count_only.kvs.len()), (4, 0));

    // Historical reads and etcd's errors.
    let old = range(
        &s,
        &RangeRequest {
            revision: 2,
            ..range_req("a", "\0")
        },
    )
    .unwrap();
    assert_eq!(keys(&old), ["b"]);
    assert_eq!(
        old.header.unwrap().revision,
        6,
        "header is the current revision"
    );
    let future = RangeRequest {
        revision: 7,
        ..range_req("a", "")
    };
    assert_eq!(range(&s, &future), Err(EtcdError::FutureRev));
    let bad_sort = RangeRequest {
        sort_order: 9,
        ..range_req("a", "")
    };
    assert_eq!(range(&s, &bad_sort), Err(EtcdError::InvalidSortOption));
}

#[test]
fn delete_range_revisions_and_prev_kvs() {
    let (_t, mut s) = fresh();
    for k in ["a", "b", "c"] {
        do_put(&mut s, put_req(k, "v"), NO_LEASES).unwrap();
    }
    let begin = s.current_revision();
    let mut t = s.write(0);
    let r = delete_range(
        &mut t,
        begin,
        false,
        &DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            prev_kv: true,
        },
    );
    t.commit().unwrap();
    assert_eq!((r.deleted, r.header.unwrap().revision), (2, begin + 1));
    assert_eq!(r.prev_kvs.len(), 2);
    // Deleting nothing does not move the revision.
    let begin = s.current_revision();
    let mut t = s.write(0);
    let r = delete_range(
        &mut t,
        begin,
        false,
        &DeleteRangeRequest {
            key: b"zz".to_vec(),
            ..Default::default()
        },
    );
    t.commit().unwrap();
    assert_eq!((r.deleted, r.header.unwrap().revision), (0, begin));
    assert_eq!(s.current_revision(), begin);
}

#[test]
fn compares_on_present_and_missing_keys() {
    let (_t, mut s) = fresh();
    do_put(&mut s, put_req("k", "v1"), NO_LEASES).unwrap(); // rev 2
    let holds = |s: &Store, c: Compare| {
        txn_path(
            s,
            &TxnRequest {
                compare: vec![c],
                ..Default::default()
            },
        ) == [true]
    };
    use CompareResult::*;
    use CompareTarget::*;
    assert!(holds(
        &s,
        cmp("k", Value, Equal, TargetUnion::Value(b"v1".to_vec()))
    ));
    assert!(holds(
        &s,
        cmp("k", Value, Greater, TargetUnion::Value(b"v0".to_vec()))
    ));
    assert!(holds(&s, cmp("k", Mod, Equal, TargetUnion::ModRevision(2))));
    assert!(holds(&s, cmp("k", Version, Less, TargetUnion::Version(2))));
    assert!(!holds(
        &s,
        cmp("k", Create, NotEqual, TargetUnion::CreateRevision(2))
    ));
    // A missing key has zero revisions and version; a VALUE compare on it is false.
    assert!(holds(
        &s,
        cmp("nope", Create, Equal, TargetUnion::CreateRevision(0))
    ));
    assert!(holds(
        &s,
        cmp("nope", Version, Equal, TargetUnion::Version(0))
    ));
    assert!(!holds(
        &s,
        cmp("nope", Value, NotEqual, TargetUnion::Value(b"x".to_vec()))
    ));
    // A range compare needs every key in the range to satisfy it.
    do_put(&mut s, put_req("k2", "v2"), NO_LEASES).unwrap();
    let mut c = cmp("k", Version, Equal, TargetUnion::Version(1));
    c.range_end = b"l".to_vec();
    assert!(holds(&s, c.clone()));
    c.result = Greater as i32;
    assert!(!holds(&s, c));
}

#[test]
fn nested_txn_paths_one_revision_and_read_only_detection() {
    let (_t, mut s) = fresh();
    do_put(&mut s, put_req("k", "v"), NO_LEASES).unwrap(); // rev 2
    let inner = TxnRequest {
        compare: vec![cmp(
            "k",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b"other".to_vec()),
        )],
        success: vec![op_put("never", "x")],
        failure: vec![op_put("a", "1"), op_put("b", "2")],
    };
    let outer = TxnRequest {
        compare: vec![cmp(
            "k",
            CompareTarget::Mod,
            CompareResult::Equal,
            TargetUnion::ModRevision(2),
        )],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestTxn(inner)),
            },
            op_range("a"),
        ],
        failure: vec![],
    };
    assert_eq!(txn_path(&s, &outer), [true, false]);
    assert!(!is_read_only(&outer));
    let (resp, rev) = do_txn(&mut s, &outer).unwrap();
    assert!(resp.succeeded);
    assert_eq!(rev, 3, "every write of the txn shares one revision");
    let Some(response_op::Response::ResponseTxn(nested)) = &resp.responses[0].response else {
        panic!("nested txn response");
    };
    assert!(!nested.succeeded);
    let Some(response_op::Response::ResponseRange(r)) = &resp.responses[1].response else {
        panic!("range response");
    };
    assert_eq!(
        r.kvs[0].value, b"1",
        "a range in the txn sees its earlier writes"
    );
    assert!(range(&s, &range_req("never", "")).unwrap().kvs.is_empty());

    let reads = TxnRequest {
        success: vec![op_range("a"), op_range("b")],
        ..Default::default()
    };
    assert!(is_read_only(&reads));
    assert!(!is_serializable(&reads));
    let resp = read_only_txn(&s, &reads, s.current_revision(), s.compact_revision()).unwrap();
    assert_eq!(resp.header.unwrap().revision, 3);
    assert_eq!(resp.responses.len(), 2);
}

#[test]
fn preflight_checks_refuse_before_anything_is_written() {
    let (_t, mut s) = fresh();
    do_put(&mut s, put_req("k", "v"), NO_LEASES).unwrap();
    let future_read = TxnRequest {
        success: vec![
            op_put("written", "no"),
            RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    revision: 99,
                    ..range_req("k", "")
                })),
            },
        ],
        ..Default::default()
    };
    assert_eq!(
        do_txn(&mut s, &future_read).unwrap_err(),
        EtcdError::FutureRev
    );
    let ignore_missing = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"missing".to_vec(),
                ignore_value: true,
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert_eq!(
        do_txn(&mut s, &ignore_missing).unwrap_err(),
        EtcdError::KeyNotFound
    );
    let unknown_lease = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                lease: 5,
                ..put_req("x", "y")
            })),
        }],
        ..Default::default()
    };
    assert_eq!(
        do_txn(&mut s, &unknown_lease).unwrap_err(),
        EtcdError::LeaseNotFound
    );
    assert_eq!(s.current_revision(), 2, "nothing was written");
    assert!(range(&s, &range_req("written", "")).unwrap().kvs.is_empty());
}
