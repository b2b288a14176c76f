//! raft-rs integration (DESIGN §3): the sled log store, the node driver
//! (tick / Ready loop) with its apply worker, the gRPC transport, compaction
//! and membership. It knows nothing of time series.

pub mod error;
pub mod log_store;
pub mod slog_bridge;

pub use error::RaftError;
pub use log_store::{LogStore, RaftStorage, SledLogStore, SnapshotProvider};
