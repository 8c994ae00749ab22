//! Clients that record a history, and watchers that record every event.
//!
//! Each client talks to one member and is sequential. Operations: get, put, CAS (a Txn on the
//! mod_revision the client last read), two-key Txns, deletes, puts with a lease and lease
//! revocation. Every put writes a value unique in the run. An operation that errors or times out
//! is recorded with an unknown outcome (it may still take effect).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseGrantOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cluster::connect;
use super::history::{Kv, Op, OpKind, OpResult, WatchEvent, WatchLog, WatchReply};

/// Register keys (CAS, txn, delete contention) and lease keys.
pub const REGISTERS: usize = 5;
/// Keys written with leases.
pub const LEASE_KEYS: usize = 3;
/// Per-operation timeout: beyond it the outcome is unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

fn reg(i: usize) -> String {
    format!("r/{i}")
}

fn lkey(i: usize) -> String {
    format!("l/{i}")
}

/// The shared recorder.
#[derive(Clone)]
pub struct Recorder {
    t0: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Recorder {
    /// A recorder whose clock starts at `t0`.
    pub fn new(t0: Instant) -> Recorder {
        Recorder {
            t0,
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn push(&self, op: Op) {
        self.ops.lock().push(op);
    }

    /// The history so far, ordered by invoke time, numbered.
    pub fn history(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().clone();
        ops.sort_by_key(|o| (o.invoke, o.client));
        for (i, o) in ops.iter_mut().enumerate() {
            o.id = i;
        }
        ops
    }
}

fn kv_of(kvs: &[etcd_client::KeyValue]) -> Kv {
    kvs.first().map(|kv| {
        (
            String::from_utf8_lossy(kv.value()).to_string(),
            kv.mod_revision(),
        )
    })
}

/// Runs one operation with a timeout, records it (as `client`, talking to `member`), returns
/// its result.
pub async fn run_op(
    rec: &Recorder,
    client: usize,
    member: usize,
    cl: &mut Client,
    kind: OpKind,
) -> Option<OpResult> {
    let invoke = rec.now();
    let fut = async {
        let hdr = |h: Option<&etcd_client::ResponseHeader>| h.map(|h| h.revision()).unwrap_or(0);
        Ok::<OpResult, etcd_client::Error>(match &kind {
            OpKind::Get { key } => {
                let r = cl.get(key.as_str(), None).await?;
                OpResult::Get {
                    kv: kv_of(r.kvs()),
                    header: hdr(r.header()),
                }
            }
            OpKind::Put { key, value, lease } => {
                let o = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
                let r = cl.put(key.as_str(), value.as_str(), o).await?;
                OpResult::Put {
                    header: hdr(r.header()),
                }
            }
            OpKind::Delete { key } => {
                let r = cl.delete(key.as_str(), None).await?;
                OpResult::Delete {
                    deleted: r.deleted(),
                    header: hdr(r.header()),
                }
            }
            OpKind::Txn { compares, puts } => {
                let txn = Txn::new()
                    .when(
                        compares
                            .iter()
                            .map(|(k, r, _)| {
                                Compare::mod_revision(k.as_str(), CompareOp::Equal, *r)
                            })
                            .collect::<Vec<_>>(),
                    )
                    .and_then(
                        puts.iter()
                            .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
                            .collect::<Vec<_>>(),
                    )
                    .or_else(
                        compares
                            .iter()
                            .map(|(k, _, _)| TxnOp::get(k.as_str(), None))
                            .collect::<Vec<_>>(),
                    );
                let r = cl.txn(txn).await?;
                let mut reads = Vec::new();
                if !r.succeeded() {
                    for ((k, _, _), resp) in compares.iter().zip(r.op_responses()) {
                        if let TxnOpResponse::Get(g) = resp {
                            reads.push((k.clone(), kv_of(g.kvs())));
                        }
                    }
                }
                OpResult::Txn {
                    succeeded: r.succeeded(),
                    header: hdr(r.header()),
                    reads,
                }
            }
            OpKind::Revoke { lease } => {
                let r = cl.lease_revoke(*lease).await?;
                OpResult::Revoke {
                    header: hdr(r.header()),
                }
            }
        })
    };
    let (result, error) = match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(r)) => (Some(r), String::new()),
        Ok(Err(e)) => (None, e.to_string()),
        Err(_) => (None, "client timeout".into()),
    };
    rec.push(Op {
        id: 0,
        client,
        member,
        invoke,
        complete: rec.now(),
        kind,
        result: result.clone(),
        error,
    });
    result
}

/// One client's loop until `stop`.
#[allow(clippy::too_many_arguments)]
pub async fn client(
    rec: Recorder,
    seed: u64,
    client: usize,
    member: usize,
    endpoint: String,
    stop: Arc<AtomicBool>,
    lease_ttl: i64,
    pace: Duration,
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(client as u64));
    let mut cl = loop {
        if let Some(c) = connect(&endpoint).await {
            break c;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // What this client last read of each key: (mod_revision, value).
    let mut seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
    let mut seq = 0u64;
    let mut value = || {
        seq += 1;
        format!("c{client}.{seq}")
    };
    let mut lease: Option<i64> = None;
    let mut lease_no = 0i64;
    while !stop.load(Ordering::Relaxed) {
        let x = rng.random_range(0..100);
        let k = reg(rng.random_range(0..REGISTERS));
        let kind = match x {
            0..=24 => {
                let key = if rng.random_bool(0.8) {
                    k
                } else {
                    lkey(rng.random_range(0..LEASE_KEYS))
                };
                OpKind::Get { key }
            }
            25..=46 => OpKind::Put {
                key: k,
                value: value(),
                lease: 0,
            },
            47..=66 => {
                let (r, v) = seen.get(&k).cloned().unwrap_or((0, None));
                OpKind::Txn {
                    compares: vec![(k.clone(), r, v)],
                    puts: vec![(k, value())],
                }
            }
            67..=74 => {
                let mut k2 = reg(rng.random_range(0..REGISTERS));
                while k2 == k {
                    k2 = reg(rng.random_range(0..REGISTERS));
                }
                let (r1, v1) = seen.get(&k).cloned().unwrap_or((0, None));
                let (r2, v2) = seen.get(&k2).cloned().unwrap_or((0, None));
                OpKind::Txn {
                    compares: vec![(k.clone(), r1, v1), (k2.clone(), r2, v2)],
                    puts: vec![(k, value()), (k2, value())],
                }
            }
            75..=80 => OpKind::Delete { key: k },
            81..=94 => {
                let id = match lease {
                    Some(id) => id,
                    None => {
                        lease_no += 1;
                        let id =
                            ((seed as i64 & 0xffff) << 32) | ((client as i64) << 16) | lease_no;
                        let grant = tokio::time::timeout(
                            OP_TIMEOUT,
                            cl.lease_grant(lease_ttl, Some(LeaseGrantOptions::new().with_id(id))),
                        )
                        .await;
                        if !matches!(grant, Ok(Ok(_))) {
                            tokio::time::sleep(pace).await;
                            continue;
                        }
                        lease = Some(id);
                        id
                    }
                };
                OpKind::Put {
                    key: lkey(rng.random_range(0..LEASE_KEYS)),
                    value: value(),
                    lease: id,
                }
            }
            _ => match lease.take() {
                Some(lease) => OpKind::Revoke { lease },
                None => OpKind::Get {
                    key: lkey(rng.random_range(0..LEASE_KEYS)),
                },
            },
        };
        let res = run_op(&rec, client, member, &mut cl, kind.clone()).await;
        // Remember what the key held for later CAS.
        match (&kind, &res) {
            (OpKind::Get { key }, Some(OpResult::Get { kv, .. })) => {
                seen.insert(key.clone(), split(kv));
            }
            (
                OpKind::Txn { puts, .. },
                Some(OpResult::Txn {
                    succeeded,
                    header,
                    reads,
                }),
            ) => {
                if *succeeded {
                    for (k, v) in puts {
                        seen.insert(k.clone(), (*header, Some(v.clone())));
                    }
                } else {
                    for (k, kv) in reads {
                        seen.insert(k.clone(), split(kv));
                    }
                }
            }
            (OpKind::Put { key, value, .. }, Some(OpResult::Put { header })) => {
                seen.insert(key.clone(), (*header, Some(value.clone())));
            }
            _ => {}
        }
        tokio::time::sleep(pace).await;
    }
}

fn split(kv: &Kv) -> (i64, Option<String>) {
    match kv {
        Some((v, m)) => (*m, Some(v.clone())),
        None => (0, None),
    }
}

/// Reads every key once on every member (linearizable) and records the reads (client ids
/// 1000 + member).
pub async fn final_reads(rec: &Recorder, endpoints: &[String]) {
    for (m, ep) in endpoints.iter().enumerate() {
        let Some(mut cl) = connect(ep).await else {
            continue;
        };
        let keys = (0..REGISTERS).map(reg).chain((0..LEASE_KEYS).map(lkey));
        for key in keys {
            run_op(rec, 1000 + m, m, &mut cl, OpKind::Get { key }).await;
        }
    }
}

/// A watcher of every key on one member from revision 1 with prev_kv. It reconnects (from its
/// last revision + 1) when its stream breaks, and runs until `stop` and it has seen `until`.
pub async fn watcher(
    member: usize,
    endpoint: String,
    stop: Arc<AtomicBool>,
    until: Arc<AtomicI64>,
    deadline_after_stop: Duration,
) -> WatchLog {
    let mut log = WatchLog {
        member,
        start_revision: 1,
        ..Default::default()
    };
    let mut last = 0i64;
    let mut stop_at: Option<Instant> = None;
    let done = |last: i64, stop_at: &mut Option<Instant>| -> bool {
        if !stop.load(Ordering::Relaxed) {
            return false;
        }
        let at = *stop_at.get_or_insert_with(|| Instant::now() + deadline_after_stop);
        last >= until.load(Ordering::Relaxed) || Instant::now() > at
    };
    let mut first = true;
    'outer: while !done(last, &mut stop_at) {
        if !first {
            log.reconnects += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        first = false;
        let Some(mut cl) = connect(&endpoint).await else {
            continue;
        };
        let opts = WatchOptions::new()
            .with_all_keys()
            .with_start_revision(last.max(log.start_revision - 1) + 1)
            .with_prev_key();
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(5), cl.watch("", Some(opts))).await
        else {
            continue;
        };
        loop {
            if done(last, &mut stop_at) {
                break 'outer;
            }
            let msg = match tokio::time::timeout(Duration::from_millis(500), stream.message()).await
            {
                Err(_) => continue, // nothing yet; check stop
                Ok(Ok(Some(m))) => m,
                Ok(_) => continue 'outer,
            };
            if msg.canceled() {
                log.replies.push(WatchReply {
                    events: Vec::new(),
                    canceled: Some(format!(
                        "canceled: {} (compact revision {})",
                        msg.cancel_reason(),
                        msg.compact_revision()
                    )),
                });
                continue 'outer;
            }
            if msg.events().is_empty() {
                continue;
            }
            let mut reply = WatchReply::default();
            for e in msg.events() {
                let Some(kv) = e.kv() else { continue };
                reply.events.push(WatchEvent {
                    revision: kv.mod_revision(),
                    put: e.event_type() == EventType::Put,
                    key: String::from_utf8_lossy(kv.key()).to_string(),
                    value: String::from_utf8_lossy(kv.value()).to_string(),
                    prev: e.prev_kv().map(|p| {
                        (
                            String::from_utf8_lossy(p.value()).to_string(),
                            p.mod_revision(),
                        )
                    }),
                });
            }
            if let Some(r) = reply.events.iter().map(|e| e.revision).max() {
                last = last.max(r);
            }
            log.replies.push(reply);
        }
    }
    log
}

/// A linearizable read's header revision from one member (for the final revision).
pub async fn revision(endpoint: &str) -> Option<i64> {
    let mut cl = connect(endpoint).await?;
    let r = cl.get("chaos-probe", Some(GetOptions::new())).await.ok()?;
    r.header().map(|h| h.revision())
}
