//! The benchmark report: latencies in a histogram, errors grouped by message, and the two ways
//! to print them — etcd `benchmark`'s text layout (so operators can read it side by side with
//! etcd's own tool) and JSON for scripts (`scripts/bench-vs-etcd.sh` reads `percentiles.p50`,
//! `percentiles.p99` and `requests_per_sec`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The percentiles etcd's benchmark prints, with the JSON key of each.
pub const PERCENTILES: [(&str, f64); 8] = [
    ("p10", 10.0),
    ("p25", 25.0),
    ("p50", 50.0),
    ("p75", 75.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
];

/// Number of histogram buckets between fastest and slowest (etcd uses 10, plus the slowest).
const BUCKETS: usize = 10;

/// A fresh latency histogram in microseconds, 3 significant digits (0.1% resolution), growing
/// as needed so one very slow request never fails to record.
pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid histogram precision")
}

/// Latencies and errors of one benchmark run.
#[derive(Debug)]
pub struct Report {
    /// What ran (e.g. "put").
    pub name: String,
    /// Latency of each successful request, in microseconds.
    pub hist: Histogram<u64>,
    /// Failed requests, counted by error message.
    pub errors: BTreeMap<String, u64>,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// Workload-specific fields (added to the JSON and printed after the summary).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// An empty report named `name`.
    pub fn new(name: &str) -> Report {
        Report {
            name: name.to_string(),
            hist: histogram(),
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
            extra: serde_json::Map::new(),
        }
    }

    /// Records one successful request.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // `record` grows the histogram to fit; it fails only when the value cannot be
        // represented at all, and then clamping (which never grows it) is the best left.
        if self.hist.record(us).is_err() {
            self.hist.saturating_record(us);
        }
    }

    /// Records one failed request.
    pub fn record_error(&mut self, message: impl Into<String>) {
        *self.errors.entry(message.into()).or_insert(0) += 1;
    }

    /// Adds another report's latencies and errors (e.g. one client's) to this one.
    pub fn merge(&mut self, other: &Report) {
        self.hist
            .add(&other.hist)
            .expect("auto-resizing histograms always merge");
        for (msg, n) in &other.errors {
            *self.errors.entry(msg.clone()).or_insert(0) += n;
        }
    }

    /// Successful requests.
    pub fn requests(&self) -> u64 {
        self.hist.len()
    }

    /// Failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful requests per second of wall-clock time.
    pub fn requests_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests() as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency at percentile `p` (0..=100), in seconds; 0 when nothing was recorded.
    pub fn percentile_secs(&self, p: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        secs(self.hist.value_at_quantile(p / 100.0))
    }

    /// etcd's response-time histogram: `BUCKETS` equal-width buckets from the fastest request
    /// plus one ending at the slowest. Each entry is (upper edge in seconds, count); a latency
    /// is counted in the first bucket whose upper edge is >= it, so the counts add up to
    /// [`Report::requests`].
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let (lo, hi) = (self.hist.min() as f64, self.hist.max() as f64);
        let width = (hi - lo) / BUCKETS as f64;
        let mut edges: Vec<f64> = (0..BUCKETS).map(|i| lo + width * i as f64).collect();
        edges.push(hi);
        let mut counts = vec![0u64; edges.len()];
        for v in self.hist.iter_recorded() {
            let value = v.value_iterated_to() as f64;
            let i = edges
                .iter()
                .position(|&e| value <= e)
                .unwrap_or(edges.len() - 1);
            counts[i] += v.count_at_value();
        }
        edges.into_iter().map(|e| e / 1e6).zip(counts).collect()
    }

    /// The report as one JSON object (the machine-readable twin of [`Report::text`]).
    pub fn json(&self) -> serde_json::Value {
        let mut pcts = serde_json::Map::new();
        for (key, p) in PERCENTILES {
            pcts.insert(key.to_string(), self.percentile_secs(p).into());
        }
        let histogram: Vec<serde_json::Value> = self
            .buckets()
            .into_iter()
            .map(|(le, count)| serde_json::json!({ "le_secs": le, "count": count }))
            .collect();
        let mut v = serde_json::json!({
            "name": self.name,
            "requests": self.requests(),
            "error_count": self.error_count(),
            "total_secs": self.elapsed.as_secs_f64(),
            "slowest_secs": secs(self.hist.max()),
            "fastest_secs": secs(self.hist.min()),
            "average_secs": self.hist.mean() / 1e6,
            "stddev_secs": self.hist.stdev() / 1e6,
            "requests_per_sec": self.requests_per_sec(),
            "histogram": histogram,
            "percentiles": pcts,
            "errors": self.errors,
        });
        let obj = v.as_object_mut().expect("built as an object");
        for (k, x) in &self.extra {
            obj.insert(k.clone(), x.clone());
        }
        v
    }

    /// The report in etcd benchmark's text layout.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\nSummary ({}):", self.name);
        let _ = writeln!(s, "  Total:\t{:.4} secs.", self.elapsed.as_secs_f64());
        let _ = writeln!(s, "  Slowest:\t{:.4} secs.", secs(self.hist.max()));
        let _ = writeln!(s, "  Fastest:\t{:.4} secs.", secs(self.hist.min()));
        let _ = writeln!(s, "  Average:\t{:.4} secs.", self.hist.mean() / 1e6);
        let _ = writeln!(s, "  Stddev:\t{:.4} secs.", self.hist.stdev() / 1e6);
        let _ = writeln!(s, "  Requests/sec:\t{:.4}", self.requests_per_sec());
        let buckets = self.buckets();
        if !buckets.is_empty() {
            let _ = writeln!(s, "\nResponse time histogram:");
            let max = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
            for (edge, count) in &buckets {
                let bar = "∎".repeat((count * 40 / max) as usize);
                let _ = writeln!(s, "  {edge:.4} [{count}]\t|{bar}");
            }
            let _ = writeln!(s, "\nLatency distribution:");
            for (_, p) in PERCENTILES {
                let _ = writeln!(s, "  {p}% in {:.4} secs.", self.percentile_secs(p));
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "\nError distribution:");
            for (msg, n) in &self.errors {
                let _ = writeln!(s, "  [{n}]\t{msg}");
            }
        }
        for (k, v) in &self.extra {
            let _ = writeln!(s, "  {k}: {v}");
        }
        s
    }
}

/// Microseconds to seconds.
fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_of(us: impl IntoIterator<Item = u64>) -> Report {
        let mut r = Report::new("t");
        for v in us {
            r.record(Duration::from_micros(v));
        }
        r.elapsed = Duration::from_secs(2);
        r
    }

    #[test]
    fn percentiles_of_a_uniform_run() {
        let r = report_of(1..=1000);
        // 3 significant digits: within 0.1% of the exact order statistic.
        let close = |got: f64, want_us: f64| (got * 1e6 - want_us).abs() <= want_us * 0.001 + 1.0;
        assert!(
            close(r.percentile_secs(10.0), 100.0),
            "{}",
            r.percentile_secs(10.0)
        );
        assert!(
            close(r.percentile_secs(50.0), 500.0),
            "{}",
            r.percentile_secs(50.0)
        );
        assert!(
            close(r.percentile_secs(99.0), 990.0),
            "{}",
            r.percentile_secs(99.0)
        );
        assert!(
            close(r.percentile_secs(99.9), 999.0),
            "{}",
            r.percentile_secs(99.9)
        );
        assert_eq!(r.requests(), 1000);
        assert!((r.requests_per_sec() - 500.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_of_a_skewed_run() {
        // 990 fast requests and 10 slow ones: p99 is still fast, p99.9 is slow.
        let r = report_of(std::iter::repeat_n(200, 990).chain(std::iter::repeat_n(50_000, 10)));
        assert_eq!(r.percentile_secs(50.0), 0.0002);
        assert_eq!(r.percentile_secs(99.0), 0.0002);
        assert!((r.percentile_secs(99.9) - 0.05).abs() < 0.05 * 0.001);
    }

    #[test]
    fn empty_report_has_zero_percentiles_and_no_buckets() {
        let r = Report::new("t");
        assert_eq!(r.percentile_secs(50.0), 0.0);
        assert!(r.buckets().is_empty());
        assert_eq!(r.requests_per_sec(), 0.0);
        let j = r.json();
        assert_eq!(j["requests"], 0);
        assert_eq!(j["percentiles"]["p99.9"], 0.0);
    }

    #[test]
    fn buckets_follow_etcd_edges_and_count_every_request() {
        // fastest 100 µs, slowest 1100 µs: edges every 100 µs, the last one at the slowest.
        let r = report_of([100, 100, 150, 200, 650, 1100]);
        let b = r.buckets();
        assert_eq!(b.len(), BUCKETS + 1);
        let edges: Vec<f64> = b.iter().map(|x| (x.0 * 1e6).round()).collect();
        assert_eq!(
            edges,
            vec![100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0, 1100.0]
        );
        let counts: Vec<u64> = b.iter().map(|x| x.1).collect();
        // 100,100 -> [..100]; 150,200 -> (100,200]; 650 -> (600,700]; 1100 -> the last.
        assert_eq!(counts, vec![2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(counts.iter().sum::<u64>(), r.requests());
    }

    #[test]
    fn buckets_of_identical_latencies_land_in_the_first() {
        let r = report_of([300; 5]);
        let b = r.buckets();
        assert_eq!(b[0].1, 5);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 5);
    }

    #[test]
    fn merge_adds_latencies_and_errors() {
        let mut a = report_of([100, 200]);
        a.record_error("Unavailable: no leader");
        let mut b = report_of([300]);
        b.record_error("Unavailable: no leader");
        b.record_error("DeadlineExceeded: timeout");
        a.merge(&b);
        assert_eq!(a.requests(), 3);
        assert_eq!(a.errors["Unavailable: no leader"], 2);
        assert_eq!(a.errors["DeadlineExceeded: timeout"], 1);
        assert_eq!(a.error_count(), 3);
    }

    #[test]
    fn json_has_the_keys_the_comparison_script_reads() {
        let mut r = report_of([1000, 2000, 3000]);
        r.extra.insert("leases".into(), 3.into());
        let j = r.json();
        for (key, _) in PERCENTILES {
            assert!(j["percentiles"][key].is_f64(), "missing {key}");
        }
        assert_eq!(j["requests"], 3);
        assert_eq!(j["error_count"], 0);
        assert!((j["requests_per_sec"].as_f64().unwrap() - 1.5).abs() < 1e-9);
        assert!((j["average_secs"].as_f64().unwrap() - 0.002).abs() < 0.000_01);
        // 3 significant digits: 3000 µs is reported as the top of its 2 µs-wide bucket.
        assert!((j["slowest_secs"].as_f64().unwrap() - 0.003).abs() <= 0.003 * 0.001);
        assert_eq!(j["fastest_secs"], 0.001);
        assert_eq!(j["leases"], 3);
        let hist_total: u64 = j["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(hist_total, 3);
    }

    #[test]
    fn text_has_etcd_sections() {
        let mut r = report_of([1000, 2000]);
        r.record_error("Unimplemented: unknown service etcdserverpb.Lease");
        let t = r.text();
        for needle in [
            "Summary (t):",
            "Total:\t2.0000 secs.",
            "Slowest:\t0.0020 secs.",
            "Fastest:\t0.0010 secs.",
            "Requests/sec:\t1.0000",
            "Response time histogram:",
            "Latency distribution:",
            "  99.9% in 0.0020 secs.",
            "Error distribution:",
            "  [1]\tUnimplemented: unknown service etcdserverpb.Lease",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
    }
}
