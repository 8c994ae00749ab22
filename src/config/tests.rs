//! Tests of the configuration against etcd's behaviour: defaults, variables, the file,
//! and every validation message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::build::parse_retention;
use super::raw::RawConfig;
use super::sources::{command, env_key, load_file};
use super::values::{parse_etcd_url, parse_go_duration, Bool, Members, UrlList};
use super::*;

fn argv(flags: &[&str]) -> Vec<String> {
    std::iter::once("ferrocd")
        .chain(flags.iter().copied())
        .map(String::from)
        .collect()
}

fn env_of(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(flags: &[&str]) -> Result<Config, ConfigError> {
    Config::try_parse(&argv(flags), &HashMap::new())
}

fn parse_env(flags: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::try_parse(&argv(flags), &env_of(vars))
}

fn ok(flags: &[&str]) -> Config {
    parse(flags).unwrap_or_else(|e| panic!("{flags:?} should parse: {e}"))
}

fn err(flags: &[&str]) -> String {
    match parse(flags) {
        Ok(c) => panic!("{flags:?} should fail, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn strs(urls: &[Url]) -> Vec<String> {
    urls.iter().map(url_to_string).collect()
}

fn cluster(c: &Config) -> String {
    super::values::members_to_string(&c.initial_cluster)
}

fn write_yaml(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("ferrocd.conf.yml");
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------- defaults

#[test]
fn defaults_equal_etcds() {
    let c = ok(&[]);
    assert_eq!(c, Config::default());
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.ferrocd"));
    assert_eq!(c.wal_dir, None);
    assert_eq!(c.wal_path(), PathBuf::from("default.ferrocd/member/wal"));
    assert_eq!(strs(&c.listen_client_urls), ["http://localhost:2379"]);
    assert_eq!(strs(&c.advertise_client_urls), ["http://localhost:2379"]);
    assert_eq!(strs(&c.listen_peer_urls), ["http://localhost:2380"]);
    assert_eq!(
        strs(&c.initial_advertise_peer_urls),
        ["http://localhost:2380"]
    );
    assert!(c.listen_metrics_urls.is_empty());
    assert!(c.listen_client_http_urls.is_empty());
    assert_eq!(cluster(&c), "default=http://localhost:2380");
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.snapshot_count, 10_000);
    assert_eq!(c.snapshot_catchup_entries, 5_000);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.election_timeout, Duration::from_millis(1000));
    assert_eq!(c.election_ticks(), 10);
    assert!(c.initial_election_tick_advance);
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.quota_backend_bytes, 0);
    assert_eq!(c.backend_quota(), Some(2 * 1024 * 1024 * 1024));
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.max_concurrent_streams, u32::MAX);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_level.tracing_filter(), "info");
    assert_eq!(c.log_outputs, ["default"]);
    assert_eq!(c.auto_compaction_mode, AutoCompactionMode::Periodic);
    assert_eq!(c.auto_compaction_retention, None);
    assert_eq!(c.compaction_batch_limit, 1000);
    assert_eq!(c.compaction_sleep_interval, Duration::from_millis(10));
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
    assert_eq!(c.warning_apply_duration, Duration::from_millis(100));
    assert!(c.strict_reconfig_check);
    assert!(c.pre_vote);
    assert!(!c.enable_pprof);
    assert!(c.enable_grpc_gateway);
    assert!(!c.force_new_cluster);
    assert!(!c.unsafe_no_fsync);
    assert_eq!(c.grpc_keepalive_min_time, Duration::from_secs(5));
    assert_eq!(c.grpc_keepalive_interval, Duration::from_secs(7200));
    assert_eq!(c.grpc_keepalive_timeout, Duration::from_secs(20));
    assert_eq!(c.auth_token, "simple");
    assert_eq!(c.bcrypt_cost, 10);
    assert_eq!(c.auth_token_ttl, Duration::from_secs(300));
    assert!(c.client_tls.is_empty() && c.peer_tls.is_empty());
    assert_eq!(c.config_file, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn name_drives_data_dir_and_initial_cluster() {
    let c = ok(&["--name", "infra0"]);
    assert_eq!(c.name, "infra0");
    assert_eq!(c.data_dir, PathBuf::from("infra0.ferrocd"));
    assert_eq!(cluster(&c), "infra0=http://localhost:2380");
}

#[test]
fn initial_cluster_defaults_to_name_and_each_advertise_peer_url() {
    let c = ok(&[
        "--name",
        "m1",
        "--listen-peer-urls",
        "http://10.0.0.1:2380,http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://10.0.0.1:2380,http://10.0.0.1:12380",
    ]);
    assert_eq!(
        cluster(&c),
        "m1=http://10.0.0.1:2380,m1=http://10.0.0.1:12380"
    );
    assert_eq!(
        strs(&c.listen_peer_urls),
        ["http://10.0.0.1:2380", "http://127.0.0.1:2380"]
    );
}

#[test]
fn a_member_may_have_several_peer_urls_in_initial_cluster() {
    let c = ok(&[
        "--name",
        "a",
        "--initial-advertise-peer-urls",
        "http://10.0.0.2:2380,http://10.0.0.1:2380",
        "--initial-cluster",
        "a=http://10.0.0.1:2380,b=http://10.0.0.3:2380,a=http://10.0.0.2:2380",
    ]);
    assert_eq!(
        cluster(&c),
        "a=http://10.0.0.1:2380,b=http://10.0.0.3:2380,a=http://10.0.0.2:2380"
    );
}

#[test]
fn explicit_values_are_taken() {
    let c = ok(&[
        "--name=n1",
        "--data-dir=/nonexistent/ferrocd-test/data",
        "--wal-dir=/nonexistent/ferrocd-test/wal",
        "--snapshot-count=5000",
        "--experimental-snapshot-catchup-entries=100",
        "--heartbeat-interval=50",
        "--election-timeout=500",
        "--max-request-bytes=1000",
        "--quota-backend-bytes",
        "-1",
        "--max-txn-ops=64",
        "--max-concurrent-streams=100",
        "--log-level=debug",
        "--auto-compaction-mode=revision",
        "--auto-compaction-retention=1000",
        "--experimental-watch-progress-notify-interval=5s",
        "--experimental-compaction-batch-limit=10",
        "--experimental-compaction-sleep-interval=1ms",
        "--experimental-warning-apply-duration=1s",
        "--strict-reconfig-check=false",
        "--pre-vote=false",
        "--force-new-cluster",
        "--unsafe-no-fsync",
        "--enable-grpc-gateway=false",
        "--initial-election-tick-advance=false",
        "--grpc-keepalive-min-time=1s",
        "--grpc-keepalive-interval=1h30m",
        "--grpc-keepalive-timeout=0",
        "--initial-cluster-state=existing",
        "--initial-cluster-token=tok",
        "--auth-token=jwt,sign-method=RS256",
        "--bcrypt-cost=4",
        "--auth-token-ttl=60",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--listen-client-http-urls=http://127.0.0.1:2382",
    ]);
    assert_eq!(c.name, "n1");
    assert_eq!(c.data_dir, PathBuf::from("/nonexistent/ferrocd-test/data"));
    assert_eq!(
        c.wal_dir,
        Some(PathBuf::from("/nonexistent/ferrocd-test/wal"))
    );
    assert_eq!(c.wal_path(), PathBuf::from("/nonexistent/ferrocd-test/wal"));
    assert_eq!(c.snapshot_count, 5000);
    assert_eq!(c.snapshot_catchup_entries, 100);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(c.election_timeout, Duration::from_millis(500));
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(c.max_request_bytes, 1000);
    assert_eq!(c.quota_backend_bytes, -1);
    assert_eq!(c.backend_quota(), None);
    assert_eq!(c.max_txn_ops, 64);
    assert_eq!(c.max_concurrent_streams, 100);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.auto_compaction_mode, AutoCompactionMode::Revision);
    assert_eq!(
        c.auto_compaction_retention,
        Some(CompactionRetention::Revisions(1000))
    );
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
    assert_eq!(c.compaction_batch_limit, 10);
    assert_eq!(c.compaction_sleep_interval, Duration::from_millis(1));
    assert_eq!(c.warning_apply_duration, Duration::from_secs(1));
    assert!(!c.strict_reconfig_check);
    assert!(!c.pre_vote);
    assert!(c.force_new_cluster);
    assert!(c.unsafe_no_fsync);
    assert!(!c.enable_grpc_gateway);
    assert!(!c.initial_election_tick_advance);
    assert_eq!(c.grpc_keepalive_min_time, Duration::from_secs(1));
    assert_eq!(c.grpc_keepalive_interval, Duration::from_secs(5400));
    assert_eq!(c.grpc_keepalive_timeout, Duration::ZERO);
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert_eq!(c.initial_cluster_token, "tok");
    assert_eq!(c.auth_token, "jwt,sign-method=RS256");
    assert_eq!(c.bcrypt_cost, 4);
    assert_eq!(c.auth_token_ttl, Duration::from_secs(60));
    assert_eq!(strs(&c.listen_metrics_urls), ["http://127.0.0.1:2381"]);
    assert_eq!(strs(&c.listen_client_http_urls), ["http://127.0.0.1:2382"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn etcd_36_names_are_aliases() {
    let c = ok(&[
        "--snapshot-catchup-entries=7",
        "--watch-progress-notify-interval=2s",
    ]);
    assert_eq!(c.snapshot_catchup_entries, 7);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(2));
}

#[test]
fn go_style_single_dash_and_bool_flags() {
    let c = ok(&["-name", "n1", "-pre-vote=false", "-force-new-cluster"]);
    assert_eq!(c.name, "n1");
    assert!(!c.pre_vote);
    assert!(c.force_new_cluster);
    // Odd arguments are left for clap to report, never a panic.
    for odd in ["", "-", "é", "-é", "-x"] {
        assert_eq!(parse(&[odd]).unwrap_err().exit_code(), 2, "{odd:?}");
    }
    let c = ok(&["--strict-reconfig-check=0", "--enable-pprof=T"]);
    assert!(!c.strict_reconfig_check);
    assert!(c.enable_pprof);
}

// ---------------------------------------------------------------- help, version, usage

#[test]
fn help_and_version_exit_zero() {
    let help = parse(&["--help"]).unwrap_err();
    assert_eq!(help.exit_code(), 0);
    let text = help.to_string();
    assert!(text.contains("Usage: ferrocd [OPTIONS]"), "{text}");
    assert!(text.contains("--initial-cluster-token <VALUE>"), "{text}");
    assert!(text.contains("ETCD_INITIAL_CLUSTER_TOKEN"), "{text}");
    assert!(matches!(parse(&["-h"]).unwrap_err(), ConfigError::Help(_)));

    let version = parse(&["--version"]).unwrap_err();
    assert_eq!(version.exit_code(), 0);
    let text = version.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("ferrocd Version: {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(lines[1], "etcd API Version: 3.5");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(
        *lines.last().unwrap(),
        format!("OS/Arch: {}/{arch}", std::env::consts::OS)
    );
    assert!(matches!(
        parse(&["-version"]).unwrap_err(),
        ConfigError::Version(_)
    ));
}

#[test]
fn bad_flags_are_usage_errors_with_exit_2() {
    let e = parse(&["--no-such-flag"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string()
            .contains("unexpected argument '--no-such-flag'"),
        "{e}"
    );

    let e = parse(&["--snapshot-count", "abc"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string().contains(
            "invalid value 'abc' for '--snapshot-count <N>': invalid digit found in string"
        ),
        "{e}"
    );

    let e = parse(&["--initial-cluster-state=old"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string()
            .contains("unknown initial-cluster-state \"old\" (valid values: new, existing)"),
        "{e}"
    );

    let e = parse(&["--heartbeat-interval=-5"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);

    let e = parse(&["--grpc-keepalive-timeout=5"]).unwrap_err();
    assert!(
        e.to_string()
            .contains("time: missing unit in duration \"5\""),
        "{e}"
    );

    let e = parse(&["--pre-vote=maybe"]).unwrap_err();
    assert!(e.to_string().contains("\"maybe\" is not a boolean"), "{e}");

    // Go bool flags do not take a separate value.
    let e = parse(&["--pre-vote", "false"]).unwrap_err();
    assert!(e.to_string().contains("unexpected argument 'false'"), "{e}");

    let e = parse(&["--log-level=verbose"]).unwrap_err();
    assert!(
        e.to_string().contains(
            "unknown log level \"verbose\" (valid values: debug, info, warn, error, panic, fatal)"
        ),
        "{e}"
    );
    let e = parse(&["--auto-compaction-mode=daily"]).unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown auto-compaction-mode \"daily\" (valid values: periodic, revision)"),
        "{e}"
    );
}

// ---------------------------------------------------------------- environment

#[test]
fn env_vars_map_to_flags() {
    let c = parse_env(
        &[],
        &[
            ("ETCD_NAME", "e1"),
            ("ETCD_DATA_DIR", "/nonexistent/ferrocd-test/e1"),
            ("ETCD_WAL_DIR", "/nonexistent/ferrocd-test/e1wal"),
            ("ETCD_SNAPSHOT_COUNT", "777"),
            ("ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", "77"),
            ("ETCD_HEARTBEAT_INTERVAL", "200"),
            ("ETCD_ELECTION_TIMEOUT", "2000"),
            ("ETCD_LISTEN_PEER_URLS", "http://127.0.0.1:12380"),
            ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:12379"),
            ("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:12379"),
            ("ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://127.0.0.1:12380"),
            ("ETCD_LISTEN_METRICS_URLS", "http://127.0.0.1:12381"),
            ("ETCD_INITIAL_CLUSTER", "e1=http://127.0.0.1:12380"),
            ("ETCD_INITIAL_CLUSTER_STATE", "existing"),
            ("ETCD_INITIAL_CLUSTER_TOKEN", "tok-env"),
            ("ETCD_MAX_REQUEST_BYTES", "2048"),
            ("ETCD_QUOTA_BACKEND_BYTES", "-1"),
            ("ETCD_MAX_TXN_OPS", "256"),
            ("ETCD_LOG_LEVEL", "warn"),
            ("ETCD_AUTO_COMPACTION_MODE", "periodic"),
            ("ETCD_AUTO_COMPACTION_RETENTION", "5m"),
            ("ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", "30s"),
            ("ETCD_STRICT_RECONFIG_CHECK", "false"),
            ("ETCD_PRE_VOTE", "false"),
            ("ETCD_FORCE_NEW_CLUSTER", "true"),
            ("ETCD_GRPC_KEEPALIVE_MIN_TIME", "10s"),
            ("ETCD_GRPC_KEEPALIVE_INTERVAL", "1h"),
            ("ETCD_GRPC_KEEPALIVE_TIMEOUT", "30s"),
            ("ETCD_AUTH_TOKEN_TTL", "42"),
            ("ETCDCTL_API", "3"),
        ],
    )
    .unwrap();
    assert_eq!(c.name, "e1");
    assert_eq!(c.data_dir, PathBuf::from("/nonexistent/ferrocd-test/e1"));
    assert_eq!(
        c.wal_dir,
        Some(PathBuf::from("/nonexistent/ferrocd-test/e1wal"))
    );
    assert_eq!(c.snapshot_count, 777);
    assert_eq!(c.snapshot_catchup_entries, 77);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
    assert_eq!(c.election_timeout, Duration::from_millis(2000));
    assert_eq!(strs(&c.listen_peer_urls), ["http://127.0.0.1:12380"]);
    assert_eq!(strs(&c.listen_client_urls), ["http://127.0.0.1:12379"]);
    assert_eq!(strs(&c.advertise_client_urls), ["http://127.0.0.1:12379"]);
    assert_eq!(
        strs(&c.initial_advertise_peer_urls),
        ["http://127.0.0.1:12380"]
    );
    assert_eq!(strs(&c.listen_metrics_urls), ["http://127.0.0.1:12381"]);
    assert_eq!(cluster(&c), "e1=http://127.0.0.1:12380");
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert_eq!(c.initial_cluster_token, "tok-env");
    assert_eq!(c.max_request_bytes, 2048);
    assert_eq!(c.quota_backend_bytes, -1);
    assert_eq!(c.max_txn_ops, 256);
    assert_eq!(c.log_level, LogLevel::Warn);
    assert_eq!(
        c.auto_compaction_retention,
        Some(CompactionRetention::Period(Duration::from_secs(300)))
    );
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(30));
    assert!(!c.strict_reconfig_check);
    assert!(!c.pre_vote);
    assert!(c.force_new_cluster);
    assert_eq!(c.grpc_keepalive_min_time, Duration::from_secs(10));
    assert_eq!(c.grpc_keepalive_interval, Duration::from_secs(3600));
    assert_eq!(c.grpc_keepalive_timeout, Duration::from_secs(30));
    assert_eq!(c.auth_token_ttl, Duration::from_secs(42));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_flag_has_its_etcd_env_var() {
    let cmd = command();
    let mut vars = HashMap::new();
    let mut count = 0;
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let key = env_key(long);
        assert!(key.starts_with("ETCD_") && !key.contains('-'), "{key}");
        // Empty values are recognized but not applied, so every key can be set at once.
        vars.insert(key, String::new());
        count += 1;
    }
    assert!(count > 100, "only {count} flags");
    assert_eq!(
        env_key("initial-cluster-token"),
        "ETCD_INITIAL_CLUSTER_TOKEN"
    );
    let c = Config::try_parse(&argv(&[]), &vars).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_env_var_is_applied() {
    use super::values::{GoDuration, StrList, Text};
    use std::any::TypeId;
    let cmd = command();
    let numeric = [
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
    ];
    let textual = [
        TypeId::of::<String>(),
        TypeId::of::<PathBuf>(),
        TypeId::of::<Text>(),
        TypeId::of::<StrList>(),
    ];
    for arg in cmd.get_arguments() {
        let long = arg.get_long().unwrap();
        if matches!(long, "help" | "version" | "config-file") {
            continue;
        }
        let ty = arg.get_value_parser().type_id();
        let value = if ty == TypeId::of::<Bool>() {
            "false"
        } else if ty == TypeId::of::<GoDuration>() {
            "1s"
        } else if ty == TypeId::of::<UrlList>() {
            "http://127.0.0.1:1"
        } else if ty == TypeId::of::<Members>() {
            "a=http://127.0.0.1:1"
        } else if ty == TypeId::of::<ClusterState>() {
            "existing"
        } else if ty == TypeId::of::<AutoCompactionMode>() {
            "revision"
        } else if ty == TypeId::of::<LogLevel>() {
            "error"
        } else if numeric.iter().any(|t| ty == *t) {
            "7"
        } else if textual.iter().any(|t| ty == *t) {
            "x"
        } else {
            panic!("no sample value for --{long}");
        };
        let key = env_key(long);
        let env = env_of(&[(&key, value)]);
        let mut warnings = Vec::new();
        let (_, explicit) =
            super::sources::apply_env(&cmd, argv(&[]), &Default::default(), &env, &mut warnings)
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        assert!(explicit.contains(long), "{long} not applied from {key}");
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

#[test]
fn a_repeated_flag_takes_the_last_value_like_go() {
    let c = ok(&["--name", "first", "--name", "second"]);
    assert_eq!(c.name, "second");
}

#[test]
fn env_shadowed_by_a_flag_is_refused_like_etcd() {
    let err = parse_env(
        &["--name", "from-flag", "--snapshot-count=5"],
        &[("ETCD_NAME", "from-env"), ("ETCD_MAX_TXN_OPS", "3")],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding \
         command-line flag (either unset environment variable or disable flag)"
    );
    assert_eq!(err.exit_code(), 1);
    // Variables for flags not on the command line still apply.
    let c = parse_env(&["--name", "from-flag"], &[("ETCD_MAX_TXN_OPS", "3")]).unwrap();
    assert_eq!((c.name.as_str(), c.max_txn_ops), ("from-flag", 3));
}

#[test]
fn unknown_and_special_env_vars_warn() {
    let c = parse_env(
        &[],
        &[
            ("ETCD_NO_SUCH_THING", "1"),
            ("ETCD_VERSION", "3.5.9"),
            ("ETCDCTL_ENDPOINTS", "x"),
            ("HOME", "/root"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.warnings,
        [
            "cannot set special environment variable ETCD_VERSION=3.5.9; it is ignored",
            "unrecognized environment variable ETCD_NO_SUCH_THING=1",
        ]
    );
}

#[test]
fn bad_env_value_names_the_variable() {
    let e = parse_env(&[], &[("ETCD_SNAPSHOT_COUNT", "lots")]).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert_eq!(
        e.to_string(),
        "invalid value \"lots\" for ETCD_SNAPSHOT_COUNT: invalid digit found in string"
    );
    let e = parse_env(
        &[],
        &[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:2379/v3")],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value \"http://127.0.0.1:2379/v3\" for ETCD_LISTEN_CLIENT_URLS: \
         URL must not contain a path: http://127.0.0.1:2379/v3"
    );
    let e = parse_env(&[], &[("ETCD_INITIAL_CLUSTER_STATE", "old")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value \"old\" for ETCD_INITIAL_CLUSTER_STATE: \
         unknown initial-cluster-state \"old\" (valid values: new, existing)"
    );
}

// ---------------------------------------------------------------- config file

const FILE: &str = r#"
name: 'infra1'
data-dir: /nonexistent/ferrocd-test/infra1
wal-dir:
snapshot-count: 2000
experimental-snapshot-catch-up-entries: 300
heartbeat-interval: 150
election-timeout: 1500
quota-backend-bytes: 8589934592
max-request-bytes: 3145728
max-txn-ops: 512
listen-peer-urls: http://10.0.1.11:2380
listen-client-urls: http://10.0.1.11:2379,http://127.0.0.1:2379
initial-advertise-peer-urls: http://10.0.1.11:2380
advertise-client-urls: http://10.0.1.11:2379
listen-metrics-urls: http://127.0.0.1:2381
initial-cluster: infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380,infra2=http://10.0.1.12:2380
initial-cluster-token: 'etcd-cluster-1'
initial-cluster-state: 'new'
strict-reconfig-check: false
pre-vote: yes
enable-pprof: false
auto-compaction-mode: periodic
auto-compaction-retention: 1
experimental-watch-progress-notify-interval: 5000000000
grpc-keepalive-min-time: 10s
log-level: debug
log-outputs: [stderr]
force-new-cluster: false
discovery:
discovery-fallback: 'proxy'
proxy: 'off'
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  cert-file: ''
  key-file: ''
  auto-tls: false
"#;

#[test]
fn config_file_loads_etcd_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_yaml(&dir, FILE);
    let c = ok(&["--config-file", path.to_str().unwrap()]);
    assert_eq!(c.config_file, Some(path.clone()));
    assert_eq!(c.name, "infra1");
    assert_eq!(
        c.data_dir,
        PathBuf::from("/nonexistent/ferrocd-test/infra1")
    );
    assert_eq!(c.wal_dir, None);
    assert_eq!(c.snapshot_count, 2000);
    assert_eq!(c.snapshot_catchup_entries, 300);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(150));
    assert_eq!(c.election_timeout, Duration::from_millis(1500));
    assert_eq!(c.quota_backend_bytes, 8 * 1024 * 1024 * 1024);
    assert_eq!(c.max_request_bytes, 3 * 1024 * 1024);
    assert_eq!(c.max_txn_ops, 512);
    assert_eq!(strs(&c.listen_peer_urls), ["http://10.0.1.11:2380"]);
    assert_eq!(
        strs(&c.listen_client_urls),
        ["http://10.0.1.11:2379", "http://127.0.0.1:2379"]
    );
    assert_eq!(strs(&c.advertise_client_urls), ["http://10.0.1.11:2379"]);
    assert_eq!(strs(&c.listen_metrics_urls), ["http://127.0.0.1:2381"]);
    assert_eq!(
        cluster(&c),
        "infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380,infra2=http://10.0.1.12:2380"
    );
    assert_eq!(c.initial_cluster_token, "etcd-cluster-1");
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert!(!c.strict_reconfig_check);
    assert!(c.pre_vote);
    assert_eq!(
        c.auto_compaction_retention,
        Some(CompactionRetention::Period(Duration::from_secs(3600)))
    );
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
    assert_eq!(c.grpc_keepalive_min_time, Duration::from_secs(10));
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.log_outputs, ["stderr"]);
    assert!(c.client_tls.is_empty() && c.peer_tls.is_empty());
    assert_eq!(
        c.warnings,
        [
            "config file key \"discovery-fallback\" is accepted for etcd compatibility but has no \
             effect in ferrocd yet",
            "config file key \"log-outputs\" is accepted for etcd compatibility but has no effect \
             in ferrocd yet (logs go to stderr)",
        ]
    );
}

#[test]
fn with_a_config_file_other_flags_and_env_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_yaml(&dir, "name: from-file\nsnapshot-count: 123\n");
    let c = parse_env(
        &[
            "--config-file",
            path.to_str().unwrap(),
            "--name",
            "from-flag",
            "--snapshot-count=9",
        ],
        &[("ETCD_MAX_TXN_OPS", "3"), ("ETCD_NAME", "from-env")],
    )
    .unwrap();
    assert_eq!(c.name, "from-file");
    assert_eq!(c.snapshot_count, 123);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(
        c.warnings,
        [
            "a config file is given, so these command-line flags are ignored (as in etcd): \
             --name, --snapshot-count",
            "a config file is given, so these environment variables are ignored (as in etcd): \
             ETCD_MAX_TXN_OPS, ETCD_NAME",
        ]
    );

    // ETCD_CONFIG_FILE works too, and a file without listen-client-urls' partner is fine.
    let path = write_yaml(
        &dir,
        "name: via-env\nlisten-client-urls: http://127.0.0.1:23790\n",
    );
    let c = parse_env(&[], &[("ETCD_CONFIG_FILE", path.to_str().unwrap())]).unwrap();
    assert_eq!(c.name, "via-env");
    assert_eq!(c.config_file, Some(path));
    assert_eq!(strs(&c.listen_client_urls), ["http://127.0.0.1:23790"]);
    assert_eq!(strs(&c.advertise_client_urls), ["http://localhost:2379"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn config_file_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yml");
    let e = parse(&["--config-file", missing.to_str().unwrap()]).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read config file {}: ", missing.display())),
        "{e}"
    );

    let path = write_yaml(&dir, "name: [unclosed\n");
    let e = parse(&["--config-file", path.to_str().unwrap()]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("invalid config file {}: ", path.display())),
        "{e}"
    );

    let path = write_yaml(&dir, "name: a\nsnapshot-count: many\n");
    let e = parse(&["--config-file", path.to_str().unwrap()]).unwrap_err();
    assert!(
        e.to_string()
            .contains("invalid value for \"snapshot-count\""),
        "{e}"
    );

    let path = write_yaml(&dir, "listen-peer-urls: http://127.0.0.1:2380/raft\n");
    let e = parse(&["--config-file", path.to_str().unwrap()]).unwrap_err();
    assert!(
        e.to_string().contains(
            "invalid value for \"listen-peer-urls\": URL must not contain a path: http://127.0.0.1:2380/raft"
        ),
        "{e}"
    );

    let path = write_yaml(&dir, "initial-cluster-state: old\n");
    let e = parse(&["--config-file", path.to_str().unwrap()]).unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown initial-cluster-state \"old\" (valid values: new, existing)"),
        "{e}"
    );

    let path = write_yaml(&dir, "- just\n- a list\n");
    let e = parse(&["--config-file", path.to_str().unwrap()]).unwrap_err();
    assert!(e.to_string().contains("must be a YAML mapping"), "{e}");
}

#[test]
fn config_file_unknown_keys_warn_and_tls_block_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_yaml(
        &dir,
        "name: a\nno-such-key: 1\ncert-file: /x.pem\nclient-transport-security:\n  cert-file: /c.pem\n  key-file: /k.pem\n  trusted-ca-file: /ca.pem\n  client-cert-auth: true\n  bogus: 2\n",
    );
    let c = ok(&["--config-file", path.to_str().unwrap()]);
    assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("/c.pem")));
    assert_eq!(c.client_tls.key_file, Some(PathBuf::from("/k.pem")));
    assert_eq!(c.client_tls.trusted_ca_file, Some(PathBuf::from("/ca.pem")));
    assert!(c.client_tls.client_cert_auth);
    let shown = path.display();
    assert_eq!(
        c.warnings,
        [
            format!("config file {shown}: unknown key \"cert-file\" is ignored (it is not an etcd 3.5 option)"),
            format!("config file {shown}: unknown key \"no-such-key\" is ignored (it is not an etcd 3.5 option)"),
            format!("config file {shown}: unknown key \"bogus\" in client-transport-security is ignored"),
            "scheme is HTTP while key and cert files are present; ignoring --cert-file and --key-file".to_string(),
            "scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth".to_string(),
        ]
    );
}

#[test]
fn empty_config_file_gives_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_yaml(&dir, "");
    let c = ok(&["--config-file", path.to_str().unwrap()]);
    assert_eq!(
        Config {
            config_file: None,
            ..c
        },
        Config::default()
    );
}

#[test]
fn sample_config_file_loads_to_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_yaml(&dir, include_str!("../../config/ferrocd.conf.yml.sample"));
    let c = ok(&["--config-file", path.to_str().unwrap()]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        Config {
            config_file: None,
            ..c
        },
        Config::default()
    );
}

#[test]
fn etcd_sample_style_file_loads_with_warnings_only() {
    // The keys etcd's own sample file sets, with its values.
    let dir = tempfile::tempdir().unwrap();
    let path = write_yaml(
        &dir,
        "name: 'default'\ndata-dir:\nwal-dir:\nsnapshot-count: 10000\nheartbeat-interval: 100\n\
         election-timeout: 1000\nquota-backend-bytes: 0\nlisten-peer-urls: http://localhost:2380\n\
         listen-client-urls: http://localhost:2379\nmax-snapshots: 5\nmax-wals: 5\ncors:\n\
         initial-advertise-peer-urls: http://localhost:2380\nadvertise-client-urls: http://localhost:2379\n\
         discovery:\ndiscovery-fallback: 'proxy'\ndiscovery-proxy:\ndiscovery-srv:\ninitial-cluster:\n\
         initial-cluster-token: 'etcd-cluster'\ninitial-cluster-state: 'new'\nstrict-reconfig-check: false\n\
         enable-pprof: true\nproxy: 'off'\nproxy-failure-wait: 5000\nproxy-refresh-interval: 30000\n\
         proxy-dial-timeout: 1000\nproxy-write-timeout: 5000\nproxy-read-timeout: 0\n\
         client-transport-security:\n  cert-file:\n  key-file:\n  client-cert-auth: false\n  trusted-ca-file:\n  auto-tls: false\n\
         peer-transport-security:\n  cert-file:\n  key-file:\n  client-cert-auth: false\n  trusted-ca-file:\n  auto-tls: false\n\
         self-signed-cert-validity: 1\nlog-level: debug\nlogger: zap\nlog-outputs: [stderr]\n\
         force-new-cluster: false\nauto-compaction-mode: periodic\nauto-compaction-retention: \"1\"\n\
         cipher-suites: [\n  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,\n  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n]\n\
         tls-min-version: 'TLS1.2'\ntls-max-version: 'TLS1.3'\n",
    );
    let c = ok(&["--config-file", path.to_str().unwrap()]);
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.ferrocd"));
    assert_eq!(cluster(&c), "default=http://localhost:2380");
    assert!(!c.strict_reconfig_check);
    assert!(c.enable_pprof);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(
        c.auto_compaction_retention,
        Some(CompactionRetention::Period(Duration::from_secs(3600)))
    );
    let warned: Vec<&str> = c
        .warnings
        .iter()
        .map(|w| w.split('"').nth(1).unwrap_or(w))
        .collect();
    assert_eq!(
        warned,
        [
            "max-snapshots",
            "max-wals",
            "discovery-fallback",
            "self-signed-cert-validity",
            "cipher-suites",
            "tls-min-version",
            "tls-max-version",
            "proxy-failure-wait",
            "proxy-refresh-interval",
            "proxy-dial-timeout",
            "proxy-write-timeout",
            "proxy-read-timeout",
            "logger",
            "log-outputs",
            "enable-pprof",
        ]
    );
}

#[test]
fn every_file_option_is_a_known_yaml_key() {
    // Flags that have no top-level key in etcd's file (TLS flags live in the
    // *-transport-security blocks, socket flags in socket-options).
    let flag_only = [
        "help",
        "version",
        "config-file",
        "cert-file",
        "key-file",
        "client-cert-auth",
        "client-cert-file",
        "client-key-file",
        "client-crl-file",
        "trusted-ca-file",
        "peer-cert-file",
        "peer-key-file",
        "peer-client-cert-auth",
        "peer-trusted-ca-file",
        "peer-client-cert-file",
        "peer-client-key-file",
        "peer-crl-file",
        "auto-tls",
        "peer-auto-tls",
        "socket-reuse-port",
        "socket-reuse-address",
        "client-cert-allowed-hostname",
        "peer-cert-allowed-cn",
        "peer-cert-allowed-hostname",
        "experimental-peer-skip-client-san-verification",
    ];
    let mut yaml = String::new();
    for arg in command().get_arguments() {
        let long = arg.get_long().unwrap();
        if !flag_only.contains(&long) {
            yaml.push_str(&format!("{long}: null\n"));
        }
    }
    yaml.push_str(
        "client-transport-security: null\npeer-transport-security: null\nsocket-options: null\n",
    );
    let raw: RawConfig = serde_yaml::from_str(&yaml).unwrap();
    assert!(
        raw.unknown.is_empty(),
        "{:?}",
        raw.unknown.keys().collect::<Vec<_>>()
    );
    for key in flag_only
        .iter()
        .filter(|k| !matches!(**k, "help" | "version"))
    {
        let raw: RawConfig = serde_yaml::from_str(&format!("{key}: x\n")).unwrap();
        assert!(
            raw.unknown.contains_key(*key),
            "{key} should not be a file key"
        );
    }
}

#[test]
fn file_durations_accept_nanoseconds_and_go_strings() {
    let dir = tempfile::tempdir().unwrap();
    let mut warnings = Vec::new();
    let path = write_yaml(
        &dir,
        "grpc-keepalive-interval: 7200000000000\ngrpc-keepalive-timeout: '1m30s'\nwatch-progress-notify-interval: 1s\n",
    );
    let (raw, explicit) = load_file(&path, &mut warnings).unwrap();
    assert_eq!(
        raw.grpc_keepalive_interval.unwrap().0,
        Duration::from_secs(7200)
    );
    assert_eq!(
        raw.grpc_keepalive_timeout.unwrap().0,
        Duration::from_secs(90)
    );
    assert_eq!(
        raw.experimental_watch_progress_notify_interval.unwrap().0,
        Duration::from_secs(1)
    );
    assert!(explicit.contains("grpc-keepalive-interval"));
    assert!(warnings.is_empty());
}

// ---------------------------------------------------------------- validation

#[test]
fn timeout_rules_use_etcds_texts() {
    assert_eq!(
        err(&["--election-timeout=400"]),
        "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"
    );
    assert_eq!(
        err(&["--heartbeat-interval=0"]),
        "--heartbeat-interval must be >0 (set to 0ms)"
    );
    assert_eq!(
        err(&["--election-timeout=0"]),
        "--election-timeout must be >0 (set to 0ms)"
    );
    assert_eq!(
        err(&["--election-timeout=60000"]),
        "--election-timeout[60000ms] is too long, and should be set less than 50000ms"
    );
    let c = ok(&["--heartbeat-interval=200", "--election-timeout=1000"]);
    assert_eq!(c.election_ticks(), 5);
}

#[test]
fn numeric_limits_must_be_positive() {
    assert_eq!(
        err(&["--snapshot-count=0"]),
        "--snapshot-count must be >0 (set to 0)"
    );
    assert_eq!(
        err(&["--max-request-bytes=0"]),
        "--max-request-bytes must be >0 (set to 0)"
    );
    assert_eq!(
        err(&["--max-txn-ops=0"]),
        "--max-txn-ops must be >0 (set to 0)"
    );
    assert_eq!(
        err(&["--bcrypt-cost=3"]),
        "--bcrypt-cost must be between 4 and 31 (set to 3)"
    );
    assert_eq!(
        err(&["--auth-token=oauth"]),
        "--auth-token: unknown token type \"oauth\" (valid values: simple, jwt,...)"
    );
}

#[test]
fn size_warnings_match_etcds() {
    let c = ok(&[
        "--max-request-bytes=20971520",
        "--quota-backend-bytes=17179869184",
    ]);
    assert_eq!(
        c.warnings,
        [
            "--max-request-bytes=20971520 exceeds the recommended limit of 10485760 bytes",
            "--quota-backend-bytes=17179869184 exceeds the maximum recommended value of 8589934592 bytes",
        ]
    );
    assert_eq!(c.backend_quota(), Some(17_179_869_184));
}

#[test]
fn url_rules() {
    let e = err(&["--listen-peer-urls=http://127.0.0.1:2380/raft"]);
    assert!(
        e.contains("URL must not contain a path: http://127.0.0.1:2380/raft"),
        "{e}"
    );
    let e = err(&["--listen-peer-urls=http://127.0.0.1:2380/"]);
    assert!(
        e.contains("URL must not contain a path: http://127.0.0.1:2380/"),
        "{e}"
    );
    let e = err(&["--listen-peer-urls=tcp://127.0.0.1:2380"]);
    assert!(
        e.contains("URL scheme must be http or https: tcp://127.0.0.1:2380"),
        "{e}"
    );
    let e = err(&["--listen-peer-urls=127.0.0.1:2380"]);
    assert!(
        e.contains("URL scheme must be http or https: 127.0.0.1:2380"),
        "{e}"
    );
    let e = err(&["--listen-peer-urls=http://127.0.0.1"]);
    assert!(
        e.contains("URL address does not have the form \"host:port\": http://127.0.0.1"),
        "{e}"
    );
    let e = err(&["--listen-client-urls=unix://localhost:2379"]);
    assert!(
        e.contains("unix socket URLs are not supported by ferrocd"),
        "{e}"
    );
    assert_eq!(
        err(&["--listen-peer-urls=http://etcd-0.example:2380"]),
        "--listen-peer-urls: expected IP in URL for binding (http://etcd-0.example:2380)"
    );
    assert_eq!(
        err(&["--listen-client-urls=http://0.0.0.0:2379"]),
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    assert_eq!(
        err(&[
            "--listen-client-urls=http://0.0.0.0:2379",
            "--advertise-client-urls="
        ]),
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    assert_eq!(
        err(&["--listen-peer-urls="]),
        "--listen-peer-urls must not be empty"
    );
    // Advertise URLs may use host names; listen URLs bind all interfaces or one IP.
    let c = ok(&[
        "--listen-client-urls=http://0.0.0.0:2379",
        "--advertise-client-urls=http://etcd-0.example:2379",
        "--listen-peer-urls=http://[::]:2380",
    ]);
    assert_eq!(
        strs(&c.advertise_client_urls),
        ["http://etcd-0.example:2379"]
    );
    assert_eq!(
        bind_addr(&c.listen_peer_urls[0]).unwrap(),
        "[::]:2380".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn url_parsing_and_localhost() {
    let list: UrlList = " http://localhost:2379 , http://127.0.0.1:2379,http://localhost:2379"
        .parse()
        .unwrap();
    assert_eq!(
        strs(&list.0),
        ["http://localhost:2379", "http://127.0.0.1:2379"]
    );
    assert_eq!(
        bind_addr(&list.0[0]).unwrap(),
        "127.0.0.1:2379".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        bind_addr(&list.0[1]).unwrap(),
        "127.0.0.1:2379".parse::<SocketAddr>().unwrap()
    );
    let v6 = parse_etcd_url("http://[::1]:2380").unwrap();
    assert_eq!(url_to_string(&v6), "http://[::1]:2380");
    assert_eq!(
        bind_addr(&v6).unwrap(),
        "[::1]:2380".parse::<SocketAddr>().unwrap()
    );
    // Default ports are kept in the etcd form even though `Url` drops them.
    let p80 = parse_etcd_url("http://10.0.0.1:80").unwrap();
    assert_eq!(url_to_string(&p80), "http://10.0.0.1:80");
    assert_eq!(
        bind_addr(&p80).unwrap(),
        "10.0.0.1:80".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        url_to_string(&parse_etcd_url("HTTPS://Example.COM:443").unwrap()),
        "https://example.com:443"
    );
    assert_eq!(
        bind_addr(&parse_etcd_url("http://example.com:1").unwrap())
            .unwrap_err()
            .to_string(),
        "expected IP in URL for binding (http://example.com:1)"
    );
    assert_eq!(
        parse_etcd_url("http://:2379").unwrap_err(),
        "URL has an empty host: http://:2379"
    );
    assert_eq!(
        parse_etcd_url("http://h:2379?x=1").unwrap_err(),
        "URL must not contain a query or fragment: http://h:2379?x=1"
    );
    assert_eq!(
        parse_etcd_url("http://u@h:2379").unwrap_err(),
        "URL must not contain user information: http://u@h:2379"
    );
    assert_eq!(
        parse_etcd_url("http://h:99999").unwrap_err(),
        "URL address does not have the form \"host:port\": http://h:99999"
    );
    assert!("".parse::<UrlList>().unwrap().0.is_empty());
}

#[test]
fn initial_cluster_parsing() {
    let m: Members = "a=http://10.0.0.1:2380, b=http://10.0.0.2:2380,,a=http://10.0.0.3:2380"
        .parse()
        .unwrap();
    let names: Vec<&str> = m.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "a"]);
    assert_eq!(url_to_string(&m.0[2].1), "http://10.0.0.3:2380");
    assert_eq!(
        "a".parse::<Members>().unwrap_err(),
        "entry \"a\" must have the form name=URL"
    );
    let e = err(&["--initial-cluster=default"]);
    assert!(
        e.contains("entry \"default\" must have the form name=URL"),
        "{e}"
    );
}

#[test]
fn initial_cluster_membership_rules() {
    assert_eq!(
        err(&["--name=n9", "--initial-cluster=n1=http://localhost:2380"]),
        "couldn't find local name \"n9\" in the initial cluster configuration \
         (--initial-cluster=\"n1=http://localhost:2380\"); add n9=<peer URL> to --initial-cluster or fix --name"
    );
    // Joining an existing cluster also requires the local name.
    let e = err(&[
        "--name=n9",
        "--initial-cluster-state=existing",
        "--initial-cluster=n1=http://localhost:2380",
    ]);
    assert!(e.starts_with("couldn't find local name \"n9\""), "{e}");
    // An explicitly empty --initial-cluster is taken as given, as in etcd.
    let e = err(&["--initial-cluster="]);
    assert!(e.starts_with("couldn't find local name \"default\""), "{e}");

    assert_eq!(
        err(&[
            "--name=n1",
            "--initial-advertise-peer-urls=http://10.0.0.1:2380",
            "--initial-cluster=n1=http://10.0.0.2:2380,n2=http://10.0.0.3:2380",
        ]),
        "--initial-cluster has n1=http://10.0.0.2:2380 but missing from \
         --initial-advertise-peer-urls=http://10.0.0.1:2380 \
         (\"http://10.0.0.1:2380\"(resolved from \"http://10.0.0.1:2380\") != \
         \"http://10.0.0.2:2380\"(resolved from \"http://10.0.0.2:2380\"))"
    );
    assert_eq!(
        err(&[
            "--name=n1",
            "--initial-advertise-peer-urls=http://10.0.0.1:2380,http://10.0.0.9:2380",
            "--initial-cluster=n1=http://10.0.0.1:2380,n2=http://10.0.0.3:2380",
        ]),
        "--initial-advertise-peer-urls has http://10.0.0.9:2380 but missing from \
         --initial-cluster=n1=http://10.0.0.1:2380"
    );
    assert_eq!(
        err(&[
            "--name=n1",
            "--initial-advertise-peer-urls=http://10.0.0.1:2380",
            "--initial-cluster=n1=http://10.0.0.1:2380,n2=http://10.0.0.1:2380",
        ]),
        "initial cluster n1=http://10.0.0.1:2380,n2=http://10.0.0.1:2380 has duplicate url"
    );
    // A state of "existing" skips the advertise check, as in etcd.
    let c = ok(&[
        "--name=n1",
        "--initial-cluster-state=existing",
        "--initial-advertise-peer-urls=http://10.0.0.1:2380",
        "--initial-cluster=n1=http://10.0.0.2:2380",
    ]);
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
}

#[test]
fn localhost_and_loopback_match_after_resolution() {
    let c = ok(&[
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=default=http://localhost:2380",
    ]);
    assert_eq!(cluster(&c), "default=http://localhost:2380");
}

#[test]
fn bootstrap_checks_are_skipped_once_a_wal_exists() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("member").join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let data_dir = format!("--data-dir={}", dir.path().display());
    let mismatch = [
        data_dir.as_str(),
        "--name=n1",
        "--initial-cluster=n2=http://10.0.0.2:2380",
    ];
    // An empty WAL directory is not a WAL.
    assert!(parse(&mismatch)
        .unwrap_err()
        .to_string()
        .starts_with("couldn't find local name"));
    std::fs::write(wal.join("0000000000000000-0000000000000000.wal"), b"").unwrap();
    let c = ok(&mismatch);
    assert_eq!(c.data_dir, dir.path());
}

#[test]
fn data_and_wal_dirs_must_not_be_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(
        err(&[&format!("--data-dir={}", file.display())]),
        format!("data dir {} is a file, not a directory", file.display())
    );
    assert_eq!(
        err(&[&format!("--wal-dir={}", file.display())]),
        format!("wal dir {} is a file, not a directory", file.display())
    );
    // An existing directory and a missing path are both fine.
    let c = ok(&[&format!("--data-dir={}", dir.path().display())]);
    assert_eq!(c.data_dir, dir.path());
}

#[test]
fn tls_is_parsed_but_refused_for_now() {
    assert_eq!(
        err(&[
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379",
        ]),
        "cannot listen on TLS for https://127.0.0.1:2379: KeyFile and CertFile are not presented \
         (set --cert-file and --key-file, or use an http:// URL)"
    );
    assert_eq!(
        err(&["--listen-peer-urls=https://127.0.0.1:2380"]),
        "cannot listen on TLS for https://127.0.0.1:2380: KeyFile and CertFile are not presented \
         (set --peer-cert-file and --peer-key-file, or use an http:// URL)"
    );
    let e = parse(&[
        "--listen-client-urls=https://127.0.0.1:2379",
        "--advertise-client-urls=https://127.0.0.1:2379",
        "--cert-file=/etc/etcd/server.crt",
        "--key-file=/etc/etcd/server.key",
    ])
    .unwrap_err();
    assert!(matches!(e, ConfigError::Unsupported(_)));
    assert_eq!(e.exit_code(), 1);
    assert_eq!(
        e.to_string(),
        "TLS is not supported yet by ferrocd: --listen-client-urls has https://127.0.0.1:2379; \
         use http:// URLs (and drop --cert-file/--key-file) for now"
    );
    assert_eq!(
        err(&["--peer-cert-file=/a.crt"]),
        "--peer-cert-file and --peer-key-file must be set together"
    );
    let c = ok(&[
        "--cert-file=/etc/etcd/server.crt",
        "--key-file=/etc/etcd/server.key",
        "--trusted-ca-file=/etc/etcd/ca.crt",
        "--client-cert-auth=true",
        "--client-crl-file=/etc/etcd/crl.pem",
        "--peer-cert-file=/etc/etcd/peer.crt",
        "--peer-key-file=/etc/etcd/peer.key",
        "--peer-trusted-ca-file=/etc/etcd/ca.crt",
        "--peer-client-cert-auth",
    ]);
    assert_eq!(
        c.client_tls.cert_file,
        Some(PathBuf::from("/etc/etcd/server.crt"))
    );
    assert_eq!(
        c.client_tls.key_file,
        Some(PathBuf::from("/etc/etcd/server.key"))
    );
    assert_eq!(
        c.client_tls.trusted_ca_file,
        Some(PathBuf::from("/etc/etcd/ca.crt"))
    );
    assert_eq!(
        c.client_tls.crl_file,
        Some(PathBuf::from("/etc/etcd/crl.pem"))
    );
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(
        c.peer_tls.cert_file,
        Some(PathBuf::from("/etc/etcd/peer.crt"))
    );
    assert_eq!(
        c.peer_tls.key_file,
        Some(PathBuf::from("/etc/etcd/peer.key"))
    );
    assert!(c.peer_tls.client_cert_auth);
    assert_eq!(
        c.warnings,
        [
            "scheme is HTTP while key and cert files are present; ignoring --cert-file and --key-file",
            "scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth",
            "scheme is HTTP while key and cert files are present; ignoring --peer-cert-file and --peer-key-file",
            "scheme is HTTP while --peer-client-cert-auth is enabled; ignoring client cert auth",
        ]
    );
}

#[test]
fn unsupported_features_are_refused_by_name() {
    for flag in [
        "discovery",
        "discovery-srv",
        "discovery-srv-name",
        "discovery-proxy",
    ] {
        let e = parse(&[&format!("--{flag}=https://discovery.etcd.io/abc")]).unwrap_err();
        assert!(matches!(e, ConfigError::Unsupported(_)));
        assert_eq!(
            e.to_string(),
            format!(
                "--{flag} is set, but discovery is not supported by ferrocd: list every member \
                 with --initial-cluster (and --initial-cluster-state) instead"
            )
        );
    }
    assert_eq!(ok(&["--discovery="]).name, "default");
    assert_eq!(
        err(&["--enable-v2=true"]),
        "--enable-v2=true is not supported: ferrocd serves only the etcd v3 API"
    );
    assert!(ok(&["--enable-v2=false"]).warnings.is_empty());
    assert_eq!(
        err(&["--auto-tls"]),
        "--auto-tls=true is not supported by ferrocd: it cannot generate self-signed \
         certificates (and does not serve TLS yet); remove the flag and use http:// URLs"
    );
    assert!(err(&["--peer-auto-tls=true"]).starts_with("--peer-auto-tls=true is not supported"));
    assert!(ok(&["--auto-tls=false", "--peer-auto-tls=false"])
        .warnings
        .is_empty());
    assert_eq!(
        err(&["--proxy=on"]),
        "--proxy=on is not supported: ferrocd has no v2 proxy mode (only 'off' is accepted)"
    );
    assert!(ok(&["--proxy=off"]).warnings.is_empty());
    assert_eq!(
        err(&["--logger=capnslog"]),
        "--logger=capnslog is removed in v3.5"
    );
    assert_eq!(
        err(&["--logger=glog"]),
        "unknown logger option \"glog\" (only 'zap')"
    );
    assert_eq!(
        err(&["--metrics=full"]),
        "--metrics: unknown value \"full\" (valid values: basic, extensive)"
    );
}

#[test]
fn accepted_flags_warn_that_they_have_no_effect() {
    let c = ok(&[
        "--logger=zap",
        "--log-outputs=stderr",
        "--enable-pprof",
        "--metrics=extensive",
        "--experimental-initial-corrupt-check=true",
        "--experimental-corrupt-check-time=1m",
        "--socket-reuse-address",
        "--max-snapshots=3",
        "--max-wals=3",
        "--cors=*",
        "--host-whitelist=*",
        "--experimental-enable-lease-checkpoint",
    ]);
    assert!(c.enable_pprof);
    assert_eq!(c.log_outputs, ["stderr"]);
    let no_effect = |flag: &str, why: &str| {
        format!("--{flag} is accepted for etcd compatibility but has no effect in ferrocd yet{why}")
    };
    assert_eq!(
        c.warnings,
        [
            no_effect("experimental-initial-corrupt-check", ""),
            no_effect("socket-reuse-address", ""),
            no_effect("max-snapshots", ""),
            no_effect("max-wals", ""),
            no_effect("cors", ""),
            no_effect("host-whitelist", ""),
            no_effect("logger", " (ferrocd logs through tracing)"),
            no_effect("metrics", " (the basic metric set is always served)"),
            no_effect("log-outputs", " (logs go to stderr)"),
            no_effect(
                "experimental-enable-lease-checkpoint",
                " (ferrocd always checkpoints remaining lease TTLs)"
            ),
            "--enable-pprof is accepted but ignored: ferrocd has no /debug/pprof endpoint".into(),
        ]
    );
}

#[test]
fn kubeadm_style_manifest_without_tls_starts() {
    let c = ok(&[
        "--advertise-client-urls=http://10.0.0.5:2379",
        "--data-dir=/nonexistent/ferrocd-test/var/lib/etcd",
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
        "--initial-advertise-peer-urls=http://10.0.0.5:2380",
        "--initial-cluster=cp-1=http://10.0.0.5:2380",
        "--listen-client-urls=http://127.0.0.1:2379,http://10.0.0.5:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--listen-peer-urls=http://10.0.0.5:2380",
        "--name=cp-1",
        "--snapshot-count=10000",
    ]);
    assert_eq!(c.name, "cp-1");
    assert_eq!(cluster(&c), "cp-1=http://10.0.0.5:2380");
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
    assert_eq!(
        c.warnings,
        ["--experimental-initial-corrupt-check is accepted for etcd compatibility but has no effect in ferrocd yet"]
    );
}

// ---------------------------------------------------------------- value parsers

#[test]
fn auto_compaction_retention_parsing() {
    use AutoCompactionMode::{Periodic, Revision};
    use CompactionRetention::{Period, Revisions};
    let cases: &[(AutoCompactionMode, &str, Option<CompactionRetention>)] = &[
        (Periodic, "0", None),
        (Periodic, "0s", None),
        (Periodic, "1", Some(Period(Duration::from_secs(3600)))),
        (Periodic, "72", Some(Period(Duration::from_secs(72 * 3600)))),
        (Periodic, "5m", Some(Period(Duration::from_secs(300)))),
        (Periodic, "30s", Some(Period(Duration::from_secs(30)))),
        (Periodic, "1h30m", Some(Period(Duration::from_secs(5400)))),
        (Periodic, "1.5h", Some(Period(Duration::from_secs(5400)))),
        (Revision, "1000", Some(Revisions(1000))),
        (Revision, "0", None),
    ];
    for (mode, text, want) in cases {
        assert_eq!(
            parse_retention(*mode, text).unwrap(),
            *want,
            "{mode:?} {text}"
        );
    }
    assert_eq!(
        parse_retention(Revision, "5m").unwrap_err(),
        "--auto-compaction-retention=\"5m\" must be a whole number of revisions when \
         --auto-compaction-mode=revision"
    );
    assert_eq!(
        parse_retention(Periodic, "soon").unwrap_err(),
        "error parsing CompactionRetention: time: invalid duration \"soon\""
    );
    assert_eq!(
        err(&["--auto-compaction-retention=-1"]),
        "error parsing CompactionRetention: time: missing unit in duration \"-1\""
    );
    let c = ok(&["--auto-compaction-retention=1"]);
    assert_eq!(
        c.auto_compaction_retention,
        Some(Period(Duration::from_secs(3600)))
    );
}

#[test]
fn go_duration_syntax() {
    let ok_cases: &[(&str, Duration)] = &[
        ("0", Duration::ZERO),
        ("5s", Duration::from_secs(5)),
        ("1h30m", Duration::from_secs(5400)),
        ("2h45m0.5s", Duration::from_millis(9_900_500)),
        ("300ms", Duration::from_millis(300)),
        ("1.5h", Duration::from_secs(5400)),
        (".5s", Duration::from_millis(500)),
        ("10us", Duration::from_micros(10)),
        ("10\u{b5}s", Duration::from_micros(10)),
        ("7ns", Duration::from_nanos(7)),
        ("+1m", Duration::from_secs(60)),
        ("-0s", Duration::ZERO),
    ];
    for (text, want) in ok_cases {
        assert_eq!(parse_go_duration(text).unwrap(), *want, "{text}");
    }
    assert_eq!(
        parse_go_duration("").unwrap_err(),
        "time: invalid duration \"\""
    );
    assert_eq!(
        parse_go_duration("5").unwrap_err(),
        "time: missing unit in duration \"5\""
    );
    assert_eq!(
        parse_go_duration("5d").unwrap_err(),
        "time: unknown unit \"d\" in duration \"5d\""
    );
    assert_eq!(
        parse_go_duration("s").unwrap_err(),
        "time: invalid duration \"s\""
    );
    assert_eq!(
        parse_go_duration("-5s").unwrap_err(),
        "negative duration \"-5s\" is not allowed"
    );
    assert_eq!(
        parse_go_duration("9999999h").unwrap_err(),
        "time: invalid duration \"9999999h\""
    );
}

#[test]
fn go_bool_syntax() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(t.parse::<Bool>().unwrap(), Bool(true), "{t}");
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(f.parse::<Bool>().unwrap(), Bool(false), "{f}");
    }
    assert_eq!(
        "yes".parse::<Bool>().unwrap_err(),
        "\"yes\" is not a boolean (use true or false)"
    );
    // YAML 1.1 words are accepted in the file, as etcd's YAML reader does.
    let b: Bool = serde_yaml::from_str("off").unwrap();
    assert_eq!(b, Bool(false));
}

#[test]
fn log_levels_map_to_tracing() {
    let cases = [
        ("debug", "debug"),
        ("info", "info"),
        ("warn", "warn"),
        ("error", "error"),
        ("panic", "error"),
        ("fatal", "error"),
    ];
    for (level, filter) in cases {
        let c = ok(&[&format!("--log-level={level}")]);
        assert_eq!(c.log_level.tracing_filter(), filter, "{level}");
    }
}
