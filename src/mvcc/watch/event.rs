//! The events of one revision as the hub shares them: a [`RevEntry`] holds a revision's
//! events once, in etcd's `mvccpb` form, and every response that carries one of them holds an
//! [`EventRef`] to it instead of a copy. An event's protobuf encoding is made on first send
//! and then copied into every response, so thousands of watchers of one key cost one encode.
//!
//! The ring, catch-up from the backend and the api's wire encoder all use these types; the
//! conversion from the store's [`Event`] to `mvccpb` lives here too, so the rest of the hub
//! never builds protobuf events itself. Sizes here are estimates for budgets, not exact.

use std::sync::{Arc, OnceLock};

use crate::mvcc::{Event, EventType, KeyValue};
use crate::proto::mvccpb;

/// The events of one revision, shared by every response that carries them.
#[derive(Debug)]
pub struct RevEntry {
    /// The revision.
    pub rev: i64,
    /// Its events in sub-revision order, with `prev_kv` filled where known.
    pub events: Vec<mvccpb::Event>,
    /// Each event's protobuf encoding, made once on first send and then copied into every
    /// response that carries it (thousands of watchers of one key get the same bytes):
    /// `[without prev_kv, with prev_kv]`.
    wire: Vec<[OnceLock<Vec<u8>>; 2]>,
    pub(super) bytes: usize,
}

impl RevEntry {
    /// Wraps the events of revision `rev`.
    pub fn new(rev: i64, events: Vec<mvccpb::Event>) -> Self {
        // Budgets count the encodings as well, which may be made later.
        let bytes = events.iter().map(|e| 2 * event_bytes(e)).sum();
        let wire = events.iter().map(|_| Default::default()).collect();
        RevEntry {
            rev,
            events,
            wire,
            bytes,
        }
    }
}

/// Approximate memory of one event (for budgets, not exact).
pub(super) fn event_bytes(e: &mvccpb::Event) -> usize {
    let kv = |kv: &Option<mvccpb::KeyValue>| {
        kv.as_ref()
            .map(|kv| kv.key.len() + kv.value.len() + 48)
            .unwrap_or(0)
    };
    16 + kv(&e.kv) + kv(&e.prev_kv)
}

/// One event of a shared [`RevEntry`].
#[derive(Debug, Clone)]
pub struct EventRef {
    pub(super) entry: Arc<RevEntry>,
    pub(super) index: u32,
}

impl EventRef {
    /// Event `index` of `entry`.
    pub fn new(entry: Arc<RevEntry>, index: u32) -> Self {
        assert!((index as usize) < entry.events.len(), "no event {index}");
        EventRef { entry, index }
    }

    /// The event.
    pub fn event(&self) -> &mvccpb::Event {
        &self.entry.events[self.index as usize]
    }

    /// The event's protobuf encoding, with or without its `prev_kv` (encoded on first use,
    /// then shared).
    pub fn encoded(&self, prev_kv: bool) -> &[u8] {
        use prost::Message as _;
        let i = self.index as usize;
        let ev = &self.entry.events[i];
        let with = prev_kv && ev.prev_kv.is_some();
        self.entry.wire[i][usize::from(with)].get_or_init(|| {
            if with || ev.prev_kv.is_none() {
                ev.encode_to_vec()
            } else {
                mvccpb::Event {
                    r#type: ev.r#type,
                    kv: ev.kv.clone(),
                    prev_kv: None,
                }
                .encode_to_vec()
            }
        })
    }

    /// Its revision.
    pub fn revision(&self) -> i64 {
        self.entry.rev
    }
}

/// The store's key-value in `mvccpb` form.
pub(super) fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// The store's event in `mvccpb` form (its `prev_kv` too, when the store filled it).
pub(super) fn to_pb(e: Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventType::Put => mvccpb::event::EventType::Put as i32,
            EventType::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv_to_pb(e.kv)),
        prev_kv: e.prev_kv.map(kv_to_pb),
    }
}
