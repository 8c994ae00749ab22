//! ferrocd: an etcd v3 compatible, Raft-replicated key-value server.
//!
//! The layering follows etcd's server: `api` (thin gRPC/HTTP adapters) → `server` (propose,
//! wait, ReadIndex) → `raft` (raft-rs node, WAL-backed log) → `apply` (the one writer) →
//! `mvcc` / `backend` (revisions over an LSM-tree, fjall). See `DESIGN.md` in the shared folder for the map.
#![warn(missing_docs)]

pub mod api;
pub mod apply;
pub mod backend;
pub mod concurrency;
pub mod config;
pub mod error;
#[cfg(debug_assertions)]
pub mod fault;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod proto;
pub mod raft;
pub mod schema;
pub mod server;
pub mod snap;
pub mod txn;
pub mod wait;
pub mod wal;
