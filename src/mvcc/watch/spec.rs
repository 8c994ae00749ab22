//! [`WatchSpec`]: what the hub needs to create a watcher, in ferrocd's own terms. The api
//! layer converts etcd's `WatchCreateRequest` into it (and refuses a negative start revision
//! before that); the server's in-process watches build one directly. Keeping the protobuf
//! request out of here keeps the mvcc layer independent of the gRPC API.

/// One watcher to create: its key range, where it starts and what it wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSpec {
    /// The key, or the start of the range (empty: the smallest key, as etcd).
    pub key: Vec<u8>,
    /// etcd's range end: empty for the single key `key`, `"\0"` for every key from `key` on,
    /// otherwise the exclusive end (which must be above `key`).
    pub range_end: Vec<u8>,
    /// The first revision wanted (inclusive); 0 for "from the next revision". Not negative.
    pub start_revision: i64,
    /// The watch id the client chose, or 0 for one picked by the hub.
    pub watch_id: i64,
    /// Send each event's previous key-value.
    pub prev_kv: bool,
    /// Leave put events out (etcd's `NOPUT` filter).
    pub no_put: bool,
    /// Leave delete events out (etcd's `NODELETE` filter).
    pub no_delete: bool,
    /// Send empty progress responses on the stream's progress ticks while synced and idle.
    pub progress_notify: bool,
    /// Allow splitting a response too large for one message.
    pub fragment: bool,
}
