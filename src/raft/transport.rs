//! How raft messages leave this member: one long-lived gRPC stream per peer, and snapshots on
//! calls of their own.
//!
//! The raft loop must never block on the network, so `send` only queues: each Ready's messages
//! for a peer become one batch pushed into a bounded channel that the peer's gRPC call reads
//! directly. A task per peer keeps that call connected (reconnecting with backoff) and tells
//! raft the peer is unreachable when it breaks, so the leader probes it again. A full or
//! missing stream drops the batch (raft retransmits).
//! Snapshots stream in chunks on a separate call, so heartbeats never wait behind them. The
//! transport does not know where a snapshot's data lives: the member gives it a
//! [`SnapshotSource`] that produces the body of the snapshot raft asked to send.

use std::collections::HashMap;
use std::sync::mpsc::Sender as StdSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::node::NodeMsg;
use crate::metrics::METRICS;
use crate::proto::ferrocdpb::raft_client::RaftClient;
use crate::proto::ferrocdpb::{RaftBatch, SnapshotChunk};

/// The body of one outgoing snapshot: run on a blocking thread, it passes the encoded data to
/// `emit` chunk by chunk (stopping when `emit` returns false) and returns the bytes produced.
pub type SnapshotBody =
    Box<dyn FnOnce(&mut dyn FnMut(Vec<u8>) -> bool) -> Result<u64, String> + Send>;

/// Where outgoing snapshots' data comes from: the body of the snapshot raft made at `index`,
/// or `None` if this member has none ready at that index (raft asks again).
pub type SnapshotSource = Arc<dyn Fn(u64) -> Option<SnapshotBody> + Send + Sync>;

/// Delivers raft messages to peers. Must not block the raft loop: queue and return.
pub trait Transport: Send {
    /// Sends a batch of messages (in order per destination).
    fn send(&self, msgs: Vec<Message>);
}

/// Batches (one per raft Ready) queued per peer before new ones are dropped.
const QUEUE: usize = 1024;

/// The live stream to a peer: the raft loop pushes encoded batches straight into the channel
/// the gRPC call reads from (no task in between); `None` while disconnected.
type StreamSlot = Arc<Mutex<Option<mpsc::Sender<RaftBatch>>>>;

struct Peer {
    urls: Vec<String>,
    stream: StreamSlot,
    task: tokio::task::JoinHandle<()>,
}

/// The gRPC peer transport.
pub struct PeerTransport {
    self_id: u64,
    cluster_id: u64,
    rt: Handle,
    node_tx: StdSender<NodeMsg>,
    snapshots: SnapshotSource,
    peers: Mutex<HashMap<u64, Peer>>,
    active_since: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl PeerTransport {
    /// A transport with no peers yet (see [`PeerTransport::set_peers`]).
    pub fn new(
        self_id: u64,
        cluster_id: u64,
        rt: Handle,
        node_tx: StdSender<NodeMsg>,
        snapshots: SnapshotSource,
    ) -> Arc<PeerTransport> {
        Arc::new(PeerTransport {
            self_id,
            cluster_id,
            rt,
            node_tx,
            snapshots,
            peers: Mutex::new(HashMap::new()),
            active_since: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Makes the peer set equal `members` (id → peer URLs): starts streams to new peers,
    /// restarts those whose URLs changed, stops those removed. This member is skipped.
    pub fn set_peers(&self, members: &[(u64, Vec<String>)]) {
        let mut peers = self.peers.lock();
        let wanted: HashMap<u64, &Vec<String>> = members
            .iter()
            .filter(|(id, _)| *id != self.self_id)
            .map(|(id, u)| (*id, u))
            .collect();
        peers.retain(|id, p| {
            let keep = wanted.get(id).map(|u| **u == p.urls).unwrap_or(false);
            if !keep {
                p.task.abort();
                self.active_since.lock().remove(id);
                METRICS
                    .active_peers
                    .with_label_values(&[&hex(self.self_id), &hex(*id)])
                    .set(0);
            }
            keep
        });
        for (id, urls) in wanted {
            if peers.contains_key(&id) || urls.is_empty() {
                continue;
            }
            let stream: StreamSlot = Arc::new(Mutex::new(None));
            let ctx = StreamCtx {
                self_id: self.self_id,
                to: id,
                urls: urls.clone(),
                node_tx: self.node_tx.clone(),
                active_since: self.active_since.clone(),
                stream: stream.clone(),
            };
            let task = self.rt.spawn(run_stream(ctx));
            peers.insert(
                id,
                Peer {
                    urls: urls.clone(),
                    stream,
                    task,
                },
            );
        }
    }

    /// Since when the stream to `id` has been connected (None while it is down).
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        self.active_since.lock().get(&id).copied()
    }

    fn send_snapshot(&self, msg: Message) {
        let to = msg.to;
        let index = msg.get_snapshot().get_metadata().index;
        let urls = match self.peers.lock().get(&to) {
            Some(p) => p.urls.clone(),
            None => return,
        };
        let Some(body) = (self.snapshots)(index) else {
            tracing::warn!(
                to = hex(to),
                index,
                "no prepared snapshot for this message; raft will retry"
            );
            let _ = self.node_tx.send(NodeMsg::SnapshotStatus { to, ok: false });
            return;
        };
        let node_tx = self.node_tx.clone();
        let (cluster_id, from) = (self.cluster_id, self.self_id);
        self.rt.spawn(async move {
            let started = Instant::now();
            tracing::info!(to = hex(to), index, "sending snapshot");
            let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
            let first = SnapshotChunk {
                cluster_id,
                from,
                to,
                message: msg.write_to_bytes().unwrap_or_default(),
                data: Vec::new(),
            };
            let _ = tx.send(first).await;
            let producer = tokio::task::spawn_blocking(move || {
                body(&mut |data| {
                    tx.blocking_send(SnapshotChunk {
                        cluster_id,
                        from,
                        to,
                        data,
                        ..Default::default()
                    })
                    .is_ok()
                })
            });
            let result = async {
                let ch = connect(&urls).await?;
                let mut client = RaftClient::new(ch).max_encoding_message_size(usize::MAX);
                let ack = client
                    .send_snapshot(ReceiverStream::new(rx))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<u64, String>(ack.into_inner().bytes)
            }
            .await;
            let produced = producer.await;
            let ok = matches!((&result, &produced), (Ok(_), Ok(Ok(_))));
            match (&result, produced) {
                (Ok(bytes), Ok(Ok(_))) => tracing::info!(
                    to = hex(to),
                    index,
                    bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "snapshot sent"
                ),
                (Err(e), _) => {
                    tracing::warn!(to = hex(to), index, error = %e, "sending snapshot failed")
                }
                (_, Ok(Err(e))) => {
                    tracing::warn!(to = hex(to), index, error = %e, "reading snapshot data failed")
                }
                (_, Err(e)) => {
                    tracing::warn!(to = hex(to), index, error = %e, "snapshot reader failed")
                }
            }
            let _ = node_tx.send(NodeMsg::SnapshotStatus { to, ok });
        });
    }
}

/// The transport as the raft loop holds it.
pub struct SharedTransport(pub Arc<PeerTransport>);

impl Transport for SharedTransport {
    fn send(&self, msgs: Vec<Message>) {
        let t = &self.0;
        let mut snapshots = Vec::new();
        let mut by_peer: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snapshots.push(m);
                continue;
            }
            match m.write_to_bytes() {
                Ok(bytes) => by_peer.entry(m.to).or_default().push(bytes),
                Err(e) => tracing::warn!(error = %e, "raft message does not encode"),
            }
        }
        let peers = t.peers.lock();
        for (to, messages) in by_peer {
            let Some(p) = peers.get(&to) else {
                tracing::debug!(to = hex(to), "raft messages to an unknown peer dropped");
                continue;
            };
            // Test-only fault switch (see `crate::fault`): drop as a lossy network would.
            #[cfg(debug_assertions)]
            if crate::fault::drop_to(to) {
                continue;
            }
            let bytes: usize = messages.iter().map(Vec::len).sum();
            let batch = RaftBatch {
                cluster_id: t.cluster_id,
                from: t.self_id,
                to,
                messages,
            };
            let sent = p
                .stream
                .lock()
                .as_ref()
                .map(|tx| tx.try_send(batch).is_ok())
                .unwrap_or(false);
            if sent {
                METRICS
                    .peer_sent_bytes
                    .with_label_values(&[&hex(to)])
                    .inc_by(bytes as u64);
            } else {
                // Down or backed up: raft retransmits; the leader probes the peer again.
                METRICS.heartbeat_send_failures.inc();
                let _ = t.node_tx.send(NodeMsg::Unreachable(to));
            }
        }
        drop(peers);
        for m in snapshots {
            // Test-only fault switch (see `crate::fault`): the snapshot fails to arrive.
            #[cfg(debug_assertions)]
            if crate::fault::drop_to(m.to) {
                let _ = t.node_tx.send(NodeMsg::SnapshotStatus {
                    to: m.to,
                    ok: false,
                });
                continue;
            }
            t.send_snapshot(m);
        }
    }
}

struct StreamCtx {
    self_id: u64,
    to: u64,
    urls: Vec<String>,
    node_tx: StdSender<NodeMsg>,
    active_since: Arc<Mutex<HashMap<u64, Instant>>>,
    stream: StreamSlot,
}

/// Connects to the first reachable URL.
async fn connect(urls: &[String]) -> Result<Channel, String> {
    let mut last = String::from("no peer URL");
    for u in urls {
        let ep = Endpoint::from_shared(u.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        match ep.connect().await {
            Ok(c) => return Ok(c),
            Err(e) => last = format!("{u}: {e}"),
        }
    }
    Err(last)
}

/// Keeps one stream to a peer alive: connects (with backoff), publishes the stream's sender for
/// the raft loop, and waits for the call to end.
async fn run_stream(ctx: StreamCtx) {
    let (local, remote) = (hex(ctx.self_id), hex(ctx.to));
    let mut backoff = Duration::from_millis(50);
    let mut warned = false;
    loop {
        let ch = match connect(&ctx.urls).await {
            Ok(ch) => ch,
            Err(e) => {
                if !warned {
                    tracing::warn!(peer = %remote, error = %e, "cannot reach peer; retrying");
                    warned = true;
                }
                let _ = ctx.node_tx.send(NodeMsg::Unreachable(ctx.to));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (stream_tx, stream_rx) = mpsc::channel::<RaftBatch>(QUEUE);
        *ctx.stream.lock() = Some(stream_tx);
        tracing::info!(peer = %remote, "peer stream connected");
        warned = false;
        backoff = Duration::from_millis(50);
        ctx.active_since.lock().insert(ctx.to, Instant::now());
        METRICS
            .active_peers
            .with_label_values(&[&local, &remote])
            .set(1);
        let mut client = RaftClient::new(ch).max_encoding_message_size(usize::MAX);
        match client.send(ReceiverStream::new(stream_rx)).await {
            Err(status) => {
                tracing::warn!(peer = %remote, code = ?status.code(), error = %status.message(), "peer stream closed")
            }
            Ok(_) => tracing::warn!(peer = %remote, "peer stream closed"),
        }
        *ctx.stream.lock() = None;
        ctx.active_since.lock().remove(&ctx.to);
        METRICS
            .active_peers
            .with_label_values(&[&local, &remote])
            .set(0);
        let _ = ctx.node_tx.send(NodeMsg::Unreachable(ctx.to));
        tokio::time::sleep(backoff).await;
    }
}

/// A member id as etcd prints it.
pub fn hex(id: u64) -> String {
    format!("{id:x}")
}
