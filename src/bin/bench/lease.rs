//! `lease-keepalive`: every client grants one lease, then renews it over its own long-lived
//! LeaseKeepAlive stream, one request in flight at a time; a request's latency is the renewal's
//! round trip. This is the steady load a fleet of etcd clients with leases puts on a cluster.
//!
//! `lease-grant-revoke`: each request grants a lease and revokes it, the lifecycle of every
//! short-lived registration or lock session.

use ferrocd::proto::etcdserverpb::lease_client::LeaseClient;
use ferrocd::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::runner::{status_message, Worker};

/// An open keep-alive stream: where requests go, where responses come from.
struct Stream {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

/// One client and its lease.
pub struct KeepAlive {
    client: LeaseClient<Channel>,
    /// The lease id, or why it could not be granted (each keep-alive then fails with it).
    lease: Result<i64, String>,
    stream: Option<Stream>,
}

impl KeepAlive {
    /// Grants this client's lease of `ttl` seconds (not timed: only renewals are measured).
    pub async fn grant(ch: Channel, ttl: i64) -> KeepAlive {
        let mut client = LeaseClient::new(ch);
        let lease = client
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(|s| format!("lease grant: {}", status_message(&s)))
            .and_then(|r| {
                let r = r.into_inner();
                if r.error.is_empty() {
                    Ok(r.id)
                } else {
                    Err(format!("lease grant: {}", r.error))
                }
            });
        KeepAlive {
            client,
            lease,
            stream: None,
        }
    }

    /// Revokes the lease so a run leaves nothing behind (best effort: it expires anyway).
    pub async fn revoke(mut self) {
        self.stream = None;
        if let Ok(id) = self.lease {
            let _ = self.client.lease_revoke(LeaseRevokeRequest { id }).await;
        }
    }

    /// Sends one renewal and waits for its answer, opening the stream on first use.
    async fn renew(&mut self, id: i64) -> Result<LeaseKeepAliveResponse, String> {
        let req = LeaseKeepAliveRequest { id };
        let stream = match &mut self.stream {
            Some(s) => {
                s.tx.send(req)
                    .await
                    .map_err(|_| "keep-alive stream closed".to_string())?;
                s
            }
            None => {
                // Queue the first request before the call: etcd sends the response headers
                // only with its first response, so the call would not return before it.
                let (tx, rx) = mpsc::channel(4);
                tx.send(req).await.expect("receiver is alive");
                let rx = self
                    .client
                    .lease_keep_alive(ReceiverStream::new(rx))
                    .await
                    .map_err(|s| status_message(&s))?
                    .into_inner();
                self.stream.insert(Stream { tx, rx })
            }
        };
        match stream.rx.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err("keep-alive stream ended".into()),
            Err(s) => Err(status_message(&s)),
        }
    }
}

impl Worker for KeepAlive {
    async fn call(&mut self, _i: u64) -> Result<(), String> {
        let id = self.lease.clone()?;
        match self.renew(id).await {
            Ok(r) if r.ttl > 0 => Ok(()),
            Ok(_) => Err("lease not found (expired or revoked)".into()),
            Err(e) => {
                // Start a fresh stream next time rather than reuse a broken one.
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// One client granting and revoking leases.
pub struct GrantRevoke {
    client: LeaseClient<Channel>,
    ttl: i64,
}

impl GrantRevoke {
    /// A client on `ch` granting leases of `ttl` seconds.
    pub fn new(ch: Channel, ttl: i64) -> GrantRevoke {
        GrantRevoke {
            client: LeaseClient::new(ch),
            ttl,
        }
    }
}

impl Worker for GrantRevoke {
    async fn call(&mut self, _i: u64) -> Result<(), String> {
        let g = self
            .client
            .lease_grant(LeaseGrantRequest {
                ttl: self.ttl,
                id: 0,
            })
            .await
            .map_err(|s| format!("lease grant: {}", status_message(&s)))?
            .into_inner();
        if !g.error.is_empty() {
            return Err(format!("lease grant: {}", g.error));
        }
        self.client
            .lease_revoke(LeaseRevokeRequest { id: g.id })
            .await
            .map_err(|s| format!("lease revoke: {}", status_message(&s)))?;
        Ok(())
    }
}
