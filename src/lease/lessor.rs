//! The lessor: every lease, the keys attached to it, and (on the leader) when each expires.
//!
//! Two kinds of callers, kept apart:
//! - the applier (the one writer of state) grants, checkpoints and removes leases and reports
//!   key changes, always inside the batch of the entry that caused them;
//! - the leader's lease loop and the Lease API renew leases, answer time-to-live questions and
//!   collect expired leases and pending checkpoints, which they propose through raft.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::expiry_queue::ExpiryQueue;
use super::record;
use crate::backend::{Backend, BackendError, WriteBatch};
use crate::error::EtcdError;
use crate::metrics::METRICS;
use crate::mvcc::{Event, EventType};
use crate::proto::ferrocdpb::{LeaseCheckpoint, LeaseExpiry, LeaseRecord};

/// How long an expired lease whose revocation was proposed is left alone before it is proposed
/// again (the proposal may have been lost in a leader change); etcd's `expiredLeaseRetryInterval`.
const REVOKE_RETRY: Duration = Duration::from_secs(3);

/// One lease.
struct Lease {
    /// Granted TTL in seconds.
    ttl: i64,
    /// Remaining milliseconds at the last applied checkpoint (0 = never checkpointed).
    remaining_ms: i64,
    /// Checkpoints applied so far (persisted, so every member agrees on it).
    checkpoint_seq: u64,
    /// When the lease runs out if nobody renews it, as this member saw the last grant or
    /// checkpoint: where a new leader's clock starts.
    deadline: Instant,
    /// When it expires; kept by the primary (leader) lessor only.
    expiry: Option<Instant>,
    /// The keys attached to it.
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    fn record(&self, id: i64) -> LeaseRecord {
        LeaseRecord {
            id,
            ttl: self.ttl,
            remaining_ms: self.remaining_ms,
            checkpoint_seq: self.checkpoint_seq,
        }
    }
}

/// A lease's time-to-live as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// Whole seconds left (rounded down, as etcd reports it).
    pub remaining: i64,
    /// The granted TTL.
    pub granted: i64,
    /// The attached keys, in key order (only when asked for).
    pub keys: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    /// Key → the lease it is attached to.
    items: HashMap<Vec<u8>, i64>,
    /// Whether this member's clock is the one that counts (it leads).
    primary: bool,
    /// The grace a promotion gave leases about to run out (kept for a reload while primary).
    grace: Duration,
    queue: ExpiryQueue,
    /// Leases renewed since the last checkpoint round.
    dirty: HashSet<i64>,
    /// Expired leases whose revocation was proposed, and when.
    revoking: HashMap<i64, Instant>,
}

/// Every lease of the member. Shared: the applier, the Lease API and the lease loop use it.
pub struct Lessor {
    inner: Mutex<Inner>,
    min_ttl: i64,
}

impl Lessor {
    /// An empty lessor whose grants are raised to at least `min_ttl` seconds.
    pub fn new(min_ttl: i64) -> Lessor {
        Lessor {
            inner: Mutex::new(Inner::default()),
            min_ttl: min_ttl.max(1),
        }
    }

    /// The smallest TTL a grant gets (etcd's ceil(1.5 × election timeout)).
    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    /// Replaces every lease with the backend's (start-up, snapshot install) and re-attaches
    /// `attached` (key, lease) pairs from the MVCC store. Deadlines start now from each lease's
    /// last checkpoint (or full TTL): time spent down is never counted against a lease. The
    /// role is kept: only a role change promotes or demotes, and a member can become leader
    /// while its applier is still installing a snapshot, so a primary lessor stays primary
    /// and starts the clock of every loaded lease as a promotion would.
    pub fn load(
        &self,
        backend: &Backend,
        attached: Vec<(Vec<u8>, i64)>,
    ) -> Result<(), BackendError> {
        let records = record::load_all(backend)?;
        let now = Instant::now();
        let mut inner = Inner::default();
        for r in records {
            let left = if r.remaining_ms > 0 {
                Duration::from_millis(r.remaining_ms as u64)
            } else {
                secs(r.ttl)
            };
            inner.leases.insert(
                r.id,
                Lease {
                    ttl: r.ttl,
                    remaining_ms: r.remaining_ms,
                    checkpoint_seq: r.checkpoint_seq,
                    deadline: now + left,
                    expiry: None,
                    keys: BTreeSet::new(),
                },
            );
        }
        let mut orphans = 0usize;
        for (key, id) in attached {
            match inner.leases.get_mut(&id) {
                Some(l) => {
                    l.keys.insert(key.clone());
                    inner.items.insert(key, id);
                }
                None => orphans += 1,
            }
        }
        if orphans > 0 {
            // etcd tolerates this too (a key whose lease record is gone); the key simply has no
            // lease to expire with. Say so: it means state was damaged.
            tracing::warn!(
                keys = orphans,
                "keys name leases that do not exist; they will not expire"
            );
        }
        let mut current = self.inner.lock();
        let primary = current.primary;
        inner.grace = current.grace;
        *current = inner;
        if primary {
            start_clock(&mut current, now);
        }
        tracing::info!(leases = current.leases.len(), primary, "leases loaded");
        Ok(())
    }

    // ---- the applier's side ------------------------------------------------------------

    /// Whether lease `id` exists (Put and Txn check it when applied).
    pub fn exists(&self, id: i64) -> bool {
        self.inner.lock().leases.contains_key(&id)
    }

    /// Grants lease `id` for `ttl` seconds (already raised to the minimum by the proposer).
    pub fn grant(&self, batch: &mut WriteBatch, id: i64, ttl: i64) -> Result<(), EtcdError> {
        let mut inner = self.inner.lock();
        if inner.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        let now = Instant::now();
        let mut lease = Lease {
            ttl,
            remaining_ms: 0,
            checkpoint_seq: 0,
            deadline: now + secs(ttl),
            expiry: None,
            keys: BTreeSet::new(),
        };
        if inner.primary {
            let at = now + secs(ttl);
            lease.expiry = Some(at);
            inner.queue.set(id, None, at);
        }
        record::save(batch, &lease.record(id));
        inner.leases.insert(id, lease);
        METRICS.lease_granted.inc();
        METRICS.lease_ttl.observe(ttl as f64);
        Ok(())
    }

    /// The keys attached to lease `id`, which its revocation deletes; `None` if there is no
    /// such lease.
    pub fn attached_keys(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        let inner = self.inner.lock();
        inner
            .leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
    }

    /// The checkpoint sequence of lease `id` (an expiry proposal must still match it).
    pub fn checkpoint_seq(&self, id: i64) -> Option<u64> {
        self.inner.lock().leases.get(&id).map(|l| l.checkpoint_seq)
    }

    /// Removes lease `id` (revoked or expired; its keys were deleted in the same batch).
    pub fn remove(&self, batch: &mut WriteBatch, id: i64) {
        let mut inner = self.inner.lock();
        let Some(lease) = inner.leases.remove(&id) else {
            return;
        };
        for k in &lease.keys {
            inner.items.remove(k);
        }
        if let Some(at) = lease.expiry {
            inner.queue.remove(id, at);
        }
        inner.dirty.remove(&id);
        inner.revoking.remove(&id);
        record::delete(batch, id);
        METRICS.lease_revoked.inc();
    }

    /// Applies the leader's checkpoints: the remaining TTLs become every member's deadline.
    /// Unknown leases (revoked since) are skipped.
    pub fn checkpoint(&self, batch: &mut WriteBatch, checkpoints: &[LeaseCheckpoint]) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let Inner { leases, queue, .. } = &mut *inner;
        for cp in checkpoints {
            let Some(lease) = leases.get_mut(&cp.id) else {
                continue;
            };
            let left = Duration::from_millis(cp.remaining_ms.max(0) as u64);
            lease.remaining_ms = cp.remaining_ms.max(1);
            lease.checkpoint_seq += 1;
            lease.deadline = now + left;
            // On the leader the checkpoint is normally its own (expiry already current); one
            // from a previous leader carries a renewal this member has not seen: never shorten.
            if let Some(old) = lease.expiry {
                if now + left > old {
                    lease.expiry = Some(now + left);
                    queue.set(cp.id, Some(old), now + left);
                }
            }
            record::save(batch, &lease.record(cp.id));
        }
    }

    /// Follows the keys of committed changes: a put attaches its key to the put's lease (and
    /// detaches it from any other), a delete detaches it.
    pub fn apply_events(&self, events: &[Event]) {
        let mut inner = self.inner.lock();
        let Inner { leases, items, .. } = &mut *inner;
        for ev in events {
            let kv = &ev.kv;
            let new = if ev.kind == EventType::Put {
                kv.lease
            } else {
                super::NO_LEASE
            };
            let old = items.get(&kv.key).copied().unwrap_or(super::NO_LEASE);
            if old == new {
                continue;
            }
            if old != super::NO_LEASE {
                if let Some(l) = leases.get_mut(&old) {
                    l.keys.remove(&kv.key);
                }
                items.remove(&kv.key);
            }
            if new != super::NO_LEASE {
                if let Some(l) = leases.get_mut(&new) {
                    l.keys.insert(kv.key.clone());
                    items.insert(kv.key.clone(), new);
                }
            }
        }
    }

    // ---- the leader's side -------------------------------------------------------------

    /// Whether this lessor keeps the cluster's lease clock.
    pub fn is_primary(&self) -> bool {
        self.inner.lock().primary
    }

    /// Makes this lessor the primary (this member became leader). Each lease expires at the
    /// deadline this member tracked (the last checkpoint's remaining TTL, counted down since it
    /// applied): neither reset to its full TTL (etcd's default) nor shortened. A lease whose
    /// deadline is less than `grace` away gets `grace`: its holder may have renewed it with the
    /// old leader in the last checkpoint round, and needs time to reach the new one.
    pub fn promote(&self, grace: Duration) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if inner.primary {
            return;
        }
        inner.grace = grace;
        start_clock(&mut inner, now);
        tracing::info!(
            leases = inner.leases.len(),
            grace_ms = grace.as_millis() as u64,
            "lessor promoted: this member keeps the lease clock"
        );
    }

    /// Stops keeping the clock (this member lost leadership): it renews nothing and expires
    /// nothing from now on.
    pub fn demote(&self) {
        let mut inner = self.inner.lock();
        if !inner.primary {
            return;
        }
        inner.primary = false;
        inner.queue.clear();
        inner.dirty.clear();
        inner.revoking.clear();
        for l in inner.leases.values_mut() {
            l.expiry = None;
        }
        tracing::info!("lessor demoted: the new leader keeps the lease clock");
    }

    /// Renews lease `id` to its full TTL and returns the TTL. Only the primary renews
    /// ([`EtcdError::NotLeader`] otherwise); an unknown lease, or one already expired and
    /// waiting for its revocation, is [`EtcdError::LeaseNotFound`].
    pub fn renew(&self, id: i64) -> Result<i64, EtcdError> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Err(EtcdError::NotLeader);
        }
        let Inner {
            leases,
            queue,
            dirty,
            ..
        } = &mut *inner;
        let lease = leases.get_mut(&id).ok_or(EtcdError::LeaseNotFound)?;
        let old = lease.expiry;
        if old.is_some_and(|at| at <= now) {
            return Err(EtcdError::LeaseNotFound);
        }
        let at = now + secs(lease.ttl);
        lease.expiry = Some(at);
        queue.set(id, old, at);
        dirty.insert(id);
        METRICS.lease_renewed.inc();
        Ok(lease.ttl)
    }

    /// Lease `id`'s remaining and granted TTL (and keys if `with_keys`); `None` if unknown. On
    /// the primary the remaining time is the leader's; elsewhere it is this member's deadline.
    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Option<TimeToLive> {
        let now = Instant::now();
        let inner = self.inner.lock();
        let l = inner.leases.get(&id)?;
        let until = l.expiry.unwrap_or(l.deadline);
        Some(TimeToLive {
            remaining: until.saturating_duration_since(now).as_secs() as i64,
            granted: l.ttl,
            keys: if with_keys {
                l.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Every lease id, in ascending order.
    pub fn leases(&self) -> Vec<i64> {
        let inner = self.inner.lock();
        let mut ids: Vec<i64> = inner.leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        self.inner.lock().leases.len()
    }

    /// Whether no lease exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The remaining TTLs of leases renewed since the last round (at most `max`; the rest wait
    /// for the next round), for the leader to propose as a checkpoint.
    pub fn take_checkpoints(&self, max: usize) -> Vec<LeaseCheckpoint> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Vec::new();
        }
        let ids: Vec<i64> = inner.dirty.iter().take(max).copied().collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            inner.dirty.remove(&id);
            if let Some(at) = inner.leases.get(&id).and_then(|l| l.expiry) {
                out.push(LeaseCheckpoint {
                    id,
                    remaining_ms: at.saturating_duration_since(now).as_millis() as i64,
                });
            }
        }
        out
    }

    /// Up to `max` expired leases to revoke, soonest first, each with the checkpoint sequence
    /// the revocation must still match when applied. Leases already proposed are skipped for
    /// [`REVOKE_RETRY`].
    pub fn expired(&self, max: usize) -> Vec<LeaseExpiry> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Vec::new();
        }
        inner
            .revoking
            .retain(|_, since| now.duration_since(*since) < REVOKE_RETRY);
        let Inner {
            leases,
            queue,
            revoking,
            ..
        } = &mut *inner;
        let mut out = Vec::new();
        for id in queue.expired(now) {
            if out.len() >= max {
                break;
            }
            if revoking.contains_key(&id) {
                continue;
            }
            if let Some(l) = leases.get(&id) {
                out.push(LeaseExpiry {
                    id,
                    checkpoint_seq: l.checkpoint_seq,
                });
            }
        }
        for e in &out {
            revoking.insert(e.id, now);
        }
        out
    }

    /// Lets expired leases whose revocation proposal failed be proposed again at once.
    pub fn retry_revocations(&self, ids: &[i64]) {
        let mut inner = self.inner.lock();
        for id in ids {
            inner.revoking.remove(id);
        }
    }

    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.inner.lock().queue.len()
    }
}

/// Makes `inner` primary: every lease expires at the deadline this member tracked, or
/// `inner.grace` from `now` if that is sooner.
fn start_clock(inner: &mut Inner, now: Instant) {
    let Inner {
        leases,
        queue,
        primary,
        dirty,
        revoking,
        grace,
        ..
    } = inner;
    queue.clear();
    dirty.clear();
    revoking.clear();
    for (id, l) in leases.iter_mut() {
        let at = l.deadline.max(now + *grace);
        l.expiry = Some(at);
        queue.set(*id, None, at);
    }
    *primary = true;
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}
