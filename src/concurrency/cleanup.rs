//! Cleanup of a waiter whose call ends early. A gRPC call that the client cancels (or that
//! fails) while waiting for a lock or leadership must not leave its key behind, or it would
//! block every later waiter until its lease ran out: etcd deletes the key on any error. A
//! cancelled call here is a dropped future, so the delete is spawned from a drop guard.

use std::sync::Arc;

use crate::proto::etcdserverpb::TxnRequest;
use crate::server::EtcdServer;

use super::keys;

/// Deletes `key` (if it is still the generation created at `create_revision`) when dropped,
/// unless disarmed first.
pub struct DeleteOnDrop {
    server: Arc<EtcdServer>,
    key: Vec<u8>,
    create_revision: i64,
    armed: bool,
}

impl DeleteOnDrop {
    /// A guard for the waiter key `key` created at `create_revision`.
    pub fn new(server: Arc<EtcdServer>, key: Vec<u8>, create_revision: i64) -> Self {
        DeleteOnDrop {
            server,
            key,
            create_revision,
            armed: true,
        }
    }

    /// The call succeeded (or the key is already gone): keep the key.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %String::from_utf8_lossy(&self.key), "no runtime to remove an abandoned waiter key");
            return;
        };
        let server = self.server.clone();
        let key = std::mem::take(&mut self.key);
        // The compare keeps a newer generation of the key (re-created after ours was gone).
        let txn = TxnRequest {
            compare: vec![keys::create_revision_is(&key, self.create_revision)],
            success: vec![keys::delete_op(&key)],
            failure: vec![],
        };
        rt.spawn(async move {
            match server.txn(txn).await {
                Ok(r) => tracing::debug!(
                    key = %String::from_utf8_lossy(&key),
                    deleted = r.succeeded,
                    "removed the key of an abandoned lock or campaign"
                ),
                Err(e) => tracing::warn!(
                    key = %String::from_utf8_lossy(&key),
                    error = %e,
                    "could not remove the key of an abandoned lock or campaign; it stays until its lease ends"
                ),
            }
        });
    }
}
