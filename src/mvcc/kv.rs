//! Key-values, events, and their encoding in the key bucket.
//!
//! Value format (version 1), chosen to be small and cheap to decode:
//!
//! ```text
//! u8 format (= 1)
//! varint key_len, key bytes
//! varint create_revision, varint mod_revision, varint version, varint lease
//! value bytes (everything that is left)
//! ```
//!
//! Varints are unsigned LEB128 of the two's-complement `u64`. A tombstone (key ending in `t`)
//! stores the key with every number 0 and an empty value, like etcd's `KeyValue{Key}`.

use super::MvccError;

const FORMAT_V1: u8 = 1;

/// One version of a key, as clients see it (etcd's `mvccpb.KeyValue`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Revision of the put that created the key's current generation.
    pub create_revision: i64,
    /// Revision of the last change to the key.
    pub mod_revision: i64,
    /// Puts since creation: 1 on create.
    pub version: i64,
    /// The value.
    pub value: Vec<u8>,
    /// Attached lease id, 0 for none.
    pub lease: i64,
}

/// What happened to a key (etcd's PUT = 0, DELETE = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change of one revision, as the watch hub sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventType,
    /// Put: the new key-value. Delete: `{key, mod_revision = deletion revision}`, rest zero.
    pub kv: KeyValue,
    /// The key-value before this change, if it was live (for `prev_kv` watchers and leases).
    pub prev_kv: Option<KeyValue>,
}

/// Encodes a key-value for the key bucket.
pub(crate) fn encode(
    key: &[u8],
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 10 + key.len() + 4 * 10 + value.len());
    out.push(FORMAT_V1);
    put_varint(&mut out, key.len() as u64);
    out.extend_from_slice(key);
    for n in [create_revision, mod_revision, version, lease] {
        put_varint(&mut out, n as u64);
    }
    out.extend_from_slice(value);
    out
}

/// Encodes `kv` for the key bucket.
pub(crate) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    encode(
        &kv.key,
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease,
        &kv.value,
    )
}

/// A decoded key-bucket value that borrows from the stored bytes (no copy of key or value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KvRef<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: &'a [u8],
}

impl KvRef<'_> {
    pub fn to_owned(self) -> KeyValue {
        KeyValue {
            key: self.key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

/// Decodes a key-bucket value without copying.
pub(crate) fn decode_ref(b: &[u8]) -> Result<KvRef<'_>, MvccError> {
    let corrupt = |what: &str| {
        MvccError::Corrupt(format!(
            "undecodable key-value in the key bucket ({what}; {} bytes)",
            b.len()
        ))
    };
    let (&format, mut rest) = b.split_first().ok_or_else(|| corrupt("empty"))?;
    if format != FORMAT_V1 {
        return Err(corrupt(&format!("unknown format byte {format}")));
    }
    let key_len = get_varint(&mut rest).ok_or_else(|| corrupt("bad key length"))?;
    if key_len > rest.len() as u64 {
        return Err(corrupt("key length past the end"));
    }
    let (key, mut rest) = rest.split_at(key_len as usize);
    let mut nums = [0i64; 4];
    for n in &mut nums {
        *n = get_varint(&mut rest).ok_or_else(|| corrupt("bad number"))? as i64;
    }
    Ok(KvRef {
        key,
        create_revision: nums[0],
        mod_revision: nums[1],
        version: nums[2],
        lease: nums[3],
        value: rest,
    })
}

/// Decodes a key-bucket value into an owned key-value.
pub(crate) fn decode(b: &[u8]) -> Result<KeyValue, MvccError> {
    decode_ref(b).map(KvRef::to_owned)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        let low = (byte & 0x7f) as u64;
        if i == 9 && low > 1 {
            return None; // more than 64 bits
        }
        n |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let kvs = [
            KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 300,
                version: 7,
                value: vec![0, 1, 2, 0xff],
                lease: 0x694d_7f4a_1b2c_3d4e,
            },
            KeyValue {
                key: vec![0],
                create_revision: i64::MAX,
                mod_revision: i64::MAX,
                version: 1,
                value: vec![],
                lease: -1,
            },
            KeyValue {
                key: vec![0xff; 300],
                ..Default::default()
            },
        ];
        for kv in kvs {
            let enc = encode_kv(&kv);
            assert_eq!(decode(&enc).unwrap(), kv);
            let r = decode_ref(&enc).unwrap();
            assert_eq!(r.key, &kv.key[..]);
            assert_eq!(r.value, &kv.value[..]);
        }
        // small revisions keep the overhead small
        let enc = encode(b"k", 2, 2, 1, 0, b"v");
        assert_eq!(enc, vec![1, 1, b'k', 2, 2, 1, 0, b'v']);
    }

    #[test]
    fn garbage_is_corrupt_not_panic() {
        for bad in [
            &[][..],
            &[2, 0][..],
            &[1][..],
            &[1, 5, b'a'][..],
            &[1, 0, 0x80][..],
            &[1, 0, 1, 1, 1][..],
            &[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ][..],
        ] {
            assert!(matches!(decode(bad), Err(MvccError::Corrupt(_))), "{bad:?}");
        }
    }
}
