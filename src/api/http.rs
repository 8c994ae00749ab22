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
    let r = Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics));
    #[cfg(debug_assertions)]
    let r = if crate::fault::enabled() {
        r.route(
            "/debug/faults",
            get(faults::show).post(faults::set).delete(faults::clear),
        )
    } else {
        r
    };
    r.with_state(server)
}

/// The test-only fault switch's control (see `crate::fault`): debug builds started with
/// `FERROCD_FAULT_INJECTION=1` only.
#[cfg(debug_assertions)]
mod faults {
    use axum::Json;

    use crate::fault::{self, Faults};

    pub(super) async fn show() -> Json<Faults> {
        Json(fault::get())
    }

    pub(super) async fn set(Json(f): Json<Faults>) -> Json<Faults> {
        fault::set(f);
        Json(fault::get())
    }

    pub(super) async fn clear() -> Json<Faults> {
        fault::clear();
        Json(fault::get())
    }
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
