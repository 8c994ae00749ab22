//! How raft messages leave this member.
//!
//! The raft loop hands every outgoing batch to a `Transport`. A single-member cluster has no
//! peers, so its transport only has to notice (and log) a message addressed elsewhere, which
//! would mean the member table and raft disagree. The peer gRPC transport for multi-member
//! clusters implements the same trait.

use raft::prelude::Message;

/// Delivers raft messages to peers. Must not block the raft loop: queue and return.
pub trait Transport: Send {
    /// Sends a batch of messages (in order per destination).
    fn send(&self, msgs: Vec<Message>);
}

/// The transport of a cluster whose only voter is this member.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            tracing::warn!(to = format!("{:x}", m.to), kind = ?m.get_msg_type(), "raft message to an unknown peer dropped");
        }
    }
}
