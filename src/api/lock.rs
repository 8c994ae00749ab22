//! The Lock service (`v3lockpb.Lock`): a thin adapter over the mutex recipe.
//!
//! A Lock call may wait indefinitely; it ends with `server stopped` when the listener shuts
//! down (a graceful stop waits for open calls), and a client that gives up simply drops the
//! call, which removes its waiting key (see [`crate::concurrency::cleanup`]).

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::concurrency::mutex;
use crate::error::EtcdError;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::EtcdServer;

/// `v3lockpb.Lock` over an [`EtcdServer`].
pub struct LockService {
    server: Arc<EtcdServer>,
    stopping: watch::Receiver<bool>,
}

impl LockService {
    /// A Lock service whose waiting calls end once `stopping` turns true.
    pub fn new(server: Arc<EtcdServer>, stopping: watch::Receiver<bool>) -> Self {
        Self { server, stopping }
    }
}

/// Resolves once the listener is shutting down.
pub(crate) async fn until_stopping(mut stopping: watch::Receiver<bool>) {
    drop(stopping.wait_for(|s| *s).await);
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let r = req.into_inner();
        tokio::select! {
            res = mutex::lock(&self.server, &r.name, r.lease) => Ok(Response::new(res?)),
            _ = until_stopping(self.stopping.clone()) => Err(EtcdError::Stopped.into()),
        }
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(mutex::unlock(&self.server, &r.key).await?))
    }
}
