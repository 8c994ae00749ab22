//! Leases expire: neither early nor never.
//!
//! A prober grants a short lease every few seconds on a member (round robin), puts one key
//! with it (`e/<n>`, recorded in the history like any client's put, so the watch check knows
//! the value) and never keeps it alive. It then reads each outstanding probe key
//! (linearizably) until the key is gone. Checked afterwards:
//! - gone before the lease's TTL had passed since the grant was sent: **expired early**;
//! - still there [`MAX_LATE`] after its TTL (or at the end of the run, once the cluster had
//!   been healed for TTL + [`AFTER_HEAL`]): **never expired**. This is how a leader whose lease
//!   clock stopped (issue 21: a member made leader while installing a snapshot) shows up.
//!
//! Faults delay expiry legitimately (no leader, every member down, a new leader's grace), so
//! the lateness bound is generous; a stopped clock is late forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;

use super::cluster::connect;
use super::history::{OpKind, OpResult};
use super::linearizable::Anomaly;
use super::workload::{run_op, Recorder};

/// The probes' TTL in seconds (above the minimum of 1.5 election timeouts).
pub const TTL: i64 = 3;
/// How long past its TTL a probe may live while faults are injected.
pub const MAX_LATE: Duration = Duration::from_secs(25);
/// How long past its TTL a probe may live once the cluster is healed.
pub const AFTER_HEAL: Duration = Duration::from_secs(10);
/// The history's client id of the prober.
pub const PROBER: usize = 3000;

/// One probe lease and what became of it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Its key.
    pub key: String,
    /// The lease id.
    pub lease: i64,
    /// When the grant was sent.
    pub granted: Instant,
    /// When a read first found the key gone.
    pub gone: Option<Instant>,
    /// The key was seen gone before the TTL had passed: (after how long, on which member).
    pub early: Option<(Duration, usize)>,
}

/// Grants a probe every `every` and follows them until `stop` (set once the cluster is healed),
/// then waits (up to TTL + [`AFTER_HEAL`]) for the outstanding ones to go.
pub async fn prober(
    rec: Recorder,
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
    every: Duration,
) -> Vec<Probe> {
    let mut probes: Vec<Probe> = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let m = n % endpoints.len();
        if let Some(p) = grant(&rec, &endpoints[m], m, n).await {
            probes.push(p);
        }
        n += 1;
        follow(&mut probes, &endpoints, n).await;
        tokio::time::sleep(every).await;
    }
    let end = Instant::now() + Duration::from_secs(TTL as u64) + AFTER_HEAL;
    while probes.iter().any(|p| p.gone.is_none()) && Instant::now() < end {
        n += 1;
        follow(&mut probes, &endpoints, n).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    probes
}

/// Grants probe `n` on `endpoint` and puts its key; None if either failed.
async fn grant(rec: &Recorder, endpoint: &str, member: usize, n: usize) -> Option<Probe> {
    let mut cl = connect(endpoint).await?;
    let granted = Instant::now();
    let lease = tokio::time::timeout(Duration::from_secs(5), cl.lease_grant(TTL, None))
        .await
        .ok()?
        .ok()?
        .id();
    let key = format!("e/{n}");
    let put = OpKind::Put {
        key: key.clone(),
        value: format!("probe.{n}"),
        lease,
    };
    match run_op(rec, PROBER, member, &mut cl, put).await {
        Some(OpResult::Put { .. }) => Some(Probe {
            key,
            lease,
            granted,
            gone: None,
            early: None,
        }),
        _ => None,
    }
}

/// Reads every outstanding probe key once (on a member chosen by `turn`) and notes the gone.
async fn follow(probes: &mut [Probe], endpoints: &[String], turn: usize) {
    let m = turn % endpoints.len();
    let Some(mut cl) = connect(&endpoints[m]).await else {
        return;
    };
    for p in probes.iter_mut().filter(|p| p.gone.is_none()) {
        let read = tokio::time::timeout(
            Duration::from_secs(3),
            cl.get(p.key.as_str(), Some(GetOptions::new())),
        )
        .await;
        let Ok(Ok(r)) = read else {
            return; // this member cannot answer now; try again later
        };
        if r.kvs().is_empty() {
            let now = Instant::now();
            let lived = now.duration_since(p.granted);
            if lived < Duration::from_secs(TTL as u64) {
                p.early = Some((lived, m));
            }
            p.gone = Some(now);
        }
    }
}

/// The anomalies among `probes`, judged at `end` (when the prober stopped following them).
pub fn check(probes: &[Probe], end: Instant) -> Vec<Anomaly> {
    let ttl = Duration::from_secs(TTL as u64);
    let mut out = Vec::new();
    for p in probes {
        if let Some((lived, m)) = p.early {
            out.push(Anomaly {
                kind: "lease expired early",
                detail: format!(
                    "{} (lease {:x}, TTL {TTL} s) was gone after {lived:?}, read on m{}",
                    p.key,
                    p.lease,
                    m + 1
                ),
            });
        }
        let lived = p.gone.unwrap_or(end).duration_since(p.granted);
        if lived > ttl + MAX_LATE || (p.gone.is_none() && lived > ttl + AFTER_HEAL) {
            out.push(Anomaly {
                kind: "lease never expired",
                detail: format!(
                    "{} (lease {:x}, TTL {TTL} s) {} {lived:?} after its grant",
                    p.key,
                    p.lease,
                    if p.gone.is_some() {
                        "went only"
                    } else {
                        "was still there"
                    }
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(granted: Instant, gone_after: Option<Duration>) -> Probe {
        Probe {
            key: "e/1".into(),
            lease: 0x1f,
            granted,
            gone: gone_after.map(|d| granted + d),
            early: None,
        }
    }

    #[test]
    fn judges_early_late_and_never() {
        let t = Instant::now();
        let end = t + Duration::from_secs(60);
        let secs = Duration::from_secs;
        // On time, and late within the bound while faults delay it.
        assert!(check(&[probe(t, Some(secs(3)))], end).is_empty());
        assert!(check(&[probe(t, Some(secs(20)))], end).is_empty());
        // Much too late, or never.
        let kinds = |ps: &[Probe]| -> Vec<&str> { check(ps, end).iter().map(|a| a.kind).collect() };
        assert_eq!(kinds(&[probe(t, Some(secs(40)))]), ["lease never expired"]);
        assert_eq!(kinds(&[probe(t, None)]), ["lease never expired"]);
        // Still there at the end but young enough: not judged yet.
        assert!(check(&[probe(end - secs(5), None)], end).is_empty());
        // Early.
        let mut p = probe(t, Some(Duration::from_millis(1500)));
        p.early = Some((Duration::from_millis(1500), 0));
        assert_eq!(kinds(&[p]), ["lease expired early"]);
    }
}
