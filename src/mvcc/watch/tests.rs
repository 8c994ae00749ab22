//! Hub tests: a real store on a temp backend, writes applied the way the applier does
//! (commit, `notify`, group commit, `committed`), responses read from the stream queues.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::*;
use crate::backend::{Backend, BackendOptions};
use crate::mvcc::Store;
use crate::proto::mvccpb;

const PUT: i32 = mvccpb::event::EventType::Put as i32;
const DELETE: i32 = mvccpb::event::EventType::Delete as i32;

struct Harness {
    _tmp: tempfile::TempDir,
    store: Arc<RwLock<Store>>,
    hub: Arc<WatchHub>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.hub.stop();
    }
}

fn harness(cfg: HubConfig) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let backend = Arc::new(Backend::open(tmp.path(), BackendOptions::default()).unwrap());
    let (store, _) = Store::open(backend).unwrap();
    let store = Arc::new(RwLock::new(store));
    let hub = WatchHub::start(store.clone(), cfg).unwrap();
    Harness {
        _tmp: tmp,
        store,
        hub,
    }
}

/// One change inside a write transaction.
enum Op<'a> {
    Put(&'a str, &'a str),
    Del(&'a str, &'a str),
}

impl Harness {
    /// Applies one write transaction like the applier: commit, then hand the events over while
    /// still holding the store lock. Returns the revision.
    fn txn(&self, ops: &[Op<'_>]) -> i64 {
        let mut s = self.store.write();
        let mut t = s.write(0);
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    t.put(k.as_bytes(), v.as_bytes(), 0);
                }
                Op::Del(k, e) => {
                    t.delete_range(k.as_bytes(), e.as_bytes());
                }
            }
        }
        let r = t.commit().unwrap();
        self.hub.notify(r.rev, r.events);
        r.rev
    }

    fn put(&self, k: &str, v: &str) -> i64 {
        self.txn(&[Op::Put(k, v)])
    }

    fn begin_group(&self) {
        self.store.write().begin_group();
    }

    /// Commits the open group and tells the hub, like `Applier::end_group`.
    fn end_group(&self) {
        let mut s = self.store.write();
        s.end_group().unwrap();
        let rev = s.current_revision();
        drop(s);
        self.hub.committed(rev);
    }

    fn compact(&self, rev: i64) {
        let c = self.store.write().compact(rev, 0).unwrap();
        self.hub.compacted(rev);
        let backend = self.store.read().backend().clone();
        c.run(&backend).unwrap();
    }
}

fn create(key: &str, end: &str, start: i64) -> WatchSpec {
    WatchSpec {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        start_revision: start,
        ..WatchSpec::default()
    }
}

/// Pops responses until `n` arrived (or panics after a few seconds).
fn take(h: &WatchStreamHandle, n: usize) -> Vec<Outgoing> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n {
        match h.queue().try_pop() {
            Some(m) => out.push(m),
            None => {
                assert!(
                    Instant::now() < deadline,
                    "timed out: got {} of {n} responses: {out:#?}",
                    out.len()
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    out
}

/// Waits (a few seconds at most) until `cond` holds.
fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts nothing more arrives for a short while.
fn quiet(h: &WatchStreamHandle) {
    std::thread::sleep(Duration::from_millis(150));
    if let Some(m) = h.queue().try_pop() {
        panic!("unexpected extra response: {m:#?}");
    }
}

fn control(m: &Outgoing) -> &Control {
    match m {
        Outgoing::Control(c) => c,
        other => panic!("expected a control response, got {other:#?}"),
    }
}

fn events(m: &Outgoing) -> &EventsMsg {
    match m {
        Outgoing::Events(e) => e,
        other => panic!("expected events, got {other:#?}"),
    }
}

/// (type, key, value, mod_revision, prev value) of each event.
fn summary(m: &EventsMsg) -> Vec<(i32, String, String, i64, Option<String>)> {
    m.events
        .iter()
        .map(|e| {
            let ev = e.event();
            let kv = ev.kv.as_ref().unwrap();
            (
                ev.r#type,
                String::from_utf8(kv.key.clone()).unwrap(),
                String::from_utf8(kv.value.clone()).unwrap(),
                kv.mod_revision,
                if m.prev_kv {
                    ev.prev_kv
                        .as_ref()
                        .map(|p| String::from_utf8(p.value.clone()).unwrap())
                } else {
                    None
                },
            )
        })
        .collect()
}

fn ev(t: i32, k: &str, v: &str, rev: i64) -> (i32, String, String, i64, Option<String>) {
    (t, k.into(), v.into(), rev, None)
}

fn evp(
    t: i32,
    k: &str,
    v: &str,
    rev: i64,
    prev: &str,
) -> (i32, String, String, i64, Option<String>) {
    (t, k.into(), v.into(), rev, Some(prev.into()))
}

#[test]
fn created_first_with_ids_from_zero_and_etcd_refusals() {
    let h = harness(HubConfig::default());
    h.put("a", "1"); // rev 2
    let s = h.hub.open_stream();
    s.create(&create("a", "", 0));
    s.create(&create("b", "", 0));
    s.create(&WatchSpec {
        watch_id: 7,
        ..create("c", "", 0)
    });
    s.create(&WatchSpec {
        watch_id: 7,
        ..create("d", "", 0)
    });
    s.create(&create("z", "a", 0));
    s.create(&create("e", "", 0)); // auto ids skip nothing taken: 2
    let got = take(&s, 6);
    let ctl: Vec<&Control> = got.iter().map(control).collect();
    let created = |id: i64| Control {
        watch_id: id,
        revision: 2,
        created: true,
        ..Control::default()
    };
    assert_eq!(*ctl[0], created(0));
    assert_eq!(*ctl[1], created(1));
    assert_eq!(*ctl[2], created(7));
    let refused = |reason: &str| Control {
        watch_id: -1,
        revision: 2,
        created: true,
        canceled: true,
        cancel_reason: reason.into(),
        ..Control::default()
    };
    assert_eq!(*ctl[3], refused(ERR_DUPLICATE_ID));
    assert_eq!(*ctl[4], refused(ERR_EMPTY_RANGE));
    assert_eq!(*ctl[5], created(2));
    assert_eq!(h.hub.counts(), (4, 4, 0, 1));
    // auto ids skip an id the client took
    s.create(&WatchSpec {
        watch_id: 3,
        ..create("f", "", 0)
    });
    s.create(&create("g", "", 0));
    let got = take(&s, 2);
    assert_eq!(*control(&got[0]), created(3));
    assert_eq!(*control(&got[1]), created(4));
    quiet(&s);
    drop(s);
    assert_eq!(h.hub.counts(), (0, 0, 0, 0));
}

#[test]
fn live_puts_deletes_txns_filters_and_prev_kv() {
    let h = harness(HubConfig::default());
    h.put("foo", "0"); // 2
    let s = h.hub.open_stream();
    s.create(&create("foo", "", 0)); // 0: one key
    s.create(&create("f", "g", 0)); // 1: prefix f
    s.create(&WatchSpec {
        prev_kv: true,
        ..create("\0", "\0", 0) // 2: everything, with prev_kv
    });
    s.create(&WatchSpec {
        no_put: true,
        ..create("f", "g", 0) // 3: deletes only
    });
    s.create(&WatchSpec {
        no_delete: true,
        ..create("fz", "\0", 0) // 4: from fz on, puts only
    });
    assert!(take(&s, 5).iter().all(|m| control(m).created));

    let r3 = h.put("foo", "1");
    let r4 = h.txn(&[Op::Put("fa", "x"), Op::Put("zz", "y"), Op::Del("foo", "")]);
    let r5 = h.txn(&[Op::Del("a", "\0")]); // deletes fa and zz
    assert_eq!((r3, r4, r5), (3, 4, 5));

    let mut by_watch: std::collections::BTreeMap<i64, Vec<(i64, Vec<_>)>> = Default::default();
    for m in take(&s, 11) {
        let e = events(&m);
        by_watch
            .entry(e.watch_id)
            .or_default()
            .push((e.revision, summary(e)));
    }
    assert_eq!(
        by_watch[&0],
        vec![
            (3, vec![ev(PUT, "foo", "1", 3)]),
            (4, vec![ev(DELETE, "foo", "", 4)])
        ]
    );
    assert_eq!(
        by_watch[&1],
        vec![
            (3, vec![ev(PUT, "foo", "1", 3)]),
            (4, vec![ev(PUT, "fa", "x", 4), ev(DELETE, "foo", "", 4)]),
            (5, vec![ev(DELETE, "fa", "", 5)]),
        ]
    );
    assert_eq!(
        by_watch[&2],
        vec![
            (3, vec![evp(PUT, "foo", "1", 3, "0")]),
            (
                4,
                vec![
                    (PUT, "fa".into(), "x".into(), 4, None), // a create has no prev_kv
                    (PUT, "zz".into(), "y".into(), 4, None),
                    evp(DELETE, "foo", "", 4, "1"),
                ]
            ),
            (
                5,
                vec![evp(DELETE, "fa", "", 5, "x"), evp(DELETE, "zz", "", 5, "y")]
            ),
        ]
    );
    assert_eq!(
        by_watch[&3],
        vec![
            (4, vec![ev(DELETE, "foo", "", 4)]),
            (5, vec![ev(DELETE, "fa", "", 5)])
        ]
    );
    assert_eq!(by_watch[&4], vec![(4, vec![ev(PUT, "zz", "y", 4)])]);
    quiet(&s);
}

#[test]
fn past_start_replays_from_backend_then_goes_live() {
    let h = harness(HubConfig {
        ring_max_revisions: 4,
        ring_max_bytes: 1,
        sync_max_revisions: 7,
        ..HubConfig::default()
    });
    h.begin_group();
    for i in 0..40 {
        h.put(&format!("k{}", i % 3), &format!("v{i}"));
    }
    h.end_group(); // revs 2..=41 in the backend; the ring keeps only the newest few
    wait_for(|| h.hub.ring_usage().0 <= 4);
    let s = h.hub.open_stream();
    s.create(&WatchSpec {
        prev_kv: true,
        ..create("k1", "", 5)
    });
    assert!(control(&take(&s, 1)[0]).created);
    // k1 is written at i = 1, 4, 7, ... i.e. revisions 3, 6, 9, ...; from 5: 6, 9, ..., 39
    let want: Vec<i64> = (6..=41).step_by(3).collect();
    let mut got = Vec::new();
    let mut prevs = Vec::new();
    while got.len() < want.len() {
        for m in take(&s, 1) {
            let e = events(&m);
            assert!(e.revision >= e.events.last().unwrap().revision());
            for x in summary(e) {
                got.push(x.3);
                prevs.push(x.4);
            }
        }
    }
    assert_eq!(got, want);
    // prev_kv is the key's value at rev - 1, read from the store
    assert_eq!(prevs[0].as_deref(), Some("v1"));
    assert_eq!(prevs[1].as_deref(), Some("v4"));
    // synced now: a new write arrives live, alone
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.hub.counts().2 != 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = h.put("k1", "live");
    let m = take(&s, 1);
    assert_eq!(
        summary(events(&m[0])),
        vec![evp(PUT, "k1", "live", r, "v37")]
    );
    assert_eq!(events(&m[0]).revision, r);
    quiet(&s);
}

/// Revisions that only exist in memory (the applier's group is not committed yet) are served
/// from the ring: the backend does not have them.
#[test]
fn catch_up_from_ring_while_group_is_open() {
    let h = harness(HubConfig::default());
    h.begin_group();
    let revs: Vec<i64> = (0..10).map(|i| h.put("k", &format!("{i}"))).collect();
    let s = h.hub.open_stream();
    s.create(&create("k", "", revs[3]));
    assert!(control(&take(&s, 1)[0]).created);
    // the revisions may come in one catch-up response or partly live: one revision never
    // spans two responses, and every response's header covers its events
    let mut vals = Vec::new();
    while vals.len() < 7 {
        let m = take(&s, 1);
        let e = events(&m[0]);
        assert_eq!(e.revision, e.events.last().unwrap().revision());
        vals.extend(summary(e).into_iter().map(|x| x.2));
    }
    assert_eq!(vals, (3..10).map(|i| i.to_string()).collect::<Vec<_>>());
    h.end_group();
    let r = h.put("k", "after");
    assert_eq!(
        summary(events(&take(&s, 1)[0])),
        vec![ev(PUT, "k", "after", r)]
    );
    quiet(&s);
}

#[test]
fn future_start_waits() {
    let h = harness(HubConfig::default());
    let s = h.hub.open_stream();
    s.create(&create("k", "", 4));
    take(&s, 1);
    h.put("k", "2");
    h.put("k", "3");
    quiet(&s);
    s.request_progress(); // a future watcher is not synced: the request waits
    quiet(&s);
    h.put("k", "4");
    let got = take(&s, 2);
    assert_eq!(summary(events(&got[0])), vec![ev(PUT, "k", "4", 4)]);
    assert_eq!(
        *control(&got[1]),
        Control {
            watch_id: -1,
            revision: 4,
            ..Control::default()
        }
    );
    quiet(&s);
}

/// A stream that stops reading: its queue stays within budget, its watchers turn unsynced,
/// and once it reads again every event arrives exactly once, in order.
#[test]
fn slow_stream_is_bounded_and_loses_nothing() {
    let h = harness(HubConfig {
        stream_max_bytes: 8 * 1024,
        ring_max_revisions: 16,
        ring_max_bytes: 16 * 1024,
        sync_max_revisions: 50,
        ..HubConfig::default()
    });
    let s = h.hub.open_stream();
    for i in 0..5 {
        s.create(&WatchSpec {
            prev_kv: i % 2 == 0,
            ..create("p/", "p0", 0)
        });
    }
    take(&s, 5);
    let value = "x".repeat(300);
    let mut max_bytes = 0;
    let mut last = 0;
    for round in 0..20 {
        h.begin_group();
        for i in 0..50 {
            last = h.put(&format!("p/{}", (round * 50 + i) % 7), &value);
            max_bytes = max_bytes.max(s.queue().bytes());
        }
        h.end_group();
    }
    std::thread::sleep(Duration::from_millis(200));
    max_bytes = max_bytes.max(s.queue().bytes());
    // one over-budget response at most beyond the budget
    assert!(max_bytes <= 8 * 1024 + 5 * 400, "queue grew to {max_bytes}");
    assert!(h.hub.counts().2 > 0, "watchers should be unsynced");
    wait_for(|| h.hub.ring_usage().0 <= 16);
    // read everything
    let mut seen: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.values().map(|v| v.len()).sum::<usize>() < 5 * 1000 {
        assert!(Instant::now() < deadline, "missing events");
        match s.queue().try_pop() {
            Some(Outgoing::Events(e)) => {
                let revs = seen.entry(e.watch_id).or_default();
                for x in &e.events {
                    revs.push(x.revision());
                    if e.prev_kv {
                        let prev = x.event().prev_kv.as_ref();
                        if x.revision() > 8 {
                            assert_eq!(prev.map(|p| p.value.len()), Some(300));
                        }
                    }
                }
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    for (id, revs) in &seen {
        assert_eq!(revs, &(2..=last).collect::<Vec<_>>(), "watcher {id}");
    }
    quiet(&s);
    assert_eq!(h.hub.counts().2, 0);
}

#[test]
fn compaction_cancels_watchers_behind_it() {
    let h = harness(HubConfig {
        ring_max_revisions: 1,
        ring_max_bytes: 1,
        ..HubConfig::default()
    });
    h.begin_group();
    for i in 0..10 {
        h.put("k", &i.to_string()); // 2..=11
    }
    h.end_group();
    h.compact(6);
    let s = h.hub.open_stream();
    // a start below the compaction: created, then canceled with compact_revision
    s.create(&create("k", "", 3));
    // exactly at the compaction revision is still allowed
    s.create(&create("k", "", 6));
    let got = take(&s, 4);
    assert_eq!(
        *control(&got[0]),
        Control {
            watch_id: 0,
            revision: 11,
            created: true,
            ..Control::default()
        }
    );
    assert_eq!(
        *control(&got[1]),
        Control {
            watch_id: 0,
            revision: 0,
            canceled: true,
            compact_revision: 6,
            ..Control::default()
        }
    );
    assert!(control(&got[2]).created);
    // 6..=11, in one catch-up response or partly live
    let mut revs: Vec<i64> = events(&got[3])
        .events
        .iter()
        .map(|x| x.revision())
        .collect();
    while revs.len() < 6 {
        revs.extend(events(&take(&s, 1)[0]).events.iter().map(|x| x.revision()));
    }
    assert_eq!(revs, (6..=11).collect::<Vec<_>>());
    // a compacted watcher keeps its id until canceled, as in etcd
    s.create(&WatchSpec {
        watch_id: 9,
        ..create("k", "", 2)
    });
    let got = take(&s, 2);
    assert!(control(&got[0]).created);
    assert_eq!(control(&got[1]).compact_revision, 6);
    s.create(&WatchSpec {
        watch_id: 9,
        ..create("k", "", 0)
    });
    assert_eq!(control(&take(&s, 1)[0]).cancel_reason, ERR_DUPLICATE_ID);
    assert_eq!(h.hub.counts().0, 3);
    assert!(s.cancel(9));
    assert!(control(&take(&s, 1)[0]).canceled);
    assert!(!s.cancel(9));
    assert_eq!(h.hub.counts().0, 2);
    quiet(&s);
}

#[test]
fn compaction_cancels_an_unsynced_watcher() {
    let h = harness(HubConfig {
        ring_max_revisions: 1,
        ring_max_bytes: 1,
        stream_max_bytes: 1,
        sync_max_revisions: 2,
        ..HubConfig::default()
    });
    h.begin_group();
    for i in 0..10 {
        h.put("k", &i.to_string()); // 2..=11
    }
    h.end_group();
    let s = h.hub.open_stream();
    s.create(&create("k", "", 2));
    let got = take(&s, 2);
    assert!(control(&got[0]).created);
    // a budget of one byte: catch-up goes one revision per response, one response queued
    assert_eq!(summary(events(&got[1])), vec![ev(PUT, "k", "0", 2)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.queue().len() != 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(h.hub.counts().2, 1, "still catching up");
    h.compact(9);
    let rest = take(&s, 2);
    assert_eq!(summary(events(&rest[0])), vec![ev(PUT, "k", "1", 3)]);
    assert_eq!(
        *control(&rest[1]),
        Control {
            watch_id: 0,
            canceled: true,
            compact_revision: 9,
            ..Control::default()
        }
    );
    quiet(&s);
    assert_eq!(h.hub.counts(), (1, 0, 0, 1));
}

#[test]
fn progress_requests_and_notifications() {
    let h = harness(HubConfig::default());
    let s = h.hub.open_stream();
    s.request_progress(); // no watchers: answered at once
    assert_eq!(
        *control(&take(&s, 1)[0]),
        Control {
            watch_id: -1,
            revision: 1,
            ..Control::default()
        }
    );
    h.put("a", "1");
    s.create(&WatchSpec {
        progress_notify: true,
        ..create("a", "", 0)
    });
    s.create(&create("b", "", 0));
    take(&s, 2);
    s.request_progress();
    assert_eq!(
        *control(&take(&s, 1)[0]),
        Control {
            watch_id: -1,
            revision: 2,
            ..Control::default()
        }
    );
    // the periodic tick: only the watcher that asked, only without events since last tick
    s.progress_tick();
    assert_eq!(
        *control(&take(&s, 1)[0]),
        Control {
            watch_id: 0,
            revision: 2,
            ..Control::default()
        }
    );
    h.put("a", "2");
    take(&s, 1);
    s.progress_tick(); // events were sent: skipped
    quiet(&s);
    s.progress_tick();
    assert_eq!(control(&take(&s, 1)[0]).revision, 3);
    quiet(&s);
}

#[test]
fn cancel_stops_events() {
    let h = harness(HubConfig::default());
    let s = h.hub.open_stream();
    s.create(&create("a", "", 0));
    take(&s, 1);
    h.put("a", "1");
    assert_eq!(summary(events(&take(&s, 1)[0])), vec![ev(PUT, "a", "1", 2)]);
    assert!(s.cancel(0));
    h.put("a", "2");
    let got = take(&s, 1);
    assert_eq!(
        *control(&got[0]),
        Control {
            watch_id: 0,
            revision: 2,
            canceled: true,
            ..Control::default()
        }
    );
    quiet(&s);
    assert!(!s.cancel(5));
    assert_eq!(h.hub.counts(), (0, 0, 0, 1));
}

/// Many watchers on many streams with every kind of range see exactly their events.
#[test]
fn many_watchers_see_exactly_their_events() {
    let h = harness(HubConfig {
        stream_max_bytes: 16 * 1024,
        ring_max_revisions: 32,
        ring_max_bytes: 64 * 1024,
        ..HubConfig::default()
    });
    let streams: Vec<WatchStreamHandle> = (0..4).map(|_| h.hub.open_stream()).collect();
    let key = |i: usize| format!("k{:02}", i % 40);
    let mut specs = Vec::new();
    for i in 0..200usize {
        let (k, e) = match i % 4 {
            0 => (key(i), String::new()),
            1 => (format!("k{}", i % 4), format!("k{}", i % 4 + 1)),
            2 => (key(i), "\0".to_string()),
            _ => (key(i), format!("k{:02}", (i % 40 + 7).min(40))),
        };
        let start = if i % 3 == 0 { 2 + (i as i64 % 50) } else { 0 };
        specs.push((i % 4, k, e, start));
    }
    // some history first, so past starts replay it
    h.begin_group();
    for i in 0..60 {
        h.put(&key(i * 7), &format!("h{i}"));
    }
    h.end_group();
    for (si, k, e, start) in &specs {
        streams[*si].create(&create(k, e, *start));
    }
    for i in 0..300usize {
        if i % 10 == 0 {
            h.begin_group();
        }
        if i % 13 == 0 {
            h.txn(&[Op::Del(&key(i), &key(i + 5))]);
        } else {
            h.txn(&[Op::Put(&key(i * 3), "a"), Op::Put(&key(i * 3 + 1), "b")]);
        }
        if i % 10 == 9 {
            h.end_group();
        }
    }
    let head = h.hub.revision();
    // expected: every event of the store's history in the span from the start revision
    let backend = h.store.read().backend().clone();
    let history: Vec<(i64, Vec<u8>)> = crate::mvcc::events_between(&backend, 2, head)
        .map(|r| {
            let (rev, e) = r.unwrap();
            (rev.main, e.kv.key)
        })
        .collect();
    let mut watch_ids: Vec<Vec<(i64, usize)>> = vec![Vec::new(); 4];
    for (n, (si, ..)) in specs.iter().enumerate() {
        let id = watch_ids[*si].len() as i64;
        watch_ids[*si].push((id, n));
    }
    for (si, s) in streams.iter().enumerate() {
        let ids = &watch_ids[si];
        let mut got: std::collections::HashMap<i64, Vec<(i64, Vec<u8>)>> = Default::default();
        let mut created = 0;
        let want: std::collections::HashMap<i64, Vec<(i64, Vec<u8>)>> = ids
            .iter()
            .map(|&(id, n)| {
                let (_, k, e, start) = &specs[n];
                let span = KeySpan::from_request(k.as_bytes(), e.as_bytes()).unwrap();
                let created_at = 61; // history ends at 61
                let from = if *start == 0 { created_at + 1 } else { *start };
                let evs = history
                    .iter()
                    .filter(|(rev, key)| *rev >= from && span.contains(key))
                    .cloned()
                    .collect();
                (id, evs)
            })
            .collect();
        let total: usize = want.values().map(|v| v.len()).sum();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 0;
        while n < total || created < ids.len() {
            assert!(Instant::now() < deadline, "stream {si}: {n} of {total}");
            match s.queue().try_pop() {
                Some(Outgoing::Control(c)) => {
                    assert!(c.created && !c.canceled);
                    created += 1;
                }
                Some(Outgoing::Events(e)) => {
                    let v = got.entry(e.watch_id).or_default();
                    for x in &e.events {
                        n += 1;
                        v.push((x.revision(), x.event().kv.as_ref().unwrap().key.clone()));
                    }
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        for (id, w) in &want {
            assert_eq!(
                got.get(id).cloned().unwrap_or_default(),
                *w,
                "stream {si} watch {id}"
            );
        }
    }
    for s in &streams {
        quiet(s);
    }
}

/// Revision 1 (the empty store) has no events anywhere: a watcher starting there must still
/// move on to revision 2, from the backend as from the ring.
#[test]
fn start_at_revision_one() {
    for ring_max_revisions in [0, 4096] {
        let h = harness(HubConfig {
            ring_max_revisions,
            ring_max_bytes: if ring_max_revisions == 0 { 0 } else { 1 << 20 },
            ..HubConfig::default()
        });
        h.begin_group();
        h.put("a", "1");
        h.put("a", "2");
        h.end_group();
        wait_for(|| ring_max_revisions > 0 || h.hub.ring_usage().0 == 0);
        let s = h.hub.open_stream();
        s.create(&create("a", "", 1));
        let mut vals = Vec::new();
        take(&s, 1);
        while vals.len() < 2 {
            vals.extend(summary(events(&take(&s, 1)[0])).into_iter().map(|x| x.2));
        }
        assert_eq!(vals, vec!["1", "2"], "ring {ring_max_revisions}");
        quiet(&s);
    }
}

/// A dispatcher that falls far behind hands its watchers to the syncer and skips ahead; the
/// watchers still get every revision, in order, with prev_kv.
#[test]
fn dispatcher_overload_hands_watchers_to_the_syncer() {
    let h = harness(HubConfig {
        dispatch_max_backlog: 8,
        ..HubConfig::default()
    });
    let s = h.hub.open_stream();
    s.create(&create("k", "", 0));
    s.create(&WatchSpec {
        prev_kv: true,
        ..create("a", "\0", 0)
    });
    take(&s, 2);
    h.put("k", "first");
    assert_eq!(summary(events(&take(&s, 1)[0])).len(), 1);
    assert_eq!(summary(events(&take(&s, 1)[0])).len(), 1);
    {
        let _stalled = h.hub.stall();
        for i in 0..50 {
            h.put("k", &i.to_string());
        }
    }
    let mut got: std::collections::BTreeMap<i64, Vec<(String, Option<String>)>> =
        Default::default();
    while got.values().map(|v| v.len()).sum::<usize>() < 100 {
        let m = take(&s, 1);
        let e = events(&m[0]);
        for x in summary(e) {
            got.entry(e.watch_id).or_default().push((x.2, x.4));
        }
    }
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    for id in [0, 1] {
        let vals: Vec<String> = got[&id].iter().map(|x| x.0.clone()).collect();
        assert_eq!(vals, want, "watcher {id}");
    }
    let prevs: Vec<Option<String>> = got[&1].iter().map(|x| x.1.clone()).collect();
    let mut want_prev = vec![Some("first".to_string())];
    want_prev.extend((0..49).map(|i| Some(i.to_string())));
    assert_eq!(prevs, want_prev);
    assert!(h.hub.overloads() >= 1, "the dispatcher never skipped ahead");
    quiet(&s);
    wait_for(|| h.hub.counts().2 == 0);
}

/// After a snapshot replaced the store, watchers catch up from the new backend.
#[test]
fn restore_catches_watchers_up_from_the_new_store() {
    let h = harness(HubConfig::default());
    let s = h.hub.open_stream();
    s.create(&create("k", "", 0));
    take(&s, 1);
    h.put("k", "1"); // 2
    assert_eq!(summary(events(&take(&s, 1)[0])), vec![ev(PUT, "k", "1", 2)]);
    {
        // what a snapshot brings: revisions the hub never saw
        let mut st = h.store.write();
        for v in ["2", "3", "4"] {
            let mut t = st.write(0);
            t.put(b"k", v.as_bytes(), 0);
            t.commit().unwrap();
        }
        let (rev, compact) = (st.current_revision(), st.compact_revision());
        assert_eq!(rev, 5);
        h.hub.restore(rev, compact);
    }
    assert_eq!(h.hub.revision(), 5);
    let e = take(&s, 1);
    assert_eq!(
        summary(events(&e[0])),
        vec![
            ev(PUT, "k", "2", 3),
            ev(PUT, "k", "3", 4),
            ev(PUT, "k", "4", 5)
        ]
    );
    wait_for(|| h.hub.counts().2 == 0);
    let r = h.put("k", "5");
    assert_eq!(summary(events(&take(&s, 1)[0])), vec![ev(PUT, "k", "5", r)]);
    quiet(&s);
}
