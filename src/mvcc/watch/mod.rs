//! The watch hub: revision-indexed delivery of MVCC events to watchers (etcd's
//! `watchableStore`), with etcd's semantics and bounded memory for slow streams.
//!
//! How events flow:
//! * The applier hands each committed revision's events to [`WatchHub::notify`], which only
//!   appends them to the **ring** (`ring`: a bounded in-memory window of recent revisions)
//!   and wakes the dispatcher: the applier never waits for a client.
//! * The **dispatcher** thread (`dispatch`) takes new revisions from the ring in order and
//!   fans each one out to the **synced** watchers (those that have seen everything up to the
//!   last dispatched revision), found through an interval index ([`WatcherGroup`]). A push
//!   into a stream's bounded queue never waits: when the queue is over budget the watcher
//!   becomes **unsynced** at the revision it missed, and the stream keeps every earlier
//!   response.
//! * The **syncer** thread (`catchup`) catches unsynced watchers up in bounded chunks: from
//!   the ring when the revisions are still there, otherwise from the backend (revisions leave
//!   the ring only after the backend committed them), then moves them back to synced.
//!
//! Ordering: every response for a watcher is queued under the state lock in revision order;
//! a watcher is either synced (fed only by the dispatcher) or unsynced (fed only by the
//! syncer), never both, and moves from unsynced to synced only when it has seen everything up
//! to the last dispatched revision (`state` owns these transitions). Events of one revision
//! are always in one response.
//!
//! Locks (`hub` owns them): `state` may be taken before `ring`, never the other way; the
//! store lock is never taken while holding either.
//!
//! Files: `hub` is the public handle (threads, applier calls, restore); `stream` one
//! stream's handle and the create / cancel / progress operations; `spec` the watcher
//! description the hub accepts ([`WatchSpec`]); `state` per-watcher state and transitions;
//! `ring` the recent revisions; `dispatch` and `catchup` the two threads; `event` the shared
//! events and their encodings; `outgoing` what is queued for a stream; `queue` the bounded
//! queue between the hub and one stream; `interval` matches keys to watchers; `config` the
//! bounds. The gRPC adapter, which converts etcd's `WatchCreateRequest` into a [`WatchSpec`]
//! and headers and encodes the responses, is `api::watch`.

mod catchup;
mod config;
mod dispatch;
mod event;
mod hub;
mod interval;
mod outgoing;
mod queue;
mod ring;
mod spec;
mod state;
mod stream;
#[cfg(test)]
mod tests;

pub use config::HubConfig;
pub use event::{EventRef, RevEntry};
pub use hub::WatchHub;
pub use interval::{End, KeySpan, WatcherGroup, WatcherId};
pub use outgoing::{
    Control, EventsMsg, Outgoing, ERR_DUPLICATE_ID, ERR_EMPTY_RANGE, INVALID_WATCH_ID,
};
pub use queue::StreamQueue;
pub use spec::WatchSpec;
pub use stream::{StreamId, WatchStreamHandle};
