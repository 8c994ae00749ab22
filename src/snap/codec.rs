//! The snapshot data format: a flat sequence of backend records,
//! `[bucket: u8][key len: u32 LE][key][value len: u32 LE][value]`, in any chunking.

use crate::schema::Bucket;

/// Appends one record.
pub fn encode(buf: &mut Vec<u8>, bucket: Bucket, key: &[u8], value: &[u8]) {
    buf.push(bucket.id());
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(value);
}

/// One decoded record: (bucket, key, value, bytes it used).
pub type Decoded<'a> = (Bucket, &'a [u8], &'a [u8], usize);

/// Reads one record from the front of `data`.
pub fn decode(data: &[u8]) -> Result<Decoded<'_>, String> {
    let bucket = *data.first().ok_or("empty record")?;
    let bucket = Bucket::ALL
        .into_iter()
        .find(|b| b.id() == bucket)
        .ok_or_else(|| format!("unknown bucket id {bucket}"))?;
    let mut pos = 1;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = data.get(pos..pos + n).ok_or("record cut short")?;
        pos += n;
        Ok(s)
    };
    let klen = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad key length")?) as usize;
    let key = take(klen)?;
    let vlen = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad value length")?) as usize;
    let value = take(vlen)?;
    Ok((bucket, key, value, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_an_error() {
        let mut buf = Vec::new();
        encode(&mut buf, Bucket::Key, b"k1", b"v1");
        encode(&mut buf, Bucket::Meta, b"", b"");
        let (b, k, v, used) = decode(&buf).unwrap();
        assert_eq!((b, k, v), (Bucket::Key, &b"k1"[..], &b"v1"[..]));
        let (b, k, v, used2) = decode(&buf[used..]).unwrap();
        assert_eq!((b, k, v), (Bucket::Meta, &b""[..], &b""[..]));
        assert_eq!(used + used2, buf.len());
        assert!(decode(&buf[..used - 1]).is_err());
        assert!(decode(&[99]).is_err());
    }
}
