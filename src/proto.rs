//! Generated protobuf types (from `proto/*.proto`, compiled in `build.rs` without `protoc`).
#![allow(missing_docs, clippy::all)]

/// The snapshot meta table messages of DESIGN §2.
pub mod snapshot {
    tonic::include_proto!("raftsnap.snapshot");
}

/// The snapshot file service and the install payload (DESIGN §3).
pub mod file {
    tonic::include_proto!("raftsnap.file");
}

/// Node-to-node RPCs.
pub mod raft {
    tonic::include_proto!("raftsnap.raft");
}
