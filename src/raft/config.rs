//! Node configuration: identity, addresses, raft timing and every snapshot
//! knob of DESIGN §5 with its default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The configuration of one raft node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (non-zero, unique).
    pub id: u64,
    /// Data directory (`raft/`, `snapshots/`, the state machine's own files).
    pub data_dir: PathBuf,
    /// The gRPC address other nodes reach this one at (`host:port`).
    pub advertise_addr: String,
    /// The initial cluster (id → address) when bootstrapping; empty to join
    /// an existing cluster (the leader adds this node).
    pub peers: BTreeMap<u64, String>,
    /// Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before an election.
    pub election_tick: usize,
    /// Ticks between heartbeats.
    pub heartbeat_tick: usize,
    /// Applied entries since the last snapshot that trigger one (10 000).
    pub snapshot_log_gap: u64,
    /// Raft log bytes since the last snapshot that trigger one (256 MiB).
    pub snapshot_log_bytes: u64,
    /// Snapshot timer (3600 s; zero = off). The first firing is random in
    /// [interval/2, interval] so that nodes do not save together.
    pub snapshot_interval: Duration,
    /// A save is a no-op with fewer new entries than this (1).
    pub snapshot_min_gap: u64,
    /// Entries kept behind a snapshot when compacting (5 000).
    pub trailing_logs: u64,
    /// Snapshots kept (1).
    pub snapshot_retain: usize,
    /// Files fetched at once by an install (4).
    pub install_parallel_files: usize,
    /// Chunk size of an install (1 MiB).
    pub install_chunk_bytes: u32,
    /// Bytes/s served to followers (`None` = unlimited).
    pub snapshot_send_rate: Option<u64>,
    /// Bytes/s fetched from leaders (`None` = unlimited).
    pub snapshot_recv_rate: Option<u64>,
    /// Snapshots served at once (4).
    pub max_concurrent_sends: usize,
    /// Snapshots installed at once (2).
    pub max_concurrent_installs: usize,
    /// A registered snapshot reader is released after this long idle (300 s).
    pub reader_idle_lease: Duration,
    /// The slowest install rate the InstallSnapshot deadline allows (1 MiB/s).
    pub install_min_rate: u64,
    /// How long a proposal may take to be applied (10 s).
    pub proposal_timeout: Duration,
    /// Time between background scrubs (24 h; zero = off).
    pub scrub_interval: Duration,
    /// Bytes/s the scrub reads at (50 MiB/s).
    pub scrub_rate: u64,
}

impl NodeConfig {
    /// Defaults for node `id` in `data_dir`, reachable at `advertise_addr`.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>, advertise_addr: impl Into<String>) -> Self {
        Self {
            id,
            data_dir: data_dir.into(),
            advertise_addr: advertise_addr.into(),
            peers: BTreeMap::new(),
            tick: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 2,
            snapshot_log_gap: 10_000,
            snapshot_log_bytes: 256 << 20,
            snapshot_interval: Duration::from_secs(3600),
            snapshot_min_gap: 1,
            trailing_logs: 5_000,
            snapshot_retain: 1,
            install_parallel_files: 4,
            install_chunk_bytes: 1 << 20,
            snapshot_send_rate: None,
            snapshot_recv_rate: None,
            max_concurrent_sends: 4,
            max_concurrent_installs: 2,
            reader_idle_lease: Duration::from_secs(300),
            install_min_rate: 1 << 20,
            proposal_timeout: Duration::from_secs(10),
            scrub_interval: Duration::from_secs(24 * 3600),
            scrub_rate: 50 << 20,
        }
    }

    /// Checks the values; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("id must be non-zero".into());
        }
        if self.peers.contains_key(&0) {
            return Err("peer ids must be non-zero".into());
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.id) {
            return Err(format!(
                "the initial peers must include this node ({})",
                self.id
            ));
        }
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return Err("election_tick must exceed heartbeat_tick > 0".into());
        }
        if self.snapshot_log_gap == 0 {
            return Err("snapshot_log_gap must be at least 1".into());
        }
        if self.install_parallel_files == 0 || self.install_chunk_bytes == 0 {
            return Err("install_parallel_files and install_chunk_bytes must be positive".into());
        }
        if self.scrub_rate == 0 {
            return Err("scrub_rate must be positive".into());
        }
        if self.install_min_rate == 0 {
            return Err("install_min_rate must be positive".into());
        }
        Ok(())
    }
}
