//! Reading past changes straight from the backend (for watchers catching up).

use super::kv::decode_ref;
use super::{Event, EventType, KeyValue, MvccError, Revision};
use crate::backend::Backend;
use crate::schema::Bucket;

/// The changes of revisions `from_rev..=to_rev` in revision order, read lazily from the
/// backend so a watcher far behind is caught up in bounded memory.
///
/// Events carry no `prev_kv` (a watcher that wants it reads the key at `rev - 1`). Only
/// revisions above the compaction revision are complete; older ones may be partly gone.
pub fn events_between(
    backend: &Backend,
    from_rev: i64,
    to_rev: i64,
) -> impl Iterator<Item = Result<(Revision, Event), MvccError>> + Send + 'static {
    let start = Revision::new(from_rev.max(0), 0).to_bytes();
    let end = to_rev
        .checked_add(1)
        .map(|e| Revision::new(e.max(0), 0).to_bytes());
    backend
        .range(Bucket::Key, &start, end.as_ref().map(|e| &e[..]))
        .map(|item| {
            let (k, v) = item?;
            let (rev, tombstone) = Revision::parse_key(&k)?;
            let kv = decode_ref(&v)?;
            let event = if tombstone {
                Event {
                    kind: EventType::Delete,
                    kv: KeyValue {
                        key: kv.key.to_vec(),
                        mod_revision: rev.main,
                        ..KeyValue::default()
                    },
                    prev_kv: None,
                }
            } else {
                Event {
                    kind: EventType::Put,
                    kv: kv.to_owned(),
                    prev_kv: None,
                }
            };
            Ok((rev, event))
        })
}
