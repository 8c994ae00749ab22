//! What the hub queues for a stream ([`Outgoing`]): control responses (created, canceled,
//! progress, compaction) and events for one watcher, both without a response header; the
//! api layer adds the header and encodes them (`api::watch`, `api::watch_wire`). Also etcd's
//! ids and refusal texts that appear in those responses.
//!
//! Each message knows what it costs against a stream's byte budget ([`StreamQueue`]); an
//! [`EventsMsg`] never holds part of a revision (events of one revision are always in one
//! response, as etcd sends them).
//!
//! [`StreamQueue`]: super::StreamQueue

use super::event::{event_bytes, EventRef};

/// etcd's `clientv3.InvalidWatchID`: the id of responses that belong to no single watcher.
pub const INVALID_WATCH_ID: i64 = -1;

/// etcd's error when a client picks a watch id already used on the stream.
pub const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// etcd's error for a range whose end is not above its start.
pub const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// A response without a header (the api layer adds cluster, member, term).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    /// The watch id (-1 for stream-wide progress and refused creates).
    pub watch_id: i64,
    /// The header revision.
    pub revision: i64,
    /// A create reply.
    pub created: bool,
    /// The watcher is gone.
    pub canceled: bool,
    /// Set when canceled by compaction.
    pub compact_revision: i64,
    /// Why a create was refused.
    pub cancel_reason: String,
}

/// Events for one watcher: one revision when live, several when catching up; never part of
/// a revision.
#[derive(Debug, Clone)]
pub struct EventsMsg {
    /// The watch id.
    pub watch_id: i64,
    /// The header revision: the last revision this response covers.
    pub revision: i64,
    /// The events, already filtered.
    pub events: Vec<EventRef>,
    /// Whether the watcher asked for `prev_kv` (otherwise strip it).
    pub prev_kv: bool,
    /// Whether the watcher allows splitting a large response.
    pub fragment: bool,
}

/// What the hub queues for a stream.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Created / canceled / progress / compaction.
    Control(Control),
    /// Events.
    Events(EventsMsg),
}

impl Outgoing {
    /// Bytes charged against the stream's budget.
    pub(crate) fn size_estimate(&self) -> usize {
        match self {
            Outgoing::Control(c) => 96 + c.cancel_reason.len(),
            Outgoing::Events(m) => {
                96 + m
                    .events
                    .iter()
                    .map(|e| 16 + event_bytes(e.event()))
                    .sum::<usize>()
            }
        }
    }

    /// Events carried (for the pending-events gauge).
    pub(crate) fn event_count(&self) -> usize {
        match self {
            Outgoing::Control(_) => 0,
            Outgoing::Events(m) => m.events.len(),
        }
    }
}
