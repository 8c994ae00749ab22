//! How much disk the database really takes.
//!
//! fjall preallocates its journal files (sparse) and deletes obsolete tables only when their
//! last reader is gone, so neither the sum of file lengths nor the engine's own accounting is
//! what an operator sees with `du`; the allocated blocks are.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes allocated on disk by every file under `dir` (0 for what cannot be read: a file
/// deleted while we walk is simply not counted).
pub(super) fn allocated_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&e.path()),
            // `blocks` counts 512-byte units, and may exceed the length by a partial block.
            Ok(m) => (m.blocks() * 512).min(m.len().next_multiple_of(4096)),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_written_bytes_not_holes() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), vec![1u8; 100_000]).unwrap();
        let sparse = std::fs::File::create(tmp.path().join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::fs::write(tmp.path().join("sub/b"), vec![2u8; 50_000]).unwrap();
        let n = allocated_bytes(tmp.path());
        assert!((150_000..=160_000).contains(&n), "{n}");
    }
}
