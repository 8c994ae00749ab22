//! Leases in the backend's lease bucket: one `LeaseRecord` per lease, keyed by its id as eight
//! big-endian bytes (etcd's layout), written in the applier's batch with the change that made it.

use prost::Message as _;

use crate::backend::{Backend, BackendError, WriteBatch};
use crate::proto::ferrocdpb::LeaseRecord;
use crate::schema::{lease_key, Bucket};

/// Writes (or overwrites) a lease.
pub(super) fn save(batch: &mut WriteBatch, rec: &LeaseRecord) {
    batch.put(Bucket::Lease, &lease_key(rec.id), rec.encode_to_vec());
}

/// Deletes a lease.
pub(super) fn delete(batch: &mut WriteBatch, id: i64) {
    batch.delete(Bucket::Lease, &lease_key(id));
}

/// Every lease in the backend. A record that does not decode is reported, not skipped: a lease
/// silently lost would let its keys live forever.
pub(super) fn load_all(backend: &Backend) -> Result<Vec<LeaseRecord>, BackendError> {
    let mut out = Vec::new();
    for item in backend.range(Bucket::Lease, b"", None) {
        let (k, v) = item?;
        match LeaseRecord::decode(&v[..]) {
            Ok(rec) => out.push(rec),
            Err(e) => {
                return Err(BackendError::Corrupt {
                    dir: backend.dir().to_path_buf(),
                    detail: format!("lease record {} does not decode: {e}", hex_key(&k)),
                })
            }
        }
    }
    Ok(out)
}

fn hex_key(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}
