//! The recipes' own errors. etcd's lock and election servers return the client library's
//! plain Go errors, which gRPC sends with code `Unknown` and the error text as the message;
//! clients match on those texts, so they are byte-identical to etcd's.

use tonic::{Code, Status};

use crate::error::EtcdError;

/// Why a lock or election call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    /// A KV or lease error from the steps the recipe runs (sent with its own code).
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The waiter's key vanished (its lease expired or was revoked) before it got the lock:
    /// etcd's `concurrency.ErrSessionExpired`.
    #[error("mutex: session is expired")]
    SessionExpired,
    /// The caller's leader key is gone or belongs to another campaign:
    /// etcd's `concurrency.ErrElectionNotLeader`.
    #[error("election: not leader")]
    NotLeader,
    /// Nobody campaigns on the name: etcd's `concurrency.ErrElectionNoLeader`.
    #[error("election: no leader")]
    NoLeader,
    /// Proclaim or Resign without a leader key: etcd's `v3election.ErrMissingLeaderKey`.
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
}

impl RecipeError {
    /// The gRPC code etcd sends with this error.
    pub fn code(&self) -> Code {
        match self {
            RecipeError::Etcd(e) => e.code(),
            _ => Code::Unknown,
        }
    }
}

impl From<RecipeError> for Status {
    fn from(e: RecipeError) -> Status {
        match e {
            RecipeError::Etcd(e) => e.into(),
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_etcd() {
        let cases = [
            (RecipeError::SessionExpired, "mutex: session is expired"),
            (RecipeError::NotLeader, "election: not leader"),
            (RecipeError::NoLeader, "election: no leader"),
            (
                RecipeError::MissingLeaderKey,
                "\"leader\" field must be provided",
            ),
        ];
        for (e, msg) in cases {
            let s: Status = e.into();
            assert_eq!(s.code(), Code::Unknown);
            assert_eq!(s.message(), msg);
        }
        let s: Status = RecipeError::Etcd(EtcdError::LeaseNotFound).into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
    }
}
