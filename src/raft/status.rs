//! `Status`: what `/status` reports (DESIGN §5; tools depend on the names).

use serde::Serialize;

use crate::raft::repair::RepairStatus;
use crate::raft::scrub::ScrubStatus;
use crate::raft::snapshot_source::InstallFailureStatus;
use crate::snapshot::InstallFailureRecord;

/// A node's state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Node id.
    pub id: u64,
    /// "leader", "follower", "candidate" or "learner".
    pub role: String,
    /// The leader's id (0 = unknown).
    pub leader_id: u64,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Index applied to the state machine.
    pub applied_index: u64,
    /// First index in the raft log.
    pub first_log_index: u64,
    /// Last index in the raft log.
    pub last_log_index: u64,
    /// Voter ids.
    pub voters: Vec<u64>,
    /// Learner ids.
    pub learners: Vec<u64>,
    /// Snapshot figures.
    pub snapshot: SnapshotStatus,
    /// Repairs of files that failed their checksums (snapshots renamed
    /// `*.broken` included).
    pub repair: RepairStatus,
    /// The background scrub.
    pub scrub: ScrubStatus,
}

/// The snapshot part of [`Status`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct SnapshotStatus {
    /// Index of the latest snapshot (0 = none).
    pub last_index: u64,
    /// Its term.
    pub last_term: u64,
    /// Its number of files.
    pub files: usize,
    /// Its bytes.
    pub bytes: u64,
    /// Snapshots saved since the process started.
    pub saves_total: u64,
    /// Snapshots installed from a leader since the process started.
    pub installs_total: u64,
    /// Bytes fetched over the network by installs.
    pub install_bytes_total: u64,
    /// Bytes installs reused by hard link.
    pub reused_bytes_total: u64,
    /// The install in progress.
    pub install: Option<InstallProgressStatus>,
    /// Bytes fetched by installs that failed (also in `install_bytes_total`).
    pub install_failures_total: u64,
    /// This node's last failed install, unless one succeeded since.
    pub last_install_failure: Option<InstallFailureRecord>,
    /// Peers whose installs from this node are failing (the leader's view).
    pub peer_install_failures: Vec<InstallFailureStatus>,
    /// Installs from this node to peers that failed since the process
    /// started, by kind (`checksum`, `refused`, `timeout`, `unavailable`,
    /// `other`).
    pub peer_install_failures_total: std::collections::BTreeMap<&'static str, u64>,
}

/// An install in progress.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InstallProgressStatus {
    /// Snapshot index.
    pub index: u64,
    /// Peer address it is fetched from.
    pub from: String,
    /// Bytes in place.
    pub bytes_done: u64,
    /// Bytes in all.
    pub bytes_total: u64,
}
