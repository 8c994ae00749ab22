//! `ferrocd-bench`: a load generator speaking the etcd v3 API (so it measures etcd and ferrocd
//! alike) with etcd `benchmark`'s flags and report, plus etcd's fsync disk test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ferrocd::proto::etcdserverpb::kv_client::KvClient;
use ferrocd::proto::etcdserverpb::{PutRequest, RangeRequest};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

#[path = "bench/watch.rs"]
mod watch;

#[derive(Parser)]
#[command(
    name = "ferrocd-bench",
    about = "Benchmark an etcd v3 API server (ferrocd or etcd)"
)]
struct Cli {
    /// Comma-separated gRPC endpoints (host:port or http://host:port).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Total number of concurrent clients (spread over the connections).
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Print the report as JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Put keys.
    Put {
        /// Key size in bytes.
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        /// Value size in bytes.
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Total number of puts.
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// Use keys 0, 1, 2, ... instead of random ones.
        #[arg(long)]
        sequential_keys: bool,
        /// How many distinct keys.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
    },
    /// Get a key or range.
    Range {
        /// The key.
        key: String,
        /// The range end (optional).
        end: Option<String>,
        /// l (linearizable) or s (serializable).
        #[arg(long, default_value = "l")]
        consistency: String,
        /// Total number of ranges.
        #[arg(long, default_value_t = 10000)]
        total: u64,
    },
    /// Watch delivery: put acknowledged -> event received, over many watchers on one range.
    WatchLatency {
        /// Watchers in total (all on one key range).
        #[arg(long, default_value_t = 10000)]
        watchers: usize,
        /// Watch streams the watchers are spread over (over --conns connections).
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Puts to make.
        #[arg(long, default_value_t = 100)]
        puts: u64,
        /// Puts per second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Value size in bytes.
        #[arg(long, default_value_t = 64)]
        val_size: usize,
        /// The watched prefix.
        #[arg(long, default_value = "watch-bench/")]
        prefix: String,
        /// The server's pid, to report its RSS per 10,000 idle watchers (same host).
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// etcd's disk test: 2300-byte writes, each followed by fdatasync.
    Fsync {
        /// Directory to write the test file in (same disk as the data dir).
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        /// Number of writes.
        #[arg(long, default_value_t = 1000)]
        count: u64,
    },
}

/// Latencies and errors of one run.
struct Report {
    name: String,
    hist: Histogram<u64>,
    errors: std::collections::BTreeMap<String, u64>,
    elapsed: Duration,
}

impl Report {
    fn print(&self, json: bool) {
        let secs = |us: u64| us as f64 / 1e6;
        let n = self.hist.len();
        let rps = n as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let pcts = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
        if json {
            let mut p = serde_json::Map::new();
            for q in pcts {
                p.insert(
                    format!("p{q}"),
                    serde_json::json!(secs(self.hist.value_at_quantile(q / 100.0))),
                );
            }
            let v = serde_json::json!({
                "name": self.name,
                "requests": n,
                "total_secs": self.elapsed.as_secs_f64(),
                "slowest_secs": secs(self.hist.max()),
                "fastest_secs": secs(self.hist.min()),
                "average_secs": self.hist.mean() / 1e6,
                "stddev_secs": self.hist.stdev() / 1e6,
                "requests_per_sec": rps,
                "percentiles": p,
                "errors": self.errors,
            });
            println!("{v}");
            return;
        }
        println!("\nSummary ({}):", self.name);
        println!("  Total:\t{:.4} secs.", self.elapsed.as_secs_f64());
        println!("  Slowest:\t{:.4} secs.", secs(self.hist.max()));
        println!("  Fastest:\t{:.4} secs.", secs(self.hist.min()));
        println!("  Average:\t{:.4} secs.", self.hist.mean() / 1e6);
        println!("  Stddev:\t{:.4} secs.", self.hist.stdev() / 1e6);
        println!("  Requests/sec:\t{rps:.4}");
        println!("\nResponse time histogram:");
        let (lo, hi) = (self.hist.min(), self.hist.max().max(1));
        let step = ((hi - lo) / 10).max(1);
        let mut counts = Vec::new();
        let mut edge = lo;
        while edge <= hi && counts.len() < 11 {
            let c = self.hist.count_between(edge, edge + step - 1);
            counts.push((edge, c));
            edge += step;
        }
        let max = counts.iter().map(|c| c.1).max().unwrap_or(1).max(1);
        for (edge, c) in counts {
            let bar = "∎".repeat((c * 40 / max) as usize);
            println!("  {:.4} [{c}]\t|{bar}", secs(edge));
        }
        println!("\nLatency distribution:");
        for q in pcts {
            println!(
                "  {q}% in {:.4} secs.",
                secs(self.hist.value_at_quantile(q / 100.0))
            );
        }
        if !self.errors.is_empty() {
            println!("\nErrors:");
            for (msg, c) in &self.errors {
                println!("  {c}x {msg}");
            }
        }
    }
}

async fn connect(endpoints: &[String], conns: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for i in 0..conns.max(1) {
        let ep = &endpoints[i % endpoints.len()];
        let uri = if ep.starts_with("http") {
            ep.clone()
        } else {
            format!("http://{ep}")
        };
        out.push(
            Endpoint::from_shared(uri)?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    Ok(out)
}

/// Runs `total` requests over `clients` concurrent clients; `op(client, i)` does request i.
async fn run<F, Fut>(
    name: &str,
    channels: Vec<Channel>,
    clients: usize,
    total: u64,
    op: F,
) -> Report
where
    F: Fn(KvClient<Channel>, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let client = KvClient::new(channels[c % channels.len()].clone())
            .max_decoding_message_size(usize::MAX);
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = std::collections::BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                match op(client.clone(), i).await {
                    Ok(()) => {
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    Err(s) => *errors.entry(s.message().to_string()).or_insert(0) += 1,
                }
            }
            (hist, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = std::collections::BTreeMap::new();
    for t in tasks {
        if let Ok((h, e)) = t.await {
            let _ = hist.add(h);
            for (k, v) in e {
                *errors.entry(k).or_insert(0) += v;
            }
        }
    }
    Report {
        name: name.into(),
        hist,
        errors,
        elapsed: start.elapsed(),
    }
}

fn key_bytes(size: usize, n: u64) -> Vec<u8> {
    let mut k = vec![0u8; size.max(1)];
    let b = n.to_be_bytes();
    let take = k.len().min(8);
    k[..take].copy_from_slice(&b[8 - take..]);
    k.reverse(); // spread low-order bytes first, like etcd's varint keys
    k
}

fn fsync_test(dir: &std::path::Path, count: u64) -> anyhow::Result<Report> {
    use std::io::Write;
    let path = dir.join(format!(".ferrocd-bench-fsync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let buf = vec![0xabu8; 2300];
    let mut hist = Histogram::<u64>::new(3)?;
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        hist.record(t.elapsed().as_micros() as u64)?;
    }
    let elapsed = start.elapsed();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(Report {
        name: "fsync (2300 B write + fdatasync)".into(),
        hist,
        errors: Default::default(),
        elapsed,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.cmd {
        Cmd::WatchLatency {
            watchers,
            streams,
            puts,
            rate,
            val_size,
            prefix,
            server_pid,
        } => {
            let channels = connect(&cli.endpoints, cli.conns).await?;
            let put_channel = connect(&cli.endpoints, 1).await?.remove(0);
            let args = watch::Args {
                watchers,
                streams,
                puts,
                rate,
                val_size,
                prefix,
                server_pid,
            };
            let v = watch::run(channels, put_channel, args).await?;
            if cli.json {
                println!("{v}");
            } else {
                watch::print(&v);
            }
            return Ok(());
        }
        Cmd::Fsync { dir, count } => {
            tokio::task::spawn_blocking(move || fsync_test(&dir, count)).await??
        }
        Cmd::Put {
            key_size,
            val_size,
            total,
            sequential_keys,
            key_space_size,
        } => {
            let channels = connect(&cli.endpoints, cli.conns).await?;
            let value: Vec<u8> = (0..val_size).map(|_| rand::random::<u8>()).collect();
            let space = key_space_size.max(1);
            run("put", channels, cli.clients, total, move |mut c, i| {
                let n = if sequential_keys {
                    i % space
                } else {
                    rand::random::<u64>() % space
                };
                let req = PutRequest {
                    key: key_bytes(key_size, n),
                    value: value.clone(),
                    ..Default::default()
                };
                async move { c.put(req).await.map(|_| ()) }
            })
            .await
        }
        Cmd::Range {
            key,
            end,
            consistency,
            total,
        } => {
            let channels = connect(&cli.endpoints, cli.conns).await?;
            let serializable = match consistency.as_str() {
                "s" => true,
                "l" => false,
                other => anyhow::bail!("--consistency must be l or s, not {other:?}"),
            };
            let req = RangeRequest {
                key: key.into_bytes(),
                range_end: end.map(String::into_bytes).unwrap_or_default(),
                serializable,
                ..Default::default()
            };
            run("range", channels, cli.clients, total, move |mut c, _| {
                let req = req.clone();
                async move { c.range(req).await.map(|_| ()) }
            })
            .await
        }
    };
    report.print(cli.json);
    Ok(())
}
