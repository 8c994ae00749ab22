//! One stream's side of the hub: [`WatchStreamHandle`] (what the gRPC adapter and the
//! server's in-process watches hold) and the hub operations it stands for -- creating a
//! watcher from a [`WatchSpec`], canceling one, progress requests and the periodic progress
//! notification, and closing the stream when the handle is dropped.
//!
//! A create's reply (`created`, or the refusal: duplicate id, empty range) is queued under
//! the state lock before the watcher can receive anything, so it always precedes the
//! watcher's events. A watcher whose start revision is already dispatched starts unsynced
//! (the syncer catches it up); one from now or a future revision starts synced.

use std::sync::Arc;

use super::interval::{IdMap, KeySpan};
use super::outgoing::{Control, Outgoing, ERR_DUPLICATE_ID, ERR_EMPTY_RANGE, INVALID_WATCH_ID};
use super::queue::StreamQueue;
use super::spec::WatchSpec;
use super::state::{
    cancel_compacted, check_progress, is_synced, remove_watcher, update_slow_gauge, Place,
    StreamEntry, Watcher,
};
use super::WatchHub;
use crate::metrics::METRICS;

/// Identifies one stream in the hub.
pub type StreamId = u64;

impl WatchHub {
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

    fn create(&self, sid: StreamId, spec: &WatchSpec) {
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
        let Some(span) = KeySpan::from_request(&spec.key, &spec.range_end) else {
            refuse(stream, ERR_EMPTY_RANGE);
            return;
        };
        let watch_id = if spec.watch_id == 0 {
            while stream.ids.contains_key(&stream.next_watch_id) {
                stream.next_watch_id += 1;
            }
            stream.next_watch_id += 1;
            stream.next_watch_id - 1
        } else if stream.ids.contains_key(&spec.watch_id) {
            refuse(stream, ERR_DUPLICATE_ID);
            return;
        } else {
            spec.watch_id
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
        let start = spec.start_revision;
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
            no_put: spec.no_put,
            no_delete: spec.no_delete,
            prev_kv: spec.prev_kv,
            fragment: spec.fragment,
            progress_notify: spec.progress_notify,
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
}

/// One gRPC stream's side of the hub. Dropping it removes the stream's watchers.
pub struct WatchStreamHandle {
    hub: Arc<WatchHub>,
    id: StreamId,
    queue: Arc<StreamQueue>,
}

impl WatchStreamHandle {
    /// Creates a watcher from a (validated: start revision not negative) spec; its `created`
    /// reply (or the refusal: duplicate id, empty range) is queued before any of its events.
    pub fn create(&self, spec: &WatchSpec) {
        self.hub.create(self.id, spec);
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
