//! The applier's side of raft snapshots: preparing one at an exact applied index (raft asked,
//! or a snapshot point passed) and installing one received from the leader.

use std::path::PathBuf;

use super::{Applier, CompactJob};
use crate::metrics::METRICS;
use crate::mvcc::Store;
use crate::snap::{self, Prepared, SnapshotMeta};

impl Applier {
    /// Captures the state at the applied index for followers that need a snapshot.
    pub(super) fn prepare_snapshot(&mut self) {
        self.close_group();
        let small = match snap::capture_small(&self.backend) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "preparing a snapshot failed; raft will ask again");
                return;
            }
        };
        let revision = self.store.read().current_revision();
        let meta = SnapshotMeta {
            index: self.applied_index,
            term: self.applied_term,
            conf_state: self.conf_state.clone(),
            revision,
        };
        self.snaps.publish(Prepared { meta, small });
    }

    /// Replaces the whole state with a snapshot from the leader. A failure here leaves the
    /// backend marked mid-install; the member stops and redoes the install on restart.
    pub(super) fn install_snapshot(&mut self, meta: SnapshotMeta, path: PathBuf) {
        self.close_group();
        if meta.index <= self.applied_index {
            tracing::info!(
                index = meta.index,
                applied = self.applied_index,
                "snapshot is not newer than the state; skipped"
            );
            return;
        }
        METRICS.snapshot_apply_in_progress.set(1);
        #[cfg(debug_assertions)]
        crate::fault::point("snap-install-begin");
        self.watch_hub.begin_restore();
        if let Err(e) = snap::install(&self.backend, &path, meta.index, meta.term, self.member_id) {
            tracing::error!(error = %e, "snapshot install failed; stopping (it is redone on restart)");
            std::process::exit(1);
        }
        #[cfg(debug_assertions)]
        crate::fault::point("snap-installed");
        let (mut store, pending) = match Store::open(self.backend.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "the installed snapshot does not open; stopping");
                std::process::exit(1);
            }
        };
        let revision = store.current_revision();
        let compact_revision = store.compact_revision();
        if let Err(e) = self
            .lessor
            .load(&self.backend, store.take_restored_leases())
        {
            tracing::error!(error = %e, "loading leases from the installed snapshot failed; stopping");
            std::process::exit(1);
        }
        {
            let mut current = self.store.write();
            *current = store;
            // Watchers continue from the new state (before any further entry applies).
            self.watch_hub.restore(revision, compact_revision);
        }
        if let Some(compaction) = pending {
            let (done, _) = tokio::sync::oneshot::channel();
            let _ = self.compactor.send(CompactJob { compaction, done });
        }
        if let Err(e) = self
            .members
            .reload(&self.backend)
            .and_then(|_| self.alarms.reload(&self.backend))
        {
            tracing::error!(error = %e, "reloading members after the snapshot failed; stopping");
            std::process::exit(1);
        }
        self.conf_state = meta.conf_state;
        self.applied_index = meta.index;
        self.applied_term = meta.term;
        self.last_snapshot_index = meta.index;
        self.transport.set_peers(&self.members.peer_urls());
        self.applied_tx.send_replace(self.applied_index);
        METRICS.proposals_applied.set(self.applied_index as i64);
        METRICS.current_revision.set(revision);
        METRICS.snapshot_apply_in_progress.set(0);
        snap::purge(&self.snap_dir, 2);
        tracing::info!(
            index = meta.index,
            revision,
            "state replaced by the leader's snapshot"
        );
    }
}
