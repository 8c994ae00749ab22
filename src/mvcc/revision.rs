//! Revisions and their on-disk key form.

use super::MvccError;

/// Length of a revision key in the key bucket: main BE(8) + b'_' + sub BE(8), as in etcd.
pub const REV_BYTES_LEN: usize = 17;
/// Length of a tombstone's revision key: the revision bytes plus [`TOMBSTONE_MARK`].
pub const MARKED_REV_BYTES_LEN: usize = 18;
/// Trailing byte that marks a revision key as a deletion, as in etcd.
pub const TOMBSTONE_MARK: u8 = b't';

/// A point in the store's history: `main` counts write transactions that changed something,
/// `sub` orders the changes inside one of them.
///
/// Ordered by `main`, then `sub`, which is also the byte order of [`Revision::to_bytes`], so the
/// key bucket is stored in history order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Revision {
    /// The transaction's revision (what clients see as a revision).
    pub main: i64,
    /// The position of the change inside its transaction, from 0.
    pub sub: i64,
}

impl Revision {
    /// A revision from its parts.
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The key-bucket key of a put at this revision.
    pub fn to_bytes(self) -> [u8; REV_BYTES_LEN] {
        let mut b = [0u8; REV_BYTES_LEN];
        b[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        b[8] = b'_';
        b[9..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        b
    }

    /// The key-bucket key of a deletion at this revision.
    pub fn to_tombstone_bytes(self) -> [u8; MARKED_REV_BYTES_LEN] {
        let mut b = [0u8; MARKED_REV_BYTES_LEN];
        b[..REV_BYTES_LEN].copy_from_slice(&self.to_bytes());
        b[REV_BYTES_LEN] = TOMBSTONE_MARK;
        b
    }

    /// Parses a key-bucket key into its revision and whether it marks a deletion.
    pub fn parse_key(b: &[u8]) -> Result<(Revision, bool), MvccError> {
        let tombstone = match b.len() {
            REV_BYTES_LEN => false,
            MARKED_REV_BYTES_LEN if b[REV_BYTES_LEN] == TOMBSTONE_MARK => true,
            _ => {
                return Err(MvccError::Corrupt(format!(
                    "key bucket holds a key of {} bytes ({:02x?}); revision keys are 17 bytes, \
                     or 18 ending in 't'",
                    b.len(),
                    &b[..b.len().min(24)]
                )))
            }
        };
        if b[8] != b'_' {
            return Err(MvccError::Corrupt(format!(
                "revision key {:02x?} lacks the '_' separator",
                b
            )));
        }
        let main = u64::from_be_bytes(b[..8].try_into().expect("8 bytes")) as i64;
        let sub = u64::from_be_bytes(b[9..17].try_into().expect("8 bytes")) as i64;
        Ok((Revision { main, sub }, tombstone))
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_roundtrip_and_order() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 3),
            Revision::new(i64::MAX, 0),
        ];
        for w in revs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_bytes() < w[1].to_bytes());
            // a tombstone of a revision sorts after it and before the next revision
            assert!(w[0].to_tombstone_bytes()[..] > w[0].to_bytes()[..]);
            assert!(w[0].to_tombstone_bytes()[..] < w[1].to_bytes()[..]);
        }
        for r in revs {
            assert_eq!(Revision::parse_key(&r.to_bytes()).unwrap(), (r, false));
            assert_eq!(
                Revision::parse_key(&r.to_tombstone_bytes()).unwrap(),
                (r, true)
            );
        }
        assert_eq!(
            Revision::new(2, 1).to_bytes(),
            [0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn bad_keys_are_corrupt() {
        assert!(Revision::parse_key(b"short").is_err());
        let mut b = Revision::new(3, 0).to_tombstone_bytes();
        b[17] = b'x';
        assert!(Revision::parse_key(&b).is_err());
        let mut b = Revision::new(3, 0).to_bytes();
        b[8] = b'-';
        assert!(Revision::parse_key(&b).is_err());
    }
}
