//! Watch guarantees, and "no acknowledged write lost".
//!
//! Every watcher watches all keys from revision 1 with prev_kv. Per watcher: replies come in
//! revision order, no revision is split across replies (atomic), no event repeats (unique), the
//! revisions are contiguous from 2 (every revision bump is one write with ≥ 1 event: no gaps),
//! every prev_kv is the key's previous state, it reached the final revision. Across watchers:
//! every revision has the same events everywhere. Against the history: every acknowledged
//! write is in the log at its revision with its value, every put event is a value some client
//! tried to write, and the final reads on every member agree with the log's final state and
//! hold every acknowledged write or something later.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::history::{Kv, Op, OpKind, OpResult, WatchEvent, WatchLog};
use super::linearizable::Anomaly;

/// What the watch check found, and the complete write log it built.
#[derive(Debug, Default)]
pub struct WatchVerdict {
    /// Everything wrong.
    pub anomalies: Vec<Anomaly>,
    /// Events received over all watchers.
    pub events: usize,
    /// Stream re-creations over all watchers.
    pub reconnects: usize,
    /// (key, value) → revision of every put, when the log covers the whole run.
    pub written: Option<HashMap<(String, String), i64>>,
}

fn anomaly(out: &mut Vec<Anomaly>, kind: &'static str, detail: String) {
    out.push(Anomaly { kind, detail });
}

/// Checks the logs against each other and against the history; `final_rev` is the cluster's
/// revision after healing.
pub fn check(logs: &[WatchLog], history: &[Op], final_rev: i64) -> WatchVerdict {
    let mut v = WatchVerdict::default();
    let out = &mut v.anomalies;
    // The reference: revision → its events, from whichever watcher had it first.
    let mut reference: BTreeMap<i64, (usize, Vec<WatchEvent>)> = BTreeMap::new();
    for log in logs {
        let m = log.member + 1;
        v.reconnects += log.reconnects;
        let mut by_rev: BTreeMap<i64, Vec<WatchEvent>> = BTreeMap::new();
        let mut prev_max = 0i64;
        for reply in &log.replies {
            if let Some(why) = &reply.canceled {
                anomaly(out, "watch canceled", format!("watcher on m{m}: {why}"));
            }
            let Some(min) = reply.events.iter().map(|e| e.revision).min() else {
                continue;
            };
            let max = reply.events.iter().map(|e| e.revision).max().unwrap();
            if reply
                .events
                .windows(2)
                .any(|w| w[1].revision < w[0].revision)
            {
                anomaly(
                    out,
                    "watch events out of order",
                    format!("watcher on m{m}: {:?}", reply.events),
                );
            }
            if min == prev_max {
                anomaly(
                    out,
                    "watch revision split across replies",
                    format!("watcher on m{m}: revision {min}"),
                );
            } else if min < prev_max {
                anomaly(
                    out,
                    "watch events repeated or out of order",
                    format!("watcher on m{m}: revision {min} after {prev_max}"),
                );
            }
            prev_max = prev_max.max(max);
            for e in &reply.events {
                v.events += 1;
                let evs = by_rev.entry(e.revision).or_default();
                if evs.iter().any(|x| x.key == e.key) {
                    anomaly(
                        out,
                        "watch event repeated",
                        format!("watcher on m{m}: {e:?}"),
                    );
                    continue;
                }
                evs.push(e.clone());
            }
        }
        // Contiguous revisions from the first write (2) to the last seen.
        let last = by_rev.keys().next_back().copied().unwrap_or(1);
        let missing: Vec<i64> = (2..=last).filter(|r| !by_rev.contains_key(r)).collect();
        if !missing.is_empty() {
            anomaly(
                out,
                "watch gap",
                format!(
                    "watcher on m{m} never got revisions {:?}{}",
                    &missing[..missing.len().min(20)],
                    if missing.len() > 20 { " ..." } else { "" }
                ),
            );
        }
        if last < final_rev {
            anomaly(
                out,
                "watcher fell behind",
                format!(
                    "watcher on m{m} stopped at revision {last}; the cluster is at {final_rev}"
                ),
            );
        }
        // prev_kv is the previous state of the key.
        let mut state: HashMap<String, (String, i64)> = HashMap::new();
        for (rev, evs) in &by_rev {
            for e in evs {
                let want = state.get(&e.key).cloned();
                if e.prev != want {
                    anomaly(
                        out,
                        "wrong prev_kv",
                        format!(
                            "watcher on m{m} at revision {rev}: {e:?}, but the key was {want:?}"
                        ),
                    );
                }
                if e.put {
                    state.insert(e.key.clone(), (e.value.clone(), *rev));
                } else {
                    state.remove(&e.key);
                }
            }
        }
        // Same events per revision on every watcher.
        for (rev, mut evs) in by_rev {
            evs.sort_by(|a, b| a.key.cmp(&b.key));
            match reference.get(&rev) {
                Some((who, r)) if *r != evs => anomaly(
                    out,
                    "watchers disagree",
                    format!(
                        "revision {rev}: watcher on m{} got {r:?}, watcher on m{m} got {evs:?}",
                        who + 1
                    ),
                ),
                Some(_) => {}
                None => {
                    reference.insert(rev, (log.member, evs));
                }
            }
        }
    }

    let covered = reference.keys().next_back().copied().unwrap_or(1);
    let complete = covered >= final_rev && (2..=covered).all(|r| reference.contains_key(&r));
    // Every put event is a value some client tried to write.
    let tried: HashSet<(&str, &str)> = history
        .iter()
        .flat_map(|o| match &o.kind {
            OpKind::Put { key, value, .. } => vec![(key.as_str(), value.as_str())],
            OpKind::Txn { puts, .. } => {
                puts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
            }
            _ => vec![],
        })
        .collect();
    for (rev, (_, evs)) in &reference {
        for e in evs.iter().filter(|e| e.put) {
            if !tried.contains(&(e.key.as_str(), e.value.as_str())) {
                anomaly(
                    out,
                    "watch event of a value never written",
                    format!("revision {rev}: {e:?}"),
                );
            }
        }
    }
    // Every acknowledged write is in the log at its revision.
    let has = |rev: i64, key: &str, put: Option<&str>| -> bool {
        reference.get(&rev).is_some_and(|(_, evs)| {
            evs.iter().any(|e| {
                e.key == key
                    && match put {
                        Some(v) => e.put && e.value == v,
                        None => !e.put,
                    }
            })
        })
    };
    let mut acked: Vec<(String, String, i64, &Op)> = Vec::new();
    for op in history {
        let writes: Vec<(&str, Option<&str>, i64)> = match (&op.kind, &op.result) {
            (OpKind::Put { key, value, .. }, Some(OpResult::Put { header })) => {
                vec![(key, Some(value), *header)]
            }
            (
                OpKind::Txn { puts, .. },
                Some(OpResult::Txn {
                    succeeded: true,
                    header,
                    ..
                }),
            ) => puts
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str()), *header))
                .collect(),
            (OpKind::Delete { key }, Some(OpResult::Delete { deleted, header }))
                if *deleted > 0 =>
            {
                vec![(key, None, *header)]
            }
            _ => vec![],
        };
        for (k, val, rev) in writes {
            if let Some(val) = val {
                acked.push((k.to_string(), val.to_string(), rev, op));
            }
            if rev <= covered && !has(rev, k, val) {
                anomaly(
                    out,
                    "acknowledged write missing from the watch log",
                    format!(
                        "{op}\n  revision {rev} in the log: {:?}",
                        reference.get(&rev)
                    ),
                );
            }
        }
    }
    // The final state per the log, against the final reads, and every acknowledged write is
    // still there or superseded.
    let mut state: HashMap<String, (String, i64)> = HashMap::new();
    let mut last_delete: HashMap<String, i64> = HashMap::new();
    for (rev, (_, evs)) in &reference {
        for e in evs {
            if e.put {
                state.insert(e.key.clone(), (e.value.clone(), *rev));
            } else {
                state.remove(&e.key);
                last_delete.insert(e.key.clone(), *rev);
            }
        }
    }
    for op in history.iter().filter(|o| o.client >= 1000) {
        let (OpKind::Get { key }, Some(OpResult::Get { kv, header })) = (&op.kind, &op.result)
        else {
            continue;
        };
        if complete && *header == covered {
            let want: Kv = state.get(key).cloned();
            if *kv != want {
                anomaly(
                    out,
                    "final read disagrees with the watch log",
                    format!("{op}\n  the log ends with {want:?}"),
                );
            }
        }
        for (k, val, rev, w) in acked.iter().filter(|a| &a.0 == key) {
            let lost = match kv {
                Some((v, m)) => *m < *rev || (*m == *rev && v != val),
                None => complete && last_delete.get(k).is_none_or(|d| d < rev),
            };
            if lost {
                anomaly(
                    out,
                    "acknowledged write lost",
                    format!("{w}\n  but at the end: {op}"),
                );
            }
        }
    }
    // Every read returned the key's state at its header revision.
    if complete {
        let mut at: HashMap<&str, Vec<(i64, Kv)>> = HashMap::new();
        for (rev, (_, evs)) in &reference {
            for e in evs {
                let kv = e.put.then(|| (e.value.clone(), *rev));
                at.entry(e.key.as_str()).or_default().push((*rev, kv));
            }
        }
        let state_at = |key: &str, rev: i64| -> Kv {
            at.get(key)
                .and_then(|h| h.iter().rev().find(|(r, _)| *r <= rev))
                .and_then(|(_, kv)| kv.clone())
        };
        for op in history {
            let reads: Vec<(&str, &Kv, i64)> = match (&op.kind, &op.result) {
                (OpKind::Get { key }, Some(OpResult::Get { kv, header })) => {
                    vec![(key.as_str(), kv, *header)]
                }
                (_, Some(OpResult::Txn { reads, header, .. })) => reads
                    .iter()
                    .map(|(k, kv)| (k.as_str(), kv, *header))
                    .collect(),
                _ => continue,
            };
            for (key, kv, header) in reads {
                let want = state_at(key, header);
                if header <= covered && *kv != want {
                    anomaly(
                        out,
                        "read disagrees with the watch log at its revision",
                        format!("{op}\n  the log has {want:?} at revision {header}"),
                    );
                }
            }
        }
        v.written = Some(
            reference
                .iter()
                .flat_map(|(rev, (_, evs))| {
                    evs.iter()
                        .filter(|e| e.put)
                        .map(move |e| ((e.key.clone(), e.value.clone()), *rev))
                })
                .collect(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::WatchReply;

    fn ev(rev: i64, key: &str, value: Option<&str>, prev: Option<(&str, i64)>) -> WatchEvent {
        WatchEvent {
            revision: rev,
            put: value.is_some(),
            key: key.into(),
            value: value.unwrap_or("").into(),
            prev: prev.map(|(v, m)| (v.to_string(), m)),
        }
    }

    fn log(member: usize, replies: Vec<Vec<WatchEvent>>) -> WatchLog {
        WatchLog {
            member,
            start_revision: 1,
            replies: replies
                .into_iter()
                .map(|events| WatchReply {
                    events,
                    canceled: None,
                })
                .collect(),
            reconnects: 0,
        }
    }

    fn put(key: &str, value: &str, rev: i64) -> Op {
        Op {
            id: 0,
            client: 0,
            member: 0,
            invoke: 0,
            complete: 1,
            kind: OpKind::Put {
                key: key.into(),
                value: value.into(),
                lease: 0,
            },
            result: Some(OpResult::Put { header: rev }),
            error: String::new(),
        }
    }

    fn kinds(v: &WatchVerdict) -> Vec<&'static str> {
        v.anomalies.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn good_logs_pass_and_give_the_write_log() {
        let good = vec![
            vec![ev(2, "a", Some("1"), None)],
            vec![
                ev(3, "a", Some("2"), Some(("1", 2))),
                ev(3, "b", Some("3"), None),
            ],
            vec![ev(4, "a", None, Some(("2", 3)))],
        ];
        let h = vec![put("a", "1", 2), put("a", "2", 3), put("b", "3", 3)];
        let v = check(&[log(0, good.clone()), log(1, good)], &h, 4);
        assert!(v.anomalies.is_empty(), "{:#?}", v.anomalies);
        assert_eq!(v.written.unwrap().len(), 3);
    }

    #[test]
    fn broken_logs_are_rejected() {
        let h = vec![put("a", "1", 2), put("a", "2", 3), put("b", "3", 3)];
        // A gap and a missing acknowledged write.
        let v = check(
            &[log(
                0,
                vec![
                    vec![ev(2, "a", Some("1"), None)],
                    vec![ev(4, "x", None, None)],
                ],
            )],
            &h,
            4,
        );
        assert!(kinds(&v).contains(&"watch gap"), "{:?}", kinds(&v));
        // A revision split across replies (not atomic) and a wrong prev_kv.
        let v = check(
            &[log(
                0,
                vec![
                    vec![ev(2, "a", Some("1"), None)],
                    vec![ev(3, "a", Some("2"), None)],
                    vec![ev(3, "b", Some("3"), None)],
                ],
            )],
            &h,
            3,
        );
        assert!(kinds(&v).contains(&"watch revision split across replies"));
        assert!(kinds(&v).contains(&"wrong prev_kv"));
        // Watchers disagree; one fell behind.
        let v = check(
            &[
                log(0, vec![vec![ev(2, "a", Some("1"), None)]]),
                log(1, vec![vec![ev(2, "a", Some("2"), None)]]),
            ],
            &h[..1],
            2,
        );
        assert!(kinds(&v).contains(&"watchers disagree"));
        let v = check(&[log(0, vec![vec![ev(2, "a", Some("1"), None)]])], &h, 3);
        assert!(kinds(&v).contains(&"watcher fell behind"));
        // An event nobody wrote; a duplicated event.
        let v = check(
            &[log(
                0,
                vec![
                    vec![ev(2, "a", Some("zz"), None)],
                    vec![ev(2, "a", Some("zz"), None)],
                ],
            )],
            &[],
            2,
        );
        assert!(kinds(&v).contains(&"watch event of a value never written"));
        assert!(
            kinds(&v).contains(&"watch event repeated"),
            "{:?}",
            kinds(&v)
        );
    }

    #[test]
    fn a_read_must_match_the_log_at_its_header_revision() {
        let mut h = vec![put("a", "1", 2)];
        h.push(Op {
            id: 1,
            client: 3,
            member: 0,
            invoke: 5,
            complete: 6,
            kind: OpKind::Get { key: "a".into() },
            result: Some(OpResult::Get {
                kv: Some(("2".into(), 3)),
                header: 3,
            }),
            error: String::new(),
        });
        // The log says revision 3 deleted a: the read cannot have returned a value.
        let l = vec![
            vec![ev(2, "a", Some("1"), None)],
            vec![ev(3, "a", None, Some(("1", 2)))],
        ];
        let v = check(&[log(0, l)], &h, 3);
        assert!(
            kinds(&v).contains(&"read disagrees with the watch log at its revision"),
            "{:?}",
            kinds(&v)
        );
    }

    #[test]
    fn a_lost_acknowledged_write_is_found_by_the_final_reads() {
        let mut h = vec![put("a", "1", 2), put("a", "2", 3)];
        h.push(Op {
            id: 2,
            client: 1000,
            member: 0,
            invoke: 5,
            complete: 6,
            kind: OpKind::Get { key: "a".into() },
            result: Some(OpResult::Get {
                kv: Some(("1".into(), 2)),
                header: 3,
            }),
            error: String::new(),
        });
        let good = vec![
            vec![ev(2, "a", Some("1"), None)],
            vec![ev(3, "a", Some("2"), Some(("1", 2)))],
        ];
        let v = check(&[log(0, good)], &h, 3);
        assert!(
            kinds(&v).contains(&"acknowledged write lost"),
            "{:?}",
            kinds(&v)
        );
        assert!(kinds(&v).contains(&"final read disagrees with the watch log"));
    }
}
