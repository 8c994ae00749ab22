//! Leases: time-limited grants that keys attach to, so a client that dies takes its keys (a
//! service registration, a lock, an election candidacy) with it.
//!
//! The [`Lessor`] keeps every lease and the keys attached to it. Its persisted state (the lease
//! bucket) changes only when the applier applies a committed request, so every member agrees on
//! which leases exist. The clock, however, is the leader's: only the leader (the *primary*
//! lessor) renews leases and decides that one has expired, and it proposes the revocation
//! through raft. To keep the clock honest across leader changes, the leader checkpoints the
//! remaining TTL of renewed leases through raft, and every member tracks, from the last grant or
//! checkpoint it applied, when each lease would run out; a new leader starts from that deadline
//! instead of the full TTL (etcd's default) and never earlier than it.

mod expiry_queue;
mod lessor;
mod record;

pub use lessor::{Lessor, TimeToLive};

/// The lease id meaning "no lease".
pub const NO_LEASE: i64 = 0;

/// etcd's largest grantable TTL in seconds (`MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// How often the leader checks for expired leases and checkpoints renewed ones (etcd checks
/// expiry every 500 ms).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(500);

/// etcd's revocation rate limit: expired leases revoked per second, so a mass expiry (a
/// restarted fleet of clients) cannot flood the log and stall the cluster.
pub const REVOKE_RATE: usize = 1000;

/// Checkpoints carried by one raft entry at most (keeps an entry far below the request limit:
/// each checkpoint is about 20 bytes).
pub const MAX_CHECKPOINTS_PER_ENTRY: usize = 20_000;

/// etcd's minimum lease TTL for an election timeout: ceil(1.5 × election timeout) seconds.
pub fn min_ttl(election_timeout: std::time::Duration) -> i64 {
    let ms = election_timeout.as_millis() as i64;
    ((ms * 3 / 2) + 999) / 1000
}

#[cfg(test)]
mod tests;
