//! Test-only fault switch (debug builds only; `tests/chaos.rs` drives it).
//!
//! Compiled only with `debug_assertions` and active only when the process was started with
//! `FERROCD_FAULT_INJECTION=1`; otherwise every check below is `false` and the HTTP control
//! routes are not mounted, so behaviour is unchanged. Release builds do not contain this module.
//!
//! The table says which peers' raft traffic this member drops:
//! - `drop_to`: batches (and snapshots) this member would send to these member ids vanish;
//! - `drop_from`: batches (and snapshots) received from these member ids vanish.
//!
//! A one-way loss is one direction; a partition is both directions (set on either side or both).
//! Dropped batches are silent, as on a lossy network: the peer stream stays connected and raft
//! retransmits. Only raft messages are affected, not the forwarded lease or HashKV calls.
//!
//! Control over HTTP on the member's client port (see `api/http.rs`):
//! `POST /debug/faults` with `{"drop_to":[ids],"drop_from":[ids]}` replaces the table,
//! `DELETE /debug/faults` heals, `GET /debug/faults` shows it.
//!
//! `FERROCD_PLANT_BUG=<name>` (same gating) switches on a deliberately broken behaviour so the
//! chaos harness can prove it finds bugs: `stale-reads` makes linearizable reads skip the
//! ReadIndex barrier (see `server::EtcdServer::read_barrier`).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// The fault table of this member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Member ids whose raft messages from this member are dropped.
    #[serde(default)]
    pub drop_to: BTreeSet<u64>,
    /// Member ids whose raft messages to this member are dropped.
    #[serde(default)]
    pub drop_from: BTreeSet<u64>,
}

static TABLE: RwLock<Faults> = RwLock::new(Faults {
    drop_to: BTreeSet::new(),
    drop_from: BTreeSet::new(),
});

/// Whether the process was started with `FERROCD_FAULT_INJECTION=1`.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("FERROCD_FAULT_INJECTION").as_deref() == Ok("1"))
}

/// Whether raft messages to member `id` are to be dropped.
pub fn drop_to(id: u64) -> bool {
    enabled() && TABLE.read().drop_to.contains(&id)
}

/// Whether raft messages from member `id` are to be dropped.
pub fn drop_from(id: u64) -> bool {
    enabled() && TABLE.read().drop_from.contains(&id)
}

/// Replaces the table (ignored unless enabled).
pub fn set(f: Faults) {
    if enabled() {
        tracing::warn!(drop_to = ?f.drop_to, drop_from = ?f.drop_from, "fault injection: table set");
        *TABLE.write() = f;
    }
}

/// Heals: drops nothing any more.
pub fn clear() {
    set(Faults::default());
}

/// The current table.
pub fn get() -> Faults {
    TABLE.read().clone()
}

/// Whether the planted bug `name` is switched on (`FERROCD_PLANT_BUG`, only when enabled).
pub fn planted_bug(name: &str) -> bool {
    static BUG: OnceLock<Option<String>> = OnceLock::new();
    enabled()
        && BUG
            .get_or_init(|| std::env::var("FERROCD_PLANT_BUG").ok())
            .as_deref()
            == Some(name)
}
