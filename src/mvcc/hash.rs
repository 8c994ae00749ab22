//! HashKV: a checksum of the key history up to a revision, equal on every member that applied
//! the same log, whatever its physical compaction has got to (the hash walks the in-memory
//! index, whose retained revisions are decided by the log alone).

use super::index::KeyRange;
use super::{MvccError, Store};

impl Store {
    /// CRC32C over every retained revision `<= rev` (0 = current): revision, then the value and
    /// its metadata, or a tombstone mark. Returns (hash, compact revision, revision hashed).
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), MvccError> {
        let cur = self.current_revision();
        let at = self.check_rev(rev, cur)?;
        let mut h = crc32c::crc32c(b"key");
        for (key, ki) in self.index.range(KeyRange::new(b"\0", b"\0")) {
            let gens = ki.generations();
            for (gi, g) in gens.iter().enumerate() {
                let last_gen = gi + 1 == gens.len();
                for (ri, r) in g.revs.iter().enumerate() {
                    if r.main > at {
                        break;
                    }
                    h = crc32c::crc32c_append(h, &r.to_bytes());
                    if !last_gen && ri + 1 == g.revs.len() {
                        h = crc32c::crc32c_append(h, b"t");
                        h = crc32c::crc32c_append(h, key);
                        continue;
                    }
                    let kv = self.read_kv(key, *r)?;
                    h = crc32c::crc32c_append(h, &kv.key);
                    h = crc32c::crc32c_append(h, &kv.value);
                    for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                        h = crc32c::crc32c_append(h, &n.to_be_bytes());
                    }
                }
            }
        }
        Ok((h, self.compact_revision().max(0), at))
    }
}
