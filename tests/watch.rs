//! Watch against a real single-member ferrocd: etcdctl's exact outputs, etcd-client's exact
//! events, etcd's protocol edges over raw gRPC (checked against a real etcd where 3.4 and 3.5
//! agree), and the delivery guarantees under load: ordered, unique, atomic per revision, no
//! gaps, correct `prev_kv`, filters honoured, bounded memory for a stream that stops reading,
//! and resuming after a restart.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{etcdctl_bin, http_get, ok, Member};
use etcd_client::{EventType, Txn, TxnOp, WatchFilterType, WatchOptions};
use ferrocd::proto::etcdserverpb::kv_client::KvClient;
use ferrocd::proto::etcdserverpb::request_op::Request as Op;
use ferrocd::proto::etcdserverpb::watch_client::WatchClient;
use ferrocd::proto::etcdserverpb::watch_create_request::FilterType;
use ferrocd::proto::etcdserverpb::watch_request::RequestUnion;
use ferrocd::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use ferrocd::proto::mvccpb;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------------------
// helpers

/// `etcdctl watch ...` running in the background; stdout lines arrive on a channel.
struct CtlWatch {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl CtlWatch {
    fn spawn(m: &Member, args: &[&str]) -> CtlWatch {
        let mut child = Command::new(etcdctl_bin())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", m.endpoint()))
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcdctl watch");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CtlWatch { child, lines }
    }

    /// The next `n` lines (panics after 10 s with what arrived).
    fn take(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(l),
                Err(_) => panic!("etcdctl watch printed {} of {n} lines: {got:?}", got.len()),
            }
        }
        got
    }

    /// Asserts nothing more is printed for a while.
    fn quiet(&self) {
        if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
            panic!("unexpected extra output: {l:?}");
        }
    }
}

impl Drop for CtlWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(String::from).collect()
}

/// A metric's value from `/metrics`.
fn metric(m: &Member, name: &str) -> f64 {
    let (code, body) = http_get(&m.endpoint(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().expect("numeric metric"))
        })
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

/// Waits until a metric has a value (async: the client's connections keep running).
async fn wait_metric(m: &Member, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(m, name);
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {v}, want {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw gRPC watch stream (full access to every response field).
struct Raw {
    tx: tokio::sync::mpsc::Sender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

fn create_req(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(c)),
    }
}

fn watch_key(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        start_revision: start,
        ..WatchCreateRequest::default()
    }
}

fn cancel_req(watch_id: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })),
    }
}

fn progress_req() -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
    }
}

async fn channel(m: &Member) -> Channel {
    Channel::from_shared(m.client_url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

impl Raw {
    /// Opens a stream; the first request goes out before waiting for the response headers,
    /// as gRPC-Go clients do (etcd sends headers only with its first response).
    async fn open(ch: Channel, first: WatchRequest, hasleader: bool) -> Result<Raw, tonic::Status> {
        let mut client = WatchClient::new(ch).max_decoding_message_size(64 * 1024 * 1024);
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tx.send(first).await.expect("send");
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        if hasleader {
            req.metadata_mut()
                .insert("hasleader", "true".parse().expect("metadata"));
        }
        let rx = client.watch(req).await?.into_inner();
        Ok(Raw { tx, rx })
    }

    async fn send(&self, r: WatchRequest) {
        self.tx.send(r).await.expect("send watch request");
    }

    async fn next(&mut self) -> WatchResponse {
        match tokio::time::timeout(Duration::from_secs(10), self.rx.message()).await {
            Ok(Ok(Some(r))) => r,
            other => panic!("no watch response: {other:?}"),
        }
    }

    async fn quiet(&mut self) {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), self.rx.message()).await {
            panic!("unexpected response: {r:?}");
        }
    }
}

/// (watch_id, header revision, created, canceled, compact_revision, cancel_reason, #events)
type Shape = (i64, i64, bool, bool, i64, String, usize);

fn shape(r: &WatchResponse) -> Shape {
    (
        r.watch_id,
        r.header.as_ref().map(|h| h.revision).unwrap_or(-99),
        r.created,
        r.canceled,
        r.compact_revision,
        r.cancel_reason.clone(),
        r.events.len(),
    )
}

fn created(id: i64, rev: i64) -> Shape {
    (id, rev, true, false, 0, String::new(), 0)
}

async fn kv(m: &Member) -> KvClient<Channel> {
    KvClient::new(channel(m).await)
}

async fn put(kv: &mut KvClient<Channel>, k: &str, v: &str) -> i64 {
    kv.put(PutRequest {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        ..PutRequest::default()
    })
    .await
    .expect("put")
    .into_inner()
    .header
    .expect("header")
    .revision
}

// ---------------------------------------------------------------------------------------------
// etcdctl

/// The writes both etcdctl tests make (revisions 2..=7).
async fn etcdctl_writes(m: &Member) {
    ok(m.etcdctl(&["put", "foo", "bar"])); // 2
    ok(m.etcdctl(&["put", "fob", "x"])); // 3
    ok(m.etcdctl(&["put", "foo", "baz"])); // 4
    ok(m.etcdctl(&["del", "foo"])); // 5
    let mut c = m.client().await;
    let t = c
        .txn(Txn::new().and_then([TxnOp::put("foo", "1", None), TxnOp::put("fob", "2", None)]))
        .await
        .expect("txn");
    assert_eq!(t.header().expect("header").revision(), 6);
    assert_eq!(ok(m.etcdctl(&["del", "--prefix", "fo"])), "2\n"); // 7: fob, foo
}

/// What etcdctl prints for the writes above, per watch (verified against etcd 3.4.23).
fn expected_foo() -> Vec<String> {
    lines("PUT\nfoo\nbar\nPUT\nfoo\nbaz\nDELETE\nfoo\n\nPUT\nfoo\n1\nDELETE\nfoo\n\n")
}

fn expected_prefix_fo() -> Vec<String> {
    lines(
        "PUT\nfoo\nbar\nPUT\nfob\nx\nPUT\nfoo\nbaz\nDELETE\nfoo\n\nPUT\nfoo\n1\nPUT\nfob\n2\n\
         DELETE\nfob\n\nDELETE\nfoo\n\n",
    )
}

/// `--prev-kv` prints the previous key-value before the event's (none for a creation).
fn expected_prev_kv_foo() -> Vec<String> {
    lines(
        "PUT\nfoo\nbar\nPUT\nfoo\nbar\nfoo\nbaz\nDELETE\nfoo\nbaz\nfoo\n\nPUT\nfoo\n1\n\
         DELETE\nfoo\n1\nfoo\n\n",
    )
}

#[tokio::test]
async fn etcdctl_watch_live_outputs() {
    let m = Member::start(&[]);
    let w_key = CtlWatch::spawn(&m, &["foo"]);
    let w_prefix = CtlWatch::spawn(&m, &["--prefix", "fo"]);
    let w_prev = CtlWatch::spawn(&m, &["--prev-kv", "foo"]);
    let w_range = CtlWatch::spawn(&m, &["fob", "fop"]);
    wait_metric(&m, "etcd_debugging_mvcc_watcher_total", 4.0).await;
    etcdctl_writes(&m).await;
    assert_eq!(w_key.take(15), expected_foo());
    assert_eq!(w_prefix.take(24), expected_prefix_fo());
    assert_eq!(w_prev.take(21), expected_prev_kv_foo());
    // [fob, fop) sees the same as the prefix here
    assert_eq!(w_range.take(24), expected_prefix_fo());
    for w in [&w_key, &w_prefix, &w_prev, &w_range] {
        w.quiet();
    }
}

#[tokio::test]
async fn etcdctl_watch_rev_replays_history() {
    let m = Member::start(&[]);
    etcdctl_writes(&m).await;
    let w = CtlWatch::spawn(&m, &["--rev", "2", "foo"]);
    assert_eq!(w.take(15), expected_foo());
    w.quiet();
    let w = CtlWatch::spawn(&m, &["--rev=2", "--prefix", "fo"]);
    assert_eq!(w.take(24), expected_prefix_fo());
    w.quiet();
    let w = CtlWatch::spawn(&m, &["--rev", "2", "--prev-kv", "foo"]);
    assert_eq!(w.take(21), expected_prev_kv_foo());
    w.quiet();
    // from the middle: the txn revision, then the range delete, then live
    let w = CtlWatch::spawn(&m, &["--rev", "6", "--prefix", "fo"]);
    assert_eq!(
        w.take(12),
        lines("PUT\nfoo\n1\nPUT\nfob\n2\nDELETE\nfob\n\nDELETE\nfoo\n\n")
    );
    ok(m.etcdctl(&["put", "fox", "live"]));
    assert_eq!(w.take(3), lines("PUT\nfox\nlive"));
    w.quiet();
}

#[test]
fn etcdctl_watch_compacted_revision_fails_like_etcd() {
    let m = Member::start(&[]);
    for v in ["a", "b", "c"] {
        ok(m.etcdctl(&["put", "k", v])); // 2, 3, 4
    }
    assert_eq!(ok(m.etcdctl(&["compact", "3"])), "compacted revision 3\n");
    let out = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", m.endpoint()))
        .args(["watch", "--rev", "2", "k"])
        .output()
        .expect("run etcdctl");
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n\
         Error: watch is canceled by the server\n"
    );
    // at the compaction revision itself the history is still there
    let w = CtlWatch::spawn(&m, &["--rev", "3", "k"]);
    assert_eq!(w.take(6), lines("PUT\nk\nb\nPUT\nk\nc"));
    w.quiet();
}

// ---------------------------------------------------------------------------------------------
// etcd-client

/// (type, key, value, create_revision, mod_revision, version, prev value)
type Ev = (EventType, String, String, i64, i64, i64, Option<String>);

fn client_events(r: &etcd_client::WatchResponse) -> Vec<Ev> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("kv");
            assert_eq!(kv.lease(), 0);
            (
                e.event_type(),
                kv.key_str().expect("utf8").to_string(),
                kv.value_str().expect("utf8").to_string(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                e.prev_kv()
                    .map(|p| p.value_str().expect("utf8").to_string()),
            )
        })
        .collect()
}

fn put_ev(k: &str, v: &str, create: i64, rev: i64, version: i64, prev: Option<&str>) -> Ev {
    (
        EventType::Put,
        k.into(),
        v.into(),
        create,
        rev,
        version,
        prev.map(String::from),
    )
}

fn del_ev(k: &str, rev: i64, prev: Option<&str>) -> Ev {
    (
        EventType::Delete,
        k.into(),
        String::new(),
        0,
        rev,
        0,
        prev.map(String::from),
    )
}

async fn next_client(s: &mut etcd_client::WatchStream) -> etcd_client::WatchResponse {
    match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
        Ok(Ok(Some(r))) => r,
        other => panic!("no watch response: {other:?}"),
    }
}

/// The responses of one watch until `n` revisions arrived: (header revision, events).
async fn client_revisions(s: &mut etcd_client::WatchStream, n: usize) -> Vec<(i64, Vec<Ev>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = next_client(s).await;
        assert!(!r.created() && !r.canceled());
        assert!(!r.events().is_empty(), "a response without events: {r:?}");
        out.push((r.header().expect("header").revision(), client_events(&r)));
    }
    out
}

#[tokio::test]
async fn client_watches_see_exact_events() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let mut w_key = c.watch("foo", None).await.expect("watch");
    let mut w_prefix = c
        .watch(
            "fo",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("watch");
    let mut w_from = c
        .watch("fob", Some(WatchOptions::new().with_from_key()))
        .await
        .expect("watch");
    let mut w_all = c
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_filters([WatchFilterType::NoPut])
                    .with_prev_key(),
            ),
        )
        .await
        .expect("watch");
    let mut w_nodel = c
        .watch(
            "f",
            Some(
                WatchOptions::new()
                    .with_range("g")
                    .with_filters([WatchFilterType::NoDelete]),
            ),
        )
        .await
        .expect("watch");
    for w in [
        &mut w_key,
        &mut w_prefix,
        &mut w_from,
        &mut w_all,
        &mut w_nodel,
    ] {
        let r = next_client(w).await;
        assert!(r.created());
        assert_eq!(r.watch_id(), 0);
        assert_eq!(r.header().expect("header").revision(), 1);
    }

    assert_eq!(
        c.put("foo", "bar", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        2
    );
    assert_eq!(
        c.put("fob", "x", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        3
    );
    let t = c
        .txn(Txn::new().and_then([
            TxnOp::put("foo", "baz", None),
            TxnOp::put("fob", "y", None),
            TxnOp::put("zz", "1", None),
        ]))
        .await
        .unwrap();
    assert_eq!(t.header().unwrap().revision(), 4);
    assert_eq!(
        c.delete("foo", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        5
    );
    let d = c
        .delete("f", Some(etcd_client::DeleteOptions::new().with_range("g")))
        .await
        .unwrap();
    assert_eq!((d.deleted(), d.header().unwrap().revision()), (1, 6));
    // a delete of nothing makes no revision and no event
    let d = c.delete("nothing", None).await.unwrap();
    assert_eq!((d.deleted(), d.header().unwrap().revision()), (0, 6));
    assert_eq!(
        c.put("zz", "2", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        7
    );

    assert_eq!(
        client_revisions(&mut w_key, 3).await,
        vec![
            (2, vec![put_ev("foo", "bar", 2, 2, 1, None)]),
            (4, vec![put_ev("foo", "baz", 2, 4, 2, None)]),
            (5, vec![del_ev("foo", 5, None)]),
        ]
    );
    assert_eq!(
        client_revisions(&mut w_prefix, 5).await,
        vec![
            (2, vec![put_ev("foo", "bar", 2, 2, 1, None)]),
            (3, vec![put_ev("fob", "x", 3, 3, 1, None)]),
            (
                4,
                vec![
                    put_ev("foo", "baz", 2, 4, 2, Some("bar")),
                    put_ev("fob", "y", 3, 4, 2, Some("x")),
                ]
            ),
            (5, vec![del_ev("foo", 5, Some("baz"))]),
            (6, vec![del_ev("fob", 6, Some("y"))]),
        ]
    );
    assert_eq!(
        client_revisions(&mut w_from, 6).await,
        vec![
            (2, vec![put_ev("foo", "bar", 2, 2, 1, None)]),
            (3, vec![put_ev("fob", "x", 3, 3, 1, None)]),
            (
                4,
                vec![
                    put_ev("foo", "baz", 2, 4, 2, None),
                    put_ev("fob", "y", 3, 4, 2, None),
                    put_ev("zz", "1", 4, 4, 1, None),
                ]
            ),
            (5, vec![del_ev("foo", 5, None)]),
            (6, vec![del_ev("fob", 6, None)]),
            (7, vec![put_ev("zz", "2", 4, 7, 2, None)]),
        ]
    );
    assert_eq!(
        client_revisions(&mut w_all, 2).await,
        vec![
            (5, vec![del_ev("foo", 5, Some("baz"))]),
            (6, vec![del_ev("fob", 6, Some("y"))]),
        ]
    );
    assert_eq!(
        client_revisions(&mut w_nodel, 3).await,
        vec![
            (2, vec![put_ev("foo", "bar", 2, 2, 1, None)]),
            (3, vec![put_ev("fob", "x", 3, 3, 1, None)]),
            (
                4,
                vec![
                    put_ev("foo", "baz", 2, 4, 2, None),
                    put_ev("fob", "y", 3, 4, 2, None),
                ]
            ),
        ]
    );
    for w in [&mut w_key, &mut w_prefix, &mut w_all, &mut w_nodel] {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), w.message()).await {
            panic!("unexpected response {r:?}");
        }
    }
}

#[tokio::test]
async fn client_watch_from_compacted_revision_is_canceled() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    for v in ["a", "b", "c", "d"] {
        c.put("k", v, None).await.expect("put"); // 2..=5
    }
    c.compact(4, None).await.expect("compact");
    let mut w = c
        .watch("k", Some(WatchOptions::new().with_start_revision(3)))
        .await
        .expect("watch");
    let r = next_client(&mut w).await;
    assert!(r.created() && !r.canceled());
    assert_eq!(r.header().unwrap().revision(), 5);
    let r = next_client(&mut w).await;
    assert!(r.canceled() && !r.created());
    assert_eq!(r.compact_revision(), 4);
    assert_eq!(r.watch_id(), 0);
    assert!(r.events().is_empty());
    // from the compaction revision on, history is served
    let mut w = c
        .watch("k", Some(WatchOptions::new().with_start_revision(4)))
        .await
        .expect("watch");
    assert!(next_client(&mut w).await.created());
    let mut evs = Vec::new();
    while evs.len() < 2 {
        let r = next_client(&mut w).await;
        let got = client_events(&r);
        assert_eq!(r.header().unwrap().revision(), got.last().unwrap().4);
        evs.extend(got);
    }
    assert_eq!(
        evs,
        vec![
            put_ev("k", "c", 2, 4, 3, None),
            put_ev("k", "d", 2, 5, 4, None)
        ]
    );
}

#[tokio::test]
async fn client_progress_request_answers_with_invalid_watch_id() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    c.put("a", "1", None).await.expect("put");
    let mut w = c.watch("a", None).await.expect("watch");
    assert!(next_client(&mut w).await.created());
    w.watch("b", None).await.expect("second watcher");
    let r = next_client(&mut w).await;
    assert!(r.created());
    assert_eq!(r.watch_id(), 1);
    w.request_progress().await.expect("progress");
    let r = next_client(&mut w).await;
    assert_eq!(r.watch_id(), -1);
    assert!(!r.created() && !r.canceled() && r.events().is_empty());
    assert_eq!(r.header().unwrap().revision(), 2);
}

// ---------------------------------------------------------------------------------------------
// raw protocol

/// Ids, refusals and revisions exactly as etcd sends them.
#[tokio::test]
async fn raw_protocol_edges() {
    let m = Member::start(&[]);
    let mut kv = kv(&m).await;
    for i in 0..3 {
        put(&mut kv, &format!("p{i}"), "v").await; // 2, 3, 4
    }
    let ch = channel(&m).await;
    let mut s = Raw::open(ch.clone(), create_req(watch_key("p", "q", 0)), true)
        .await
        .expect("open");
    s.send(create_req(watch_key("a", "", 0))).await;
    s.send(create_req(WatchCreateRequest {
        watch_id: 1,
        ..watch_key("a", "", 0)
    }))
    .await;
    s.send(create_req(watch_key("b", "a", 0))).await;
    s.send(create_req(watch_key("b", "", -3))).await;
    s.send(create_req(WatchCreateRequest {
        watch_id: 10,
        ..watch_key("", "\0", 2)
    }))
    .await;
    s.send(create_req(watch_key("z", "", 0))).await; // auto id: 2
    let refused = |reason: &str| (-1, 4, true, true, 0, reason.to_string(), 0);
    // watcher 10 replays revisions 2..=4, in one response or split between catch-up and live
    // delivery (never splitting a revision), any time after its created reply
    let mut got: Vec<Shape> = Vec::new();
    let mut replayed = Vec::new();
    while got.len() < 7 || replayed.len() < 3 {
        let r = s.next().await;
        if r.watch_id == 10 && !r.created {
            let revs: Vec<i64> = r
                .events
                .iter()
                .map(|e| e.kv.as_ref().unwrap().mod_revision)
                .collect();
            assert!(r.header.as_ref().unwrap().revision >= *revs.last().unwrap());
            assert!(got.contains(&created(10, 4)), "events before created");
            replayed.extend(revs);
        } else {
            got.push(shape(&r));
        }
    }
    assert_eq!(replayed, vec![2, 3, 4]);
    assert_eq!(
        got,
        vec![
            created(0, 4),
            created(1, 4),
            refused("mvcc: duplicate watch ID provided on the WatchStream"),
            refused("mvcc: watcher range is empty"),
            refused("etcdserver: mvcc: required revision has been compacted"),
            created(10, 4),
            created(2, 4),
        ]
    );
    // canceling an unknown id answers nothing; a known one answers canceled
    s.send(cancel_req(77)).await;
    s.send(cancel_req(1)).await;
    assert_eq!(
        shape(&s.next().await),
        (1, 4, false, true, 0, String::new(), 0)
    );
    s.quiet().await;
    // a write reaches 0 (prefix p) and 10 (everything), each in its own response with the
    // header at the event's revision
    assert_eq!(put(&mut kv, "p9", "w").await, 5);
    let mut live: Vec<Shape> = vec![shape(&s.next().await), shape(&s.next().await)];
    live.sort();
    assert_eq!(
        live,
        vec![
            (0, 5, false, false, 0, String::new(), 1),
            (10, 5, false, false, 0, String::new(), 1)
        ]
    );
    s.send(progress_req()).await;
    assert_eq!(
        shape(&s.next().await),
        (-1, 5, false, false, 0, String::new(), 0)
    );
    // header fields are the member's
    let r = {
        s.send(progress_req()).await;
        s.next().await
    };
    let h = r.header.expect("header");
    assert_ne!(h.cluster_id, 0);
    assert_ne!(h.member_id, 0);
    assert!(h.raft_term >= 1);
}

/// A progress request waits until every watcher of the stream has caught up: it arrives after
/// the whole replay, with the current revision.
#[tokio::test]
async fn progress_request_waits_for_catch_up() {
    let m = Member::start(&[]);
    let mut kv = kv(&m).await;
    let mut last = 0;
    for i in 0..1500 {
        last = put(&mut kv, &format!("h{}", i % 10), &"x".repeat(2000)).await;
    }
    let mut s = Raw::open(channel(&m).await, create_req(watch_key("h", "i", 1)), false)
        .await
        .expect("open");
    s.send(progress_req()).await;
    let r = s.next().await;
    assert_eq!(shape(&r), created(0, last));
    let mut seen = 1;
    loop {
        let r = s.next().await;
        if r.watch_id == -1 {
            assert!(r.events.is_empty());
            assert_eq!(r.header.unwrap().revision, last);
            break;
        }
        for e in &r.events {
            seen += 1;
            assert_eq!(e.kv.as_ref().unwrap().mod_revision, seen);
        }
    }
    assert_eq!(
        seen, last,
        "the progress response came before the replay ended"
    );
}

#[tokio::test]
async fn progress_notify_on_interval() {
    let m = Member::start(&["--experimental-watch-progress-notify-interval", "200ms"]);
    let mut kv = kv(&m).await;
    put(&mut kv, "a", "1").await;
    let mut s = Raw::open(
        channel(&m).await,
        create_req(WatchCreateRequest {
            progress_notify: true,
            ..watch_key("a", "", 0)
        }),
        false,
    )
    .await
    .expect("open");
    s.send(create_req(watch_key("b", "", 0))).await;
    assert_eq!(shape(&s.next().await), created(0, 2));
    assert_eq!(shape(&s.next().await), created(1, 2));
    // two notifications for watcher 0 only, about 200-220 ms apart
    let t0 = Instant::now();
    for _ in 0..2 {
        assert_eq!(
            shape(&s.next().await),
            (0, 2, false, false, 0, String::new(), 0)
        );
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // writes to an unwatched key move the notified revision
    put(&mut kv, "c", "1").await;
    assert_eq!(
        shape(&s.next().await),
        (0, 3, false, false, 0, String::new(), 0)
    );
}

/// `fragment` splits one large revision below the request limit; others get it whole.
#[tokio::test]
async fn fragment_splits_large_revisions() {
    let m = Member::start(&["--max-request-bytes", "10000"]);
    let mut kv = kv(&m).await;
    let value = "v".repeat(9000);
    for i in 0..80 {
        put(&mut kv, &format!("f/{i:02}"), &value).await; // 2..=81
    }
    let mut s = Raw::open(
        channel(&m).await,
        create_req(WatchCreateRequest {
            prev_kv: true,
            fragment: true,
            ..watch_key("f/", "f0", 0)
        }),
        false,
    )
    .await
    .expect("open");
    s.send(create_req(WatchCreateRequest {
        prev_kv: true,
        ..watch_key("f/", "f0", 0)
    }))
    .await;
    assert_eq!(shape(&s.next().await), created(0, 81));
    assert_eq!(shape(&s.next().await), created(1, 81));
    let d = kv
        .delete_range(DeleteRangeRequest {
            key: b"f/".to_vec(),
            range_end: b"f0".to_vec(),
            ..DeleteRangeRequest::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(d.deleted, 80);
    // etcd's limit for fragments: max request bytes + 512 KiB of gRPC overhead
    let limit = 10000 + 512 * 1024;
    let mut keys: HashMap<i64, Vec<String>> = HashMap::new();
    let mut fragments: HashMap<i64, Vec<bool>> = HashMap::new();
    while keys.values().map(|k| k.len()).sum::<usize>() < 160 {
        let r = s.next().await;
        assert_eq!(r.header.as_ref().unwrap().revision, 82);
        if r.watch_id == 0 {
            assert!(
                prost::Message::encoded_len(&r) < limit,
                "fragment too large"
            );
        }
        fragments.entry(r.watch_id).or_default().push(r.fragment);
        for e in &r.events {
            assert_eq!(e.r#type, mvccpb::event::EventType::Delete as i32);
            assert_eq!(e.prev_kv.as_ref().unwrap().value.len(), 9000);
            keys.entry(r.watch_id)
                .or_default()
                .push(String::from_utf8(e.kv.as_ref().unwrap().key.clone()).unwrap());
        }
    }
    let want: Vec<String> = (0..80).map(|i| format!("f/{i:02}")).collect();
    assert_eq!(keys[&0], want);
    assert_eq!(keys[&1], want);
    assert_eq!(fragments[&1], vec![false]);
    let f0 = &fragments[&0];
    assert!(f0.len() >= 2, "{f0:?}");
    assert!(f0[..f0.len() - 1].iter().all(|&f| f) && !f0[f0.len() - 1]);
    s.quiet().await;
}

/// With `hasleader` metadata a stream opens while the member has a leader and carries
/// events as usual.
#[tokio::test]
async fn hasleader_stream_works_with_a_leader() {
    let m = Member::start(&[]);
    let mut kv = kv(&m).await;
    let mut s = Raw::open(channel(&m).await, create_req(watch_key("a", "", 0)), true)
        .await
        .expect("a member with a leader accepts hasleader streams");
    assert_eq!(shape(&s.next().await), created(0, 1));
    put(&mut kv, "a", "1").await;
    assert_eq!(
        shape(&s.next().await),
        (0, 2, false, false, 0, String::new(), 1)
    );
}

#[tokio::test]
async fn watch_metrics_follow_streams_and_watchers() {
    let m = Member::start(&[]);
    let mut kv = kv(&m).await;
    let ch = channel(&m).await;
    let mut a = Raw::open(ch.clone(), create_req(watch_key("a", "", 0)), false)
        .await
        .expect("open");
    a.send(create_req(watch_key("b", "", 0))).await;
    let mut b = Raw::open(ch.clone(), create_req(watch_key("a", "b", 0)), false)
        .await
        .expect("open");
    a.next().await;
    a.next().await;
    b.next().await;
    assert_eq!(metric(&m, "etcd_debugging_mvcc_watcher_total"), 3.0);
    assert_eq!(metric(&m, "etcd_debugging_mvcc_watch_stream_total"), 2.0);
    let before = metric(&m, "etcd_debugging_mvcc_events_total");
    put(&mut kv, "a", "1").await;
    a.next().await;
    b.next().await;
    wait_metric(&m, "etcd_debugging_mvcc_events_total", before + 2.0).await;
    assert_eq!(metric(&m, "etcd_debugging_mvcc_pending_events_total"), 0.0);
    assert_eq!(metric(&m, "etcd_debugging_mvcc_slow_watcher_total"), 0.0);
    a.send(cancel_req(1)).await;
    a.next().await;
    assert_eq!(metric(&m, "etcd_debugging_mvcc_watcher_total"), 2.0);
    drop(a);
    drop(b);
    wait_metric(&m, "etcd_debugging_mvcc_watch_stream_total", 0.0).await;
    wait_metric(&m, "etcd_debugging_mvcc_watcher_total", 0.0).await;
}

// ---------------------------------------------------------------------------------------------
// guarantees under load

/// A tiny deterministic generator (tests must be reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KEYS: u64 = 1000;

fn key(i: u64) -> String {
    format!("k{:03}", i % KEYS)
}

/// One write of the load, in the order of its revision.
#[derive(Debug, Clone)]
enum Write {
    Put(String, String),
    Del(String, String), // key, range_end ("" = one key)
    Txn(Vec<Write>),
}

fn write_request(w: &Write) -> RequestOp {
    match w {
        Write::Put(k, v) => RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: k.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
                ..PutRequest::default()
            })),
        },
        Write::Del(k, e) => RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec(),
                range_end: e.as_bytes().to_vec(),
                ..DeleteRangeRequest::default()
            })),
        },
        Write::Txn(_) => unreachable!("no nested txns in the load"),
    }
}

fn random_write(rng: &mut Rng, n: u64) -> Write {
    match rng.below(100) {
        0..=64 => Write::Put(key(rng.below(KEYS)), format!("v{n}")),
        65..=79 => Write::Del(key(rng.below(KEYS)), String::new()),
        80..=84 => {
            let a = rng.below(KEYS - 6);
            Write::Del(key(a), key(a + 1 + rng.below(5)))
        }
        _ => {
            // distinct keys, so the txn is valid; always one put, so it always writes
            let base = rng.below(KEYS - 40);
            let mut ops = vec![Write::Put(key(base), format!("t{n}"))];
            for j in 1..=rng.below(3) {
                let k = key(base + j * 10);
                ops.push(if rng.below(2) == 0 {
                    Write::Put(k, format!("t{n}.{j}"))
                } else {
                    Write::Del(k, String::new())
                });
            }
            Write::Txn(ops)
        }
    }
}

/// The model's view of one event (what a watcher must receive).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelEvent {
    put: bool,
    key: String,
    value: String,
    create: i64,
    rev: i64,
    version: i64,
    prev: Option<(String, i64, i64, i64)>, // value, create, mod, version
}

#[derive(Default)]
struct Model {
    kvs: BTreeMap<String, (String, i64, i64, i64)>, // value, create, mod, version
}

impl Model {
    /// Applies a write at `rev`; returns its events in order.
    fn apply(&mut self, w: &Write, rev: i64, out: &mut Vec<ModelEvent>) {
        match w {
            Write::Put(k, v) => {
                let prev = self.kvs.get(k).cloned();
                let (create, version) = match &prev {
                    Some(p) => (p.1, p.3 + 1),
                    None => (rev, 1),
                };
                self.kvs
                    .insert(k.clone(), (v.clone(), create, rev, version));
                out.push(ModelEvent {
                    put: true,
                    key: k.clone(),
                    value: v.clone(),
                    create,
                    rev,
                    version,
                    prev,
                });
            }
            Write::Del(k, e) => {
                let keys: Vec<String> = if e.is_empty() {
                    self.kvs.get(k).map(|_| k.clone()).into_iter().collect()
                } else {
                    self.kvs
                        .range(k.clone()..e.clone())
                        .map(|(k, _)| k.clone())
                        .collect()
                };
                for k in keys {
                    let prev = self.kvs.remove(&k);
                    out.push(ModelEvent {
                        put: false,
                        key: k,
                        value: String::new(),
                        create: 0,
                        rev,
                        version: 0,
                        prev,
                    });
                }
            }
            Write::Txn(ops) => {
                for op in ops {
                    self.apply(op, rev, out);
                }
            }
        }
    }
}

/// Makes one write as a txn; returns its revision, the write, and for a lone delete how
/// many keys it deleted (0 = no revision of its own).
async fn do_write(mut kv: KvClient<Channel>, w: Write) -> (i64, Write, Option<i64>) {
    use ferrocd::proto::etcdserverpb::response_op::Response;
    let resp = kv
        .txn(TxnRequest {
            success: match &w {
                Write::Txn(ops) => ops.iter().map(write_request).collect(),
                other => vec![write_request(other)],
            },
            ..TxnRequest::default()
        })
        .await
        .expect("write")
        .into_inner();
    let deleted = match (&w, resp.responses.first().and_then(|r| r.response.as_ref())) {
        (Write::Del(..), Some(Response::ResponseDeleteRange(d))) => Some(d.deleted),
        _ => None,
    };
    (resp.header.expect("header").revision, w, deleted)
}

/// The end of a prefix range (the prefix with its last byte + 1; ASCII only here).
fn prefix_end(p: &str) -> String {
    let mut b = p.as_bytes().to_vec();
    *b.last_mut().expect("non-empty prefix") += 1;
    String::from_utf8(b).expect("ascii")
}

/// A watcher of the load test.
#[derive(Debug, Clone)]
struct Spec {
    key: String,
    end: String,
    start: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
}

impl Spec {
    fn random(rng: &mut Rng, history: i64) -> Spec {
        let k = rng.below(KEYS);
        let (key, end) = match rng.below(1000) {
            0..=699 => (key(k), String::new()),
            700..=899 => {
                let p = format!("k{:02}", k / 10);
                let e = prefix_end(&p);
                (p, e)
            }
            900..=969 => {
                let p = format!("k{}", k / 100);
                let e = prefix_end(&p);
                (p, e)
            }
            970..=989 => {
                let e = k + 1 + rng.below(150);
                (key(k), if e < KEYS { key(e) } else { "l".into() })
            }
            990..=994 => (key(k), "\0".to_string()),
            _ => ("\0".to_string(), "\0".to_string()),
        };
        let start = match rng.below(10) {
            0..=3 => 0,
            4..=8 => 2 + rng.below(history as u64 - 1) as i64,
            _ => history + 1 + rng.below(8000) as i64,
        };
        let f = rng.below(10);
        Spec {
            key,
            end,
            start,
            prev_kv: rng.below(2) == 0,
            no_put: f == 0,
            no_delete: f == 1,
        }
    }

    /// Whether the filters let an event of this kind through.
    fn wants(&self, put: bool) -> bool {
        if put {
            !self.no_put
        } else {
            !self.no_delete
        }
    }

    fn contains(&self, k: &str) -> bool {
        match self.end.as_str() {
            "" => k == self.key,
            "\0" => k >= self.key.as_str(),
            e => k >= self.key.as_str() && k < e,
        }
    }

    fn request(&self) -> WatchRequest {
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        create_req(WatchCreateRequest {
            key: self.key.as_bytes().to_vec(),
            range_end: self.end.as_bytes().to_vec(),
            start_revision: self.start,
            prev_kv: self.prev_kv,
            filters,
            ..WatchCreateRequest::default()
        })
    }
}

/// Everything one stream received.
type Recorded = Arc<Mutex<Vec<WatchResponse>>>;

fn record(mut s: Raw) -> (tokio::sync::mpsc::Sender<WatchRequest>, Recorded) {
    let rec: Recorded = Arc::default();
    let r = rec.clone();
    let tx = s.tx.clone();
    tokio::spawn(async move {
        while let Ok(Some(m)) = s.rx.message().await {
            r.lock().unwrap().push(m);
        }
    });
    (tx, rec)
}

/// Checks one watcher's responses against the model: ordered, unique, atomic per revision,
/// no gaps from its start, correct prev_kv, filters honoured.
fn check_watcher(
    what: &str,
    spec: &Spec,
    created_rev: i64,
    responses: &[&WatchResponse],
    history: &BTreeMap<i64, Vec<ModelEvent>>,
) {
    let from = if spec.start == 0 {
        created_rev + 1
    } else {
        spec.start
    };
    let want: Vec<ModelEvent> = history
        .range(from..)
        .flat_map(|(_, evs)| evs.iter())
        .filter(|e| spec.contains(&e.key) && spec.wants(e.put))
        .map(|e| {
            let mut e = e.clone();
            if !spec.prev_kv {
                e.prev = None;
            }
            e
        })
        .collect();
    let mut got = Vec::new();
    let mut revs_seen: Vec<i64> = Vec::new();
    for r in responses {
        assert!(!r.events.is_empty(), "{what}: a response without events");
        assert!(!r.fragment, "{what}: fragment without asking");
        let header = r.header.as_ref().expect("header").revision;
        let mut revs: Vec<i64> = r
            .events
            .iter()
            .map(|e| e.kv.as_ref().expect("kv").mod_revision)
            .collect();
        assert!(
            header >= *revs.last().expect("events"),
            "{what}: header revision {header} below its events {revs:?}"
        );
        revs.dedup();
        for rev in revs {
            // atomic: a revision never reappears in a later response
            assert!(
                revs_seen.last().is_none_or(|&last| last < rev),
                "{what}: revision {rev} after {revs_seen:?}"
            );
            revs_seen.push(rev);
        }
        for e in &r.events {
            let kv = e.kv.as_ref().expect("kv");
            assert_eq!(kv.lease, 0);
            got.push(ModelEvent {
                put: e.r#type == mvccpb::event::EventType::Put as i32,
                key: String::from_utf8(kv.key.clone()).expect("utf8"),
                value: String::from_utf8(kv.value.clone()).expect("utf8"),
                create: kv.create_revision,
                rev: kv.mod_revision,
                version: kv.version,
                prev: e.prev_kv.as_ref().map(|p| {
                    (
                        String::from_utf8(p.value.clone()).expect("utf8"),
                        p.create_revision,
                        p.mod_revision,
                        p.version,
                    )
                }),
            });
        }
    }
    if got != want {
        let first = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what} {spec:?} from {from}: got {} events, want {}; first difference at {first}:\n\
             got  {:?}\nwant {:?}",
            got.len(),
            want.len(),
            got.get(first),
            want.get(first)
        );
    }
}

/// 1,000 watchers on one stream and 1,000 watchers over 100 streams, created while 10,000
/// writes run (puts, deletes, range deletes, multi-op txns): every watcher receives exactly
/// its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guarantees_with_thousands_of_watchers() {
    let m = Member::start(&[]);
    let ch = channel(&m).await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // history before the watchers
    let mut writes: Vec<(i64, Write, Option<i64>)> = Vec::new();
    let kv = KvClient::new(ch.clone());
    const HISTORY: u64 = 1000;
    const LOAD: u64 = 9000;
    for n in 0..HISTORY {
        let w = random_write(&mut rng, n);
        writes.push(do_write(kv.clone(), w).await);
    }
    let history_rev = writes.iter().map(|w| w.0).max().unwrap_or(1);

    // the load: 8 concurrent writers
    let mut load = Vec::new();
    for n in HISTORY..HISTORY + LOAD {
        load.push(random_write(&mut rng, n));
    }
    let chunks: Vec<Vec<Write>> = (0..8)
        .map(|i| load.iter().skip(i).step_by(8).cloned().collect())
        .collect();
    let mut writers = Vec::new();
    for chunk in chunks {
        let kv = kv.clone();
        writers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for w in chunk {
                done.push(do_write(kv.clone(), w).await);
            }
            done
        }));
    }

    // the watchers, created while the writers run
    let one_stream: Vec<Spec> = (0..1000)
        .map(|_| Spec::random(&mut rng, history_rev))
        .collect();
    let many_streams: Vec<Spec> = (0..1000)
        .map(|_| Spec::random(&mut rng, history_rev))
        .collect();
    let mut streams: Vec<(tokio::sync::mpsc::Sender<WatchRequest>, Recorded, Vec<Spec>)> =
        Vec::new();
    {
        let s = Raw::open(ch.clone(), one_stream[0].request(), false)
            .await
            .expect("open");
        for spec in &one_stream[1..] {
            s.send(spec.request()).await;
        }
        let (tx, rec) = record(s);
        streams.push((tx, rec, one_stream.clone()));
    }
    for group in many_streams.chunks(10) {
        let s = Raw::open(ch.clone(), group[0].request(), false)
            .await
            .expect("open");
        for spec in &group[1..] {
            s.send(spec.request()).await;
        }
        let (tx, rec) = record(s);
        streams.push((tx, rec, group.to_vec()));
    }

    for w in writers {
        writes.extend(w.await.expect("writer"));
    }
    // a delete of nothing reports the current revision: it made no revision of its own
    writes.retain(|w| w.2 != Some(0));
    writes.sort_by_key(|w| w.0);
    let mut model = Model::default();
    let mut history: BTreeMap<i64, Vec<ModelEvent>> = BTreeMap::new();
    for (rev, w, deleted) in &writes {
        let mut evs = Vec::new();
        model.apply(w, *rev, &mut evs);
        if let Some(d) = deleted {
            assert_eq!(evs.len() as i64, *d, "model and server disagree at {rev}");
        }
        assert!(!evs.is_empty(), "a write without events at {rev}");
        assert!(
            history.insert(*rev, evs).is_none(),
            "two writes at revision {rev}"
        );
    }
    let last = *history.keys().last().expect("writes");
    assert_eq!(
        history.keys().copied().collect::<Vec<_>>(),
        (2..=last).collect::<Vec<_>>(),
        "every revision is one write"
    );

    // wait until each stream confirmed progress up to the last revision
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, (tx, rec, _)) in streams.iter().enumerate() {
        loop {
            tx.send(progress_req()).await.expect("progress");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let done =
                rec.lock().unwrap().iter().any(|r| {
                    r.watch_id == -1 && r.header.as_ref().is_some_and(|h| h.revision >= last)
                });
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "stream {i} never caught up");
        }
    }

    let mut total = 0;
    for (i, (_, rec, specs)) in streams.iter().enumerate() {
        let rec = rec.lock().unwrap();
        // created replies come in creation order with ids 0, 1, 2, ...
        let created: Vec<&WatchResponse> = rec.iter().filter(|r| r.created).collect();
        assert_eq!(created.len(), specs.len(), "stream {i}");
        for (id, r) in created.iter().enumerate() {
            assert_eq!((r.watch_id, r.canceled), (id as i64, false), "stream {i}");
        }
        for (id, spec) in specs.iter().enumerate() {
            let id = id as i64;
            let pos = rec
                .iter()
                .position(|r| r.created && r.watch_id == id)
                .expect("created");
            let responses: Vec<&WatchResponse> = rec
                .iter()
                .enumerate()
                .filter(|(_, r)| r.watch_id == id && !r.created && !r.canceled)
                .map(|(j, r)| {
                    assert!(j > pos, "stream {i} watch {id}: events before created");
                    r
                })
                .collect();
            total += responses.iter().map(|r| r.events.len()).sum::<usize>();
            let created_rev = created[id as usize].header.as_ref().unwrap().revision;
            check_watcher(
                &format!("stream {i} watch {id}"),
                spec,
                created_rev,
                &responses,
                &history,
            );
        }
        assert!(rec.iter().all(|r| !r.canceled), "stream {i}: a cancel");
    }
    assert!(
        total > 50_000,
        "only {total} events delivered: the load is too thin"
    );
}

/// RSS of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

const SLOW_PUTS: usize = 1600;
const SLOW_VALUE: usize = 64 * 1024;

/// Writes `SLOW_PUTS` values of 64 KiB (8 writers) and returns revision -> write number.
async fn slow_reader_writes(ch: &Channel) -> BTreeMap<i64, usize> {
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut kv = KvClient::new(ch.clone());
        writers.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in (w..SLOW_PUTS).step_by(8) {
                let mut v = format!("{i:06}").into_bytes();
                v.resize(SLOW_VALUE, b'.');
                let r = kv
                    .put(PutRequest {
                        key: format!("s/{:03}", i % 100).into_bytes(),
                        value: v,
                        ..PutRequest::default()
                    })
                    .await
                    .expect("put")
                    .into_inner();
                revs.push((r.header.expect("header").revision, i));
            }
            revs
        }));
    }
    let mut by_rev = BTreeMap::new();
    for w in writers {
        by_rev.extend(w.await.expect("writer"));
    }
    by_rev
}

/// RSS growth of a fresh member over the slow-reader writes, with a stream that stops
/// reading (or none).
async fn slow_reader_growth(
    with_watcher: bool,
) -> (u64, Member, Option<Raw>, BTreeMap<i64, usize>) {
    let m = Member::start(&[]);
    let pid = m.pid();
    let ch = channel(&m).await;
    let s = if with_watcher {
        let mut s = Raw::open(
            ch.clone(),
            create_req(WatchCreateRequest {
                prev_kv: true,
                ..watch_key("s/", "s0", 0)
            }),
            false,
        )
        .await
        .expect("open");
        assert_eq!(shape(&s.next().await), created(0, 1));
        Some(s)
    } else {
        None
    };
    // from here on the client does not read
    let base = rss_bytes(pid);
    let by_rev = slow_reader_writes(&ch).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let growth = rss_bytes(pid).saturating_sub(base);
    (growth, m, s, by_rev)
}

/// A stream whose client stops reading while 200 MiB of events (64 KiB values and their
/// prev_kv) are written: the server grows no more than the same writes make it grow without
/// any watcher, plus the hub's bounded buffers; once the client reads again every event
/// arrives, in order, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_reader_stays_bounded_and_loses_nothing() {
    let (control, m0, _, _) = slow_reader_growth(false).await;
    drop(m0);
    let (growth, m, s, by_rev) = slow_reader_growth(true).await;
    let mut s = s.expect("stream");
    let events_mib = (2 * SLOW_PUTS * SLOW_VALUE) >> 20;
    eprintln!(
        "slow reader: rss grew {} MiB with a stalled watcher, {} MiB without; {events_mib} MiB \
         of events were due",
        growth >> 20,
        control >> 20
    );
    // the hub holds at most its ring (32 MiB), the stream's queue (4 MiB) and one catch-up
    // chunk; buffering the stalled stream would add the whole 200 MiB
    assert!(
        growth < control + 96 * 1024 * 1024,
        "rss grew by {} MiB with a stalled watcher, {} MiB without",
        growth >> 20,
        control >> 20
    );
    assert!(metric(&m, "etcd_debugging_mvcc_slow_watcher_total") >= 1.0);
    // now read: every event, in order, once
    let revs: Vec<i64> = by_rev.keys().copied().collect();
    assert_eq!(revs, (2..2 + SLOW_PUTS as i64).collect::<Vec<_>>());
    let mut next = 0;
    while next < revs.len() {
        let r = s.next().await;
        assert_eq!(r.watch_id, 0);
        for e in &r.events {
            let kv = e.kv.as_ref().unwrap();
            assert_eq!(kv.mod_revision, revs[next], "out of order or missing");
            let i = by_rev[&revs[next]];
            assert_eq!(&kv.value[..6], format!("{i:06}").as_bytes());
            assert_eq!(kv.value.len(), SLOW_VALUE);
            assert_eq!(kv.key, format!("s/{:03}", i % 100).into_bytes());
            // the previous write of this key is the one with the same i % 100, 100 writes
            // earlier in write order, but writes race: find it by revision instead
            if let Some(p) = e.prev_kv.as_ref() {
                let prev_i = by_rev[&p.mod_revision];
                assert_eq!(prev_i % 100, i % 100);
                assert_eq!(&p.value[..6], format!("{prev_i:06}").as_bytes());
            } else {
                assert_eq!(kv.version, 1, "prev_kv missing on an update");
            }
            next += 1;
        }
    }
    s.quiet().await;
    wait_metric(&m, "etcd_debugging_mvcc_slow_watcher_total", 0.0).await;
}

/// A watcher of a member that is killed and restarted resumes from its last revision + 1 and
/// gets every acknowledged write, including those the backend had not committed yet.
#[tokio::test]
async fn restarted_member_resumes_from_last_revision() {
    let mut m = Member::start(&[]);
    let mut kv = kv(&m).await;
    let mut s = Raw::open(
        channel(&m).await,
        create_req(watch_key("r/", "r0", 0)),
        false,
    )
    .await
    .expect("open");
    assert_eq!(shape(&s.next().await), created(0, 1));
    let mut acked: BTreeMap<i64, String> = BTreeMap::new();
    for i in 0..50 {
        let v = format!("a{i}");
        acked.insert(put(&mut kv, &format!("r/{}", i % 7), &v).await, v);
    }
    let mut last_seen = 1;
    while last_seen < 51 {
        for e in s.next().await.events {
            last_seen = e.kv.unwrap().mod_revision;
        }
    }
    // more writes, then kill -9 right away: the last ones are in the WAL only
    for i in 50..80 {
        let v = format!("b{i}");
        acked.insert(put(&mut kv, &format!("r/{}", i % 7), &v).await, v);
    }
    m.kill9();
    // whatever the watcher got before the kill counts as seen
    while let Ok(Ok(Some(r))) =
        tokio::time::timeout(Duration::from_millis(200), s.rx.message()).await
    {
        for e in r.events {
            let kv = e.kv.unwrap();
            assert_eq!(kv.mod_revision, last_seen + 1);
            last_seen = kv.mod_revision;
        }
    }
    drop(s);
    m.restart();
    let mut kv = self::kv(&m).await;
    let mut s = Raw::open(
        channel(&m).await,
        create_req(watch_key("r/", "r0", last_seen + 1)),
        false,
    )
    .await
    .expect("open");
    assert_eq!(shape(&s.next().await), created(0, 81));
    let v = "after".to_string();
    acked.insert(put(&mut kv, "r/x", &v).await, v);
    let want: Vec<(i64, String)> = acked
        .range(last_seen + 1..)
        .map(|(r, v)| (*r, v.clone()))
        .collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        for e in s.next().await.events {
            let kv = e.kv.unwrap();
            got.push((kv.mod_revision, String::from_utf8(kv.value).unwrap()));
        }
    }
    assert_eq!(got, want);
    s.quiet().await;
}

/// Open watch streams do not hold up a clean shutdown: SIGTERM ends them with etcd's
/// `server stopped` and the member exits.
#[tokio::test]
async fn sigterm_ends_open_watch_streams() {
    let mut m = Member::start(&[]);
    let mut s = Raw::open(channel(&m).await, create_req(watch_key("a", "", 0)), false)
        .await
        .expect("open");
    assert_eq!(shape(&s.next().await), created(0, 1));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let status = m.stop();
        let _ = tx.send(status);
    });
    let end = tokio::time::timeout(Duration::from_secs(10), s.rx.message())
        .await
        .expect("the stream ended");
    let status = end.expect_err("the stream ends with an error");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "etcdserver: server stopped");
    let exit = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(15)))
        .await
        .expect("join")
        .expect("the member exits while a watch is open");
    assert!(exit.success(), "{exit:?}");
}
