//! The KV API against a real single-member ferrocd, through the `etcd-client` crate.
//! Every assertion checks a revision, a version, a value or an exact error.

mod common;

use common::{grpc_status, Member};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tonic::Code;

fn assert_err(e: etcd_client::Error, code: Code, msg: &str) {
    let s = grpc_status(e);
    assert_eq!(s.code(), code, "{s:?}");
    assert_eq!(s.message(), msg, "{s:?}");
}

async fn rev(c: &mut Client) -> i64 {
    c.get("any-key", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

#[tokio::test]
async fn revision_arithmetic() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    assert_eq!(rev(&mut c).await, 1, "a fresh store is at revision 1");

    let r = c.put("a", "1", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 2);
    let r = c.put("a", "1", None).await.unwrap();
    assert_eq!(
        r.header().unwrap().revision(),
        3,
        "a put of the same value still bumps"
    );
    let r = c.delete("a", None).await.unwrap();
    assert_eq!((r.deleted(), r.header().unwrap().revision()), (1, 4));
    let r = c.delete("a", None).await.unwrap();
    assert_eq!(
        (r.deleted(), r.header().unwrap().revision()),
        (0, 4),
        "deleting nothing does not bump"
    );

    // A txn with two puts: one revision for both.
    let t = Txn::new().and_then([TxnOp::put("x", "1", None), TxnOp::put("y", "2", None)]);
    let r = c.txn(t).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 5);
    let g = c
        .get("x", Some(GetOptions::new().with_range("z")))
        .await
        .unwrap();
    let mods: Vec<i64> = g.kvs().iter().map(|kv| kv.mod_revision()).collect();
    assert_eq!(mods, vec![5, 5]);

    // A read-only txn and a txn whose chosen branch writes nothing leave the revision alone.
    let r = c
        .txn(Txn::new().and_then([TxnOp::get("x", None)]))
        .await
        .unwrap();
    assert_eq!(r.header().unwrap().revision(), 5);
    let t = Txn::new()
        .when([Compare::value("x", CompareOp::Equal, "nope")])
        .and_then([TxnOp::put("x", "changed", None)])
        .or_else([TxnOp::get("x", None)]);
    let r = c.txn(t).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 5);
    assert_eq!(rev(&mut c).await, 5);

    // Header identity.
    let h = c.get("x", None).await.unwrap().header().unwrap().clone();
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert!(h.raft_term() >= 1);
}

#[tokio::test]
async fn versions_and_generations() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    c.put("k", "v1", None).await.unwrap(); // rev 2
    c.put("k", "v2", None).await.unwrap(); // rev 3
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 3, 2)
    );
    let d = c
        .delete("k", Some(DeleteOptions::new().with_prev_key()))
        .await
        .unwrap(); // rev 4
    assert_eq!(d.prev_kvs()[0].value(), b"v2");
    c.put("k", "v3", None).await.unwrap(); // rev 5: a new generation
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (5, 5, 1)
    );

    // Historical reads see each generation.
    let at = |r: i64| GetOptions::new().with_revision(r);
    assert_eq!(
        c.get("k", Some(at(2))).await.unwrap().kvs()[0].value(),
        b"v1"
    );
    assert_eq!(
        c.get("k", Some(at(3))).await.unwrap().kvs()[0].value(),
        b"v2"
    );
    assert!(
        c.get("k", Some(at(4))).await.unwrap().kvs().is_empty(),
        "deleted at 4"
    );
    let g = c.get("k", Some(at(4))).await.unwrap();
    assert_eq!(
        g.header().unwrap().revision(),
        5,
        "a read's header carries the current revision"
    );

    // prev_kv on put.
    let p = c
        .put("k", "v4", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(p.prev_key().unwrap().value(), b"v3");
    let p = c
        .put("fresh", "x", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert!(p.prev_key().is_none());
}

#[tokio::test]
async fn range_options() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    // rev 2..=6: a=5 b=4 c=3 d=2 e=1 (values chosen so value order is the reverse of key order)
    for (k, v) in [("a", "5"), ("b", "4"), ("c", "3"), ("d", "2"), ("e", "1")] {
        c.put(k, v, None).await.unwrap();
    }
    c.put("c", "3", None).await.unwrap(); // rev 7: c has version 2
    c.put("ab", "x", None).await.unwrap(); // rev 8

    let keys = |r: &etcd_client::GetResponse| -> Vec<String> {
        r.kvs()
            .iter()
            .map(|kv| kv.key_str().unwrap().to_string())
            .collect()
    };

    let r = c
        .get("a", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "ab"]);
    let r = c
        .get("c", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["c", "d", "e"]);
    let r = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "ab", "b", "c", "d", "e"]);
    let r = c
        .get("b", Some(GetOptions::new().with_range("d")))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["b", "c"]);

    // limit, more, count
    let r = c
        .get("", Some(GetOptions::new().with_all_keys().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "ab"]);
    assert!(r.more());
    assert_eq!(r.count(), 6);
    let r = c
        .get("", Some(GetOptions::new().with_all_keys().with_limit(6)))
        .await
        .unwrap();
    assert!(!r.more());

    // count_only and keys_only
    let r = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((r.count(), r.kvs().len()), (6, 0));
    let r = c
        .get("a", Some(GetOptions::new().with_keys_only()))
        .await
        .unwrap();
    assert_eq!(
        (r.kvs()[0].key(), r.kvs()[0].value()),
        (&b"a"[..], &b""[..])
    );

    // sorting
    let opts = |t, o| GetOptions::new().with_all_keys().with_sort(t, o);
    let r = c
        .get("", Some(opts(SortTarget::Key, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["e", "d", "c", "b", "ab", "a"]);
    let r = c
        .get("", Some(opts(SortTarget::Value, SortOrder::Ascend)))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["e", "d", "c", "b", "a", "ab"]);
    let r = c
        .get("", Some(opts(SortTarget::Mod, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(&r)[..2], ["ab", "c"]);
    let r = c
        .get(
            "",
            Some(opts(SortTarget::Create, SortOrder::Ascend).with_limit(3)),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "b", "c"]);
    assert!(r.more());
    let r = c
        .get(
            "",
            Some(opts(SortTarget::Version, SortOrder::Descend).with_limit(1)),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["c"]);

    // revision filters
    let r = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_min_mod_revision(7)),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["ab", "c"]);
    let r = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_max_mod_revision(3)),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "b"]);
    let r = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_min_create_revision(5),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["ab", "d", "e"]);
    let r = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_max_create_revision(3),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "b"]);

    // serializable and historical
    let r = c
        .get("c", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(r.kvs()[0].version(), 2);
    let r = c
        .get("", Some(GetOptions::new().with_all_keys().with_revision(4)))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["a", "b", "c"]);
}

#[tokio::test]
async fn binary_safe_keys_and_values() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let key = vec![0u8, 0xff, b'k', 0];
    let val = vec![0xffu8, 0, 0xfe, 0];
    c.put(key.clone(), val.clone(), None).await.unwrap();
    c.put(vec![0xffu8, 0xff], "top", None).await.unwrap();
    let r = c.get(key.clone(), None).await.unwrap();
    assert_eq!((r.kvs()[0].key(), r.kvs()[0].value()), (&key[..], &val[..]));
    // Prefix 0xff 0xff: etcd drops trailing 0xff bytes, so this is "from key".
    let r = c
        .get(vec![0xffu8], Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 1);
    assert_eq!(r.kvs()[0].key(), &[0xff, 0xff]);
    let r = c
        .get(vec![0u8], Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(r.count(), 2);
}

#[tokio::test]
async fn txn_compares_and_nesting() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    c.put("k", "v", None).await.unwrap(); // rev 2, version 1
    c.put("k", "v", None).await.unwrap(); // rev 3, version 2
    c.put("k2", "b", None).await.unwrap(); // rev 4

    let holds = |cmp: Compare| Txn::new().when([cmp]).and_then([TxnOp::get("k", None)]);
    let cases = [
        (Compare::value("k", CompareOp::Equal, "v"), true),
        (Compare::value("k", CompareOp::NotEqual, "v"), false),
        (Compare::value("k", CompareOp::Greater, "u"), true),
        (Compare::value("k", CompareOp::Less, "u"), false),
        (Compare::version("k", CompareOp::Equal, 2), true),
        (Compare::version("k", CompareOp::Greater, 2), false),
        (Compare::create_revision("k", CompareOp::Equal, 2), true),
        (Compare::mod_revision("k", CompareOp::Equal, 3), true),
        (Compare::mod_revision("k", CompareOp::Less, 3), false),
        (Compare::lease("k", CompareOp::Equal, 0), true),
        // Missing keys: version/create/mod/lease compare as 0; a value compare is false.
        (Compare::version("missing", CompareOp::Equal, 0), true),
        (
            Compare::create_revision("missing", CompareOp::Equal, 0),
            true,
        ),
        (Compare::value("missing", CompareOp::Equal, ""), false),
        (Compare::value("missing", CompareOp::NotEqual, "x"), false),
        // A range compare: every key in [k, k3) must hold.
        (
            Compare::version("k", CompareOp::Greater, 0).with_range("k3"),
            true,
        ),
        (
            Compare::value("k", CompareOp::Equal, "v").with_range("k3"),
            false,
        ),
    ];
    for (i, (cmp, want)) in cases.into_iter().enumerate() {
        let r = c.txn(holds(cmp)).await.unwrap();
        assert_eq!(r.succeeded(), want, "case {i}");
    }

    // Nested txn: the inner compare is decided before any op runs.
    let inner = Txn::new()
        .when([Compare::value("k2", CompareOp::Equal, "b")])
        .and_then([TxnOp::put("inner", "then", None)])
        .or_else([TxnOp::put("inner", "else", None)]);
    let outer = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v")])
        .and_then([
            TxnOp::put("k2", "changed", None),
            TxnOp::txn(inner),
            TxnOp::get("k2", None),
        ]);
    let r = c.txn(outer).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 5);
    let ops = r.op_responses();
    match &ops[1] {
        TxnOpResponse::Txn(t) => assert!(t.succeeded(), "inner compare saw the pre-txn value"),
        other => panic!("expected a txn response, got {other:?}"),
    }
    match &ops[2] {
        TxnOpResponse::Get(g) => {
            assert_eq!(
                g.kvs()[0].value(),
                b"changed",
                "a range in the txn sees the txn's own put"
            );
            assert_eq!(g.kvs()[0].mod_revision(), 5);
        }
        other => panic!("expected a get response, got {other:?}"),
    }
    assert_eq!(
        c.get("inner", None).await.unwrap().kvs()[0].value(),
        b"then"
    );
}

#[tokio::test]
async fn txn_errors() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let dup = Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("a", "2", None)]);
    assert_err(
        c.txn(dup).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    let del_put = Txn::new().and_then([
        TxnOp::delete("a", Some(DeleteOptions::new().with_prefix())),
        TxnOp::put("ab", "2", None),
    ]);
    assert_err(
        c.txn(del_put).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    let many: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("k{i}"), "v", None))
        .collect();
    assert_err(
        c.txn(Txn::new().and_then(many)).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    let ok: Vec<TxnOp> = (0..128)
        .map(|i| TxnOp::put(format!("k{i}"), "v", None))
        .collect();
    let r = c.txn(Txn::new().and_then(ok)).await.unwrap();
    assert_eq!(
        r.header().unwrap().revision(),
        2,
        "128 puts in one txn share a revision"
    );
    // A txn naming a future revision in a range fails as a whole and writes nothing.
    let t = Txn::new().and_then([
        TxnOp::put("z", "1", None),
        TxnOp::get("k1", Some(GetOptions::new().with_revision(100))),
    ]);
    assert_err(
        c.txn(t).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert!(c.get("z", None).await.unwrap().kvs().is_empty());
    assert_eq!(rev(&mut c).await, 2);
}

#[tokio::test]
async fn compaction() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    for i in 0..10 {
        c.put("k", format!("v{i}"), None).await.unwrap(); // revs 2..=11
    }
    c.put("gone", "x", None).await.unwrap(); // 12
    c.delete("gone", None).await.unwrap(); // 13
    let r = c.compact(6, None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 13);

    // The compacted revision itself is still readable; below it is not.
    let g = c
        .get("k", Some(GetOptions::new().with_revision(6)))
        .await
        .unwrap();
    assert_eq!(g.kvs()[0].value(), b"v4");
    assert_err(
        c.get("k", Some(GetOptions::new().with_revision(5)))
            .await
            .unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_err(
        c.get("k", Some(GetOptions::new().with_revision(14)))
            .await
            .unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert_err(
        c.compact(6, None).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_err(
        c.compact(100, None).await.unwrap_err(),
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );

    // Physical compaction past a tombstone: the deleted key's history goes, live data stays.
    c.compact(13, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let g = c
        .get("k", Some(GetOptions::new().with_revision(13)))
        .await
        .unwrap();
    assert_eq!(g.kvs()[0].value(), b"v9");
    assert_eq!(g.kvs()[0].version(), 10);
    assert!(c
        .get("gone", Some(GetOptions::new().with_revision(13)))
        .await
        .unwrap()
        .kvs()
        .is_empty());
    assert_eq!(
        c.put("k", "after", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        14
    );
}

#[tokio::test]
async fn request_errors() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    assert_err(
        c.put("", "v", None).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_err(
        c.get("", None).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_err(
        c.delete("", None).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_err(
        c.put("k", "v", Some(PutOptions::new().with_lease(12345)))
            .await
            .unwrap_err(),
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert_err(
        c.put("nokey", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_err(
        c.put("k", "v", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: value is provided",
    );
    // ignore_value keeps the value; without a lease it detaches none (there is none).
    c.put("k", "kept", None).await.unwrap();
    let r = c
        .put(
            "k",
            "",
            Some(PutOptions::new().with_ignore_value().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(r.prev_key().unwrap().value(), b"kept");
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.value(), kv.version()), (&b"kept"[..], 2));

    // Sizes: 1 MiB values are accepted, 1.6 MiB refused with etcd's error.
    let one_mib = vec![b'x'; 1024 * 1024];
    c.put("big", one_mib.clone(), None).await.unwrap();
    assert_eq!(
        c.get("big", None).await.unwrap().kvs()[0].value().len(),
        one_mib.len()
    );
    let too_big = vec![b'x'; 1024 * 1024 * 16 / 10];
    assert_err(
        c.put("big", too_big, None).await.unwrap_err(),
        Code::InvalidArgument,
        "etcdserver: request is too large",
    );
    assert_eq!(
        c.get("big", None).await.unwrap().kvs()[0].value().len(),
        one_mib.len(),
        "data intact"
    );
    // Over the gRPC receive limit (--max-request-bytes + 512 KiB = 2 MiB): grpc-go's error,
    // as etcd sends it. The put is 2.5 MiB of value plus 10 bytes of framing fields.
    let over_grpc = vec![b'x'; 2560 * 1024];
    assert_err(
        c.put("big", over_grpc, None).await.unwrap_err(),
        Code::ResourceExhausted,
        "grpc: received message larger than max (2621450 vs. 2097152)",
    );
    // The same limit on a stream: a watch whose create request is too large.
    let e = match c.watch(vec![b'k'; 2200 * 1024], None).await {
        Err(e) => e,
        Ok(mut stream) => stream.message().await.unwrap_err(),
    };
    let (code, msg) = common::code_and_message(e);
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(
        msg.starts_with("grpc: received message larger than max (")
            && msg.ends_with(" vs. 2097152)"),
        "{msg}"
    );
    assert_eq!(
        c.get("big", None).await.unwrap().kvs()[0].value().len(),
        one_mib.len(),
        "data intact"
    );
}
