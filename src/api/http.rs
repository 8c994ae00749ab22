//! Plain HTTP on the client port, beside gRPC: `/health`, `/version` and `/metrics` with the
//! exact shapes etcd serves, so load balancers, Kubernetes probes and Prometheus scrape configs
//! written for etcd keep working.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::METRICS;
use crate::proto::etcdserverpb::{AlarmType, RangeRequest};
use crate::server::{EtcdServer, ETCD_CLUSTER_VERSION, ETCD_VERSION};

/// The HTTP routes served on every client URL.
pub fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

async fn version() -> impl IntoResponse {
    Json(json!({ "etcdserver": ETCD_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION }))
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    server.db_size(); // refresh the size gauges at scrape time
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        METRICS.render(),
    )
}

/// etcd's health check: no alarm (unless excluded), a leader, and (unless `serializable=true`)
/// a linearizable read that completes in time.
async fn health(
    State(server): State<Arc<EtcdServer>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let reason = check(&server, &q).await;
    let healthy = reason.is_none();
    if healthy {
        METRICS.health_success.inc();
    } else {
        METRICS.health_failures.inc();
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "health": healthy.to_string(), "reason": reason.unwrap_or_default() });
    (status, Json(body))
}

async fn check(server: &EtcdServer, q: &HashMap<String, String>) -> Option<String> {
    let excluded: Vec<&str> = q
        .get("exclude")
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    for a in server.alarms() {
        let name = AlarmType::try_from(a.alarm)
            .map(|t| t.as_str_name())
            .unwrap_or("UNKNOWN");
        if !excluded.contains(&name) {
            return Some(format!("ALARM {name}"));
        }
    }
    if server.leader() == 0 {
        return Some("RAFT NO LEADER".into());
    }
    let serializable = q.get("serializable").map(|v| v == "true").unwrap_or(false);
    let probe = RangeRequest {
        key: b"health".to_vec(),
        serializable,
        ..Default::default()
    };
    match tokio::time::timeout(Duration::from_secs(2), server.range(probe)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("QGET ERROR:{e}")),
        Err(_) => Some("QGET ERROR:timed out".into()),
    }
}
