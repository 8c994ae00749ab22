//! The dispatcher thread: fans each new revision out to the synced watchers, in revision
//! order, as soon as the applier has handed it to the ring.
//!
//! It takes up to 256 new revisions from the ring at a time, then, under the state lock,
//! finds each event's watchers through the interval index and queues one response per
//! watcher and revision. A push never waits: when a stream's queue is over budget the
//! watcher becomes unsynced at the revision it missed (the syncer catches it up) and the
//! stream keeps every earlier response. After a batch it records the revisions as dispatched
//! (so the ring may let them go) and wakes the syncer, whose unsynced watchers may now be
//! level with the dispatched revision.
//!
//! Overload: when the applier is more than `dispatch_max_backlog` revisions ahead, the
//! dispatcher hands every synced watcher to the syncer and skips to the head
//! (`skip_ahead`), so memory stays bounded instead of a backlog growing.
//!
//! Locks: the ring lock is held only to take a batch and to record progress, never while
//! taking the state lock (state before ring, as everywhere in the hub).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::event::{EventRef, RevEntry};
use super::interval::{IdMap, WatcherId};
use super::outgoing::{EventsMsg, Outgoing};
use super::state::{check_progress, demote_synced, update_slow_gauge, Place, State};
use super::WatchHub;

impl WatchHub {
    /// The dispatcher thread's loop; returns when the hub stops.
    pub(super) fn run_dispatcher(self: Arc<Self>) {
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
