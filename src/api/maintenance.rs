//! The Maintenance service: status, alarms, hashes, leader transfer, online defragmentation
//! and snapshot download. Downgrade answers gRPC's Unimplemented with a message saying so.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server::{EtcdServer, ETCD_VERSION};

/// `etcdserverpb.Maintenance` over an [`EtcdServer`].
pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    /// The service for `server`.
    pub fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("ferrocd does not support Maintenance.{what} yet"))
}

/// etcd's text for an alarm in StatusResponse.errors.
pub fn alarm_text(member_id: u64, alarm: i32) -> String {
    let name = AlarmType::try_from(alarm)
        .map(|a| a.as_str_name())
        .unwrap_or("UNKNOWN");
    format!("memberID:{member_id} alarm:{name} ")
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(self.server.alarm(req.into_inner()).await?))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let s = &self.server;
        let db_size = s.db_size();
        let errors = s
            .alarms()
            .iter()
            .map(|a| alarm_text(a.member_id, a.alarm))
            .collect();
        Ok(Response::new(StatusResponse {
            header: Some(s.header(s.current_revision())),
            version: ETCD_VERSION.to_string(),
            db_size,
            leader: s.leader(),
            raft_index: s.commit_index(),
            raft_term: s.term(),
            raft_applied_index: s.applied_index(),
            errors,
            db_size_in_use: db_size,
            is_learner: s.is_learner(),
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let s = &self.server;
        s.defragment().await?;
        Ok(Response::new(DefragmentResponse {
            header: Some(s.header(s.current_revision())),
        }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let s = &self.server;
        let (hash, _, rev) = s.hash_kv(0)?;
        Ok(Response::new(HashResponse {
            header: Some(s.header(rev)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let s = &self.server;
        let (hash, compact_revision, rev) = s.hash_kv(req.get_ref().revision)?;
        Ok(Response::new(HashKvResponse {
            header: Some(s.header(s.current_revision())),
            hash,
            compact_revision,
            hash_revision: rev,
        }))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    /// Streams a point-in-time copy of this member's backend, ending with its sha256 (as
    /// etcd does). Every message's header carries the revision the copy is at.
    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let backup = self.server.backup().await?;
        let header = self.server.header(backup.revision);
        let stream = ReceiverStream::new(backup.chunks).map(move |chunk| {
            chunk
                .map(|c| SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: c.remaining_bytes,
                    blob: c.blob,
                    version: String::new(),
                })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let s = &self.server;
        s.move_leader(req.get_ref().target_id).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(s.header(s.current_revision())),
        }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet("Downgrade"))
    }
}
