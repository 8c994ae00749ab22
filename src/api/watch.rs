//! The Watch service: one bidirectional stream per client carrying many watchers.
//!
//! A reader task turns requests into hub calls (create, cancel, progress); the response
//! stream pops the hub's queue for this stream, adds headers and splits responses of
//! `fragment` watchers as etcd does (`watch_wire` encodes them, with or without `prev_kv`
//! as each watcher asked). The stream also runs the periodic progress notifications and,
//! for clients that sent `hasleader`, etcd's leader monitor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::{oneshot, watch};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tonic::{Request, Response, Status, Streaming};

use super::leader_monitor::{requires_leader, LeaderMonitor};
use super::watch_wire::{fragments, EventsResponse, WireResponse, WireStream};
use crate::config::Config;
use crate::error::EtcdError;
use crate::mvcc::watch::{Control, Outgoing, WatchSpec, WatchStreamHandle, INVALID_WATCH_ID};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::server::EtcdServer;

/// etcd refuses progress intervals below this and uses it instead.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Responses taken from the hub's queue per wake-up.
const MAX_BATCH: usize = 256;

/// `etcdserverpb.Watch` over the server's watch hub.
pub struct WatchService {
    server: Arc<EtcdServer>,
    progress_interval: Duration,
    election_timeout: Duration,
    /// Responses of `fragment` watchers are split above this (etcd: max request bytes plus
    /// gRPC overhead).
    fragment_bytes: usize,
    /// Turns true when the listener shuts down: every stream then ends.
    stopping: watch::Receiver<bool>,
}

impl WatchService {
    /// A watch service with the member's progress interval and election timeout; its streams
    /// end with `server stopped` once `stopping` turns true.
    pub fn new(
        server: Arc<EtcdServer>,
        cfg: &Config,
        fragment_bytes: usize,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let mut progress_interval = cfg.watch_progress_notify_interval;
        if progress_interval < MIN_PROGRESS_INTERVAL {
            tracing::warn!(
                requested_ms = progress_interval.as_millis() as u64,
                "adjusting watch progress notify interval to the minimum of 100ms"
            );
            progress_interval = MIN_PROGRESS_INTERVAL;
        }
        WatchService {
            server,
            progress_interval,
            election_timeout: cfg.election_timeout.max(Duration::from_millis(1)),
            fragment_bytes,
            stopping,
        }
    }
}

impl WatchService {
    /// One Watch call: registers the stream with the hub, reads its requests in a task and
    /// returns its responses.
    pub async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WireStream>, Status> {
        let require_leader = requires_leader(req.metadata());
        if require_leader && self.server.leader() == 0 {
            return Err(EtcdError::NoLeader.into());
        }
        let inbound = req.into_inner();
        let handle = Arc::new(self.server.watch_hub().open_stream());
        let (closed_tx, closed_rx) = oneshot::channel();
        let (failed_tx, failed_rx) = oneshot::channel();
        tokio::spawn(read_requests(handle.clone(), inbound, closed_rx, failed_tx));

        // etcd adds up to a tenth of the interval as jitter so streams opened together do
        // not notify together.
        let jitter_ms = (self.progress_interval.as_millis() as u64 / 10).max(1);
        let period =
            self.progress_interval + Duration::from_millis(rand::rng().random_range(0..jitter_ms));
        let mut progress = interval_at(Instant::now() + period, period);
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let leader = require_leader.then(|| {
            let mut i = interval_at(
                Instant::now() + self.election_timeout,
                self.election_timeout,
            );
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        let sender = Sender {
            handle,
            server: self.server.clone(),
            pending: VecDeque::new(),
            progress,
            leader,
            no_leader: LeaderMonitor::default(),
            fragment_bytes: self.fragment_bytes,
            stopping: self.stopping.clone(),
            done: false,
            receive_failed: Some(failed_rx),
            _closed: closed_tx,
        };
        let stream = futures::stream::unfold(sender, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        });
        Ok(Response::new(Box::pin(stream) as WireStream))
    }
}

/// Reads the client's requests until it closes its side or the response stream is gone.
/// A half-close keeps the stream open (etcd keeps sending until the client cancels); a
/// receive error (a request over the size limit, a malformed message) ends the whole call
/// with that status, as etcd's receive loop does.
async fn read_requests(
    handle: Arc<WatchStreamHandle>,
    mut inbound: Streaming<WatchRequest>,
    mut closed: oneshot::Receiver<()>,
    failed: oneshot::Sender<Status>,
) {
    loop {
        // A client that sends requests but does not read the replies waits here, so the
        // replies queued for it stay bounded (etcd blocks its receive loop the same way).
        tokio::select! {
            _ = handle.queue().wait_room() => {}
            _ = &mut closed => return,
        }
        let msg = tokio::select! {
            m = inbound.message() => m,
            _ = &mut closed => return,
        };
        match msg {
            Ok(Some(req)) => handle_request(&handle, req),
            Ok(None) => {
                tracing::debug!("watch stream half-closed by the client");
                return;
            }
            Err(status) => {
                tracing::debug!(error = %status, "watch stream receive failed; ending the call");
                let _ = failed.send(status);
                return;
            }
        }
    }
}

fn handle_request(handle: &WatchStreamHandle, req: WatchRequest) {
    match req.request_union {
        Some(RequestUnion::CreateRequest(c)) => {
            if c.start_revision < 0 {
                handle.push_control(Control {
                    watch_id: INVALID_WATCH_ID,
                    revision: handle.revision(),
                    created: true,
                    canceled: true,
                    cancel_reason: EtcdError::Compacted.to_string(),
                    ..Control::default()
                });
                return;
            }
            handle.create(&watch_spec(c));
        }
        Some(RequestUnion::CancelRequest(c)) => {
            handle.cancel(c.watch_id);
        }
        Some(RequestUnion::ProgressRequest(_)) => handle.request_progress(),
        None => tracing::debug!("empty watch request ignored"),
    }
}

/// The hub's form of a create request (the caller refused a negative start revision).
/// Unknown filter values are ignored, as etcd does.
fn watch_spec(c: WatchCreateRequest) -> WatchSpec {
    WatchSpec {
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        key: c.key,
        range_end: c.range_end,
        start_revision: c.start_revision,
        watch_id: c.watch_id,
        prev_kv: c.prev_kv,
        progress_notify: c.progress_notify,
        fragment: c.fragment,
    }
}

/// The status that ended the request side; `None` if it ended cleanly (then never again).
async fn receive_failure(rx: &mut Option<oneshot::Receiver<Status>>) -> Option<Status> {
    match rx {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

/// The response side of one stream.
struct Sender {
    handle: Arc<WatchStreamHandle>,
    server: Arc<EtcdServer>,
    /// Responses built from the queue (or fragments of one) still to send.
    pending: VecDeque<WireResponse>,
    progress: Interval,
    leader: Option<Interval>,
    no_leader: LeaderMonitor,
    fragment_bytes: usize,
    stopping: watch::Receiver<bool>,
    done: bool,
    /// Fires with the status that ended the request side, which then ends the call.
    /// (`None` once the request side ended without an error.)
    receive_failed: Option<oneshot::Receiver<Status>>,
    /// Dropped with the stream: tells the request reader to stop.
    _closed: oneshot::Sender<()>,
}

impl Sender {
    async fn next(&mut self) -> Option<Result<WireResponse, Status>> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            let Sender {
                handle,
                progress,
                leader,
                stopping,
                receive_failed,
                ..
            } = self;
            let leader_tick = async {
                match leader {
                    Some(i) => {
                        i.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                m = handle.next() => match m {
                    Some(m) => {
                        self.build(m);
                        // Take what else is queued in one go: one wake-up per batch, not per
                        // response, when a revision reaches many watchers of this stream.
                        for _ in 1..MAX_BATCH {
                            match self.handle.queue().try_pop() {
                                Some(m) => self.build(m),
                                None => break,
                            }
                        }
                    }
                    None => return None,
                },
                _ = progress.tick() => handle.progress_tick(),
                failed = receive_failure(receive_failed) => match failed {
                    Some(status) => {
                        self.done = true;
                        return Some(Err(status));
                    }
                    None => self.receive_failed = None,
                },
                _ = async { drop(stopping.wait_for(|s| *s).await) } => {
                    self.done = true;
                    return Some(Err(EtcdError::Stopped.into()));
                }
                _ = leader_tick => {
                    if self.no_leader.observe(self.server.leader() != 0) {
                        self.done = true;
                        return Some(Err(EtcdError::NoLeader.into()));
                    }
                }
            }
        }
    }

    fn build(&mut self, m: Outgoing) {
        match m {
            Outgoing::Control(c) => self.pending.push_back(WireResponse::Full(WatchResponse {
                header: Some(self.server.header(c.revision)),
                watch_id: c.watch_id,
                created: c.created,
                canceled: c.canceled,
                compact_revision: c.compact_revision,
                cancel_reason: c.cancel_reason,
                fragment: false,
                events: Vec::new(),
            })),
            Outgoing::Events(e) => {
                let r = EventsResponse {
                    header: self.server.header(e.revision),
                    watch_id: e.watch_id,
                    fragment: false,
                    events: e.events,
                    prev_kv: e.prev_kv,
                };
                if e.fragment {
                    fragments(r, self.fragment_bytes, &mut self.pending);
                } else {
                    self.pending.push_back(WireResponse::Events(r));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_spec_keeps_every_field_and_maps_filters() {
        let spec = watch_spec(WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            start_revision: 7,
            progress_notify: true,
            filters: vec![FilterType::Nodelete as i32],
            prev_kv: true,
            watch_id: 3,
            fragment: true,
        });
        assert_eq!(
            spec,
            WatchSpec {
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
                start_revision: 7,
                watch_id: 3,
                prev_kv: true,
                no_put: false,
                no_delete: true,
                progress_notify: true,
                fragment: true,
            }
        );
        let both = watch_spec(WatchCreateRequest {
            filters: vec![FilterType::Noput as i32, FilterType::Nodelete as i32],
            ..WatchCreateRequest::default()
        });
        assert!(both.no_put && both.no_delete);
        assert_eq!(
            watch_spec(WatchCreateRequest::default()),
            WatchSpec::default()
        );
    }
}
