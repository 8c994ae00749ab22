//! Server configuration: etcd 3.5's command-line flags, `ETCD_*` environment variables and
//! YAML config file, parsed and validated into one [`Config`] before anything touches disk.
//!
//! ferrocd is a drop-in for etcd, so manifests, unit files and compose files written for
//! etcd must start it unchanged: same flag names, same defaults, same precedence (flag over
//! variable; a config file replaces both), and the same error texts where etcd has them.
//! Flags etcd has but ferrocd does not implement are either accepted with a warning (they
//! only tune things) or refused with a clear message (discovery, v2, auto TLS, TLS itself).

mod build;
mod cluster;
mod raw;
mod sources;
mod values;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use values::keyword_enum;

/// etcd's default backend quota when `--quota-backend-bytes` is 0 (2 GiB).
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Above this quota etcd warns that the backend may misbehave (8 GiB).
pub const MAX_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// Whether this member bootstraps a new cluster or joins one that already runs
/// (`--initial-cluster-state`). Only consulted when the data directory holds no WAL yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join an existing cluster that already knows this member (after `member add`).
    Existing,
}
keyword_enum!(ClusterState, "initial-cluster-state", [
    "new" => ClusterState::New,
    "existing" => ClusterState::Existing,
]);

/// How `--auto-compaction-retention` is read (`--auto-compaction-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompactionMode {
    /// Keep a window of time.
    Periodic,
    /// Keep a number of revisions.
    Revision,
}
keyword_enum!(AutoCompactionMode, "auto-compaction-mode", [
    "periodic" => AutoCompactionMode::Periodic,
    "revision" => AutoCompactionMode::Revision,
]);

/// What auto compaction keeps. `None` in [`Config::auto_compaction_retention`] means
/// auto compaction is off (etcd's `--auto-compaction-retention=0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionRetention {
    /// Periodic mode: keep this much history (a bare number on the command line is hours).
    Period(Duration),
    /// Revision mode: keep this many revisions behind the current one.
    Revisions(u64),
}

/// etcd's log levels (`--log-level`). zap's `panic` and `fatal` have no tracing equivalent
/// and map to `error` in [`LogLevel::tracing_filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything, including per-request detail.
    Debug,
    /// etcd's default.
    Info,
    /// Problems that do not stop the server.
    Warn,
    /// Failures only.
    Error,
    /// zap's panic level; logged as error.
    Panic,
    /// zap's fatal level; logged as error.
    Fatal,
}
keyword_enum!(LogLevel, "log level", [
    "debug" => LogLevel::Debug,
    "info" => LogLevel::Info,
    "warn" => LogLevel::Warn,
    "error" => LogLevel::Error,
    "panic" => LogLevel::Panic,
    "fatal" => LogLevel::Fatal,
]);

impl LogLevel {
    /// The `tracing_subscriber::EnvFilter` directive for this level, so the caller can
    /// set up logging from the config without knowing etcd's level names.
    pub fn tracing_filter(&self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Panic | LogLevel::Fatal => "error",
        }
    }
}

/// TLS settings of one side (client or peer), from the `--cert-file` family of flags or
/// the `*-transport-security` block of the file. Parsed now so manifests that pass them
/// start; serving TLS is refused until ferrocd implements it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Server certificate (`--cert-file` / `--peer-cert-file`).
    pub cert_file: Option<PathBuf>,
    /// Server key (`--key-file` / `--peer-key-file`).
    pub key_file: Option<PathBuf>,
    /// CA bundle used to verify clients (`--trusted-ca-file` / `--peer-trusted-ca-file`).
    pub trusted_ca_file: Option<PathBuf>,
    /// Require client certificates (`--client-cert-auth` / `--peer-client-cert-auth`).
    pub client_cert_auth: bool,
    /// Certificate used when this server acts as a client (`--client-cert-file` / `--peer-client-cert-file`).
    pub client_cert_file: Option<PathBuf>,
    /// Key used when this server acts as a client (`--client-key-file` / `--peer-client-key-file`).
    pub client_key_file: Option<PathBuf>,
    /// Certificate revocation list (`--client-crl-file` / `--peer-crl-file`).
    pub crl_file: Option<PathBuf>,
}

impl TlsConfig {
    /// etcd's `TLSInfo.Empty()`: no certificate and no key, so plain HTTP is served.
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none()
    }
}

/// The validated server configuration. Every field already holds etcd's default when the
/// option was not given, so the rest of the server never re-derives defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `--name`: this member's human-readable name, its key in `--initial-cluster`.
    pub name: String,
    /// `--data-dir`: defaults to `${name}.ferrocd` (etcd uses `${name}.etcd`).
    pub data_dir: PathBuf,
    /// `--wal-dir`: a dedicated WAL directory; `None` means `${data-dir}/member/wal`.
    pub wal_dir: Option<PathBuf>,
    /// `--listen-client-urls`: where to serve clients (gRPC and, unless
    /// `listen_client_http_urls` is set, HTTP). Bind with [`bind_addr`].
    pub listen_client_urls: Vec<Url>,
    /// `--listen-client-http-urls`: HTTP-only client listeners; empty means HTTP is served
    /// on `listen_client_urls` too.
    pub listen_client_http_urls: Vec<Url>,
    /// `--advertise-client-urls`: client URLs published in the member list.
    pub advertise_client_urls: Vec<Url>,
    /// `--listen-peer-urls`: where to accept peer (raft) traffic.
    pub listen_peer_urls: Vec<Url>,
    /// `--initial-advertise-peer-urls`: this member's peer URLs as the others should dial them.
    pub initial_advertise_peer_urls: Vec<Url>,
    /// `--listen-metrics-urls`: extra listeners serving only `/metrics` and `/health`.
    pub listen_metrics_urls: Vec<Url>,
    /// `--initial-cluster`: `(name, peer URL)` pairs; a name may appear more than once.
    /// When not given it is `name=URL` for each initial advertise peer URL, like etcd.
    pub initial_cluster: Vec<(String, Url)>,
    /// `--initial-cluster-state`.
    pub initial_cluster_state: ClusterState,
    /// `--initial-cluster-token`: mixed into cluster and member IDs at bootstrap.
    pub initial_cluster_token: String,
    /// `--snapshot-count`: applied entries between snapshots (etcd 3.6's default, 10000).
    pub snapshot_count: u64,
    /// `--experimental-snapshot-catchup-entries`: entries kept after a snapshot for slow followers.
    pub snapshot_catchup_entries: u64,
    /// `--heartbeat-interval` (milliseconds on the command line): one raft tick.
    pub heartbeat_interval: Duration,
    /// `--election-timeout` (milliseconds on the command line).
    pub election_timeout: Duration,
    /// `--initial-election-tick-advance`: fast-forward election ticks on boot.
    pub initial_election_tick_advance: bool,
    /// `--max-request-bytes`: largest client request accepted.
    pub max_request_bytes: usize,
    /// `--quota-backend-bytes` with etcd's meaning: 0 = the 2 GiB default, negative = no
    /// quota. Use [`Config::backend_quota`] rather than reading this directly.
    pub quota_backend_bytes: i64,
    /// `--max-txn-ops`: most operations in one Txn.
    pub max_txn_ops: usize,
    /// `--max-concurrent-streams`: per-connection gRPC stream limit.
    pub max_concurrent_streams: u32,
    /// `--log-level`.
    pub log_level: LogLevel,
    /// `--log-outputs`, kept for when ferrocd can write elsewhere than stderr.
    pub log_outputs: Vec<String>,
    /// `--auto-compaction-mode`.
    pub auto_compaction_mode: AutoCompactionMode,
    /// `--auto-compaction-retention`, interpreted by the mode; `None` = off.
    pub auto_compaction_retention: Option<CompactionRetention>,
    /// `--experimental-compaction-batch-limit`: revisions deleted per compaction batch.
    pub compaction_batch_limit: usize,
    /// `--experimental-compaction-sleep-interval`: pause between compaction batches.
    pub compaction_sleep_interval: Duration,
    /// `--experimental-watch-progress-notify-interval`: idle watch progress notifications.
    pub watch_progress_notify_interval: Duration,
    /// `--experimental-corrupt-check-time`: how often the leader compares members' HashKV
    /// (zero: never, etcd's default).
    pub corrupt_check_time: Duration,
    /// `--experimental-warning-apply-duration`: slow-apply warning threshold.
    pub warning_apply_duration: Duration,
    /// `--strict-reconfig-check`: refuse member changes that would lose quorum.
    pub strict_reconfig_check: bool,
    /// `--pre-vote`: raft pre-vote (etcd 3.5 default true).
    pub pre_vote: bool,
    /// `--enable-pprof`: accepted and ignored (a warning says so).
    pub enable_pprof: bool,
    /// `--enable-grpc-gateway`: serve the JSON `/v3/*` gateway on the client port.
    pub enable_grpc_gateway: bool,
    /// `--force-new-cluster`: restart as a one-member cluster from existing data.
    pub force_new_cluster: bool,
    /// `--unsafe-no-fsync`: skip fsync (tests and benchmarks only).
    pub unsafe_no_fsync: bool,
    /// `--grpc-keepalive-min-time`: clients pinging more often are told to go away.
    pub grpc_keepalive_min_time: Duration,
    /// `--grpc-keepalive-interval`: server-to-client ping period (zero disables).
    pub grpc_keepalive_interval: Duration,
    /// `--grpc-keepalive-timeout`: ping ack wait before closing (zero disables).
    pub grpc_keepalive_timeout: Duration,
    /// `--auth-token`: `simple` or `jwt,...` with its options, as given.
    pub auth_token: String,
    /// `--bcrypt-cost` for password hashes.
    pub bcrypt_cost: u32,
    /// `--auth-token-ttl`: lifetime of simple tokens.
    pub auth_token_ttl: Duration,
    /// Client-side TLS files.
    pub client_tls: TlsConfig,
    /// Peer-side TLS files.
    pub peer_tls: TlsConfig,
    /// The YAML file the configuration came from, if any.
    pub config_file: Option<PathBuf>,
    /// Things the operator should know but that do not stop the server (shadowed or
    /// unknown `ETCD_*` variables, options accepted without effect). Parsing happens
    /// before logging is set up, so the caller logs these once it is.
    pub warnings: Vec<String>,
}

fn localhost(port: u16) -> Url {
    Url::parse(&format!("http://localhost:{port}")).expect("static URL parses")
}

impl Default for Config {
    /// etcd's defaults, as `ferrocd` with no flags would run (without touching disk).
    fn default() -> Self {
        Config {
            name: "default".into(),
            data_dir: PathBuf::from("default.ferrocd"),
            wal_dir: None,
            listen_client_urls: vec![localhost(2379)],
            listen_client_http_urls: Vec::new(),
            advertise_client_urls: vec![localhost(2379)],
            listen_peer_urls: vec![localhost(2380)],
            initial_advertise_peer_urls: vec![localhost(2380)],
            listen_metrics_urls: Vec::new(),
            initial_cluster: vec![("default".into(), localhost(2380))],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "etcd-cluster".into(),
            snapshot_count: 10_000,
            snapshot_catchup_entries: 5_000,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            initial_election_tick_advance: true,
            max_request_bytes: 1_572_864,
            quota_backend_bytes: 0,
            max_txn_ops: 128,
            max_concurrent_streams: u32::MAX,
            log_level: LogLevel::Info,
            log_outputs: vec!["default".into()],
            auto_compaction_mode: AutoCompactionMode::Periodic,
            auto_compaction_retention: None,
            compaction_batch_limit: 1000,
            compaction_sleep_interval: Duration::from_millis(10),
            watch_progress_notify_interval: Duration::from_secs(600),
            corrupt_check_time: Duration::ZERO,
            warning_apply_duration: Duration::from_millis(100),
            strict_reconfig_check: true,
            pre_vote: true,
            enable_pprof: false,
            enable_grpc_gateway: true,
            force_new_cluster: false,
            unsafe_no_fsync: false,
            grpc_keepalive_min_time: Duration::from_secs(5),
            grpc_keepalive_interval: Duration::from_secs(2 * 3600),
            grpc_keepalive_timeout: Duration::from_secs(20),
            auth_token: "simple".into(),
            bcrypt_cost: 10,
            auth_token_ttl: Duration::from_secs(300),
            client_tls: TlsConfig::default(),
            peer_tls: TlsConfig::default(),
            config_file: None,
            warnings: Vec::new(),
        }
    }
}

/// Why the configuration could not be built. `Display` is the message to show the
/// operator; [`ConfigError::exit_code`] is the process exit status.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--help` was asked for: the text goes to stdout and the process exits 0.
    #[error("{0}")]
    Help(String),
    /// `--version` was asked for: the text goes to stdout and the process exits 0.
    #[error("{0}")]
    Version(String),
    /// Command-line syntax error (unknown flag, bad value), already rendered by clap
    /// with a usage hint; exit 2 like Go's flag package.
    #[error("{0}")]
    Usage(String),
    /// An `ETCD_*` variable holds a value its flag cannot take (etcd's wording).
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidEnv {
        /// The variable name, e.g. `ETCD_SNAPSHOT_COUNT`.
        key: String,
        /// The value found in the environment.
        value: String,
        /// Why the value was refused.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ReadConfigFile {
        /// The path given by `--config-file` or `ETCD_CONFIG_FILE`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid YAML or holds a bad value.
    #[error("invalid config file {}: {message}", path.display())]
    ParseConfigFile {
        /// The path given by `--config-file` or `ETCD_CONFIG_FILE`.
        path: PathBuf,
        /// What is wrong and, when known, which key.
        message: String,
    },
    /// The options parse but contradict each other or etcd's rules; the text names the flag.
    #[error("{0}")]
    Invalid(String),
    /// The options ask for an etcd feature ferrocd does not have.
    #[error("{0}")]
    Unsupported(String),
}

impl ConfigError {
    /// The exit status a CLI should use: 0 for help and version, 2 for command-line
    /// syntax errors (as Go's flag package), 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Help(_) | ConfigError::Version(_) => 0,
            ConfigError::Usage(_) => 2,
            _ => 1,
        }
    }

    fn from_clap(err: clap::Error) -> Self {
        use clap::error::ErrorKind;
        let text = err.render().to_string();
        match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                ConfigError::Help(text)
            }
            ErrorKind::DisplayVersion => ConfigError::Version(text),
            _ => ConfigError::Usage(text),
        }
    }
}

/// What `--version` prints, in etcd's layout.
pub fn version_text() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        other => other,
    };
    let mut text = format!(
        "ferrocd Version: {}\netcd API Version: 3.5\n",
        env!("CARGO_PKG_VERSION")
    );
    // Set by the build script when it knows the compiler; omitted otherwise.
    if let Some(rustc) = option_env!("FERROCD_RUSTC_VERSION") {
        text.push_str(&format!("Rust Version: {rustc}\n"));
    }
    text.push_str(&format!("OS/Arch: {}/{arch}\n", std::env::consts::OS));
    text
}

/// The address to bind for a listen URL (`localhost` binds 127.0.0.1). Every listen URL
/// in a validated [`Config`] passes this, so callers may treat an error as a bug.
pub fn bind_addr(url: &Url) -> Result<SocketAddr, ConfigError> {
    values::bind_addr(url).map_err(ConfigError::Invalid)
}

/// A URL as etcd prints it (`http://host:port`, no trailing slash): use this wherever a
/// URL reaches a client or a peer (member lists, cluster comparison, logs).
pub fn url_to_string(url: &Url) -> String {
    values::url_to_string(url)
}

impl Config {
    /// Parses the real command line and environment. Prints help or version to stdout
    /// and exits 0, or prints the error to stderr and exits non-zero, like a CLI.
    pub fn from_env_and_args() -> Config {
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .filter(|(k, _)| k.starts_with("ETCD_"))
            .collect();
        match Config::try_parse(&args, &env) {
            Ok(config) => config,
            Err(err) => {
                match &err {
                    ConfigError::Help(text) | ConfigError::Version(text) => print!("{text}"),
                    ConfigError::Usage(text) => eprint!("{text}"),
                    other => eprintln!("error: {other}"),
                }
                std::process::exit(err.exit_code());
            }
        }
    }

    /// The testable core: `args[0]` is the program name and `env` stands in for the
    /// process environment (only `ETCD_*` keys matter). Reads the config file if one is
    /// named and stats the data and WAL directories; writes nothing.
    pub fn try_parse(
        args: &[String],
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let cmd = sources::command();
        let argv = sources::normalize_args(&cmd, args);
        let (matches, raw) = sources::parse(&cmd, &argv)?;
        if raw.version {
            return Err(ConfigError::Version(version_text()));
        }
        let on_cmdline = sources::explicit_flags(&cmd, &matches);
        let mut warnings = Vec::new();
        let file = raw.config_file.clone().or_else(|| {
            env.get("ETCD_CONFIG_FILE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
        if let Some(path) = file {
            let ignored: Vec<String> = on_cmdline
                .iter()
                .filter(|f| f.as_str() != "config-file")
                .map(|f| format!("--{f}"))
                .collect();
            if !ignored.is_empty() {
                warnings.push(format!(
                    "a config file is given, so these command-line flags are ignored (as in etcd): {}",
                    ignored.join(", ")
                ));
            }
            let mut ignored_env: Vec<&str> = env
                .keys()
                .filter(|k| k.starts_with("ETCD_") && k.as_str() != "ETCD_CONFIG_FILE")
                .map(String::as_str)
                .collect();
            ignored_env.sort_unstable();
            if !ignored_env.is_empty() {
                warnings.push(format!(
                    "a config file is given, so these environment variables are ignored (as in etcd): {}",
                    ignored_env.join(", ")
                ));
            }
            let (raw, explicit) = sources::load_file(&path, &mut warnings)?;
            return build::build(raw, &explicit, Some(path), warnings);
        }
        let (raw, explicit) = sources::apply_env(&cmd, argv, &on_cmdline, env, &mut warnings)?;
        build::build(raw, &explicit, None, warnings)
    }

    /// Election timeout in heartbeat ticks, which is what raft is configured with.
    pub fn election_ticks(&self) -> usize {
        let tick = self.heartbeat_interval.as_millis().max(1);
        (self.election_timeout.as_millis() / tick) as usize
    }

    /// The backend size quota in bytes with etcd's rules applied: `None` when the quota
    /// is disabled (negative), the 2 GiB default for 0, the given value otherwise.
    pub fn backend_quota(&self) -> Option<u64> {
        match self.quota_backend_bytes {
            q if q < 0 => None,
            0 => Some(DEFAULT_QUOTA_BYTES),
            q => Some(q as u64),
        }
    }

    /// Where the WAL lives: `--wal-dir`, or `${data-dir}/member/wal`.
    pub fn wal_path(&self) -> PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("member").join("wal"))
    }
}
