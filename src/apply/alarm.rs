//! Cluster alarms (NOSPACE, CORRUPT): raised and cleared through raft, kept in the backend, and
//! consulted on every write so a full or corrupt cluster refuses what etcd refuses.

use std::collections::BTreeSet;

use parking_lot::RwLock;

use crate::backend::{Backend, BackendError, WriteBatch};
use crate::proto::etcdserverpb::{AlarmMember, AlarmType};
use crate::schema::{alarm_key, parse_alarm_key, Bucket};

/// The active alarms, readable from any thread, written only by the applier.
#[derive(Default)]
pub struct Alarms {
    active: RwLock<BTreeSet<(u64, i32)>>,
}

impl Alarms {
    /// Loads the alarms persisted in the backend.
    pub fn load(backend: &Backend) -> Result<Alarms, BackendError> {
        let mut set = BTreeSet::new();
        for item in backend.range(Bucket::Alarm, &[], None) {
            let (k, _) = item?;
            if let Some(alarm) = parse_alarm_key(&k) {
                set.insert(alarm);
            }
        }
        Ok(Alarms {
            active: RwLock::new(set),
        })
    }

    /// Re-reads the alarms from the backend (after a snapshot replaced it).
    pub fn reload(&self, backend: &Backend) -> Result<(), BackendError> {
        let fresh = Alarms::load(backend)?;
        *self.active.write() = fresh.active.into_inner();
        Ok(())
    }

    /// Every active alarm, as the Alarm RPC lists them.
    pub fn list(&self) -> Vec<AlarmMember> {
        self.active
            .read()
            .iter()
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// Whether an alarm of this type is active on any member.
    pub fn has(&self, alarm: AlarmType) -> bool {
        self.active.read().iter().any(|&(_, a)| a == alarm as i32)
    }

    /// Raises an alarm; the batch persists it. Returns false if it was already active.
    pub fn activate(&self, batch: &mut WriteBatch, member_id: u64, alarm: i32) -> bool {
        let added = self.active.write().insert((member_id, alarm));
        if added {
            batch.put(Bucket::Alarm, &alarm_key(member_id, alarm), &[][..]);
        }
        added
    }

    /// Clears an alarm; the batch persists it. Returns false if it was not active.
    pub fn deactivate(&self, batch: &mut WriteBatch, member_id: u64, alarm: i32) -> bool {
        let removed = self.active.write().remove(&(member_id, alarm));
        if removed {
            batch.delete(Bucket::Alarm, &alarm_key(member_id, alarm));
        }
        removed
    }
}
