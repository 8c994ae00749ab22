//! The run report: operations, faults injected, anomalies found.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::history::{Op, OpKind, OpResult};
use super::linearizable::Anomaly;

/// One run's numbers and findings.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed (None for a fixed schedule).
    pub seed: Option<u64>,
    /// What was planted, if anything.
    pub planted: Option<String>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Operations by kind: (total, known outcome).
    pub ops: BTreeMap<&'static str, (usize, usize)>,
    /// Unknown outcomes by error text.
    pub unknown: BTreeMap<String, usize>,
    /// Faults by kind.
    pub faults: BTreeMap<String, usize>,
    /// The fault timeline.
    pub fault_lines: Vec<String>,
    /// Watch events received, and stream re-creations.
    pub watch_events: usize,
    /// Watch stream re-creations.
    pub watch_reconnects: usize,
    /// Short leases granted by the lease prober (each checked to expire on time).
    pub lease_probes: usize,
    /// The revision all members converged to.
    pub final_revision: i64,
    /// Keys checked for linearizability, search nodes.
    pub keys: usize,
    /// Search nodes visited.
    pub steps: u64,
    /// Keys the search could not decide within its budget.
    pub inconclusive: Vec<String>,
    /// Everything wrong with the history, the watches or the cluster's state.
    pub anomalies: Vec<Anomaly>,
    /// The cluster failing to recover (a member that did not come back, no convergence).
    pub cluster_errors: Vec<String>,
    /// Where the history was written when something was found.
    pub saved: Option<String>,
}

impl Report {
    /// Counts the history's operations.
    pub fn count_ops(&mut self, history: &[Op]) {
        for op in history {
            let kind = match (&op.kind, op.client >= 1000) {
                (_, true) if op.client == super::lease_check::PROBER => "lease probe put",
                (_, true) => "final read",
                (OpKind::Get { .. }, _) => "get",
                (OpKind::Put { lease, .. }, _) if *lease != 0 => "put with lease",
                (OpKind::Put { .. }, _) => "put",
                (OpKind::Delete { .. }, _) => "delete",
                (OpKind::Txn { compares, .. }, _) if compares.len() > 1 => "multi-key txn",
                (OpKind::Txn { .. }, _) => "cas",
                (OpKind::Revoke { .. }, _) => "lease revoke",
            };
            let e = self.ops.entry(kind).or_default();
            e.0 += 1;
            if op.known() {
                e.1 += 1;
            } else {
                let mut why = op.error.clone();
                why.truncate(90);
                *self.unknown.entry(why).or_default() += 1;
            }
            if matches!(
                op.result,
                Some(OpResult::Txn {
                    succeeded: true,
                    ..
                })
            ) && matches!(op.kind, OpKind::Txn { .. })
            {
                let e = self.ops.entry("  (txn succeeded)").or_default();
                e.0 += 1;
                e.1 += 1;
            }
        }
    }

    /// Total operations.
    pub fn total_ops(&self) -> usize {
        self.ops
            .iter()
            .filter(|(k, _)| !k.starts_with(' '))
            .map(|(_, v)| v.0)
            .sum()
    }

    /// Total faults.
    pub fn total_faults(&self) -> usize {
        self.faults.values().sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "==== chaos report ====")?;
        match self.seed {
            Some(s) => writeln!(
                f,
                "seed {s} (replay: FERROCD_CHAOS_SEEDS={s} cargo test --test chaos chaos_short_mode)"
            )?,
            None => writeln!(f, "fixed schedule")?,
        }
        if let Some(p) = &self.planted {
            writeln!(f, "PLANTED BUG: {p}")?;
        }
        writeln!(f, "took {:.1}s", self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "operations: {} (kind: total / known outcome)",
            self.total_ops()
        )?;
        for (k, (n, known)) in &self.ops {
            writeln!(f, "  {k:<18} {n:>6} / {known}")?;
        }
        writeln!(f, "unknown outcomes by error:")?;
        for (k, n) in &self.unknown {
            writeln!(f, "  {n:>6} {k}")?;
        }
        writeln!(f, "faults injected: {}", self.total_faults())?;
        for (k, n) in &self.faults {
            writeln!(f, "  {k:<18} {n:>6}")?;
        }
        for l in &self.fault_lines {
            writeln!(f, "    {l}")?;
        }
        writeln!(
            f,
            "watch: {} events, {} stream re-creations; final revision {}",
            self.watch_events, self.watch_reconnects, self.final_revision
        )?;
        writeln!(
            f,
            "leases: {} probes of TTL {} s checked to expire",
            self.lease_probes,
            super::lease_check::TTL
        )?;
        writeln!(
            f,
            "linearizability: {} keys, {} search nodes, {} inconclusive {:?}",
            self.keys,
            self.steps,
            self.inconclusive.len(),
            self.inconclusive
        )?;
        for e in &self.cluster_errors {
            writeln!(f, "CLUSTER ERROR: {e}")?;
        }
        writeln!(f, "anomalies: {}", self.anomalies.len())?;
        for a in self.anomalies.iter().take(30) {
            writeln!(f, "  [{}] {}", a.kind, a.detail)?;
        }
        if self.anomalies.len() > 30 {
            writeln!(f, "  ... and {} more", self.anomalies.len() - 30)?;
        }
        if let Some(s) = &self.saved {
            writeln!(f, "history and member logs saved in {s}")?;
        }
        Ok(())
    }
}
