//! `ferrocd-bench`: a load generator speaking the etcd v3 API (so it measures etcd and ferrocd
//! alike) with etcd `benchmark`'s flags and report, plus etcd's fsync disk test. This file only
//! parses the command line and wires a workload to its report; each job lives in `bench/`.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ferrocd::proto::etcdserverpb::RangeRequest;

#[path = "bench/cli.rs"]
mod cli;
#[path = "bench/conn.rs"]
mod conn;
#[path = "bench/fsync.rs"]
mod fsync;
#[path = "bench/kv.rs"]
mod kv;
#[path = "bench/lease.rs"]
mod lease;
#[path = "bench/progress.rs"]
mod progress;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/runner.rs"]
mod runner;
#[path = "bench/watch.rs"]
mod watch;
#[path = "bench/watch_latency.rs"]
mod watch_latency;

use cli::{Cli, Cmd, Consistency};
use report::Report;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let target = Target::from(&cli);
    let reports = run(cli.cmd, &target).await?;
    for r in &reports {
        if cli.json {
            println!("{}", r.json());
        } else {
            print!("{}", r.text());
        }
    }
    Ok(())
}

/// Where and how to connect, from the global flags.
struct Target {
    endpoints: Vec<String>,
    conns: usize,
    clients: usize,
    target_leader: bool,
    timeout: Duration,
}

impl From<&Cli> for Target {
    fn from(c: &Cli) -> Target {
        Target {
            endpoints: c.endpoints.clone(),
            conns: c.conns.max(1),
            clients: c.clients.max(1),
            target_leader: c.target_leader,
            timeout: Duration::from_secs(c.dial_timeout.max(1)),
        }
    }
}

impl Target {
    /// The endpoints to load: all of them, or only the leader's with `--target-leader`.
    async fn endpoints(&self) -> anyhow::Result<Vec<String>> {
        if self.target_leader {
            Ok(vec![
                conn::find_leader(&self.endpoints, self.timeout).await?,
            ])
        } else {
            Ok(self.endpoints.clone())
        }
    }

    /// `--conns` channels to the endpoints.
    async fn channels(&self) -> anyhow::Result<Vec<tonic::transport::Channel>> {
        conn::connect(&self.endpoints().await?, self.conns, self.timeout).await
    }

    /// One channel per client, round-robin over the connections.
    async fn client_channels(&self) -> anyhow::Result<Vec<tonic::transport::Channel>> {
        let chans = self.channels().await?;
        Ok((0..self.clients)
            .map(|c| chans[c % chans.len()].clone())
            .collect())
    }
}

/// Runs one workload; most produce one report, `watch` three (creation, puts, events).
async fn run(cmd: Cmd, t: &Target) -> anyhow::Result<Vec<Report>> {
    let one = |r: Report| Ok(vec![r]);
    match cmd {
        Cmd::Put {
            key_size,
            val_size,
            total,
            sequential_keys,
            key_space_size,
            rate,
            unique_values,
        } => {
            let mut spec = put_spec(key_size, val_size, key_space_size, sequential_keys, 1);
            spec.unique_values = unique_values;
            let spec = Arc::new(spec);
            let workers = t
                .client_channels()
                .await?
                .into_iter()
                .map(|ch| kv::Put {
                    client: kv::kv_client(ch),
                    spec: spec.clone(),
                })
                .collect();
            one(runner::run("put", workers, total, rate).await.0)
        }
        Cmd::TxnPut {
            key_size,
            val_size,
            total,
            key_space_size,
            txn_ops,
            rate,
        } => {
            anyhow::ensure!(
                key_space_size >= txn_ops.max(1) as u64,
                "--key-space-size ({key_space_size}) must be at least --txn-ops ({txn_ops}): \
                 a transaction may not put the same key twice"
            );
            let spec = Arc::new(put_spec(key_size, val_size, key_space_size, false, txn_ops));
            let workers = t
                .client_channels()
                .await?
                .into_iter()
                .map(|ch| kv::TxnPut {
                    client: kv::kv_client(ch),
                    spec: spec.clone(),
                })
                .collect();
            one(runner::run("txn-put", workers, total, rate).await.0)
        }
        Cmd::Range {
            key,
            end,
            consistency,
            total,
            rate,
            limit,
            count_only,
        } => {
            let req = Arc::new(RangeRequest {
                key: key.into_bytes(),
                range_end: end.map(String::into_bytes).unwrap_or_default(),
                serializable: consistency == Consistency::Serializable,
                limit,
                count_only,
                ..Default::default()
            });
            let workers = t
                .client_channels()
                .await?
                .into_iter()
                .map(|ch| kv::Range {
                    client: kv::kv_client(ch),
                    req: req.clone(),
                })
                .collect();
            one(runner::run("range", workers, total, rate).await.0)
        }
        Cmd::LeaseKeepalive { total, ttl } => {
            let grants = t
                .client_channels()
                .await?
                .into_iter()
                .map(|ch| lease::KeepAlive::grant(ch, ttl));
            let workers = futures::future::join_all(grants).await;
            let (report, workers) = runner::run("lease-keepalive", workers, total, 0.0).await;
            futures::future::join_all(workers.into_iter().map(lease::KeepAlive::revoke)).await;
            one(report)
        }
        Cmd::LeaseGrantRevoke { total, ttl } => {
            let workers = t
                .client_channels()
                .await?
                .into_iter()
                .map(|ch| lease::GrantRevoke::new(ch, ttl))
                .collect();
            one(runner::run("lease-grant-revoke", workers, total, 0.0)
                .await
                .0)
        }
        Cmd::Watch {
            streams,
            watch_per_stream,
            watched_key_total,
            put_total,
            put_rate,
            key_size,
            key_space_size,
            sequential_keys,
        } => {
            let args = watch::Args {
                streams,
                watch_per_stream,
                watched_key_total,
                put_total,
                put_rate,
                key_size,
                key_space_size,
                sequential_keys,
            };
            let (created, puts, events) = watch::run(t.channels().await?, t.clients, args).await?;
            Ok(vec![created, puts, events])
        }
        Cmd::WatchLatency {
            watchers,
            streams,
            puts,
            rate,
            val_size,
            prefix,
            server_pid,
        } => {
            let endpoints = t.endpoints().await?;
            let channels = conn::connect(&endpoints, t.conns, t.timeout).await?;
            // The writer gets its own connection, like a separate client process.
            let put_channel = conn::dial(&endpoints[0], t.timeout).await?;
            let args = watch_latency::Args {
                watchers,
                streams,
                puts,
                rate,
                val_size,
                prefix,
                server_pid,
            };
            one(watch_latency::run(channels, put_channel, args).await?)
        }
        Cmd::Fsync { dir, count } => {
            one(tokio::task::spawn_blocking(move || fsync::run(&dir, count)).await??)
        }
    }
}

/// The shared parameters of put-like workloads (one random value, reused by every request).
fn put_spec(
    key_size: usize,
    val_size: usize,
    key_space: u64,
    sequential: bool,
    txn_ops: usize,
) -> kv::PutSpec {
    kv::PutSpec {
        key_size,
        value: (0..val_size).map(|_| rand::random::<u8>()).collect(),
        key_space,
        sequential,
        txn_ops,
        unique_values: false,
    }
}
