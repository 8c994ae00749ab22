//! The peer gRPC service: receives raft messages and snapshots from other members, tells a
//! joining member who is in the cluster, and answers the leader-side calls followers forward
//! (learner readiness, lease keep-alives and time-to-live).
//!
//! Every batch names its cluster and destination; a message from another cluster (a member
//! started with a different --initial-cluster-token, or pointed at the wrong peer URL) is
//! refused with a message that says so, never stepped into raft.

use std::path::PathBuf;
use std::sync::mpsc::Sender as StdSender;
use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::node::NodeMsg;
use super::transport::hex;
use crate::error::EtcdError;
use crate::metrics::METRICS;
use crate::proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::proto::ferrocdpb::peer_server::Peer;
use crate::proto::ferrocdpb::{
    LearnerReadyRequest, LearnerReadyResponse, LeaseRenewRequest, LeaseRenewResponse, Member,
    MembersRequest, MembersResponse, RaftBatch, SendAck, SnapshotAck, SnapshotChunk,
};
use futures::future::BoxFuture;

/// Answers "is this learner caught up with the leader?" (only the leader can tell).
pub type LearnerCheck =
    Arc<dyn Fn(u64) -> tokio::sync::oneshot::Receiver<Result<(), String>> + Send + Sync>;
/// Lists the current members.
pub type MemberList = Arc<dyn Fn() -> Vec<Member> + Send + Sync>;

/// This member's HashKV at a revision: (hash, compact revision, revision hashed).
pub type HashKvFn = Arc<dyn Fn(i64) -> Result<(u32, i64, i64), EtcdError> + Send + Sync>;

/// Lease calls only the leader can answer; followers forward them here.
pub trait LeaseLeader: Send + Sync {
    /// Renews a lease; the granted TTL.
    fn renew(&self, id: i64) -> BoxFuture<'static, Result<i64, EtcdError>>;
    /// A lease's time-to-live.
    fn time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> BoxFuture<'static, Result<LeaseTimeToLiveResponse, EtcdError>>;
}

/// The peer service of one member.
pub struct PeerService {
    /// This member.
    pub self_id: u64,
    /// Its cluster.
    pub cluster_id: u64,
    /// Into the raft loop.
    pub node_tx: StdSender<NodeMsg>,
    /// Where received snapshots are kept.
    pub snap_dir: PathBuf,
    /// The member table.
    pub members: MemberList,
    /// The learner readiness check.
    pub learner_check: LearnerCheck,
    /// Forwarded lease calls.
    pub leases: Arc<dyn LeaseLeader>,
    /// HashKV for the leader's corruption check.
    pub hash_kv: HashKvFn,
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
impl Peer for PeerService {
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

    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: (self.members)(),
        }))
    }

    async fn learner_ready(
        &self,
        req: Request<LearnerReadyRequest>,
    ) -> Result<Response<LearnerReadyResponse>, Status> {
        let rx = (self.learner_check)(req.get_ref().member_id);
        let res = rx.await.unwrap_or_else(|_| Err("server stopped".into()));
        Ok(Response::new(match res {
            Ok(()) => LearnerReadyResponse {
                ready: true,
                reason: String::new(),
            },
            Err(reason) => LearnerReadyResponse {
                ready: false,
                reason,
            },
        }))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        Ok(Response::new(
            match self.leases.renew(req.get_ref().id).await {
                Ok(ttl) => LeaseRenewResponse {
                    ttl,
                    error: String::new(),
                },
                Err(e) => LeaseRenewResponse {
                    ttl: 0,
                    error: e.to_string(),
                },
            },
        ))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(
            self.leases.time_to_live(req.into_inner()).await?,
        ))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let f = self.hash_kv.clone();
        let rev = req.get_ref().revision;
        let (hash, compact_revision, hash_revision) = tokio::task::spawn_blocking(move || f(rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(HashKvResponse {
            header: None,
            hash,
            compact_revision,
            hash_revision,
        }))
    }
}
