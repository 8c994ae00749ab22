//! The syncer thread: catch-up of unsynced watchers (a past start revision, a slow stream,
//! a dispatcher skip-ahead, a snapshot restore), in bounded chunks, until they are level with
//! the dispatcher and move back to synced.
//!
//! One step picks up to `sync_max_watchers` unsynced watchers round-robin, only those whose
//! stream has room, and reads from the lowest revision any of them needs: from the ring when
//! it still holds that revision, otherwise from the backend (revisions leave the ring only
//! after the backend committed them, so nothing falls between the two). A chunk is at most
//! `sync_max_revisions` revisions and about `sync_max_bytes` (never more than half a stream's
//! budget), so a stream that stopped reading costs no memory beyond its queue budget. Backend
//! reads keep only events a chosen watcher wants and look up `prev_kv` only for watchers that
//! asked for it.
//!
//! Each step runs in three phases: choose (under the state lock), read (without any hub lock:
//! backend IO and the store's read lock for `prev_kv`), deliver (under the state lock again,
//! skipping watchers that changed meanwhile and discarding the read if the store was replaced
//! by a snapshot in between -- the `generation` check). Delivery to one watcher is one
//! response covering the whole chunk, then the watcher continues after the chunk's end.
//!
//! Locks: the store lock is only ever taken here with no hub lock held (the applier holds
//! the store lock while calling into the hub, so the other order would deadlock).

use std::sync::Arc;

use super::event::{kv_to_pb, to_pb, EventRef, RevEntry};
use super::interval::{IdMap, KeySpan, WatcherGroup, WatcherId};
use super::outgoing::{EventsMsg, Outgoing};
use super::state::{cancel_compacted, check_progress, make_synced, update_slow_gauge, Place};
use super::WatchHub;
use crate::mvcc::{events_between, MvccError, RangeOptions};
use crate::proto::mvccpb;

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

impl WatchHub {
    /// The syncer thread's loop: steps while there is work, otherwise sleeps until woken
    /// (queue room, new unsynced watchers, a dispatched batch) or `sync_interval` passed.
    pub(super) fn run_syncer(self: Arc<Self>) {
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

    /// `key` as it was at revision `at`, for an event's `prev_kv` (none when `at` is compacted
    /// or the key did not exist). Takes the store's read lock: call with no hub lock held.
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
}
