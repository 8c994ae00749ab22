//! The Election service (`v3electionpb.Election`): a thin adapter over the election recipe.
//!
//! Campaign may wait indefinitely and Observe never ends on its own: both end with
//! `server stopped` when the listener shuts down. A client that cancels a Campaign drops the
//! call, which resigns its candidacy; one that drops an Observe stream stops its watch.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::leader_monitor::{leader_lost, requires_leader};
use super::lock::until_stopping;
use crate::concurrency::{election, observe};
use crate::error::EtcdError;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::server::EtcdServer;

/// Leader updates an Observe stream may have queued before it waits for the client to read.
const OBSERVE_QUEUE: usize = 16;

/// `v3electionpb.Election` over an [`EtcdServer`].
pub struct ElectionService {
    server: Arc<EtcdServer>,
    stopping: watch::Receiver<bool>,
}

impl ElectionService {
    /// An Election service whose waiting calls and streams end once `stopping` turns true.
    pub fn new(server: Arc<EtcdServer>, stopping: watch::Receiver<bool>) -> Self {
        Self { server, stopping }
    }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let r = req.into_inner();
        tokio::select! {
            res = election::campaign(&self.server, &r.name, r.lease, &r.value) => {
                Ok(Response::new(res?))
            }
            _ = until_stopping(self.stopping.clone()) => Err(EtcdError::Stopped.into()),
        }
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            election::proclaim(&self.server, r.leader, &r.value).await?,
        ))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            election::leader(&self.server, &r.name).await?,
        ))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let require_leader = requires_leader(req.metadata());
        let name = req.into_inner().name;
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
        let server = self.server.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            let res = tokio::select! {
                r = observe::observe(&server, &name, &tx) => r,
                // The client went away: stop watching.
                _ = tx.closed() => return,
                _ = until_stopping(stopping) => Err(EtcdError::Stopped),
                _ = leader_lost(&server, server.election_timeout(), require_leader) => {
                    Err(EtcdError::NoLeader)
                }
            };
            // etcd ends the stream quietly when its observer fails; the reason is more use
            // to the client than a bare end of stream.
            if let Err(e) = res {
                tracing::debug!(error = %e, name = %String::from_utf8_lossy(&name), "election observer ended");
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            election::resign(&self.server, r.leader).await?,
        ))
    }
}
