//! Fault injection with a linearizability checker: a 3-member cluster under SIGKILL/restart
//! (one member or all at once),
//! SIGSTOP/SIGCONT, partitions (leader isolated, minority split, one-way loss), leader transfer,
//! member remove-and-re-add, and a follower kept down until it needs the leader's snapshot, made
//! leader while it installs it and restarted (snapshots are sent often: `--snapshot-count 200`),
//! while clients on every member record a history, watchers on every member record every event
//! and a prober grants short leases; then the history, the watches, the leases' expiry and the
//! members' HashKV are checked (see `chaos/linearizable.rs`, `chaos/watch_check.rs`,
//! `chaos/lease_check.rs`).
//!
//! Short mode (the default, in CI): a few seeds, about 20 s of faults each.
//! Long mode, for soak runs:
//!
//! ```text
//! FERROCD_CHAOS_DURATION=300 FERROCD_CHAOS_SEEDS=7,8,9 cargo test --test chaos chaos_short_mode -- --nocapture
//! ```
//!
//! `FERROCD_CHAOS_DURATION` is the seconds of faults per seed, `FERROCD_CHAOS_SEEDS` the seeds,
//! `FERROCD_CHAOS_MEMBERS` the cluster size (3, or 5 for two-member minorities).
//! Every run prints its seed and report; rerun a failing seed with `FERROCD_CHAOS_SEEDS=<seed>`.
//! (Which member a fault hits depends on who leads at that moment, so a replay follows the same
//! choices but not necessarily the same timing.) When something is found, the history and the
//! members' logs are saved under the target dir (the report says where).
//!
//! The fault switch exists only in debug builds (`FERROCD_FAULT_INJECTION=1`, see
//! `src/fault.rs`); under `--release` these tests say so and pass without running.

mod common;

mod chaos {
    pub mod cluster;
    pub mod faults;
    pub mod history;
    pub mod lease_check;
    pub mod linearizable;
    pub mod report;
    pub mod watch_check;
    pub mod workload;
}

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos::cluster::Chaos;
use chaos::faults::{self, Fault, Schedule};
use chaos::linearizable::{self, Anomaly};
use chaos::report::Report;
use chaos::{lease_check, watch_check, workload};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Members in the cluster (`FERROCD_CHAOS_MEMBERS`, default 3).
fn members() -> usize {
    std::env::var("FERROCD_CHAOS_MEMBERS")
        .ok()
        .map(|s| s.parse().expect("FERROCD_CHAOS_MEMBERS: a number"))
        .unwrap_or(3)
}
/// Clients per member.
const CLIENTS_PER_MEMBER: usize = 2;
/// Pause between one client's operations (keeps a 2-core machine responsive).
const PACE: Duration = Duration::from_millis(10);

fn seeds() -> Vec<u64> {
    match std::env::var("FERROCD_CHAOS_SEEDS") {
        Ok(s) if !s.trim().is_empty() => s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .expect("FERROCD_CHAOS_SEEDS: numbers, comma-separated")
            })
            .collect(),
        _ => vec![1, 2, 3],
    }
}

fn duration() -> Duration {
    let secs = std::env::var("FERROCD_CHAOS_DURATION")
        .ok()
        .map(|s| s.parse().expect("FERROCD_CHAOS_DURATION: seconds"))
        .unwrap_or(20);
    Duration::from_secs(secs)
}

/// One run: start a cluster, run the workload under `schedule`, heal, check everything.
async fn run(schedule: Schedule, plant_bug: Option<&str>) -> Option<Report> {
    let started = Instant::now();
    let (seed, fault_time) = match &schedule {
        Schedule::Random { seed, duration } => (Some(*seed), *duration),
        Schedule::Fixed(steps) => (None, steps.iter().map(|s| s.1).sum()),
    };
    let mut report = Report {
        seed,
        planted: plant_bug.map(String::from),
        ..Default::default()
    };
    eprintln!("chaos: starting run seed={seed:?} planted={plant_bug:?} faults for {fault_time:?}");
    let n = members();
    let mut ch = Chaos::start(n, plant_bug).await;
    if !ch.has_fault_switch() {
        eprintln!("chaos: this ferrocd has no fault switch (a release build?); skipping");
        return None;
    }
    let endpoints = ch.c.endpoints();
    let t0 = Instant::now();
    let rec = workload::Recorder::new(t0);
    let stop_clients = Arc::new(AtomicBool::new(false));
    let stop_watchers = Arc::new(AtomicBool::new(false));
    let until = Arc::new(AtomicI64::new(i64::MAX));
    let mut watchers = Vec::new();
    for (m, ep) in endpoints.iter().enumerate() {
        watchers.push(tokio::spawn(workload::watcher(
            m,
            ep.clone(),
            stop_watchers.clone(),
            until.clone(),
            Duration::from_secs(60),
        )));
    }
    let lease_ttl = fault_time.as_secs() as i64 + 600;
    let mut clients = Vec::new();
    for c in 0..n * CLIENTS_PER_MEMBER {
        let m = c % n;
        clients.push(tokio::spawn(workload::client(
            rec.clone(),
            seed.unwrap_or(0),
            c,
            m,
            endpoints[m].clone(),
            stop_clients.clone(),
            lease_ttl,
            PACE,
        )));
    }
    let prober = tokio::spawn(lease_check::prober(
        rec.clone(),
        endpoints.clone(),
        stop_clients.clone(),
        Duration::from_secs(2),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let flog = faults::run(&mut ch, schedule, t0).await;
    report.faults = flog.counts;
    report.fault_lines = flog.lines;
    report.cluster_errors = flog.errors;
    // Healed: everything runs again; let the clients see a healthy cluster for a moment.
    ch.heal();
    report.cluster_errors.extend(ch.ensure_all_running());
    if ch.wait_leader(Duration::from_secs(60)).await.is_none() {
        report
            .cluster_errors
            .push("no leader within 60 s after healing".into());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_clients.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let probes = prober.await.expect("lease prober");
    report.lease_probes = probes.len();
    report
        .anomalies
        .extend(lease_check::check(&probes, Instant::now()));
    // Converge, read everything everywhere, and let the watchers catch up to the end.
    let mut final_rev = match ch.converge(Duration::from_secs(60)).await {
        Ok(r) => r,
        Err(e) => {
            report.cluster_errors.push(e);
            0
        }
    };
    workload::final_reads(&rec, &endpoints).await;
    for ep in &endpoints {
        if let Some(r) = workload::revision(ep).await {
            final_rev = final_rev.max(r);
        }
    }
    report.final_revision = final_rev;
    until.store(final_rev, Ordering::Relaxed);
    stop_watchers.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for w in watchers {
        logs.push(w.await.expect("watcher task"));
    }
    // HashKV everywhere at the final revision.
    let hashes = ch.hash_kvs(final_rev).await;
    if hashes.iter().any(|h| h.is_err() || *h != hashes[0]) {
        report.anomalies.push(Anomaly {
            kind: "members diverged (HashKV)",
            detail: format!("at revision {final_rev}: {hashes:?}"),
        });
    }
    // Check.
    let history = rec.history();
    report.count_ops(&history);
    let wv = watch_check::check(&logs, &history, final_rev);
    report.watch_events = wv.events;
    report.watch_reconnects = wv.reconnects;
    let lv = linearizable::check(&history, wv.written.as_ref());
    report.keys = lv.keys;
    report.steps = lv.steps;
    report.inconclusive = lv.inconclusive;
    report.anomalies.extend(wv.anomalies);
    report.anomalies.extend(lv.anomalies);
    report.elapsed = started.elapsed();
    if !report.anomalies.is_empty() || !report.cluster_errors.is_empty() {
        report.saved = Some(save(&report, &history, &logs, &ch));
    }
    eprintln!("{report}");
    Some(report)
}

/// Saves the history, the watch logs and the members' logs for a failed run.
fn save(
    report: &Report,
    history: &[chaos::history::Op],
    logs: &[chaos::history::WatchLog],
    ch: &Chaos,
) -> String {
    let name = match (report.seed, &report.planted) {
        (_, Some(p)) => format!("chaos-planted-{p}"),
        (Some(s), None) => format!("chaos-seed-{s}"),
        (None, None) => "chaos-fixed".into(),
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    let text: String = history.iter().map(|o| format!("{o}\n")).collect();
    let _ = std::fs::write(dir.join("history.txt"), text);
    let _ = std::fs::write(dir.join("watch.txt"), format!("{logs:#?}"));
    let _ = std::fs::write(dir.join("report.txt"), report.to_string());
    for m in &ch.c.members {
        let _ = std::fs::copy(&m.log_path, dir.join(format!("{}.log", m.name)));
    }
    dir.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_short_mode_finds_no_anomalies() {
    let _g = SERIAL.lock().await;
    let mut total_ops = 0;
    let mut faults = std::collections::BTreeMap::<String, usize>::new();
    let mut anomalies = 0;
    let mut failed = Vec::new();
    let seeds = seeds();
    for &seed in &seeds {
        let Some(r) = run(
            Schedule::Random {
                seed,
                duration: duration(),
            },
            None,
        )
        .await
        else {
            return;
        };
        total_ops += r.total_ops();
        for (k, n) in &r.faults {
            *faults.entry(k.clone()).or_default() += n;
        }
        anomalies += r.anomalies.len();
        if !r.anomalies.is_empty() || !r.cluster_errors.is_empty() {
            failed.push((seed, r.anomalies.len(), r.cluster_errors.len()));
        }
    }
    eprintln!(
        "chaos: seeds {seeds:?}: {total_ops} operations, {} faults {faults:?}, {anomalies} anomalies; failed seeds (seed, anomalies, cluster errors): {failed:?}",
        faults.values().sum::<usize>()
    );
    assert!(
        failed.is_empty(),
        "anomalies found (see the reports above): {failed:?}"
    );
}

/// The harness finds a planted bug: linearizable reads served locally without the ReadIndex
/// barrier, with the leader cut off from the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_finds_planted_stale_reads() {
    let _g = SERIAL.lock().await;
    let schedule = Schedule::Fixed(vec![
        (Fault::IsolateLeader, Duration::from_secs(5)),
        (Fault::IsolateLeader, Duration::from_secs(5)),
    ]);
    let Some(r) = run(schedule, Some("stale-reads")).await else {
        return;
    };
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.kind == "not linearizable"
                || a.kind == "revision order contradicts real time"),
        "the planted stale reads went unnoticed:\n{r}"
    );
}

/// The lease check finds a leader whose lease clock has stopped (planted: expired leases are
/// never revoked), the symptom of issue 21's member made leader mid-install.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_finds_planted_stuck_lease_clock() {
    let _g = SERIAL.lock().await;
    let schedule = Schedule::Fixed(vec![
        (Fault::KillFollower, Duration::from_secs(2)),
        (Fault::MoveLeader, Duration::from_secs(2)),
    ]);
    let Some(r) = run(schedule, Some("stuck-lease-clock")).await else {
        return;
    };
    assert!(
        r.anomalies.iter().any(|a| a.kind == "lease never expired"),
        "the stopped lease clock went unnoticed:\n{r}"
    );
    assert!(
        r.anomalies.iter().all(|a| a.kind == "lease never expired"),
        "only the planted bug is found:\n{r}"
    );
}

/// A member that joined through the leader's snapshot (removed, wiped, added back) must survive
/// a restart. Found by seed 7 (`FERROCD_CHAOS_SEEDS=7 FERROCD_CHAOS_DURATION=40`): the snapshot
/// carried the leader's `member_id` in the Meta bucket and `snap::install` copied it over the
/// joiner's, so the joiner's next start failed with "WAL belongs to member X but the backend to
/// member Y; the data dir mixes two members". Fixed: install keeps the local member id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_readded_member_survives_restart() {
    let _g = SERIAL.lock().await;
    let schedule = Schedule::Fixed(vec![
        (Fault::RemoveReAdd, Duration::from_secs(0)),
        (Fault::KillAll, Duration::from_secs(1)),
    ]);
    let Some(r) = run(schedule, None).await else {
        return;
    };
    assert!(
        r.anomalies.is_empty() && r.cluster_errors.is_empty(),
        "a re-added member did not survive a restart:\n{r}"
    );
}
