//! `Maintenance.Snapshot`: a point-in-time copy of this member's backend, streamed while the
//! member keeps serving.
//!
//! The copy is the same as a raft snapshot's: the applier (the only writer) captures the small
//! buckets at one applied index, and the key bucket is then streamed up to that index's
//! revision. Key history is append-only by revision, so the only thing that could change what
//! the copy promises is compaction; the compaction lock is held shared from before the capture
//! to the last byte, so compaction waits while reads, writes and the applier carry on. The
//! stream runs on a blocking thread with a small bounded queue in front of the client, so a
//! slow client slows only its own transfer.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::EtcdServer;
use crate::backend::Backend;
use crate::error::EtcdError;
use crate::schema::Bucket;
use crate::snap::backup::{record_len, stream_len, BackupEncoder, BackupHeader, HEADER_LEN};
use crate::snap::{self, Prepared, SnapshotStore};

/// Bytes per `SnapshotResponse` blob: large enough to keep per-message overhead negligible,
/// well under every client's default 4 MiB receive limit.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks queued ahead of the client (bounds the memory of a slow download).
const QUEUE_CHUNKS: usize = 8;
/// Log progress every this many bytes.
const PROGRESS_EVERY: u64 = 64 * 1024 * 1024;

/// One piece of the backup stream.
pub struct BackupChunk {
    /// The bytes.
    pub blob: Vec<u8>,
    /// Bytes of the stream still to come after this chunk (0 on the last one).
    pub remaining_bytes: u64,
}

/// A backup being streamed.
pub struct BackupStream {
    /// The revision the copy is exactly at.
    pub revision: i64,
    /// The length of the whole stream.
    pub total_bytes: u64,
    /// The chunks, in order; an error ends the stream.
    pub chunks: mpsc::Receiver<Result<BackupChunk, EtcdError>>,
}

impl EtcdServer {
    /// Starts streaming a backup of this member's state as of its current applied index.
    /// Returns once the point in time is fixed; the data follows on the stream.
    pub async fn backup(&self) -> Result<BackupStream, EtcdError> {
        let job = BackupJob {
            snaps: self.snaps.clone(),
            backend: self.backend.clone(),
            target_index: self.applied_index(),
            deadline: Instant::now() + self.request_timeout,
            cluster_id: self.cluster_id,
            member_id: self.member_id,
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
        tokio::task::spawn_blocking(move || job.run(ready_tx, tx));
        let (revision, total_bytes) = ready_rx
            .await
            .map_err(|_| EtcdError::Internal("snapshot task ended early".into()))??;
        Ok(BackupStream {
            revision,
            total_bytes,
            chunks: rx,
        })
    }
}

/// Everything the blocking backup thread needs.
struct BackupJob {
    snaps: Arc<SnapshotStore>,
    backend: Arc<Backend>,
    target_index: u64,
    deadline: Instant,
    cluster_id: u64,
    member_id: u64,
}

type Ready = oneshot::Sender<Result<(i64, u64), EtcdError>>;
type Chunks = mpsc::Sender<Result<BackupChunk, EtcdError>>;

impl BackupJob {
    fn run(self, ready: Ready, tx: Chunks) {
        // Held from before the capture to the last byte: no revision the copy promises may be
        // compacted away under it. Reads, writes and the applier never take this lock.
        let _no_compaction = self.snaps.compaction_lock.read();
        let prepared = match self.capture() {
            Ok(p) => p,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let header = BackupHeader {
            revision: prepared.meta.revision,
            index: prepared.meta.index,
            term: prepared.meta.term,
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let total = match self.size(&prepared) {
            Ok(t) => t,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if ready.send(Ok((header.revision, total))).is_err() {
            return; // the client went away
        }
        let started = Instant::now();
        tracing::info!(
            index = header.index,
            revision = header.revision,
            bytes = total,
            "snapshot backup started"
        );
        match self.stream(&prepared, &header, total, &tx) {
            Ok(true) => tracing::info!(
                revision = header.revision,
                bytes = total,
                took_ms = started.elapsed().as_millis() as u64,
                "snapshot backup sent"
            ),
            Ok(false) => tracing::warn!(
                revision = header.revision,
                "snapshot backup abandoned: the client went away"
            ),
            Err(e) => {
                tracing::warn!(revision = header.revision, error = %e, "snapshot backup failed");
                let _ = tx.blocking_send(Err(e));
            }
        }
    }

    /// Has the applier capture its state at (or after) the index applied when the request
    /// came, and returns that capture.
    fn capture(&self) -> Result<Arc<Prepared>, EtcdError> {
        let fresh = |p: &Option<Arc<Prepared>>| {
            p.as_ref()
                .is_some_and(|p| p.meta.index >= self.target_index)
        };
        let mut latest = self.snaps.latest();
        if !fresh(&latest) {
            self.snaps.request();
        }
        while !fresh(&latest) {
            if Instant::now() >= self.deadline {
                return Err(EtcdError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(2));
            latest = self.snaps.latest();
        }
        Ok(latest.expect("fresh implies present"))
    }

    /// The exact length of the stream (what `remaining_bytes` counts down from).
    fn size(&self, p: &Prepared) -> Result<u64, EtcdError> {
        let mut content = HEADER_LEN as u64;
        for (_, k, v) in &p.small {
            content += record_len(k, v);
        }
        for item in snap::key_records(&self.backend, p.meta.revision) {
            let (k, v) = item.map_err(internal)?;
            content += record_len(&k, &v);
        }
        Ok(stream_len(content))
    }

    /// Sends the records; false if the client went away.
    fn stream(
        &self,
        p: &Prepared,
        header: &BackupHeader,
        total: u64,
        tx: &Chunks,
    ) -> Result<bool, EtcdError> {
        let mut enc = BackupEncoder::new(header, CHUNK_BYTES);
        let mut next_log = PROGRESS_EVERY;
        let mut send = |blob: Vec<u8>, sent: u64| -> bool {
            if sent >= next_log {
                tracing::info!(
                    revision = header.revision,
                    sent,
                    total,
                    "snapshot backup in progress"
                );
                next_log = sent + PROGRESS_EVERY;
            }
            let chunk = BackupChunk {
                blob,
                remaining_bytes: total.saturating_sub(sent),
            };
            tx.blocking_send(Ok(chunk)).is_ok()
        };
        let small = p
            .small
            .iter()
            .map(|(b, k, v)| Ok((*b, k.clone(), v.clone())));
        let keys = snap::key_records(&self.backend, p.meta.revision)
            .map(|item| item.map(|(k, v)| (Bucket::Key, k, v.to_vec())));
        for item in small.chain(keys) {
            let (bucket, k, v) = item.map_err(internal)?;
            if let Some(blob) = enc.push(bucket, &k, &v) {
                if !send(blob, enc.written()) {
                    return Ok(false);
                }
            }
        }
        let before = enc.written();
        let last = enc.finish();
        let written = before + last.len() as u64;
        // The key bucket cannot change below the revision while compaction waits; a
        // different length means the backend was replaced (a leader's snapshot installed).
        // Refuse rather than hand out a copy that mixes two states.
        if written != total {
            return Err(EtcdError::Internal(format!(
                "the backend changed while the snapshot was read ({written} bytes instead of \
                 {total}); take the snapshot again"
            )));
        }
        Ok(send(last, written))
    }
}

fn internal(e: impl std::fmt::Display) -> EtcdError {
    EtcdError::Internal(format!("reading the backend for a snapshot: {e}"))
}
