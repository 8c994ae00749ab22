//! Connections: endpoints to gRPC channels, and `--target-leader`, which asks the members who
//! leads (Maintenance.Status) so a write benchmark does not pay a follower's forwarding hop.

use std::time::Duration;

use anyhow::Context as _;
use ferrocd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use ferrocd::proto::etcdserverpb::StatusRequest;
use tonic::transport::{Channel, Endpoint};

/// An endpoint as a URI tonic accepts (`host:port` gets `http://`).
pub fn uri(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Opens one channel to `endpoint`.
pub async fn dial(endpoint: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Endpoint::from_shared(uri(endpoint))
        .with_context(|| format!("bad endpoint {endpoint:?}"))?
        .tcp_nodelay(true)
        .connect_timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

/// Opens `conns` channels (at least one), round-robin over `endpoints`, like etcd's benchmark.
pub async fn connect(
    endpoints: &[String],
    conns: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Channel>> {
    anyhow::ensure!(!endpoints.is_empty(), "no endpoints given");
    let mut out = Vec::with_capacity(conns.max(1));
    for i in 0..conns.max(1) {
        out.push(dial(&endpoints[i % endpoints.len()], timeout).await?);
    }
    Ok(out)
}

/// The endpoint whose member is the leader: each endpoint's Status names the leader's member
/// id, and the leader's own Status carries that id in its header.
pub async fn find_leader(endpoints: &[String], timeout: Duration) -> anyhow::Result<String> {
    let mut leader_id = 0;
    let mut ids = Vec::new();
    let mut last_err = None;
    for ep in endpoints {
        let status = async {
            let ch = dial(ep, timeout).await?;
            let s =
                tokio::time::timeout(timeout, MaintenanceClient::new(ch).status(StatusRequest {}))
                    .await
                    .context("Status timed out")??
                    .into_inner();
            anyhow::Ok(s)
        }
        .await;
        match status {
            Ok(s) => {
                if s.leader != 0 {
                    leader_id = s.leader;
                }
                ids.push((ep, s.header.map(|h| h.member_id).unwrap_or(0)));
            }
            Err(e) => last_err = Some(e),
        }
    }
    if leader_id != 0 {
        if let Some((ep, _)) = ids.iter().find(|(_, id)| *id == leader_id) {
            return Ok((*ep).clone());
        }
        anyhow::bail!("the leader ({leader_id:x}) is not among the endpoints {endpoints:?}");
    }
    match last_err {
        Some(e) => Err(e.context("no endpoint reported a leader")),
        None => anyhow::bail!("no endpoint reported a leader"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_adds_http_only_when_missing() {
        assert_eq!(uri("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(uri("http://127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(uri("https://127.0.0.1:2379"), "https://127.0.0.1:2379");
    }
}
