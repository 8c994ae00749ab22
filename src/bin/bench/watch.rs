//! `watch`: etcd's `benchmark watch`. Opens `streams` watch streams with `watch_per_stream`
//! watchers each on `watched_key_total` keys, then makes `put_total` puts to those keys and
//! measures two things: how long each watcher took to be created, and how long each event took
//! from its put being sent to reaching a watcher. Every expected event must arrive; a missing
//! one is reported as an error, never silently dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocd::proto::etcdserverpb::watch_client::WatchClient;
use ferrocd::proto::etcdserverpb::watch_request::RequestUnion;
use ferrocd::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Barrier};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::kv::{key, key_number, kv_client};
use crate::report::Report;
use crate::runner::{self, status_message, Worker};

/// The workload.
pub struct Args {
    /// Watch streams.
    pub streams: usize,
    /// Watchers per stream.
    pub watch_per_stream: usize,
    /// Distinct watched keys.
    pub watched_key_total: usize,
    /// Puts to make.
    pub put_total: u64,
    /// Puts per second (0: unlimited).
    pub put_rate: f64,
    /// Key size in bytes.
    pub key_size: usize,
    /// Key space the watched keys are drawn from.
    pub key_space_size: u64,
    /// Draw keys in order rather than at random.
    pub sequential_keys: bool,
}

/// How long a stream waits for its next event before giving up on the rest.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// How many puts each distinct key receives when put `i` goes to `keys[i mod keys.len()]`
/// (counted by key bytes, so two watched slots that drew the same key share its puts).
pub fn puts_per_key(put_total: u64, keys: &[Vec<u8>]) -> HashMap<Vec<u8>, u64> {
    let mut out = HashMap::new();
    let n = keys.len() as u64;
    for (k, key) in keys.iter().enumerate() {
        let puts = put_total / n + u64::from((k as u64) < put_total % n);
        *out.entry(key.clone()).or_insert(0) += puts;
    }
    out
}

/// Events a stream whose watchers watch `watched` should receive: every put to each one's key.
pub fn expected_events(watched: &[Vec<u8>], puts: &HashMap<Vec<u8>, u64>) -> u64 {
    watched
        .iter()
        .map(|k| puts.get(k).copied().unwrap_or(0))
        .sum()
}

/// One put client of the put phase: put `i` goes to watched key `i mod keys`; the time each
/// put was sent is recorded by the revision it produced, to time the events it causes.
struct Putter {
    client: ferrocd::proto::etcdserverpb::kv_client::KvClient<Channel>,
    keys: Arc<Vec<Vec<u8>>>,
    sent: Arc<Mutex<HashMap<i64, Instant>>>,
}

impl Worker for Putter {
    async fn call(&mut self, i: u64) -> Result<(), String> {
        let req = ferrocd::proto::etcdserverpb::PutRequest {
            key: self.keys[(i % self.keys.len() as u64) as usize].clone(),
            value: b"data".to_vec(),
            ..Default::default()
        };
        let t = Instant::now();
        let r = self.client.put(req).await.map_err(|s| status_message(&s))?;
        let rev = r.into_inner().header.map(|h| h.revision).unwrap_or(0);
        self.sent.lock().insert(rev, t);
        Ok(())
    }
}

/// What one stream's task hands back: creation latencies, creation errors, and the arrival
/// time of each event by its revision.
struct StreamResult {
    created: Report,
    events: Vec<(i64, Instant)>,
}

/// Creates this stream's watchers one by one (timing each), waits at `go` until every stream
/// is ready, then collects `expected` events.
async fn stream_task(
    ch: Channel,
    keys: Vec<Vec<u8>>,
    expected: u64,
    go: Arc<Barrier>,
) -> StreamResult {
    let mut created = Report::new("watch creation");
    let mut events = Vec::with_capacity(expected as usize);
    let (tx, rx) = mpsc::channel(16);
    let create = |key: &Vec<u8>| WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.clone(),
            ..Default::default()
        })),
    };
    let mut pending = keys.iter();
    let mut stream = None;
    if let Some(first) = pending.next() {
        // The first create goes out before the call returns: etcd sends the response headers
        // only with its first response.
        let t = Instant::now();
        let _ = tx.send(create(first)).await;
        match WatchClient::new(ch).watch(ReceiverStream::new(rx)).await {
            Ok(r) => stream = Some((r.into_inner(), t)),
            Err(s) => created.record_error(status_message(&s)),
        }
    }
    if let Some((mut rx, mut t)) = stream {
        let mut made = 0;
        while made < keys.len() {
            match rx.message().await {
                Ok(Some(WatchResponse { created: true, .. })) => {
                    created.record(t.elapsed());
                    made += 1;
                    if let Some(k) = pending.next() {
                        t = Instant::now();
                        let _ = tx.send(create(k)).await;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    created.record_error("watch stream ended during creation");
                    break;
                }
                Err(s) => {
                    created.record_error(status_message(&s));
                    break;
                }
            }
        }
        go.wait().await;
        while (events.len() as u64) < expected {
            match tokio::time::timeout(IDLE_TIMEOUT, rx.message()).await {
                Ok(Ok(Some(r))) => {
                    let now = Instant::now();
                    events.extend(
                        r.events
                            .iter()
                            .filter_map(|e| e.kv.as_ref())
                            .map(|kv| (kv.mod_revision, now)),
                    );
                }
                _ => break,
            }
        }
    } else {
        go.wait().await;
    }
    drop(tx);
    StreamResult { created, events }
}

/// Runs the benchmark; returns the reports of watch creation, of the puts, and of the events.
pub async fn run(
    channels: Vec<Channel>,
    put_clients: usize,
    args: Args,
) -> anyhow::Result<(Report, Report, Report)> {
    let keys: Vec<Vec<u8>> = (0..args.watched_key_total.max(1) as u64)
        .map(|i| {
            key(
                args.key_size,
                key_number(i, args.key_space_size, args.sequential_keys),
            )
        })
        .collect();
    let puts = puts_per_key(args.put_total, &keys);
    let streams = args.streams.max(1);
    let go = Arc::new(Barrier::new(streams + 1));
    let setup = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    let mut expected_total = 0;
    for s in 0..streams {
        let mine: Vec<Vec<u8>> = (0..args.watch_per_stream)
            .map(|j| keys[(s * args.watch_per_stream + j) % keys.len()].clone())
            .collect();
        let expected = expected_events(&mine, &puts);
        expected_total += expected;
        let ch = channels[s % channels.len()].clone();
        tasks.push(tokio::spawn(stream_task(ch, mine, expected, go.clone())));
    }
    go.wait().await;
    let setup_elapsed = setup.elapsed();

    let keys = Arc::new(keys);
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let putters = (0..put_clients.max(1))
        .map(|c| Putter {
            client: kv_client(channels[c % channels.len()].clone()),
            keys: keys.clone(),
            sent: sent.clone(),
        })
        .collect();
    let start = Instant::now();
    let (put_report, _) = runner::run("watch puts", putters, args.put_total, args.put_rate).await;

    let mut created = Report::new("watch creation");
    let mut events = Report::new("watch events (put sent -> event)");
    let sent = sent.lock().clone();
    let mut last = start;
    let mut received = 0u64;
    for t in tasks {
        let r = t.await?;
        created.merge(&r.created);
        for (rev, at) in r.events {
            received += 1;
            last = last.max(at);
            match sent.get(&rev) {
                Some(s) => events.record(at.saturating_duration_since(*s)),
                None => events.record_error("event for a revision no put of this run produced"),
            }
        }
    }
    created.elapsed = setup_elapsed;
    events.elapsed = last - start;
    if received < expected_total {
        events.errors.insert(
            "event not received (stream idle for 15 s)".into(),
            expected_total - received,
        );
    }
    events
        .extra
        .insert("watchers".into(), (streams * args.watch_per_stream).into());
    events
        .extra
        .insert("events_expected".into(), expected_total.into());
    events
        .extra
        .insert("events_received".into(), received.into());
    Ok((created, put_report, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn puts_spread_evenly_over_keys() {
        let p = puts_per_key(10, &keys(&["a", "b", "c"]));
        assert_eq!(
            (p[&b"a".to_vec()], p[&b"b".to_vec()], p[&b"c".to_vec()]),
            (4, 3, 3)
        );
        let p = puts_per_key(2, &keys(&["a", "b", "c", "d"]));
        assert_eq!((p[&b"a".to_vec()], p[&b"d".to_vec()]), (1, 0));
    }

    #[test]
    fn duplicate_keys_share_their_puts() {
        // Slots 0 and 2 drew the same key: it gets the puts of both slots.
        let p = puts_per_key(6, &keys(&["a", "b", "a"]));
        assert_eq!(p.len(), 2);
        assert_eq!((p[&b"a".to_vec()], p[&b"b".to_vec()]), (4, 2));
    }

    #[test]
    fn expected_events_follow_the_watchers_keys() {
        let p = puts_per_key(5, &keys(&["a", "b"])); // a: 3 puts, b: 2 puts
        assert_eq!(expected_events(&keys(&["a", "b", "a"]), &p), 3 + 2 + 3);
        assert_eq!(expected_events(&keys(&["b", "b"]), &p), 4);
        assert_eq!(expected_events(&keys(&["z"]), &p), 0);
    }
}
