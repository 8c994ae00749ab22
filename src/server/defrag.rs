//! Maintenance.Defragment without stopping the world: the backend copies its key history into a
//! new database while the member keeps serving; only the final tail copy and the switch run
//! with the applier paused (reads go on throughout). Physical compaction waits meanwhile, so
//! the history being copied cannot change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::EtcdServer;
use crate::backend::DefragReport;
use crate::error::EtcdError;
use crate::metrics::METRICS;

/// How long to wait for the applier to pause (it checks between tasks, at least every 100 ms).
const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);

impl EtcdServer {
    /// Defragments this member's backend (one at a time; a second caller waits for the first).
    pub async fn defragment(&self) -> Result<DefragReport, EtcdError> {
        let _one_at_a_time = self.defrag_lock.lock().await;
        METRICS.defrag_inflight.set(1);
        let started = Instant::now();
        let (backend, snaps, pause) = (
            self.backend.clone(),
            self.snaps.clone(),
            Arc::clone(&self.pause),
        );
        tracing::info!("defragmentation started");
        let result = tokio::task::spawn_blocking(move || {
            // Compaction deletes history the copy relies on; it waits until we are done.
            let _no_compaction = snaps.compaction_lock.read();
            let mut d = backend
                .begin_defrag()
                .map_err(|e| EtcdError::Internal(e.to_string()))?;
            d.copy_history()
                .map_err(|e| EtcdError::Internal(e.to_string()))?;
            let paused = pause.pause(PAUSE_TIMEOUT).ok_or(EtcdError::Stopped)?;
            let report = d.finish().map_err(|e| EtcdError::Internal(e.to_string()));
            drop(paused);
            report
        })
        .await
        .map_err(|e| EtcdError::Internal(format!("defragmentation task failed: {e}")))?;
        METRICS.defrag_inflight.set(0);
        METRICS
            .defrag_duration
            .observe(started.elapsed().as_secs_f64());
        self.quota.invalidate();
        match &result {
            Ok(r) => {
                tracing::info!(
                    before = r.before,
                    after = r.after,
                    took_ms = started.elapsed().as_millis() as u64,
                    "defragmentation done"
                );
                self.db_size();
            }
            Err(e) => tracing::warn!(error = %e, "defragmentation failed"),
        }
        result
    }
}
