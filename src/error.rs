//! Every error a client can see, with etcd 3.5's exact message and gRPC code.
//!
//! Clients (etcdctl, clientv3, python-etcd3) match on these strings and codes to decide whether
//! to retry, so they must be byte-identical to etcd's. Internal failures that have no etcd
//! equivalent are mapped onto etcd's closest error at the edge (`Internal`).

use tonic::{Code, Status};

/// An error as etcd would report it to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// A request named no key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More txn operations than `--max-txn-ops`.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Two writes of one key in one txn branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A sort order or target outside the enum.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// The encoded request is larger than `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A read or compaction below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read or compaction above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// The backend passed `--quota-backend-bytes`.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// Too many requests are queued behind the applier.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// A lease id that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease id that is already granted.
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    /// A TTL above etcd's maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A member id that is not in the cluster.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A strict reconfiguration check failed: too few members have started.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Promotion of a member that is not a learner.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Promotion of a learner that lags the leader.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// More learners than etcd allows.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// MoveLeader to a member that cannot lead.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// MoveLeader did not finish in time.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    /// Peer URLs that do not parse.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// A member id that is already in the cluster.
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    /// A peer URL that another member already uses.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    /// The request must be served by the leader and this member is not it.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The member currently knows of no leader.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Leadership changed while the request was in flight.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The request was not applied within the request timeout.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The server is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A membership change would leave the cluster without a working quorum.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// A corrupt member was detected.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// The caller's role does not allow the request.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// The token is unknown or expired.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Auth was asked for while it is disabled.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// The requested feature is not supported by this cluster version.
    #[error("etcdserver: not capable")]
    NotCapable,
    /// A lock waiter's key vanished (its lease expired or was revoked) before it got the
    /// lock: etcd's `concurrency.ErrSessionExpired`. etcd's lock server returns the client
    /// library's plain error, so gRPC sends it with code Unknown and this exact text.
    #[error("mutex: session is expired")]
    SessionExpired,
    /// The caller's election key is gone or belongs to another campaign
    /// (`concurrency.ErrElectionNotLeader`, code Unknown like etcd).
    #[error("election: not leader")]
    ElectionNotLeader,
    /// Nobody campaigns on the name (`concurrency.ErrElectionNoLeader`, code Unknown).
    #[error("election: no leader")]
    ElectionNoLeader,
    /// Proclaim or Resign without a leader key (`v3election.ErrMissingLeaderKey`, code Unknown).
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    /// A gRPC message over the receive limit (`--max-request-bytes` + 512 KiB). The text is
    /// grpc-go's, which etcd's server sends before its own code ever sees the request.
    #[error("grpc: received message larger than max ({got} vs. {max})")]
    MessageTooLarge {
        /// The message's length from its frame header.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// An unexpected server-side failure; the text says what happened.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl EtcdError {
    /// The gRPC code etcd sends with this error; clients decide on retries by it.
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | RequestTooLarge | MemberBadUrls => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests | MessageTooLarge { .. } => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist
            | MemberExist
            | PeerUrlExist
            | NotLeader
            | AuthNotEnabled
            | NotEnoughStartedMembers
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | BadLeaderTransferee => Code::FailedPrecondition,
            NoLeader
            | LeaderChanged
            | Timeout
            | Stopped
            | Unhealthy
            | NotCapable
            | LeaderTransferTimeout => Code::Unavailable,
            Corrupt => Code::DataLoss,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            SessionExpired | ElectionNotLeader | ElectionNoLeader | MissingLeaderKey
            | Internal(_) => Code::Unknown,
        }
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// Why the server could not start or had to stop: shown to the operator, so each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The write-ahead log could not be read or written.
    #[error("wal: {0}")]
    Wal(#[from] crate::wal::WalError),
    /// The backend (fjall) failed.
    #[error("backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    /// The MVCC store could not be rebuilt from the backend.
    #[error("mvcc: {0}")]
    Mvcc(#[from] crate::mvcc::MvccError),
    /// Raft refused its configuration or state.
    #[error("raft: {0}")]
    Raft(String),
    /// A file or directory could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The path involved.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listener could not be bound (port in use, bad address).
    #[error(
        "cannot listen on {url}: {source} (is another etcd or ferrocd already running there?)"
    )]
    Listen {
        /// The URL from the flags.
        url: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The on-disk state contradicts itself or the flags.
    #[error("{0}")]
    State(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_etcd() {
        let cases = [
            (
                EtcdError::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                EtcdError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                EtcdError::FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                EtcdError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                EtcdError::LeaseExist,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                EtcdError::LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                EtcdError::SessionExpired,
                Code::Unknown,
                "mutex: session is expired",
            ),
            (
                EtcdError::ElectionNotLeader,
                Code::Unknown,
                "election: not leader",
            ),
            (
                EtcdError::ElectionNoLeader,
                Code::Unknown,
                "election: no leader",
            ),
            (
                EtcdError::MissingLeaderKey,
                Code::Unknown,
                "\"leader\" field must be provided",
            ),
            (
                EtcdError::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                EtcdError::NoLeader,
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                EtcdError::MessageTooLarge {
                    got: 2621450,
                    max: 2097152,
                },
                Code::ResourceExhausted,
                "grpc: received message larger than max (2621450 vs. 2097152)",
            ),
            (
                EtcdError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
        ];
        for (e, code, msg) in cases {
            let s: Status = e.clone().into();
            assert_eq!(s.code(), code, "{e:?}");
            assert_eq!(s.message(), msg, "{e:?}");
        }
    }
}
