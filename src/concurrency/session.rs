//! The lease a lock or campaign is held with. etcd's servers open a client "session" on the
//! request's lease; a session without a lease (id 0) grants one with the client library's
//! default TTL, which the server then never keeps alive (the session is orphaned), so such a
//! lock or candidacy lasts at most that long unless the client keeps the lease alive itself.

use crate::error::EtcdError;
use crate::proto::etcdserverpb::LeaseGrantRequest;
use crate::server::EtcdServer;

/// clientv3/concurrency's default session TTL in seconds.
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// The lease to hold a key with: `lease` itself, or a fresh one with the default session TTL
/// when the request named none.
pub async fn session_lease(server: &EtcdServer, lease: i64) -> Result<i64, EtcdError> {
    if lease != 0 {
        return Ok(lease);
    }
    let resp = server
        .lease_grant(LeaseGrantRequest {
            ttl: DEFAULT_SESSION_TTL,
            id: 0,
        })
        .await?;
    Ok(resp.id)
}
