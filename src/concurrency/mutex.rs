//! The lock recipe (etcd's `concurrency.Mutex` as its `v3lock` server runs it): one txn puts
//! the waiter's key `name/<lease hex>` unless it exists and reads the current holder; the
//! waiter with the lowest create revision holds the lock, the others wait for every key
//! ahead of them to be deleted, then check their own key survived the wait.

use std::sync::Arc;

use crate::error::EtcdError;
use crate::proto::etcdserverpb::{DeleteRangeRequest, TxnRequest};
use crate::proto::v3lockpb::{LockResponse, UnlockResponse};
use crate::server::EtcdServer;

use super::cleanup::DeleteOnDrop;
use super::keys;
use super::session::session_lease;
use super::wait::{wait_deletes, Waited};

/// Lock.Lock: returns once the caller holds `name` with `lease` (0: a fresh lease with the
/// default session TTL). The response carries the key, which exists while the lock is held.
///
/// If the future is dropped (the client cancelled) or the wait fails, the waiter's key is
/// deleted so it does not block later waiters, as etcd does.
pub async fn lock(
    server: &Arc<EtcdServer>,
    name: &[u8],
    lease: i64,
) -> Result<LockResponse, EtcdError> {
    let lease = session_lease(server, lease).await?;
    let prefix = keys::prefix(name);
    let key = keys::own_key(&prefix, lease);
    let resp = server
        .txn(TxnRequest {
            compare: vec![keys::create_revision_is(&key, 0)],
            success: vec![
                keys::put_op(&key, b"", lease),
                keys::range_op(keys::first_created(&prefix)),
            ],
            // The same lease already waits or holds: take its place again.
            failure: vec![
                keys::range_op(keys::get(&key)),
                keys::range_op(keys::first_created(&prefix)),
            ],
        })
        .await?;
    let header = resp.header.unwrap_or_default();
    let my_rev = if resp.succeeded {
        header.revision
    } else {
        keys::range_result(&resp, 0)
            .and_then(|r| r.kvs.first())
            .map(|kv| kv.create_revision)
            .ok_or_else(|| EtcdError::Internal("lock key vanished inside its txn".into()))?
    };
    let owner = keys::range_result(&resp, 1).and_then(|r| r.kvs.first());
    if owner.is_none_or(|o| o.create_revision == my_rev) {
        return Ok(LockResponse {
            header: Some(header),
            key,
        });
    }
    let guard = DeleteOnDrop::new(server.clone(), key.clone(), my_rev);
    match wait_deletes(server, &prefix, my_rev - 1, &key).await? {
        Waited::Clear(header) => {
            guard.disarm();
            Ok(LockResponse {
                header: Some(header),
                key,
            })
        }
        Waited::OwnKeyGone => {
            guard.disarm();
            Err(EtcdError::SessionExpired)
        }
    }
}

/// Lock.Unlock: deletes the lock's key (the next waiter then holds it).
pub async fn unlock(server: &EtcdServer, key: &[u8]) -> Result<UnlockResponse, EtcdError> {
    if key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    let resp = server
        .delete_range(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .await?;
    Ok(UnlockResponse {
        header: resp.header,
    })
}
