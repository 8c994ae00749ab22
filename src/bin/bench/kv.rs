//! The KV workloads: `put`, `range` and `txn-put`, each one [`Worker`] per client. Keys are
//! built like etcd's benchmark builds them (a zigzag varint of the key number in a zeroed
//! buffer of `--key-size` bytes), so both tools write the same key space.

use std::sync::Arc;

use ferrocd::proto::etcdserverpb::kv_client::KvClient;
use ferrocd::proto::etcdserverpb::request_op::Request;
use ferrocd::proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use crate::runner::{status_message, Worker};

/// Key number `n` as etcd's benchmark encodes it: `binary.PutVarint` (zigzag, then LEB128)
/// into `size` zero bytes. Bytes that do not fit are dropped.
pub fn key(size: usize, n: u64) -> Vec<u8> {
    let mut k = vec![0u8; size];
    let mut v = n << 1; // zigzag of a non-negative number
    for b in k.iter_mut() {
        if v < 0x80 {
            *b = v as u8;
            break;
        }
        *b = (v as u8) | 0x80;
        v >>= 7;
    }
    k
}

/// Which key request `i` uses: `i` modulo the key space, or a random key in it.
pub fn key_number(i: u64, space: u64, sequential: bool) -> u64 {
    let space = space.max(1);
    if sequential {
        i % space
    } else {
        rand::random_range(0..space)
    }
}

/// A KV client with no response size limit (a big range must not fail on the client side).
pub fn kv_client(ch: Channel) -> KvClient<Channel> {
    KvClient::new(ch).max_decoding_message_size(usize::MAX)
}

/// What every put or txn-put client shares.
pub struct PutSpec {
    /// Key size in bytes.
    pub key_size: usize,
    /// The value every put writes.
    pub value: Vec<u8>,
    /// Distinct keys.
    pub key_space: u64,
    /// Keys in order instead of at random.
    pub sequential: bool,
    /// Puts per transaction (txn-put only).
    pub txn_ops: usize,
    /// Every put writes fresh random bytes (of `value`'s length) instead of `value`.
    pub unique_values: bool,
}

impl PutSpec {
    fn put(&self, i: u64) -> PutRequest {
        PutRequest {
            key: key(
                self.key_size,
                key_number(i, self.key_space, self.sequential),
            ),
            value: if self.unique_values {
                let mut v = vec![0u8; self.value.len()];
                rand::fill(&mut v[..]);
                v
            } else {
                self.value.clone()
            },
            ..Default::default()
        }
    }
}

/// One `put` client.
pub struct Put {
    /// Its connection.
    pub client: KvClient<Channel>,
    /// Shared parameters.
    pub spec: Arc<PutSpec>,
}

impl Worker for Put {
    async fn call(&mut self, i: u64) -> Result<(), String> {
        let req = self.spec.put(i);
        self.client
            .put(req)
            .await
            .map(|_| ())
            .map_err(|s| status_message(&s))
    }
}

/// One `txn-put` client: each transaction puts `txn_ops` consecutive keys of the key space
/// (no compares).
pub struct TxnPut {
    /// Its connection.
    pub client: KvClient<Channel>,
    /// Shared parameters.
    pub spec: Arc<PutSpec>,
}

impl Worker for TxnPut {
    async fn call(&mut self, i: u64) -> Result<(), String> {
        let ops = self.spec.txn_ops.max(1) as u64;
        // Consecutive keys, like etcd's txn-put: a transaction may not put one key twice.
        let success = (0..ops)
            .map(|j| {
                let n = (i * ops + j) % self.spec.key_space.max(1);
                RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: key(self.spec.key_size, n),
                        value: self.spec.value.clone(),
                        ..Default::default()
                    })),
                }
            })
            .collect();
        let req = TxnRequest {
            success,
            ..Default::default()
        };
        self.client
            .txn(req)
            .await
            .map(|_| ())
            .map_err(|s| status_message(&s))
    }
}

/// One `range` client: the same request every time.
pub struct Range {
    /// Its connection.
    pub client: KvClient<Channel>,
    /// The request.
    pub req: Arc<RangeRequest>,
}

impl Worker for Range {
    async fn call(&mut self, _i: u64) -> Result<(), String> {
        let req = (*self.req).clone();
        self.client
            .range(req)
            .await
            .map(|_| ())
            .map_err(|s| status_message(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_go_put_varint() {
        // Go: k := make([]byte, 8); binary.PutVarint(k, n)
        assert_eq!(key(8, 0), vec![0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(key(8, 1), vec![2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(key(8, 63), vec![126, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(key(8, 64), vec![0x80, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(key(8, 300), vec![0xd8, 4, 0, 0, 0, 0, 0, 0]);
        assert_eq!(key(2, 1 << 20), vec![0x80, 0x80]);
        assert_eq!(key(0, 5), Vec::<u8>::new());
    }

    #[test]
    fn distinct_numbers_give_distinct_keys() {
        let keys: std::collections::HashSet<Vec<u8>> = (0..100_000).map(|n| key(8, n)).collect();
        assert_eq!(keys.len(), 100_000);
    }

    #[test]
    fn key_numbers_stay_in_the_space() {
        assert_eq!(key_number(7, 5, true), 2);
        assert_eq!(key_number(7, 0, true), 0);
        for i in 0..1000 {
            assert!(key_number(i, 10, false) < 10);
        }
    }
}
