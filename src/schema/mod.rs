//! The backend's schema: every bucket ferrocd stores and every key layout inside one, in one
//! place, so a reader (or a migration tool) finds the whole on-disk format here.
//!
//! # Buckets
//!
//! Each bucket is a one-byte key prefix in the backend (`Bucket::id`); the prefix bytes are the
//! on-disk format and never change. Names are etcd's bucket names.
//!
//! | bucket | key | value | written by |
//! |---|---|---|---|
//! | `key` | revision: main (8 bytes BE) `_` sub (8 bytes BE), `t` appended for a tombstone (`mvcc::Revision`) | `mvcc::kv` encoded key-value | the applier, through `mvcc` |
//! | `meta` | the names in [`meta`] | u64 BE, or a protobuf (`conf_state`), or a revision | the applier, bootstrap, snapshot install |
//! | `lease` | [`lease_key`]: lease id (8 bytes BE) | `ferrocdpb::LeaseRecord` | the applier, through `lease` |
//! | `auth`, `authUsers`, `authRoles` | reserved for the auth store | | |
//! | `members` | [`member_key`]: member id (8 bytes BE) | `ferrocdpb::Member` | the applier, bootstrap, through `membership` |
//! | `alarm` | [`alarm_key`]: member id (8 bytes BE) + alarm type (4 bytes BE) | empty | the applier, through `apply::alarm` |
//!
//! Local to one member, never copied by a snapshot: `meta/consistent_index`, `meta/term`,
//! `meta/member_id`.

/// A namespace of keys inside the database.
///
/// The discriminants are the on-disk prefix bytes and must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Bucket {
    /// MVCC revisions: revision bytes → encoded key-value.
    Key = 1,
    /// Bookkeeping: consistent index, compaction revisions, ...
    Meta = 2,
    /// Leases.
    Lease = 3,
    /// Auth enabled flag and auth revision.
    Auth = 4,
    /// Auth users.
    AuthUsers = 5,
    /// Auth roles.
    AuthRoles = 6,
    /// Cluster members.
    Members = 7,
    /// Raised alarms (NOSPACE, CORRUPT).
    Alarm = 8,
}

impl Bucket {
    /// Every bucket, in prefix order; for tools that dump or copy the whole database.
    pub const ALL: [Bucket; 8] = [
        Bucket::Key,
        Bucket::Meta,
        Bucket::Lease,
        Bucket::Auth,
        Bucket::AuthUsers,
        Bucket::AuthRoles,
        Bucket::Members,
        Bucket::Alarm,
    ];

    /// The on-disk prefix byte.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// etcd's bucket name, for logs and tools.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Key => "key",
            Bucket::Meta => "meta",
            Bucket::Lease => "lease",
            Bucket::Auth => "auth",
            Bucket::AuthUsers => "authUsers",
            Bucket::AuthRoles => "authRoles",
            Bucket::Members => "members",
            Bucket::Alarm => "alarm",
        }
    }
}

/// Keys of the `meta` bucket.
pub mod meta {
    /// The last applied raft index (u64 BE), as in etcd.
    pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
    /// The raft term of the entry at the consistent index (u64 BE), as etcd 3.5's `term`.
    /// Always written with the consistent index, so the applied index is a valid raft
    /// snapshot point even if the WAL lost its tail.
    pub const TERM: &[u8] = b"term";
    /// The member this database belongs to (u64 BE). Local to the member: a snapshot from
    /// another member must never carry it over.
    pub const MEMBER_ID: &[u8] = b"member_id";
    /// The cluster's id (u64 BE).
    pub const CLUSTER_ID: &[u8] = b"cluster_id";
    /// The raft configuration the backend was last applied with (`ferrocdpb::ConfState`).
    pub const CONF_STATE: &[u8] = b"conf_state";
    /// The revision of a compaction that was scheduled (it may not have finished), etcd's key.
    pub const SCHEDULED_COMPACT_REV: &[u8] = b"scheduledCompactRev";
    /// The revision of the last compaction that finished, etcd's key.
    pub const FINISHED_COMPACT_REV: &[u8] = b"finishedCompactRev";

    /// Keys that describe this member's own position, never taken from another member's
    /// snapshot or a backup.
    pub const LOCAL: [&[u8]; 3] = [CONSISTENT_INDEX, TERM, MEMBER_ID];
}

/// The `lease` bucket's key of lease `id` (etcd's layout).
pub fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The `members` bucket's key of member `id`.
pub fn member_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The `alarm` bucket's key of alarm type `alarm` raised by member `member`.
pub fn alarm_key(member: u64, alarm: i32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&member.to_be_bytes());
    k[8..].copy_from_slice(&alarm.to_be_bytes());
    k
}

/// (member, alarm type) of an `alarm` bucket key; `None` if it is not one.
pub fn parse_alarm_key(k: &[u8]) -> Option<(u64, i32)> {
    let k: &[u8; 12] = k.try_into().ok()?;
    let member = u64::from_be_bytes(k[..8].try_into().ok()?);
    let alarm = i32::from_be_bytes(k[8..].try_into().ok()?);
    Some((member, alarm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_prefixes_and_names_are_the_on_disk_format() {
        let ids: Vec<u8> = Bucket::ALL.iter().map(|b| b.id()).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8]);
        let names: Vec<&str> = Bucket::ALL.iter().map(|b| b.name()).collect();
        assert_eq!(
            names,
            [
                "key",
                "meta",
                "lease",
                "auth",
                "authUsers",
                "authRoles",
                "members",
                "alarm"
            ]
        );
    }

    #[test]
    fn key_layouts_round_trip() {
        assert_eq!(lease_key(0x0102), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(member_key(7), [0, 0, 0, 0, 0, 0, 0, 7]);
        let k = alarm_key(0xabcd, 1);
        assert_eq!(parse_alarm_key(&k), Some((0xabcd, 1)));
        assert_eq!(parse_alarm_key(&k[..11]), None);
    }
}
