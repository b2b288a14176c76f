//! Which raft messages a node steps, by who sent them.
//!
//! The raft port is reachable by anyone who can reach the address, and
//! raft-rs believes every message's `from` and `term`: a non-member's
//! heartbeat with a higher term deposes a leader, a `MsgTimeoutNow` starts
//! an election at once. Without certificates (mTLS) the sender cannot be
//! proven, but a node can refuse what no member would send:
//! - a message addressed to another node;
//! - `MsgTimeoutNow` from anyone but the leader this node follows;
//! - a message from a node that is not in its configuration, while it
//!   hears from a leader (or is the leader). A member lagging behind a
//!   configuration change still accepts a new leader it does not know yet
//!   once its own leader has gone quiet for an election timeout, and a node
//!   with no configuration yet (joining) accepts whoever contacts it.

use raft::prelude::{Message, MessageType};
use raft::{Raft, StateRole, Storage};

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `to` is another node.
    NotForMe,
    /// `MsgTimeoutNow` not from the leader this node follows.
    TimeoutNowNotFromLeader,
    /// The sender is not a member, and this node hears from a leader.
    NotAMember,
}

impl Refusal {
    /// For logs and counters.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::NotForMe => "addressed to another node",
            Refusal::TimeoutNowNotFromLeader => "MsgTimeoutNow not from the leader",
            Refusal::NotAMember => "sender is not a member",
        }
    }
}

/// `Err` when `m` must not be stepped by `raft`.
pub(crate) fn check<T: Storage>(raft: &Raft<T>, m: &Message) -> Result<(), Refusal> {
    if m.to != raft.id {
        return Err(Refusal::NotForMe);
    }
    if m.get_msg_type() == MessageType::MsgTimeoutNow
        && (raft.leader_id == 0 || m.from != raft.leader_id)
    {
        return Err(Refusal::TimeoutNowNotFromLeader);
    }
    let prs = raft.prs();
    if prs.get(m.from).is_some() || prs.iter().next().is_none() {
        return Ok(());
    }
    let hears_leader = raft.state == StateRole::Leader
        || (raft.leader_id != 0 && raft.election_elapsed < raft.election_timeout());
    if hears_leader {
        Err(Refusal::NotAMember)
    } else {
        Ok(())
    }
}
