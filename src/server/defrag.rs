//! Maintenance.Defragment without stopping the world: the backend merges away what compaction
//! deleted while the member keeps serving reads and writes (see `backend/defrag.rs`).

use std::time::Instant;

use super::EtcdServer;
use crate::backend::DefragReport;
use crate::error::EtcdError;
use crate::metrics::METRICS;

impl EtcdServer {
    /// Defragments this member's backend (one at a time; a second caller waits for the first).
    pub async fn defragment(&self) -> Result<DefragReport, EtcdError> {
        let _one_at_a_time = self.defrag_lock.lock().await;
        METRICS.defrag_inflight.set(1);
        let started = Instant::now();
        let backend = self.backend.clone();
        tracing::info!("defragmentation started");
        let result = tokio::task::spawn_blocking(move || {
            backend
                .defragment()
                .map_err(|e| EtcdError::Internal(e.to_string()))
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
