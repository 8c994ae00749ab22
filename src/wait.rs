//! Rendezvous between a proposing client and the applier, keyed by request id.
//!
//! A client registers before proposing; the applier (or the raft loop, when a proposal is
//! dropped) completes the entry with the result. Entries applied on a member where nobody waits
//! (proposed elsewhere, or replayed after restart) find no waiter and are ignored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Pending requests by id; completing removes the entry.
pub struct Wait<T> {
    pending: Mutex<HashMap<u64, oneshot::Sender<T>>>,
}

impl<T> Default for Wait<T> {
    fn default() -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Wait<T> {
    /// Registers interest in `id`; the receiver resolves when `trigger(id, ..)` is called.
    pub fn register(&self, id: u64) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        rx
    }

    /// Delivers the result for `id` if someone still waits for it.
    pub fn trigger(&self, id: u64, value: T) {
        if let Some(tx) = self.pending.lock().remove(&id) {
            let _ = tx.send(value);
        }
    }

    /// Forgets `id` (the client gave up, e.g. on timeout).
    pub fn cancel(&self, id: u64) {
        self.pending.lock().remove(&id);
    }

    /// Whether anyone waits for `id` (lets the applier skip building unwanted responses).
    pub fn is_registered(&self, id: u64) -> bool {
        self.pending.lock().contains_key(&id)
    }

    /// Number of requests still waiting (the proposals-pending gauge).
    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Generates request ids unique across members and restarts, like etcd's idutil: the low 16
/// bits of the member id on top, then the start time in milliseconds, then a counter.
pub struct IdGenerator {
    prefix: u64,
    next: AtomicU64,
}

impl IdGenerator {
    /// A generator for `member_id`, seeded with the current time.
    pub fn new(member_id: u64) -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let suffix = (ms & ((1 << 40) - 1)) << 8;
        Self {
            prefix: (member_id & 0xffff) << 48,
            next: AtomicU64::new(suffix),
        }
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.prefix | (n & ((1 << 48) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_reaches_registered_waiter_only() {
        let w: Wait<u32> = Wait::default();
        let rx = w.register(7);
        w.trigger(8, 1); // nobody waits
        assert_eq!(w.len(), 1);
        w.trigger(7, 42);
        assert_eq!(rx.await.unwrap(), 42);
        assert!(w.is_empty());
    }

    #[test]
    fn ids_are_unique_and_carry_member_prefix() {
        let g = IdGenerator::new(0xabcd_1234);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x1234);
        assert_eq!(b, a + 1);
    }
}
