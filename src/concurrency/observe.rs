//! Election.Observe (etcd's `Election.Observe`): the current leader, then every change of the
//! leader key's value, then the next leader once that key is deleted; while nobody leads, it
//! waits for the first candidate. It may skip intermediate values but always ends on the
//! newest one.

use tokio::sync::mpsc;
use tonic::Status;

use crate::error::EtcdError;
use crate::proto::mvccpb::{event::EventType, KeyValue};
use crate::proto::v3electionpb::LeaderResponse;
use crate::server::EtcdServer;

use super::keys;

/// Sends `name`'s leader updates into `out` until the receiver is gone (`Ok`) or a read or
/// watch fails.
pub async fn observe(
    server: &EtcdServer,
    name: &[u8],
    out: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), EtcdError> {
    let prefix = keys::prefix(name);
    loop {
        let resp = server.range(keys::first_created(&prefix)).await?;
        let read_rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        let (rev, leader) = match resp.kvs.into_iter().next() {
            Some(kv) => (read_rev, kv),
            None => first_candidate(server, &prefix, read_rev + 1).await?,
        };
        let first = LeaderResponse {
            header: Some(server.header(rev)),
            kv: Some(leader.clone()),
        };
        if out.send(Ok(first)).await.is_err() {
            return Ok(());
        }
        // Follow the leader key until it is deleted; then look for the next leader.
        let mut watch = server.watch_ranges(&[(leader.key.clone(), Vec::new())], rev + 1);
        'leader: loop {
            let batch = watch.next().await?;
            for ev in batch.events {
                if ev.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let update = LeaderResponse {
                    header: Some(server.header(batch.revision)),
                    kv: ev.kv,
                };
                if out.send(Ok(update)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Waits for the first key put under `prefix` from revision `from`: its revision and value.
async fn first_candidate(
    server: &EtcdServer,
    prefix: &[u8],
    from: i64,
) -> Result<(i64, KeyValue), EtcdError> {
    let mut watch = server.watch_ranges(&[(prefix.to_vec(), keys::prefix_end(prefix))], from);
    loop {
        let batch = watch.next().await?;
        // Deletes are skipped: only a put makes a candidate.
        let put = batch
            .events
            .into_iter()
            .find(|e| e.r#type == EventType::Put as i32)
            .and_then(|e| e.kv);
        if let Some(kv) = put {
            return Ok((kv.mod_revision, kv));
        }
    }
}
