//! The watch hub: revision-indexed delivery of MVCC events to watchers (etcd's
//! `watchableStore`), with etcd's semantics and bounded memory for slow streams.
//!
//! `hub` holds the watchers, the ring of recent revisions and the dispatcher and syncer
//! threads; `interval` matches keys to watchers; `queue` is the bounded queue between the hub
//! and one gRPC stream. The gRPC adapter is `api::watch`.

mod hub;
mod interval;
mod queue;
#[cfg(test)]
mod tests;

pub use hub::{
    Control, EventRef, EventsMsg, HubConfig, Outgoing, RevEntry, StreamId, WatchHub,
    WatchStreamHandle, ERR_DUPLICATE_ID, ERR_EMPTY_RANGE, INVALID_WATCH_ID,
};
pub use interval::{End, KeySpan, WatcherGroup, WatcherId};
pub use queue::StreamQueue;
