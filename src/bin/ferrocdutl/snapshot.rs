//! `ferrocdutl snapshot status|restore`: what etcdutl's snapshot commands do, for the files
//! `etcdctl snapshot save` writes from a ferrocd member.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use ferrocd::config::Config;
use ferrocd::snap::backup_read::{self, BackupInfo};

use crate::restore;

/// The snapshot subcommands.
#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Check a snapshot file whole (its sha256 and every record) and print its hash, revision,
    /// total keys and total size.
    Status {
        /// The file `etcdctl snapshot save` wrote.
        file: PathBuf,
        /// Output format: simple ("hash, revision, total keys, total size", etcdutl's
        /// default), table, or json (etcdutl's fields plus the raft index, term, cluster id,
        /// member id and creation time the file records).
        #[arg(short = 'w', long, value_enum, default_value_t = WriteOut::Simple)]
        write_out: WriteOut,
    },
    /// Build a NEW member data dir from a snapshot file: the data and revisions are kept, the
    /// cluster id and member ids come from the flags (as a fresh start with them would), and
    /// raft starts over. Run it once per member with that member's flags, then start each
    /// member with the same flags.
    Restore {
        /// The file `etcdctl snapshot save` wrote.
        file: PathBuf,
        /// Human-readable name for this member.
        #[arg(long, default_value = "default")]
        name: String,
        /// Path to the data directory to create [default: <name>.ferrocd].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Path to a dedicated WAL directory to create.
        #[arg(long)]
        wal_dir: Option<PathBuf>,
        /// Initial cluster configuration for the restored cluster
        /// [default: <name>=<each initial advertise peer URL>].
        #[arg(long)]
        initial_cluster: Option<String>,
        /// Initial cluster token for the restored cluster.
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
        /// This member's peer URLs, as in --initial-cluster.
        #[arg(long, default_value = "http://localhost:2380")]
        initial_advertise_peer_urls: String,
    },
}

/// `snapshot status` output formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum WriteOut {
    /// One line: hash, revision, total keys, total size.
    Simple,
    /// A table with a header row.
    Table,
    /// One JSON object.
    Json,
}

/// Runs a snapshot subcommand.
pub fn run(cmd: SnapshotCmd) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        SnapshotCmd::Status { file, write_out } => {
            let info = backup_read::verify(&file)?;
            print!("{}", format_status(&info, write_out));
            Ok(())
        }
        SnapshotCmd::Restore {
            file,
            name,
            data_dir,
            wal_dir,
            initial_cluster,
            initial_cluster_token,
            initial_advertise_peer_urls,
        } => {
            let mut args = vec![
                "ferrocd".to_string(),
                format!("--name={name}"),
                format!("--initial-cluster-token={initial_cluster_token}"),
                format!("--initial-advertise-peer-urls={initial_advertise_peer_urls}"),
            ];
            if let Some(d) = &data_dir {
                args.push(format!("--data-dir={}", d.display()));
            }
            if let Some(w) = &wal_dir {
                args.push(format!("--wal-dir={}", w.display()));
            }
            if let Some(ic) = &initial_cluster {
                args.push(format!("--initial-cluster={ic}"));
            }
            // The server's own flag parsing: the same defaults and the same checks (this
            // member in --initial-cluster with its advertised peer URLs) as the `ferrocd` that
            // will start on the restored dir.
            let cfg = Config::try_parse(&args, &HashMap::new()).map_err(|e| e.to_string())?;
            let done = restore::restore(&file, &cfg)?;
            println!(
                "restored snapshot {} (revision {}, {} keys, compacted at {}) into {}: member {} \
                 (id {:x}) of new cluster {:x} with {} members",
                file.display(),
                done.revision,
                done.keys,
                done.compact_revision,
                cfg.data_dir.display(),
                name,
                done.member_id,
                done.cluster_id,
                done.members
            );
            Ok(())
        }
    }
}

fn format_status(info: &BackupInfo, w: WriteOut) -> String {
    let (hash, rev, keys, size) = (info.crc32c, info.header.revision, info.records, info.size);
    match w {
        WriteOut::Simple => format!("{hash:x}, {rev}, {keys}, {}\n", human_bytes(size)),
        WriteOut::Table => {
            let cells = [
                format!("{hash:x}"),
                rev.to_string(),
                keys.to_string(),
                human_bytes(size),
            ];
            let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
            let widths: Vec<usize> = heads
                .iter()
                .zip(&cells)
                .map(|(h, c)| h.len().max(c.len()) + 2)
                .collect();
            let rule: String = widths
                .iter()
                .map(|w| format!("+{}", "-".repeat(*w)))
                .collect::<String>()
                + "+\n";
            let row = |items: &[String]| {
                items
                    .iter()
                    .zip(&widths)
                    .map(|(s, w)| format!("|{s:^w$}"))
                    .collect::<String>()
                    + "|\n"
            };
            let heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
            format!("{rule}{}{rule}{}{rule}", row(&heads), row(&cells))
        }
        WriteOut::Json => {
            let h = &info.header;
            let v = serde_json::json!({
                "hash": hash,
                "revision": rev,
                "totalKey": keys,
                "totalSize": size,
                "keyRevisions": info.key_revisions,
                "raftIndex": h.index,
                "raftTerm": h.term,
                "clusterId": format!("{:x}", h.cluster_id),
                "memberId": format!("{:x}", h.member_id),
                "createdUnixMs": h.created_unix_ms,
                "sha256": info.sha256,
            });
            format!("{v}\n")
        }
    }
}

/// Sizes as etcd prints them (go-humanize's SI units: "1.1 kB", "21 MB").
fn human_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let v = ((n as f64 / 1000f64.powi(e as i32)) * 10.0 + 0.5).floor() / 10.0;
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[e])
    } else {
        format!("{v:.0} {}", UNITS[e])
    }
}

/// Whether `path` is missing or an empty directory (what restore may create or fill).
pub fn is_new(path: &Path) -> bool {
    match std::fs::read_dir(path) {
        Ok(mut rd) => rd.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_like_etcd() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1056), "1.1 kB");
        assert_eq!(human_bytes(2_088_960), "2.1 MB");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(999), "999 B");
    }
}
