//! Write transactions: every change of one applied request, at one revision.

use std::collections::BTreeMap;
use std::iter::Peekable;

use super::index::KeyRange;
use super::kv::{encode, encode_kv};
use super::store::{RangeOptions, RangeResult, Store};
use super::{Event, EventType, KeyValue, MvccError, Revision};
use crate::backend::WriteBatch;
use crate::schema::Bucket;

/// The outcome of a committed write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// The store's current revision after the transaction (unchanged if nothing changed);
    /// the header revision of the response.
    pub rev: i64,
    /// The changes in order (sub-revision order), for the watch hub.
    pub events: Vec<Event>,
}

/// Changes made under one revision (`current + 1`), applied atomically by [`WriteTxn::commit`].
///
/// Changes go to a write batch and a per-transaction overlay; the shared key index is only
/// updated after the backend accepted the batch, so a failed commit (or a dropped transaction)
/// leaves the store exactly as it was (inside a group, see `Store::begin_group`, the batch
/// joins the group's instead). Reads inside the transaction see its own changes.
///
/// `put` and `delete_range` read previous values from the backend; if such a read fails, the
/// transaction is poisoned: the methods carry on with what they know and [`WriteTxn::commit`]
/// returns the error without writing anything.
pub struct WriteTxn<'a> {
    store: &'a mut Store,
    consistent_index: u64,
    /// The revision this transaction's changes get.
    rev: i64,
    batch: WriteBatch,
    /// Changes in order; change `i` has sub-revision `i`.
    events: Vec<Event>,
    /// Key → its latest change in `events`.
    pending: BTreeMap<Vec<u8>, usize>,
    failed: Option<MvccError>,
}

/// A key as this transaction sees it.
enum Live<'e> {
    /// Unchanged by the transaction: its committed revision.
    Committed(Revision),
    /// Put by the transaction.
    Pending(&'e KeyValue),
}

impl<'a> WriteTxn<'a> {
    pub(super) fn new(store: &'a mut Store, consistent_index: u64) -> Self {
        let rev = store.current_rev + 1;
        WriteTxn {
            store,
            consistent_index,
            rev,
            batch: WriteBatch::new(),
            events: Vec::new(),
            pending: BTreeMap::new(),
            failed: None,
        }
    }

    /// The revision a read inside the transaction sees: `current + 1` once something changed.
    fn view_rev(&self) -> i64 {
        if self.events.is_empty() {
            self.store.current_rev
        } else {
            self.rev
        }
    }

    /// Reads like [`Store::range`], but seeing this transaction's own changes (etcd: a range
    /// after a put in one txn sees the put, and reports revision `current + 1`).
    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        opts: &RangeOptions,
    ) -> Result<RangeResult, MvccError> {
        let view = self.view_rev();
        let at = self.store.check_rev(opts.rev, view)?;
        let range = KeyRange::new(key, range_end);
        if at <= self.store.current_rev {
            let (kvs, count) = self.store.range_at(range, at, opts)?;
            return Ok(RangeResult {
                kvs,
                count,
                rev: view,
            });
        }
        let mut found = Vec::new();
        let mut count = 0;
        self.visit_live(range, |key, live| {
            if !opts.count_only && (opts.limit == 0 || found.len() < opts.limit) {
                found.push((key, live));
            }
            count += 1;
        });
        let mut kvs = Vec::with_capacity(found.len());
        for (key, live) in found {
            kvs.push(match live {
                Live::Committed(rev) => self.store.read_kv(key, rev)?,
                Live::Pending(kv) => kv.clone(),
            });
        }
        Ok(RangeResult {
            kvs,
            count,
            rev: view,
        })
    }

    /// Calls `f` for every key in `range` that is live in this transaction's view, in key
    /// order: the committed index merged with this transaction's changes.
    fn visit_live<'s>(&'s self, range: KeyRange<'_>, mut f: impl FnMut(&'s [u8], Live<'s>)) {
        let cur = self.store.current_rev;
        let mut committed = self.store.index.range(range).peekable();
        let mut changed = range.of(&self.pending).peekable();
        loop {
            let from_committed = match (committed.peek(), changed.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((a, _)), Some((b, _))) => match a.cmp(b) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Greater => false,
                    std::cmp::Ordering::Equal => {
                        committed.next(); // superseded by this transaction
                        false
                    }
                },
            };
            if from_committed {
                let (key, ki) = next(&mut committed);
                if let Some((rev, _, _)) = ki.get(cur) {
                    f(key, Live::Committed(rev));
                }
            } else {
                let (key, &i) = next(&mut changed);
                let event = &self.events[i];
                if event.kind == EventType::Put {
                    f(key, Live::Pending(&event.kv));
                }
            }
        }
    }

    /// The live value of `key` in this transaction's view.
    fn live_kv(&self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        if let Some(&i) = self.pending.get(key) {
            let event = &self.events[i];
            return Ok(match event.kind {
                EventType::Put => Some(event.kv.clone()),
                EventType::Delete => None,
            });
        }
        match self.store.index.get(key, self.store.current_rev) {
            Some((rev, _, _)) => self.store.read_kv(key, rev).map(Some),
            None => Ok(None),
        }
    }

    fn fail(&mut self, e: MvccError) {
        tracing::error!(error = %e, "write transaction failed; it will not be committed");
        if self.failed.is_none() {
            self.failed = Some(e);
        }
    }

    fn record(&mut self, event: Event) {
        let i = self.events.len();
        match self.pending.get_mut(event.kv.key.as_slice()) {
            Some(slot) => *slot = i,
            None => {
                self.pending.insert(event.kv.key.clone(), i);
            }
        }
        self.events.push(event);
    }

    /// Puts `key = value` with `lease` (0 = none) and returns the key's previous live
    /// key-value (for `prev_kv` and for detaching the old lease).
    ///
    /// Creates the key (version 1, create revision = this revision) if it is not live,
    /// otherwise bumps its version. A put of an unchanged value is still a change.
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Option<KeyValue> {
        let prev = match self.live_kv(key) {
            Ok(prev) => prev,
            Err(e) => {
                self.fail(e);
                None
            }
        };
        let rev = Revision::new(self.rev, self.events.len() as i64);
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (self.rev, 1),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: self.rev,
            version,
            value: value.to_vec(),
            lease,
        };
        self.batch.put(Bucket::Key, &rev.to_bytes(), encode_kv(&kv));
        self.record(Event {
            kind: EventType::Put,
            kv,
            prev_kv: prev.clone(),
        });
        prev
    }

    /// Deletes every live key named by `(key, range_end)` (etcd's convention) and returns
    /// them in key order. Deleting nothing is not a change.
    pub fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Vec<KeyValue> {
        let mut targets: Vec<(Vec<u8>, Option<Revision>, Option<KeyValue>)> = Vec::new();
        self.visit_live(KeyRange::new(key, range_end), |key, live| {
            targets.push(match live {
                Live::Committed(rev) => (key.to_vec(), Some(rev), None),
                Live::Pending(kv) => (key.to_vec(), None, Some(kv.clone())),
            });
        });
        let mut deleted = Vec::with_capacity(targets.len());
        for (key, rev, pending) in targets {
            let prev = match (pending, rev) {
                (Some(kv), _) => kv,
                (None, Some(rev)) => match self.store.read_kv(&key, rev) {
                    Ok(kv) => kv,
                    Err(e) => {
                        self.fail(e);
                        KeyValue {
                            key: key.clone(),
                            ..KeyValue::default()
                        }
                    }
                },
                (None, None) => unreachable!("a target is either pending or committed"),
            };
            let rev = Revision::new(self.rev, self.events.len() as i64);
            self.batch.put(
                Bucket::Key,
                &rev.to_tombstone_bytes(),
                encode(&key, 0, 0, 0, 0, &[]),
            );
            self.record(Event {
                kind: EventType::Delete,
                kv: KeyValue {
                    key,
                    mod_revision: self.rev,
                    ..KeyValue::default()
                },
                prev_kv: Some(prev.clone()),
            });
            deleted.push(prev);
        }
        deleted
    }

    /// The batch this transaction commits, so lease and auth changes of the same request land
    /// atomically with the key changes.
    pub fn extra(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// The revision this transaction's changes get (`current + 1`), whether or not it changes
    /// anything.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Commits atomically: the key changes, the `extra` writes and the consistent index go to
    /// the backend in one batch, then the index is updated and the revision bumped (only if a
    /// key changed). When the batch is empty (nothing changed, no extra writes) nothing is
    /// written, not even the consistent index: replaying such an entry after a restart is a
    /// no-op anyway. Inside a group (`Store::begin_group`) the writes join the group's batch
    /// instead and reach the backend at `Store::end_group`.
    pub fn commit(self) -> Result<TxnResult, MvccError> {
        let WriteTxn {
            store,
            consistent_index,
            rev,
            mut batch,
            events,
            failed,
            ..
        } = self;
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(group) = store.group.as_mut() {
            if !batch.is_empty() {
                group.batch.append(batch);
                group.consistent_index = Some((consistent_index, store.term));
            }
            for (sub, event) in events.iter().enumerate() {
                if event.kind == EventType::Put {
                    group
                        .values
                        .insert(Revision::new(rev, sub as i64), event.kv.clone());
                }
            }
        } else if !batch.is_empty() {
            batch.set_consistent_index(consistent_index, store.term);
            store.backend.commit(batch)?;
        }
        for (sub, event) in events.iter().enumerate() {
            let r = Revision::new(rev, sub as i64);
            match event.kind {
                EventType::Put => store.index.put(&event.kv.key, r),
                EventType::Delete => {
                    let deleted = store.index.tombstone(&event.kv.key, r);
                    debug_assert!(deleted, "a delete in a txn targets a live key");
                }
            }
        }
        if !events.is_empty() {
            store.current_rev = rev;
        }
        Ok(TxnResult {
            rev: store.current_rev,
            events,
        })
    }
}

fn next<I: Iterator>(it: &mut Peekable<I>) -> I::Item {
    it.next().expect("peeked")
}
