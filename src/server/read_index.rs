//! Linearizable reads: every read waiting at the same moment shares one ReadIndex round.
//!
//! A read joins the pending batch and wakes the loop. The loop takes the whole batch, asks raft
//! for a read index, waits until the applier has applied that index, and releases the batch.
//! Reads arriving meanwhile form the next batch. raft-rs silently drops a ReadIndex while the
//! leader has not yet committed an entry of its own term, so a round is retried until the
//! request timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch, Notify};

use crate::error::EtcdError;
use crate::metrics::METRICS;
use crate::raft::NodeMsg;

/// How long to wait for raft's answer before asking again.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// The shared state of the read loop.
pub struct ReadIndex {
    pending: Mutex<Vec<oneshot::Sender<Result<(), EtcdError>>>>,
    wake: Notify,
    answers: Mutex<HashMap<u64, oneshot::Sender<u64>>>,
    next_ctx: AtomicU64,
}

impl ReadIndex {
    /// A read loop with nothing pending.
    pub fn new() -> Arc<ReadIndex> {
        Arc::new(ReadIndex {
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(),
            answers: Mutex::new(HashMap::new()),
            next_ctx: AtomicU64::new(1),
        })
    }

    /// Waits until this member has applied everything committed before the call.
    pub async fn wait(&self) -> Result<(), EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().push(tx);
        self.wake.notify_one();
        rx.await.unwrap_or(Err(EtcdError::Stopped))
    }

    /// Raft's answer for round `ctx` (called on the raft thread).
    pub fn on_read_state(&self, ctx: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        if let Some(tx) = self.answers.lock().remove(&u64::from_be_bytes(bytes)) {
            let _ = tx.send(index);
        }
    }

    /// Serves rounds until the raft loop is gone.
    pub async fn run(
        self: Arc<Self>,
        node_tx: Sender<NodeMsg>,
        mut applied: watch::Receiver<u64>,
        request_timeout: Duration,
    ) {
        loop {
            self.wake.notified().await;
            let batch = std::mem::take(&mut *self.pending.lock());
            if batch.is_empty() {
                continue;
            }
            let result = self.round(&node_tx, &mut applied, request_timeout).await;
            if result.is_err() {
                METRICS.read_indexes_failed.inc();
            }
            for tx in batch {
                let _ = tx.send(result.clone());
            }
            if result == Err(EtcdError::Stopped) {
                return;
            }
        }
    }

    async fn round(
        &self,
        node_tx: &Sender<NodeMsg>,
        applied: &mut watch::Receiver<u64>,
        request_timeout: Duration,
    ) -> Result<(), EtcdError> {
        let deadline = Instant::now() + request_timeout;
        let index = loop {
            let ctx = self.next_ctx.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.answers.lock().insert(ctx, tx);
            if node_tx
                .send(NodeMsg::ReadIndex {
                    ctx: ctx.to_be_bytes().to_vec(),
                })
                .is_err()
            {
                return Err(EtcdError::Stopped);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(RETRY_INTERVAL.min(left), rx).await {
                Ok(Ok(index)) => break index,
                _ => {
                    self.answers.lock().remove(&ctx);
                    METRICS.slow_read_indexes.inc();
                    if Instant::now() >= deadline {
                        return Err(EtcdError::Timeout);
                    }
                }
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::Timeout),
        }
    }
}
