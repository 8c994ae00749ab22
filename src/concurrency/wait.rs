//! Waiting for one's turn: etcd's `waitDeletes`. A waiter whose key was created at revision
//! R holds the lock (or leads) once every key under the prefix created before R is gone. It
//! repeatedly reads the newest such key and waits for that key's deletion with a watch from
//! just after the read, so each key ahead is waited for once and nothing is missed between
//! the read and the watch.
//!
//! Unlike etcd, the waiter's own key is watched too: if its lease expires while it waits,
//! the wait ends at once instead of after every key ahead of it is gone (etcd only notices
//! after the wait; its code carries a TODO for exactly this).

use crate::error::EtcdError;
use crate::proto::etcdserverpb::{ResponseHeader, TxnRequest};
use crate::proto::mvccpb::event::EventType;
use crate::server::EtcdServer;

use super::keys;

/// How a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Waited {
    /// No key created before ours is left, and ours still exists (the header of that read).
    Clear(ResponseHeader),
    /// Our own key was deleted (lease expired or revoked, or an unlock) while we waited.
    OwnKeyGone,
}

/// Waits until no key under `prefix` has a create revision ≤ `max_create_revision`, or until
/// `own_key` is gone.
pub async fn wait_deletes(
    server: &EtcdServer,
    prefix: &[u8],
    max_create_revision: i64,
    own_key: &[u8],
) -> Result<Waited, EtcdError> {
    loop {
        // One read-only txn, so both answers are of the same revision.
        let resp = server
            .txn(TxnRequest {
                success: vec![
                    keys::range_op(keys::last_created_up_to(prefix, max_create_revision)),
                    keys::range_op(keys::get(own_key)),
                ],
                ..Default::default()
            })
            .await?;
        let header = resp.header.unwrap_or_default();
        let own_exists = keys::range_result(&resp, 1).is_some_and(|r| !r.kvs.is_empty());
        if !own_exists {
            return Ok(Waited::OwnKeyGone);
        }
        let ahead = keys::range_result(&resp, 0).and_then(|r| r.kvs.first());
        let Some(ahead) = ahead else {
            return Ok(Waited::Clear(header));
        };
        let ahead = ahead.key.clone();
        if !wait_delete(server, &ahead, own_key, header.revision + 1).await? {
            return Ok(Waited::OwnKeyGone);
        }
    }
}

/// Waits for the deletion of `key` (true) or of `own_key` (false), from revision `from`.
async fn wait_delete(
    server: &EtcdServer,
    key: &[u8],
    own_key: &[u8],
    from: i64,
) -> Result<bool, EtcdError> {
    let mut watch =
        server.watch_ranges(&[(key.to_vec(), vec![]), (own_key.to_vec(), vec![])], from);
    loop {
        let batch = watch.next().await?;
        if batch
            .events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(batch.index == 0);
        }
    }
}
