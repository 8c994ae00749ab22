//! The raft half of the peer port: receives raft message batches and snapshots from other
//! members and steps them into the raft loop. (The member-to-member calls outside raft —
//! membership for joiners, learner readiness, forwarded lease calls, HashKV — are
//! `server::member_service`, served on the same port.)
//!
//! Every batch names its cluster and destination; a message from another cluster (a member
//! started with a different --initial-cluster-token, or pointed at the wrong peer URL) is
//! refused with a message that says so, never stepped into raft.

use std::path::PathBuf;
use std::sync::mpsc::Sender as StdSender;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::node::NodeMsg;
use super::transport::hex;
use crate::metrics::METRICS;
use crate::proto::ferrocdpb::raft_server::Raft;
use crate::proto::ferrocdpb::{RaftBatch, SendAck, SnapshotAck, SnapshotChunk};

/// The raft service of one member.
pub struct PeerService {
    /// This member.
    pub self_id: u64,
    /// Its cluster.
    pub cluster_id: u64,
    /// Into the raft loop.
    pub node_tx: StdSender<NodeMsg>,
    /// Where received snapshots are kept.
    pub snap_dir: PathBuf,
}

impl PeerService {
    fn check(&self, cluster_id: u64, from: u64, to: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: member {} of cluster {:x} was contacted by member {} of cluster {:x}; \
                 check --initial-cluster-token and the peer URLs",
                hex(self.self_id),
                self.cluster_id,
                hex(from),
                cluster_id
            )));
        }
        if to != self.self_id {
            return Err(Status::failed_precondition(format!(
                "member ID mismatch: this is member {} but the message is for {}; \
                 was this member's data dir replaced or its peer URL reused?",
                hex(self.self_id),
                hex(to)
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Raft for PeerService {
    async fn send(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<SendAck>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            self.check(batch.cluster_id, batch.from, batch.to)?;
            // Test-only fault switch (see `crate::fault`): drop as a lossy network would.
            #[cfg(debug_assertions)]
            if crate::fault::drop_from(batch.from) {
                continue;
            }
            let from = hex(batch.from);
            for bytes in batch.messages {
                METRICS
                    .peer_received_bytes
                    .with_label_values(&[&from])
                    .inc_by(bytes.len() as u64);
                let msg = Message::parse_from_bytes(&bytes)
                    .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
                if self.node_tx.send(NodeMsg::Step(Box::new(msg))).is_err() {
                    return Err(Status::unavailable("etcdserver: server stopped"));
                }
            }
        }
        Ok(Response::new(SendAck {}))
    }

    async fn send_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        self.check(first.cluster_id, first.from, first.to)?;
        // Test-only fault switch (see `crate::fault`): the snapshot does not arrive.
        #[cfg(debug_assertions)]
        if crate::fault::drop_from(first.from) {
            return Err(Status::unavailable("fault injection: snapshot dropped"));
        }
        let msg = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("bad snapshot message: {e}")))?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument(
                "first snapshot chunk is not a raft snapshot",
            ));
        }
        let meta = msg.get_snapshot().get_metadata();
        let path = crate::snap::snap_path(&self.snap_dir, meta.term, meta.index);
        let index = meta.index;
        tracing::info!(from = hex(first.from), index, "receiving snapshot");
        let io = |e: std::io::Error| {
            Status::internal(format!("storing snapshot {}: {e}", path.display()))
        };
        let mut rx = crate::snap::Receiver::create(path.clone()).map_err(io)?;
        let mut next_log = 64u64 << 20;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            rx.write(&chunk.data).map_err(io)?;
            if rx.bytes >= next_log {
                tracing::info!(index, bytes = rx.bytes, "receiving snapshot");
                next_log += 64 << 20;
            }
        }
        let bytes = rx.bytes;
        tokio::task::spawn_blocking(move || rx.finish())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(io)?;
        tracing::info!(index, bytes, "snapshot received");
        #[cfg(debug_assertions)]
        crate::fault::point("snap-received");
        if self.node_tx.send(NodeMsg::Step(Box::new(msg))).is_err() {
            return Err(Status::unavailable("etcdserver: server stopped"));
        }
        Ok(Response::new(SnapshotAck { bytes }))
    }
}
