//! The closed-loop driver shared by every request/response workload: `clients` concurrent
//! workers take request numbers from one counter until `total` are done, optionally paced to a
//! fixed overall rate, and each worker keeps its own histogram so recording never contends.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::progress::Progress;
use crate::report::Report;

/// One client: performs request number `i` and says whether it succeeded.
pub trait Worker: Send + 'static {
    /// Performs request `i`; an error is counted by its message.
    fn call(&mut self, i: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// When request `i` may start so that requests go out at `rate` per second overall
/// (`None` when the rate is 0, i.e. unlimited).
pub fn slot(start: Instant, i: u64, rate: f64) -> Option<Instant> {
    (rate > 0.0).then(|| start + Duration::from_secs_f64(i as f64 / rate))
}

/// Runs `total` requests over `workers` and returns the merged report and the workers (for
/// clean-up such as revoking leases).
pub async fn run<W: Worker>(
    name: &str,
    workers: Vec<W>,
    total: u64,
    rate: f64,
) -> (Report, Vec<W>) {
    let progress = Progress::start(name, total);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(workers.len());
    for mut w in workers {
        let (next, done) = (next.clone(), progress.counter());
        tasks.push(tokio::spawn(async move {
            let mut r = Report::new("");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(at) = slot(start, i, rate) {
                    tokio::time::sleep_until(at.into()).await;
                }
                let t = Instant::now();
                match w.call(i).await {
                    Ok(()) => r.record(t.elapsed()),
                    Err(msg) => r.record_error(msg),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (r, w)
        }));
    }
    let mut report = Report::new(name);
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok((r, w)) => {
                report.merge(&r);
                back.push(w);
            }
            Err(e) => report.record_error(format!("client task failed: {e}")),
        }
    }
    report.elapsed = start.elapsed();
    drop(progress);
    (report, back)
}

/// A gRPC status as etcd's benchmark groups errors: code and message.
pub fn status_message(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every third request, succeeds otherwise.
    struct Flaky;

    impl Worker for Flaky {
        async fn call(&mut self, i: u64) -> Result<(), String> {
            if i % 3 == 2 {
                Err("boom".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn every_request_is_counted_once() {
        let (r, back) = run("t", vec![Flaky, Flaky, Flaky, Flaky], 100, 0.0).await;
        assert_eq!(back.len(), 4);
        // 0..100: i % 3 == 2 for 33 of them.
        assert_eq!(r.requests(), 67);
        assert_eq!(r.errors["boom"], 33);
    }

    #[test]
    fn slots_space_requests_at_the_rate() {
        let t0 = Instant::now();
        assert_eq!(slot(t0, 5, 0.0), None);
        assert_eq!(slot(t0, 0, 10.0), Some(t0));
        assert_eq!(slot(t0, 5, 10.0), Some(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn status_messages_name_the_code() {
        let s = tonic::Status::unavailable("etcdserver: no leader");
        assert_eq!(status_message(&s), "Unavailable: etcdserver: no leader");
    }
}
