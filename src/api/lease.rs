//! The Lease service: a thin adapter over the server's lease operations.
//!
//! KeepAlive follows etcd's stream contract: each request is answered with the lease's granted
//! TTL, an unknown or expired lease with TTL 0 (never an error on the stream), and a client
//! that half-closes still gets its replies before the stream ends. A `hasleader` stream ends
//! with `no leader` when the member has been without a leader for three election timeouts.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::leader_monitor::{leader_lost, requires_leader};
use crate::error::EtcdError;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::EtcdServer;

/// Replies a keep-alive stream may have queued before it waits for the client to read.
const KEEPALIVE_QUEUE: usize = 64;

/// `etcdserverpb.Lease` over an [`EtcdServer`].
pub struct LeaseService {
    server: Arc<EtcdServer>,
    stopping: watch::Receiver<bool>,
}

impl LeaseService {
    /// A Lease service whose keep-alive streams end with `server stopped` once `stopping`
    /// turns true (they never end on their own, and a graceful stop waits for open streams).
    pub fn new(server: Arc<EtcdServer>, stopping: watch::Receiver<bool>) -> Self {
        Self { server, stopping }
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        Ok(Response::new(
            self.server.lease_grant(req.into_inner()).await?,
        ))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        Ok(Response::new(
            self.server.lease_revoke(req.into_inner()).await?,
        ))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let require_leader = requires_leader(req.metadata());
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE);
        let server = self.server.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let lost = leader_lost(&server, server.election_timeout(), require_leader);
            tokio::pin!(lost);
            loop {
                let next = tokio::select! {
                    n = inbound.next() => n,
                    _ = async { drop(stopping.wait_for(|s| *s).await) } => {
                        let _ = tx.send(Err(EtcdError::Stopped.into())).await;
                        return;
                    }
                    _ = &mut lost => {
                        let _ = tx.send(Err(EtcdError::NoLeader.into())).await;
                        return;
                    }
                };
                // End of the client's half (or a broken stream): the replies already sent
                // are all it asked for, so the stream ends here.
                let Some(Ok(r)) = next else { return };
                let ttl = match server.lease_renew(r.id).await {
                    Ok(ttl) => ttl,
                    Err(EtcdError::LeaseNotFound) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let resp = LeaseKeepAliveResponse {
                    header: Some(server.header(server.current_revision())),
                    id: r.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(
            self.server.lease_time_to_live(req.into_inner()).await?,
        ))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.server.lease_leases()))
    }
}
