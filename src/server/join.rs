//! Joining an existing cluster (`--initial-cluster-state=existing`): ask a member named in
//! `--initial-cluster` for the cluster id and the member list, in which `member add` must
//! already have put this member.

use std::time::{Duration, Instant};

use tonic::transport::Endpoint;

use super::bootstrap::JoinInfo;
use crate::config::{url_to_string, Config};
use crate::error::ServerError;
use crate::proto::ferrocdpb::members_client::MembersClient;
use crate::proto::ferrocdpb::MembersRequest;

/// How long to keep trying the other members.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches the membership from the first member of `--initial-cluster` (other than this one)
/// that answers.
pub async fn fetch_cluster(cfg: &Config) -> Result<JoinInfo, ServerError> {
    let mine: Vec<String> = cfg
        .initial_advertise_peer_urls
        .iter()
        .map(url_to_string)
        .collect();
    let targets: Vec<String> = cfg
        .initial_cluster
        .iter()
        .map(|(_, u)| url_to_string(u))
        .filter(|u| !mine.contains(u))
        .collect();
    if targets.is_empty() {
        return Err(ServerError::State(
            "--initial-cluster-state=existing but --initial-cluster names no other member to join through".into(),
        ));
    }
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        for t in &targets {
            let ep = match Endpoint::from_shared(t.clone()) {
                Ok(ep) => ep
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(5)),
                Err(e) => {
                    last_error = format!("{t}: {e}");
                    continue;
                }
            };
            match ep.connect().await {
                Ok(ch) => match MembersClient::new(ch).members(MembersRequest {}).await {
                    Ok(resp) => {
                        let r = resp.into_inner();
                        tracing::info!(via = %t, cluster_id = format!("{:x}", r.cluster_id), members = r.members.len(), "fetched cluster membership");
                        return Ok(JoinInfo {
                            cluster_id: r.cluster_id,
                            members: r.members,
                        });
                    }
                    Err(e) => last_error = format!("{t}: {}", e.message()),
                },
                Err(e) => last_error = format!("{t}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(ServerError::State(format!(
        "cannot reach any member of the cluster to join (--initial-cluster {}): {last_error}",
        targets.join(",")
    )))
}
