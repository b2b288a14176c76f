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

/// InfluxDB 1.x's metastore protobuf (`meta.Data`, proto2).
pub mod meta {
    tonic::include_proto!("meta");
}

/// InfluxDB 1.x's portable backup metadata (`PortableData`, proto2).
pub mod backup_util {
    tonic::include_proto!("backup_util");
}

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn proto2_required_fields_are_on_the_wire_even_at_zero() {
        let d = super::meta::Data::default();
        let b = d.encode_to_vec();
        // Term(1), Index(2), ClusterID(3), MaxNodeID(7), MaxShardGroupID(8),
        // MaxShardID(9): six varint fields of 0.
        assert_eq!(
            b,
            vec![0x08, 0, 0x10, 0, 0x18, 0, 0x38, 0, 0x40, 0, 0x48, 0]
        );
    }
}

/// Raft commands of the time-series state machine.
pub mod tsdb {
    tonic::include_proto!("raftsnap.tsdb");
}
