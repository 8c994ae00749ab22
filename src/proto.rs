//! Generated protobuf types and gRPC stubs: etcd's v3 API (wire-identical to etcd 3.5) and
//! ferrocd's internal messages. Sibling modules so cross-package references resolve.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// etcd's `mvccpb` package: KeyValue and Event.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
/// etcd's `authpb` package: users, roles, permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}
/// etcd's `etcdserverpb` package: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
/// etcd's `v3lockpb` package: the Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
/// etcd's `v3electionpb` package: the Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
/// ferrocd's internal messages (raft log entries, WAL metadata, members).
pub mod ferrocdpb {
    tonic::include_proto!("ferrocdpb");
}
