//! The watch hub's public handle ([`WatchHub`]): it owns the locks, starts and stops the
//! dispatcher and syncer threads, and takes what the applier reports -- new revisions
//! ([`WatchHub::notify`]), group commits, compactions and snapshot restores. Streams are
//! opened here too ([`WatchHub::open_stream`], in `stream`).
//!
//! Locks: `state` may be taken before `ring`, never the other way; the store lock is never
//! taken while holding either (the applier holds the store lock while calling `notify`,
//! `committed`, `restore`, so the hub must not wait for it under its own locks -- only the
//! syncer's catch-up reads take it, with no hub lock held). Nothing here waits for a client:
//! `notify` only appends to the ring and wakes the dispatcher.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};

use super::config::HubConfig;
use super::event::{to_pb, RevEntry};
use super::interval::WatcherId;
use super::queue::Signal;
use super::ring::Ring;
use super::state::{cancel_compacted, check_progress, demote_synced, update_slow_gauge, State};
use crate::backend::Backend;
use crate::mvcc::{Event, Store};

/// The watch hub (see the `watch` module docs).
pub struct WatchHub {
    pub(super) cfg: HubConfig,
    pub(super) state: Mutex<State>,
    pub(super) ring: Mutex<Ring>,
    /// The dispatcher waits here for new revisions.
    pub(super) ring_cv: Condvar,
    pub(super) syncer: Arc<Signal>,
    pub(super) store: Arc<RwLock<Store>>,
    pub(super) backend: Arc<Backend>,
    pub(super) stopping: AtomicBool,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Times the dispatcher fell too far behind and skipped ahead (diagnostics).
    pub(super) overloads: AtomicU64,
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
            state: Mutex::new(State::new(rev, compact_rev)),
            ring: Mutex::new(Ring::new(rev)),
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

    /// Whether `stop` was called (the threads then return).
    pub(super) fn stopping(&self) -> bool {
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
        ring.push(entry);
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

    // ----- snapshot restore ---------------------------------------------------------------

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
        self.ring.lock().reset(rev);
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
        self.ring.lock().usage()
    }
}
