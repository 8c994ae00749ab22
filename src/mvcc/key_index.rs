//! The history of one key: generations of revisions (etcd's `keyIndex`).
//!
//! A generation runs from the put that creates the key to the tombstone that deletes it; the
//! last generation is empty while the key is deleted. For example
//! `put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0)` gives
//! `[{1.0, 2.0, 3.0(t)}, {4.0, 5.0(t)}, {}]`.

use super::revision::Revision;

/// Revisions of one key from creation to (optionally) deletion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    /// Version of the newest revision in `revs` (kept across compaction, which trims `revs`).
    pub ver: i64,
    /// Main revision of the put that created this generation (etcd keeps a full revision but
    /// only ever uses its main part; this saves 8 bytes per generation).
    pub created: i64,
    /// Ascending; the last one is the tombstone when this is not the key's last generation.
    pub revs: Vec<Revision>,
}

impl Generation {
    /// Index of the newest revision with `main <= at`.
    fn find(&self, at: i64) -> Option<usize> {
        self.revs.partition_point(|r| r.main <= at).checked_sub(1)
    }
}

/// All retained generations of one key. Never empty; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    generations: Vec<Generation>,
}

impl KeyIndex {
    /// A key seen for the first time at a put.
    pub fn created(rev: Revision) -> Self {
        KeyIndex {
            generations: vec![Generation {
                ver: 1,
                created: rev.main,
                revs: vec![rev],
            }],
        }
    }

    /// A key rebuilt from the backend whose oldest retained revision is the put `modified`
    /// (older history may have been compacted away), like etcd's `restore`.
    pub fn restored(created: i64, modified: Revision, ver: i64) -> Self {
        KeyIndex {
            generations: vec![Generation {
                ver,
                created,
                revs: vec![modified],
            }],
        }
    }

    /// True when the key exists at the newest revision.
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.revs.is_empty())
    }

    /// True when nothing is left (compacted away): the key must leave the index.
    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(|g| g.revs.is_empty())
    }

    /// Records a put at `rev` (which must be newer than every recorded revision).
    pub fn put(&mut self, rev: Revision) {
        debug_assert!(self
            .generations
            .iter()
            .rev()
            .find_map(|g| g.revs.last())
            .is_none_or(|last| *last < rev));
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let g = self.generations.last_mut().expect("non-empty");
        if g.revs.is_empty() {
            g.created = rev.main;
            g.revs.reserve_exact(1);
        }
        g.revs.push(rev);
        g.ver += 1;
    }

    /// Records a delete at `rev`; false (and nothing changes) if the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if !self.is_live() {
            return false;
        }
        self.put(rev);
        self.generations.reserve_exact(1);
        self.generations.push(Generation::default());
        true
    }

    /// The key at revision `at`: (its modification revision, the creation revision of its
    /// generation, its version), or None if it did not exist then.
    pub fn get(&self, at: i64) -> Option<(Revision, i64, i64)> {
        let g = self.find_generation(at)?;
        let n = g.find(at)?;
        Some((g.revs[n], g.created, g.ver - (g.revs.len() - n - 1) as i64))
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(newest)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && newest.main <= at {
                // deleted at or before `at`, and the next generation starts after it
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// Drops history at or before `at`, keeping the newest revision <= `at` unless it is a
    /// tombstone (then that generation goes entirely). Pushes kept revisions <= `at` to `keep`.
    /// Mirrors etcd 3.5's `keyIndex.compact`.
    pub fn compact(&mut self, at: i64, keep: &mut Vec<Revision>) {
        let last = match self.generations.len().checked_sub(1) {
            Some(l) => l,
            None => return,
        };
        // first generation that is live after `at`, or the last one
        let mut gi = 0;
        while gi < last {
            match self.generations[gi].revs.last() {
                Some(tomb) if tomb.main > at => break,
                _ => gi += 1,
            }
        }
        let g = &mut self.generations[gi];
        let found = g.find(at);
        if let Some(n) = found {
            keep.push(g.revs[n]);
        }
        if !g.revs.is_empty() {
            if let Some(n) = found {
                if n > 0 {
                    g.revs.drain(..n);
                    if g.revs.capacity() > 2 * g.revs.len() + 4 {
                        g.revs.shrink_to_fit();
                    }
                }
            }
            // only a tombstone left: the generation is over
            if g.revs.len() == 1 && gi != last {
                if keep.last() == Some(&g.revs[0]) {
                    keep.pop();
                }
                gi += 1;
            }
        }
        if gi > 0 {
            self.generations.drain(..gi);
            if self.generations.capacity() > 2 * self.generations.len() + 2 {
                self.generations.shrink_to_fit();
            }
        }
    }

    /// The retained generations, oldest first (HashKV walks them).
    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put(2) put(4) tombstone(6) put(8) put(10) tombstone(12) put(14) put(16), like etcd's test.
    fn sample() -> KeyIndex {
        let mut ki = KeyIndex::created(r(2));
        ki.put(r(4));
        assert!(ki.tombstone(r(6)));
        ki.put(r(8));
        ki.put(r(10));
        assert!(ki.tombstone(r(12)));
        ki.put(r(14));
        ki.put(r(16));
        ki
    }

    #[test]
    fn get_follows_generations() {
        let ki = sample();
        // (read at, Some((modified, created, version)))
        type Case = (i64, Option<(i64, i64, i64)>);
        let cases: &[Case] = &[
            (1, None),
            (2, Some((2, 2, 1))),
            (3, Some((2, 2, 1))),
            (4, Some((4, 2, 2))),
            (5, Some((4, 2, 2))),
            (6, None),
            (7, None),
            (8, Some((8, 8, 1))),
            (11, Some((10, 8, 2))),
            (12, None),
            (13, None),
            (14, Some((14, 14, 1))),
            (16, Some((16, 14, 2))),
            (100, Some((16, 14, 2))),
        ];
        for &(at, want) in cases {
            let got = ki.get(at).map(|(m, c, v)| (m.main, c, v));
            assert_eq!(got, want, "at {at}");
        }
    }

    #[test]
    fn tombstone_of_deleted_key_is_refused() {
        let mut ki = KeyIndex::created(r(2));
        assert!(ki.tombstone(r(3)));
        assert!(!ki.is_live());
        assert!(!ki.tombstone(r(4)));
        assert_eq!(ki.generations().len(), 2);
    }

    fn mains(ki: &KeyIndex) -> Vec<Vec<i64>> {
        ki.generations()
            .iter()
            .map(|g| g.revs.iter().map(|r| r.main).collect())
            .collect()
    }

    #[test]
    fn compact_like_etcd() {
        // (at, generations after, kept)
        type Case = (i64, Vec<Vec<i64>>, Vec<i64>);
        let cases: &[Case] = &[
            (
                1,
                vec![vec![2, 4, 6], vec![8, 10, 12], vec![14, 16]],
                vec![],
            ),
            (
                2,
                vec![vec![2, 4, 6], vec![8, 10, 12], vec![14, 16]],
                vec![2],
            ),
            (
                3,
                vec![vec![2, 4, 6], vec![8, 10, 12], vec![14, 16]],
                vec![2],
            ),
            (4, vec![vec![4, 6], vec![8, 10, 12], vec![14, 16]], vec![4]),
            (5, vec![vec![4, 6], vec![8, 10, 12], vec![14, 16]], vec![4]),
            (6, vec![vec![8, 10, 12], vec![14, 16]], vec![]),
            (7, vec![vec![8, 10, 12], vec![14, 16]], vec![]),
            (8, vec![vec![8, 10, 12], vec![14, 16]], vec![8]),
            (10, vec![vec![10, 12], vec![14, 16]], vec![10]),
            (12, vec![vec![14, 16]], vec![]),
            (14, vec![vec![14, 16]], vec![14]),
            (15, vec![vec![14, 16]], vec![14]),
            (16, vec![vec![16]], vec![16]),
            (17, vec![vec![16]], vec![16]),
        ];
        for (at, want_gens, want_keep) in cases {
            let mut ki = sample();
            let mut keep = Vec::new();
            ki.compact(*at, &mut keep);
            assert_eq!(&mains(&ki), want_gens, "at {at}");
            assert_eq!(
                keep.iter().map(|r| r.main).collect::<Vec<_>>(),
                *want_keep,
                "at {at}"
            );
            // reads at or after the compaction point are unchanged
            let orig = sample();
            for read in *at..20 {
                assert_eq!(ki.get(read), orig.get(read), "compact {at} read {read}");
            }
        }
    }

    #[test]
    fn compact_deleted_key_goes_entirely() {
        let mut ki = KeyIndex::created(r(2));
        ki.put(r(3));
        assert!(ki.tombstone(r(4)));
        let mut keep = Vec::new();
        ki.compact(3, &mut keep);
        assert_eq!(keep, vec![r(3)]);
        assert_eq!(mains(&ki), vec![vec![3, 4], vec![]]);
        keep.clear();
        ki.compact(4, &mut keep);
        assert!(keep.is_empty());
        assert!(ki.is_empty());
    }

    #[test]
    fn versions_survive_compaction() {
        let mut ki = KeyIndex::created(r(2));
        for m in 3..=10 {
            ki.put(r(m));
        }
        let mut keep = Vec::new();
        ki.compact(7, &mut keep);
        assert_eq!(ki.get(7).map(|(m, c, v)| (m.main, c, v)), Some((7, 2, 6)));
        assert_eq!(ki.get(10).map(|(m, c, v)| (m.main, c, v)), Some((10, 2, 9)));
    }
}
