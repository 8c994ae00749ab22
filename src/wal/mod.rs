//! The write-ahead log: ferrocd's durability point.
//!
//! A write is acknowledged only after its raft entry is in this log and `Wal::sync` has
//! returned, so everything here is about one promise: what `sync` covered survives kill -9
//! and power loss, and damage the log cannot explain is reported, never papered over.
//!
//! # Layout
//!
//! A directory of segment files `{seq:016x}-{first_index:016x}.wal`. `seq` counts from 0 with
//! no gaps; `first_index` is the raft index the next entry was expected to have when the
//! segment was started (0 for the first). A new segment is started once the current one has
//! passed `WalOptions::segment_size` (64 MiB by default). Each segment is a sequence of
//! records `{type: u8, crc32c: u32 LE, len: u32 LE, data}` (see `record.rs`) and starts with
//! a header record repeating the metadata, its own seq and first index, and the latest
//! HardState and snapshot point, so any segment can be read on its own and releasing older
//! segments loses nothing.
//!
//! # Crash model
//!
//! Only the tail of the last segment can be torn by a crash: a segment is fdatasync'd in full
//! before the next one is created, and a new segment's directory entry is fsync'd before the
//! `sync` that covers it returns. `open` therefore truncates a torn or zero-filled tail of the
//! last segment (and drops a last segment whose header never reached the disk), with a
//! warning. Anything else is `WalError::Corrupt`, and then no file is touched.
//!
//! # Threading
//!
//! All calls block on disk I/O; the caller runs the WAL on a dedicated thread.

mod error;
mod fsutil;
mod record;
mod segment;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

pub use error::WalError;
pub use record::Record;

use fsutil::{create_dir_durable, fsync_dir, io_err, parent_dir, remove_any, tmp_dir_for};
use record::{HardState, SegmentHeader, SnapshotPoint};
use segment::{list_segments, scan, segment_file_name, SegmentFile, Tail};

/// Default segment size, etcd's: big enough that rolling (three fsyncs) is rare, small
/// enough that releasing after a snapshot frees space in useful steps.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// An fdatasync slower than this is logged, as etcd does: it is the first sign of a disk
/// that will make the cluster miss heartbeats.
const SLOW_SYNC: Duration = Duration::from_secs(1);

/// Tunables. Exists mainly so tests and benchmarks can use tiny segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Start a new segment once the current one has at least this many bytes. A segment can
    /// exceed it by one record, and always holds at least one record after its header.
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// What the WAL knows about one segment on disk.
#[derive(Debug, Clone)]
struct SegmentInfo {
    seq: u64,
    path: PathBuf,
    /// Highest entry index in the segment; `None` if it holds no entry. Decides release.
    max_index: Option<u64>,
}

/// An open write-ahead log, positioned at its end and ready to append.
///
/// Append and sync are separate so the raft loop can write everything one Ready carries and
/// pay for a single fdatasync (group commit).
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    metadata: Vec<u8>,
    /// Oldest first; the last one is the current segment, the only one written to.
    segments: Vec<SegmentInfo>,
    /// The current segment, opened for append.
    file: File,
    current_size: u64,
    current_has_records: bool,
    /// Index the next entry is expected to have: last entry index + 1, or the segment's
    /// first index when no entry has been seen. Becomes the next segment's `first_index`.
    next_index: u64,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotPoint>,
    /// A segment was created since the last sync; its directory entry must be fsync'd.
    dir_needs_sync: bool,
    bytes_written: u64,
    last_sync: Duration,
    /// Set by the first failed write or fsync; see `WalError::Failed`.
    failed: Option<String>,
    /// Reused encode buffer, so appends do not allocate once warmed up.
    scratch: Vec<u8>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("current_size", &self.current_size)
            .field("next_index", &self.next_index)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Whether `load` may repair a torn tail (`open`) or must leave every file alone
/// (`read_only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Repair,
    ReadOnly,
}

/// A fix for a crash artifact, applied only after every segment verified.
#[derive(Debug)]
enum Repair {
    Truncate { path: PathBuf, to: u64 },
    Remove { path: PathBuf },
}

/// Everything `load` learned; `open` turns it into a `Wal`.
struct Loaded {
    records: Vec<Record>,
    segments: Vec<SegmentInfo>,
    metadata: Vec<u8>,
    next_index: u64,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotPoint>,
    /// Good length of the last segment (after repair).
    last_size: u64,
    /// Whether the last kept segment has records after its header.
    last_has_records: bool,
    repair: Option<Repair>,
}

impl Wal {
    /// Whether `dir` holds a WAL, i.e. any `*.wal` file. Lets startup choose between
    /// `create` (new member) and `open` (restart) without guessing from other files.
    pub fn exists(dir: &Path) -> bool {
        segment::any_wal_file(dir)
    }

    /// Creates a new WAL with default options; see `create_with_options`.
    pub fn create(dir: &Path, metadata: &[u8]) -> Result<Wal, WalError> {
        Self::create_with_options(dir, metadata, WalOptions::default())
    }

    /// Creates a new WAL in `dir` whose every segment carries `metadata`.
    ///
    /// Atomic: the first segment is built and fsync'd in `<dir>.tmp`, which is then renamed
    /// to `dir` and the parent fsync'd, so after a crash there is either no WAL or a complete
    /// one; a leftover `<dir>.tmp` from such a crash is removed here. `dir` may already exist
    /// if it is empty. Refuses (`AlreadyExists`) if `dir` holds a WAL, because starting over
    /// would discard acknowledged writes.
    pub fn create_with_options(
        dir: &Path,
        metadata: &[u8],
        options: WalOptions,
    ) -> Result<Wal, WalError> {
        if Self::exists(dir) {
            return Err(WalError::AlreadyExists {
                dir: dir.to_path_buf(),
            });
        }
        let tmp = tmp_dir_for(dir)?;
        if fs::symlink_metadata(&tmp).is_ok() {
            warn!(
                path = %tmp.display(),
                "removing a leftover WAL staging directory from an interrupted create"
            );
            remove_any(&tmp)?;
        }
        create_dir_durable(&tmp)?;

        let header = SegmentHeader {
            seq: 0,
            first_index: 0,
            hard_state: None,
            snapshot: None,
            metadata: metadata.to_vec(),
        };
        let mut buf = Vec::new();
        record::encode_header(&mut buf, &header)
            .map_err(|reason| WalError::InvalidRecord { reason })?;
        let name = segment_file_name(0, 0);
        let tmp_seg = tmp.join(&name);
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&tmp_seg)
            .map_err(io_err(&tmp_seg))?;
        f.write_all(&buf).map_err(io_err(&tmp_seg))?;
        f.sync_all().map_err(io_err(&tmp_seg))?;
        drop(f);
        fsync_dir(&tmp)?;

        // rename(2) replaces an empty directory atomically; a non-empty one fails with
        // "Directory not empty" naming `dir`, which is the right thing to tell the operator.
        fs::rename(&tmp, dir).map_err(io_err(dir))?;
        fsync_dir(&parent_dir(dir))?;

        let path = dir.join(&name);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        info!(dir = %dir.display(), "created WAL");
        Ok(Wal {
            dir: dir.to_path_buf(),
            options,
            metadata: metadata.to_vec(),
            segments: vec![SegmentInfo {
                seq: 0,
                path,
                max_index: None,
            }],
            file,
            current_size: buf.len() as u64,
            current_has_records: false,
            next_index: 0,
            hard_state: None,
            snapshot: None,
            dir_needs_sync: false,
            bytes_written: 0,
            last_sync: Duration::ZERO,
            failed: None,
            scratch: Vec::new(),
        })
    }

    /// Opens an existing WAL with default options; see `open_with_options`.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<Record>), WalError> {
        Self::open_with_options(dir, WalOptions::default())
    }

    /// Reads and verifies every segment, repairs a torn tail of the last one, and returns the
    /// log positioned for appending together with every record in write order.
    ///
    /// The records start with `Record::Metadata`. If older segments were released, the
    /// snapshot point and HardState that were current when the oldest remaining segment was
    /// started follow it (taken from that segment's header), so the caller always sees the
    /// latest of each. Entries are returned as written, including any raft later overwrote:
    /// the caller applies raft's "a later entry with the same index wins" rule.
    pub fn open_with_options(
        dir: &Path,
        options: WalOptions,
    ) -> Result<(Wal, Vec<Record>), WalError> {
        let loaded = load(dir, Mode::Repair)?;
        match &loaded.repair {
            Some(Repair::Truncate { path, to }) => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(*to).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
            }
            Some(Repair::Remove { path }) => {
                fs::remove_file(path).map_err(io_err(path))?;
                fsync_dir(dir)?;
            }
            None => {}
        }
        let current = loaded.segments.last().ok_or_else(|| WalError::NotFound {
            dir: dir.to_path_buf(),
        })?;
        let file = OpenOptions::new()
            .append(true)
            .open(&current.path)
            .map_err(io_err(&current.path))?;
        debug!(
            dir = %dir.display(),
            segments = loaded.segments.len(),
            records = loaded.records.len(),
            "opened WAL"
        );
        let wal = Wal {
            dir: dir.to_path_buf(),
            options,
            metadata: loaded.metadata,
            segments: loaded.segments,
            file,
            current_size: loaded.last_size,
            current_has_records: loaded.last_has_records,
            next_index: loaded.next_index,
            hard_state: loaded.hard_state,
            snapshot: loaded.snapshot,
            dir_needs_sync: false,
            bytes_written: 0,
            last_sync: Duration::ZERO,
            failed: None,
            scratch: Vec::new(),
        };
        Ok((wal, loaded.records))
    }

    /// Reads and verifies like `open` but never modifies, creates or removes a file, so an
    /// operator can inspect a log (`ferrocdutl wal dump`) without changing the evidence. A
    /// torn tail is logged as a warning and reading stops there.
    pub fn read_only(dir: &Path) -> Result<Vec<Record>, WalError> {
        load(dir, Mode::ReadOnly).map(|l| l.records)
    }

    /// Encodes `records` and writes them to the current segment, starting a new segment when
    /// the current one has passed the size limit. Does not fsync: call `sync` once for the
    /// whole Ready. The records are refused as a whole (nothing written) if one of them is a
    /// `Metadata` or too large.
    pub fn append(&mut self, records: &[Record]) -> Result<(), WalError> {
        self.check_usable()?;
        for rec in records {
            record::check_appendable(rec).map_err(|reason| WalError::InvalidRecord { reason })?;
        }
        self.scratch.clear();
        for rec in records {
            let projected = self.current_size + self.scratch.len() as u64;
            if projected >= self.options.segment_size && self.current_has_records {
                self.write_scratch()?;
                self.roll()?;
            }
            record::encode_record(&mut self.scratch, rec)
                .map_err(|reason| WalError::InvalidRecord { reason })?;
            self.note_appended(rec);
        }
        self.write_scratch()
    }

    /// Makes everything appended so far durable: fdatasync of the current segment, plus an
    /// fsync of the directory if a segment was created since the last sync (a new file's
    /// name is not durable until its directory is). Only after this returns may the caller
    /// send the messages or acknowledge the writes that depend on the appended records.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        let start = Instant::now();
        if let Err(e) = self.file.sync_data() {
            let path = self.current_path();
            return Err(self.fail(path, e));
        }
        if self.dir_needs_sync {
            if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                let path = self.dir.clone();
                return Err(self.fail(path, e));
            }
            self.dir_needs_sync = false;
        }
        self.last_sync = start.elapsed();
        if self.last_sync >= SLOW_SYNC {
            warn!(
                took = ?self.last_sync,
                file = %self.current_path().display(),
                "slow WAL fdatasync; the disk is too slow for this cluster's heartbeat interval"
            );
        }
        Ok(())
    }

    /// Deletes the oldest segments all of whose entries are below `index`, never the current
    /// one. Called after a snapshot at `index`, since those entries are then in the
    /// snapshot. Removes oldest first and stops at the first segment it must keep, so the
    /// remaining segments stay a gap-free run even if this is interrupted. Returns how many
    /// segments were deleted.
    pub fn release_to(&mut self, index: u64) -> Result<usize, WalError> {
        let releasable = self.segments[..self.segments.len().saturating_sub(1)]
            .iter()
            .take_while(|s| s.max_index.is_none_or(|m| m < index))
            .count();
        if releasable == 0 {
            return Ok(0);
        }
        let mut removed = 0;
        let mut result = Ok(());
        for seg in &self.segments[..releasable] {
            if let Err(e) = fs::remove_file(&seg.path) {
                result = Err(WalError::Io {
                    path: seg.path.clone(),
                    source: e,
                });
                break;
            }
            removed += 1;
            debug!(file = %seg.path.display(), "released WAL segment");
            // One directory fsync per removal: then no filesystem can persist a later
            // removal without an earlier one, which would leave a gap that reads as corrupt.
            if let Err(e) = fsync_dir(&self.dir) {
                result = Err(e);
                break;
            }
        }
        self.segments.drain(..removed);
        if removed > 0 {
            info!(
                dir = %self.dir.display(),
                released = removed,
                below_index = index,
                "released WAL segments covered by a snapshot"
            );
        }
        result.map(|()| removed)
    }

    /// How long the last `sync` took (fdatasync plus any directory fsync), for the
    /// `etcd_disk_wal_fsync_duration_seconds` histogram.
    pub fn last_sync_duration(&self) -> Duration {
        self.last_sync
    }

    /// Bytes written to segment files since this `Wal` was created or opened, segment headers
    /// included, for `etcd_disk_wal_write_bytes_total`.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn current_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.dir.clone())
    }

    fn check_usable(&self) -> Result<(), WalError> {
        match &self.failed {
            Some(reason) => Err(WalError::Failed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the log unusable (see `WalError::Failed`) and returns the error to report now.
    fn fail(&mut self, path: PathBuf, source: std::io::Error) -> WalError {
        if self.failed.is_none() {
            self.failed = Some(format!("{source} on {}", path.display()));
        }
        WalError::Io { path, source }
    }

    /// Tracks what the next segment header must carry and what `release_to` needs.
    fn note_appended(&mut self, rec: &Record) {
        self.current_has_records = true;
        match rec {
            Record::Entry { index, .. } => {
                self.next_index = index.saturating_add(1);
                if let Some(seg) = self.segments.last_mut() {
                    seg.max_index = Some(seg.max_index.map_or(*index, |m| m.max(*index)));
                }
            }
            Record::HardState { term, vote, commit } => {
                self.hard_state = Some(HardState {
                    term: *term,
                    vote: *vote,
                    commit: *commit,
                });
            }
            Record::Snapshot { index, term } => {
                self.snapshot = Some(SnapshotPoint {
                    index: *index,
                    term: *term,
                });
            }
            Record::Metadata(_) => {}
        }
    }

    /// Writes the encoded records with one write call.
    fn write_scratch(&mut self) -> Result<(), WalError> {
        if self.scratch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.scratch) {
            let path = self.current_path();
            return Err(self.fail(path, e));
        }
        let n = self.scratch.len() as u64;
        self.current_size += n;
        self.bytes_written += n;
        self.scratch.clear();
        Ok(())
    }

    /// Finishes the current segment and starts the next one.
    ///
    /// The old segment is fdatasync'd before the new file exists, so only the last segment
    /// can ever be torn by a crash; that is what lets the reader call a torn record in any
    /// other segment corruption.
    fn roll(&mut self) -> Result<(), WalError> {
        if let Err(e) = self.file.sync_data() {
            let path = self.current_path();
            return Err(self.fail(path, e));
        }
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let header = SegmentHeader {
            seq,
            first_index: self.next_index,
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            metadata: self.metadata.clone(),
        };
        let mut buf = Vec::new();
        record::encode_header(&mut buf, &header)
            .map_err(|reason| WalError::InvalidRecord { reason })?;
        let path = self.dir.join(segment_file_name(seq, self.next_index));
        let opened = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&buf).map(|()| f));
        let file = match opened {
            Ok(f) => f,
            Err(e) => return Err(self.fail(path, e)),
        };
        debug!(file = %path.display(), "started WAL segment");
        self.file = file;
        self.segments.push(SegmentInfo {
            seq,
            path,
            max_index: None,
        });
        self.current_size = buf.len() as u64;
        self.current_has_records = false;
        self.bytes_written += buf.len() as u64;
        self.dir_needs_sync = true;
        Ok(())
    }
}

/// Reads and verifies every segment in `dir`. Decides a repair but does not apply it.
fn load(dir: &Path, mode: Mode) -> Result<Loaded, WalError> {
    let files = list_segments(dir)?;
    if files.is_empty() {
        return Err(WalError::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    let mut records = Vec::new();
    let mut segments: Vec<SegmentInfo> = Vec::with_capacity(files.len());
    let mut metadata: Option<Vec<u8>> = None;
    let mut next_index = 0;
    let mut hard_state = None;
    let mut snapshot = None;
    let mut last_size = 0;
    let mut last_has_records = false;
    let mut repair = None;

    for (i, f) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let bytes = fs::read(&f.path).map_err(io_err(&f.path))?;
        let sc = scan(&f.path, &bytes, is_last)?;
        let corrupt = |reason: String| WalError::Corrupt {
            file: f.path.clone(),
            offset: 0,
            reason,
        };

        let Some(header) = sc.header else {
            // Only possible for the last segment: its header never fully reached the disk.
            let reason = match &sc.tail {
                Tail::Torn(reason) => reason.as_str(),
                Tail::Zeros => "the segment holds only zero bytes",
                Tail::Clean => "the segment has no header record",
            };
            if i == 0 {
                return Err(corrupt(format!(
                    "the only segment has no complete header ({reason}); the WAL's metadata \
                     is lost"
                )));
            }
            report_torn(mode, &f.path, 0, sc.file_len, reason, true);
            repair = Some(Repair::Remove {
                path: f.path.clone(),
            });
            break;
        };
        check_header(f, &header)?;

        match &metadata {
            None => {
                records.push(Record::Metadata(header.metadata.clone()));
                if let Some(s) = header.snapshot {
                    records.push(Record::Snapshot {
                        index: s.index,
                        term: s.term,
                    });
                }
                if let Some(hs) = header.hard_state {
                    records.push(Record::HardState {
                        term: hs.term,
                        vote: hs.vote,
                        commit: hs.commit,
                    });
                }
                next_index = header.first_index;
                hard_state = header.hard_state;
                snapshot = header.snapshot;
                metadata = Some(header.metadata);
            }
            Some(md) => {
                if *md != header.metadata {
                    return Err(corrupt(
                        "metadata differs from the previous segment's; the segment belongs to \
                         another member or cluster"
                            .to_string(),
                    ));
                }
                if header.first_index != next_index {
                    return Err(corrupt(format!(
                        "segment starts at index {} but the previous segment ends expecting \
                         index {next_index}",
                        header.first_index
                    )));
                }
                if header.hard_state != hard_state || header.snapshot != snapshot {
                    return Err(corrupt(format!(
                        "segment header carries hard state {:?} and snapshot {:?}, but the \
                         previous segments end with {hard_state:?} and {snapshot:?}",
                        header.hard_state, header.snapshot
                    )));
                }
            }
        }

        last_has_records = !sc.records.is_empty();
        for r in sc.records {
            match &r {
                Record::Entry { index, .. } => next_index = index.saturating_add(1),
                Record::HardState { term, vote, commit } => {
                    hard_state = Some(HardState {
                        term: *term,
                        vote: *vote,
                        commit: *commit,
                    })
                }
                Record::Snapshot { index, term } => {
                    snapshot = Some(SnapshotPoint {
                        index: *index,
                        term: *term,
                    })
                }
                Record::Metadata(_) => {}
            }
            records.push(r);
        }
        segments.push(SegmentInfo {
            seq: f.seq,
            path: f.path.clone(),
            max_index: sc.max_index,
        });
        last_size = sc.good_end;
        match &sc.tail {
            Tail::Clean => {}
            Tail::Zeros => {
                info!(
                    file = %f.path.display(),
                    offset = sc.good_end,
                    file_len = sc.file_len,
                    trimming = mode == Mode::Repair,
                    "WAL segment ends in zero-filled space (preallocation or an unfilled write)"
                );
                repair = Some(Repair::Truncate {
                    path: f.path.clone(),
                    to: sc.good_end,
                });
            }
            Tail::Torn(reason) => {
                report_torn(mode, &f.path, sc.good_end, sc.file_len, reason, false);
                repair = Some(Repair::Truncate {
                    path: f.path.clone(),
                    to: sc.good_end,
                });
            }
        }
    }

    Ok(Loaded {
        records,
        segments,
        metadata: metadata.unwrap_or_default(),
        next_index,
        hard_state,
        snapshot,
        last_size,
        last_has_records,
        repair,
    })
}

/// Checks that a header agrees with its file name, so a renamed or copied file is caught.
fn check_header(f: &SegmentFile, h: &SegmentHeader) -> Result<(), WalError> {
    if h.seq != f.seq || h.first_index != f.first_index {
        return Err(WalError::Corrupt {
            file: f.path.clone(),
            offset: 0,
            reason: format!(
                "header says sequence {:#x} and first index {:#x}, but the file name says \
                 sequence {:#x} and first index {:#x}",
                h.seq, h.first_index, f.seq, f.first_index
            ),
        });
    }
    Ok(())
}

/// Logs a crash artifact at the tail of the last segment.
fn report_torn(mode: Mode, path: &Path, offset: u64, file_len: u64, reason: &str, whole: bool) {
    let action = match (mode, whole) {
        (Mode::Repair, false) => "truncating the segment to the last good record",
        (Mode::Repair, true) => "removing the segment, which never got a complete header",
        (Mode::ReadOnly, _) => "read-only: leaving the file as it is and stopping there",
    };
    warn!(
        file = %path.display(),
        offset,
        file_len,
        reason,
        "torn write at the end of the WAL (the process stopped mid-write); {action}; \
         acknowledged records are not affected because only synced records are acknowledged"
    );
}
