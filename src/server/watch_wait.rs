//! Server-side watches for the concurrency recipes (locks, elections): etcd runs those recipes
//! through an in-process client whose watches go through the member's own watch hub, and so
//! do we, without a gRPC stream in between.

use super::EtcdServer;
use crate::error::EtcdError;
use crate::mvcc::watch::{Outgoing, WatchSpec, WatchStreamHandle};
use crate::proto::mvccpb;

/// The events of one revision range for one of a [`KeyWatch`]'s ranges.
#[derive(Debug, Clone)]
pub struct KeyEvents {
    /// Which range (index into the ranges given to [`EtcdServer::watch_ranges`]).
    pub index: usize,
    /// The header revision of the batch (its last revision).
    pub revision: i64,
    /// The events, in revision order.
    pub events: Vec<mvccpb::Event>,
}

/// Watchers on one hub stream, one per range, all from the same start revision. Dropping it
/// removes them from the hub.
pub struct KeyWatch {
    handle: WatchStreamHandle,
}

impl EtcdServer {
    /// Watches each `(key, range_end)` from `start_revision` (inclusive; etcd's range-end
    /// rules). The hub catches a past start up before live events, so a recipe that read at
    /// revision R and watches from R+1 misses nothing in between.
    pub fn watch_ranges(&self, ranges: &[(Vec<u8>, Vec<u8>)], start_revision: i64) -> KeyWatch {
        let handle = self.watch_hub().open_stream();
        for (i, (key, range_end)) in ranges.iter().enumerate() {
            handle.create(&WatchSpec {
                key: key.clone(),
                range_end: range_end.clone(),
                start_revision,
                // Ids are explicit and start at 1 (0 asks the hub to pick one).
                watch_id: i as i64 + 1,
                ..Default::default()
            });
        }
        KeyWatch { handle }
    }
}

impl KeyWatch {
    /// The next batch of events for any of the ranges. Fails with etcd's compaction error
    /// when the start revision was compacted, and with `server stopped` when the hub closes.
    pub async fn next(&mut self) -> Result<KeyEvents, EtcdError> {
        loop {
            match self.handle.next().await {
                None => return Err(EtcdError::Stopped),
                Some(Outgoing::Control(c)) if c.canceled => {
                    return Err(if c.compact_revision > 0 {
                        EtcdError::Compacted
                    } else {
                        EtcdError::Internal(format!("watch canceled: {}", c.cancel_reason))
                    });
                }
                // created replies and progress notifications carry no events
                Some(Outgoing::Control(_)) => {}
                Some(Outgoing::Events(m)) if m.events.is_empty() || m.watch_id < 1 => {}
                Some(Outgoing::Events(m)) => {
                    return Ok(KeyEvents {
                        index: (m.watch_id - 1) as usize,
                        revision: m.revision,
                        events: m.events.iter().map(|e| e.event().clone()).collect(),
                    })
                }
            }
        }
    }
}
