//! `ferrocdutl`: offline tools (like etcdutl): dump a stopped member's WAL (read-only: a torn
//! tail is reported, not repaired), report its backend's state, and check or restore the
//! snapshot files `etcdctl snapshot save` writes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrocd::backend::{Backend, BackendOptions};
use ferrocd::mvcc::Store;
use ferrocd::wal::{Record, Wal};

#[path = "ferrocdutl/restore.rs"]
mod restore;
#[path = "ferrocdutl/snapshot.rs"]
mod snapshot;

#[derive(Parser)]
#[command(
    name = "ferrocdutl",
    version,
    about = "Offline tools for a ferrocd data dir"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print every WAL record of a member (read-only; a torn tail is reported, not repaired).
    WalDump {
        /// The member's --data-dir.
        #[arg(long)]
        data_dir: PathBuf,
        /// The WAL dir if it is not <data-dir>/member/wal.
        #[arg(long)]
        wal_dir: Option<PathBuf>,
    },
    /// Print the backend's revision, compacted revision, key count, applied index and size.
    Status {
        /// The member's --data-dir.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Check (status) or restore (a new member data dir from) a snapshot file.
    Snapshot {
        #[command(subcommand)]
        cmd: snapshot::SnapshotCmd,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::WalDump { data_dir, wal_dir } => {
            wal_dump(wal_dir.unwrap_or_else(|| data_dir.join("member").join("wal")))
        }
        Cmd::Status { data_dir } => status(data_dir),
        Cmd::Snapshot { cmd } => snapshot::run(cmd),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocdutl: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn wal_dump(dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let records = Wal::read_only(&dir)?;
    let (mut entries, mut states) = (0u64, 0u64);
    for r in &records {
        match r {
            Record::Metadata(m) => println!("metadata\t{} bytes", m.len()),
            Record::Entry { index, term, data } => {
                entries += 1;
                println!("entry\tindex={index}\tterm={term}\tbytes={}", data.len());
            }
            Record::HardState { term, vote, commit } => {
                states += 1;
                println!("hardstate\tterm={term}\tvote={vote:x}\tcommit={commit}");
            }
            Record::Snapshot { index, term } => println!("snapshot\tindex={index}\tterm={term}"),
        }
    }
    println!(
        "total: {} records, {entries} entries, {states} hard states",
        records.len()
    );
    Ok(())
}

fn status(data_dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let db = data_dir.join("member").join("db");
    if !db.is_dir() {
        return Err(format!("no backend at {}", db.display()).into());
    }
    let backend = std::sync::Arc::new(Backend::open(&db, BackendOptions::default())?);
    let applied = backend.consistent_index()?;
    let (store, pending) = Store::open(backend.clone())?;
    println!("revision: {}", store.current_revision());
    println!("compact_revision: {}", store.compact_revision());
    println!("keys: {}", store.keys_total());
    println!("applied_index: {applied}");
    println!("size_bytes: {}", backend.size_on_disk());
    if let Some(c) = pending {
        println!("unfinished compaction at revision {}", c.revision());
    }
    Ok(())
}
