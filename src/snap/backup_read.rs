//! Reading a backup file back ([`super::backup`]): every byte is checked against the sha256
//! trailer and every record is decoded before anything is trusted, so `snapshot status` and
//! `snapshot restore` refuse a truncated or corrupted file instead of restoring part of it.
//!
//! Files are read as a stream (bounded memory, whatever their size); record lengths are
//! checked against the bytes left before anything is allocated, so a flipped length byte is an
//! error, not a huge allocation.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::backup::{BackupHeader, ALIGN, HASH_LEN, HEADER_LEN, MAGIC};
use crate::schema::Bucket;

/// Why a backup file cannot be used; each names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file could not be opened or read.
    #[error("cannot read snapshot file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is something else (an etcd bbolt snapshot, a random file).
    #[error("{path} is not a ferrocd snapshot file: {detail}")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// How we know.
        detail: String,
    },
    /// The file is ours but cut short or altered.
    #[error(
        "snapshot file {path} is truncated or corrupted ({detail}); it cannot be used: \
         take a new snapshot with `etcdctl snapshot save`"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A record could not be written where it was going (restore).
    #[error("restoring {path}: {detail}")]
    Sink {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// What a verified backup holds (`ferrocdutl snapshot status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// The header the file starts with.
    pub header: BackupHeader,
    /// Records of every bucket (etcd's "total keys" counts every bucket's keys too).
    pub records: u64,
    /// Records of the key bucket (revisions of user keys, tombstones included).
    pub key_revisions: u64,
    /// The newest revision found in the key bucket (0 when it is empty).
    pub max_key_revision: i64,
    /// CRC-32C of the record bytes: equal for two files holding the same records.
    pub crc32c: u32,
    /// The file's size in bytes.
    pub size: u64,
    /// The sha256 trailer, hex.
    pub sha256: String,
}

/// Reads only the bytes of the record section, hashing them (sha256 of the file content and
/// CRC-32C of the records) on the way.
struct Hashing<R> {
    inner: R,
    sha: Sha256,
    crc: u32,
    left: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if max == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended early",
            ));
        }
        self.sha.update(&buf[..n]);
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// One decoded record.
type Record = (Bucket, Vec<u8>, Vec<u8>);

/// Reads the next record, or None at the end of the record section.
fn next_record<R: Read>(r: &mut Hashing<R>) -> Result<Option<Record>, String> {
    if r.left == 0 {
        return Ok(None);
    }
    let mut id = [0u8; 1];
    r.read_exact(&mut id).map_err(|e| e.to_string())?;
    if id[0] == 0 {
        // Padding: zeros to the end of the section, shorter than the alignment.
        let mut pad = Vec::with_capacity(r.left as usize);
        if r.left >= ALIGN {
            return Err(format!("{} bytes of padding", r.left + 1));
        }
        r.read_to_end(&mut pad).map_err(|e| e.to_string())?;
        if pad.iter().any(|b| *b != 0) {
            return Err("padding holds non-zero bytes".into());
        }
        return Ok(None);
    }
    let bucket = Bucket::ALL
        .into_iter()
        .find(|b| b.id() == id[0])
        .ok_or_else(|| format!("unknown bucket id {}", id[0]))?;
    let mut field = |what: &str| -> Result<Vec<u8>, String> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)
            .map_err(|e| format!("{what} length: {e}"))?;
        let len = u32::from_le_bytes(len) as u64;
        if len > r.left {
            return Err(format!(
                "a {what} of {len} bytes runs past the end of the records ({} bytes left)",
                r.left
            ));
        }
        let mut b = vec![0u8; len as usize];
        r.read_exact(&mut b).map_err(|e| format!("{what}: {e}"))?;
        Ok(b)
    };
    let key = field("key")?;
    let value = field("value")?;
    Ok(Some((bucket, key, value)))
}

/// Checks the whole file: header, every record, the sha256 trailer.
pub fn verify(path: &Path) -> Result<BackupInfo, BackupError> {
    read_records(path, |_, _, _| Ok(()))
}

/// Reads a backup and hands each record to `visit` in file order, then checks the trailer.
/// `visit` sees records before the trailer is checked: call [`verify`] first when records are
/// written anywhere that must not receive a damaged file's content.
pub fn read_records(
    path: &Path,
    mut visit: impl FnMut(Bucket, &[u8], &[u8]) -> Result<(), String>,
) -> Result<BackupInfo, BackupError> {
    let io_err = |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |detail: String| BackupError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);

    // The magic first: a file that is not ours gets said so, not "corrupted".
    let mut head = vec![0u8; (size as usize).min(HEADER_LEN)];
    reader.read_exact(&mut head).map_err(io_err)?;
    let magic_len = head.len().min(MAGIC.len());
    if head[..magic_len] != MAGIC[..magic_len] {
        return Err(BackupError::Foreign {
            path: path.to_path_buf(),
            detail: "it does not start with ferrocd's snapshot magic (an etcd bbolt snapshot \
                     cannot be restored by ferrocd)"
                .into(),
        });
    }
    if size == 0 {
        return Err(corrupt("the file is empty".into()));
    }
    if size < (HEADER_LEN + HASH_LEN) as u64 {
        return Err(corrupt(format!(
            "it has {size} bytes, fewer than the {} of an empty snapshot",
            HEADER_LEN + HASH_LEN
        )));
    }
    if !(size - HASH_LEN as u64).is_multiple_of(ALIGN) {
        return Err(corrupt(format!(
            "it has {size} bytes, not whole {ALIGN}-byte blocks plus the {HASH_LEN}-byte checksum \
             that every snapshot has: it was cut short or extended"
        )));
    }
    let mut sha = Sha256::new();
    sha.update(&head);
    let mut r = Hashing {
        inner: reader,
        sha,
        crc: 0,
        left: size - (HEADER_LEN + HASH_LEN) as u64,
    };

    let (mut records, mut key_revisions, mut max_key_revision) = (0u64, 0u64, 0i64);
    let header = BackupHeader::decode(&head);
    let mut failure: Option<String> = None;
    if let Err(e) = &header {
        failure = Some(format!("bad header: {e}"));
    }
    while failure.is_none() {
        let at = size - HASH_LEN as u64 - r.left;
        match next_record(&mut r) {
            Ok(None) => break,
            Ok(Some((bucket, key, value))) => {
                records += 1;
                if bucket == Bucket::Key {
                    key_revisions += 1;
                    if let Some(main) = key.get(..8) {
                        let main = u64::from_be_bytes(main.try_into().expect("8 bytes")) as i64;
                        max_key_revision = max_key_revision.max(main);
                    }
                }
                if let Err(e) = visit(bucket, &key, &value) {
                    return Err(BackupError::Sink {
                        path: path.to_path_buf(),
                        detail: e,
                    });
                }
            }
            Err(e) => failure = Some(format!("record at byte {at}: {e}")),
        }
    }
    // Hash whatever is left so a damaged file is reported by its checksum first.
    io::copy(&mut r, &mut io::sink()).map_err(io_err)?;
    let mut trailer = [0u8; HASH_LEN];
    r.inner.read_exact(&mut trailer).map_err(io_err)?;
    let computed = std::mem::take(&mut r.sha).finalize();
    if computed.as_slice() != trailer {
        return Err(corrupt(format!(
            "its content hashes to sha256 {} but it ends with {}",
            hex(&computed),
            hex(&trailer)
        )));
    }
    if let Some(f) = failure {
        return Err(corrupt(f));
    }
    let header = header.expect("a header error is reported above");
    if max_key_revision > header.revision {
        return Err(corrupt(format!(
            "it holds revision {max_key_revision} but says it was taken at revision {}",
            header.revision
        )));
    }
    Ok(BackupInfo {
        header,
        records,
        key_revisions,
        max_key_revision,
        crc32c: r.crc,
        size,
        sha256: hex(&trailer),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snap::backup::BackupEncoder;

    fn write_backup(dir: &Path, n: u32) -> PathBuf {
        let header = BackupHeader {
            revision: n as i64 + 1,
            index: 9,
            term: 2,
            cluster_id: 1,
            member_id: 2,
            created_unix_ms: 3,
        };
        let mut enc = BackupEncoder::new(&header, 100);
        let mut out = Vec::new();
        for i in 0..n {
            let rev = crate::mvcc::Revision::new(i as i64 + 2, 0).to_bytes();
            if let Some(c) = enc.push(Bucket::Key, &rev, format!("v{i}").as_bytes()) {
                out.extend(c);
            }
        }
        if let Some(c) = enc.push(Bucket::Meta, b"m", b"x") {
            out.extend(c);
        }
        out.extend(enc.finish());
        let path = dir.join("b.db");
        std::fs::write(&path, out).unwrap();
        path
    }

    #[test]
    fn a_good_file_verifies_and_replays_its_records() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_backup(tmp.path(), 50);
        let info = verify(&path).unwrap();
        assert_eq!(info.records, 51);
        assert_eq!(info.key_revisions, 50);
        assert_eq!(info.max_key_revision, 51);
        assert_eq!(info.header.revision, 51);
        assert_eq!(info.size, std::fs::metadata(&path).unwrap().len());
        let mut seen = Vec::new();
        read_records(&path, |b, k, v| {
            seen.push((b, k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 51);
        assert_eq!(seen[0].2, b"v0");
        assert_eq!(seen[50], (Bucket::Meta, b"m".to_vec(), b"x".to_vec()));
    }

    #[test]
    fn truncated_flipped_and_foreign_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_backup(tmp.path(), 50);
        let good = std::fs::read(&path).unwrap();
        for cut in [1, 31, 32, 33, 500, good.len() - HEADER_LEN] {
            std::fs::write(&path, &good[..good.len() - cut]).unwrap();
            let e = verify(&path).unwrap_err();
            assert!(matches!(e, BackupError::Corrupt { .. }), "cut {cut}: {e}");
            assert!(e.to_string().contains("truncated or corrupted"), "{e}");
        }
        for at in [9, HEADER_LEN + 3, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let e = verify(&path).unwrap_err();
            assert!(
                matches!(e, BackupError::Corrupt { .. }),
                "flip at {at}: {e}"
            );
        }
        std::fs::write(&path, b"\0\0\0\0\0\0\0\0bolt file").unwrap();
        let e = verify(&path).unwrap_err();
        assert!(e.to_string().contains("not a ferrocd snapshot"), "{e}");
        std::fs::write(&path, b"").unwrap();
        assert!(verify(&path)
            .unwrap_err()
            .to_string()
            .contains("the file is empty"));
        let e = verify(&tmp.path().join("missing")).unwrap_err();
        assert!(matches!(e, BackupError::Io { .. }), "{e}");
    }
}
