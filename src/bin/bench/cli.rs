//! Command-line interface of `ferrocd-bench`, with etcd `benchmark`'s flag names and defaults
//! wherever etcd has the same command, so its documented invocations work unchanged.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Global flags and the workload to run.
#[derive(Parser, Debug)]
#[command(
    name = "ferrocd-bench",
    about = "Benchmark an etcd v3 API server (ferrocd or etcd)"
)]
pub struct Cli {
    /// Comma-separated gRPC endpoints (host:port or http://host:port).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections, spread round-robin over the endpoints.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Total number of concurrent clients, spread round-robin over the connections.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Ask each endpoint for the cluster's leader (Maintenance.Status) and send only to it.
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Timeout for establishing a connection, in seconds.
    #[arg(long, global = true, default_value_t = 5)]
    pub dial_timeout: u64,
    /// Print the report as one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The workload.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Read consistency of a range (etcd's `--consistency l|s`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable: confirmed with the leader (ReadIndex) before reading.
    #[value(name = "l")]
    Linearizable,
    /// Serializable: served from the member's local state.
    #[value(name = "s")]
    Serializable,
}

/// The workloads.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Put keys (etcd: `benchmark put`).
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
        /// Use keys 0, 1, 2, ... (modulo the key space) instead of random ones.
        #[arg(long)]
        sequential_keys: bool,
        /// How many distinct keys.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Puts per second over all clients (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// A fresh random value for every put (default: one random value reused, as etcd's
        /// benchmark does). Use it when measuring size on disk: a storage engine that
        /// compresses would otherwise be flattered by the repeats.
        #[arg(long)]
        unique_values: bool,
    },
    /// Get a key or a range (etcd: `benchmark range key [end-range]`).
    Range {
        /// The key.
        key: String,
        /// The range end (optional; without it, just the key).
        end: Option<String>,
        /// l (linearizable) or s (serializable).
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Total number of ranges.
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// Ranges per second over all clients (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Maximum keys per range (0: no limit).
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Ask only for the count of keys.
        #[arg(long)]
        count_only: bool,
    },
    /// Transactions of puts (etcd: `benchmark txn-put`).
    TxnPut {
        /// Key size in bytes.
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        /// Value size in bytes.
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Total number of transactions.
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// How many distinct keys.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Puts per transaction.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
        /// Transactions per second over all clients (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// Many watchers, then puts to the watched keys (etcd: `benchmark watch`); reports watch
    /// creation latency and each event's latency from its put being sent.
    Watch {
        /// Watch streams (spread over the connections).
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Watchers per stream.
        #[arg(long, default_value_t = 100)]
        watch_per_stream: usize,
        /// Distinct keys the watchers watch (watcher i watches key i mod this).
        #[arg(long, default_value_t = 1)]
        watched_key_total: usize,
        /// Puts to the watched keys (put i goes to key i mod --watched-key-total).
        #[arg(long, default_value_t = 1000)]
        put_total: u64,
        /// Puts per second (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        put_rate: f64,
        /// Key size in bytes.
        #[arg(long, default_value_t = 32)]
        key_size: usize,
        /// Key space the watched keys are drawn from.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Draw the watched keys sequentially instead of at random.
        #[arg(long)]
        sequential_keys: bool,
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
    /// Each client grants a lease and renews it over its own keep-alive stream
    /// (etcd: `benchmark lease-keepalive`); reports each renewal's round trip.
    LeaseKeepalive {
        /// Total keep-alives over all clients.
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// TTL of each client's lease, in seconds.
        #[arg(long, default_value_t = 100)]
        ttl: i64,
    },
    /// Each request grants a lease and revokes it (two writes through raft); reports the
    /// pair's round trip. Measures the lease lifecycle cost (service registrations, locks).
    LeaseGrantRevoke {
        /// Total grant+revoke pairs over all clients.
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// TTL of each lease, in seconds.
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
    /// etcd's disk test: 2300-byte writes, each followed by fdatasync; the floor under every
    /// durable write.
    Fsync {
        /// Directory to write the test file in (put it on the data dir's disk).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Number of writes.
        #[arg(long, visible_alias = "total", default_value_t = 1000)]
        count: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferrocd-bench").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_work_before_and_after_the_subcommand() {
        let a = parse(&[
            "--endpoints",
            "127.0.0.1:1,http://127.0.0.1:2",
            "--conns",
            "100",
            "put",
            "--clients",
            "1000",
            "--target-leader",
            "--json",
        ])
        .unwrap();
        assert_eq!(a.endpoints, vec!["127.0.0.1:1", "http://127.0.0.1:2"]);
        assert_eq!((a.conns, a.clients), (100, 1000));
        assert!(a.target_leader && a.json);
        assert_eq!(a.dial_timeout, 5);
    }

    #[test]
    fn put_defaults_match_etcd_benchmark() {
        let a = parse(&["put"]).unwrap();
        match a.cmd {
            Cmd::Put {
                key_size,
                val_size,
                total,
                sequential_keys,
                key_space_size,
                rate,
                unique_values,
            } => {
                assert_eq!(
                    (key_size, val_size, total, key_space_size),
                    (8, 8, 10000, 1)
                );
                assert!(!sequential_keys && !unique_values);
                assert_eq!(rate, 0.0);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(a.endpoints, vec!["127.0.0.1:2379"]);
        assert_eq!((a.conns, a.clients), (1, 1));
    }

    #[test]
    fn range_takes_key_end_and_consistency() {
        let a = parse(&["range", "a", "z", "--consistency", "s", "--total", "5"]).unwrap();
        match a.cmd {
            Cmd::Range {
                key,
                end,
                consistency,
                total,
                ..
            } => {
                assert_eq!((key.as_str(), end.as_deref()), ("a", Some("z")));
                assert_eq!(consistency, Consistency::Serializable);
                assert_eq!(total, 5);
            }
            other => panic!("parsed as {other:?}"),
        }
        let a = parse(&["range", "k"]).unwrap();
        assert!(matches!(
            a.cmd,
            Cmd::Range {
                consistency: Consistency::Linearizable,
                end: None,
                ..
            }
        ));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let e = parse(&["range", "k", "--consistency", "x"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let e = parse(&["range"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["put", "--total", "-1"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        let e = parse(&["put", "--total", "many"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        let e = parse(&["frobnicate"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn watch_lease_txn_and_fsync_flags() {
        let a = parse(&[
            "watch",
            "--streams",
            "2",
            "--watch-per-stream",
            "3",
            "--watched-key-total",
            "4",
            "--put-total",
            "5",
            "--put-rate",
            "6",
        ])
        .unwrap();
        match a.cmd {
            Cmd::Watch {
                streams,
                watch_per_stream,
                watched_key_total,
                put_total,
                put_rate,
                key_size,
                ..
            } => {
                assert_eq!((streams, watch_per_stream, watched_key_total), (2, 3, 4));
                assert_eq!((put_total, put_rate, key_size), (5, 6.0, 32));
            }
            other => panic!("parsed as {other:?}"),
        }
        let a = parse(&["lease-keepalive", "--total", "7"]).unwrap();
        assert!(matches!(a.cmd, Cmd::LeaseKeepalive { total: 7, ttl: 100 }));
        let a = parse(&["lease-grant-revoke", "--total", "9", "--ttl", "5"]).unwrap();
        assert!(matches!(a.cmd, Cmd::LeaseGrantRevoke { total: 9, ttl: 5 }));
        let a = parse(&["txn-put", "--txn-ops", "4"]).unwrap();
        assert!(matches!(
            a.cmd,
            Cmd::TxnPut {
                txn_ops: 4,
                total: 10000,
                ..
            }
        ));
        let a = parse(&["fsync", "--dir", "/tmp", "--total", "9"]).unwrap();
        match a.cmd {
            Cmd::Fsync { dir, count } => {
                assert_eq!((dir, count), (PathBuf::from("/tmp"), 9));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
