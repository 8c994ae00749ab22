//! The hub's bounds ([`HubConfig`]): how much memory the ring and each stream may hold, and
//! how much work one dispatcher or syncer step may do. Defaults follow etcd where etcd has a
//! number (512 watchers and 1000 revisions per sync step, a 100 ms sync loop).

use std::time::Duration;

/// Bounds of the hub's memory and work per step.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Revisions the ring keeps once the backend has them (it always keeps the ones it does
    /// not have yet, and the ones not dispatched yet).
    pub ring_max_revisions: usize,
    /// Bytes of events the ring keeps once the backend has them.
    pub ring_max_bytes: usize,
    /// A stream's queue budget: past it, live events make watchers unsynced instead of queueing.
    pub stream_max_bytes: usize,
    /// Unsynced watchers caught up per syncer step (etcd: 512).
    pub sync_max_watchers: usize,
    /// Revisions read per syncer step (etcd: 1000 per watcher batch).
    pub sync_max_revisions: i64,
    /// Bytes of events read per syncer step (beyond the first revision).
    pub sync_max_bytes: usize,
    /// How long the syncer sleeps when nothing wakes it (etcd's sync loop runs every 100 ms).
    pub sync_interval: Duration,
    /// Revisions the dispatcher may fall behind the applier before it hands every synced
    /// watcher to the syncer and skips ahead, so an overloaded hub keeps bounded memory
    /// instead of a growing backlog.
    pub dispatch_max_backlog: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            ring_max_revisions: 4096,
            ring_max_bytes: 32 * 1024 * 1024,
            stream_max_bytes: 4 * 1024 * 1024,
            sync_max_watchers: 512,
            sync_max_revisions: 1000,
            sync_max_bytes: 1024 * 1024,
            sync_interval: Duration::from_millis(100),
            dispatch_max_backlog: 4096,
        }
    }
}
