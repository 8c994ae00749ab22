//! Raft consensus: the raft-rs node, its log storage over the WAL, and peer transport.

pub mod logger;
pub mod node;
pub mod peer_service;
pub mod storage;
pub mod transport;

pub use node::{ApplyTask, Node, NodeMsg, NodeParts, ProgressInfo, RaftStatus};
pub use storage::{RaftStorage, Restored};
