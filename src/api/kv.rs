//! The KV service: validate as etcd does, then hand to the server.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::kv_check;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::server::EtcdServer;

/// `etcdserverpb.KV` over an [`EtcdServer`].
pub struct KvService {
    server: Arc<EtcdServer>,
    max_txn_ops: usize,
}

impl KvService {
    /// A KV service enforcing `--max-txn-ops`.
    pub fn new(server: Arc<EtcdServer>, max_txn_ops: usize) -> Self {
        Self {
            server,
            max_txn_ops,
        }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let r = req.into_inner();
        kv_check::check_range(&r)?;
        Ok(Response::new(self.server.range(r).await?))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = req.into_inner();
        kv_check::check_put(&r)?;
        Ok(Response::new(self.server.put(r).await?))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let r = req.into_inner();
        kv_check::check_delete(&r)?;
        Ok(Response::new(self.server.delete_range(r).await?))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let r = req.into_inner();
        kv_check::check_txn(&r, self.max_txn_ops)?;
        Ok(Response::new(self.server.txn(r).await?))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Ok(Response::new(self.server.compact(req.into_inner()).await?))
    }
}
