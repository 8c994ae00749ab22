//! The Prometheus registry, with etcd's metric names and bucket layouts.
//!
//! Dashboards and alerts written for etcd query these exact names (see
//! `shared/reference/etcd-metrics.txt`), so a metric that exists in ferrocd is named and typed
//! as etcd names it. One process serves one member, so the registry is process-global like
//! etcd's.

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric ferrocd exports.
pub struct Metrics {
    registry: Registry,
    /// Latency of each WAL fdatasync (one per raft Ready).
    pub wal_fsync: Histogram,
    /// Bytes appended to the WAL.
    pub wal_write_bytes: IntGauge,
    /// Latency of each atomic backend commit by the applier.
    pub backend_commit: Histogram,
    /// 1 while this member knows a leader.
    pub has_leader: IntGauge,
    /// 1 while this member is the leader.
    pub is_leader: IntGauge,
    /// 1 while this member is a learner.
    pub is_learner: IntGauge,
    /// Leader changes seen by this member.
    pub leader_changes: IntCounter,
    /// Raft entries committed (the commit index).
    pub proposals_committed: IntGauge,
    /// Raft entries applied (the applied index).
    pub proposals_applied: IntGauge,
    /// Proposals waiting to be applied.
    pub proposals_pending: IntGauge,
    /// Proposals that failed (dropped, timed out).
    pub proposals_failed: IntCounter,
    /// ReadIndex rounds that failed or timed out.
    pub read_indexes_failed: IntCounter,
    /// ReadIndex rounds slower than expected.
    pub slow_read_indexes: IntCounter,
    /// Applies slower than 100 ms.
    pub slow_apply: IntCounter,
    /// Backend size on disk.
    pub db_total_size: IntGauge,
    /// Backend size on disk (etcd's older debugging name, still on dashboards).
    pub db_total_size_debugging: IntGauge,
    /// Backend bytes in use.
    pub db_total_size_in_use: IntGauge,
    /// Live keys.
    pub keys_total: IntGauge,
    /// Current revision.
    pub current_revision: IntGauge,
    /// Last compacted revision.
    pub compact_revision: IntGauge,
    /// Put operations applied.
    pub put_total: IntCounter,
    /// Range operations served.
    pub range_total: IntCounter,
    /// Delete operations applied.
    pub delete_total: IntCounter,
    /// Txns served.
    pub txn_total: IntCounter,
    /// Puts, debugging name.
    pub put_total_debugging: IntCounter,
    /// Ranges, debugging name.
    pub range_total_debugging: IntCounter,
    /// Deletes, debugging name.
    pub delete_total_debugging: IntCounter,
    /// Txns, debugging name.
    pub txn_total_debugging: IntCounter,
    /// The backend quota.
    pub quota_backend_bytes: IntGauge,
    /// This member's id (label server_id), value 1.
    pub server_id: IntGaugeVec,
    /// The etcd version we speak (label server_version), value 1.
    pub server_version: IntGaugeVec,
    /// The cluster version (label cluster_version), value 1.
    pub cluster_version: IntGaugeVec,
    /// Bytes sent to each peer (label To).
    pub peer_sent_bytes: IntCounterVec,
    /// Bytes received from each peer (label From).
    pub peer_received_bytes: IntCounterVec,
    /// Connected peers (labels Local, Remote), value 1 while connected.
    pub active_peers: IntGaugeVec,
    /// Heartbeats that could not be sent.
    pub heartbeat_send_failures: IntCounter,
    /// Learners promoted.
    pub learner_promote_successes: IntCounter,
    /// Snapshot installs in progress.
    pub snapshot_apply_in_progress: IntGauge,
    /// Health checks that passed.
    pub health_success: IntCounter,
    /// Health checks that failed.
    pub health_failures: IntCounter,
    /// Watchers (etcd counts a compaction-canceled watcher until its id is released).
    pub watchers: IntGauge,
    /// Open watch streams.
    pub watch_streams: IntGauge,
    /// Watchers catching up (unsynced).
    pub slow_watchers: IntGauge,
    /// Events queued for streams but not yet sent.
    pub watch_pending_events: IntGauge,
    /// Events sent to watch streams.
    pub watch_events: IntCounter,
    /// Revisions deleted by physical compaction.
    pub compaction_keys: IntCounter,
    /// How long each physical compaction batch held the backend, in ms (etcd's pause).
    pub compaction_pause: Histogram,
    /// How long whole physical compactions took, in ms.
    pub compaction_total: Histogram,
    /// How long compacting the in-memory key index held the store, in ms.
    pub index_compaction_pause: Histogram,
    /// How long defragmentations took, in seconds.
    pub defrag_duration: Histogram,
    /// 1 while a defragmentation runs.
    pub defrag_inflight: IntGauge,
    /// Leases granted (applied here).
    pub lease_granted: IntCounter,
    /// Leases revoked, by a client or by expiry (applied here).
    pub lease_revoked: IntCounter,
    /// Keep-alives this member renewed (as leader).
    pub lease_renewed: IntCounter,
    /// Granted lease TTLs in seconds.
    pub lease_ttl: Histogram,
    /// Leases this member (as leader) found expired and revoked.
    pub lease_expired: IntCounter,
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// A histogram with etcd's exponential buckets: `start`, doubling `count` times.
fn histogram(r: &Registry, name: &str, help: &str, start: f64, count: usize) -> Histogram {
    let opts = HistogramOpts::new(name, help)
        .buckets(exponential_buckets(start, 2.0, count).expect("valid buckets"));
    let h = Histogram::with_opts(opts).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// etcd's disk latency buckets: 1 ms doubling 14 times (up to ~8 s).
fn disk_histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    let opts = HistogramOpts::new(name, help)
        .buckets(exponential_buckets(0.001, 2.0, 14).expect("valid buckets"));
    let h = Histogram::with_opts(opts).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }
        Metrics {
            wal_fsync: disk_histogram(
                &r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
            wal_write_bytes: gauge(&r, "etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL."),
            backend_commit: disk_histogram(
                &r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            ),
            has_leader: gauge(&r, "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
            is_leader: gauge(&r, "etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."),
            is_learner: gauge(&r, "etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise."),
            leader_changes: counter(&r, "etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
            proposals_committed: gauge(&r, "etcd_server_proposals_committed_total", "The total number of consensus proposals committed."),
            proposals_applied: gauge(&r, "etcd_server_proposals_applied_total", "The total number of consensus proposals applied."),
            proposals_pending: gauge(&r, "etcd_server_proposals_pending", "The current number of pending proposals to commit."),
            proposals_failed: counter(&r, "etcd_server_proposals_failed_total", "The total number of failed proposals seen."),
            read_indexes_failed: counter(&r, "etcd_server_read_indexes_failed_total", "The total number of failed read indexes seen."),
            slow_read_indexes: counter(&r, "etcd_server_slow_read_indexes_total", "The total number of pending read indexes not in sync with leader's or timed out read index requests."),
            slow_apply: counter(&r, "etcd_server_slow_apply_total", "The total number of slow apply requests (likely overloaded from slow disk)."),
            db_total_size: gauge(&r, "etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes."),
            db_total_size_debugging: gauge(&r, "etcd_debugging_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes."),
            db_total_size_in_use: gauge(&r, "etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes."),
            keys_total: gauge(&r, "etcd_debugging_mvcc_keys_total", "Total number of keys."),
            current_revision: gauge(&r, "etcd_debugging_mvcc_current_revision", "The current revision of store."),
            compact_revision: gauge(&r, "etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store."),
            put_total: counter(&r, "etcd_mvcc_put_total", "Total number of puts seen by this member."),
            range_total: counter(&r, "etcd_mvcc_range_total", "Total number of ranges seen by this member."),
            delete_total: counter(&r, "etcd_mvcc_delete_total", "Total number of deletes seen by this member."),
            txn_total: counter(&r, "etcd_mvcc_txn_total", "Total number of txns seen by this member."),
            put_total_debugging: counter(&r, "etcd_debugging_mvcc_put_total", "Total number of puts seen by this member."),
            range_total_debugging: counter(&r, "etcd_debugging_mvcc_range_total", "Total number of ranges seen by this member."),
            delete_total_debugging: counter(&r, "etcd_debugging_mvcc_delete_total", "Total number of deletes seen by this member."),
            txn_total_debugging: counter(&r, "etcd_debugging_mvcc_txn_total", "Total number of txns seen by this member."),
            quota_backend_bytes: gauge(&r, "etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes."),
            server_id: gauge_vec(&r, "etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", &["server_id"]),
            server_version: gauge_vec(&r, "etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.", &["server_version"]),
            cluster_version: gauge_vec(&r, "etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version", &["cluster_version"]),
            peer_sent_bytes: counter_vec(&r, "etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", &["To"]),
            peer_received_bytes: counter_vec(&r, "etcd_network_peer_received_bytes_total", "The total number of bytes received from peers.", &["From"]),
            active_peers: gauge_vec(&r, "etcd_network_active_peers", "The current number of active peer connections.", &["Local", "Remote"]),
            heartbeat_send_failures: counter(&r, "etcd_server_heartbeat_send_failures_total", "The total number of leader heartbeat send failures (likely overloaded from slow disk)."),
            learner_promote_successes: counter(&r, "etcd_server_learner_promote_successes", "The total number of successful learner promotions while this member is leader."),
            snapshot_apply_in_progress: gauge(&r, "etcd_server_snapshot_apply_in_progress_total", "1 if the server is applying the incoming snapshot. 0 if none."),
            health_success: counter(&r, "etcd_server_health_success", "The total number of successful health checks"),
            health_failures: counter(&r, "etcd_server_health_failures", "The total number of failed health checks"),
            watchers: gauge(&r, "etcd_debugging_mvcc_watcher_total", "Total number of watchers."),
            watch_streams: gauge(&r, "etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams."),
            slow_watchers: gauge(&r, "etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers."),
            watch_pending_events: gauge(&r, "etcd_debugging_mvcc_pending_events_total", "Total number of pending events to be sent."),
            watch_events: counter(&r, "etcd_debugging_mvcc_events_total", "Total number of events sent by this member."),
            compaction_keys: counter(&r, "etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted."),
            compaction_pause: histogram(&r, "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds", "Bucketed histogram of db compaction pause duration.", 1.0, 13),
            compaction_total: histogram(&r, "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds", "Bucketed histogram of db compaction total duration.", 100.0, 14),
            index_compaction_pause: histogram(&r, "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds", "Bucketed histogram of index compaction pause duration.", 0.5, 12),
            defrag_duration: histogram(&r, "etcd_disk_backend_defrag_duration_seconds", "The latency distribution of backend defragmentation.", 0.1, 13),
            defrag_inflight: gauge(&r, "etcd_disk_defrag_inflight", "Whether or not defrag is active on the member. 1 means active, 0 means not."),
            lease_granted: counter(&r, "etcd_debugging_lease_granted_total", "The total number of granted leases."),
            lease_revoked: counter(&r, "etcd_debugging_lease_revoked_total", "The total number of revoked leases."),
            lease_renewed: counter(&r, "etcd_debugging_lease_renewed_total", "The number of renewed leases seen by the leader."),
            lease_ttl: histogram(&r, "etcd_debugging_lease_ttl_total", "Bucketed histogram of lease TTLs.", 1.0, 14),
            lease_expired: counter(&r, "etcd_debugging_server_lease_expired_total", "The total number of expired leases."),
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric, for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_etcd() {
        METRICS.wal_fsync.observe(0.002);
        METRICS.put_total.inc();
        METRICS.has_leader.set(1);
        let text = METRICS.render();
        for name in [
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}",
            "etcd_disk_wal_fsync_duration_seconds_count 1",
            "etcd_mvcc_put_total 1",
            "etcd_server_has_leader 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
