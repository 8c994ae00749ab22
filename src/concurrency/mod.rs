//! Server-side versions of etcd's `clientv3/concurrency` recipes, which back the `Lock` and
//! `Election` gRPC services.
//!
//! etcd serves those services by running its client recipes against itself (an in-process
//! client): a lock or a campaign is a key `name/<lease id hex>` created in one txn, and its
//! holder is whichever key under `name/` has the lowest create revision. Waiting is done with
//! watches on the keys created before one's own. We run the same steps through
//! [`EtcdServer`](crate::server::EtcdServer) directly, so every member (followers included)
//! serves them with the same linearizable reads and the same revisions etcd would produce.

pub mod cleanup;
pub mod election;
pub mod keys;
pub mod mutex;
pub mod observe;
pub mod session;
pub mod wait;
