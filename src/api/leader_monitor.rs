//! etcd's leader monitor for `hasleader` streams (clientv3's `WithRequireLeader`): a member
//! without a leader refuses such a stream at once (the `require_leader` interceptor in
//! `api/mod.rs`) and cancels an open one with `no leader` once it has gone
//! [`MAX_NO_LEADER_CHECKS`] election timeouts in a row without a leader; reconnecting streams
//! costs more than refusing new ones. etcd applies it to every stream: Watch, LeaseKeepAlive
//! and Observe.

use std::time::Duration;

use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::server::EtcdServer;

/// gRPC metadata a client sends to require a leader (etcd's `rpctypes.MetadataRequireLeaderKey`).
pub const REQUIRE_LEADER_KEY: &str = "hasleader";
/// Election timeouts without a leader before etcd cancels `hasleader` streams.
pub const MAX_NO_LEADER_CHECKS: u32 = 3;

/// Whether the request's metadata asks for a leader.
pub fn requires_leader(meta: &tonic::metadata::MetadataMap) -> bool {
    meta.get(REQUIRE_LEADER_KEY)
        .is_some_and(|v| v.as_bytes() == b"true")
}

/// Counts consecutive checks without a leader.
#[derive(Debug, Default)]
pub struct LeaderMonitor {
    misses: u32,
}

impl LeaderMonitor {
    /// Records one check; true when the stream must be canceled.
    pub fn observe(&mut self, has_leader: bool) -> bool {
        if has_leader {
            self.misses = 0;
        } else {
            self.misses += 1;
        }
        self.misses >= MAX_NO_LEADER_CHECKS
    }
}

/// Resolves when a `hasleader` stream must be canceled: after [`MAX_NO_LEADER_CHECKS`]
/// election timeouts in a row without a leader. Never resolves when `required` is false.
pub async fn leader_lost(server: &EtcdServer, election_timeout: Duration, required: bool) {
    if !required {
        return std::future::pending().await;
    }
    let mut tick = interval_at(Instant::now() + election_timeout, election_timeout);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut monitor = LeaderMonitor::default();
    loop {
        tick.tick().await;
        if monitor.observe(server.leader() != 0) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EtcdError;

    #[test]
    fn leader_monitor_needs_three_misses_in_a_row() {
        let mut m = LeaderMonitor::default();
        assert!(!m.observe(false));
        assert!(!m.observe(false));
        assert!(!m.observe(true)); // a leader resets the count
        assert!(!m.observe(false));
        assert!(!m.observe(false));
        assert!(m.observe(false));
        assert_eq!(
            tonic::Status::from(EtcdError::NoLeader).message(),
            "etcdserver: no leader"
        );
        assert_eq!(
            tonic::Status::from(EtcdError::NoLeader).code(),
            tonic::Code::Unavailable
        );
    }
}
