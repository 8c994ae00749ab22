//! `EtcdServer`: the member's core. It proposes writes through raft and waits for them to be
//! applied, serves linearizable reads after a ReadIndex round and serializable reads directly,
//! and exposes the member's status. The gRPC layer (`api/`) is a thin adapter over it.

pub mod auto_compact;
pub mod backup;
pub mod bootstrap;
pub mod cluster;
pub mod corrupt;
pub mod defrag;
pub mod join;
pub mod lease;
pub mod member_service;
pub mod quota;
pub mod read_index;
pub mod watch_wait;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use tokio::sync::watch;

use crate::apply::alarm::Alarms;
use crate::apply::{run_compactor, Applier, ApplyResponse, ApplyResult, CompactJob};
use crate::backend::Backend;
use crate::config::Config;
use crate::error::{EtcdError, ServerError};
use crate::lease::Lessor;
use crate::membership::MemberTable;
use crate::metrics::METRICS;
use crate::mvcc::watch::{HubConfig, WatchHub};
use crate::mvcc::Store;
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::ferrocdpb::{internal_request::Request, InternalRequest, Member, RequestHeader};
use crate::raft::peer_service::PeerService;
use crate::raft::transport::{PeerTransport, SharedTransport};
use crate::raft::{Node, NodeMsg, NodeParts, RaftStatus};
use crate::snap::SnapshotStore;
use crate::txn;
use crate::wait::{IdGenerator, Wait};
use bootstrap::Bootstrapped;
use read_index::ReadIndex;

/// The etcd version ferrocd speaks; clients gate features on it.
pub const ETCD_VERSION: &str = "3.5.17";
/// The cluster version reported alongside it.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";

/// etcd refuses new proposals when the applier lags the commit index by more than this.
const MAX_APPLY_GAP: u64 = 5000;

/// A running member.
pub struct EtcdServer {
    /// This member's id.
    pub member_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's name.
    pub name: String,
    store: Arc<RwLock<Store>>,
    backend: Arc<Backend>,
    wait: Arc<Wait<ApplyResult>>,
    ids: IdGenerator,
    node_tx: Sender<NodeMsg>,
    status: Arc<RaftStatus>,
    applied: watch::Receiver<u64>,
    reads: Arc<ReadIndex>,
    members: Arc<MemberTable>,
    alarms: Arc<Alarms>,
    transport: Arc<PeerTransport>,
    max_request_bytes: usize,
    strict_reconfig_check: bool,
    election_timeout: Duration,
    request_timeout: Duration,
    threads: Mutex<Vec<JoinHandle<()>>>,
    ready: watch::Sender<bool>,
    watch_hub: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    leader_link: lease::LeaderLink,
    quota: quota::Quota,
    snaps: Arc<SnapshotStore>,
    defrag_lock: tokio::sync::Mutex<()>,
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, ServerError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| ServerError::Io {
            what: "cannot start thread",
            path: name.into(),
            source,
        })
}

impl EtcdServer {
    /// Opens the data dir and starts the raft loop, the applier, the compactor and the peer
    /// service. Peer listeners are bound first, so a port in use fails before anything is
    /// written; a member joining an existing cluster asks it for the membership first.
    pub async fn start(cfg: &Config) -> Result<Arc<EtcdServer>, ServerError> {
        let mut peer_listeners = Vec::new();
        for u in &cfg.listen_peer_urls {
            let addr =
                crate::config::bind_addr(u).map_err(|e| ServerError::State(e.to_string()))?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Listen {
                    url: u.to_string(),
                    source,
                })?;
            peer_listeners.push(l);
        }
        let join = if !bootstrap::is_initialized(cfg)
            && cfg.initial_cluster_state == crate::config::ClusterState::Existing
        {
            Some(join::fetch_cluster(cfg).await?)
        } else {
            None
        };
        let cfg_owned = cfg.clone();
        let boot: Bootstrapped =
            tokio::task::spawn_blocking(move || bootstrap::bootstrap(&cfg_owned, join))
                .await
                .map_err(|e| ServerError::State(format!("bootstrap task failed: {e}")))??;
        let member_id = boot.member_id;
        let alarms = Arc::new(Alarms::load(&boot.backend)?);
        let mut boot_store = boot.store;
        let lessor = Arc::new(Lessor::new(crate::lease::min_ttl(cfg.election_timeout)));
        lessor.load(&boot.backend, boot_store.take_restored_leases())?;
        let store = Arc::new(RwLock::new(boot_store));
        let watch_hub = WatchHub::start(store.clone(), HubConfig::default()).map_err(|source| {
            ServerError::Io {
                what: "cannot start thread",
                path: "watch hub".into(),
                source,
            }
        })?;
        let wait: Arc<Wait<ApplyResult>> = Arc::new(Wait::default());
        let status = Arc::new(RaftStatus::default());
        status.is_learner.store(
            boot.conf_state.learners.contains(&member_id),
            Ordering::Release,
        );
        let reads = ReadIndex::new();
        let members = Arc::new(boot.members);
        let snaps = Arc::new(SnapshotStore::default());
        let snap_dir = bootstrap::snap_dir(&cfg.data_dir);
        let (node_tx, node_rx) = mpsc::channel();
        let (apply_tx, apply_rx) = mpsc::channel();
        let (compact_tx, compact_rx) = mpsc::channel::<CompactJob>();
        let (applied_tx, applied_rx) = watch::channel(boot.consistent_index);

        let transport = PeerTransport::new(
            member_id,
            boot.cluster_id,
            tokio::runtime::Handle::current(),
            node_tx.clone(),
            snapshot_source(snaps.clone(), boot.backend.clone()),
        );
        transport.set_peers(&members.peer_urls());

        let heartbeat = cfg.heartbeat_interval.max(Duration::from_millis(1));
        let election_ticks =
            (cfg.election_timeout.as_millis() / heartbeat.as_millis()).max(2) as usize;
        let mut rc = raft::Config::new(member_id);
        rc.election_tick = election_ticks;
        rc.heartbeat_tick = 1;
        rc.applied = boot.consistent_index;
        rc.max_size_per_msg = 1024 * 1024;
        rc.max_inflight_msgs = 256;
        rc.check_quorum = true;
        rc.pre_vote = cfg.pre_vote;
        rc.validate()
            .map_err(|e| ServerError::Raft(e.to_string()))?;

        let on_dropped_wait = wait.clone();
        let reads_cb = reads.clone();
        let node = Node::new(NodeParts {
            config: rc,
            storage: boot.storage.with_snapshots(snaps.clone()),
            wal: boot.wal,
            rx: node_rx,
            apply_tx,
            transport: Box::new(SharedTransport(transport.clone())),
            status: status.clone(),
            on_dropped: Box::new(move |id| on_dropped_wait.trigger(id, Err(EtcdError::NoLeader))),
            on_read_state: Box::new(move |ctx, index| reads_cb.on_read_state(&ctx, index)),
            on_role: {
                let (lessor, grace) = (lessor.clone(), cfg.election_timeout);
                Box::new(move |leads| {
                    if leads {
                        lessor.promote(grace)
                    } else {
                        lessor.demote()
                    }
                })
            },
            tick: heartbeat,
            catchup_entries: cfg.snapshot_catchup_entries,
            snap_dir: snap_dir.clone(),
        })
        .map_err(|e| ServerError::Raft(e.to_string()))?;

        let applier = Applier {
            store: store.clone(),
            backend: boot.backend.clone(),
            wait: wait.clone(),
            applied_tx,
            compactor: compact_tx.clone(),
            alarms: alarms.clone(),
            node_tx: node_tx.clone(),
            snapshot_count: cfg.snapshot_count.max(1),
            applied_index: boot.consistent_index,
            last_snapshot_index: boot.snapshot_index,
            applied_term: boot.applied_term,
            conf_state: boot.conf_state,
            members: members.clone(),
            transport: transport.clone(),
            snaps: snaps.clone(),
            snap_dir: snap_dir.clone(),
            member_id,
            group: None,
            watch_hub: watch_hub.clone(),
            lessor: lessor.clone(),
        };
        if let Some(c) = boot.pending_compaction {
            let (done, _) = tokio::sync::oneshot::channel();
            tracing::info!(
                revision = c.revision(),
                "resuming an interrupted compaction"
            );
            let _ = compact_tx.send(CompactJob {
                compaction: c,
                done,
            });
        }
        let mut threads = Vec::new();
        let (be, sn) = (boot.backend.clone(), snaps.clone());
        threads.push(spawn("compactor", move || {
            run_compactor(be, sn, compact_rx)
        })?);
        threads.push(spawn("applier", move || applier.run(apply_rx))?);
        threads.push(spawn("raft", move || node.run())?);

        let request_timeout = Duration::from_secs(5) + 2 * cfg.election_timeout;
        tokio::spawn(
            reads
                .clone()
                .run(node_tx.clone(), applied_rx.clone(), request_timeout),
        );

        METRICS
            .server_id
            .with_label_values(&[&format!("{member_id:x}")])
            .set(1);
        METRICS
            .server_version
            .with_label_values(&[ETCD_VERSION])
            .set(1);
        METRICS
            .cluster_version
            .with_label_values(&[ETCD_CLUSTER_VERSION])
            .set(1);
        METRICS.quota_backend_bytes.set(
            cfg.backend_quota()
                .map_or(cfg.quota_backend_bytes, |q| q as i64),
        );
        {
            let s = store.read();
            METRICS.current_revision.set(s.current_revision());
            METRICS.compact_revision.set(s.compact_revision().max(0));
            METRICS.keys_total.set(s.keys_total() as i64);
        }

        let server = Arc::new(EtcdServer {
            member_id,
            cluster_id: boot.cluster_id,
            name: cfg.name.clone(),
            store,
            backend: boot.backend,
            wait,
            ids: IdGenerator::new(member_id),
            node_tx,
            status,
            applied: applied_rx,
            reads,
            members,
            alarms,
            transport,
            max_request_bytes: cfg.max_request_bytes,
            strict_reconfig_check: cfg.strict_reconfig_check,
            election_timeout: cfg.election_timeout,
            request_timeout,
            threads: Mutex::new(threads),
            ready: watch::channel(false).0,
            watch_hub,
            lessor,
            leader_link: lease::LeaderLink::default(),
            quota: quota::Quota::new(cfg.backend_quota()),
            snaps: snaps.clone(),
            defrag_lock: tokio::sync::Mutex::new(()),
        });
        server.spawn_lease_loop();
        server.spawn_auto_compactor(cfg.auto_compaction_retention);
        server.spawn_corruption_check(cfg.corrupt_check_time);
        for l in peer_listeners {
            server.clone().serve_peers(l, snap_dir.clone());
        }
        server.clone().publish_attributes(
            cfg.name.clone(),
            cfg.advertise_client_urls
                .iter()
                .map(crate::config::url_to_string)
                .collect(),
        );
        Ok(server)
    }

    /// Serves the peer service on `listener` for the life of the process.
    fn serve_peers(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        snap_dir: std::path::PathBuf,
    ) {
        let raft = PeerService {
            self_id: self.member_id,
            cluster_id: self.cluster_id,
            node_tx: self.node_tx.clone(),
            snap_dir,
        };
        let members = member_service::MemberService(self.clone());
        let addr = listener.local_addr().ok();
        tracing::info!(addr = ?addr, "serving peer traffic");
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(async move {
            let res = tonic::transport::Server::builder()
                .add_service(
                    crate::proto::ferrocdpb::raft_server::RaftServer::new(raft)
                        .max_decoding_message_size(usize::MAX)
                        .max_encoding_message_size(usize::MAX),
                )
                .add_service(crate::proto::ferrocdpb::members_server::MembersServer::new(
                    members,
                ))
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "peer server failed");
            }
        });
    }

    /// Publishes this member's name and client URLs through raft once it has a leader, on
    /// every start as etcd does, so every member's table shows them; the member is ready for
    /// clients once this has been applied (see [`EtcdServer::wait_ready`]).
    fn publish_attributes(self: Arc<Self>, name: String, client_urls: Vec<String>) {
        tokio::spawn(async move {
            loop {
                if self.members.get(self.member_id).is_some() && self.leader() != 0 {
                    let req = crate::proto::ferrocdpb::MemberAttributes {
                        id: self.member_id,
                        name: name.clone(),
                        client_urls: client_urls.clone(),
                    };
                    match self.propose(Request::MemberAttributes(req)).await {
                        Ok(_) => {
                            tracing::info!(name = %name, client_urls = ?client_urls, "published member attributes; ready to serve clients");
                            self.ready.send_replace(true);
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "publishing member attributes failed; retrying")
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    /// Resolves once this member has joined the cluster and published itself (etcd serves
    /// clients only from then on).
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Stops the raft loop (syncing the WAL), lets the applier drain, and flushes the backend.
    /// Blocking: call from a blocking context.
    pub fn stop(&self) {
        let _ = self.node_tx.send(NodeMsg::Stop);
        let threads = std::mem::take(&mut *self.threads.lock());
        // The raft thread exits first and drops the applier's sender; the applier then ends.
        for t in threads.into_iter().rev() {
            let name = t.thread().name().unwrap_or("?").to_string();
            if name == "compactor" {
                continue; // it ends when the last job sender (the applier) is gone
            }
            let _ = t.join();
        }
        self.watch_hub.stop();
        if let Err(e) = self.backend.flush() {
            tracing::error!(error = %e, "final backend flush failed");
        }
        tracing::info!("member stopped");
    }

    /// A response header as etcd fills it.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.status.term.load(Ordering::Acquire),
        }
    }

    fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).unwrap_or(0);
        let rev = if rev == 0 {
            self.store.read().current_revision()
        } else {
            rev
        };
        *h = Some(self.header(rev));
    }

    /// Proposes a request through raft and waits until it is applied here.
    pub(crate) async fn propose(&self, request: Request) -> Result<ApplyResponse, EtcdError> {
        if self.status.stopped.load(Ordering::Acquire) {
            return Err(EtcdError::Stopped);
        }
        let commit = self.status.commit.load(Ordering::Acquire);
        if commit > *self.applied.borrow() + MAX_APPLY_GAP {
            return Err(EtcdError::TooManyRequests);
        }
        let id = self.ids.next();
        let req = InternalRequest {
            header: Some(RequestHeader {
                id,
                ..Default::default()
            }),
            request: Some(request),
        };
        let data = req.encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        self.submit(id, NodeMsg::Propose { id, data }).await
    }

    /// Hands a proposal (`msg`, carrying request `id`) to raft and waits until it is applied
    /// here, raft drops it, or the request timeout passes.
    pub(crate) async fn submit(&self, id: u64, msg: NodeMsg) -> Result<ApplyResponse, EtcdError> {
        let rx = self.wait.register(id);
        METRICS.proposals_pending.inc();
        let result = if self.node_tx.send(msg).is_err() {
            self.wait.cancel(id);
            Err(EtcdError::Stopped)
        } else {
            match tokio::time::timeout(self.request_timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(EtcdError::Stopped),
                Err(_) => {
                    self.wait.cancel(id);
                    METRICS.proposals_failed.inc();
                    Err(EtcdError::Timeout)
                }
            }
        };
        METRICS.proposals_pending.dec();
        result
    }

    /// Waits until a linearizable read may be served locally.
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        // Planted bug for the chaos harness (debug builds with FERROCD_FAULT_INJECTION=1 and
        // FERROCD_PLANT_BUG=stale-reads only): serve "linearizable" reads locally, unsafely.
        #[cfg(debug_assertions)]
        if crate::fault::planted_bug("stale-reads") {
            return Ok(());
        }
        self.reads.wait().await
    }

    /// KV.Range.
    pub async fn range(&self, r: RangeRequest) -> Result<RangeResponse, EtcdError> {
        // etcd serves nothing from a cluster with a diverged member.
        if self.alarms.has(AlarmType::Corrupt) {
            return Err(EtcdError::Corrupt);
        }
        if !r.serializable {
            self.read_barrier().await?;
        }
        METRICS.range_total.inc();
        METRICS.range_total_debugging.inc();
        let mut resp = {
            let store = self.store.read();
            txn::range(&*store, &r)?
        };
        self.fill(&mut resp.header);
        Ok(resp)
    }

    /// KV.Put.
    pub async fn put(&self, r: PutRequest) -> Result<PutResponse, EtcdError> {
        self.check_quota(quota::put_cost(&r)).await?;
        match self.propose(Request::Put(r)).await? {
            ApplyResponse::Put(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            _ => Err(EtcdError::Internal(
                "unexpected apply result for put".into(),
            )),
        }
    }

    /// KV.DeleteRange.
    pub async fn delete_range(
        &self,
        r: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        match self.propose(Request::DeleteRange(r)).await? {
            ApplyResponse::DeleteRange(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            _ => Err(EtcdError::Internal(
                "unexpected apply result for delete".into(),
            )),
        }
    }

    /// KV.Txn: read-only txns are served as reads, others go through raft.
    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse, EtcdError> {
        if txn::is_read_only(&r) {
            if self.alarms.has(AlarmType::Corrupt) {
                return Err(EtcdError::Corrupt);
            }
            if !txn::is_serializable(&r) {
                self.read_barrier().await?;
            }
            METRICS.txn_total.inc();
            METRICS.txn_total_debugging.inc();
            let mut resp = {
                let store = self.store.read();
                txn::read_only_txn(
                    &*store,
                    &r,
                    store.current_revision(),
                    store.compact_revision(),
                )?
            };
            self.fill(&mut resp.header);
            return Ok(resp);
        }
        self.check_quota(quota::txn_cost(&r)).await?;
        match self.propose(Request::Txn(r)).await? {
            ApplyResponse::Txn(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            _ => Err(EtcdError::Internal(
                "unexpected apply result for txn".into(),
            )),
        }
    }

    /// KV.Compact; with `physical`, waits until the old revisions are gone from the backend.
    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse, EtcdError> {
        let physical = r.physical;
        match self.propose(Request::Compaction(r)).await? {
            ApplyResponse::Compact(mut resp, done) => {
                if physical {
                    let _ = done.await;
                    if let Err(e) = self.backend_flush().await {
                        tracing::warn!(error = %e, "flush after physical compaction failed");
                    }
                }
                self.fill(&mut resp.header);
                Ok(resp)
            }
            _ => Err(EtcdError::Internal(
                "unexpected apply result for compaction".into(),
            )),
        }
    }

    /// Refuses a write of `cost` bytes that would reach the backend quota, raising the NOSPACE
    /// alarm for this member first (etcd's quota interceptor).
    pub(crate) async fn check_quota(&self, cost: u64) -> Result<(), EtcdError> {
        let fits = match self.quota.available(cost) {
            Some(fits) => fits,
            None => {
                let be = self.backend.clone();
                let size = tokio::task::spawn_blocking(move || be.size_on_disk())
                    .await
                    .map_err(|e| EtcdError::Internal(e.to_string()))?;
                self.quota.record(size);
                self.quota.available(cost).unwrap_or(true)
            }
        };
        if fits {
            return Ok(());
        }
        let raised = self
            .alarms
            .list()
            .iter()
            .any(|a| a.member_id == self.member_id && a.alarm == AlarmType::Nospace as i32);
        if !raised {
            tracing::warn!(
                quota = ?self.quota_limit(),
                "backend quota exceeded; raising the NOSPACE alarm"
            );
            let req = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.member_id,
                alarm: AlarmType::Nospace as i32,
            };
            if let Err(e) = self.alarm(req).await {
                tracing::warn!(error = %e, "raising the NOSPACE alarm failed");
            }
        }
        Err(EtcdError::NoSpace)
    }

    /// The configured quota in bytes (`None`: disabled).
    pub fn quota_limit(&self) -> Option<u64> {
        self.quota.limit()
    }

    async fn backend_flush(&self) -> Result<(), EtcdError> {
        let be = self.backend.clone();
        tokio::task::spawn_blocking(move || be.flush().map(|_| ()))
            .await
            .map_err(|e| EtcdError::Internal(e.to_string()))?
            .map_err(|e| EtcdError::Internal(e.to_string()))
    }

    /// Maintenance.Alarm: every action goes through raft so all members agree.
    pub async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse, EtcdError> {
        match self.propose(Request::Alarm(r)).await? {
            ApplyResponse::Alarm(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            _ => Err(EtcdError::Internal(
                "unexpected apply result for alarm".into(),
            )),
        }
    }

    /// The active alarms, from local state (for Status and /health).
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms.list()
    }

    /// The member table.
    pub fn members(&self) -> Vec<Member> {
        self.members.list()
    }

    /// Whether this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.status.is_learner.load(Ordering::Acquire)
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.status.is_leader.load(Ordering::Acquire)
    }

    /// HashKV at `rev` (0 = current): (hash, compact revision, revision hashed).
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), EtcdError> {
        self.store.read().hash_kv(rev).map_err(txn::mvcc_err)
    }

    /// The current leader's id (0 if none).
    pub fn leader(&self) -> u64 {
        self.status.leader.load(Ordering::Acquire)
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.status.term.load(Ordering::Acquire)
    }

    /// The raft commit index.
    pub fn commit_index(&self) -> u64 {
        self.status.commit.load(Ordering::Acquire)
    }

    /// The applied index.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The store's current revision.
    pub fn current_revision(&self) -> i64 {
        self.store.read().current_revision()
    }

    /// The backend's size on disk.
    pub fn db_size(&self) -> i64 {
        let size = self.backend.size_on_disk() as i64;
        METRICS.db_total_size.set(size);
        METRICS.db_total_size_debugging.set(size);
        METRICS.db_total_size_in_use.set(size);
        size
    }

    /// The watch hub (the Watch service opens its streams here).
    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.watch_hub
    }

    /// `--election-timeout` (leader monitors of `hasleader` streams count in these).
    pub fn election_timeout(&self) -> Duration {
        self.election_timeout
    }

    /// How long a proposal may wait before `request timed out`.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
}

/// The peer transport's view of this member's snapshots: the prepared one at an index, its
/// key history streamed from the backend.
fn snapshot_source(
    snaps: Arc<SnapshotStore>,
    backend: Arc<Backend>,
) -> crate::raft::transport::SnapshotSource {
    Arc::new(move |index| {
        let body = crate::snap::outgoing(&snaps, &backend, index)?;
        Some(Box::new(move |emit: &mut dyn FnMut(Vec<u8>) -> bool| {
            body(emit).map_err(|e| e.to_string())
        }) as crate::raft::transport::SnapshotBody)
    })
}
