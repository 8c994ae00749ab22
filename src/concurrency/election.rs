//! The election recipe (etcd's `concurrency.Election` as its `v3election` server runs it).
//! A candidate's key is `name/<lease hex>` holding its proposed value; the candidate with the
//! lowest create revision leads. `Proclaim` and `Resign` act only if the leader key is still
//! the generation the campaign created (its create revision), so a stale leader cannot
//! overwrite or delete a successor's key.

use std::sync::Arc;

use crate::error::EtcdError;
use crate::proto::etcdserverpb::{ResponseHeader, TxnRequest};
use crate::proto::v3electionpb::{
    CampaignResponse, LeaderKey, LeaderResponse, ProclaimResponse, ResignResponse,
};
use crate::server::EtcdServer;

use super::cleanup::DeleteOnDrop;
use super::keys;
use super::session::session_lease;
use super::wait::{wait_deletes, Waited};

/// Election.Campaign: returns once the caller leads `name` with `value`, held by `lease`
/// (0: a fresh lease with the default session TTL). Campaigning again with the same lease
/// resumes the same candidacy (and proclaims `value` if it differs).
///
/// If the future is dropped (the client cancelled), the candidacy is resigned, as etcd does.
/// Unlike etcd, a candidate whose key disappears while it waits (its lease ended) gets
/// `election: not leader` instead of a leadership it no longer has.
pub async fn campaign(
    server: &Arc<EtcdServer>,
    name: &[u8],
    lease: i64,
    value: &[u8],
) -> Result<CampaignResponse, EtcdError> {
    let lease = session_lease(server, lease).await?;
    let prefix = keys::prefix(name);
    let key = keys::own_key(&prefix, lease);
    let resp = server
        .txn(TxnRequest {
            compare: vec![keys::create_revision_is(&key, 0)],
            success: vec![keys::put_op(&key, value, lease)],
            failure: vec![keys::range_op(keys::get(&key))],
        })
        .await?;
    let header = resp.header.unwrap_or_default();
    let mut rev = header.revision;
    if !resp.succeeded {
        let kv = keys::range_result(&resp, 0)
            .and_then(|r| r.kvs.first())
            .ok_or_else(|| EtcdError::Internal("campaign key vanished inside its txn".into()))?;
        rev = kv.create_revision;
        if kv.value != value {
            if let Err(e) = proclaim_at(server, &key, rev, lease, value).await {
                let _ = resign_at(server, &key, rev).await;
                return Err(e);
            }
        }
    }
    let guard = DeleteOnDrop::new(server.clone(), key.clone(), rev);
    let waited = wait_deletes(server, &prefix, rev - 1, &key).await;
    // Only a cancelled call resigns; after an error the candidacy stays, so a retry with the
    // same lease resumes its place (etcd's behaviour).
    guard.disarm();
    match waited? {
        Waited::Clear(_) => Ok(CampaignResponse {
            header: Some(header),
            leader: Some(LeaderKey {
                name: name.to_vec(),
                key,
                rev,
                lease,
            }),
        }),
        Waited::OwnKeyGone => Err(EtcdError::ElectionNotLeader),
    }
}

/// Election.Proclaim: the leader announces a new value without a new election.
pub async fn proclaim(
    server: &EtcdServer,
    leader: Option<LeaderKey>,
    value: &[u8],
) -> Result<ProclaimResponse, EtcdError> {
    let leader = leader.ok_or(EtcdError::MissingLeaderKey)?;
    if leader.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    // etcd puts with the session's lease, which is a fresh one if the request names none.
    let lease = session_lease(server, leader.lease).await?;
    let header = proclaim_at(server, &leader.key, leader.rev, lease, value).await?;
    Ok(ProclaimResponse {
        header: Some(header),
    })
}

async fn proclaim_at(
    server: &EtcdServer,
    key: &[u8],
    rev: i64,
    lease: i64,
    value: &[u8],
) -> Result<ResponseHeader, EtcdError> {
    let resp = server
        .txn(TxnRequest {
            compare: vec![keys::create_revision_is(key, rev)],
            success: vec![keys::put_op(key, value, lease)],
            failure: vec![],
        })
        .await?;
    if !resp.succeeded {
        return Err(EtcdError::ElectionNotLeader);
    }
    Ok(resp.header.unwrap_or_default())
}

/// Election.Resign: deletes the leader key if it is still the campaign's, so the next
/// candidate leads. Resigning a key that is already gone is not an error.
pub async fn resign(
    server: &EtcdServer,
    leader: Option<LeaderKey>,
) -> Result<ResignResponse, EtcdError> {
    let leader = leader.ok_or(EtcdError::MissingLeaderKey)?;
    if leader.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    let header = resign_at(server, &leader.key, leader.rev).await?;
    Ok(ResignResponse {
        header: Some(header),
    })
}

async fn resign_at(server: &EtcdServer, key: &[u8], rev: i64) -> Result<ResponseHeader, EtcdError> {
    let resp = server
        .txn(TxnRequest {
            compare: vec![keys::create_revision_is(key, rev)],
            success: vec![keys::delete_op(key)],
            failure: vec![],
        })
        .await?;
    Ok(resp.header.unwrap_or_default())
}

/// Election.Leader: the current leader's key and value.
pub async fn leader(server: &EtcdServer, name: &[u8]) -> Result<LeaderResponse, EtcdError> {
    let resp = server
        .range(keys::first_created(&keys::prefix(name)))
        .await?;
    let kv = resp
        .kvs
        .into_iter()
        .next()
        .ok_or(EtcdError::ElectionNoLeader)?;
    Ok(LeaderResponse {
        header: resp.header,
        kv: Some(kv),
    })
}
