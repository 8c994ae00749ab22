//! The periodic corruption check (`--experimental-corrupt-check-time`), as etcd's leader runs
//! it: every interval the leader hashes its key history at its current revision and asks every
//! other member for its hash at the same revision; a member that has the same compaction point
//! but a different hash has diverged, and the leader raises the CORRUPT alarm for it through
//! raft. From then on every member refuses reads and writes with `corrupt cluster` until an
//! operator repairs the member and disarms the alarm.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Endpoint;

use super::EtcdServer;
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmType, HashKvRequest,
};
use crate::proto::ferrocdpb::members_client::MembersClient;

/// How long the leader waits for one member's hash.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

impl EtcdServer {
    /// Starts the periodic check (nothing when `every` is zero, etcd's default).
    pub(super) fn spawn_corruption_check(self: &Arc<Self>, every: Duration) {
        if every.is_zero() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tracing::info!(every = ?every, "periodic corruption check enabled");
            loop {
                tokio::time::sleep(every).await;
                if me.status.stopped.load(Ordering::Acquire) {
                    return;
                }
                if me.is_leader() {
                    me.check_corruption().await;
                }
            }
        });
    }

    /// One pass: compares every member's HashKV with the leader's at the leader's revision.
    /// Returns the members found diverged.
    pub async fn check_corruption(&self) -> Vec<u64> {
        let rev = self.current_revision();
        let store = self.store.clone();
        let own = tokio::task::spawn_blocking(move || store.read().hash_kv(rev)).await;
        let Ok(Ok((hash, compact_rev, _))) = own else {
            return Vec::new();
        };
        let mut diverged = Vec::new();
        for m in self.members() {
            if m.id == self.member_id {
                continue;
            }
            let Some(url) = m.peer_urls.first() else {
                continue;
            };
            let Ok(ep) = Endpoint::from_shared(url.clone()) else {
                continue;
            };
            let ep = ep.connect_timeout(PEER_TIMEOUT).timeout(PEER_TIMEOUT);
            let Ok(ch) = ep.connect().await else {
                tracing::debug!(
                    member = format!("{:x}", m.id),
                    "corruption check: member unreachable"
                );
                continue;
            };
            // A member behind our revision answers `future revision`, one compacted past it
            // `compacted`: neither can be compared this round.
            let Ok(resp) = MembersClient::new(ch)
                .hash_kv(HashKvRequest { revision: rev })
                .await
            else {
                continue;
            };
            let r = resp.into_inner();
            if r.compact_revision == compact_rev && r.hash != hash {
                tracing::error!(
                    member = format!("{:x}", m.id),
                    revision = rev,
                    leader_hash = hash,
                    member_hash = r.hash,
                    "member's key history differs from the leader's at the same revision; raising CORRUPT"
                );
                diverged.push(m.id);
            }
        }
        for id in &diverged {
            let req = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: *id,
                alarm: AlarmType::Corrupt as i32,
            };
            if let Err(e) = self.alarm(req).await {
                tracing::warn!(member = format!("{id:x}"), error = %e, "raising CORRUPT failed");
            }
        }
        diverged
    }
}
