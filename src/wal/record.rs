//! Record framing and payload encoding.
//!
//! Frame (all integers little-endian):
//!
//! ```text
//! type: u8 | crc32c: u32 | len: u32 | payload: [u8; len]
//! ```
//!
//! The CRC-32C covers `type`, the four `len` bytes and the payload, so a flipped bit in the
//! type or the length is caught as surely as one in the data. Type 0 is never written: a zero
//! byte where a record should start means zero-filled space (preallocation, or a write the
//! filesystem extended but never filled before a crash).
//!
//! Payloads:
//!
//! | type | record         | payload                                                        |
//! |------|----------------|----------------------------------------------------------------|
//! | 1    | segment header | version u32, seq u64, first_index u64, flags u8, [hard state], [snapshot], metadata (rest) |
//! | 2    | entry          | index u64, term u64, data (rest)                               |
//! | 3    | hard state     | term u64, vote u64, commit u64                                 |
//! | 4    | snapshot       | index u64, term u64                                            |
//!
//! In the segment header, flags bit 0 means a hard state (24 bytes) follows and bit 1 means a
//! snapshot point (16 bytes) follows; they carry the latest of each at the moment the segment
//! was started, so releasing older segments never loses them.

/// Bytes before the payload: type (1) + crc (4) + len (4).
pub(crate) const FRAME_HEADER_LEN: usize = 9;

/// Largest payload we write or accept. Far above any raft entry etcd allows (its request limit
/// is 1.5 MiB by default), and low enough that a corrupted length field is recognised as
/// corruption rather than sending the reader off to allocate gigabytes.
pub(crate) const MAX_PAYLOAD_LEN: usize = 256 << 20;

/// Bumped whenever the on-disk layout changes, so an old binary refuses a newer log instead
/// of misreading it.
pub(crate) const FORMAT_VERSION: u32 = 1;

pub(crate) const TYPE_SEGMENT_HEADER: u8 = 1;
pub(crate) const TYPE_ENTRY: u8 = 2;
pub(crate) const TYPE_HARD_STATE: u8 = 3;
pub(crate) const TYPE_SNAPSHOT: u8 = 4;

const FLAG_HARD_STATE: u8 = 1;
const FLAG_SNAPSHOT: u8 = 2;

/// One logical record of the log.
///
/// The WAL stays raft-agnostic (the raft storage layer encodes entries itself) but knows the
/// entry index, because that is what lets it name segments and release the ones a snapshot
/// has made unnecessary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Identity of the member that owns the log (member id, cluster id; opaque here). Given
    /// once to `Wal::create` and returned first by `open`; it is repeated in every segment
    /// header so a segment copied from another member is detected. It cannot be appended.
    Metadata(Vec<u8>),
    /// A raft log entry; `data` is the caller's encoding of the whole entry.
    Entry {
        /// Raft index of the entry.
        index: u64,
        /// Raft term of the entry.
        term: u64,
        /// The encoded raft entry.
        data: Vec<u8>,
    },
    /// Raft's HardState; the last one read is the current one.
    HardState {
        /// Current term.
        term: u64,
        /// Vote in that term (0 = none).
        vote: u64,
        /// Commit index.
        commit: u64,
    },
    /// A snapshot was taken at this point; entries up to `index` may have been released.
    Snapshot {
        /// Raft index the snapshot covers.
        index: u64,
        /// Raft term of that index.
        term: u64,
    },
}

/// The latest HardState, as carried in segment headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HardState {
    pub(crate) term: u64,
    pub(crate) vote: u64,
    pub(crate) commit: u64,
}

/// The latest snapshot point, as carried in segment headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotPoint {
    pub(crate) index: u64,
    pub(crate) term: u64,
}

/// The first record of every segment: makes each file self-describing and lets the reader
/// check that segments belong together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) seq: u64,
    pub(crate) first_index: u64,
    pub(crate) hard_state: Option<HardState>,
    pub(crate) snapshot: Option<SnapshotPoint>,
    pub(crate) metadata: Vec<u8>,
}

/// A decoded payload.
#[derive(Debug)]
pub(crate) enum Decoded {
    Header(SegmentHeader),
    Record(Record),
}

/// The CRC stored in a frame: over type, the little-endian length and the payload.
pub(crate) fn frame_crc(typ: u8, payload: &[u8]) -> u32 {
    // MAX_PAYLOAD_LEN < u32::MAX, and callers never pass more, so this cannot truncate.
    let len = (payload.len() as u32).to_le_bytes();
    let head = [typ, len[0], len[1], len[2], len[3]];
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

pub(crate) fn is_known_type(typ: u8) -> bool {
    matches!(
        typ,
        TYPE_SEGMENT_HEADER | TYPE_ENTRY | TYPE_HARD_STATE | TYPE_SNAPSHOT
    )
}

/// Refuses what `encode_record` cannot write, so `append` can check a whole batch before it
/// writes any of it.
pub(crate) fn check_appendable(rec: &Record) -> Result<(), String> {
    match rec {
        Record::Metadata(_) => Err("metadata is fixed when the WAL is created and is repeated \
                                    in every segment header; it cannot be appended"
            .to_string()),
        Record::Entry { index, data, .. } if data.len() > MAX_PAYLOAD_LEN - 16 => Err(format!(
            "entry {index} is {} bytes, above the {} byte record limit",
            data.len(),
            MAX_PAYLOAD_LEN - 16
        )),
        _ => Ok(()),
    }
}

/// Appends one framed record to `out`. Call `check_appendable` first.
pub(crate) fn encode_record(out: &mut Vec<u8>, rec: &Record) -> Result<(), String> {
    check_appendable(rec)?;
    match rec {
        Record::Metadata(_) => Ok(()), // refused by check_appendable
        Record::Entry { index, term, data } => {
            frame(out, TYPE_ENTRY, |p| {
                p.extend_from_slice(&index.to_le_bytes());
                p.extend_from_slice(&term.to_le_bytes());
                p.extend_from_slice(data);
            });
            Ok(())
        }
        Record::HardState { term, vote, commit } => {
            frame(out, TYPE_HARD_STATE, |p| {
                put_hard_state(
                    p,
                    HardState {
                        term: *term,
                        vote: *vote,
                        commit: *commit,
                    },
                )
            });
            Ok(())
        }
        Record::Snapshot { index, term } => {
            frame(out, TYPE_SNAPSHOT, |p| {
                put_snapshot(
                    p,
                    SnapshotPoint {
                        index: *index,
                        term: *term,
                    },
                )
            });
            Ok(())
        }
    }
}

/// Appends a framed segment header to `out`.
pub(crate) fn encode_header(out: &mut Vec<u8>, h: &SegmentHeader) -> Result<(), String> {
    if h.metadata.len() > MAX_PAYLOAD_LEN - 64 {
        return Err(format!(
            "metadata is {} bytes, above the {} byte limit",
            h.metadata.len(),
            MAX_PAYLOAD_LEN - 64
        ));
    }
    frame(out, TYPE_SEGMENT_HEADER, |p| {
        p.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        p.extend_from_slice(&h.seq.to_le_bytes());
        p.extend_from_slice(&h.first_index.to_le_bytes());
        let mut flags = 0;
        if h.hard_state.is_some() {
            flags |= FLAG_HARD_STATE;
        }
        if h.snapshot.is_some() {
            flags |= FLAG_SNAPSHOT;
        }
        p.push(flags);
        if let Some(hs) = h.hard_state {
            put_hard_state(p, hs);
        }
        if let Some(s) = h.snapshot {
            put_snapshot(p, s);
        }
        p.extend_from_slice(&h.metadata);
    });
    Ok(())
}

/// Decodes a payload whose frame (type, length, CRC) has already been checked. The error is
/// the reason for a `Corrupt`: a valid CRC over a malformed payload means a bug or a format
/// we do not know, never a crash.
pub(crate) fn decode(typ: u8, payload: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader { buf: payload };
    match typ {
        TYPE_SEGMENT_HEADER => {
            let version = r.u32("segment header")?;
            if version != FORMAT_VERSION {
                return Err(format!(
                    "segment format version {version} is not supported (this binary reads \
                     version {FORMAT_VERSION}); was the log written by a newer ferrocd?"
                ));
            }
            let seq = r.u64("segment header")?;
            let first_index = r.u64("segment header")?;
            let flags = r.u8("segment header")?;
            if flags & !(FLAG_HARD_STATE | FLAG_SNAPSHOT) != 0 {
                return Err(format!("segment header has unknown flags {flags:#04x}"));
            }
            let hard_state = if flags & FLAG_HARD_STATE != 0 {
                Some(HardState {
                    term: r.u64("segment header")?,
                    vote: r.u64("segment header")?,
                    commit: r.u64("segment header")?,
                })
            } else {
                None
            };
            let snapshot = if flags & FLAG_SNAPSHOT != 0 {
                Some(SnapshotPoint {
                    index: r.u64("segment header")?,
                    term: r.u64("segment header")?,
                })
            } else {
                None
            };
            Ok(Decoded::Header(SegmentHeader {
                seq,
                first_index,
                hard_state,
                snapshot,
                metadata: r.buf.to_vec(),
            }))
        }
        TYPE_ENTRY => {
            let index = r.u64("entry")?;
            let term = r.u64("entry")?;
            Ok(Decoded::Record(Record::Entry {
                index,
                term,
                data: r.buf.to_vec(),
            }))
        }
        TYPE_HARD_STATE => {
            let rec = Record::HardState {
                term: r.u64("hard state")?,
                vote: r.u64("hard state")?,
                commit: r.u64("hard state")?,
            };
            r.end("hard state")?;
            Ok(Decoded::Record(rec))
        }
        TYPE_SNAPSHOT => {
            let rec = Record::Snapshot {
                index: r.u64("snapshot")?,
                term: r.u64("snapshot")?,
            };
            r.end("snapshot")?;
            Ok(Decoded::Record(rec))
        }
        other => Err(format!("unknown record type {other}")),
    }
}

/// Writes a frame: placeholder header, payload, then the real length and CRC.
fn frame(out: &mut Vec<u8>, typ: u8, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    payload(out);
    let body = &out[start + FRAME_HEADER_LEN..];
    let len = (body.len() as u32).to_le_bytes();
    let crc = frame_crc(typ, body).to_le_bytes();
    out[start] = typ;
    out[start + 1..start + 5].copy_from_slice(&crc);
    out[start + 5..start + 9].copy_from_slice(&len);
}

fn put_hard_state(p: &mut Vec<u8>, hs: HardState) {
    p.extend_from_slice(&hs.term.to_le_bytes());
    p.extend_from_slice(&hs.vote.to_le_bytes());
    p.extend_from_slice(&hs.commit.to_le_bytes());
}

fn put_snapshot(p: &mut Vec<u8>, s: SnapshotPoint) {
    p.extend_from_slice(&s.index.to_le_bytes());
    p.extend_from_slice(&s.term.to_le_bytes());
}

/// Bounds-checked little-endian reader; errors name the record kind for the Corrupt reason.
struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        match self.buf.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.buf = rest;
                Ok(*head)
            }
            None => Err(format!("{what} record payload is too short")),
        }
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take::<1>(what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(what)?))
    }
    fn end(&self, what: &str) -> Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{what} record payload has {} unexpected trailing bytes",
                self.buf.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(rec: Record) {
        let mut buf = Vec::new();
        encode_record(&mut buf, &rec).expect("encodable");
        let len = u32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
        assert_eq!(buf.len(), FRAME_HEADER_LEN + len);
        let crc = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
        assert_eq!(crc, frame_crc(buf[0], &buf[FRAME_HEADER_LEN..]));
        match decode(buf[0], &buf[FRAME_HEADER_LEN..]).expect("decodable") {
            Decoded::Record(got) => assert_eq!(got, rec),
            Decoded::Header(h) => panic!("decoded a header: {h:?}"),
        }
    }

    #[test]
    fn record_kinds_roundtrip() {
        roundtrip(Record::Entry {
            index: 7,
            term: 3,
            data: b"hello".to_vec(),
        });
        roundtrip(Record::Entry {
            index: u64::MAX,
            term: 0,
            data: Vec::new(),
        });
        roundtrip(Record::HardState {
            term: 9,
            vote: 2,
            commit: 77,
        });
        roundtrip(Record::Snapshot {
            index: 1000,
            term: 4,
        });
    }

    #[test]
    fn header_roundtrip_with_and_without_carried_state() {
        for (hs, snap) in [
            (None, None),
            (
                Some(HardState {
                    term: 1,
                    vote: 2,
                    commit: 3,
                }),
                None,
            ),
            (
                Some(HardState {
                    term: 5,
                    vote: 0,
                    commit: 9,
                }),
                Some(SnapshotPoint { index: 8, term: 4 }),
            ),
        ] {
            let h = SegmentHeader {
                seq: 3,
                first_index: 42,
                hard_state: hs,
                snapshot: snap,
                metadata: b"member=1".to_vec(),
            };
            let mut buf = Vec::new();
            encode_header(&mut buf, &h).expect("encodable");
            assert_eq!(buf[0], TYPE_SEGMENT_HEADER);
            match decode(buf[0], &buf[FRAME_HEADER_LEN..]).expect("decodable") {
                Decoded::Header(got) => assert_eq!(got, h),
                Decoded::Record(r) => panic!("decoded a record: {r:?}"),
            }
        }
    }

    #[test]
    fn crc_covers_type_and_length() {
        let payload = b"abc";
        assert_ne!(frame_crc(2, payload), frame_crc(3, payload));
        assert_ne!(frame_crc(2, payload), frame_crc(2, b"abcd"));
    }

    #[test]
    fn metadata_cannot_be_appended_and_malformed_payloads_are_rejected() {
        let mut buf = Vec::new();
        let err = encode_record(&mut buf, &Record::Metadata(b"x".to_vec())).unwrap_err();
        assert!(err.contains("cannot be appended"), "{err}");
        assert!(buf.is_empty());
        assert!(decode(TYPE_HARD_STATE, &[0u8; 23])
            .unwrap_err()
            .contains("too short"));
        assert!(decode(TYPE_SNAPSHOT, &[0u8; 17])
            .unwrap_err()
            .contains("trailing"));
        assert!(decode(TYPE_ENTRY, &[0u8; 15])
            .unwrap_err()
            .contains("too short"));
        let mut bad_version = Vec::new();
        bad_version.extend_from_slice(&99u32.to_le_bytes());
        bad_version.extend_from_slice(&[0u8; 17]);
        assert!(decode(TYPE_SEGMENT_HEADER, &bad_version)
            .unwrap_err()
            .contains("version 99"));
        assert!(decode(9, b"")
            .unwrap_err()
            .contains("unknown record type 9"));
    }
}
