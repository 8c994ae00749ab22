//! The in-memory key index: key → history of revisions (etcd's `treeIndex`).
//!
//! Holds no values (those stay in the backend, read by revision), so memory grows with the
//! number of keys and retained revisions, not with data size.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::key_index::KeyIndex;
use super::revision::Revision;

/// Which keys a request names, decoded from etcd's `(key, range_end)` convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRange<'a> {
    /// `range_end` empty: just `key`.
    Single(&'a [u8]),
    /// `range_end == "\0"`: every key >= `key` (with `key == "\0"`: every key).
    From(&'a [u8]),
    /// `[key, range_end)`; empty when `key >= range_end`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    /// Decodes etcd's convention.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }

    /// The keys of `map` inside this range, in order (empty for an inverted range).
    pub fn of<'m, V>(self, map: &'m BTreeMap<Vec<u8>, V>) -> btree_map::Range<'m, Vec<u8>, V> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = match self {
            KeyRange::Single(k) => (Bound::Included(k), Bound::Included(k)),
            KeyRange::From(k) => (Bound::Included(k), Bound::Unbounded),
            KeyRange::Between(k, e) if k < e => (Bound::Included(k), Bound::Excluded(e)),
            // BTreeMap::range panics on inverted bounds; [k, k) is valid and empty.
            KeyRange::Between(k, _) => (Bound::Included(k), Bound::Excluded(k)),
        };
        map.range::<[u8], _>(bounds)
    }
}

/// Every key with retained history, sorted by key.
#[derive(Debug, Default)]
pub(crate) struct Index {
    tree: BTreeMap<Vec<u8>, KeyIndex>,
    live: usize,
}

impl Index {
    /// Keys that exist at the newest revision.
    pub fn live_keys(&self) -> usize {
        self.live
    }

    /// Keys with any retained history (live or not).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Key indexes in `range`, in key order.
    pub fn range<'m>(&'m self, range: KeyRange<'_>) -> btree_map::Range<'m, Vec<u8>, KeyIndex> {
        range.of(&self.tree)
    }

    /// `key` at revision `at`: (modification revision, creation revision, version).
    pub fn get(&self, key: &[u8], at: i64) -> Option<(Revision, i64, i64)> {
        self.tree.get(key)?.get(at)
    }

    /// Revisions of the keys in `range` that exist at `at` (at most `limit`, 0 = all), and
    /// how many keys exist there regardless of `limit`.
    pub fn revisions(
        &self,
        range: KeyRange<'_>,
        at: i64,
        limit: usize,
    ) -> (Vec<(&[u8], Revision)>, usize) {
        let mut revs = Vec::new();
        let mut total = 0;
        for (key, ki) in self.range(range) {
            if let Some((rev, _, _)) = ki.get(at) {
                if limit == 0 || revs.len() < limit {
                    revs.push((key.as_slice(), rev));
                }
                total += 1;
            }
        }
        (revs, total)
    }

    /// Number of keys in `range` that exist at `at`.
    pub fn count(&self, range: KeyRange<'_>, at: i64) -> usize {
        self.range(range)
            .filter(|(_, ki)| ki.get(at).is_some())
            .count()
    }

    /// Records a put of `key` at `rev`.
    pub fn put(&mut self, key: &[u8], rev: Revision) {
        match self.tree.get_mut(key) {
            Some(ki) => {
                if !ki.is_live() {
                    self.live += 1;
                }
                ki.put(rev);
            }
            None => {
                self.tree.insert(key.to_vec(), KeyIndex::created(rev));
                self.live += 1;
            }
        }
    }

    /// Records a delete of `key` at `rev`; false if the key was not live (nothing changes).
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        let deleted = self.tree.get_mut(key).is_some_and(|ki| ki.tombstone(rev));
        if deleted {
            self.live -= 1;
        }
        deleted
    }

    /// Rebuild step for a put found in the backend (scanned in revision order). The first put
    /// seen for a key starts its history with the stored creation revision and version.
    pub fn restore_put(&mut self, key: &[u8], rev: Revision, create_revision: i64, version: i64) {
        match self.tree.get_mut(key) {
            Some(_) => self.put(key, rev),
            None => {
                self.tree.insert(
                    key.to_vec(),
                    KeyIndex::restored(create_revision, rev, version),
                );
                self.live += 1;
            }
        }
    }

    /// Rebuild step for a tombstone found in the backend. A tombstone with no earlier retained
    /// put (left by an interrupted compaction) is skipped, like etcd does.
    pub fn restore_tombstone(&mut self, key: &[u8], rev: Revision) {
        if self.tree.contains_key(key) && !self.tombstone(key, rev) {
            tracing::warn!(
                key = %String::from_utf8_lossy(key),
                revision = %rev,
                "tombstone of a key that is already deleted; ignored"
            );
        }
    }

    /// Compacts every key at `at` (see [`KeyIndex::compact`]), removing keys with nothing
    /// left. Returns the revisions <= `at` that must stay in the backend, sorted.
    pub fn compact(&mut self, at: i64) -> Vec<Revision> {
        let mut keep = Vec::new();
        self.tree.retain(|_, ki| {
            ki.compact(at, &mut keep);
            !ki.is_empty()
        });
        keep.sort_unstable();
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64, sub: i64) -> Revision {
        Revision::new(main, sub)
    }

    fn keys(idx: &Index, key: &[u8], end: &[u8], at: i64) -> Vec<Vec<u8>> {
        idx.revisions(KeyRange::new(key, end), at, 0)
            .0
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect()
    }

    #[test]
    fn range_forms() {
        let mut idx = Index::default();
        for (i, k) in [&b"\x00"[..], b"a", b"ab", b"b", b"\xff", b"\xff\xff"]
            .iter()
            .enumerate()
        {
            idx.put(k, r(2 + i as i64, 0));
        }
        let all: Vec<Vec<u8>> = vec![
            b"\x00".to_vec(),
            b"a".to_vec(),
            b"ab".to_vec(),
            b"b".to_vec(),
            b"\xff".to_vec(),
            b"\xff\xff".to_vec(),
        ];
        assert_eq!(keys(&idx, b"\x00", b"\x00", 100), all);
        assert_eq!(keys(&idx, b"a", b"", 100), vec![b"a".to_vec()]);
        assert_eq!(
            keys(&idx, b"a", b"b", 100),
            vec![b"a".to_vec(), b"ab".to_vec()]
        );
        assert_eq!(keys(&idx, b"b", b"\x00", 100), all[3..].to_vec());
        assert_eq!(keys(&idx, b"\xff", b"\x00", 100), all[4..].to_vec());
        assert!(keys(&idx, b"b", b"a", 100).is_empty());
        assert!(keys(&idx, b"b", b"b", 100).is_empty());
        assert!(keys(&idx, b"zz", b"", 100).is_empty());
        // at a revision before some keys existed
        assert_eq!(keys(&idx, b"\x00", b"\x00", 3), all[..2].to_vec());
        assert_eq!(idx.count(KeyRange::new(b"\x00", b"\x00"), 4), 3);
        let (revs, total) = idx.revisions(KeyRange::new(b"\x00", b"\x00"), 100, 2);
        assert_eq!(revs.len(), 2);
        assert_eq!(total, 6);
        assert_eq!(revs[1], (&b"a"[..], r(3, 0)));
    }

    #[test]
    fn live_count_and_compaction_removal() {
        let mut idx = Index::default();
        idx.put(b"a", r(2, 0));
        idx.put(b"b", r(2, 1));
        assert_eq!(idx.live_keys(), 2);
        assert!(idx.tombstone(b"a", r(3, 0)));
        assert!(!idx.tombstone(b"a", r(4, 0)));
        assert!(!idx.tombstone(b"zz", r(4, 0)));
        assert_eq!(idx.live_keys(), 1);
        idx.put(b"a", r(5, 0));
        assert_eq!(idx.live_keys(), 2);
        assert!(idx.tombstone(b"b", r(6, 0)));
        let keep = idx.compact(6);
        assert_eq!(keep, vec![r(5, 0)]);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.live_keys(), 1);
        assert_eq!(idx.get(b"a", 6).unwrap().0, r(5, 0));
    }
}
