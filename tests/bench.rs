//! `ferrocd-bench` end to end: each subcommand runs briefly against one real ferrocd member and
//! its JSON report must count exactly the requests asked for, with no errors. Never a timed
//! assertion. The full comparison with etcd (`scripts/bench-vs-etcd.sh --quick`) runs only with
//! `FERROCD_BENCH_E2E=1`, since it needs etcd installed and takes minutes.

mod common;

use std::process::{Command, Output};

use common::Member;
use serde_json::Value;

fn bench_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferrocd-bench")
}

/// Runs ferrocd-bench against `endpoint` with `args`.
fn bench(endpoint: &str, args: &[&str]) -> Output {
    Command::new(bench_bin())
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("run ferrocd-bench")
}

/// Runs ferrocd-bench with `--json` and returns its reports (one JSON object per line).
fn bench_json(endpoint: &str, args: &[&str]) -> Vec<Value> {
    let out = bench(endpoint, &[&["--json"], args].concat());
    assert!(
        out.status.success(),
        "ferrocd-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect()
}

/// The one report of a single-report workload, checked for `requests` and zero errors.
fn single(endpoint: &str, args: &[&str], requests: u64) -> Value {
    let mut reports = bench_json(endpoint, args);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = reports.remove(0);
    assert_clean(&r, requests);
    r
}

fn assert_clean(r: &Value, requests: u64) {
    assert_eq!(r["errors"], serde_json::json!({}), "errors in {r}");
    assert_eq!(r["error_count"], 0, "{r}");
    assert_eq!(r["requests"], requests, "{r}");
    let hist: u64 = r["histogram"]
        .as_array()
        .expect("histogram")
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        hist, requests,
        "histogram buckets must count every request: {r}"
    );
    let p = &r["percentiles"];
    assert!(
        p["p10"].as_f64() <= p["p50"].as_f64() && p["p50"].as_f64() <= p["p99.9"].as_f64(),
        "percentiles out of order: {p}"
    );
}

#[test]
fn put_range_and_txn_put_count_every_request() {
    let m = Member::start(&[]);
    let ep = m.endpoint();

    let r = single(
        &ep,
        &[
            "--conns",
            "2",
            "--clients",
            "4",
            "put",
            "--total",
            "50",
            "--sequential-keys",
            "--key-space-size",
            "10",
            "--val-size",
            "16",
        ],
        50,
    );
    assert_eq!(r["name"], "put");
    // 10 distinct keys were written (sequential keys modulo the key space).
    let keys = common::ok(m.etcdctl(&["get", "", "--from-key", "--keys-only", "-w", "json"]));
    let keys: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys["count"], 10, "{keys}");

    single(
        &ep,
        &["--target-leader", "put", "--total", "20", "--rate", "500"],
        20,
    );

    common::ok(m.etcdctl(&["put", "bench-key", "v"]));
    for consistency in ["l", "s"] {
        let r = single(
            &ep,
            &[
                "--clients",
                "3",
                "range",
                "bench-key",
                "--consistency",
                consistency,
                "--total",
                "30",
            ],
            30,
        );
        assert_eq!(r["name"], "range");
    }

    let before: Value =
        serde_json::from_str(&common::ok(m.etcdctl(&["get", "bench-key", "-w", "json"]))).unwrap();
    single(
        &ep,
        &[
            "--clients",
            "2",
            "txn-put",
            "--total",
            "20",
            "--txn-ops",
            "3",
            "--key-space-size",
            "1000",
        ],
        20,
    );
    let after: Value =
        serde_json::from_str(&common::ok(m.etcdctl(&["get", "bench-key", "-w", "json"]))).unwrap();
    // Each transaction of puts is one revision.
    assert_eq!(
        after["header"]["revision"].as_i64().unwrap()
            - before["header"]["revision"].as_i64().unwrap(),
        20
    );
}

#[test]
fn watch_reports_creation_and_every_event() {
    let m = Member::start(&[]);
    // 2 streams x 3 watchers on 2 distinct keys (3 watchers each); 10 puts, 5 to each key.
    let reports = bench_json(
        &m.endpoint(),
        &[
            "--conns",
            "2",
            "--clients",
            "2",
            "watch",
            "--streams",
            "2",
            "--watch-per-stream",
            "3",
            "--watched-key-total",
            "2",
            "--sequential-keys",
            "--key-space-size",
            "100",
            "--put-total",
            "10",
        ],
    );
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert_eq!(reports[0]["name"], "watch creation");
    assert_clean(&reports[0], 6);
    assert_eq!(reports[1]["name"], "watch puts");
    assert_clean(&reports[1], 10);
    assert_eq!(reports[2]["events_expected"], 30);
    assert_eq!(reports[2]["events_received"], 30);
    assert_clean(&reports[2], 30);
}

#[test]
fn watch_latency_receives_every_event() {
    let m = Member::start(&[]);
    let r = single(
        &m.endpoint(),
        &[
            "--conns",
            "2",
            "watch-latency",
            "--watchers",
            "20",
            "--streams",
            "4",
            "--puts",
            "5",
            "--rate",
            "50",
        ],
        100,
    );
    assert_eq!(r["events_expected"], 100);
    assert_eq!(r["events_received"], 100);
    assert!(r["latency_ms"]["p50"].is_f64(), "{r}");
}

#[test]
fn lease_grant_revoke_counts_every_pair_and_leaves_no_lease() {
    let m = Member::start(&[]);
    let r = single(
        &m.endpoint(),
        &["--clients", "4", "lease-grant-revoke", "--total", "30"],
        30,
    );
    assert_eq!(r["name"], "lease-grant-revoke");
    let leases = common::ok(m.etcdctl(&["lease", "list"]));
    assert!(leases.starts_with("found 0 leases"), "{leases}");
}

#[test]
fn lease_keepalive_counts_every_renewal() {
    let m = Member::start(&[]);
    let r = single(
        &m.endpoint(),
        &[
            "--conns",
            "2",
            "--clients",
            "4",
            "lease-keepalive",
            "--total",
            "40",
            "--ttl",
            "60",
        ],
        40,
    );
    assert_eq!(r["name"], "lease-keepalive");
    // The leases were revoked at the end of the run.
    let leases = common::ok(m.etcdctl(&["lease", "list"]));
    assert!(leases.starts_with("found 0 leases"), "{leases}");
}

#[test]
fn fsync_writes_count_times() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let r = single("127.0.0.1:1", &["fsync", "--dir", dir, "--count", "10"], 10);
    assert_eq!(r["bytes_written"], 23000);
}

#[test]
fn text_report_has_etcd_benchmark_sections() {
    let m = Member::start(&[]);
    let out = bench(&m.endpoint(), &["put", "--total", "10"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for section in [
        "Summary (put):",
        "Requests/sec:",
        "Response time histogram:",
        "Latency distribution:",
        "99.9% in",
    ] {
        assert!(text.contains(section), "missing {section:?} in\n{text}");
    }
    // stderr is not a terminal here: no progress bar.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unreachable_endpoint_is_a_clear_error() {
    let port = common::free_port();
    let out = bench(
        &format!("127.0.0.1:{port}"),
        &[
            "--dial-timeout",
            "1",
            "--target-leader",
            "put",
            "--total",
            "1",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to 127.0.0.1"), "{err}");
}

/// `scripts/bench-vs-etcd.sh --quick` end to end (needs etcd; minutes). Checks that it ran and
/// printed its table, never the numbers.
#[test]
fn comparison_script_quick_mode() {
    if std::env::var("FERROCD_BENCH_E2E").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set FERROCD_BENCH_E2E=1 to run scripts/bench-vs-etcd.sh --quick \
             (needs etcd-server, takes a few minutes)"
        );
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-vs-etcd.sh");
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(script)
        .arg("--quick")
        .output()
        .expect("run the comparison script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{stderr}\n{stdout}\n(took {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "the script failed");
    for needle in [
        "workload",
        "put-seq-1client",
        "range-l-1000clients",
        "watch-latency",
        "lease-keepalive-100clients",
        "lease-grant-revoke-100clients",
        "RSS",
        "fsync floor",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in the table");
    }
}
