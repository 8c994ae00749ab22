//! `ferrocd-bench watch-latency`: many watchers on one key range, a steady put rate, and the
//! time from a put's acknowledgement to each watcher receiving its event. Speaks only the
//! etcd v3 API, so it measures etcd and ferrocd alike. (etcd's own `benchmark watch` is the
//! `watch` subcommand, in `watch.rs`.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferrocd::proto::etcdserverpb::kv_client::KvClient;
use ferrocd::proto::etcdserverpb::watch_client::WatchClient;
use ferrocd::proto::etcdserverpb::watch_request::RequestUnion;
use ferrocd::proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use hdrhistogram::Histogram;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::report::Report;

/// What to run.
pub struct Args {
    /// Watchers in total.
    pub watchers: usize,
    /// Streams they are spread over.
    pub streams: usize,
    /// Puts to make.
    pub puts: u64,
    /// Puts per second.
    pub rate: f64,
    /// Value size of each put.
    pub val_size: usize,
    /// The watched prefix (puts go to `<prefix>k`).
    pub prefix: String,
    /// The server's pid, to report its RSS per 10,000 idle watchers (same host only).
    pub server_pid: Option<u32>,
}

/// The server's resident memory in bytes (None if the pid cannot be read).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Receives one stream's responses: waits for `created` replies, then records when each
/// event arrived until `expected` events came (or the deadline passed).
async fn receive(
    mut rx: tonic::Streaming<ferrocd::proto::etcdserverpb::WatchResponse>,
    watchers: usize,
    created_tx: tokio::sync::mpsc::Sender<()>,
    expected: usize,
    deadline: Duration,
) -> Vec<(i64, Instant)> {
    let mut created = 0;
    let mut got = Vec::with_capacity(expected);
    let end = tokio::time::sleep(deadline);
    tokio::pin!(end);
    while got.len() < expected || created < watchers {
        let msg = tokio::select! {
            m = rx.message() => m,
            _ = &mut end => break,
        };
        let Ok(Some(r)) = msg else { break };
        if r.created {
            created += 1;
            if created == watchers {
                let _ = created_tx.send(()).await;
            }
            continue;
        }
        let now = Instant::now();
        for e in &r.events {
            if let Some(kv) = &e.kv {
                got.push((kv.mod_revision, now));
            }
        }
    }
    got
}

/// Runs the benchmark. The report's latencies are from each put being sent to each watcher
/// receiving its event (the whole path); the ack-based latencies, the put latency under fan-out
/// and the server's memory per idle watcher are extra fields. The watch streams share
/// `channels`; the writer has its own connection, `put_channel`, like a separate client process.
pub async fn run(
    channels: Vec<Channel>,
    put_channel: Channel,
    args: Args,
) -> anyhow::Result<Report> {
    let streams = args.streams.clamp(1, args.watchers.max(1));
    let rss_before = args.server_pid.and_then(rss);
    let setup = Instant::now();
    let (created_tx, mut created_rx) = tokio::sync::mpsc::channel(streams);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let range_end = {
        let mut e = args.prefix.clone().into_bytes();
        match e.last_mut() {
            Some(b) if *b < 0xff => *b += 1,
            _ => anyhow::bail!("the prefix must be non-empty and not end in 0xff"),
        }
        e
    };
    let mut placed = 0;
    for s in 0..streams {
        let n = args.watchers / streams + usize::from(s < args.watchers % streams);
        placed += n;
        let (tx, rx) = tokio::sync::mpsc::channel(n + 16);
        for _ in 0..n {
            tx.send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: args.prefix.clone().into_bytes(),
                    range_end: range_end.clone(),
                    ..WatchCreateRequest::default()
                })),
            })
            .await?;
        }
        // Requests go out before the call returns: etcd sends response headers only with
        // its first response.
        let mut client = WatchClient::new(channels[s % channels.len()].clone());
        let resp = client.watch(ReceiverStream::new(rx)).await?.into_inner();
        senders.push(tx);
        let expected = n * args.puts as usize;
        let deadline = Duration::from_secs_f64(args.puts as f64 / args.rate.max(0.001) + 120.0);
        receivers.push(tokio::spawn(receive(
            resp,
            n,
            created_tx.clone(),
            expected,
            deadline,
        )));
    }
    for _ in 0..streams {
        tokio::time::timeout(Duration::from_secs(120), created_rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("watchers were not all created within 120 s"))?;
    }
    let setup_secs = setup.elapsed().as_secs_f64();
    // let the server settle before sampling its memory with every watcher idle
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = args.server_pid.and_then(rss);

    let put_phase = Instant::now();
    let mut kv = KvClient::new(put_channel);
    let mut acks: HashMap<i64, (Instant, Instant)> = HashMap::new();
    let mut put_hist = Histogram::<u64>::new(3)?;
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let key = format!("{}k", args.prefix).into_bytes();
    let value = vec![b'v'; args.val_size];
    for _ in 0..args.puts {
        tick.tick().await;
        let sent = Instant::now();
        let r = kv
            .put(PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..PutRequest::default()
            })
            .await?
            .into_inner();
        let ack = Instant::now();
        put_hist.record((ack - sent).as_micros() as u64)?;
        let rev = r.header.map(|h| h.revision).unwrap_or(0);
        acks.insert(rev, (sent, ack));
    }
    drop(senders);

    let mut hist = Histogram::<u64>::new(3)?;
    let mut e2e = Histogram::<u64>::new(3)?;
    let mut received = 0u64;
    let mut before_ack = 0u64;
    for r in receivers {
        for (rev, at) in r.await? {
            let Some((sent, ack)) = acks.get(&rev) else {
                continue;
            };
            received += 1;
            e2e.record(at.saturating_duration_since(*sent).as_micros() as u64)?;
            let us = match at.checked_duration_since(*ack) {
                Some(d) => d.as_micros() as u64,
                None => {
                    before_ack += 1;
                    0
                }
            };
            hist.record(us)?;
        }
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let per_10k = match (rss_before, rss_idle) {
        (Some(b), Some(a)) if placed > 0 => {
            Some(a.saturating_sub(b) as f64 * 10_000.0 / placed as f64)
        }
        _ => None,
    };
    let expected = placed as u64 * args.puts;
    let mut report = Report::new("watch-latency (put sent -> event)");
    report.hist = e2e;
    report.elapsed = put_phase.elapsed();
    if received < expected {
        report.errors.insert(
            "event not received before the deadline".into(),
            expected - received,
        );
    }
    let extra = serde_json::json!({
        "watchers": placed,
        "streams": streams,
        "puts": args.puts,
        "rate": args.rate,
        "events_expected": expected,
        "events_received": received,
        "events_before_ack": before_ack,
        "latency_ms": {
            "p50": ms(hist.value_at_quantile(0.50)),
            "p90": ms(hist.value_at_quantile(0.90)),
            "p99": ms(hist.value_at_quantile(0.99)),
            "max": ms(hist.max()),
        },
        "send_to_event_ms": {
            "p50": ms(report.hist.value_at_quantile(0.50)),
            "p99": ms(report.hist.value_at_quantile(0.99)),
        },
        "put_latency_ms": {
            "p50": ms(put_hist.value_at_quantile(0.50)),
            "p99": ms(put_hist.value_at_quantile(0.99)),
        },
        "setup_secs": setup_secs,
        "rss_before_watchers_bytes": rss_before,
        "rss_idle_watchers_bytes": rss_idle,
        "rss_per_10k_idle_watchers_bytes": per_10k,
    });
    if let serde_json::Value::Object(m) = extra {
        report.extra = m;
    }
    Ok(report)
}
