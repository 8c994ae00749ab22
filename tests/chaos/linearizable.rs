//! The KV history checker.
//!
//! 1. Cheap checks that exploit etcd's revisions:
//!    - every value is seen at one revision only (a value names its write, a revision its commit);
//!    - no read returns a value nobody tried to write;
//!    - real-time order agrees with revision order: if A completed before B was invoked, then
//!      A's revision (a write's own revision, a read's header revision) is < B's if B writes and
//!      ≤ B's if B reads; in particular a client's revisions never go backwards;
//!    - a Txn that took its else branch really had a failing compare (its else reads are
//!      atomic with the compare).
//! 2. Per-key linearizability of a register (Wing–Gong search in Lowe's style: repeatedly
//!    linearize a minimal pending operation, backtrack on failure, memoise (linearized set,
//!    state) as a 128-bit Zobrist hash). An unknown outcome may take effect at any point after
//!    its invoke, or never. Writes with a known revision must take effect in revision order.
//!    Unknown writes are resolved first where the run proves their fate: a value seen by any
//!    read or in the (checked, complete) watch log was written at that revision; a value absent
//!    from a complete watch log was never written.

use std::collections::{HashMap, HashSet};

use super::history::{Kv, Op, OpKind, OpResult};

/// One thing the checker found wrong.
#[derive(Clone, Debug)]
pub struct Anomaly {
    /// Which check.
    pub kind: &'static str,
    /// What, with the operations involved.
    pub detail: String,
}

/// The checker's result.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Everything wrong.
    pub anomalies: Vec<Anomaly>,
    /// Keys whose search ran out of budget (neither proved nor refuted).
    pub inconclusive: Vec<String>,
    /// Keys searched.
    pub keys: usize,
    /// Search nodes visited over all keys.
    pub steps: u64,
}

/// Search budget per key (nodes); beyond it the key is reported inconclusive.
const BUDGET: u64 = 3_000_000;

/// Checks a history. `watched`: every (key, value) → revision written during the run, from a
/// complete watch log (None if no complete log is available).
pub fn check(history: &[Op], watched: Option<&HashMap<(String, String), i64>>) -> Verdict {
    let mut v = Verdict::default();
    let revs = value_revisions(history, watched, &mut v.anomalies);
    never_written(history, &mut v.anomalies);
    realtime_revisions(history, &revs, &mut v.anomalies);
    txn_branches(history, &mut v.anomalies);
    let mut keys: Vec<String> = history.iter().flat_map(keys_of).collect();
    keys.sort();
    keys.dedup();
    let leases = lease_values(history);
    for key in keys {
        let ops = project(history, &key, &revs, watched, &leases);
        v.keys += 1;
        match search(&ops) {
            Search::Ok(steps) => v.steps += steps,
            Search::OutOfBudget(steps) => {
                v.steps += steps;
                v.inconclusive.push(key);
            }
            Search::Fail(steps, why) => {
                v.steps += steps;
                v.anomalies.push(Anomaly {
                    kind: "not linearizable",
                    detail: format!("key {key}: {}", why.render(history, &ops)),
                });
            }
        }
    }
    v
}

fn keys_of(op: &Op) -> Vec<String> {
    match &op.kind {
        OpKind::Get { key } | OpKind::Put { key, .. } | OpKind::Delete { key } => {
            vec![key.clone()]
        }
        OpKind::Txn { compares, puts } => compares
            .iter()
            .map(|c| c.0.clone())
            .chain(puts.iter().map(|p| p.0.clone()))
            .collect(),
        OpKind::Revoke { .. } => Vec::new(),
    }
}

/// Every (key, value) → revision that the run observed: put and txn acknowledgements, read
/// results, the watch log. Two revisions for one value is an anomaly.
fn value_revisions(
    history: &[Op],
    watched: Option<&HashMap<(String, String), i64>>,
    out: &mut Vec<Anomaly>,
) -> HashMap<(String, String), i64> {
    let mut revs: HashMap<(String, String), (i64, String)> = HashMap::new();
    let mut note = |key: &str, value: &str, rev: i64, by: String, out: &mut Vec<Anomaly>| {
        let k = (key.to_string(), value.to_string());
        match revs.get(&k) {
            Some((r, first)) if *r != rev => out.push(Anomaly {
                kind: "value at two revisions",
                detail: format!("{key}={value} at {r} ({first}) and at {rev} ({by})"),
            }),
            Some(_) => {}
            None => {
                revs.insert(k, (rev, by));
            }
        }
    };
    for op in history {
        match (&op.kind, &op.result) {
            (OpKind::Put { key, value, .. }, Some(OpResult::Put { header })) => {
                note(key, value, *header, op.to_string(), out)
            }
            (
                OpKind::Get { key },
                Some(OpResult::Get {
                    kv: Some((v, m)), ..
                }),
            ) => note(key, v, *m, op.to_string(), out),
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
                        note(k, v, *header, op.to_string(), out);
                    }
                } else {
                    for (k, kv) in reads {
                        if let Some((v, m)) = kv {
                            note(k, v, *m, op.to_string(), out);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(w) = watched {
        let mut w: Vec<_> = w.iter().collect();
        w.sort();
        for ((k, v), r) in w {
            note(k, v, *r, "the watch log".into(), out);
        }
    }
    revs.into_iter().map(|(k, (r, _))| (k, r)).collect()
}

/// Reads must return a value some operation tried to write to that key.
fn never_written(history: &[Op], out: &mut Vec<Anomaly>) {
    let mut written: HashSet<(&str, &str)> = HashSet::new();
    for op in history {
        match &op.kind {
            OpKind::Put { key, value, .. } => {
                written.insert((key, value));
            }
            OpKind::Txn { puts, .. } => {
                for (k, v) in puts {
                    written.insert((k, v));
                }
            }
            _ => {}
        }
    }
    for op in history {
        let reads: Vec<(&str, &Kv)> = match (&op.kind, &op.result) {
            (OpKind::Get { key }, Some(OpResult::Get { kv, .. })) => vec![(key, kv)],
            (_, Some(OpResult::Txn { reads, .. })) => {
                reads.iter().map(|(k, kv)| (k.as_str(), kv)).collect()
            }
            _ => continue,
        };
        for (k, kv) in reads {
            if let Some((v, _)) = kv {
                if !written.contains(&(k, v.as_str())) {
                    out.push(Anomaly {
                        kind: "read of a value never written",
                        detail: op.to_string(),
                    });
                }
            }
        }
    }
}

/// Where an op sits in revision order: a write at its revision, or a read at its header.
#[derive(Clone, Copy, Debug)]
enum Point {
    Write(i64),
    Read(i64),
}

fn point(op: &Op, revs: &HashMap<(String, String), i64>) -> Option<Point> {
    match (&op.kind, &op.result) {
        (_, Some(OpResult::Put { header })) => Some(Point::Write(*header)),
        (
            _,
            Some(OpResult::Txn {
                succeeded: true,
                header,
                ..
            }),
        ) => {
            let writes = matches!(&op.kind, OpKind::Txn { puts, .. } if !puts.is_empty());
            Some(if writes {
                Point::Write(*header)
            } else {
                Point::Read(*header)
            })
        }
        (_, Some(OpResult::Delete { deleted, header })) if *deleted > 0 => {
            Some(Point::Write(*header))
        }
        (_, Some(r)) => Some(Point::Read(r.header())),
        // An unknown write whose value was seen took effect at that revision.
        (OpKind::Put { key, value, .. }, None) => revs
            .get(&(key.clone(), value.clone()))
            .map(|r| Point::Write(*r)),
        (OpKind::Txn { puts, .. }, None) => puts
            .first()
            .and_then(|(k, v)| revs.get(&(k.clone(), v.clone())))
            .map(|r| Point::Write(*r)),
        _ => None,
    }
}

/// Real time agrees with revisions; per client, revisions never go backwards.
fn realtime_revisions(
    history: &[Op],
    revs: &HashMap<(String, String), i64>,
    out: &mut Vec<Anomaly>,
) {
    // Per client, in order.
    let mut last: HashMap<usize, (i64, usize)> = HashMap::new();
    for op in history.iter().filter(|o| o.known()) {
        let h = op.result.as_ref().unwrap().header();
        if let Some((prev, id)) = last.get(&op.client) {
            if h < *prev {
                out.push(Anomaly {
                    kind: "revision went backwards for a client",
                    detail: format!("{}\n  then {op}", history[*id]),
                });
            }
        }
        last.insert(op.client, (h, op.id));
    }
    // Globally: completed-before ⇒ revision order.
    let mut done: Vec<(u64, i64, usize)> = history
        .iter()
        .filter(|o| o.known())
        .filter_map(|o| {
            point(o, revs).map(|p| match p {
                Point::Write(r) | Point::Read(r) => (o.complete, r, o.id),
            })
        })
        .collect();
    done.sort();
    // prefix[i] = (max revision, op) among done[..=i].
    let mut prefix: Vec<(i64, usize)> = Vec::with_capacity(done.len());
    for &(_, r, id) in &done {
        let best = match prefix.last() {
            Some(&(m, mid)) if m >= r => (m, mid),
            _ => (r, id),
        };
        prefix.push(best);
    }
    for op in history {
        let Some(p) = point(op, revs) else { continue };
        let n = done.partition_point(|&(c, _, _)| c < op.invoke);
        if n == 0 {
            continue;
        }
        let (max, by) = prefix[n - 1];
        let bad = match p {
            Point::Write(r) => max >= r,
            Point::Read(r) => max > r,
        };
        if bad {
            out.push(Anomaly {
                kind: "revision order contradicts real time",
                detail: format!(
                    "{}\n  completed before\n  {op}\n  was invoked, yet its revision {max} is later",
                    history[by]
                ),
            });
        }
    }
}

/// A Txn that ran its else branch must have had a failing compare in its own (atomic) reads.
fn txn_branches(history: &[Op], out: &mut Vec<Anomaly>) {
    for op in history {
        if let (
            OpKind::Txn { compares, .. },
            Some(OpResult::Txn {
                succeeded: false,
                reads,
                ..
            }),
        ) = (&op.kind, &op.result)
        {
            let held = compares.iter().all(|(k, want, _)| {
                reads
                    .iter()
                    .find(|(rk, _)| rk == k)
                    .map(|(_, kv)| kv.as_ref().map(|(_, m)| *m).unwrap_or(0) == *want)
                    .unwrap_or(false)
            });
            if held {
                out.push(Anomaly {
                    kind: "txn compare failed though it held",
                    detail: op.to_string(),
                });
            }
        }
    }
}

/// Which lease each value was put with.
fn lease_values(history: &[Op]) -> HashMap<(String, String), i64> {
    history
        .iter()
        .filter_map(|o| match &o.kind {
            OpKind::Put { key, value, lease } if *lease != 0 => {
                Some(((key.clone(), value.clone()), *lease))
            }
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Per-key register model and search.

/// A value id within one key (0 is never used: None is "absent").
type Val = u32;

/// The register: its value and the last known revision written (writes with a known revision
/// must come in revision order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct State {
    val: Option<Val>,
    rev: i64,
}

/// One op of one key.
#[derive(Clone, Debug)]
enum KOp {
    /// A read that returned this, at this header revision (it cannot follow a write with a
    /// later revision).
    Read(Option<Val>, i64),
    /// Put (Some) or delete (None). `deleted`: whether a delete found the key (if known).
    /// `must`: known to have taken effect.
    Write {
        val: Option<Val>,
        rev: Option<i64>,
        deleted: Option<bool>,
        must: bool,
    },
    /// If the value is `expect`, write `new` (None: this key is only compared).
    /// `outcome`: Some(true) took effect, None unknown.
    Cas {
        expect: Option<Val>,
        new: Option<Val>,
        rev: Option<i64>,
        must: bool,
    },
    /// Deletes the key if its value was put with this lease; `must` if acknowledged.
    Revoke { vals: HashSet<Val>, must: bool },
}

#[derive(Clone, Debug)]
struct KeyOp {
    op: usize,
    invoke: u64,
    ret: u64,
    kop: KOp,
}

fn project(
    history: &[Op],
    key: &str,
    revs: &HashMap<(String, String), i64>,
    watched: Option<&HashMap<(String, String), i64>>,
    leases: &HashMap<(String, String), i64>,
) -> (Vec<KeyOp>, Vec<String>) {
    let mut names: Vec<String> = vec![String::new()];
    let mut ids: HashMap<String, Val> = HashMap::new();
    let mut id = |v: &str, names: &mut Vec<String>| -> Val {
        *ids.entry(v.to_string()).or_insert_with(|| {
            names.push(v.to_string());
            (names.len() - 1) as Val
        })
    };
    let rev_of = |v: &str| revs.get(&(key.to_string(), v.to_string())).copied();
    // An unknown write never took effect if a complete watch log does not have it.
    let never =
        |v: &str| watched.is_some_and(|w| !w.contains_key(&(key.to_string(), v.to_string())));
    let mut out = Vec::new();
    for op in history {
        let ret = if op.known() { op.complete } else { u64::MAX };
        let kop = match (&op.kind, &op.result) {
            (OpKind::Get { key: k }, Some(OpResult::Get { kv, header })) if k == key => {
                KOp::Read(kv.as_ref().map(|(v, _)| id(v, &mut names)), *header)
            }
            (OpKind::Get { .. }, _) => continue,
            (OpKind::Put { key: k, value, .. }, res) if k == key => {
                let rev = rev_of(value);
                if res.is_none() && rev.is_none() && never(value) {
                    continue;
                }
                KOp::Write {
                    val: Some(id(value, &mut names)),
                    rev,
                    deleted: None,
                    must: res.is_some() || rev.is_some(),
                }
            }
            (OpKind::Delete { key: k }, res) if k == key => match res {
                Some(OpResult::Delete { deleted, header }) => KOp::Write {
                    val: None,
                    rev: (*deleted > 0).then_some(*header),
                    deleted: Some(*deleted > 0),
                    must: true,
                },
                _ => KOp::Write {
                    val: None,
                    rev: None,
                    deleted: None,
                    must: false,
                },
            },
            (OpKind::Txn { compares, puts }, res) => {
                let cmp = compares.iter().find(|c| c.0 == key);
                let put = puts.iter().find(|p| p.0 == key);
                if cmp.is_none() && put.is_none() {
                    continue;
                }
                let expect = cmp.and_then(|c| c.2.as_deref().map(|v| id(v, &mut names)));
                match res {
                    Some(OpResult::Txn {
                        succeeded: true,
                        header,
                        ..
                    }) => KOp::Cas {
                        expect,
                        new: put.map(|p| id(&p.1, &mut names)),
                        rev: put.map(|_| *header),
                        must: true,
                    },
                    Some(OpResult::Txn {
                        succeeded: false,
                        reads,
                        header,
                    }) => match reads.iter().find(|r| r.0 == key) {
                        Some((_, kv)) => {
                            KOp::Read(kv.as_ref().map(|(v, _)| id(v, &mut names)), *header)
                        }
                        None => continue,
                    },
                    _ => {
                        // Unknown: resolved by its first put's value where the run shows it.
                        let first = puts.first().map(|p| p.1.as_str());
                        let rev = first
                            .and_then(|v| revs.get(&(puts[0].0.clone(), v.to_string())).copied());
                        let gone = puts.first().is_some_and(|(k, v)| {
                            watched.is_some_and(|w| !w.contains_key(&(k.clone(), v.clone())))
                        });
                        if rev.is_none() && (gone || put.is_none()) {
                            continue;
                        }
                        KOp::Cas {
                            expect,
                            new: put.map(|p| id(&p.1, &mut names)),
                            rev: put.and(rev),
                            must: rev.is_some(),
                        }
                    }
                }
            }
            (OpKind::Revoke { lease }, res) => {
                let vals: HashSet<Val> = leases
                    .iter()
                    .filter(|((k, _), l)| k == key && *l == lease)
                    .map(|((_, v), _)| id(v, &mut names))
                    .collect();
                if vals.is_empty() {
                    continue;
                }
                KOp::Revoke {
                    vals,
                    must: res.is_some(),
                }
            }
            _ => continue,
        };
        out.push(KeyOp {
            op: op.id,
            invoke: op.invoke,
            ret,
            kop,
        });
    }
    out.sort_by_key(|o| (o.invoke, o.op));
    (out, names)
}

/// The states `op` can lead to from `s` when it takes effect here (empty: it cannot).
/// An optional op (unknown outcome) never has to be linearized: it is offered only where it
/// changes the state (taking effect as a no-op is the same as not taking effect).
fn step(s: State, op: &KOp) -> Vec<State> {
    let mut next = apply(s, op);
    if !must(op) {
        next.retain(|t| *t != s);
    }
    next
}

fn must(op: &KOp) -> bool {
    match op {
        KOp::Read(..) => true,
        KOp::Write { must, .. } | KOp::Cas { must, .. } | KOp::Revoke { must, .. } => *must,
    }
}

fn apply(s: State, op: &KOp) -> Vec<State> {
    let write = |val: Option<Val>, rev: Option<i64>| -> Option<State> {
        match rev {
            Some(r) if r <= s.rev => None,
            Some(r) => Some(State { val, rev: r }),
            None => Some(State { val, rev: s.rev }),
        }
    };
    let mut next = Vec::with_capacity(2);
    match op {
        KOp::Read(v, header) => {
            if s.val == *v && s.rev <= *header {
                next.push(s);
            }
        }
        KOp::Write {
            val, rev, deleted, ..
        } => {
            if deleted.is_none_or(|d| d == s.val.is_some()) {
                next.extend(write(*val, *rev));
            }
        }
        KOp::Cas {
            expect, new, rev, ..
        } => {
            if s.val == *expect {
                match new {
                    Some(n) => next.extend(write(Some(*n), *rev)),
                    None => next.push(s),
                }
            }
        }
        KOp::Revoke { vals, .. } => {
            if s.val.is_some_and(|v| vals.contains(&v)) {
                next.push(State {
                    val: None,
                    rev: s.rev,
                });
            } else {
                next.push(s);
            }
        }
    }
    next
}

enum Search {
    Ok(u64),
    OutOfBudget(u64),
    Fail(u64, Stuck),
}

/// Where the search got furthest before failing.
struct Stuck {
    linearized: usize,
    total: usize,
    state: State,
    /// The ops that were candidates there (indices into the key's ops).
    candidates: Vec<usize>,
}

impl Stuck {
    fn render(&self, history: &[Op], (ops, names): &(Vec<KeyOp>, Vec<String>)) -> String {
        let val = |v: Option<Val>| match v {
            Some(v) => names[v as usize].clone(),
            None => "<absent>".into(),
        };
        let mut s = format!(
            "linearized at most {} of {} required ops; then the value was {} (last known write revision {}) and none of these fits:",
            self.linearized,
            self.total,
            val(self.state.val),
            self.state.rev
        );
        for &c in self.candidates.iter().take(8) {
            s.push_str(&format!("\n    {}", history[ops[c].op]));
        }
        s
    }
}

fn search(projected: &(Vec<KeyOp>, Vec<String>)) -> Search {
    let ops = &projected.0;
    let n = ops.len();
    let musts = ops.iter().filter(|o| must(&o.kop)).count();
    if musts == 0 {
        return Search::Ok(0);
    }
    // Zobrist keys for the linearized set.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ n as u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let zob: Vec<u128> = (0..n)
        .map(|_| ((rnd() as u128) << 64) | rnd() as u128)
        .collect();
    let mut lin = vec![false; n];
    let mut count = 0usize; // must-ops linearized
    let mut hash: u128 = 0;
    let mut memo: HashSet<(u128, State)> = HashSet::new();
    let mut steps = 0u64;

    // The ops that may be linearized next: pending, invoked before every pending op returned.
    // `lo`: the first pending required op (everything required before it is linearized);
    // optional ops may stay pending forever, so they are kept apart.
    let is_must: Vec<bool> = ops.iter().map(|o| must(&o.kop)).collect();
    let optional: Vec<usize> = (0..n).filter(|&i| !is_must[i]).collect();
    let advance = |mut lo: usize, lin: &[bool]| -> usize {
        while lo < n && (lin[lo] || !is_must[lo]) {
            lo += 1;
        }
        lo
    };
    let candidates = |lin: &[bool], lo: usize| -> Vec<usize> {
        let mut min_ret = u64::MAX;
        let mut pending: Vec<usize> = optional
            .iter()
            .copied()
            .take_while(|&i| i < lo)
            .filter(|&i| !lin[i])
            .collect();
        for (i, o) in ops.iter().enumerate().skip(lo) {
            if lin[i] {
                continue;
            }
            if o.invoke > min_ret {
                break;
            }
            min_ret = min_ret.min(o.ret);
            pending.push(i);
        }
        pending.retain(|&i| ops[i].invoke <= min_ret);
        pending
    };
    let expand = |s: State, lin: &[bool], lo: usize| -> (Vec<(usize, State)>, Vec<usize>) {
        let cands = candidates(lin, lo);
        let mut choices = Vec::new();
        // Reads and other ops that leave the state alone first: cheapest to confirm.
        for &c in &cands {
            for t in step(s, &ops[c].kop) {
                choices.push((c, t));
            }
        }
        choices.sort_by_key(|(_, t)| *t != s);
        (choices, cands)
    };

    struct Frame {
        lo: usize,
        choices: Vec<(usize, State)>,
        next: usize,
        chosen: Option<usize>,
    }
    let s0 = State { val: None, rev: 0 };
    let lo0 = advance(0, &lin);
    let (choices, cands) = expand(s0, &lin, lo0);
    let mut best = Stuck {
        linearized: 0,
        total: musts,
        state: s0,
        candidates: cands,
    };
    let mut frames = vec![Frame {
        lo: lo0,
        choices,
        next: 0,
        chosen: None,
    }];
    while let Some(top) = frames.last_mut() {
        if let Some(c) = top.chosen.take() {
            lin[c] = false;
            count -= must(&ops[c].kop) as usize;
            hash ^= zob[c];
        }
        if top.next == top.choices.len() {
            frames.pop();
            continue;
        }
        let (c, t) = top.choices[top.next];
        top.next += 1;
        steps += 1;
        if steps > BUDGET {
            return Search::OutOfBudget(steps);
        }
        lin[c] = true;
        count += must(&ops[c].kop) as usize;
        hash ^= zob[c];
        if !memo.insert((hash, t)) {
            lin[c] = false;
            count -= must(&ops[c].kop) as usize;
            hash ^= zob[c];
            continue;
        }
        top.chosen = Some(c);
        if count == musts {
            return Search::Ok(steps);
        }
        let lo = advance(top.lo, &lin);
        let (choices, cands) = expand(t, &lin, lo);
        if choices.is_empty() && count > best.linearized {
            best = Stuck {
                linearized: count,
                total: musts,
                state: t,
                candidates: cands,
            };
        }
        frames.push(Frame {
            lo,
            choices,
            next: 0,
            chosen: None,
        });
    }
    Search::Fail(steps, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (succeeded, header, else-branch read).
    type CasResult<'a> = (bool, i64, Option<(&'a str, i64)>);

    /// A tiny history builder: ops on one timeline, times in ms.
    struct H(Vec<Op>);

    impl H {
        fn new() -> H {
            H(Vec::new())
        }
        fn op(mut self, client: usize, t: (u64, u64), kind: OpKind, result: Option<OpResult>) -> H {
            let id = self.0.len();
            self.0.push(Op {
                id,
                client,
                member: 0,
                invoke: t.0 * 1_000_000,
                complete: t.1 * 1_000_000,
                kind,
                error: if result.is_none() {
                    "timeout".into()
                } else {
                    String::new()
                },
                result,
            });
            self
        }
        fn put(self, c: usize, t: (u64, u64), k: &str, v: &str, rev: Option<i64>) -> H {
            self.op(
                c,
                t,
                OpKind::Put {
                    key: k.into(),
                    value: v.into(),
                    lease: 0,
                },
                rev.map(|header| OpResult::Put { header }),
            )
        }
        fn get(self, c: usize, t: (u64, u64), k: &str, kv: Option<(&str, i64)>, header: i64) -> H {
            self.op(
                c,
                t,
                OpKind::Get { key: k.into() },
                Some(OpResult::Get {
                    kv: kv.map(|(v, m)| (v.to_string(), m)),
                    header,
                }),
            )
        }
        fn del(self, c: usize, t: (u64, u64), k: &str, res: Option<(i64, i64)>) -> H {
            self.op(
                c,
                t,
                OpKind::Delete { key: k.into() },
                res.map(|(deleted, header)| OpResult::Delete { deleted, header }),
            )
        }
        #[allow(clippy::too_many_arguments)]
        fn cas(
            self,
            c: usize,
            t: (u64, u64),
            k: &str,
            want: (i64, Option<&str>),
            new: &str,
            res: Option<CasResult>,
        ) -> H {
            self.op(
                c,
                t,
                OpKind::Txn {
                    compares: vec![(k.into(), want.0, want.1.map(String::from))],
                    puts: vec![(k.into(), new.into())],
                },
                res.map(|(succeeded, header, read)| OpResult::Txn {
                    succeeded,
                    header,
                    reads: if succeeded {
                        vec![]
                    } else {
                        vec![(k.into(), read.map(|(v, m)| (v.to_string(), m)))]
                    },
                }),
            )
        }
        fn get_op(
            &self,
            client: usize,
            (invoke, complete): (u64, u64),
            k: &str,
            kv: Kv,
            header: i64,
        ) -> Op {
            Op {
                id: 0,
                client,
                member: 0,
                invoke,
                complete,
                kind: OpKind::Get { key: k.into() },
                result: Some(OpResult::Get { kv, header }),
                error: String::new(),
            }
        }
        fn check(&self) -> Verdict {
            check(&self.0, None)
        }
    }

    fn ok(h: H) {
        let v = h.check();
        assert!(v.anomalies.is_empty(), "{:#?}", v.anomalies);
        assert!(v.inconclusive.is_empty());
    }

    fn bad(h: H, kind: &str) {
        let v = h.check();
        assert!(
            v.anomalies.iter().any(|a| a.kind == kind),
            "expected {kind}, got {:#?}",
            v.anomalies
        );
    }

    #[test]
    fn sequential_and_concurrent_histories_are_accepted() {
        ok(H::new()
            .get(0, (0, 1), "x", None, 1)
            .put(0, (2, 3), "x", "a", Some(2))
            .get(1, (4, 5), "x", Some(("a", 2)), 2)
            .del(0, (6, 7), "x", Some((1, 3)))
            .get(1, (8, 9), "x", None, 3));
        // A read concurrent with a put may see either value.
        ok(H::new()
            .put(0, (0, 1), "x", "a", Some(2))
            .put(0, (2, 10), "x", "b", Some(3))
            .get(1, (3, 4), "x", Some(("a", 2)), 2)
            .get(2, (5, 6), "x", Some(("b", 3)), 3)
            .get(1, (7, 8), "x", Some(("b", 3)), 3));
    }

    #[test]
    fn unknown_writes_may_or_may_not_take_effect() {
        // Never seen: it did not happen (or happened and was overwritten).
        ok(H::new()
            .put(0, (0, 1), "x", "a", Some(2))
            .put(1, (2, 3), "x", "lost?", None)
            .get(0, (4, 5), "x", Some(("a", 2)), 2));
        // Seen long after the client gave up: it took effect late.
        ok(H::new()
            .put(0, (0, 1), "x", "a", Some(2))
            .put(1, (2, 3), "x", "late", None)
            .get(0, (4, 5), "x", Some(("a", 2)), 2)
            .get(0, (6, 7), "x", Some(("late", 3)), 3));
        // An unknown delete, then the key is gone.
        ok(H::new()
            .put(0, (0, 1), "x", "a", Some(2))
            .del(1, (2, 3), "x", None)
            .get(0, (4, 5), "x", Some(("a", 2)), 2)
            .get(0, (6, 7), "x", None, 3));
    }

    #[test]
    fn stale_read_is_rejected() {
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .put(0, (2, 3), "x", "b", Some(3))
                .get(1, (4, 5), "x", Some(("a", 2)), 2),
            "not linearizable",
        );
    }

    #[test]
    fn lost_write_is_rejected() {
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .get(1, (2, 3), "x", None, 2),
            "not linearizable",
        );
    }

    #[test]
    fn value_never_written_is_rejected() {
        let h =
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .get(1, (2, 3), "x", Some(("ghost", 2)), 2);
        bad(h, "read of a value never written");
        let h =
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .get(1, (2, 3), "x", Some(("ghost", 2)), 2);
        bad(h, "not linearizable");
    }

    #[test]
    fn write_seen_then_unseen_is_rejected() {
        // An unknown put is seen, then a later read no longer sees it (nobody overwrote it).
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .put(1, (2, 3), "x", "b", None)
                .get(2, (4, 5), "x", Some(("b", 3)), 3)
                .get(2, (6, 7), "x", Some(("a", 2)), 3),
            "not linearizable",
        );
    }

    #[test]
    fn cas_anomalies_are_rejected() {
        // Two CAS from the same expected value both succeed.
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .cas(1, (2, 3), "x", (2, Some("a")), "b", Some((true, 3, None)))
                .cas(2, (4, 5), "x", (2, Some("a")), "c", Some((true, 4, None))),
            "not linearizable",
        );
        // A CAS fails though the value matched (its own read says so).
        bad(
            H::new().put(0, (0, 1), "x", "a", Some(2)).cas(
                1,
                (2, 3),
                "x",
                (2, Some("a")),
                "b",
                Some((false, 2, Some(("a", 2)))),
            ),
            "txn compare failed though it held",
        );
        // A CAS succeeds against a value that was already overwritten.
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .put(0, (2, 3), "x", "b", Some(3))
                .cas(1, (4, 5), "x", (2, Some("a")), "c", Some((true, 4, None))),
            "not linearizable",
        );
        // A correct CAS chain is fine, with an unknown CAS that took effect.
        ok(H::new()
            .put(0, (0, 1), "x", "a", Some(2))
            .cas(1, (2, 3), "x", (2, Some("a")), "b", Some((true, 3, None)))
            .cas(
                2,
                (4, 5),
                "x",
                (2, Some("a")),
                "c",
                Some((false, 3, Some(("b", 3)))),
            )
            .cas(2, (6, 7), "x", (3, Some("b")), "d", None)
            .get(0, (8, 9), "x", Some(("d", 4)), 4));
    }

    #[test]
    fn revisions_against_real_time_are_checked() {
        // A read after a completed write reports an older header revision.
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(5))
                .get(1, (2, 3), "y", None, 4),
            "revision order contradicts real time",
        );
        // A client's revisions go backwards.
        bad(
            H::new()
                .get(0, (0, 1), "y", None, 7)
                .get(0, (2, 3), "y", None, 6),
            "revision went backwards for a client",
        );
        // One value at two revisions.
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .get(1, (2, 3), "x", Some(("a", 3)), 3),
            "value at two revisions",
        );
    }

    #[test]
    fn writes_take_effect_in_revision_order() {
        // As a plain register this is fine (b could take effect after c); with revisions it is
        // not: b (revision 3) cannot follow c (revision 4).
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .put(1, (2, 3), "x", "b", None)
                .put(0, (4, 5), "x", "c", Some(4))
                .get(2, (6, 7), "x", Some(("c", 4)), 4)
                .get(2, (8, 9), "x", Some(("b", 3)), 4),
            "not linearizable",
        );
        // A read cannot be placed after a write with a later revision than its header.
        bad(
            H::new()
                .put(0, (0, 1), "x", "a", Some(2))
                .put(1, (2, 20), "x", "b", Some(3))
                .get(2, (4, 5), "x", Some(("b", 3)), 3)
                .get(2, (6, 7), "x", Some(("b", 3)), 2),
            "not linearizable",
        );
    }

    #[test]
    fn a_complete_watch_log_drops_unknown_writes_that_never_happened() {
        let mut h = H::new().put(0, (0, 1), "x", "a", Some(2));
        for i in 0..200u64 {
            h = h.put(
                1 + i as usize % 4,
                (2 + i, 3 + i),
                "x",
                &format!("u{i}"),
                None,
            );
        }
        let h = h.get(0, (300, 301), "x", Some(("a", 2)), 2);
        let mut w = HashMap::new();
        w.insert(("x".to_string(), "a".to_string()), 2);
        let v = check(&h.0, Some(&w));
        assert!(v.anomalies.is_empty(), "{:#?}", v.anomalies);
        assert!(
            v.steps < 10,
            "unknown writes that never happened are not searched"
        );
    }

    /// A long correct history (6 clients, overlapping ops, 5% unknown outcomes, some of which
    /// took effect) is accepted quickly: the search is about linear when revisions pin writes.
    #[test]
    fn a_long_correct_history_is_checked_quickly() {
        let mut h = H::new();
        let (mut val, mut rev): (Option<(String, i64)>, i64) = (None, 1);
        let mut x = 12345u64;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for i in 0..20_000u64 {
            let (inv, done) = (i * 10, i * 10 + 5 + rnd(30));
            let c = (i % 6) as usize;
            let mut op = match rnd(3) {
                0 => h.get_op(c, (inv, done), "x", val.clone(), rev),
                _ => {
                    let unknown = rnd(20) == 0;
                    let applied = !unknown || rnd(2) == 0;
                    let v = format!("v{i}");
                    if applied {
                        rev += 1;
                        val = Some((v.clone(), rev));
                    }
                    Op {
                        id: 0,
                        client: c,
                        member: 0,
                        invoke: inv,
                        complete: done,
                        kind: OpKind::Put {
                            key: "x".into(),
                            value: v,
                            lease: 0,
                        },
                        result: (!unknown).then_some(OpResult::Put { header: rev }),
                        error: String::new(),
                    }
                }
            };
            op.id = h.0.len();
            h.0.push(op);
        }
        let started = std::time::Instant::now();
        let v = h.check();
        assert!(v.anomalies.is_empty(), "{:#?}", &v.anomalies[..1]);
        assert!(v.inconclusive.is_empty());
        assert!(v.steps < 200_000, "{} steps", v.steps);
        eprintln!(
            "20000 ops checked in {:?}, {} steps",
            started.elapsed(),
            v.steps
        );
    }

    #[test]
    fn many_concurrent_unknowns_stay_cheap() {
        let mut h = H::new();
        for i in 0..40u64 {
            h = h.put(
                i as usize % 5,
                (i * 10, i * 10 + 2),
                "x",
                &format!("v{i}"),
                None,
            );
            h = h.del(5, (i * 10 + 3, i * 10 + 4), "x", None);
        }
        h = h.get(0, (1000, 1001), "x", Some(("v7", 9)), 100);
        let v = h.check();
        assert!(v.anomalies.is_empty(), "{:#?}", v.anomalies);
        assert!(v.inconclusive.is_empty());
    }
}
