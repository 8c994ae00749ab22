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
//! `FERROCD_FAULT_POINT=<name>[:<action>],...` (same gating) arms named points on the path of
//! a long operation, so a test can crash or stall the process exactly there (see [`point`]):
//! `kill` (the default) ends the process on the spot, with nothing flushed, as `kill -9` would; `sleep=<ms>` stalls the
//! calling thread. The points, in the order a received snapshot passes them:
//! `snap-received` (file fsync'd, raft not told), `snap-wal-recorded` (the WAL holds the
//! snapshot point, the applier has not started), `snap-install-begin` (the applier is about to
//! replace the backend), `snap-install-cleared` (old content deleted), `snap-install-loaded`
//! (new content written, consistent index not yet set), `snap-installed` (backend replaced
//! and flushed, memory not yet switched over).
//!
//! `FERROCD_PLANT_BUG=<name>` (same gating) switches on a deliberately broken behaviour so the
//! chaos harness can prove it finds bugs: `stale-reads` makes linearizable reads skip the
//! ReadIndex barrier (see `server::EtcdServer::read_barrier`); `stuck-lease-clock` makes the
//! leader never revoke an expired lease (see `server/lease.rs`).

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

/// What an armed fault point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PointAction {
    Kill,
    Sleep(std::time::Duration),
}

fn point_action(name: &str) -> Option<PointAction> {
    static POINTS: OnceLock<Vec<(String, PointAction)>> = OnceLock::new();
    if !enabled() {
        return None;
    }
    POINTS
        .get_or_init(|| parse_points(&std::env::var("FERROCD_FAULT_POINT").unwrap_or_default()))
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| *a)
}

fn parse_points(spec: &str) -> Vec<(String, PointAction)> {
    spec.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (name, action) = p.split_once(':').unwrap_or((p, "kill"));
            let action = match action {
                "kill" => PointAction::Kill,
                a => {
                    let ms = a.strip_prefix("sleep=")?.parse().ok()?;
                    PointAction::Sleep(std::time::Duration::from_millis(ms))
                }
            };
            Some((name.to_string(), action))
        })
        .collect()
}

/// Whether fault point `name` is armed (callers may make state durable first, as a crash
/// after a background flush would find it).
pub fn armed(name: &str) -> bool {
    point_action(name).is_some()
}

/// Fault point `name`: does nothing unless armed; then SIGKILLs this process on the spot
/// (nothing is flushed or cleaned up) or stalls the calling thread.
pub fn point(name: &str) {
    match point_action(name) {
        None => {}
        Some(PointAction::Kill) => {
            tracing::warn!(point = name, "fault injection: dying at this point");
            // A real SIGKILL, as `kill -9` sends: no destructor, flush or shutdown step runs,
            // and (unlike abort) no core file is written. This thread waits for it to land.
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        Some(PointAction::Sleep(d)) => {
            tracing::warn!(
                point = name,
                ms = d.as_millis() as u64,
                "fault injection: stalling"
            );
            std::thread::sleep(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_specs_parse() {
        assert_eq!(
            parse_points("a, b:kill,c:sleep=250,d:bogus,,e:sleep=x"),
            vec![
                ("a".to_string(), PointAction::Kill),
                ("b".to_string(), PointAction::Kill),
                (
                    "c".to_string(),
                    PointAction::Sleep(std::time::Duration::from_millis(250))
                ),
            ]
        );
    }
}
