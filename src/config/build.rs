//! Raw options → validated [`Config`]: defaults, etcd's derivations and etcd's checks.
//!
//! Errors name the flag (`--election-timeout`) even when the value came from the file or
//! a variable, as etcd's own messages do, so the texts match what operators search for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::raw::{RawConfig, SecurityYaml, ACCEPTED_NO_EFFECT};
use super::sources::Explicit;
use super::values::{bind_addr, parse_go_duration, Bool, GoDuration, UrlList};
use super::{
    cluster, AutoCompactionMode, CompactionRetention, Config, ConfigError, TlsConfig,
    MAX_QUOTA_BYTES,
};

/// etcd's `maxElectionMs`.
const MAX_ELECTION_MS: u64 = 50_000;
/// etcd warns above this request size (`recommendedMaxRequestBytes`, 10 MiB).
const RECOMMENDED_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// Builds the config. `file` is the config file the options came from, if any; etcd
/// applies a few rules only to flags (the advertise-client-urls requirement).
pub(crate) fn build(
    raw: RawConfig,
    explicit: &Explicit,
    file: Option<PathBuf>,
    mut warnings: Vec<String>,
) -> Result<Config, ConfigError> {
    let from_file = file.is_some();
    refuse_unsupported(&raw)?;
    note_accepted(&raw, explicit, from_file, &mut warnings)?;

    let mut c = Config::default();
    if let Some(name) = raw.name {
        c.name = name;
    }
    if c.name.is_empty() {
        return invalid("--name must not be empty".into());
    }
    c.data_dir = non_empty_path(raw.data_dir)
        .unwrap_or_else(|| PathBuf::from(format!("{}.ferrocd", c.name)));
    c.wal_dir = non_empty_path(raw.wal_dir);

    set_urls(&mut c.listen_peer_urls, raw.listen_peer_urls);
    set_urls(&mut c.listen_client_urls, raw.listen_client_urls);
    set_urls(&mut c.listen_client_http_urls, raw.listen_client_http_urls);
    set_urls(&mut c.listen_metrics_urls, raw.listen_metrics_urls);
    set_urls(
        &mut c.initial_advertise_peer_urls,
        raw.initial_advertise_peer_urls,
    );
    set_urls(&mut c.advertise_client_urls, raw.advertise_client_urls);
    check_urls(&c, explicit, from_file)?;

    c.initial_cluster = match raw.initial_cluster {
        Some(members) => members.0,
        None => c
            .initial_advertise_peer_urls
            .iter()
            .map(|u| (c.name.clone(), u.clone()))
            .collect(),
    };
    set(&mut c.initial_cluster_state, raw.initial_cluster_state);
    set(&mut c.initial_cluster_token, raw.initial_cluster_token);

    set(&mut c.snapshot_count, raw.snapshot_count);
    set(
        &mut c.snapshot_catchup_entries,
        raw.experimental_snapshot_catchup_entries,
    );
    if c.snapshot_count == 0 {
        return invalid("--snapshot-count must be >0 (set to 0)".into());
    }

    let heartbeat_ms = raw.heartbeat_interval.unwrap_or(100);
    let election_ms = raw.election_timeout.unwrap_or(1000);
    check_timeouts(heartbeat_ms, election_ms)?;
    c.heartbeat_interval = Duration::from_millis(heartbeat_ms);
    c.election_timeout = Duration::from_millis(election_ms);
    set_bool(
        &mut c.initial_election_tick_advance,
        raw.initial_election_tick_advance,
    );

    set(&mut c.max_request_bytes, raw.max_request_bytes);
    if c.max_request_bytes == 0 {
        return invalid("--max-request-bytes must be >0 (set to 0)".into());
    }
    if c.max_request_bytes > RECOMMENDED_MAX_REQUEST_BYTES {
        warnings.push(format!(
            "--max-request-bytes={} exceeds the recommended limit of {RECOMMENDED_MAX_REQUEST_BYTES} bytes",
            c.max_request_bytes
        ));
    }
    set(&mut c.quota_backend_bytes, raw.quota_backend_bytes);
    if c.quota_backend_bytes > MAX_QUOTA_BYTES as i64 {
        warnings.push(format!(
            "--quota-backend-bytes={} exceeds the maximum recommended value of {MAX_QUOTA_BYTES} bytes",
            c.quota_backend_bytes
        ));
    }
    set(&mut c.max_txn_ops, raw.max_txn_ops);
    if c.max_txn_ops == 0 {
        return invalid("--max-txn-ops must be >0 (set to 0)".into());
    }
    set(&mut c.max_concurrent_streams, raw.max_concurrent_streams);
    set(&mut c.log_level, raw.log_level);
    if let Some(outputs) = raw.log_outputs.filter(|o| !o.0.is_empty()) {
        c.log_outputs = outputs.0;
    }

    set(&mut c.auto_compaction_mode, raw.auto_compaction_mode);
    let retention = raw.auto_compaction_retention.map(|t| t.0);
    c.auto_compaction_retention =
        parse_retention(c.auto_compaction_mode, retention.as_deref().unwrap_or("0"))
            .map_err(ConfigError::Invalid)?;
    set(
        &mut c.compaction_batch_limit,
        raw.experimental_compaction_batch_limit,
    );
    set_duration(
        &mut c.compaction_sleep_interval,
        raw.experimental_compaction_sleep_interval,
    );
    set_duration(
        &mut c.watch_progress_notify_interval,
        raw.experimental_watch_progress_notify_interval,
    );
    set_duration(
        &mut c.corrupt_check_time,
        raw.experimental_corrupt_check_time,
    );
    set_duration(
        &mut c.warning_apply_duration,
        raw.experimental_warning_apply_duration,
    );

    set_bool(&mut c.strict_reconfig_check, raw.strict_reconfig_check);
    set_bool(&mut c.pre_vote, raw.pre_vote);
    set_bool(&mut c.enable_pprof, raw.enable_pprof);
    set_bool(&mut c.enable_grpc_gateway, raw.enable_grpc_gateway);
    set_bool(&mut c.force_new_cluster, raw.force_new_cluster);
    set_bool(&mut c.unsafe_no_fsync, raw.unsafe_no_fsync);
    set_duration(&mut c.grpc_keepalive_min_time, raw.grpc_keepalive_min_time);
    set_duration(&mut c.grpc_keepalive_interval, raw.grpc_keepalive_interval);
    set_duration(&mut c.grpc_keepalive_timeout, raw.grpc_keepalive_timeout);

    set(&mut c.auth_token, raw.auth_token);
    let token_type = c.auth_token.split(',').next().unwrap_or("");
    if !matches!(token_type, "simple" | "jwt") {
        return invalid(format!(
            "--auth-token: unknown token type {token_type:?} (valid values: simple, jwt,...)"
        ));
    }
    set(&mut c.bcrypt_cost, raw.bcrypt_cost);
    if !(4..=31).contains(&c.bcrypt_cost) {
        return invalid(format!(
            "--bcrypt-cost must be between 4 and 31 (set to {})",
            c.bcrypt_cost
        ));
    }
    if let Some(ttl) = raw.auth_token_ttl {
        c.auth_token_ttl = Duration::from_secs(ttl);
    }

    c.client_tls = tls_from(
        raw.client_transport_security.as_ref(),
        TlsConfig {
            cert_file: raw.cert_file,
            key_file: raw.key_file,
            trusted_ca_file: raw.trusted_ca_file,
            client_cert_auth: raw.client_cert_auth.is_some_and(|b| b.0),
            client_cert_file: raw.client_cert_file,
            client_key_file: raw.client_key_file,
            crl_file: raw.client_crl_file,
        },
    );
    c.peer_tls = tls_from(
        raw.peer_transport_security.as_ref(),
        TlsConfig {
            cert_file: raw.peer_cert_file,
            key_file: raw.peer_key_file,
            trusted_ca_file: raw.peer_trusted_ca_file,
            client_cert_auth: raw.peer_client_cert_auth.is_some_and(|b| b.0),
            client_cert_file: raw.peer_client_cert_file,
            client_key_file: raw.peer_client_key_file,
            crl_file: raw.peer_crl_file,
        },
    );
    check_tls(&c, &mut warnings)?;

    check_not_a_file(&c.data_dir, "data dir")?;
    if let Some(wal) = &c.wal_dir {
        check_not_a_file(wal, "wal dir")?;
    }
    cluster::check(&c)?;

    c.config_file = file;
    c.warnings = warnings;
    Ok(c)
}

fn invalid<T>(message: String) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(message))
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn set_bool(slot: &mut bool, value: Option<Bool>) {
    if let Some(v) = value {
        *slot = v.0;
    }
}

fn set_duration(slot: &mut Duration, value: Option<GoDuration>) {
    if let Some(v) = value {
        *slot = v.0;
    }
}

fn set_urls(slot: &mut Vec<Url>, value: Option<UrlList>) {
    if let Some(v) = value {
        *slot = v.0;
    }
}

fn non_empty_path(p: Option<PathBuf>) -> Option<PathBuf> {
    p.filter(|p| !p.as_os_str().is_empty())
}

/// Options ferrocd cannot honour: refused with the reason rather than silently ignored,
/// since running without them would not do what the operator asked.
fn refuse_unsupported(raw: &RawConfig) -> Result<(), ConfigError> {
    let unsupported = |m: String| Err(ConfigError::Unsupported(m));
    for (flag, value) in [
        ("discovery", &raw.discovery),
        ("discovery-srv", &raw.discovery_srv),
        ("discovery-srv-name", &raw.discovery_srv_name),
        ("discovery-proxy", &raw.discovery_proxy),
    ] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            return unsupported(format!(
                "--{flag} is set, but discovery is not supported by ferrocd: list every member \
                 with --initial-cluster (and --initial-cluster-state) instead"
            ));
        }
    }
    if raw.enable_v2.is_some_and(|b| b.0) {
        return unsupported(
            "--enable-v2=true is not supported: ferrocd serves only the etcd v3 API".into(),
        );
    }
    if raw
        .experimental_enable_v2v3
        .as_deref()
        .is_some_and(|v| !v.is_empty())
    {
        return unsupported(
            "--experimental-enable-v2v3 is not supported: ferrocd serves only the etcd v3 API"
                .into(),
        );
    }
    if let Some(proxy) = raw
        .proxy
        .as_deref()
        .filter(|p| !p.is_empty() && *p != "off")
    {
        return unsupported(format!(
            "--proxy={proxy} is not supported: ferrocd has no v2 proxy mode (only 'off' is accepted)"
        ));
    }
    let yaml_auto =
        |s: &Option<SecurityYaml>| s.as_ref().and_then(|s| s.auto_tls).is_some_and(|b| b.0);
    for (flag, on) in [
        (
            "auto-tls",
            raw.auto_tls.is_some_and(|b| b.0) || yaml_auto(&raw.client_transport_security),
        ),
        (
            "peer-auto-tls",
            raw.peer_auto_tls.is_some_and(|b| b.0) || yaml_auto(&raw.peer_transport_security),
        ),
    ] {
        if on {
            return unsupported(format!(
                "--{flag}=true is not supported by ferrocd: it cannot generate self-signed \
                 certificates (and does not serve TLS yet); remove the flag and use http:// URLs"
            ));
        }
    }
    Ok(())
}

/// Warnings for options that are accepted so manifests keep working but change nothing.
/// `--logger` and `--metrics` are still checked against etcd's values.
fn note_accepted(
    raw: &RawConfig,
    explicit: &Explicit,
    from_file: bool,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let option = |name: &str| {
        if from_file {
            format!("config file key {name:?}")
        } else {
            format!("--{name}")
        }
    };
    let mut no_effect = |name: &str, why: &str| {
        if explicit.contains(name) {
            warnings.push(format!(
                "{} is accepted for etcd compatibility but has no effect in ferrocd yet{why}",
                option(name)
            ));
        }
    };
    for name in ACCEPTED_NO_EFFECT {
        no_effect(name, "");
    }
    no_effect("logger", " (ferrocd logs through tracing)");
    no_effect("metrics", " (the basic metric set is always served)");
    no_effect("log-outputs", " (logs go to stderr)");
    no_effect(
        "experimental-enable-lease-checkpoint",
        " (ferrocd always checkpoints remaining lease TTLs)",
    );
    no_effect(
        "experimental-enable-lease-checkpoint-persist",
        " (ferrocd always persists lease checkpoints)",
    );
    if raw.enable_pprof.is_some_and(|b| b.0) {
        warnings.push(format!(
            "{} is accepted but ignored: ferrocd has no /debug/pprof endpoint",
            option("enable-pprof")
        ));
    }
    match raw.logger.as_deref() {
        None | Some("") | Some("zap") => {}
        Some("capnslog") => return invalid("--logger=capnslog is removed in v3.5".into()),
        Some(other) => return invalid(format!("unknown logger option {other:?} (only 'zap')")),
    }
    match raw.metrics.as_deref() {
        None | Some("") | Some("basic") | Some("extensive") => {}
        Some(other) => {
            return invalid(format!(
                "--metrics: unknown value {other:?} (valid values: basic, extensive)"
            ))
        }
    }
    Ok(())
}

/// etcd's URL rules: listen URLs must bind (IP or localhost), lists must not be empty, and
/// with flags, setting --listen-client-urls requires --advertise-client-urls.
fn check_urls(c: &Config, explicit: &Explicit, from_file: bool) -> Result<(), ConfigError> {
    for (flag, urls) in [
        ("listen-peer-urls", &c.listen_peer_urls),
        ("listen-client-urls", &c.listen_client_urls),
        (
            "initial-advertise-peer-urls",
            &c.initial_advertise_peer_urls,
        ),
    ] {
        if urls.is_empty() {
            return invalid(format!("--{flag} must not be empty"));
        }
    }
    for (flag, urls) in [
        ("listen-peer-urls", &c.listen_peer_urls),
        ("listen-client-urls", &c.listen_client_urls),
        ("listen-client-http-urls", &c.listen_client_http_urls),
        ("listen-metrics-urls", &c.listen_metrics_urls),
    ] {
        for url in urls {
            bind_addr(url).map_err(|e| ConfigError::Invalid(format!("--{flag}: {e}")))?;
        }
    }
    let listen_set = explicit.contains("listen-client-urls");
    let advertise_set = explicit.contains("advertise-client-urls");
    if (!from_file && listen_set && !advertise_set) || c.advertise_client_urls.is_empty() {
        return invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .into(),
        );
    }
    Ok(())
}

/// etcd's heartbeat/election checks, with etcd's texts.
fn check_timeouts(heartbeat_ms: u64, election_ms: u64) -> Result<(), ConfigError> {
    if heartbeat_ms == 0 {
        return invalid(format!(
            "--heartbeat-interval must be >0 (set to {heartbeat_ms}ms)"
        ));
    }
    if election_ms == 0 {
        return invalid(format!(
            "--election-timeout must be >0 (set to {election_ms}ms)"
        ));
    }
    if heartbeat_ms.saturating_mul(5) > election_ms {
        return invalid(format!(
            "--election-timeout[{election_ms}ms] should be at least as 5 times as \
             --heartbeat-interval[{heartbeat_ms}ms]"
        ));
    }
    if election_ms > MAX_ELECTION_MS {
        return invalid(format!(
            "--election-timeout[{election_ms}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms"
        ));
    }
    Ok(())
}

/// etcd's `parseCompactionRetention`: a bare integer is hours (periodic) or revisions
/// (revision); otherwise a Go duration. Unlike etcd, a duration in revision mode is an
/// error rather than a revision count of nanoseconds.
pub(crate) fn parse_retention(
    mode: AutoCompactionMode,
    text: &str,
) -> Result<Option<CompactionRetention>, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        if n == 0 {
            return Ok(None);
        }
        return Ok(Some(match mode {
            AutoCompactionMode::Revision => CompactionRetention::Revisions(n),
            AutoCompactionMode::Periodic => CompactionRetention::Period(
                n.checked_mul(3600)
                    .map(Duration::from_secs)
                    .ok_or_else(|| {
                        format!("--auto-compaction-retention={text} hours is too long")
                    })?,
            ),
        }));
    }
    match mode {
        AutoCompactionMode::Revision => Err(format!(
            "--auto-compaction-retention={text:?} must be a whole number of revisions when \
             --auto-compaction-mode=revision"
        )),
        AutoCompactionMode::Periodic => {
            let d = parse_go_duration(text)
                .map_err(|e| format!("error parsing CompactionRetention: {e}"))?;
            Ok((!d.is_zero()).then_some(CompactionRetention::Period(d)))
        }
    }
}

/// The file's `*-transport-security` block wins when present (flags are ignored in file
/// mode anyway); otherwise the flags.
fn tls_from(yaml: Option<&SecurityYaml>, flags: TlsConfig) -> TlsConfig {
    let Some(y) = yaml else { return flags };
    let path = |p: &Option<PathBuf>| non_empty_path(p.clone());
    TlsConfig {
        cert_file: path(&y.cert_file),
        key_file: path(&y.key_file),
        trusted_ca_file: path(&y.trusted_ca_file),
        client_cert_auth: y.client_cert_auth.is_some_and(|b| b.0),
        client_cert_file: path(&y.client_cert_file),
        client_key_file: path(&y.client_key_file),
        crl_file: path(&y.crl_file),
    }
}

/// https needs a cert and key (etcd's listener error); with them, TLS is refused until
/// ferrocd serves it. Cert files next to plain http URLs only warn, as in etcd.
fn check_tls(c: &Config, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let client_urls: Vec<(&str, &Url)> = [
        ("listen-client-urls", &c.listen_client_urls),
        ("listen-client-http-urls", &c.listen_client_http_urls),
        ("listen-metrics-urls", &c.listen_metrics_urls),
    ]
    .into_iter()
    .flat_map(|(flag, urls)| urls.iter().map(move |u| (flag, u)))
    .collect();
    let peer_urls: Vec<(&str, &Url)> = c
        .listen_peer_urls
        .iter()
        .map(|u| ("listen-peer-urls", u))
        .collect();
    for (prefix, tls, urls) in [
        ("", &c.client_tls, client_urls),
        ("peer-", &c.peer_tls, peer_urls),
    ] {
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return invalid(format!(
                "--{prefix}cert-file and --{prefix}key-file must be set together"
            ));
        }
        let https = urls.iter().find(|(_, u)| u.scheme() == "https");
        match https {
            Some((_, url)) if tls.is_empty() => {
                return invalid(format!(
                    "cannot listen on TLS for {}: KeyFile and CertFile are not presented \
                     (set --{prefix}cert-file and --{prefix}key-file, or use an http:// URL)",
                    super::url_to_string(url)
                ))
            }
            Some((flag, url)) => {
                return Err(ConfigError::Unsupported(format!(
                    "TLS is not supported yet by ferrocd: --{flag} has {}; use http:// URLs \
                     (and drop --{prefix}cert-file/--{prefix}key-file) for now",
                    super::url_to_string(url)
                )))
            }
            None => {
                if !tls.is_empty() {
                    warnings.push(format!(
                        "scheme is HTTP while key and cert files are present; ignoring \
                         --{prefix}cert-file and --{prefix}key-file"
                    ));
                }
                if tls.client_cert_auth {
                    warnings.push(format!(
                        "scheme is HTTP while --{prefix}client-cert-auth is enabled; ignoring client cert auth"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A data or WAL directory that is a regular file would fail later with a confusing I/O
/// error; say what is wrong now. Only stats the path.
fn check_not_a_file(path: &Path, what: &str) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => invalid(format!(
            "{what} {} is a file, not a directory",
            path.display()
        )),
        _ => Ok(()),
    }
}
