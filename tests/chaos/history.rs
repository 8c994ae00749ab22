//! The recorded history: what each client asked, when, and what it got back.
//!
//! Every written value is unique in a run (`<client>.<seq>`), so a value names the write that
//! produced it; etcd's revisions then pin every read to exactly one write (a read returning
//! `mod_revision` M saw the write with revision M).

use std::fmt;

/// A key's value as a read returned it: (value, mod_revision).
pub type Kv = Option<(String, i64)>;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// A linearizable Range of one key.
    Get { key: String },
    /// A Put (lease 0 = none).
    Put {
        key: String,
        value: String,
        lease: i64,
    },
    /// A DeleteRange of one key.
    Delete { key: String },
    /// A Txn: if every `compares` key has the given mod_revision (0 = absent; the value the client
    /// believes that revision holds is kept beside it), put `puts`; else get every compared key.
    /// A single-key CAS is a Txn with one compare and one put.
    Txn {
        compares: Vec<(String, i64, Option<String>)>,
        puts: Vec<(String, String)>,
    },
    /// LeaseRevoke: deletes every key whose last put was with this lease.
    Revoke { lease: i64 },
}

/// What came back (only for operations that completed).
#[derive(Clone, Debug, PartialEq)]
pub enum OpResult {
    /// Get: the key (None = absent) and the header revision.
    Get { kv: Kv, header: i64 },
    /// Put: the header revision (= the put's revision).
    Put { header: i64 },
    /// Delete: how many keys went, and the header revision.
    Delete { deleted: i64, header: i64 },
    /// Txn: which branch ran, the header revision, and the else-branch reads (key, kv).
    Txn {
        succeeded: bool,
        header: i64,
        reads: Vec<(String, Kv)>,
    },
    /// Revoke: the header revision.
    Revoke { header: i64 },
}

impl OpResult {
    /// The response header revision.
    pub fn header(&self) -> i64 {
        match self {
            OpResult::Get { header, .. }
            | OpResult::Put { header }
            | OpResult::Delete { header, .. }
            | OpResult::Txn { header, .. }
            | OpResult::Revoke { header } => *header,
        }
    }
}

/// One operation: invoked at `invoke`, completed at `complete` with `result`, or never known
/// (`result == None`: a timeout or an unavailable member; it may or may not have taken effect,
/// at any time after `invoke`).
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// Index in the history.
    pub id: usize,
    /// Which client (a client is sequential).
    pub client: usize,
    /// Which member it talked to.
    pub member: usize,
    /// Nanoseconds since the run started.
    pub invoke: u64,
    /// Nanoseconds since the run started (for unknown outcomes: when the client gave up).
    pub complete: u64,
    /// The request.
    pub kind: OpKind,
    /// The response, or None if unknown.
    pub result: Option<OpResult>,
    /// The error text of an unknown outcome.
    pub error: String,
}

impl Op {
    /// Whether the outcome is known.
    pub fn known(&self) -> bool {
        self.result.is_some()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        write!(
            f,
            "#{} c{}@m{} [{:.1}ms..{:.1}ms] ",
            self.id,
            self.client,
            self.member + 1,
            ms(self.invoke),
            ms(self.complete)
        )?;
        match &self.kind {
            OpKind::Get { key } => write!(f, "get {key}")?,
            OpKind::Put { key, value, lease } if *lease != 0 => {
                write!(f, "put {key}={value} lease={lease:x}")?
            }
            OpKind::Put { key, value, .. } => write!(f, "put {key}={value}")?,
            OpKind::Delete { key } => write!(f, "delete {key}")?,
            OpKind::Txn { compares, puts } => {
                write!(f, "txn if")?;
                for (k, r, v) in compares {
                    write!(f, " mod({k})=={r}({v:?})")?;
                }
                write!(f, " then")?;
                for (k, v) in puts {
                    write!(f, " put {k}={v}")?;
                }
            }
            OpKind::Revoke { lease } => write!(f, "revoke {lease:x}")?,
        }
        match &self.result {
            None => write!(f, " -> unknown ({})", self.error),
            Some(OpResult::Get { kv, header }) => write!(f, " -> {kv:?} @{header}"),
            Some(OpResult::Put { header }) => write!(f, " -> ok @{header}"),
            Some(OpResult::Delete { deleted, header }) => {
                write!(f, " -> deleted {deleted} @{header}")
            }
            Some(OpResult::Txn {
                succeeded,
                header,
                reads,
            }) => write!(f, " -> succeeded={succeeded} @{header} reads={reads:?}"),
            Some(OpResult::Revoke { header }) => write!(f, " -> ok @{header}"),
        }
    }
}

/// One watch event as a watcher received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The event's revision (its kv's mod_revision).
    pub revision: i64,
    /// Put (true) or delete (false).
    pub put: bool,
    /// The key.
    pub key: String,
    /// The value (empty for deletes).
    pub value: String,
    /// The previous value (None when absent or not sent): (value, mod_revision).
    pub prev: Kv,
}

/// One watch response (its events share one reply).
#[derive(Clone, Debug, Default)]
pub struct WatchReply {
    /// The events.
    pub events: Vec<WatchEvent>,
    /// Set when the server canceled the watch (why).
    pub canceled: Option<String>,
}

/// Everything one watcher saw; a watcher that reconnects continues from its last revision + 1.
#[derive(Clone, Debug, Default)]
pub struct WatchLog {
    /// Which member it watched (the name, for reports).
    pub member: usize,
    /// Where it started.
    pub start_revision: i64,
    /// Every reply with events, in arrival order.
    pub replies: Vec<WatchReply>,
    /// How many times the stream had to be re-created.
    pub reconnects: usize,
}
