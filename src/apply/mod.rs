//! The applier: the one writer of state. Committed raft entries are applied here, in log order,
//! on a dedicated thread (backend writes block), and each result is handed to the waiting client.
//!
//! Every state change is one atomic backend batch that also records the entry's raft index
//! (`consistent_index`), so a restart replays exactly the entries the backend has not seen.

pub mod alarm;
mod lease;
mod membership;
mod snapshot;

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use prost::Message as _;
use raft::prelude::{ConfState, Entry, EntryType};
use tokio::sync::{oneshot, watch};

use crate::backend::{Backend, WriteBatch};
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::membership::MemberTable;
use crate::metrics::METRICS;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{Compaction, Store};
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest,
    CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    ResponseHeader, TxnResponse,
};
use crate::proto::ferrocdpb::Member;
use crate::proto::ferrocdpb::{internal_request::Request, InternalRequest};
use crate::raft::transport::PeerTransport;
use crate::raft::{ApplyTask, NodeMsg};
use crate::snap::SnapshotStore;
use crate::txn;
use crate::wait::Wait;
use alarm::Alarms;

/// The answer to one applied request.
pub enum ApplyResponse {
    /// A Put.
    Put(PutResponse),
    /// A DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// A Txn that writes.
    Txn(TxnResponse),
    /// A Compact; the receiver fires when the physical compaction has finished.
    Compact(CompactionResponse, oneshot::Receiver<()>),
    /// An Alarm request.
    Alarm(AlarmResponse),
    /// A membership change: the members after it.
    Members(Vec<Member>),
    /// A LeaseGrant.
    LeaseGrant(LeaseGrantResponse),
    /// A LeaseRevoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// The leader's expiry proposal: how many leases it revoked.
    LeasesExpired(usize),
    /// The leader's checkpoint proposal.
    LeasesCheckpointed,
}

/// How long applied writes may sit in memory before the backend commit (etcd's
/// `--backend-batch-interval` default).
const BATCH_INTERVAL: Duration = Duration::from_millis(100);
/// How many applied entries may sit in memory before the backend commit (etcd's
/// `--backend-batch-limit` default).
const BATCH_LIMIT: usize = 10_000;

/// What a waiting client receives.
pub type ApplyResult = Result<ApplyResponse, EtcdError>;

/// A compaction to run off the applier thread, and who to tell when it is done.
pub struct CompactJob {
    /// The physical deletion.
    pub compaction: Compaction,
    /// Fired when it finished.
    pub done: oneshot::Sender<()>,
}

/// State the applier owns or shares.
pub struct Applier {
    /// The MVCC store; readers take the read lock.
    pub store: Arc<RwLock<Store>>,
    /// The backend under the store (for flushes at snapshot points).
    pub backend: Arc<Backend>,
    /// Clients waiting for their request's result.
    pub wait: Arc<Wait<ApplyResult>>,
    /// Publishes the applied index (linearizable reads wait on it).
    pub applied_tx: watch::Sender<u64>,
    /// Where compactions go to run.
    pub compactor: Sender<CompactJob>,
    /// Active alarms.
    pub alarms: Arc<Alarms>,
    /// Back to the raft loop, for snapshot points.
    pub node_tx: Sender<NodeMsg>,
    /// Applied entries between snapshot points.
    pub snapshot_count: u64,
    /// Last applied index (starts at the backend's consistent index).
    pub applied_index: u64,
    /// Index of the last snapshot point.
    pub last_snapshot_index: u64,
    /// Term of the last applied entry.
    pub applied_term: u64,
    /// The raft configuration as of the applied index.
    pub conf_state: ConfState,
    /// The member table (shared with the server).
    pub members: Arc<MemberTable>,
    /// The peer transport (its peers follow the member table).
    pub transport: Arc<PeerTransport>,
    /// Prepared snapshots (raft asks, the applier prepares).
    pub snaps: Arc<SnapshotStore>,
    /// Where received snapshot files are kept.
    pub snap_dir: std::path::PathBuf,
    /// This member's id.
    pub member_id: u64,
    /// The open backend group: when it opened and how many entries it holds.
    pub group: Option<(Instant, usize)>,
    /// Where committed revisions' events go to reach watchers.
    pub watch_hub: Arc<WatchHub>,
    /// The leases and their attached keys.
    pub lessor: Arc<Lessor>,
}

impl Applier {
    /// Applies tasks until the raft loop hangs up.
    ///
    /// Writes reach the backend in groups, like etcd's batched bbolt commits: a group stays
    /// open across raft Readies and is committed every [`BATCH_INTERVAL`] or
    /// [`BATCH_LIMIT`] entries, before a snapshot point and at exit. Clients are answered as
    /// entries apply (the WAL already holds them durably) and reads see the group from memory;
    /// a crash loses only backend work that the WAL replays.
    pub fn run(mut self, rx: Receiver<ApplyTask>) {
        loop {
            // Wake at least every batch interval: to commit an aging group and to notice
            // snapshot requests from raft.
            let wait = self
                .group
                .map(|(start, _)| {
                    (start + BATCH_INTERVAL).saturating_duration_since(Instant::now())
                })
                .unwrap_or(BATCH_INTERVAL);
            match rx.recv_timeout(wait) {
                Ok(ApplyTask::Entries {
                    entries,
                    conf_states,
                }) => {
                    let (_, applied) = self.group.get_or_insert_with(|| {
                        self.store.write().begin_group();
                        (Instant::now(), 0)
                    });
                    *applied += entries.len();
                    for e in entries {
                        self.apply_entry(e, &conf_states);
                    }
                    METRICS.proposals_applied.set(self.applied_index as i64);
                    self.applied_tx.send_replace(self.applied_index);
                    let snapshot_due =
                        self.applied_index - self.last_snapshot_index >= self.snapshot_count;
                    let (start, n) = self.group.expect("group opened above");
                    if snapshot_due || n >= BATCH_LIMIT || start.elapsed() >= BATCH_INTERVAL {
                        self.close_group();
                    }
                    if snapshot_due {
                        self.snapshot_point();
                    }
                }
                Ok(ApplyTask::Install { meta, path }) => self.install_snapshot(meta, path),
                Err(RecvTimeoutError::Timeout) => self.close_group(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.close_group();
                    break;
                }
            }
            if self.snaps.take_request() {
                self.prepare_snapshot();
            }
        }
        tracing::info!("applier stopped");
    }

    /// Commits the open group, if any.
    fn close_group(&mut self) {
        if self.group.take().is_some() {
            self.end_group();
        }
    }

    /// Commits the open group to the backend. A backend that refuses a write would let state
    /// and WAL diverge, so that stops the member, as etcd does.
    fn end_group(&mut self) {
        let start = Instant::now();
        let mut store = self.store.write();
        if let Err(e) = store.end_group() {
            tracing::error!(error = %e, index = self.applied_index, "backend commit failed; stopping");
            std::process::exit(1);
        }
        let committed = store.current_revision();
        drop(store);
        self.watch_hub.committed(committed);
        METRICS
            .backend_commit
            .observe(start.elapsed().as_secs_f64());
    }

    /// Makes the backend durable through the applied index and tells raft it may drop the log
    /// before it. The consistent index is written explicitly: the last entries may have been
    /// no-ops that wrote nothing.
    fn snapshot_point(&mut self) {
        let (index, term) = (self.applied_index, self.applied_term);
        let start = Instant::now();
        let mut batch = WriteBatch::default();
        batch.set_consistent_index(index, term);
        let res = self
            .backend
            .commit(batch)
            .and_then(|_| self.backend.flush().map(|_| ()));
        if let Err(e) = res {
            tracing::error!(error = %e, index, "flushing the backend for a snapshot failed; keeping the WAL");
            return;
        }
        self.last_snapshot_index = index;
        tracing::info!(
            index,
            took_ms = start.elapsed().as_millis() as u64,
            "backend flushed for snapshot"
        );
        let _ = self.node_tx.send(NodeMsg::Snapshotted { index, term });
        // Have a snapshot ready for any follower that falls behind the released log.
        self.prepare_snapshot();
    }

    fn apply_entry(&mut self, e: Entry, conf_states: &[(u64, ConfState)]) {
        if e.index <= self.applied_index {
            return;
        }
        if e.term != self.applied_term {
            // Every consistent index written from here on is paired with this entry's term.
            self.store.write().set_term(e.term);
        }
        if e.get_entry_type() != EntryType::EntryNormal {
            let cs = conf_states
                .iter()
                .find(|(i, _)| *i == e.index)
                .map(|(_, cs)| cs.clone());
            self.apply_conf_change(&e, cs);
        } else if !e.data.is_empty() {
            match InternalRequest::decode(&e.data[..]) {
                Ok(req) => {
                    let id = req.header.as_ref().map(|h| h.id).unwrap_or(0);
                    let start = Instant::now();
                    let result = self.apply_request(req, e.index, e.term);
                    if start.elapsed() > Duration::from_millis(100) {
                        METRICS.slow_apply.inc();
                        tracing::warn!(
                            index = e.index,
                            took_ms = start.elapsed().as_millis() as u64,
                            "apply request took too long"
                        );
                    }
                    self.wait.trigger(id, result);
                }
                Err(err) => {
                    tracing::error!(index = e.index, error = %err, "committed entry does not decode; skipped")
                }
            }
        }
        self.applied_index = e.index;
        self.applied_term = e.term;
    }

    fn apply_request(&mut self, req: InternalRequest, index: u64, term: u64) -> ApplyResult {
        let Some(request) = req.request else {
            return Err(EtcdError::Internal("empty internal request".into()));
        };
        match request {
            Request::Alarm(a) => self.apply_alarm(a, index),
            Request::MemberAttributes(m) => self.apply_member_attributes(m, index),
            Request::MemberPeerUrls(m) => self.apply_member_peer_urls(m, index),
            Request::Compaction(c) => self.apply_compaction(c, index),
            Request::LeaseCheckpoints(c) => self.apply_lease_checkpoints(c, index),
            Request::LeaseExpiries(e) => self.apply_lease_expiries(e, index, term),
            Request::LeaseGrant(_) | Request::LeaseRevoke(_)
                if self.alarms.has(AlarmType::Corrupt) =>
            {
                Err(EtcdError::Corrupt)
            }
            // etcd refuses new leases while the space quota is exceeded.
            Request::LeaseGrant(_) if self.alarms.has(AlarmType::Nospace) => {
                Err(EtcdError::NoSpace)
            }
            Request::LeaseGrant(g) => self.apply_lease_grant(g, index),
            Request::LeaseRevoke(r) => self.apply_lease_revoke(r, index),
            other => {
                if self.alarms.has(AlarmType::Corrupt) {
                    return Err(EtcdError::Corrupt);
                }
                self.apply_kv(other, index)
            }
        }
    }

    fn apply_kv(&mut self, request: Request, index: u64) -> ApplyResult {
        let lessor = self.lessor.clone();
        let lease_exists = move |id: i64| lessor.exists(id);
        let mut store = self.store.write();
        let begin_rev = store.current_revision();
        let compact_rev = store.compact_revision();
        let nospace = self.alarms.has(AlarmType::Nospace);
        let mut txn = store.write(index);
        let result = match &request {
            Request::Put(p) => {
                if nospace {
                    return Err(EtcdError::NoSpace);
                }
                METRICS.put_total.inc();
                METRICS.put_total_debugging.inc();
                txn::put(&mut txn, begin_rev, p, &lease_exists).map(ApplyResponse::Put)
            }
            Request::DeleteRange(d) => {
                METRICS.delete_total.inc();
                METRICS.delete_total_debugging.inc();
                Ok(ApplyResponse::DeleteRange(txn::delete_range(
                    &mut txn, begin_rev, false, d,
                )))
            }
            Request::Txn(t) => {
                METRICS.txn_total.inc();
                METRICS.txn_total_debugging.inc();
                let path = txn::txn_path(&txn, t);
                match txn::check_txn(&txn, t, &path, begin_rev, compact_rev, &lease_exists) {
                    Err(e) => Err(e),
                    Ok(()) if nospace && txn_puts(t, &path) => Err(EtcdError::NoSpace),
                    Ok(()) => txn::write_txn(&mut txn, t, &path, begin_rev, &lease_exists)
                        .map(ApplyResponse::Txn),
                }
            }
            _ => Err(EtcdError::Internal("not a KV request".into())),
        };
        let r = commit_or_stop(txn, index);
        self.lessor.apply_events(&r.events);
        // Under the store lock, so a reader that sees the revision also finds it in the hub.
        self.watch_hub.notify(r.rev, r.events);
        let rev = r.rev;
        METRICS.current_revision.set(rev);
        METRICS.keys_total.set(store.keys_total() as i64);
        drop(store);
        result.map(|mut resp| {
            match &mut resp {
                ApplyResponse::Txn(t) => {
                    t.header = Some(ResponseHeader {
                        revision: rev,
                        ..Default::default()
                    })
                }
                ApplyResponse::Put(p) => {
                    p.header = Some(ResponseHeader {
                        revision: rev,
                        ..Default::default()
                    })
                }
                ApplyResponse::DeleteRange(d) => {
                    d.header = Some(ResponseHeader {
                        revision: rev,
                        ..Default::default()
                    })
                }
                _ => {}
            }
            resp
        })
    }

    fn apply_compaction(&mut self, c: CompactionRequest, index: u64) -> ApplyResult {
        let mut store = self.store.write();
        let compaction = store.compact(c.revision, index).map_err(txn::mvcc_err)?;
        let rev = store.current_revision();
        METRICS.compact_revision.set(c.revision);
        drop(store);
        // Before the physical compaction starts: watchers behind it are canceled first.
        self.watch_hub.committed(rev);
        self.watch_hub.compacted(c.revision);
        let (done, rx) = oneshot::channel();
        if self
            .compactor
            .send(CompactJob { compaction, done })
            .is_err()
        {
            tracing::warn!("compactor is gone; physical compaction deferred to the next start");
        }
        Ok(ApplyResponse::Compact(
            CompactionResponse {
                header: Some(ResponseHeader {
                    revision: rev,
                    ..Default::default()
                }),
            },
            rx,
        ))
    }

    fn apply_alarm(&mut self, a: AlarmRequest, index: u64) -> ApplyResult {
        let mut store = self.store.write();
        let rev = store.current_revision();
        let mut txn = store.write(index);
        let action = AlarmAction::try_from(a.action).unwrap_or(AlarmAction::Get);
        let this = || {
            vec![crate::proto::etcdserverpb::AlarmMember {
                member_id: a.member_id,
                alarm: a.alarm,
            }]
        };
        let alarms = match action {
            AlarmAction::Get => self.alarms.list(),
            AlarmAction::Activate if a.alarm == AlarmType::None as i32 => Vec::new(),
            AlarmAction::Activate => {
                if self.alarms.activate(txn.extra(), a.member_id, a.alarm) {
                    tracing::warn!(
                        member = format!("{:x}", a.member_id),
                        alarm = a.alarm,
                        "alarm raised"
                    );
                }
                this()
            }
            AlarmAction::Deactivate => {
                if self.alarms.deactivate(txn.extra(), a.member_id, a.alarm) {
                    tracing::info!(
                        member = format!("{:x}", a.member_id),
                        alarm = a.alarm,
                        "alarm cleared"
                    );
                    this()
                } else {
                    Vec::new()
                }
            }
        };
        commit_or_stop(txn, index);
        Ok(ApplyResponse::Alarm(AlarmResponse {
            header: Some(ResponseHeader {
                revision: rev,
                ..Default::default()
            }),
            alarms,
        }))
    }
}

/// Commits an applier write txn. A backend that refuses a write would let state and WAL
/// diverge, so that stops the member, as etcd does; the WAL replays the entry on restart.
pub(crate) fn commit_or_stop(txn: crate::mvcc::WriteTxn<'_>, index: u64) -> crate::mvcc::TxnResult {
    match txn.commit() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, index, "backend commit failed; stopping");
            std::process::exit(1);
        }
    }
}

/// Whether the chosen branches of a txn put anything (refused while NOSPACE is raised).
fn txn_puts(t: &crate::proto::etcdserverpb::TxnRequest, path: &[bool]) -> bool {
    use crate::proto::etcdserverpb::request_op::Request as Op;
    fn walk(t: &crate::proto::etcdserverpb::TxnRequest, path: &[bool], cursor: &mut usize) -> bool {
        let ok = path[*cursor];
        *cursor += 1;
        let mut puts = false;
        for op in if ok { &t.success } else { &t.failure } {
            match &op.request {
                Some(Op::RequestPut(_)) => puts = true,
                Some(Op::RequestTxn(n)) => puts |= walk(n, path, cursor),
                _ => {}
            }
        }
        puts
    }
    let mut cursor = 0;
    walk(t, path, &mut cursor)
}

/// Runs compactions one after another on their own thread, so physical deletion never holds
/// up the applier.
pub fn run_compactor(backend: Arc<Backend>, snaps: Arc<SnapshotStore>, rx: Receiver<CompactJob>) {
    while let Ok(job) = rx.recv() {
        let rev = job.compaction.revision();
        let start = Instant::now();
        tracing::info!(revision = rev, "compaction started");
        // A snapshot being streamed promises revisions above its compaction point: wait for it.
        let _no_snapshot_stream = snaps.compaction_lock.write();
        match job.compaction.run(&backend) {
            Ok(()) => tracing::info!(
                revision = rev,
                took_ms = start.elapsed().as_millis() as u64,
                "compaction finished"
            ),
            Err(e) => {
                tracing::error!(revision = rev, error = %e, "compaction failed; it resumes on the next start")
            }
        }
        let _ = job.done.send(());
    }
}
