//! Auto compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), as etcd's
//! `v3compactor` does it, run by the leader only (its compactions go through raft, so every
//! member compacts at the same revision):
//! - periodic: the revision that was current one retention period ago is sampled every
//!   tenth of the period (the period capped at an hour), and compacted to every period (capped
//!   at an hour);
//! - revision: every five minutes, compact to `current - retention`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::EtcdServer;
use crate::config::CompactionRetention;
use crate::error::EtcdError;
use crate::proto::etcdserverpb::CompactionRequest;

/// etcd's revision-mode interval.
const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// etcd caps the periodic compaction interval at an hour.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Periodic mode's bookkeeping: revisions sampled over the last period.
struct Periodic {
    period: Duration,
    samples: VecDeque<(Instant, i64)>,
    last_success: Instant,
    /// The first compaction waits a full period; later ones every capped interval.
    interval: Duration,
}

impl Periodic {
    fn new(period: Duration, now: Instant) -> Periodic {
        Periodic {
            period,
            samples: VecDeque::new(),
            last_success: now,
            interval: period,
        }
    }

    fn tick_interval(&self) -> Duration {
        (self.period.min(MAX_INTERVAL) / 10).max(Duration::from_millis(10))
    }

    /// Records the current revision; returns the revision to compact to, if one is due: the
    /// newest sample at least a period old.
    fn sample(&mut self, now: Instant, rev: i64) -> Option<i64> {
        self.samples.push_back((now, rev));
        let cutoff = now.checked_sub(self.period)?;
        while self.samples.len() > 1 && self.samples[1].0 <= cutoff {
            self.samples.pop_front();
        }
        if now.duration_since(self.last_success) < self.interval {
            return None;
        }
        let (at, rev) = *self.samples.front()?;
        (at <= cutoff).then_some(rev)
    }

    fn compacted(&mut self, now: Instant) {
        self.last_success = now;
        self.interval = self.period.min(MAX_INTERVAL);
    }
}

impl EtcdServer {
    /// Starts the auto compactor for `retention` (nothing when `None`: auto compaction off).
    pub(super) fn spawn_auto_compactor(self: &Arc<Self>, retention: Option<CompactionRetention>) {
        let Some(retention) = retention else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            match retention {
                CompactionRetention::Period(p) => me.run_periodic(p).await,
                CompactionRetention::Revisions(n) => me.run_by_revision(n as i64).await,
            }
        });
    }

    async fn run_periodic(&self, period: Duration) {
        tracing::info!(period = ?period, "auto compaction: periodic");
        let mut state = Periodic::new(period, Instant::now());
        loop {
            tokio::time::sleep(state.tick_interval()).await;
            if self.status.stopped.load(Ordering::Acquire) {
                return;
            }
            if !self.is_leader() {
                // etcd pauses the compactor on followers and starts over when resumed.
                state = Periodic::new(period, Instant::now());
                continue;
            }
            let now = Instant::now();
            if let Some(rev) = state.sample(now, self.current_revision()) {
                if self.auto_compact(rev).await {
                    state.compacted(now);
                }
            }
        }
    }

    async fn run_by_revision(&self, keep: i64) {
        tracing::info!(revisions = keep, "auto compaction: by revision");
        let mut last = 0;
        loop {
            tokio::time::sleep(REVISION_INTERVAL).await;
            if self.status.stopped.load(Ordering::Acquire) {
                return;
            }
            if !self.is_leader() {
                continue;
            }
            let rev = self.current_revision() - keep;
            if rev <= 0 || rev == last {
                continue;
            }
            if self.auto_compact(rev).await {
                last = rev;
            }
        }
    }

    /// Proposes a compaction to `rev`; true if it is done (or was already).
    async fn auto_compact(&self, rev: i64) -> bool {
        if rev <= 0 {
            return false;
        }
        match self
            .compact(CompactionRequest {
                revision: rev,
                physical: false,
            })
            .await
        {
            Ok(_) => {
                tracing::info!(revision = rev, "compacted by auto compaction");
                true
            }
            Err(EtcdError::Compacted) => true,
            Err(e) => {
                tracing::warn!(revision = rev, error = %e, "auto compaction failed; retrying");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_compacts_to_the_revision_one_period_ago() {
        let t0 = Instant::now();
        let period = Duration::from_secs(10);
        let mut p = Periodic::new(period, t0);
        assert_eq!(p.tick_interval(), Duration::from_secs(1));
        // Samples every second; revisions grow by 5 per second.
        let mut due = Vec::new();
        for s in 0..=25u64 {
            let now = t0 + Duration::from_secs(s);
            if let Some(rev) = p.sample(now, 100 + 5 * s as i64) {
                due.push((s, rev));
                p.compacted(now);
            }
        }
        // First at 10 s (to the revision at 0 s), then every 10 s to the revision 10 s before.
        assert_eq!(due, vec![(10, 100), (20, 150)]);
    }

    #[test]
    fn long_periods_are_sampled_and_compacted_at_most_hourly() {
        let t0 = Instant::now();
        let p = Periodic::new(Duration::from_secs(5 * 3600), t0);
        assert_eq!(p.tick_interval(), Duration::from_secs(360));
        let mut p = p;
        p.compacted(t0);
        assert_eq!(p.interval, MAX_INTERVAL);
    }
}
