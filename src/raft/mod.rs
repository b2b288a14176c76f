//! raft-rs integration (DESIGN §3): the write-ahead log store, the node driver
//! (tick / Ready loop) with its apply worker, the gRPC transport, compaction
//! and membership. It knows nothing of time series.

pub(crate) mod apply;
pub mod bootstrap;
pub(crate) mod compaction;
pub mod config;
pub mod error;
pub mod fsm;
pub mod handle;
pub mod log_store;
pub mod membership;
pub(crate) mod peer_sources;
pub mod peer_tls;
pub mod persist;
pub(crate) mod read_index;
pub mod ready_loop;
pub mod repair;
pub mod scrub;
pub(crate) mod sender_check;
pub(crate) mod service;
pub mod slog_bridge;
pub mod snapshot_source;
pub mod status;
pub(crate) mod transport;
pub mod wal;

pub use config::NodeConfig;
pub use error::RaftError;
pub use fsm::{NodeFsm, ReplicatedStateMachine};
pub use handle::{Applied, NodeHandle, ReadConsistency};
pub use log_store::{LogStore, RaftStorage, SnapshotProvider, WalLogStore};
pub use membership::MembershipChange;
pub use ready_loop::RaftCounters;
pub use status::Status;
pub use transport::client as transport_client;
