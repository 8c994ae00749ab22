//! Applying lease requests: grants, revocations (a client's or an expiry's), and the leader's
//! TTL checkpoints. A revocation deletes every attached key in one revision, which watchers see
//! as one reply of deletes.

use super::{commit_or_stop, Applier, ApplyResponse, ApplyResult};
use crate::error::EtcdError;
use crate::metrics::METRICS;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, ResponseHeader,
};
use crate::proto::ferrocdpb::{LeaseCheckpoints, LeaseExpiries};

impl Applier {
    pub(super) fn apply_lease_grant(&mut self, r: LeaseGrantRequest, index: u64) -> ApplyResult {
        let mut store = self.store.write();
        let rev = store.current_revision();
        let mut txn = store.write(index);
        let granted = self.lessor.grant(txn.extra(), r.id, r.ttl);
        commit_or_stop(txn, index);
        granted?;
        Ok(ApplyResponse::LeaseGrant(LeaseGrantResponse {
            header: Some(ResponseHeader {
                revision: rev,
                ..Default::default()
            }),
            id: r.id,
            ttl: r.ttl,
            error: String::new(),
        }))
    }

    pub(super) fn apply_lease_revoke(&mut self, r: LeaseRevokeRequest, index: u64) -> ApplyResult {
        let rev = self.revoke(r.id, index).ok_or(EtcdError::LeaseNotFound)?;
        Ok(ApplyResponse::LeaseRevoke(LeaseRevokeResponse {
            header: Some(ResponseHeader {
                revision: rev,
                ..Default::default()
            }),
        }))
    }

    /// Revokes the leases the leader found expired, each in its own revision, skipping any
    /// that was checkpointed (renewed) after the leader looked or is already gone.
    pub(super) fn apply_lease_expiries(
        &mut self,
        r: LeaseExpiries,
        index: u64,
        entry_term: u64,
    ) -> ApplyResult {
        if r.term != entry_term {
            tracing::info!(
                proposed_in = r.term,
                committed_in = entry_term,
                "expiry proposed by a deposed leader; ignored"
            );
            return Ok(ApplyResponse::LeasesExpired(0));
        }
        let mut revoked = 0;
        for e in r.expiries {
            match self.lessor.checkpoint_seq(e.id) {
                Some(seq) if seq == e.checkpoint_seq && self.revoke(e.id, index).is_some() => {
                    revoked += 1;
                }
                Some(seq) if seq == e.checkpoint_seq => {}
                Some(_) => tracing::info!(
                    lease = format!("{:x}", e.id),
                    "lease was renewed after the leader found it expired; kept"
                ),
                None => {}
            }
        }
        Ok(ApplyResponse::LeasesExpired(revoked))
    }

    pub(super) fn apply_lease_checkpoints(
        &mut self,
        r: LeaseCheckpoints,
        index: u64,
    ) -> ApplyResult {
        let mut store = self.store.write();
        let mut txn = store.write(index);
        self.lessor.checkpoint(txn.extra(), &r.checkpoints);
        commit_or_stop(txn, index);
        Ok(ApplyResponse::LeasesCheckpointed)
    }

    /// Deletes lease `id`'s keys in one revision and removes the lease, in one batch. Returns
    /// the store's revision after it, or `None` if there is no such lease.
    fn revoke(&mut self, id: i64, index: u64) -> Option<i64> {
        let keys = self.lessor.attached_keys(id)?;
        let mut store = self.store.write();
        let mut txn = store.write(index);
        for k in &keys {
            txn.delete_range(k, &[]);
        }
        self.lessor.remove(txn.extra(), id);
        let r = commit_or_stop(txn, index);
        self.lessor.apply_events(&r.events);
        self.watch_hub.notify(r.rev, r.events);
        METRICS.current_revision.set(r.rev);
        METRICS.keys_total.set(store.keys_total() as i64);
        Some(r.rev)
    }
}
