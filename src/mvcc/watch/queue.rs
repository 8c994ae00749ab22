//! The bounded queue between the hub and one gRPC watch stream.
//!
//! The hub's threads push without ever waiting: event pushes fail once the stream holds more
//! than its byte budget, and the hub then marks the watcher unsynced and catches it up later
//! from the ring or the backend. Control responses (created, canceled, progress) are always
//! accepted, because dropping one would break the protocol; their number is bounded by the
//! stream's reader, which stops reading requests while the queue is over budget.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

use super::outgoing::Outgoing;
use crate::metrics::METRICS;

/// Wakes a hub thread that sleeps on a condition variable (the syncer waits for queue room).
#[derive(Default)]
pub(crate) struct Signal {
    raised: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    /// Wakes the waiter (or makes its next wait return at once).
    pub fn raise(&self) {
        *self.raised.lock() = true;
        self.cv.notify_one();
    }

    /// Waits until raised or `timeout` passed; clears the flag.
    pub fn wait(&self, timeout: std::time::Duration) {
        let mut raised = self.raised.lock();
        if !*raised {
            let _ = self.cv.wait_for(&mut raised, timeout);
        }
        *raised = false;
    }
}

/// One queued response with its accounting.
struct Queued {
    msg: Outgoing,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    msgs: VecDeque<Queued>,
    bytes: usize,
    closed: bool,
    /// The hub skipped or failed a push for lack of room: wake the syncer when room frees up.
    wants_room: bool,
}

/// The queue of one stream.
pub struct StreamQueue {
    inner: Mutex<Inner>,
    /// The consumer (the stream's send side) waits here for messages.
    ready: Notify,
    /// The stream's request reader waits here for room.
    room: Notify,
    max_bytes: usize,
    syncer: Arc<Signal>,
}

impl StreamQueue {
    pub(crate) fn new(max_bytes: usize, syncer: Arc<Signal>) -> Self {
        StreamQueue {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            room: Notify::new(),
            max_bytes: max_bytes.max(1),
            syncer,
        }
    }

    /// Queues event responses if the stream is within its budget (an empty queue always takes
    /// one, so a response larger than the budget still goes out). On refusal the message is
    /// handed back and the syncer is woken once room frees up.
    pub(crate) fn try_push(&self, msg: Outgoing) -> Result<(), Outgoing> {
        let bytes = msg.size_estimate();
        let mut q = self.inner.lock();
        if q.closed {
            return Ok(()); // nobody will read it; dropping it is what closing means
        }
        if !q.msgs.is_empty() && q.bytes + bytes > self.max_bytes {
            q.wants_room = true;
            return Err(msg);
        }
        self.enqueue(&mut q, msg, bytes);
        Ok(())
    }

    /// Queues a control response regardless of the budget.
    pub(crate) fn push_control(&self, msg: Outgoing) {
        let bytes = msg.size_estimate();
        let mut q = self.inner.lock();
        if !q.closed {
            self.enqueue(&mut q, msg, bytes);
        }
    }

    fn enqueue(&self, q: &mut Inner, msg: Outgoing, bytes: usize) {
        METRICS.watch_pending_events.add(msg.event_count() as i64);
        let was_empty = q.msgs.is_empty();
        q.bytes += bytes;
        q.msgs.push_back(Queued { msg, bytes });
        // The consumer only waits after finding the queue empty, so only the first message
        // needs to wake it (a permit is kept if it is not waiting yet).
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Whether the syncer may add catch-up responses (below half the budget, so catch-up
    /// leaves room for live events); records the wish for room otherwise.
    pub(crate) fn has_room(&self) -> bool {
        let mut q = self.inner.lock();
        let room = q.bytes <= self.max_bytes / 2;
        if !room {
            q.wants_room = true;
        }
        room
    }

    /// Whether the queue is over its budget (the request reader then waits).
    pub fn is_full(&self) -> bool {
        self.inner.lock().bytes > self.max_bytes
    }

    /// Waits until the queue is within its budget.
    pub async fn wait_room(&self) {
        loop {
            let notified = self.room.notified();
            if !self.is_full() {
                return;
            }
            notified.await;
        }
    }

    /// The next response; `None` once the stream was closed and the queue is empty.
    pub async fn pop(&self) -> Option<Outgoing> {
        loop {
            let notified = self.ready.notified();
            if let Some(m) = self.try_pop() {
                return Some(m);
            }
            if self.inner.lock().closed {
                return None;
            }
            notified.await;
        }
    }

    /// The next response if one is queued.
    pub fn try_pop(&self) -> Option<Outgoing> {
        let mut q = self.inner.lock();
        let Queued { msg, bytes } = q.msgs.pop_front()?;
        q.bytes -= bytes;
        let below_half = q.bytes <= self.max_bytes / 2;
        let wake_syncer = below_half && std::mem::take(&mut q.wants_room);
        let below_max = q.bytes <= self.max_bytes;
        drop(q);
        let n = msg.event_count() as i64;
        METRICS.watch_pending_events.sub(n);
        METRICS.watch_events.inc_by(n as u64);
        if wake_syncer {
            self.syncer.raise();
        }
        if below_max {
            self.room.notify_waiters();
        }
        Some(msg)
    }

    /// Drops everything queued and refuses further messages.
    pub(crate) fn close(&self) {
        let mut q = self.inner.lock();
        q.closed = true;
        let dropped: i64 = q.msgs.iter().map(|m| m.msg.event_count() as i64).sum();
        q.msgs.clear();
        q.bytes = 0;
        drop(q);
        METRICS.watch_pending_events.sub(dropped);
        self.ready.notify_one();
        self.room.notify_waiters();
    }

    /// Queued responses (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.inner.lock().msgs.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes queued, as estimated for the budget.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}
