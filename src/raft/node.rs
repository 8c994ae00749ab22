//! The raft loop: one OS thread owns the raft-rs `RawNode` and the WAL.
//!
//! Every proposal, peer message and ReadIndex request that arrived since the last Ready is fed
//! to raft, then the Ready's entries and hard state are appended to the WAL with a single
//! fdatasync (group commit) before raft is told they are persisted. Committed entries go to the
//! applier thread in log order. The loop runs on its own thread because fsync blocks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::prelude::*;
use raft::{RawNode, StateRole};

use super::storage::RaftStorage;
use super::transport::Transport;
use crate::metrics::METRICS;
use crate::wal::{Record, Wal};

/// What other threads ask of the raft loop.
pub enum NodeMsg {
    /// Propose an encoded internal request; `id` identifies its waiter if raft drops it.
    Propose {
        /// The request id (to fail its waiter if the proposal is dropped).
        id: u64,
        /// The encoded `InternalRequest`.
        data: Vec<u8>,
    },
    /// Start a ReadIndex round identified by `ctx`.
    ReadIndex {
        /// Opaque context echoed back in the read state.
        ctx: Vec<u8>,
    },
    /// A raft message from a peer.
    Step(Box<Message>),
    /// Propose a membership change; `id` identifies its waiter if raft drops it.
    ProposeConfChange {
        /// The request id.
        id: u64,
        /// The change.
        cc: ConfChangeV2,
    },
    /// A peer could not be reached (the leader probes it again).
    Unreachable(u64),
    /// How sending a snapshot to a peer ended.
    SnapshotStatus {
        /// The peer.
        to: u64,
        /// Whether it was delivered.
        ok: bool,
    },
    /// Hand leadership to another voter.
    TransferLeader(u64),
    /// Report raft's view of replication progress.
    Progress(tokio::sync::oneshot::Sender<ProgressInfo>),
    /// The applier flushed the backend through `index`; raft may forget older log entries.
    Snapshotted {
        /// The last applied (and now durable in the backend) index.
        index: u64,
        /// Its term.
        term: u64,
    },
    /// Stop the loop (shutdown).
    Stop,
}

/// Committed work for the applier, in log order.
pub enum ApplyTask {
    /// Committed entries to apply, with the configuration raft reached at each conf change.
    Entries {
        /// The entries.
        entries: Vec<Entry>,
        /// (index, configuration after it) for each conf change among them.
        conf_states: Vec<(u64, ConfState)>,
    },
    /// Replace the state with a received snapshot (already durable in the WAL and on disk).
    Install {
        /// Where the snapshot is.
        meta: crate::snap::SnapshotMeta,
        /// The snapshot file.
        path: std::path::PathBuf,
    },
}

/// Raft's replication view, for learner promotion checks.
#[derive(Debug, Clone, Default)]
pub struct ProgressInfo {
    /// Whether this member leads.
    pub is_leader: bool,
    /// The leader's last log index.
    pub last_index: u64,
    /// Matched index per member (leader only).
    pub matched: std::collections::HashMap<u64, u64>,
}

/// Raft facts other threads read without asking the loop.
#[derive(Default)]
pub struct RaftStatus {
    /// The known leader (0 = none).
    pub leader: AtomicU64,
    /// The current term.
    pub term: AtomicU64,
    /// The commit index.
    pub commit: AtomicU64,
    /// Whether this member leads.
    pub is_leader: AtomicBool,
    /// The last index in the raft log.
    pub last_index: AtomicU64,
    /// Set when the loop stopped (fatal error or shutdown).
    pub stopped: AtomicBool,
    /// Whether this member is a learner.
    pub is_learner: AtomicBool,
}

/// Called with the request id of a proposal raft refused (no leader, transfer in progress).
pub type DroppedFn = Box<dyn Fn(u64) + Send>;
/// Called with (ctx, index) for every ReadIndex answer.
pub type ReadStateFn = Box<dyn Fn(Vec<u8>, u64) + Send>;
/// Called when this member starts (`true`) or stops (`false`) leading, from the raft loop, so
/// leader-only duties (the lease clock) start and stop with the role itself.
pub type RoleFn = Box<dyn Fn(bool) + Send>;

/// Everything the loop owns.
pub struct Node {
    raw: RawNode<RaftStorage>,
    wal: Wal,
    rx: Receiver<NodeMsg>,
    apply_tx: Sender<ApplyTask>,
    transport: Box<dyn Transport>,
    status: Arc<RaftStatus>,
    on_dropped: DroppedFn,
    on_read_state: ReadStateFn,
    on_role: RoleFn,
    tick: Duration,
    catchup_entries: u64,
    last_persisted_hs: HardState,
    snap_dir: std::path::PathBuf,
}

/// How to build a [`Node`].
pub struct NodeParts {
    /// raft-rs configuration (id, ticks, applied index).
    pub config: raft::Config,
    /// The log restored from the WAL.
    pub storage: RaftStorage,
    /// The open WAL.
    pub wal: Wal,
    /// Inbox.
    pub rx: Receiver<NodeMsg>,
    /// To the applier.
    pub apply_tx: Sender<ApplyTask>,
    /// To peers.
    pub transport: Box<dyn Transport>,
    /// Shared status.
    pub status: Arc<RaftStatus>,
    /// Dropped-proposal callback.
    pub on_dropped: DroppedFn,
    /// ReadIndex callback.
    pub on_read_state: ReadStateFn,
    /// Leadership gained or lost.
    pub on_role: RoleFn,
    /// Tick interval (the heartbeat interval).
    pub tick: Duration,
    /// Entries kept in the log behind a snapshot for slow followers.
    pub catchup_entries: u64,
    /// Where received snapshots are kept.
    pub snap_dir: std::path::PathBuf,
}

impl Node {
    /// Creates the raw node; campaigns at once when this member is the only voter, as etcd
    /// fast-forwards its election ticks for single-member clusters.
    pub fn new(p: NodeParts) -> Result<Node, raft::Error> {
        let logger = super::logger::raft_logger();
        let last_persisted_hs = p.storage.hard_state();
        let voters = p.storage.initial_state()?.conf_state.voters;
        let mut raw = RawNode::new(&p.config, p.storage, &logger)?;
        if voters == [p.config.id] {
            raw.campaign()?;
        }
        Ok(Node {
            raw,
            wal: p.wal,
            rx: p.rx,
            apply_tx: p.apply_tx,
            transport: p.transport,
            status: p.status,
            on_dropped: p.on_dropped,
            on_read_state: p.on_read_state,
            on_role: p.on_role,
            tick: p.tick,
            catchup_entries: p.catchup_entries,
            last_persisted_hs,
            snap_dir: p.snap_dir,
        })
    }

    /// Runs until `Stop` or a fatal WAL error. A WAL that cannot be written means
    /// acknowledged writes could be lost, so the process stops rather than go on.
    pub fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(msg) => {
                    if !self.handle(msg) {
                        break;
                    }
                    // Group commit: take everything already queued before building a Ready.
                    while let Ok(msg) = self.rx.try_recv() {
                        if !self.handle(msg) {
                            self.finish();
                            return;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = now + self.tick;
            }
            if let Err(e) = self.on_ready() {
                tracing::error!(error = %e, "raft loop cannot persist; stopping the member to protect acknowledged data");
                self.status.stopped.store(true, Ordering::SeqCst);
                std::process::exit(1);
            }
        }
        self.finish();
    }

    fn finish(&mut self) {
        if let Err(e) = self.wal.sync() {
            tracing::error!(error = %e, "final WAL sync failed");
        }
        self.status.stopped.store(true, Ordering::SeqCst);
        tracing::info!("raft loop stopped");
    }

    /// Feeds one message to raft; false means stop.
    fn handle(&mut self, msg: NodeMsg) -> bool {
        match msg {
            NodeMsg::Propose { id, data } => {
                if let Err(e) = self.raw.propose(vec![], data) {
                    tracing::debug!(error = %e, id, "proposal dropped");
                    METRICS.proposals_failed.inc();
                    (self.on_dropped)(id);
                }
            }
            NodeMsg::ProposeConfChange { id, cc } => {
                if let Err(e) = self.raw.propose_conf_change(vec![], cc) {
                    tracing::debug!(error = %e, id, "conf change dropped");
                    METRICS.proposals_failed.inc();
                    (self.on_dropped)(id);
                }
            }
            NodeMsg::Unreachable(id) => self.raw.report_unreachable(id),
            NodeMsg::SnapshotStatus { to, ok } => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
            NodeMsg::TransferLeader(to) => self.raw.transfer_leader(to),
            NodeMsg::Progress(reply) => {
                let r = &self.raw.raft;
                let info = ProgressInfo {
                    is_leader: r.state == StateRole::Leader,
                    last_index: r.raft_log.last_index(),
                    matched: r.prs().iter().map(|(id, p)| (*id, p.matched)).collect(),
                };
                let _ = reply.send(info);
            }
            NodeMsg::ReadIndex { ctx } => self.raw.read_index(ctx),
            NodeMsg::Step(m) => {
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!(error = %e, "raft step failed");
                }
            }
            NodeMsg::Snapshotted { index, term } => self.on_snapshotted(index, term),
            NodeMsg::Stop => return false,
        }
        true
    }

    /// Records a snapshot point and lets go of the log behind it (keeping a catch-up margin).
    fn on_snapshotted(&mut self, index: u64, term: u64) {
        let keep_from = index.saturating_sub(self.catchup_entries).max(1);
        let res = self
            .wal
            .append(&[Record::Snapshot { index, term }])
            .and_then(|_| self.wal.sync())
            .and_then(|_| self.wal.release_to(keep_from).map(|_| ()));
        match res {
            Ok(()) => {
                if let Err(e) = self.raw.mut_store().compact(keep_from) {
                    tracing::warn!(error = %e, "compacting the in-memory raft log failed");
                }
                tracing::info!(
                    index,
                    term,
                    kept_from = keep_from,
                    "snapshot point recorded; older log released"
                );
            }
            Err(e) => tracing::warn!(error = %e, index, "recording the snapshot point failed"),
        }
    }

    fn on_ready(&mut self) -> Result<(), crate::wal::WalError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();

        if let Some(ss) = ready.ss() {
            self.on_soft_state(ss.leader_id, ss.raft_state);
        }
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        for rs in ready.take_read_states() {
            (self.on_read_state)(rs.request_ctx, rs.index);
        }
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone())?;
        }
        self.dispatch_committed(ready.take_committed_entries());

        // Persist entries and hard state with one fsync.
        let mut records = Vec::with_capacity(ready.entries().len() + 1);
        for e in ready.entries() {
            records.push(Record::Entry {
                index: e.index,
                term: e.term,
                data: e
                    .write_to_bytes()
                    .expect("a proto3 raft entry always encodes"),
            });
        }
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
        }
        let hs = self.raw.store().hard_state();
        if hs != self.last_persisted_hs {
            records.push(Record::HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            });
        }
        if !records.is_empty() {
            self.wal.append(&records)?;
            let start = Instant::now();
            self.wal.sync()?;
            METRICS.wal_fsync.observe(start.elapsed().as_secs_f64());
            METRICS.wal_write_bytes.set(self.wal.bytes_written() as i64);
            self.last_persisted_hs = hs;
        }
        if !ready.entries().is_empty() {
            if let Err(e) = self.raw.mut_store().append(ready.entries()) {
                tracing::error!(error = %e, "appending to the in-memory raft log failed");
            }
        }
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }

        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        self.dispatch_committed(light.take_committed_entries());
        self.raw.advance_apply();
        self.publish_status();
        Ok(())
    }

    /// A snapshot from the leader: record it durably in the WAL first (so a crash mid-install
    /// is redone on restart), then reset the raft log to it and hand it to the applier.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), crate::wal::WalError> {
        let meta = snap.get_metadata().clone();
        let (index, term) = (meta.index, meta.term);
        tracing::info!(index, term, "installing snapshot from the leader");
        self.wal.append(&[Record::Snapshot { index, term }])?;
        self.wal.sync()?;
        #[cfg(debug_assertions)]
        crate::fault::point("snap-wal-recorded");
        if let Err(e) = self.raw.mut_store().apply_snapshot(snap) {
            tracing::error!(error = %e, index, "raft refused the snapshot");
            return Ok(());
        }
        let path = crate::snap::snap_path(&self.snap_dir, term, index);
        let meta = crate::snap::SnapshotMeta {
            index,
            term,
            conf_state: meta.get_conf_state().clone(),
            revision: 0,
        };
        self.status.commit.store(index, Ordering::Release);
        if self
            .apply_tx
            .send(ApplyTask::Install { meta, path })
            .is_err()
        {
            tracing::warn!("applier is gone; snapshot not installed");
        }
        if let Err(e) = self.wal.release_to(index) {
            tracing::warn!(error = %e, "releasing WAL segments before the snapshot failed");
        }
        Ok(())
    }

    /// Applies conf changes to raft (they must take effect in log order on this thread) and
    /// hands every committed entry to the applier.
    fn dispatch_committed(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let mut conf_states = Vec::new();
        for e in &entries {
            let cc_result = match e.get_entry_type() {
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    cc.merge_from_bytes(&e.data)
                        .map(|_| self.raw.apply_conf_change(&cc))
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    cc.merge_from_bytes(&e.data)
                        .map(|_| self.raw.apply_conf_change(&cc))
                }
                EntryType::EntryNormal => continue,
            };
            match cc_result {
                Ok(Ok(cs)) => {
                    let me = self.raw.raft.id;
                    self.status
                        .is_learner
                        .store(cs.learners.contains(&me), Ordering::Release);
                    METRICS.is_learner.set(i64::from(cs.learners.contains(&me)));
                    conf_states.push((e.index, cs.clone()));
                    self.raw.mut_store().set_conf_state(cs);
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, index = e.index, "conf change rejected by raft")
                }
                Err(err) => {
                    tracing::warn!(error = %err, index = e.index, "conf change does not decode")
                }
            }
        }
        if let Some(last) = entries.last() {
            METRICS.proposals_committed.set(last.index as i64);
            self.status.commit.store(last.index, Ordering::Release);
        }
        if self
            .apply_tx
            .send(ApplyTask::Entries {
                entries,
                conf_states,
            })
            .is_err()
        {
            tracing::warn!("applier is gone; committed entries not applied");
        }
    }

    fn on_soft_state(&mut self, leader: u64, role: StateRole) {
        let prev = self.status.leader.swap(leader, Ordering::AcqRel);
        if prev != leader {
            if leader != raft::INVALID_ID {
                METRICS.leader_changes.inc();
                tracing::info!(
                    leader = format!("{leader:x}"),
                    term = self.raw.raft.term,
                    "leader elected"
                );
            } else {
                tracing::warn!(previous = format!("{prev:x}"), "lost leader");
            }
        }
        let is_leader = role == StateRole::Leader;
        if self.status.is_leader.swap(is_leader, Ordering::AcqRel) != is_leader {
            (self.on_role)(is_leader);
        }
        METRICS
            .has_leader
            .set(i64::from(leader != raft::INVALID_ID));
        METRICS.is_leader.set(i64::from(is_leader));
    }

    fn publish_status(&self) {
        self.status
            .term
            .store(self.raw.raft.term, Ordering::Release);
        self.status
            .last_index
            .store(self.raw.raft.raft_log.last_index(), Ordering::Release);
    }
}
