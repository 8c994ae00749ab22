//! The watch hub: every watcher of every stream, the recent revisions, and the two threads
//! that feed watchers.
//!
//! * The applier hands each committed revision's events to [`WatchHub::notify`], which only
//!   appends them to the **ring** (a bounded in-memory window of recent revisions) and wakes
//!   the dispatcher: the applier never waits for a client.
//! * The **dispatcher** thread takes new revisions from the ring in order and fans each one out
//!   to the **synced** watchers (those that have seen everything up to the last dispatched
//!   revision), found through an interval index ([`WatcherGroup`]). A push into a stream's
//!   bounded queue never waits: when the queue is over budget the watcher becomes
//!   **unsynced** at the revision it missed, and the stream keeps every earlier response.
//! * The **syncer** thread catches unsynced watchers up in bounded chunks: from the ring when
//!   the revisions are still there, otherwise from the backend (revisions leave the ring only
//!   after the backend committed them), then moves them back to synced. A chunk is at most
//!   `sync_max_revisions` revisions and about `sync_max_bytes`, and only goes to streams with
//!   room, so a stream that stopped reading costs no memory beyond its queue budget.
//!
//! Ordering: every response for a watcher is queued under the state lock in revision order;
//! a watcher is either synced (fed only by the dispatcher) or unsynced (fed only by the
//! syncer), never both, and moves from unsynced to synced only when it has seen everything up
//! to the last dispatched revision. Events of one revision are always in one response.
//!
//! Locks: `state` may be taken before `ring`, never the other way; the store lock is never
//! taken while holding either (the applier holds the store lock while calling `notify`).

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use super::interval::{IdMap, IdSet, KeySpan, WatcherGroup, WatcherId};
use super::queue::{Signal, StreamQueue};
use crate::backend::Backend;
use crate::metrics::METRICS;
use crate::mvcc::{events_between, Event, EventType, KeyValue, MvccError, RangeOptions, Store};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::WatchCreateRequest;
use crate::proto::mvccpb;

/// etcd's `clientv3.InvalidWatchID`: the id of responses that belong to no single watcher.
pub const INVALID_WATCH_ID: i64 = -1;

/// etcd's error when a client picks a watch id already used on the stream.
pub const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// etcd's error for a range whose end is not above its start.
pub const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// Identifies one stream in the hub.
pub type StreamId = u64;

/// Bounds of the hub's memory and work per step.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Revisions the ring keeps once the backend has them (it always keeps the ones it does
    /// not have yet, and the ones not dispatched yet).
    pub ring_max_revisions: usize,
    /// Bytes of events the ring keeps once the backend has them.
    pub ring_max_bytes: usize,
    /// A stream's queue budget: past it, live events make watchers unsynced instead of queueing.
    pub stream_max_bytes: usize,
    /// Unsynced watchers caught up per syncer step (etcd: 512).
    pub sync_max_watchers: usize,
    /// Revisions read per syncer step (etcd: 1000 per watcher batch).
    pub sync_max_revisions: i64,
    /// Bytes of events read per syncer step (beyond the first revision).
    pub sync_max_bytes: usize,
    /// How long the syncer sleeps when nothing wakes it (etcd's sync loop runs every 100 ms).
    pub sync_interval: Duration,
    /// Revisions the dispatcher may fall behind the applier before it hands every synced
    /// watcher to the syncer and skips ahead, so an overloaded hub keeps bounded memory
    /// instead of a growing backlog.
    pub dispatch_max_backlog: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            ring_max_revisions: 4096,
            ring_max_bytes: 32 * 1024 * 1024,
            stream_max_bytes: 4 * 1024 * 1024,
            sync_max_watchers: 512,
            sync_max_revisions: 1000,
            sync_max_bytes: 1024 * 1024,
            sync_interval: Duration::from_millis(100),
            dispatch_max_backlog: 4096,
        }
    }
}

/// The events of one revision, shared by every response that carries them.
#[derive(Debug)]
pub struct RevEntry {
    /// The revision.
    pub rev: i64,
    /// Its events in sub-revision order, with `prev_kv` filled where known.
    pub events: Vec<mvccpb::Event>,
    /// Each event's protobuf encoding, made once on first send and then copied into every
    /// response that carries it (thousands of watchers of one key get the same bytes):
    /// `[without prev_kv, with prev_kv]`.
    wire: Vec<[OnceLock<Vec<u8>>; 2]>,
    bytes: usize,
}

impl RevEntry {
    /// Wraps the events of revision `rev`.
    pub fn new(rev: i64, events: Vec<mvccpb::Event>) -> Self {
        // Budgets count the encodings as well, which may be made later.
        let bytes = events.iter().map(|e| 2 * event_bytes(e)).sum();
        let wire = events.iter().map(|_| Default::default()).collect();
        RevEntry {
            rev,
            events,
            wire,
            bytes,
        }
    }
}

/// Approximate memory of one event (for budgets, not exact).
fn event_bytes(e: &mvccpb::Event) -> usize {
    let kv = |kv: &Option<mvccpb::KeyValue>| {
        kv.as_ref()
            .map(|kv| kv.key.len() + kv.value.len() + 48)
            .unwrap_or(0)
    };
    16 + kv(&e.kv) + kv(&e.prev_kv)
}

/// One event of a shared [`RevEntry`].
#[derive(Debug, Clone)]
pub struct EventRef {
    entry: Arc<RevEntry>,
    index: u32,
}

impl EventRef {
    /// Event `index` of `entry`.
    pub fn new(entry: Arc<RevEntry>, index: u32) -> Self {
        assert!((index as usize) < entry.events.len(), "no event {index}");
        EventRef { entry, index }
    }

    /// The event.
    pub fn event(&self) -> &mvccpb::Event {
        &self.entry.events[self.index as usize]
    }

    /// The event's protobuf encoding, with or without its `prev_kv` (encoded on first use,
    /// then shared).
    pub fn encoded(&self, prev_kv: bool) -> &[u8] {
        use prost::Message as _;
        let i = self.index as usize;
        let ev = &self.entry.events[i];
        let with = prev_kv && ev.prev_kv.is_some();
        self.entry.wire[i][usize::from(with)].get_or_init(|| {
            if with || ev.prev_kv.is_none() {
                ev.encode_to_vec()
            } else {
                mvccpb::Event {
                    r#type: ev.r#type,
                    kv: ev.kv.clone(),
                    prev_kv: None,
                }
                .encode_to_vec()
            }
        })
    }

    /// Its revision.
    pub fn revision(&self) -> i64 {
        self.entry.rev
    }
}

/// A response without a header (the api layer adds cluster, member, term).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    /// The watch id (-1 for stream-wide progress and refused creates).
    pub watch_id: i64,
    /// The header revision.
    pub revision: i64,
    /// A create reply.
    pub created: bool,
    /// The watcher is gone.
    pub canceled: bool,
    /// Set when canceled by compaction.
    pub compact_revision: i64,
    /// Why a create was refused.
    pub cancel_reason: String,
}

/// Events for one watcher: one revision when live, several when catching up; never part of
/// a revision.
#[derive(Debug, Clone)]
pub struct EventsMsg {
    /// The watch id.
    pub watch_id: i64,
    /// The header revision: the last revision this response covers.
    pub revision: i64,
    /// The events, already filtered.
    pub events: Vec<EventRef>,
    /// Whether the watcher asked for `prev_kv` (otherwise strip it).
    pub prev_kv: bool,
    /// Whether the watcher allows splitting a large response.
    pub fragment: bool,
}

/// What the hub queues for a stream.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Created / canceled / progress / compaction.
    Control(Control),
    /// Events.
    Events(EventsMsg),
}

impl Outgoing {
    /// Bytes charged against the stream's budget.
    pub(crate) fn size_estimate(&self) -> usize {
        match self {
            Outgoing::Control(c) => 96 + c.cancel_reason.len(),
            Outgoing::Events(m) => {
                96 + m
                    .events
                    .iter()
                    .map(|e| 16 + event_bytes(e.event()))
                    .sum::<usize>()
            }
        }
    }

    /// Events carried (for the pending-events gauge).
    pub(crate) fn event_count(&self) -> usize {
        match self {
            Outgoing::Control(_) => 0,
            Outgoing::Events(m) => m.events.len(),
        }
    }
}

/// The hub's view of one watcher.
struct Watcher {
    stream: StreamId,
    watch_id: i64,
    span: KeySpan,
    /// The next revision this watcher wants (everything before it is queued or skipped).
    next_rev: i64,
    /// The requested start revision (0 = from now); progress waits until it is reached.
    start_rev: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// Events were queued since the last progress tick (etcd skips the notification then).
    sent_since_tick: bool,
    where_: Place,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Synced,
    Unsynced,
    /// Canceled by compaction; kept until the client cancels it or closes the stream, as etcd
    /// keeps the id taken.
    Compacted,
}

impl Watcher {
    fn wants(&self, e: &mvccpb::Event) -> bool {
        if e.r#type == mvccpb::event::EventType::Put as i32 {
            !self.no_put
        } else {
            !self.no_delete
        }
    }
}

struct StreamEntry {
    queue: Arc<StreamQueue>,
    ids: IdMap<i64, WatcherId>,
    next_watch_id: i64,
}

struct State {
    watchers: IdMap<WatcherId, Watcher>,
    streams: IdMap<StreamId, StreamEntry>,
    synced: WatcherGroup,
    unsynced: BTreeSet<WatcherId>,
    /// The syncer resumes its round-robin here.
    sync_cursor: WatcherId,
    /// Every revision up to this one has been offered to the synced watchers.
    dispatched: i64,
    compact_rev: i64,
    next_watcher: WatcherId,
    next_stream: StreamId,
    progress_waiting: IdSet<StreamId>,
    /// Bumped when the store is being replaced: a catch-up step that read the old backend
    /// delivers nothing.
    generation: u64,
    /// The backend is being replaced by a snapshot: no catch-up until `restore`.
    restoring: bool,
}

struct Ring {
    entries: VecDeque<Arc<RevEntry>>,
    bytes: usize,
    /// The newest revision handed over by the applier.
    head: i64,
    /// The newest revision committed to the backend.
    committed: i64,
    /// Mirror of `State::dispatched` (entries after it must stay for the dispatcher).
    dispatched: i64,
}

impl Ring {
    /// The oldest revision held (head + 1 when empty).
    fn oldest(&self) -> i64 {
        self.entries.front().map(|e| e.rev).unwrap_or(self.head + 1)
    }

    /// Entries with `from <= rev <= to`: at most `max_count`, and at most `max_bytes` beyond
    /// the first.
    fn range(&self, from: i64, to: i64, max_bytes: usize, max_count: usize) -> Vec<Arc<RevEntry>> {
        let start = self.entries.partition_point(|e| e.rev < from);
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.entries.range(start..) {
            if e.rev > to
                || out.len() >= max_count
                || (!out.is_empty() && bytes + e.bytes > max_bytes)
            {
                break;
            }
            bytes += e.bytes;
            out.push(e.clone());
        }
        out
    }

    fn evict(&mut self, max_revisions: usize, max_bytes: usize) {
        let keep_after = self.committed.min(self.dispatched);
        while self.entries.len() > max_revisions || self.bytes > max_bytes {
            match self.entries.front() {
                Some(e) if e.rev <= keep_after => {
                    self.bytes -= e.bytes;
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }
}

/// What one syncer step reads.
enum Source {
    Ring(Vec<Arc<RevEntry>>),
    Backend { from: i64, to: i64 },
}

/// A watcher chosen for a syncer step, as it was when chosen.
struct Chosen {
    id: WatcherId,
    span: KeySpan,
    next_rev: i64,
    prev_kv: bool,
}

/// The watch hub (see the module docs).
pub struct WatchHub {
    cfg: HubConfig,
    state: Mutex<State>,
    ring: Mutex<Ring>,
    /// The dispatcher waits here for new revisions.
    ring_cv: Condvar,
    syncer: Arc<Signal>,
    store: Arc<RwLock<Store>>,
    backend: Arc<Backend>,
    stopping: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Times the dispatcher fell too far behind and skipped ahead (diagnostics).
    overloads: AtomicU64,
}

impl WatchHub {
    /// Creates the hub at the store's current revision and starts its dispatcher and syncer
    /// threads.
    pub fn start(store: Arc<RwLock<Store>>, cfg: HubConfig) -> std::io::Result<Arc<WatchHub>> {
        let (rev, compact_rev, backend) = {
            let s = store.read();
            (
                s.current_revision(),
                s.compact_revision(),
                s.backend().clone(),
            )
        };
        let hub = Arc::new(WatchHub {
            cfg,
            state: Mutex::new(State {
                watchers: IdMap::default(),
                streams: IdMap::default(),
                synced: WatcherGroup::default(),
                unsynced: BTreeSet::new(),
                sync_cursor: 0,
                dispatched: rev,
                compact_rev,
                next_watcher: 1,
                next_stream: 1,
                progress_waiting: IdSet::default(),
                generation: 0,
                restoring: false,
            }),
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                bytes: 0,
                head: rev,
                committed: rev,
                dispatched: rev,
            }),
            ring_cv: Condvar::new(),
            syncer: Arc::new(Signal::default()),
            store,
            backend,
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            overloads: AtomicU64::new(0),
        });
        let d = hub.clone();
        let dispatcher = std::thread::Builder::new()
            .name("watch-dispatch".into())
            .spawn(move || d.run_dispatcher())?;
        let s = hub.clone();
        let syncer = std::thread::Builder::new()
            .name("watch-sync".into())
            .spawn(move || s.run_syncer())?;
        hub.threads.lock().extend([dispatcher, syncer]);
        Ok(hub)
    }

    /// Stops the hub's threads (streams see no more events).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        {
            let _ring = self.ring.lock();
            self.ring_cv.notify_all();
        }
        self.syncer.raise();
        for t in std::mem::take(&mut *self.threads.lock()) {
            let _ = t.join();
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    // ----- applier side -------------------------------------------------------------------

    /// Hands over the events of the revision `rev` that the applier just committed. Called
    /// with the store's write lock held, so a reader that sees `rev` in the store also finds
    /// it here. Never waits for a watcher.
    pub fn notify(&self, rev: i64, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let entry = Arc::new(RevEntry::new(rev, events.into_iter().map(to_pb).collect()));
        let mut ring = self.ring.lock();
        if rev <= ring.head {
            tracing::warn!(
                rev,
                head = ring.head,
                "watch hub got a revision it already has; ignored"
            );
            return;
        }
        ring.head = rev;
        ring.bytes += entry.bytes;
        ring.entries.push_back(entry);
        self.ring_cv.notify_one();
    }

    /// Tells the hub the backend now holds every revision up to `rev`, so the ring may let
    /// them go (catch-up then reads them from the backend).
    pub fn committed(&self, rev: i64) {
        let mut ring = self.ring.lock();
        if rev > ring.committed {
            ring.committed = rev;
            ring.evict(self.cfg.ring_max_revisions, self.cfg.ring_max_bytes);
        }
    }

    /// Records a compaction at `rev` (call before the physical compaction starts): watchers
    /// that still need a revision below it are canceled with `compact_revision`, as etcd does.
    pub fn compacted(&self, rev: i64) {
        let mut st = self.state.lock();
        if rev <= st.compact_rev {
            return;
        }
        st.compact_rev = rev;
        let behind: Vec<WatcherId> = st
            .unsynced
            .iter()
            .copied()
            .filter(|id| st.watchers[id].next_rev < rev)
            .collect();
        for id in behind {
            cancel_compacted(&mut st, id);
        }
        update_slow_gauge(&st);
        check_progress(&mut st);
    }

    /// The newest revision handed over by the applier.
    pub fn revision(&self) -> i64 {
        self.ring.lock().head
    }

    // ----- streams ------------------------------------------------------------------------

    /// Opens a stream: the returned handle creates and cancels watchers and yields the
    /// stream's responses; dropping it removes its watchers.
    pub fn open_stream(self: &Arc<Self>) -> WatchStreamHandle {
        let queue = Arc::new(StreamQueue::new(
            self.cfg.stream_max_bytes,
            self.syncer.clone(),
        ));
        let mut st = self.state.lock();
        let id = st.next_stream;
        st.next_stream += 1;
        st.streams.insert(
            id,
            StreamEntry {
                queue: queue.clone(),
                ids: IdMap::default(),
                next_watch_id: 0,
            },
        );
        METRICS.watch_streams.inc();
        tracing::debug!(stream = id, "watch stream opened");
        WatchStreamHandle {
            hub: self.clone(),
            id,
            queue,
        }
    }

    fn create(&self, sid: StreamId, req: &WatchCreateRequest) {
        let mut st = self.state.lock();
        let head = self.ring.lock().head;
        let st = &mut *st;
        let Some(stream) = st.streams.get_mut(&sid) else {
            return;
        };
        let refuse = |stream: &StreamEntry, reason: &str| {
            stream.queue.push_control(Outgoing::Control(Control {
                watch_id: INVALID_WATCH_ID,
                revision: head,
                created: true,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Control::default()
            }))
        };
        let Some(span) = KeySpan::from_request(&req.key, &req.range_end) else {
            refuse(stream, ERR_EMPTY_RANGE);
            return;
        };
        let watch_id = if req.watch_id == 0 {
            while stream.ids.contains_key(&stream.next_watch_id) {
                stream.next_watch_id += 1;
            }
            stream.next_watch_id += 1;
            stream.next_watch_id - 1
        } else if stream.ids.contains_key(&req.watch_id) {
            refuse(stream, ERR_DUPLICATE_ID);
            return;
        } else {
            req.watch_id
        };
        let id = st.next_watcher;
        st.next_watcher += 1;
        stream.ids.insert(watch_id, id);
        stream.queue.push_control(Outgoing::Control(Control {
            watch_id,
            revision: head,
            created: true,
            ..Control::default()
        }));
        let start = req.start_revision;
        let (next_rev, place) = if start <= 0 {
            (head + 1, Place::Synced)
        } else if start > st.dispatched {
            (start, Place::Synced)
        } else {
            (start, Place::Unsynced)
        };
        let w = Watcher {
            stream: sid,
            watch_id,
            span,
            next_rev,
            start_rev: start.max(0),
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: req.prev_kv,
            fragment: req.fragment,
            progress_notify: req.progress_notify,
            sent_since_tick: false,
            where_: place,
        };
        match place {
            Place::Synced => st.synced.add(id, &w.span),
            _ => {
                st.unsynced.insert(id);
            }
        }
        st.watchers.insert(id, w);
        METRICS.watchers.inc();
        if start > 0 && st.compact_rev > 0 && start < st.compact_rev {
            // Even if the ring still holds those revisions: etcd refuses a compacted start.
            cancel_compacted(st, id);
        } else if place == Place::Unsynced {
            self.syncer.raise();
        }
        update_slow_gauge(st);
    }

    fn cancel(&self, sid: StreamId, watch_id: i64) -> bool {
        let mut st = self.state.lock();
        let head = self.ring.lock().head;
        let st = &mut *st;
        let Some(stream) = st.streams.get_mut(&sid) else {
            return false;
        };
        let Some(id) = stream.ids.remove(&watch_id) else {
            return false;
        };
        stream.queue.push_control(Outgoing::Control(Control {
            watch_id,
            revision: head,
            canceled: true,
            ..Control::default()
        }));
        remove_watcher(st, id);
        update_slow_gauge(st);
        check_progress(st);
        true
    }

    fn request_progress(&self, sid: StreamId) {
        let mut st = self.state.lock();
        if !st.streams.contains_key(&sid) {
            return;
        }
        st.progress_waiting.insert(sid);
        check_progress(&mut st);
    }

    fn progress_tick(&self, sid: StreamId) {
        let mut st = self.state.lock();
        let st = &mut *st;
        let Some(stream) = st.streams.get(&sid) else {
            return;
        };
        let dispatched = st.dispatched;
        for &id in stream.ids.values() {
            let Some(w) = st.watchers.get_mut(&id) else {
                continue;
            };
            if !w.progress_notify {
                continue;
            }
            if !w.sent_since_tick && is_synced(w, dispatched) {
                // Like etcd, a full stream simply skips this notification.
                let _ = stream.queue.try_push(Outgoing::Control(Control {
                    watch_id: w.watch_id,
                    revision: dispatched,
                    ..Control::default()
                }));
            }
            w.sent_since_tick = false;
        }
    }

    fn close_stream(&self, sid: StreamId) {
        let mut st = self.state.lock();
        let Some(stream) = st.streams.remove(&sid) else {
            return;
        };
        stream.queue.close();
        st.progress_waiting.remove(&sid);
        for (_, id) in stream.ids {
            remove_watcher(&mut st, id);
        }
        update_slow_gauge(&st);
        METRICS.watch_streams.dec();
        tracing::debug!(stream = sid, "watch stream closed");
    }

    // ----- dispatcher ---------------------------------------------------------------------

    fn run_dispatcher(self: Arc<Self>) {
        let mut hits: IdMap<WatcherId, Vec<u32>> = IdMap::default();
        let mut matched: Vec<WatcherId> = Vec::new();
        loop {
            let batch: Vec<Arc<RevEntry>> = {
                let mut ring = self.ring.lock();
                while ring.head <= ring.dispatched && !self.stopping() {
                    self.ring_cv.wait(&mut ring);
                }
                if self.stopping() {
                    return;
                }
                if ring.head - ring.dispatched > self.cfg.dispatch_max_backlog as i64 {
                    let head = ring.head;
                    drop(ring);
                    self.skip_ahead(head);
                    continue;
                }
                let from = ring.dispatched + 1;
                ring.range(from, ring.head, usize::MAX, 256)
            };
            let Some(last) = batch.last().map(|e| e.rev) else {
                // The ring keeps every revision until it is dispatched, so this is a bug;
                // recover by catching every watcher up rather than spinning.
                let head = self.ring.lock().head;
                tracing::error!(head, "watch ring lost undispatched revisions");
                self.skip_ahead(head);
                continue;
            };
            {
                let mut st = self.state.lock();
                for entry in &batch {
                    // A restore or a skip-ahead may have moved past what was taken.
                    if entry.rev > st.dispatched {
                        dispatch(&mut st, entry, &mut hits, &mut matched);
                    }
                }
                check_progress(&mut st);
                update_slow_gauge(&st);
            }
            let mut ring = self.ring.lock();
            ring.dispatched = ring.dispatched.max(last);
            ring.evict(self.cfg.ring_max_revisions, self.cfg.ring_max_bytes);
            drop(ring);
            self.syncer.raise();
        }
    }

    /// The dispatcher fell more than `dispatch_max_backlog` revisions behind (a fan-out far
    /// beyond what this machine can push): every synced watcher is handed to the syncer from
    /// the revision it needs next and the dispatcher continues at `head`. Nothing is lost (the
    /// syncer reads the ring or the backend in bounded chunks, as fast as each stream reads),
    /// and the backlog no longer pins the ring.
    fn skip_ahead(&self, head: i64) {
        let mut st = self.state.lock();
        let st = &mut *st;
        if head <= st.dispatched {
            return; // a restore already moved past it
        }
        let from = st.dispatched + 1;
        let demoted = demote_synced(st, from, head);
        st.dispatched = head;
        check_progress(st);
        update_slow_gauge(st);
        self.overloads.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            behind = head - from + 1,
            watchers = demoted,
            "watch dispatch fell behind; synced watchers continue from the ring and backend"
        );
        let mut ring = self.ring.lock();
        ring.dispatched = ring.dispatched.max(head);
        ring.evict(self.cfg.ring_max_revisions, self.cfg.ring_max_bytes);
        drop(ring);
        self.syncer.raise();
    }

    /// The backend is about to be replaced by a snapshot: catch-up stops reading it until
    /// [`WatchHub::restore`], and a catch-up step in flight discards what it read.
    pub fn begin_restore(&self) {
        let mut st = self.state.lock();
        st.restoring = true;
        st.generation += 1;
    }

    /// The store was replaced wholesale (a raft snapshot was installed) and is now at `rev`,
    /// compacted at `compact_rev`: the ring no longer matches it, so it is emptied, and every
    /// watcher is caught up from the new backend from the revision it needs next, as etcd's
    /// `watchableStore.Restore` moves all synced watchers to unsynced. Call it with the store
    /// write lock held, after the store was reopened and before applying further entries.
    pub fn restore(&self, rev: i64, compact_rev: i64) {
        let mut st = self.state.lock();
        let st = &mut *st;
        let from = st.dispatched + 1;
        demote_synced(st, from, i64::MAX);
        st.dispatched = rev;
        st.compact_rev = compact_rev;
        st.restoring = false;
        st.generation += 1;
        {
            let mut ring = self.ring.lock();
            ring.entries.clear();
            ring.bytes = 0;
            ring.head = rev;
            ring.committed = rev;
            ring.dispatched = rev;
        }
        update_slow_gauge(st);
        check_progress(st);
        tracing::info!(
            revision = rev,
            compact_revision = compact_rev,
            "watch hub restored"
        );
        self.syncer.raise();
    }

    /// How often the dispatcher skipped ahead (for tests and diagnostics).
    pub fn overloads(&self) -> u64 {
        self.overloads.load(Ordering::Relaxed)
    }

    /// Holds the hub's state lock, which stalls the dispatcher and the syncer (tests only).
    #[cfg(test)]
    pub(super) fn stall(&self) -> impl Drop + '_ {
        self.state.lock()
    }

    // ----- syncer -------------------------------------------------------------------------

    fn run_syncer(self: Arc<Self>) {
        while !self.stopping() {
            if !self.sync_step() {
                self.syncer.wait(self.cfg.sync_interval);
            }
        }
    }

    /// One catch-up step for up to `sync_max_watchers` unsynced watchers; returns whether
    /// anything changed (then another step follows at once).
    fn sync_step(&self) -> bool {
        // 1. choose watchers and what to read, under the lock
        let (chosen, source, generation) = {
            let mut st = self.state.lock();
            if st.unsynced.is_empty() || st.restoring {
                return false;
            }
            let st = &mut *st;
            let mut changed = false;
            let mut chosen: Vec<Chosen> = Vec::new();
            let cursor = st.sync_cursor;
            let order: Vec<WatcherId> = st
                .unsynced
                .range(cursor..)
                .chain(st.unsynced.range(..cursor))
                .copied()
                .collect();
            let mut last = cursor;
            for id in order {
                let w = &st.watchers[&id];
                if st.compact_rev > 0 && w.next_rev < st.compact_rev {
                    cancel_compacted(st, id);
                    changed = true;
                    continue;
                }
                if w.next_rev > st.dispatched {
                    make_synced(st, id);
                    changed = true;
                    continue;
                }
                if !st.streams[&w.stream].queue.has_room() {
                    continue;
                }
                chosen.push(Chosen {
                    id,
                    span: w.span.clone(),
                    next_rev: w.next_rev,
                    prev_kv: w.prev_kv,
                });
                last = id;
                if chosen.len() >= self.cfg.sync_max_watchers {
                    break;
                }
            }
            st.sync_cursor = last + 1;
            if changed {
                check_progress(st);
                update_slow_gauge(st);
            }
            let Some(from) = chosen.iter().map(|c| c.next_rev).min() else {
                return changed;
            };
            let limit = (from + self.cfg.sync_max_revisions - 1).min(st.dispatched);
            let ring = self.ring.lock();
            let source = if from >= ring.oldest() {
                Source::Ring(ring.range(from, limit, self.chunk_bytes(), usize::MAX))
            } else {
                Source::Backend {
                    from,
                    to: limit.min(ring.oldest() - 1),
                }
            };
            (chosen, source, st.generation)
        };

        // 2. read, without the hub's locks
        let mut group = WatcherGroup::default();
        let mut prev_group = WatcherGroup::default();
        for c in &chosen {
            group.add(c.id, &c.span);
            if c.prev_kv {
                prev_group.add(c.id, &c.span);
            }
        }
        let (entries, end) = match source {
            Source::Ring(entries) => match entries.last().map(|e| e.rev) {
                Some(end) => (entries, end),
                None => return false,
            },
            Source::Backend { from, to } => {
                match self.read_backend(from, to, &group, &prev_group) {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::error!(error = %e, from, to, "watch catch-up cannot read the backend; retrying");
                        return false;
                    }
                }
            }
        };

        // 3. deliver, under the lock
        let mut hits: IdMap<WatcherId, Vec<EventRef>> = IdMap::default();
        for entry in &entries {
            for (i, ev) in entry.events.iter().enumerate() {
                let Some(kv) = &ev.kv else { continue };
                group.for_each_match(&kv.key, |id| {
                    hits.entry(id).or_default().push(EventRef {
                        entry: entry.clone(),
                        index: i as u32,
                    })
                });
            }
        }
        let mut st = self.state.lock();
        let st = &mut *st;
        if st.generation != generation {
            return false; // the store was replaced while reading: what was read is stale
        }
        for c in chosen {
            let Some(w) = st.watchers.get_mut(&c.id) else {
                continue; // canceled meanwhile
            };
            if w.where_ != Place::Unsynced || w.next_rev != c.next_rev || w.next_rev > end {
                continue; // changed meanwhile, or this chunk ends before its next revision
            }
            let events: Vec<EventRef> = hits
                .remove(&c.id)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.revision() >= w.next_rev && w.wants(e.event()))
                .collect();
            if !events.is_empty() {
                let msg = Outgoing::Events(EventsMsg {
                    watch_id: w.watch_id,
                    revision: end,
                    events,
                    prev_kv: w.prev_kv,
                    fragment: w.fragment,
                });
                if st.streams[&w.stream].queue.try_push(msg).is_err() {
                    continue; // the stream filled up meanwhile: retry from the same revision
                }
                w.sent_since_tick = true;
            }
            w.next_rev = end + 1;
            if w.next_rev > st.dispatched {
                make_synced(st, c.id);
            }
        }
        check_progress(st);
        update_slow_gauge(st);
        true
    }

    /// Reads revisions `from..=to` from the backend (at most `chunk_bytes` of matching events
    /// beyond the first revision), keeping only events some chosen watcher wants, and looks
    /// up `prev_kv` for the ones a `prev_kv` watcher wants (the key at `rev - 1`, as etcd
    /// does; absent when that revision is compacted). Returns the entries and the last
    /// revision the read covers (revisions without events, such as 1, are covered too).
    fn read_backend(
        &self,
        from: i64,
        to: i64,
        group: &WatcherGroup,
        prev_group: &WatcherGroup,
    ) -> Result<(Vec<Arc<RevEntry>>, i64), MvccError> {
        let mut out: Vec<Arc<RevEntry>> = Vec::new();
        let mut cur: Option<(i64, Vec<mvccpb::Event>)> = None;
        let mut bytes = 0usize;
        let mut covered = to;
        let mut flush = |cur: &mut Option<(i64, Vec<mvccpb::Event>)>, bytes: &mut usize| {
            if let Some((rev, evs)) = cur.take() {
                if !evs.is_empty() {
                    let e = RevEntry::new(rev, evs);
                    *bytes += e.bytes;
                    out.push(Arc::new(e));
                }
            }
        };
        for item in events_between(&self.backend, from, to) {
            let (rev, event) = item?;
            if cur.as_ref().map(|c| c.0) != Some(rev.main) {
                flush(&mut cur, &mut bytes);
                if bytes > self.chunk_bytes() {
                    covered = rev.main - 1;
                    break;
                }
                cur = Some((rev.main, Vec::new()));
            }
            if !group.contains_key(&event.kv.key) {
                continue;
            }
            let mut pb = to_pb(event);
            let is_create = pb.r#type == mvccpb::event::EventType::Put as i32
                && pb
                    .kv
                    .as_ref()
                    .is_some_and(|kv| kv.create_revision == kv.mod_revision);
            if !is_create {
                if let Some(kv) = &pb.kv {
                    if prev_group.contains_key(&kv.key) {
                        pb.prev_kv = self.prev_kv(&kv.key, rev.main - 1)?;
                    }
                }
            }
            if let Some((_, evs)) = cur.as_mut() {
                evs.push(pb);
            }
        }
        flush(&mut cur, &mut bytes);
        Ok((out, covered))
    }

    /// Bytes of events per catch-up step: at most half a stream's budget, so a chunk fits in
    /// a queue the syncer considers roomy.
    fn chunk_bytes(&self) -> usize {
        self.cfg
            .sync_max_bytes
            .min(self.cfg.stream_max_bytes / 2)
            .max(1)
    }

    fn prev_kv(&self, key: &[u8], at: i64) -> Result<Option<mvccpb::KeyValue>, MvccError> {
        let opts = RangeOptions {
            rev: at,
            limit: 1,
            ..RangeOptions::default()
        };
        match self.store.read().range(key, &[], &opts) {
            Ok(r) => Ok(r.kvs.into_iter().next().map(kv_to_pb)),
            Err(MvccError::Compacted) | Err(MvccError::FutureRev) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Hub-wide counts (for tests and diagnostics): (watchers, synced, unsynced, streams).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let st = self.state.lock();
        (
            st.watchers.len(),
            st.synced.len(),
            st.unsynced.len(),
            st.streams.len(),
        )
    }

    /// Revisions held by the ring and their bytes (for tests and diagnostics).
    pub fn ring_usage(&self) -> (usize, usize) {
        let ring = self.ring.lock();
        (ring.entries.len(), ring.bytes)
    }
}

/// Fans one revision out to the synced watchers. A revision with one event (the common
/// case) needs no grouping by watcher.
fn dispatch(
    st: &mut State,
    entry: &Arc<RevEntry>,
    hits: &mut IdMap<WatcherId, Vec<u32>>,
    matched: &mut Vec<WatcherId>,
) {
    if let [ev] = entry.events.as_slice() {
        if let Some(kv) = &ev.kv {
            matched.clear();
            st.synced.for_each_match(&kv.key, |id| matched.push(id));
            for &id in matched.iter() {
                deliver(st, entry, id, &[0]);
            }
        }
    } else {
        for (i, ev) in entry.events.iter().enumerate() {
            let Some(kv) = &ev.kv else { continue };
            st.synced
                .for_each_match(&kv.key, |id| hits.entry(id).or_default().push(i as u32));
        }
        for (id, idxs) in hits.drain() {
            deliver(st, entry, id, &idxs);
        }
    }
    st.dispatched = entry.rev;
}

/// Queues the events `idxs` of `entry` for the synced watcher `id`, or makes it unsynced
/// when its stream is over budget.
fn deliver(st: &mut State, entry: &Arc<RevEntry>, id: WatcherId, idxs: &[u32]) {
    let Some(w) = st.watchers.get_mut(&id) else {
        return;
    };
    if entry.rev < w.next_rev {
        return; // created after this revision, or waiting for a future one
    }
    w.next_rev = entry.rev + 1;
    let events: Vec<EventRef> = idxs
        .iter()
        .filter(|&&i| w.wants(&entry.events[i as usize]))
        .map(|&index| EventRef {
            entry: entry.clone(),
            index,
        })
        .collect();
    if events.is_empty() {
        return;
    }
    let msg = Outgoing::Events(EventsMsg {
        watch_id: w.watch_id,
        revision: entry.rev,
        events,
        prev_kv: w.prev_kv,
        fragment: w.fragment,
    });
    match st.streams[&w.stream].queue.try_push(msg) {
        Ok(()) => w.sent_since_tick = true,
        Err(_) => {
            // Slow stream: catch this watcher up later from this revision on.
            w.next_rev = entry.rev;
            w.where_ = Place::Unsynced;
            st.synced.remove(id, &w.span);
            st.unsynced.insert(id);
        }
    }
}

/// Moves every synced watcher that wants a revision up to `upto` to the unsynced set, from
/// `from` (everything before it was already offered to it) or its own later start. Returns
/// how many moved.
fn demote_synced(st: &mut State, from: i64, upto: i64) -> usize {
    let ids: Vec<WatcherId> = st
        .watchers
        .iter()
        .filter(|(_, w)| w.where_ == Place::Synced && w.next_rev <= upto)
        .map(|(&id, _)| id)
        .collect();
    for &id in &ids {
        if let Some(w) = st.watchers.get_mut(&id) {
            w.next_rev = w.next_rev.max(from);
            w.where_ = Place::Unsynced;
            st.synced.remove(id, &w.span);
            st.unsynced.insert(id);
        }
    }
    ids.len()
}

/// Whether a watcher has been offered everything up to the dispatched revision (etcd's
/// "synced" for progress: in the synced group, and the store has reached its start revision).
fn is_synced(w: &Watcher, dispatched: i64) -> bool {
    w.where_ == Place::Synced && w.next_rev <= dispatched + 1 && dispatched >= w.start_rev
}

fn make_synced(st: &mut State, id: WatcherId) {
    if let Some(w) = st.watchers.get_mut(&id) {
        if w.where_ == Place::Unsynced {
            w.where_ = Place::Synced;
            st.unsynced.remove(&id);
            st.synced.add(id, &w.span);
        }
    }
}

/// Cancels an unsynced watcher whose next revision was compacted: etcd sends the watch id with
/// `compact_revision` (header revision 0) and `canceled`, and keeps the id taken.
fn cancel_compacted(st: &mut State, id: WatcherId) {
    let compact_rev = st.compact_rev;
    let Some(w) = st.watchers.get_mut(&id) else {
        return;
    };
    match w.where_ {
        Place::Synced => {
            st.synced.remove(id, &w.span);
        }
        Place::Unsynced => {
            st.unsynced.remove(&id);
        }
        Place::Compacted => return,
    }
    w.where_ = Place::Compacted;
    if let Some(stream) = st.streams.get(&w.stream) {
        stream.queue.push_control(Outgoing::Control(Control {
            watch_id: w.watch_id,
            revision: 0,
            canceled: true,
            compact_revision: compact_rev,
            ..Control::default()
        }));
    }
}

fn remove_watcher(st: &mut State, id: WatcherId) {
    let Some(w) = st.watchers.remove(&id) else {
        return;
    };
    match w.where_ {
        Place::Synced => {
            st.synced.remove(id, &w.span);
        }
        Place::Unsynced => {
            st.unsynced.remove(&id);
        }
        Place::Compacted => {}
    }
    METRICS.watchers.dec();
}

/// Answers waiting progress requests of streams whose watchers are all synced, with
/// `watch_id = -1` and the dispatched revision (etcd's `RequestProgressAll`).
fn check_progress(st: &mut State) {
    if st.progress_waiting.is_empty() {
        return;
    }
    let dispatched = st.dispatched;
    let mut done = Vec::new();
    for &sid in &st.progress_waiting {
        let Some(stream) = st.streams.get(&sid) else {
            done.push(sid);
            continue;
        };
        // A watcher canceled by compaction gets nothing more, so it does not hold the answer
        // back (etcd 3.4 answers then too); a stream without watchers is answered at once.
        let all_synced = stream.ids.values().all(|id| {
            st.watchers
                .get(id)
                .is_some_and(|w| w.where_ == Place::Compacted || is_synced(w, dispatched))
        });
        if all_synced {
            stream.queue.push_control(Outgoing::Control(Control {
                watch_id: INVALID_WATCH_ID,
                revision: dispatched,
                ..Control::default()
            }));
            done.push(sid);
        }
    }
    for sid in done {
        st.progress_waiting.remove(&sid);
    }
}

fn update_slow_gauge(st: &State) {
    METRICS.slow_watchers.set(st.unsynced.len() as i64);
}

fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

fn to_pb(e: Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventType::Put => mvccpb::event::EventType::Put as i32,
            EventType::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv_to_pb(e.kv)),
        prev_kv: e.prev_kv.map(kv_to_pb),
    }
}

/// One gRPC stream's side of the hub. Dropping it removes the stream's watchers.
pub struct WatchStreamHandle {
    hub: Arc<WatchHub>,
    id: StreamId,
    queue: Arc<StreamQueue>,
}

impl WatchStreamHandle {
    /// Creates a watcher from a (validated) create request; its `created` reply (or the
    /// refusal: duplicate id, empty range) is queued before any of its events.
    pub fn create(&self, req: &WatchCreateRequest) {
        self.hub.create(self.id, req);
    }

    /// Cancels the watcher `watch_id`; queues the `canceled` reply. Returns false (and queues
    /// nothing, as etcd) when the stream has no such watcher.
    pub fn cancel(&self, watch_id: i64) -> bool {
        self.hub.cancel(self.id, watch_id)
    }

    /// A `WatchProgressRequest`: queues one response with `watch_id = -1` and the revision
    /// every watcher of the stream has been brought to, as soon as all are synced.
    pub fn request_progress(&self) {
        self.hub.request_progress(self.id);
    }

    /// The periodic progress notification: every `progress_notify` watcher that is synced and
    /// got no events since the previous tick gets an empty response with its id.
    pub fn progress_tick(&self) {
        self.hub.progress_tick(self.id);
    }

    /// Queues a control response directly (the api's refusals that never reach the hub).
    pub fn push_control(&self, c: Control) {
        self.queue.push_control(Outgoing::Control(c));
    }

    /// The next response; `None` after the stream was closed.
    pub async fn next(&self) -> Option<Outgoing> {
        self.queue.pop().await
    }

    /// The stream's queue (the request reader waits on it for room).
    pub fn queue(&self) -> &StreamQueue {
        &self.queue
    }

    /// The hub's newest revision.
    pub fn revision(&self) -> i64 {
        self.hub.revision()
    }
}

impl Drop for WatchStreamHandle {
    fn drop(&mut self) {
        self.hub.close_stream(self.id);
    }
}
