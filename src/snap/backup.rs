//! The backup file (`etcdctl snapshot save`): a point-in-time copy of one member's backend that
//! `ferrocdutl snapshot restore` turns into a new cluster.
//!
//! Layout — the raft snapshot's record format ([`super::codec`]) between a small header and
//! etcd's trailer:
//!
//! ```text
//! magic "FRCDBAK\0" (8) | header fields (see BackupHeader, little-endian) | records ...
//!   | padding: one 0 byte and zeros, up to a multiple of 512 | sha256 (32)
//! ```
//!
//! The sha256 covers every byte before it. etcd appends the same trailer to the stream it
//! sends, so a file cut short (a dropped connection, a full disk) or flipped on disk never
//! restores silently: the last 32 bytes no longer match the rest. The padding is for etcdctl:
//! it accepts a download only if `size % 512 == 32` (a bbolt file is whole pages plus the
//! hash), so the content before the hash is made a multiple of 512 bytes.

use sha2::{Digest, Sha256};

use super::codec;
use crate::schema::Bucket;

/// The first bytes of every backup file; tells a ferrocd backup from an etcd (bbolt) one.
pub const MAGIC: [u8; 8] = *b"FRCDBAK\0";
/// The layout version written after the magic; readers refuse versions they do not know.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the header: magic, version and six 8-byte fields.
pub const HEADER_LEN: usize = 8 + 4 + 6 * 8;
/// Bytes of the sha256 trailer.
pub const HASH_LEN: usize = 32;
/// The content before the trailer is padded to a multiple of this (see the module doc).
pub const ALIGN: u64 = 512;

/// The length of a whole backup whose header and records take `content` bytes.
pub fn stream_len(content: u64) -> u64 {
    content.div_ceil(ALIGN) * ALIGN + HASH_LEN as u64
}

/// What a backup says about itself, so `snapshot status` and `restore` need not guess.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupHeader {
    /// The MVCC revision the copy is exactly at.
    pub revision: i64,
    /// The raft index applied into the copy.
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// The cluster the copy was taken from (a restore makes a new one).
    pub cluster_id: u64,
    /// The member that streamed it.
    pub member_id: u64,
    /// When the copy was taken, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
}

impl BackupHeader {
    /// The header's bytes, magic first.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for v in [
            self.revision as u64,
            self.index,
            self.term,
            self.cluster_id,
            self.member_id,
            self.created_unix_ms,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses the first [`HEADER_LEN`] bytes of a file; the error says why it is not ours.
    pub fn decode(b: &[u8]) -> Result<BackupHeader, String> {
        if b.len() < HEADER_LEN {
            return Err(format!(
                "it has {} bytes, fewer than a snapshot header",
                b.len()
            ));
        }
        if b[..8] != MAGIC {
            return Err(
                "it does not start with ferrocd's snapshot magic (an etcd bbolt \
                        snapshot cannot be restored by ferrocd)"
                    .into(),
            );
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(format!(
                "it has format version {version}; this ferrocdutl reads version {FORMAT_VERSION}"
            ));
        }
        let field = |i: usize| {
            let at = 12 + i * 8;
            u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
        };
        Ok(BackupHeader {
            revision: field(0) as i64,
            index: field(1),
            term: field(2),
            cluster_id: field(3),
            member_id: field(4),
            created_unix_ms: field(5),
        })
    }
}

/// Bytes one record takes in the file (what [`codec::encode`] writes).
pub fn record_len(key: &[u8], value: &[u8]) -> u64 {
    (1 + 4 + key.len() + 4 + value.len()) as u64
}

/// Writes a backup as a sequence of chunks: the header, records, and finally the sha256
/// trailer. Chunks are about `chunk_bytes` long so a server can stream a large backend with
/// bounded memory.
pub struct BackupEncoder {
    hasher: Sha256,
    buf: Vec<u8>,
    chunk_bytes: usize,
    written: u64,
}

impl BackupEncoder {
    /// Starts a backup with `header`.
    pub fn new(header: &BackupHeader, chunk_bytes: usize) -> BackupEncoder {
        let mut buf = Vec::with_capacity(chunk_bytes + 4096);
        buf.extend_from_slice(&header.encode());
        BackupEncoder {
            hasher: Sha256::new(),
            buf,
            chunk_bytes: chunk_bytes.max(1),
            written: 0,
        }
    }

    /// Adds a record; returns a full chunk when one is ready to send.
    pub fn push(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        codec::encode(&mut self.buf, bucket, key, value);
        (self.buf.len() >= self.chunk_bytes).then(|| self.take())
    }

    /// Ends the backup: the last chunk, with the padding and the sha256 of everything before.
    pub fn finish(mut self) -> Vec<u8> {
        let content = self.written + self.buf.len() as u64;
        let padded = content.div_ceil(ALIGN) * ALIGN;
        // Padding starts with a 0 byte, which no bucket id is, so readers know where records end.
        self.buf
            .resize(self.buf.len() + (padded - content) as usize, 0);
        let mut last = self.take();
        let hash = std::mem::take(&mut self.hasher).finalize();
        last.extend_from_slice(&hash);
        self.written += HASH_LEN as u64;
        last
    }

    /// Bytes handed out so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn take(&mut self) -> Vec<u8> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk_bytes + 4096));
        self.hasher.update(&chunk);
        self.written += chunk.len() as u64;
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BackupHeader {
        BackupHeader {
            revision: 42,
            index: 7,
            term: 3,
            cluster_id: 0xabc,
            member_id: 0xdef,
            created_unix_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn header_round_trips_and_foreign_files_are_named() {
        let h = header();
        let b = h.encode();
        assert_eq!(b.len(), HEADER_LEN);
        assert_eq!(BackupHeader::decode(&b).unwrap(), h);
        let mut bolt = b.clone();
        bolt[0] = 0;
        assert!(BackupHeader::decode(&bolt)
            .unwrap_err()
            .contains("bbolt snapshot"));
        let mut future = b.clone();
        future[8] = 9;
        assert!(BackupHeader::decode(&future)
            .unwrap_err()
            .contains("format version 9"));
        assert!(BackupHeader::decode(&b[..10])
            .unwrap_err()
            .contains("fewer than"));
    }

    #[test]
    fn chunks_concatenate_to_header_records_and_hash() {
        let mut enc = BackupEncoder::new(&header(), 64);
        let mut out = Vec::new();
        let mut records = 0;
        for i in 0..20u32 {
            let k = i.to_be_bytes();
            if let Some(c) = enc.push(Bucket::Key, &k, b"some value") {
                assert!(c.len() >= 64);
                out.extend_from_slice(&c);
            }
            records += record_len(&k, b"some value");
        }
        let written_before = enc.written();
        let last = enc.finish();
        out.extend_from_slice(&last);
        assert_eq!(out.len() as u64, stream_len(HEADER_LEN as u64 + records));
        assert_eq!(
            out.len() as u64 % ALIGN,
            HASH_LEN as u64,
            "etcdctl's size check"
        );
        assert!(written_before < out.len() as u64);
        let (content, hash) = out.split_at(out.len() - HASH_LEN);
        assert_eq!(Sha256::digest(content).as_slice(), hash);
        let (b, k, v, _) = codec::decode(&content[HEADER_LEN..]).unwrap();
        assert_eq!(
            (b, k, v),
            (Bucket::Key, &0u32.to_be_bytes()[..], &b"some value"[..])
        );
    }
}
