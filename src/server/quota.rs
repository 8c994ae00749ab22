//! The backend space quota (`--quota-backend-bytes`), checked as etcd checks it: before a
//! write is proposed, its estimated cost is added to the backend's size; a write that would
//! reach the quota is refused with `database space exceeded` and the member raises the NOSPACE
//! alarm through raft, after which every member refuses writes that add data until an operator
//! frees space (compact, defragment) and disarms the alarm.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::proto::etcdserverpb::{request_op, PutRequest, TxnRequest};

/// etcd's estimate of a key's metadata cost (`kvOverhead`).
const KV_OVERHEAD: u64 = 256;
/// etcd's estimate of a lease's cost (`leaseOverhead`).
pub const LEASE_OVERHEAD: u64 = 64;
/// How long a measured backend size is reused: measuring lists the database directory, too
/// costly to do for every write, and the quota is a soft limit anyway.
const SIZE_TTL: Duration = Duration::from_millis(100);

/// The cost of a put: key, value and metadata.
pub fn put_cost(p: &PutRequest) -> u64 {
    KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
}

/// The cost of a txn: the costlier branch's puts (nested txns count as nothing, as in etcd).
pub fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[crate::proto::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// The member's quota and a recently measured backend size.
pub struct Quota {
    limit: Option<u64>,
    measured: Mutex<Option<(Instant, u64)>>,
}

impl Quota {
    /// A quota of `limit` bytes (`None`: no quota, etcd's negative `--quota-backend-bytes`).
    pub fn new(limit: Option<u64>) -> Quota {
        Quota {
            limit,
            measured: Mutex::new(None),
        }
    }

    /// Whether a write costing `cost` bytes still fits, given the backend's size, or `None`
    /// when the size must be measured first (see [`Quota::record`]).
    pub fn available(&self, cost: u64) -> Option<bool> {
        let Some(limit) = self.limit else {
            return Some(true);
        };
        if cost == 0 {
            return Some(true);
        }
        match *self.measured.lock() {
            Some((at, size)) if at.elapsed() < SIZE_TTL => Some(size + cost < limit),
            _ => None,
        }
    }

    /// Records a fresh measurement of the backend's size.
    pub fn record(&self, size: u64) {
        *self.measured.lock() = Some((Instant::now(), size));
    }

    /// The limit in bytes (`None`: no quota).
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Forgets the measured size (after a defragmentation shrank the backend).
    pub fn invalidate(&self) {
        *self.measured.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::RequestOp;

    fn put(k: &str, v: &str) -> PutRequest {
        PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }
    }

    #[test]
    fn costs_follow_etcd() {
        assert_eq!(put_cost(&put("ab", "cde")), 256 + 5);
        let op = |p| RequestOp {
            request: Some(request_op::Request::RequestPut(p)),
        };
        let t = TxnRequest {
            success: vec![op(put("a", "b")), op(put("c", "d"))],
            failure: vec![op(put("a", "0123456789"))],
            ..Default::default()
        };
        assert_eq!(txn_cost(&t), 2 * 258);
        assert_eq!(txn_cost(&TxnRequest::default()), 0);
    }

    #[test]
    fn quota_compares_size_plus_cost_and_caches_the_size() {
        let q = Quota::new(Some(1000));
        assert_eq!(q.available(100), None, "nothing measured yet");
        q.record(800);
        assert_eq!(q.available(100), Some(true));
        assert_eq!(
            q.available(200),
            Some(false),
            "reaching the quota is refused"
        );
        assert_eq!(q.available(0), Some(true), "reads and deletes cost nothing");
        q.invalidate();
        assert_eq!(q.available(100), None);
        let none = Quota::new(None);
        assert_eq!(none.available(u64::MAX / 2), Some(true));
    }
}
