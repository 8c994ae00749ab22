//! Every etcd 3.5 server option as it arrives, before defaults and validation.
//!
//! One struct serves both the command line (clap) and the YAML file (serde): the flag
//! `--initial-cluster-token` and the file key `initial-cluster-token` are the same field,
//! so the two can never drift apart. `None` means "not given"; `build` applies defaults.
//! Fields that only one source has are skipped on the other side.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

use super::values::{Bool, GoDuration, Members, StrList, Text, UrlList};
use super::{AutoCompactionMode, ClusterState, LogLevel};

const MEMBER: &str = "Member";
const CLUSTERING: &str = "Clustering";
const SECURITY: &str = "Security";
const AUTH: &str = "Auth";
const MONITORING: &str = "Profiling and Monitoring";
const LOGGING: &str = "Logging";
const EXPERIMENTAL: &str = "Experimental features";
const UNSAFE: &str = "Unsafe features";
const COMPAT: &str = "Accepted for etcd compatibility (no effect in ferrocd yet)";
const REFUSED: &str = "Not supported (accepted only when unset, empty, false or 'off')";

/// The raw options. Many fields are only checked for presence (accepted-for-compatibility
/// flags), so the struct is never read field by field everywhere.
#[derive(Parser, Deserialize, Debug, Default)]
#[command(
    name = "ferrocd",
    about = "ferrocd: an etcd 3.5 compatible, Raft-replicated key-value server.",
    long_about = None,
    disable_version_flag = true,
    max_term_width = 110,
    after_help = "Every flag can also be set as an environment variable: --initial-cluster-token \
                  is ETCD_INITIAL_CLUSTER_TOKEN. A command-line flag wins over the variable. \
                  When a config file is given (--config-file or ETCD_CONFIG_FILE), other flags \
                  and variables are ignored, as in etcd."
)]
#[serde(rename_all = "kebab-case", default)]
#[allow(dead_code)]
pub(crate) struct RawConfig {
    // ---- Member ----
    /// Human-readable name for this member. [default: default]
    #[arg(long, help_heading = MEMBER)]
    pub name: Option<String>,
    /// Path to the data directory. [default: ${name}.ferrocd]
    #[arg(long, help_heading = MEMBER)]
    pub data_dir: Option<PathBuf>,
    /// Path to the dedicated WAL directory. [default: ${data-dir}/member/wal]
    #[arg(long, help_heading = MEMBER)]
    pub wal_dir: Option<PathBuf>,
    /// Number of committed transactions to trigger a snapshot to disk. [default: 10000]
    #[arg(long, help_heading = MEMBER)]
    pub snapshot_count: Option<u64>,
    /// Number of entries kept for a slow follower to catch up after a snapshot. [default: 5000]
    #[arg(long, visible_alias = "snapshot-catchup-entries", help_heading = MEMBER)]
    #[serde(
        alias = "experimental-snapshot-catch-up-entries",
        alias = "snapshot-catchup-entries"
    )]
    pub experimental_snapshot_catchup_entries: Option<u64>,
    /// Time (in milliseconds) of a heartbeat interval. [default: 100]
    #[arg(long, help_heading = MEMBER)]
    pub heartbeat_interval: Option<u64>,
    /// Time (in milliseconds) for an election to timeout. [default: 1000]
    #[arg(long, help_heading = MEMBER)]
    pub election_timeout: Option<u64>,
    /// Whether to fast-forward initial election ticks on boot for faster election. [default: true]
    #[arg(long, help_heading = MEMBER)]
    pub initial_election_tick_advance: Option<Bool>,
    /// List of URLs to listen on for peer traffic. [default: http://localhost:2380]
    #[arg(long, help_heading = MEMBER)]
    pub listen_peer_urls: Option<UrlList>,
    /// List of URLs to listen on for client gRPC traffic (and HTTP unless --listen-client-http-urls is set). [default: http://localhost:2379]
    #[arg(long, help_heading = MEMBER)]
    pub listen_client_urls: Option<UrlList>,
    /// List of URLs to listen on for HTTP-only client traffic.
    #[arg(long, help_heading = MEMBER)]
    pub listen_client_http_urls: Option<UrlList>,
    /// Raise alarms when backend size exceeds this many bytes (0 = default 2 GiB quota, negative = no quota). [default: 0]
    #[arg(long, allow_negative_numbers = true, help_heading = MEMBER)]
    pub quota_backend_bytes: Option<i64>,
    /// Maximum number of operations permitted in a transaction. [default: 128]
    #[arg(long, help_heading = MEMBER)]
    pub max_txn_ops: Option<usize>,
    /// Maximum client request size in bytes the server will accept. [default: 1572864]
    #[arg(long, help_heading = MEMBER)]
    pub max_request_bytes: Option<usize>,
    /// Maximum concurrent streams that each client can open at a time. [default: 4294967295]
    #[arg(long, help_heading = MEMBER)]
    pub max_concurrent_streams: Option<u32>,
    /// Minimum duration a client should wait before pinging the server. [default: 5s]
    #[arg(long, help_heading = MEMBER)]
    pub grpc_keepalive_min_time: Option<GoDuration>,
    /// Frequency of server-to-client pings to check a connection is alive (0 disables). [default: 2h]
    #[arg(long, help_heading = MEMBER)]
    pub grpc_keepalive_interval: Option<GoDuration>,
    /// Additional wait before closing a non-responsive connection (0 disables). [default: 20s]
    #[arg(long, help_heading = MEMBER)]
    pub grpc_keepalive_timeout: Option<GoDuration>,
    /// Enable the gRPC gateway (/v3/* JSON API on the client port). [default: true]
    #[arg(long, help_heading = MEMBER)]
    pub enable_grpc_gateway: Option<Bool>,

    // ---- Clustering ----
    /// List of this member's peer URLs to advertise to the rest of the cluster. [default: http://localhost:2380]
    #[arg(long, help_heading = CLUSTERING)]
    pub initial_advertise_peer_urls: Option<UrlList>,
    /// Initial cluster configuration for bootstrapping: name=URL,... [default: ${name}=${initial-advertise-peer-urls}]
    #[arg(long, help_heading = CLUSTERING)]
    pub initial_cluster: Option<Members>,
    /// Initial cluster state: 'new' or 'existing'. Ignored on restarts. [default: new]
    #[arg(long, help_heading = CLUSTERING)]
    pub initial_cluster_state: Option<ClusterState>,
    /// Initial cluster token for the cluster during bootstrap. [default: etcd-cluster]
    #[arg(long, help_heading = CLUSTERING)]
    pub initial_cluster_token: Option<String>,
    /// List of this member's client URLs to advertise to the public. [default: http://localhost:2379]
    #[arg(long, help_heading = CLUSTERING)]
    pub advertise_client_urls: Option<UrlList>,
    /// Reject reconfiguration requests that would cause quorum loss. [default: true]
    #[arg(long, help_heading = CLUSTERING)]
    pub strict_reconfig_check: Option<Bool>,
    /// Enable the Raft Pre-Vote algorithm. [default: true]
    #[arg(long, help_heading = CLUSTERING)]
    pub pre_vote: Option<Bool>,
    /// Auto compaction retention: hours or a duration (periodic), or revisions (revision). 0 disables. [default: 0]
    #[arg(long, help_heading = CLUSTERING)]
    pub auto_compaction_retention: Option<Text>,
    /// How to read --auto-compaction-retention: 'periodic' or 'revision'. [default: periodic]
    #[arg(long, help_heading = CLUSTERING)]
    pub auto_compaction_mode: Option<AutoCompactionMode>,

    // ---- Security ----
    /// Path to the client server TLS cert file.
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub key_file: Option<PathBuf>,
    /// Enable client cert authentication. [default: false]
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub client_cert_auth: Option<Bool>,
    /// Path to an explicit client TLS cert file (otherwise --cert-file is used).
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub client_cert_file: Option<PathBuf>,
    /// Path to an explicit client TLS key file (otherwise --key-file is used).
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub client_key_file: Option<PathBuf>,
    /// Path to the client certificate revocation list file.
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub client_crl_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Path to the peer server TLS cert file.
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub peer_key_file: Option<PathBuf>,
    /// Enable peer client cert authentication. [default: false]
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub peer_client_cert_auth: Option<Bool>,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Path to an explicit peer client TLS cert file (otherwise --peer-cert-file is used).
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub peer_client_cert_file: Option<PathBuf>,
    /// Path to an explicit peer client TLS key file (otherwise --peer-key-file is used).
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub peer_client_key_file: Option<PathBuf>,
    /// Path to the peer certificate revocation list file.
    #[arg(long, help_heading = SECURITY)]
    #[serde(skip)]
    pub peer_crl_file: Option<PathBuf>,
    /// YAML only: client TLS settings (cert-file, key-file, client-cert-auth, trusted-ca-file, auto-tls, ...).
    #[arg(skip)]
    pub client_transport_security: Option<SecurityYaml>,
    /// YAML only: peer TLS settings, same keys as client-transport-security.
    #[arg(skip)]
    pub peer_transport_security: Option<SecurityYaml>,

    // ---- Auth ----
    /// Auth token type and options: 'simple' or 'jwt,pub-key=...,priv-key=...,sign-method=...'. [default: simple]
    #[arg(long, help_heading = AUTH)]
    pub auth_token: Option<String>,
    /// Cost of the bcrypt algorithm for hashing auth passwords (4 to 31). [default: 10]
    #[arg(long, help_heading = AUTH)]
    pub bcrypt_cost: Option<u32>,
    /// Time (in seconds) of the auth token TTL. [default: 300]
    #[arg(long, help_heading = AUTH)]
    pub auth_token_ttl: Option<u64>,

    // ---- Profiling and monitoring ----
    /// Accepted; ferrocd has no pprof endpoint and ignores it. [default: false]
    #[arg(long, help_heading = MONITORING)]
    pub enable_pprof: Option<Bool>,
    /// List of URLs to listen on for the /metrics and /health endpoints.
    #[arg(long, help_heading = MONITORING)]
    pub listen_metrics_urls: Option<UrlList>,

    // ---- Logging ----
    /// Log level: debug, info, warn, error, panic or fatal. [default: info]
    #[arg(long, help_heading = LOGGING)]
    pub log_level: Option<LogLevel>,
    /// Log output targets: default, stderr, stdout or file paths (ferrocd logs to stderr for now). [default: default]
    #[arg(long, help_heading = LOGGING)]
    pub log_outputs: Option<StrList>,

    // ---- Experimental ----
    /// Maximum revisions deleted in each compaction batch. [default: 1000]
    #[arg(long, visible_alias = "compaction-batch-limit", help_heading = EXPERIMENTAL)]
    #[serde(alias = "compaction-batch-limit")]
    pub experimental_compaction_batch_limit: Option<usize>,
    /// Sleep interval between compaction batches. [default: 10ms]
    #[arg(long, visible_alias = "compaction-sleep-interval", help_heading = EXPERIMENTAL)]
    #[serde(alias = "compaction-sleep-interval")]
    pub experimental_compaction_sleep_interval: Option<GoDuration>,
    /// Duration of periodic watch progress notifications. [default: 10m]
    #[arg(long, visible_alias = "watch-progress-notify-interval", help_heading = EXPERIMENTAL)]
    #[serde(alias = "watch-progress-notify-interval")]
    pub experimental_watch_progress_notify_interval: Option<GoDuration>,
    /// A warning is logged when applying a request takes longer than this. [default: 100ms]
    #[arg(long, visible_alias = "warning-apply-duration", help_heading = EXPERIMENTAL)]
    #[serde(alias = "warning-apply-duration")]
    pub experimental_warning_apply_duration: Option<GoDuration>,

    // ---- Unsafe ----
    /// Force to create a new one-member cluster. [default: false]
    #[arg(long, help_heading = UNSAFE)]
    pub force_new_cluster: Option<Bool>,
    /// Disables fsync: unsafe, will lose data on a crash. [default: false]
    #[arg(long, help_heading = UNSAFE)]
    pub unsafe_no_fsync: Option<Bool>,

    // ---- Accepted, no effect yet ----
    /// Logger implementation; only 'zap' exists in etcd 3.5.
    #[arg(long, help_heading = COMPAT)]
    pub logger: Option<String>,
    /// Enable log rotation of a single log-outputs file target.
    #[arg(long, help_heading = COMPAT)]
    pub enable_log_rotation: Option<Bool>,
    /// Log rotation JSON configuration.
    #[arg(long, help_heading = COMPAT)]
    pub log_rotation_config_json: Option<String>,
    /// Level of detail for exported metrics: 'basic' or 'extensive'.
    #[arg(long, help_heading = COMPAT)]
    pub metrics: Option<String>,
    /// Check data corruption before serving any client/peer traffic.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_initial_corrupt_check: Option<Bool>,
    /// Duration between cluster corruption check passes.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_corrupt_check_time: Option<GoDuration>,
    /// Leader periodically checks followers' compaction hashes.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_compact_hash_check_enabled: Option<Bool>,
    /// Duration between compaction hash checks.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_compact_hash_check_time: Option<GoDuration>,
    /// Lease checkpointing (ferrocd always checkpoints remaining lease TTLs).
    #[arg(long, help_heading = COMPAT)]
    pub experimental_enable_lease_checkpoint: Option<Bool>,
    /// Persist lease checkpoints (ferrocd always does).
    #[arg(long, help_heading = COMPAT)]
    pub experimental_enable_lease_checkpoint_persist: Option<Bool>,
    /// Warning threshold for unary request duration.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_warning_unary_request_duration: Option<GoDuration>,
    /// Duration between two downgrade status checks.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_downgrade_check_time: Option<GoDuration>,
    /// Lock the backend's memory pages in RAM.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_memory_mlock: Option<Bool>,
    /// Write transactions use a shared buffer for their read checks.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_txn_mode_write_with_shared_buffer: Option<Bool>,
    /// Defragment on boot when at least this many megabytes would be freed.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_bootstrap_defrag_threshold_megabytes: Option<u64>,
    /// Stop serving gRPC during defragmentation.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_stop_grpc_service_on_defrag: Option<Bool>,
    /// Maximum number of learners in the cluster.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_max_learners: Option<u32>,
    /// Skip verification of SAN field in peer client certificates.
    #[arg(long, help_heading = COMPAT)]
    #[serde(skip)]
    pub experimental_peer_skip_client_san_verification: Option<Bool>,
    /// Enable OpenTelemetry distributed tracing.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_enable_distributed_tracing: Option<Bool>,
    /// Distributed tracing collector address.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_distributed_tracing_address: Option<String>,
    /// Distributed tracing service name.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_distributed_tracing_service_name: Option<String>,
    /// Distributed tracing instance ID.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_distributed_tracing_instance_id: Option<String>,
    /// Spans sampled per million.
    #[arg(long, help_heading = COMPAT)]
    pub experimental_distributed_tracing_sampling_rate: Option<u64>,
    /// Set SO_REUSEPORT on listeners.
    #[arg(long, help_heading = COMPAT)]
    #[serde(skip)]
    pub socket_reuse_port: Option<Bool>,
    /// Set SO_REUSEADDR on listeners.
    #[arg(long, help_heading = COMPAT)]
    #[serde(skip)]
    pub socket_reuse_address: Option<Bool>,
    /// YAML only: socket options (reuse-port, reuse-address).
    #[arg(skip)]
    pub socket_options: Option<SocketOptionsYaml>,
    /// Maximum number of snapshot files to retain (0 is unlimited).
    #[arg(long, help_heading = COMPAT)]
    pub max_snapshots: Option<u32>,
    /// Maximum number of WAL files to retain (0 is unlimited).
    #[arg(long, help_heading = COMPAT)]
    pub max_wals: Option<u32>,
    /// Comma-separated list of origins allowed for CORS.
    #[arg(long, help_heading = COMPAT)]
    pub cors: Option<String>,
    /// Acceptable hostnames from HTTP client requests.
    #[arg(long, help_heading = COMPAT)]
    pub host_whitelist: Option<String>,
    /// Expected behavior when discovery fails ('exit' or 'proxy').
    #[arg(long, help_heading = COMPAT)]
    pub discovery_fallback: Option<String>,
    /// bbolt freelist type.
    #[arg(long, help_heading = COMPAT)]
    pub backend_bbolt_freelist_type: Option<String>,
    /// Maximum time before committing a backend transaction.
    #[arg(long, help_heading = COMPAT)]
    pub backend_batch_interval: Option<GoDuration>,
    /// Maximum operations before committing a backend transaction.
    #[arg(long, allow_negative_numbers = true, help_heading = COMPAT)]
    pub backend_batch_limit: Option<i64>,
    /// Read timeout on each raft HTTP connection.
    #[arg(long, help_heading = COMPAT)]
    pub raft_read_timeout: Option<GoDuration>,
    /// Write timeout on each raft HTTP connection.
    #[arg(long, help_heading = COMPAT)]
    pub raft_write_timeout: Option<GoDuration>,
    /// v2store deprecation stage.
    #[arg(long, help_heading = COMPAT)]
    pub v2_deprecation: Option<String>,
    /// Comma-separated list of allowed SAN hostnames for client cert authentication.
    #[arg(long, help_heading = COMPAT)]
    #[serde(skip)]
    pub client_cert_allowed_hostname: Option<String>,
    /// Comma-separated list of allowed CNs for peer TLS authentication.
    #[arg(long, help_heading = COMPAT)]
    #[serde(skip)]
    pub peer_cert_allowed_cn: Option<String>,
    /// Comma-separated list of allowed SAN hostnames for peer TLS authentication.
    #[arg(long, help_heading = COMPAT)]
    #[serde(skip)]
    pub peer_cert_allowed_hostname: Option<String>,
    /// Validity (years) of auto-generated certificates.
    #[arg(long, help_heading = COMPAT)]
    pub self_signed_cert_validity: Option<u32>,
    /// Comma-separated list of supported TLS cipher suites.
    #[arg(long, help_heading = COMPAT)]
    pub cipher_suites: Option<StrList>,
    /// Minimum TLS version (TLS1.2 or TLS1.3).
    #[arg(long, help_heading = COMPAT)]
    pub tls_min_version: Option<String>,
    /// Maximum TLS version (TLS1.2 or TLS1.3).
    #[arg(long, help_heading = COMPAT)]
    pub tls_max_version: Option<String>,
    /// v2 proxy: failed-endpoint hold time (ms).
    #[arg(long, help_heading = COMPAT)]
    pub proxy_failure_wait: Option<u64>,
    /// v2 proxy: endpoint refresh interval (ms).
    #[arg(long, help_heading = COMPAT)]
    pub proxy_refresh_interval: Option<u64>,
    /// v2 proxy: dial timeout (ms).
    #[arg(long, help_heading = COMPAT)]
    pub proxy_dial_timeout: Option<u64>,
    /// v2 proxy: write timeout (ms).
    #[arg(long, help_heading = COMPAT)]
    pub proxy_write_timeout: Option<u64>,
    /// v2 proxy: read timeout (ms).
    #[arg(long, help_heading = COMPAT)]
    pub proxy_read_timeout: Option<u64>,

    // ---- Refused unless off ----
    /// Discovery URL used to bootstrap the cluster (not supported; use --initial-cluster).
    #[arg(long, help_heading = REFUSED)]
    pub discovery: Option<String>,
    /// HTTP proxy for the discovery service (not supported).
    #[arg(long, help_heading = REFUSED)]
    pub discovery_proxy: Option<String>,
    /// DNS SRV domain used to bootstrap the cluster (not supported).
    #[arg(long, help_heading = REFUSED)]
    pub discovery_srv: Option<String>,
    /// Suffix of the DNS SRV name queried when bootstrapping (not supported).
    #[arg(long, help_heading = REFUSED)]
    pub discovery_srv_name: Option<String>,
    /// Serve the etcd v2 API (only false is accepted).
    #[arg(long, help_heading = REFUSED)]
    pub enable_v2: Option<Bool>,
    /// Serve v2 requests through the v3 backend (not supported).
    #[arg(long, help_heading = REFUSED)]
    pub experimental_enable_v2v3: Option<String>,
    /// Client TLS with generated certificates (only false is accepted).
    #[arg(long, help_heading = REFUSED)]
    #[serde(skip)]
    pub auto_tls: Option<Bool>,
    /// Peer TLS with generated certificates (only false is accepted).
    #[arg(long, help_heading = REFUSED)]
    #[serde(skip)]
    pub peer_auto_tls: Option<Bool>,
    /// v2 proxy mode (only 'off' is accepted).
    #[arg(long, help_heading = REFUSED)]
    pub proxy: Option<String>,

    // ---- Command-line only ----
    /// Path to the server configuration file. Other flags and ETCD_* variables are then ignored.
    #[arg(long)]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(long)]
    #[serde(skip)]
    pub version: bool,

    /// File keys that are not etcd options (reported as warnings, like etcd ignores them).
    #[arg(skip)]
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

/// etcd's `client-transport-security` / `peer-transport-security` block.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "kebab-case", default)]
#[allow(dead_code)]
pub(crate) struct SecurityYaml {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub client_cert_auth: Option<Bool>,
    pub trusted_ca_file: Option<PathBuf>,
    pub crl_file: Option<PathBuf>,
    pub auto_tls: Option<Bool>,
    pub allowed_cn: Option<StrList>,
    pub allowed_hostname: Option<StrList>,
    pub skip_client_san_verification: Option<Bool>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

/// etcd's `socket-options` block.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "kebab-case", default)]
#[allow(dead_code)]
pub(crate) struct SocketOptionsYaml {
    pub reuse_port: Option<Bool>,
    pub reuse_address: Option<Bool>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

/// Options that are accepted so existing manifests keep working, but do nothing yet.
/// Setting one produces a warning naming it. Names are flag names and file keys alike.
pub(crate) const ACCEPTED_NO_EFFECT: &[&str] = &[
    "enable-log-rotation",
    "log-rotation-config-json",
    "experimental-initial-corrupt-check",
    "experimental-compact-hash-check-enabled",
    "experimental-compact-hash-check-time",
    "experimental-warning-unary-request-duration",
    "experimental-downgrade-check-time",
    "experimental-memory-mlock",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-bootstrap-defrag-threshold-megabytes",
    "experimental-stop-grpc-service-on-defrag",
    "experimental-max-learners",
    "experimental-peer-skip-client-san-verification",
    "experimental-enable-distributed-tracing",
    "experimental-distributed-tracing-address",
    "experimental-distributed-tracing-service-name",
    "experimental-distributed-tracing-instance-id",
    "experimental-distributed-tracing-sampling-rate",
    "socket-reuse-port",
    "socket-reuse-address",
    "socket-options",
    "max-snapshots",
    "max-wals",
    "cors",
    "host-whitelist",
    "discovery-fallback",
    "backend-bbolt-freelist-type",
    "backend-batch-interval",
    "backend-batch-limit",
    "raft-read-timeout",
    "raft-write-timeout",
    "v2-deprecation",
    "client-cert-allowed-hostname",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "self-signed-cert-validity",
    "cipher-suites",
    "tls-min-version",
    "tls-max-version",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
];
