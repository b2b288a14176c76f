//! Errors of the raft layer.

use crate::snapshot::SnapshotError;

/// An error of the raft layer.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// The log store failed.
    #[error("raft log: {what} {}: {source}", .path.display())]
    Store {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored record does not decode.
    #[error("log store: {what} does not decode: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why.
        reason: String,
    },
    /// raft-rs refused.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// This node is not the leader.
    #[error("not the leader (leader: {})", .leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        /// The leader's id, if known.
        leader: Option<u64>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// The proposal was not committed in time (a leader change may have dropped it).
    #[error("proposal not applied within {0:?}; it may have been dropped by a leader change")]
    Timeout(std::time::Duration),
    /// The snapshot layer failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A message from a peer does not decode.
    #[error("bad message from {peer}: {reason}")]
    BadMessage {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The request is not valid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// This node stopped being the leader before the proposal was applied:
    /// it may or may not be committed by the new leader.
    #[error("leadership lost before the proposal was applied; its outcome is unknown")]
    LeadershipLost,
    /// Forwarding to the leader failed.
    #[error("forward to leader {leader}: {status}")]
    Forward {
        /// The leader's address.
        leader: String,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// The node is shutting down.
    #[error("node is shutting down")]
    Shutdown,
    /// The node stopped after a fatal error and serves nothing.
    #[error("node stopped after a fatal error: {0}")]
    Fenced(String),
    /// Something inside this node failed (not the request's fault).
    #[error("internal error: {0}")]
    Internal(String),
    /// Too few voters hold a staged set for the command naming it to be
    /// proposed (a committed command must stay applicable without its
    /// proposer).
    #[error("only {held} of {voters} voters hold staged set {id:016x}, a majority must: {errors}")]
    NotStaged {
        /// The staging id.
        id: u64,
        /// Voters holding it (this node included).
        held: usize,
        /// Voters.
        voters: usize,
        /// Why the others do not.
        errors: String,
    },
    /// The leader's advertised address is not usable.
    #[error("the leader's address {0:?} is not a valid host:port")]
    BadLeaderAddress(String),
    /// Another membership change is not applied yet (raft allows one at a
    /// time and would silently drop a second); ask again shortly.
    #[error("a membership change (index {0}) is still in progress; retry shortly")]
    MembershipBusy(u64),
    /// A read-index round got no answer in time: no leader, or no quorum.
    #[error("no answer from a quorum within {0:?} (no leader, or a partition)")]
    NoQuorum(std::time::Duration),
}

impl From<RaftError> for tonic::Status {
    fn from(e: RaftError) -> Self {
        match &e {
            RaftError::NotLeader { leader_addr, .. } => {
                let mut st = tonic::Status::failed_precondition(e.to_string());
                if let Some(a) = leader_addr.as_ref().and_then(|a| a.parse().ok()) {
                    st.metadata_mut().insert("leader-addr", a);
                }
                st
            }
            RaftError::Timeout(_) => tonic::Status::deadline_exceeded(e.to_string()),
            RaftError::LeadershipLost => tonic::Status::aborted(e.to_string()),
            RaftError::Forward { status, .. } => status.as_ref().clone(),
            RaftError::Invalid(_) | RaftError::BadMessage { .. } => {
                tonic::Status::invalid_argument(e.to_string())
            }
            RaftError::Shutdown
            | RaftError::Fenced(_)
            | RaftError::NoQuorum(_)
            | RaftError::NotStaged { .. }
            | RaftError::MembershipBusy(_)
            | RaftError::BadLeaderAddress(_) => tonic::Status::unavailable(e.to_string()),
            RaftError::Snapshot(SnapshotError::Busy(_) | SnapshotError::Throttled { .. }) => {
                tonic::Status::resource_exhausted(e.to_string())
            }
            _ => tonic::Status::internal(e.to_string()),
        }
    }
}
