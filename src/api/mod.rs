//! The client-facing API: one thin adapter per etcd gRPC service, plus plain HTTP endpoints, all
//! served on each `--listen-client-urls` address (gRPC over h2c and HTTP/1.1 on the same port).

pub mod cluster;
pub mod election;
pub mod grpc_limit;
pub mod http;
pub mod kv;
pub mod kv_check;
pub mod leader_monitor;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;
pub mod watch_wire;

use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;

use crate::config::Config;
use crate::error::ServerError;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::server::EtcdServer;

/// etcd's `hasleader` metadata: a client that sets it (clientv3's `WithRequireLeader`) wants
/// a request refused with `no leader` rather than served by a member cut off from the leader.
fn require_leader(server: Arc<EtcdServer>) -> impl tonic::service::Interceptor + Clone {
    move |req: tonic::Request<()>| {
        let wants = req
            .metadata()
            .get("hasleader")
            .map(|v| v == "true")
            .unwrap_or(false);
        if wants && server.leader() == 0 {
            return Err(crate::error::EtcdError::NoLeader.into());
        }
        Ok(req)
    }
}

/// gRPC's receive limit over `--max-request-bytes`, as etcd allows for message framing.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Binds every client URL (so a port in use fails start-up before anything is served).
pub async fn bind_client_listeners(cfg: &Config) -> Result<Vec<TcpListener>, ServerError> {
    let mut out = Vec::new();
    for u in &cfg.listen_client_urls {
        let addr = crate::config::bind_addr(u).map_err(|e| ServerError::State(e.to_string()))?;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen {
                url: u.to_string(),
                source,
            })?;
        out.push(l);
    }
    Ok(out)
}

/// Serves gRPC and HTTP on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    server: Arc<EtcdServer>,
    cfg: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let max_recv = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let kv = KvServer::new(kv::KvService::new(server.clone(), cfg.max_txn_ops))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService::new(server.clone()))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let cluster = ClusterServer::new(cluster::ClusterService::new(server.clone()))
        .max_decoding_message_size(max_recv);
    // Watch streams never end on their own: they must end when the listener shuts down, or
    // the graceful shutdown below would wait for them.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    // The interceptor refuses a `hasleader` stream at once; the watch service also cancels
    // open ones that lose the leader, as etcd's stream interceptor does.
    let lease = LeaseServer::new(lease::LeaseService::new(server.clone(), stopping.clone()))
        .max_decoding_message_size(max_recv);
    let lock = LockServer::new(lock::LockService::new(server.clone(), stopping.clone()))
        .max_decoding_message_size(max_recv);
    let election = ElectionServer::new(election::ElectionService::new(
        server.clone(),
        stopping.clone(),
    ))
    .max_decoding_message_size(max_recv);
    let watch = watch_wire::WatchServer::new(
        watch::WatchService::new(server.clone(), cfg, max_recv, stopping),
        max_recv,
    );
    let leader = require_leader(server.clone());
    let routes = Routes::from(http::router(server.clone()))
        .add_service(InterceptedService::new(kv, leader.clone()))
        .add_service(InterceptedService::new(watch, leader.clone()))
        .add_service(InterceptedService::new(lease, leader.clone()))
        .add_service(InterceptedService::new(lock, leader.clone()))
        .add_service(InterceptedService::new(election, leader.clone()))
        .add_service(InterceptedService::new(maintenance, leader.clone()))
        .add_service(InterceptedService::new(cluster, leader));
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, "serving client requests (gRPC and HTTP)");
    // Our own listener (bound early), so TCP_NODELAY must be set here: the builder's
    // tcp_nodelay only applies to listeners tonic binds itself. Without it, Nagle's algorithm
    // and delayed ACKs add up to 40 ms to responses written in several frames.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(grpc_limit::GrpcLimitLayer::new(max_recv))
        .accept_http1(true)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(cfg.grpc_keepalive_interval))
        .http2_keepalive_timeout(Some(cfg.grpc_keepalive_timeout))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ServerError::State(format!("client server failed: {e}")))
}
