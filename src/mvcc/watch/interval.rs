//! Matching keys to watchers: single-key watchers in a hash map, range watchers in an
//! interval tree (a treap ordered by `(start, end)` and augmented with the largest end of each
//! subtree), so an event's key finds its watchers in O(log n + matches) instead of a scan of
//! every watcher. Watchers on the same key or the same range share one entry, like etcd's
//! `watcherGroup`.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Identifies one watcher in the hub (unique across streams).
pub type WatcherId = u64;

/// A hasher for the hub's integer ids (sequential numbers): one multiply instead of SipHash,
/// which matters when one revision reaches tens of thousands of watchers. Ids are chosen by
/// the server (watch ids by the server or the stream's own client), so there is no hash
/// flooding to defend against across clients.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Hash maps keyed by ids.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// Hash sets of ids.
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// The exclusive end of a watched range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum End {
    /// Keys strictly below this one.
    Key(Vec<u8>),
    /// No upper bound (etcd's `range_end = "\0"`: every key >= start).
    Unbounded,
}

impl End {
    /// Whether `key` lies below this end.
    fn above(&self, key: &[u8]) -> bool {
        match self {
            End::Key(e) => key < e.as_slice(),
            End::Unbounded => true,
        }
    }
}

impl PartialOrd for End {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for End {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (End::Key(a), End::Key(b)) => a.cmp(b),
            (End::Key(_), End::Unbounded) => Ordering::Less,
            (End::Unbounded, End::Key(_)) => Ordering::Greater,
            (End::Unbounded, End::Unbounded) => Ordering::Equal,
        }
    }
}

/// The keys one watcher watches, decoded from etcd's `(key, range_end)` convention.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySpan {
    /// Exactly one key.
    Single(Vec<u8>),
    /// `[start, end)`; never empty (the api refuses `start >= end` as etcd does).
    Range(Vec<u8>, End),
}

impl KeySpan {
    /// Decodes a watch request's key and range end as etcd's watch server does: an empty key
    /// is `"\0"` (the smallest key), an empty `range_end` watches one key and `"\0"` every key
    /// from `key` on. Returns `None` for an empty range (`key >= range_end`), which etcd refuses
    /// with `mvcc: watcher range is empty`.
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Option<KeySpan> {
        let key = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        match range_end {
            [] => Some(KeySpan::Single(key)),
            [0] => Some(KeySpan::Range(key, End::Unbounded)),
            end if key.as_slice() < end => Some(KeySpan::Range(key, End::Key(end.to_vec()))),
            _ => None,
        }
    }

    /// Whether `key` is watched.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeySpan::Single(k) => k.as_slice() == key,
            KeySpan::Range(start, end) => start.as_slice() <= key && end.above(key),
        }
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        match self {
            KeySpan::Single(k) => k.capacity(),
            KeySpan::Range(s, End::Key(e)) => s.capacity() + e.capacity(),
            KeySpan::Range(s, End::Unbounded) => s.capacity(),
        }
    }
}

/// A set of watchers indexed by what they watch.
#[derive(Default)]
pub struct WatcherGroup {
    keys: HashMap<Vec<u8>, IdSet<WatcherId>>,
    ranges: IntervalTree,
    len: usize,
}

impl WatcherGroup {
    /// Number of watchers in the group.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the group holds no watcher.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `id` watching `span`. Adding an id twice is a logic error (debug-asserted).
    pub fn add(&mut self, id: WatcherId, span: &KeySpan) {
        let added = match span {
            KeySpan::Single(k) => self.keys.entry(k.clone()).or_default().insert(id),
            KeySpan::Range(s, e) => self.ranges.insert(s, e, id),
        };
        debug_assert!(added, "watcher {id} added twice");
        if added {
            self.len += 1;
        }
    }

    /// Removes `id` watching `span`; returns whether it was there.
    pub fn remove(&mut self, id: WatcherId, span: &KeySpan) -> bool {
        let removed = match span {
            KeySpan::Single(k) => match self.keys.get_mut(k.as_slice()) {
                Some(set) => {
                    let r = set.remove(&id);
                    if set.is_empty() {
                        self.keys.remove(k.as_slice());
                    }
                    r
                }
                None => false,
            },
            KeySpan::Range(s, e) => self.ranges.remove(s, e, id),
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` with every watcher whose span contains `key`.
    pub fn for_each_match(&self, key: &[u8], mut f: impl FnMut(WatcherId)) {
        if let Some(set) = self.keys.get(key) {
            set.iter().for_each(|&id| f(id));
        }
        self.ranges
            .stab(key, &mut |set| set.iter().for_each(|&id| f(id)));
    }

    /// Whether any watcher's span contains `key`.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        if self.keys.contains_key(key) {
            return true;
        }
        let mut found = false;
        self.ranges.stab(key, &mut |_| found = true);
        found
    }
}

/// A treap of distinct intervals, each with the set of watchers on it.
#[derive(Default)]
struct IntervalTree {
    root: Option<Box<Node>>,
    seed: u64,
}

struct Node {
    start: Vec<u8>,
    end: End,
    /// The largest `end` in this subtree (prunes stabbing queries).
    max_end: End,
    priority: u64,
    ids: IdSet<WatcherId>,
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

impl Node {
    fn key_cmp(&self, start: &[u8], end: &End) -> Ordering {
        (self.start.as_slice(), &self.end).cmp(&(start, end))
    }

    fn update(&mut self) {
        let mut m = self.end.clone();
        for child in [&self.left, &self.right].into_iter().flatten() {
            if child.max_end > m {
                m = child.max_end.clone();
            }
        }
        self.max_end = m;
    }
}

impl IntervalTree {
    /// A pseudo-random priority (xorshift; only balance depends on it).
    fn next_priority(&mut self) -> u64 {
        if self.seed == 0 {
            self.seed = 0x9E37_79B9_7F4A_7C15;
        }
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        x
    }

    fn insert(&mut self, start: &[u8], end: &End, id: WatcherId) -> bool {
        if let Some(node) = find_mut(&mut self.root, start, end) {
            return node.ids.insert(id);
        }
        let node = Box::new(Node {
            start: start.to_vec(),
            end: end.clone(),
            max_end: end.clone(),
            priority: self.next_priority(),
            ids: IdSet::from_iter([id]),
            left: None,
            right: None,
        });
        let (l, r) = split(self.root.take(), start, end);
        self.root = merge(merge(l, Some(node)), r);
        true
    }

    fn remove(&mut self, start: &[u8], end: &End, id: WatcherId) -> bool {
        let Some(node) = find_mut(&mut self.root, start, end) else {
            return false;
        };
        if !node.ids.remove(&id) {
            return false;
        }
        if node.ids.is_empty() {
            self.root = remove_node(self.root.take(), start, end);
        }
        true
    }

    fn stab(&self, key: &[u8], f: &mut dyn FnMut(&IdSet<WatcherId>)) {
        stab(&self.root, key, f);
    }
}

fn find_mut<'a>(
    mut cur: &'a mut Option<Box<Node>>,
    start: &[u8],
    end: &End,
) -> Option<&'a mut Node> {
    while let Some(node) = cur {
        match node.key_cmp(start, end) {
            Ordering::Equal => return Some(node),
            Ordering::Greater => cur = &mut node.left,
            Ordering::Less => cur = &mut node.right,
        }
    }
    None
}

/// Splits into nodes below `(start, end)` and nodes at or above it.
fn split(t: Option<Box<Node>>, start: &[u8], end: &End) -> (Option<Box<Node>>, Option<Box<Node>>) {
    match t {
        None => (None, None),
        Some(mut n) => {
            if n.key_cmp(start, end) == Ordering::Less {
                let (l, r) = split(n.right.take(), start, end);
                n.right = l;
                n.update();
                (Some(n), r)
            } else {
                let (l, r) = split(n.left.take(), start, end);
                n.left = r;
                n.update();
                (l, Some(n))
            }
        }
    }
}

/// Joins two treaps where every key of `a` is below every key of `b`.
fn merge(a: Option<Box<Node>>, b: Option<Box<Node>>) -> Option<Box<Node>> {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(mut a), Some(mut b)) => {
            if a.priority >= b.priority {
                a.right = merge(a.right.take(), Some(b));
                a.update();
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                b.update();
                Some(b)
            }
        }
    }
}

fn remove_node(t: Option<Box<Node>>, start: &[u8], end: &End) -> Option<Box<Node>> {
    let mut n = t?;
    match n.key_cmp(start, end) {
        Ordering::Equal => merge(n.left.take(), n.right.take()),
        Ordering::Greater => {
            n.left = remove_node(n.left.take(), start, end);
            n.update();
            Some(n)
        }
        Ordering::Less => {
            n.right = remove_node(n.right.take(), start, end);
            n.update();
            Some(n)
        }
    }
}

fn stab(t: &Option<Box<Node>>, key: &[u8], f: &mut dyn FnMut(&IdSet<WatcherId>)) {
    let Some(n) = t else { return };
    // Nothing in this subtree ends above `key`.
    if !n.max_end.above(key) {
        return;
    }
    stab(&n.left, key, f);
    if n.start.as_slice() <= key {
        if n.end.above(key) {
            f(&n.ids);
        }
        // Everything to the right starts at or after this node's start.
        stab(&n.right, key, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(key: &str, end: &str) -> KeySpan {
        KeySpan::from_request(key.as_bytes(), end.as_bytes()).expect("non-empty span")
    }

    fn matches(g: &WatcherGroup, key: &[u8]) -> Vec<WatcherId> {
        let mut v = Vec::new();
        g.for_each_match(key, |id| v.push(id));
        v.sort_unstable();
        v
    }

    #[test]
    fn decodes_etcd_range_convention() {
        assert_eq!(
            KeySpan::from_request(b"a", b""),
            Some(KeySpan::Single(b"a".to_vec()))
        );
        assert_eq!(
            KeySpan::from_request(b"", b""),
            Some(KeySpan::Single(vec![0]))
        );
        assert_eq!(
            KeySpan::from_request(b"a", b"\0"),
            Some(KeySpan::Range(b"a".to_vec(), End::Unbounded))
        );
        assert_eq!(
            KeySpan::from_request(b"\0", b"\0"),
            Some(KeySpan::Range(vec![0], End::Unbounded))
        );
        assert_eq!(
            KeySpan::from_request(b"a", b"b"),
            Some(KeySpan::Range(b"a".to_vec(), End::Key(b"b".to_vec())))
        );
        assert_eq!(KeySpan::from_request(b"b", b"b"), None);
        assert_eq!(KeySpan::from_request(b"c", b"b"), None);
        let s = span("foo", "fop");
        assert!(s.contains(b"foo"));
        assert!(s.contains(b"foo/bar"));
        assert!(!s.contains(b"fop"));
        assert!(!s.contains(b"fo"));
        assert!(span("\0", "\0").contains(b"\0"));
        assert!(span("\0", "\0").contains(&[0xff, 0xff]));
    }

    #[test]
    fn single_keys_and_ranges() {
        let mut g = WatcherGroup::default();
        g.add(1, &span("a", ""));
        g.add(2, &span("a", ""));
        g.add(3, &span("a", "c"));
        g.add(4, &span("b", "\0"));
        g.add(5, &span("\0", "\0"));
        g.add(6, &span("a", "c")); // same interval as 3: shares its node
        assert_eq!(g.len(), 6);
        assert_eq!(matches(&g, b"a"), vec![1, 2, 3, 5, 6]);
        assert_eq!(matches(&g, b"b"), vec![3, 4, 5, 6]);
        assert_eq!(matches(&g, b"c"), vec![4, 5]);
        assert_eq!(matches(&g, b"\0"), vec![5]);
        assert!(g.contains_key(b"zzz"));
        assert!(g.remove(5, &span("\0", "\0")));
        assert!(!g.remove(5, &span("\0", "\0")));
        assert!(!g.contains_key(b"\0"));
        assert!(g.remove(3, &span("a", "c")));
        assert_eq!(matches(&g, b"b"), vec![4, 6]);
        assert!(g.remove(6, &span("a", "c")));
        assert!(g.remove(1, &span("a", "")));
        assert_eq!(matches(&g, b"a"), vec![2]);
        assert!(!g.remove(7, &span("a", "")));
        assert_eq!(g.len(), 2);
    }

    /// The tree agrees with a brute-force scan over many random intervals, inserts and
    /// removals, including nested, overlapping and unbounded ones.
    #[test]
    fn agrees_with_brute_force() {
        let mut rng = 12345u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let key = |i: u64| format!("k{i:03}").into_bytes();
        let mut g = WatcherGroup::default();
        let mut all: Vec<(WatcherId, KeySpan)> = Vec::new();
        for id in 0..3000u64 {
            let a = next(200);
            let s = match next(4) {
                0 => KeySpan::Single(key(a)),
                1 => KeySpan::Range(key(a), End::Unbounded),
                _ => KeySpan::Range(key(a), End::Key(key(a + 1 + next(40)))),
            };
            g.add(id, &s);
            all.push((id, s));
            // remove a random one now and then
            if next(3) == 0 && !all.is_empty() {
                let i = next(all.len() as u64) as usize;
                let (rid, rs) = all.swap_remove(i);
                assert!(g.remove(rid, &rs));
            }
        }
        assert_eq!(g.len(), all.len());
        for k in 0..205u64 {
            let probe = key(k);
            let mut want: Vec<WatcherId> = all
                .iter()
                .filter(|(_, s)| s.contains(&probe))
                .map(|(id, _)| *id)
                .collect();
            want.sort_unstable();
            assert_eq!(matches(&g, &probe), want, "key {k}");
            assert_eq!(g.contains_key(&probe), !want.is_empty());
        }
        for (id, s) in all.drain(..) {
            assert!(g.remove(id, &s));
        }
        assert!(g.is_empty());
        assert!(g.ranges.root.is_none());
        assert!(g.keys.is_empty());
    }

    /// The treap stays shallow (expected O(log n)) even for sorted inserts.
    #[test]
    fn stays_balanced_for_sorted_inserts() {
        fn depth(t: &Option<Box<Node>>) -> usize {
            t.as_ref()
                .map(|n| 1 + depth(&n.left).max(depth(&n.right)))
                .unwrap_or(0)
        }
        let mut g = WatcherGroup::default();
        for i in 0..20_000u64 {
            let s = KeySpan::Range(
                format!("p{i:06}").into_bytes(),
                End::Key(format!("p{i:06}z").into_bytes()),
            );
            g.add(i, &s);
        }
        let d = depth(&g.ranges.root);
        assert!(d < 60, "depth {d} for 20000 sorted inserts");
        assert_eq!(matches(&g, b"p012345x"), vec![12345]);
    }
}
