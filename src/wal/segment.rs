//! Segment files: naming, listing, and scanning one file's bytes into records.
//!
//! Scanning only classifies; it never touches the file. Whether a torn tail is repaired is
//! decided by the caller (`open` repairs, `read_only` only warns), after every segment has
//! been verified, so a corrupt log is never modified.

use std::fs;
use std::path::{Path, PathBuf};

use super::record::{
    decode, frame_crc, is_known_type, Decoded, Record, SegmentHeader, FRAME_HEADER_LEN,
    MAX_PAYLOAD_LEN,
};
use super::WalError;

/// Granularity at which a disk or filesystem can lose a write. A crash can leave an aligned
/// run of this many zero bytes where unsynced data should be.
const SECTOR: usize = 512;

/// A segment file found in the WAL directory.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub(crate) seq: u64,
    pub(crate) first_index: u64,
    pub(crate) path: PathBuf,
}

/// `{seq:016x}-{first_index:016x}.wal`, like etcd, so names sort in log order.
pub(crate) fn segment_file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

/// Inverse of `segment_file_name`; `None` for anything else.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, rest) = stem.split_at_checked(16)?;
    let first = rest.strip_prefix('-')?;
    let hex16 = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex16(seq) || !hex16(first) {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

/// True if `dir` holds at least one `*.wal` file. Errors (e.g. no such directory) mean no.
pub(crate) fn any_wal_file(dir: &Path) -> bool {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".wal"))),
        Err(_) => false,
    }
}

/// The segments in `dir`, in sequence order, checked to be a gap-free run (the first may be
/// above 0 once older segments were released).
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, WalError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(WalError::NotFound {
                dir: dir.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(WalError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut segs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| WalError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(".wal") {
            continue;
        }
        match parse_segment_name(name) {
            Some((seq, first_index)) => segs.push(SegmentFile {
                seq,
                first_index,
                path: entry.path(),
            }),
            None => return Err(WalError::UnexpectedFile { path: entry.path() }),
        }
    }
    segs.sort_by_key(|s| s.seq);
    for pair in segs.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        if next.seq == prev.seq {
            return Err(WalError::Corrupt {
                file: next.path.clone(),
                offset: 0,
                reason: format!(
                    "two segments have sequence number {:#x} ({} and this one)",
                    next.seq,
                    prev.path.display()
                ),
            });
        }
        if next.seq != prev.seq + 1 {
            return Err(WalError::Corrupt {
                file: next.path.clone(),
                offset: 0,
                reason: format!(
                    "segment sequence gap: {} is followed by sequence {:#x}, so segment(s) \
                     {:#x}..{:#x} are missing",
                    prev.path.display(),
                    next.seq,
                    prev.seq + 1,
                    next.seq - 1
                ),
            });
        }
    }
    Ok(segs)
}

/// How a segment's bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The last record ends exactly at end of file.
    Clean,
    /// Only zero bytes follow the last record (preallocated or never-filled space).
    Zeros,
    /// The bytes after the last good record are a write cut short by a crash.
    Torn(String),
}

/// The result of scanning one segment.
#[derive(Debug)]
pub(crate) struct Scan {
    /// `None` only for a last segment whose header never fully reached the disk.
    pub(crate) header: Option<SegmentHeader>,
    /// The records after the header, in order.
    pub(crate) records: Vec<Record>,
    /// The highest entry index in this segment (release_to needs it).
    pub(crate) max_index: Option<u64>,
    /// Offset just past the last good record: where a repair truncates to.
    pub(crate) good_end: u64,
    /// Length of the file as read.
    pub(crate) file_len: u64,
    pub(crate) tail: Tail,
}

/// Parses and verifies one segment's bytes.
///
/// Crash artifacts (`Tail::Zeros`, `Tail::Torn`) are accepted only when `is_last`: segments
/// are fsync'd completely before the next one is created, so in any earlier segment they
/// are corruption.
///
/// A torn write is: a record cut short by end of file; a record type 0 at a sector boundary
/// whose sector is all zeros; or a CRC mismatch on a record overlapping an all-zero aligned
/// sector. The last two are what a power loss leaves on filesystems that extend a file's
/// size before its data reaches the disk (XFS, ext4 data=writeback); etcd treats them the
/// same way. Any other CRC mismatch is corruption.
pub(crate) fn scan(path: &Path, buf: &[u8], is_last: bool) -> Result<Scan, WalError> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut header: Option<SegmentHeader> = None;
    let mut records = Vec::new();
    let mut max_index: Option<u64> = None;
    let mut off = 0usize;

    let tail = loop {
        let rest = &buf[off..];
        let Some(&typ) = rest.first() else {
            break Tail::Clean;
        };
        if typ == 0 {
            if rest.iter().all(|&b| b == 0) {
                break Tail::Zeros;
            }
            if off.is_multiple_of(SECTOR) && sector_is_zero(buf, off) {
                break Tail::Torn(
                    "a zero-filled sector (a write lost in a crash) followed by more bytes"
                        .to_string(),
                );
            }
            return Err(corrupt(
                off,
                "record type 0 (zero bytes) followed by non-zero data".to_string(),
            ));
        }
        if !is_known_type(typ) {
            return Err(corrupt(off, format!("unknown record type {typ}")));
        }
        if rest.len() < FRAME_HEADER_LEN {
            break Tail::Torn(format!(
                "record header cut short by end of file ({} of {FRAME_HEADER_LEN} bytes)",
                rest.len()
            ));
        }
        let stored_crc = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]);
        let len = u32::from_le_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
        if len > MAX_PAYLOAD_LEN {
            return Err(corrupt(
                off,
                format!("record length {len} is above the {MAX_PAYLOAD_LEN} byte limit"),
            ));
        }
        let avail = rest.len() - FRAME_HEADER_LEN;
        if avail < len {
            break Tail::Torn(format!(
                "record data cut short by end of file ({avail} of {len} bytes)"
            ));
        }
        let end = off + FRAME_HEADER_LEN + len;
        let payload = &buf[off + FRAME_HEADER_LEN..end];
        let actual_crc = frame_crc(typ, payload);
        if actual_crc != stored_crc {
            if overlaps_zero_sector(buf, off, end) {
                break Tail::Torn(
                    "CRC mismatch on a record containing a zero-filled sector (a write lost in \
                     a crash)"
                        .to_string(),
                );
            }
            return Err(corrupt(
                off,
                format!(
                    "CRC mismatch (stored {stored_crc:#010x}, computed {actual_crc:#010x}) on a \
                     record of type {typ} and length {len}"
                ),
            ));
        }
        match decode(typ, payload).map_err(|reason| corrupt(off, reason))? {
            Decoded::Header(h) => {
                if off != 0 {
                    return Err(corrupt(
                        off,
                        "segment header record in the middle of a segment".to_string(),
                    ));
                }
                header = Some(h);
            }
            Decoded::Record(r) => {
                if header.is_none() {
                    return Err(corrupt(
                        0,
                        "segment does not start with a header record".to_string(),
                    ));
                }
                if let Record::Entry { index, .. } = r {
                    max_index = Some(max_index.map_or(index, |m: u64| m.max(index)));
                }
                records.push(r);
            }
        }
        off = end;
    };

    let tail = match (tail, header.is_some()) {
        (Tail::Clean, false) => Tail::Torn("the segment is empty".to_string()),
        (t, _) => t,
    };
    if !is_last {
        let what = match &tail {
            Tail::Clean => None,
            Tail::Zeros => Some("zero bytes where the next record should start".to_string()),
            Tail::Torn(reason) => Some(reason.clone()),
        };
        if let Some(what) = what {
            return Err(corrupt(
                off,
                format!(
                    "{what}, in a segment that is not the last one; a segment is synced in full \
                     before the next is created, so a crash cannot cause this"
                ),
            ));
        }
    }
    Ok(Scan {
        header,
        records,
        max_index,
        good_end: off as u64,
        file_len: buf.len() as u64,
        tail,
    })
}

/// True if the aligned sector starting at `start` is all zeros (clipped at end of file).
fn sector_is_zero(buf: &[u8], start: usize) -> bool {
    let end = (start + SECTOR).min(buf.len());
    start < end && buf[start..end].iter().all(|&b| b == 0)
}

/// True if some aligned sector overlapping `[start, end)` is entirely zero. Whole sectors
/// are checked, not just the record's part of them, because a lost write zeroes whole
/// sectors; a few zero bytes inside a record prove nothing.
fn overlaps_zero_sector(buf: &[u8], start: usize, end: usize) -> bool {
    let mut s = start - start % SECTOR;
    while s < end {
        if sector_is_zero(buf, s) {
            return true;
        }
        s += SECTOR;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_reject_lookalikes() {
        let n = segment_file_name(0x12, 0xabc);
        assert_eq!(n, "0000000000000012-0000000000000abc.wal");
        assert_eq!(parse_segment_name(&n), Some((0x12, 0xabc)));
        assert_eq!(
            parse_segment_name("ffffffffffffffff-ffffffffffffffff.wal"),
            Some((u64::MAX, u64::MAX))
        );
        for bad in [
            "0000000000000012-0000000000000abc.wal.tmp",
            "000000000000012-0000000000000abc.wal",
            "+000000000000012-0000000000000abc.wal",
            "0000000000000012_0000000000000abc.wal",
            "00000000000000g2-0000000000000abc.wal",
            "x.wal",
            "",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn zero_sector_detection_is_sector_aligned() {
        let mut buf = vec![1u8; 2048];
        assert!(!overlaps_zero_sector(&buf, 0, 2048));
        buf[600..1024].fill(0); // partial sector of zeros: not a lost write
        assert!(!overlaps_zero_sector(&buf, 0, 2048));
        buf[512..600].fill(0); // now sector 512..1024 is all zero
        assert!(overlaps_zero_sector(&buf, 100, 513));
        assert!(!overlaps_zero_sector(&buf, 1024, 2048));
        // clipped last sector
        let mut short = vec![1u8; 1100];
        short[1024..].fill(0);
        assert!(overlaps_zero_sector(&short, 1000, 1100));
    }
}
