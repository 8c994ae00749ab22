//! Per-watcher state and its transitions: the hub's view of each watcher and stream
//! ([`State`], behind the hub's state lock) and the moves between places.
//!
//! A watcher is in exactly one [`Place`]:
//! * **synced** -- in the interval index, fed only by the dispatcher, one revision at a time;
//! * **unsynced** -- in the unsynced set, fed only by the syncer in catch-up chunks;
//! * **compacted** -- canceled because a revision it needs was compacted; it gets nothing
//!   more, but keeps its watch id until the client cancels it or closes the stream (etcd).
//!
//! Transitions: created synced (start 0 or in the future) or unsynced (a past start);
//! synced -> unsynced when its stream's queue is over budget ([`dispatch`]), on a dispatcher
//! skip-ahead or a snapshot restore ([`demote_synced`]); unsynced -> synced only once it has
//! seen everything up to the last dispatched revision ([`make_synced`]); synced or unsynced ->
//! compacted ([`cancel_compacted`]); any -> removed ([`remove_watcher`]).
//!
//! Ordering: every response for a watcher is queued under the state lock in revision order;
//! since a watcher is never fed by both threads, and moves to synced only when nothing
//! between its catch-up and the dispatched revision is missing, its events arrive in order,
//! each once. `next_rev` is the next revision it wants: everything before it is queued or
//! filtered out.
//!
//! Progress (etcd's `RequestProgress`) is answered here too ([`check_progress`]): a stream
//! waits until all its watchers are synced.
//!
//! [`dispatch`]: super::dispatch

use std::collections::BTreeSet;
use std::sync::Arc;

use super::interval::{IdMap, IdSet, KeySpan, WatcherGroup, WatcherId};
use super::outgoing::{Control, Outgoing, INVALID_WATCH_ID};
use super::queue::StreamQueue;
use super::stream::StreamId;
use crate::metrics::METRICS;
use crate::proto::mvccpb;

/// The hub's view of one watcher.
pub(super) struct Watcher {
    pub(super) stream: StreamId,
    pub(super) watch_id: i64,
    pub(super) span: KeySpan,
    /// The next revision this watcher wants (everything before it is queued or skipped).
    pub(super) next_rev: i64,
    /// The requested start revision (0 = from now); progress waits until it is reached.
    pub(super) start_rev: i64,
    pub(super) no_put: bool,
    pub(super) no_delete: bool,
    pub(super) prev_kv: bool,
    pub(super) fragment: bool,
    pub(super) progress_notify: bool,
    /// Events were queued since the last progress tick (etcd skips the notification then).
    pub(super) sent_since_tick: bool,
    pub(super) where_: Place,
}

/// Where a watcher is: which thread feeds it, or that nothing does any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// In the synced group: fed by the dispatcher, one live revision at a time.
    Synced,
    /// In the unsynced set: fed by the syncer, in catch-up chunks.
    Unsynced,
    /// Canceled by compaction; kept until the client cancels it or closes the stream, as etcd
    /// keeps the id taken.
    Compacted,
}

impl Watcher {
    /// Whether the watcher's filters let `e` through.
    pub(super) fn wants(&self, e: &mvccpb::Event) -> bool {
        if e.r#type == mvccpb::event::EventType::Put as i32 {
            !self.no_put
        } else {
            !self.no_delete
        }
    }
}

/// One stream's watchers by watch id, and its queue.
pub(super) struct StreamEntry {
    pub(super) queue: Arc<StreamQueue>,
    pub(super) ids: IdMap<i64, WatcherId>,
    pub(super) next_watch_id: i64,
}

/// Everything behind the hub's state lock.
pub(super) struct State {
    pub(super) watchers: IdMap<WatcherId, Watcher>,
    pub(super) streams: IdMap<StreamId, StreamEntry>,
    pub(super) synced: WatcherGroup,
    pub(super) unsynced: BTreeSet<WatcherId>,
    /// The syncer resumes its round-robin here.
    pub(super) sync_cursor: WatcherId,
    /// Every revision up to this one has been offered to the synced watchers.
    pub(super) dispatched: i64,
    pub(super) compact_rev: i64,
    pub(super) next_watcher: WatcherId,
    pub(super) next_stream: StreamId,
    pub(super) progress_waiting: IdSet<StreamId>,
    /// Bumped when the store is being replaced: a catch-up step that read the old backend
    /// delivers nothing.
    pub(super) generation: u64,
    /// The backend is being replaced by a snapshot: no catch-up until `restore`.
    pub(super) restoring: bool,
}

impl State {
    /// No watchers or streams; everything up to `rev` counts as dispatched.
    pub(super) fn new(rev: i64, compact_rev: i64) -> Self {
        State {
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
        }
    }
}

/// Moves every synced watcher that wants a revision up to `upto` to the unsynced set, from
/// `from` (everything before it was already offered to it) or its own later start. Returns
/// how many moved.
pub(super) fn demote_synced(st: &mut State, from: i64, upto: i64) -> usize {
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
pub(super) fn is_synced(w: &Watcher, dispatched: i64) -> bool {
    w.where_ == Place::Synced && w.next_rev <= dispatched + 1 && dispatched >= w.start_rev
}

/// Moves an unsynced watcher to the synced group (the caller checked it has seen everything
/// up to the dispatched revision).
pub(super) fn make_synced(st: &mut State, id: WatcherId) {
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
pub(super) fn cancel_compacted(st: &mut State, id: WatcherId) {
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

/// Forgets a watcher wherever it is (canceled by the client, or its stream closed).
pub(super) fn remove_watcher(st: &mut State, id: WatcherId) {
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
pub(super) fn check_progress(st: &mut State) {
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

/// Publishes the number of unsynced watchers.
pub(super) fn update_slow_gauge(st: &State) {
    METRICS.slow_watchers.set(st.unsynced.len() as i64);
}
