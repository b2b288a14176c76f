//! Membership on the raft loop: proposing adds (as a learner) and removals,
//! applying committed conf changes to raft, and promoting learners to voters
//! once their log has caught up.

use std::collections::BTreeSet;

use prost::Message as _;
use raft::StateRole;
use raft::prelude::{ConfChange, ConfChangeType, ConfChangeV2, Entry};
use tracing::{debug, info, warn};

use crate::proto::raft::EntryContext;
use crate::raft::RaftError;
use crate::raft::apply::Reply;
use crate::raft::fsm::ReplicatedStateMachine;
use crate::raft::ready_loop::{Loop, lock};
use crate::raft::transport::learn_peer;

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add `id` at `addr` as a learner; it is promoted to voter once caught up.
    Add {
        /// New member's id.
        id: u64,
        /// Its gRPC address.
        addr: String,
    },
    /// Remove `id`.
    Remove {
        /// The member's id.
        id: u64,
    },
}

impl<S: ReplicatedStateMachine> Loop<S> {
    /// Proposes a membership change (leader only).
    pub(crate) fn propose_membership(&mut self, change: MembershipChange, reply: Reply) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        // raft-rs turns a conf change proposed while another is pending
        // into an empty entry: its caller would wait for nothing.
        if self.raw.raft.has_pending_conf() {
            let _ = reply.send(Err(RaftError::MembershipBusy(
                self.raw.raft.pending_conf_index,
            )));
            return;
        }
        let (id, addr, kind) = match &change {
            MembershipChange::Add { id, addr } => {
                (*id, addr.clone(), ConfChangeType::AddLearnerNode)
            }
            MembershipChange::Remove { id } => (*id, String::new(), ConfChangeType::RemoveNode),
        };
        // Adding a member again (a joining node restarted) changes nothing;
        // as a conf change it would demote a voter to a learner.
        if kind == ConfChangeType::AddLearnerNode && self.raw.raft.prs().get(id).is_some() {
            let _ = reply.send(Ok((self.raw.raft.raft_log.applied, Vec::new())));
            return;
        }
        if kind == ConfChangeType::AddLearnerNode {
            learn_peer(&self.peers, id, &addr);
            self.promote.insert(id, addr.clone());
        } else {
            self.promote.remove(&id);
        }
        let (pid, ctx) = self.context(&addr);
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = id;
        lock(&self.proposals).insert(pid, reply);
        if let Err(e) = self.raw.propose_conf_change(ctx, cc)
            && let Some(tx) = lock(&self.proposals).remove(&pid)
        {
            let _ = tx.send(Err(e.into()));
        }
    }

    /// Applies a committed conf change to raft; returns the new conf state.
    pub(crate) fn apply_conf(
        &mut self,
        e: &Entry,
        cc: ConfChangeV2,
    ) -> Option<raft::prelude::ConfState> {
        let ctx = EntryContext::decode(&e.context[..]).unwrap_or_default();
        for c in cc.get_changes() {
            if c.get_change_type() != ConfChangeType::RemoveNode {
                learn_peer(&self.peers, c.node_id, &ctx.addr);
            }
        }
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => {
                info!(index = e.index, voters = ?cs.voters, learners = ?cs.learners, "membership changed");
                Some(cs)
            }
            Err(err) => {
                warn!(index = e.index, error = %err, "conf change refused");
                None
            }
        }
    }

    /// Leader: promote learners whose log caught up (re-proposed until the
    /// conf shows them as voters; raft drops a second pending conf change).
    pub(crate) fn promote_caught_up_learners(&mut self) {
        if self.raw.raft.state != StateRole::Leader || self.promote.is_empty() {
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        let conf = self.raw.raft.prs().conf().clone();
        let voters: BTreeSet<u64> = conf.voters().ids().iter().collect();
        self.promote.retain(|id, _| !voters.contains(id));
        let ready: Vec<(u64, String)> = self
            .promote
            .iter()
            .filter(|(id, _)| conf.learners().contains(id))
            .filter(|(id, _)| {
                self.raw
                    .raft
                    .prs()
                    .get(**id)
                    .is_some_and(|p| p.matched >= committed)
            })
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        for (id, addr) in ready {
            let (_, ctx) = self.context(&addr);
            let mut cc = ConfChange::default();
            cc.set_change_type(ConfChangeType::AddNode);
            cc.node_id = id;
            match self.raw.propose_conf_change(ctx, cc) {
                Ok(()) => info!(peer = id, "learner caught up; proposing it as a voter"),
                Err(e) => debug!(peer = id, error = %e, "promotion not proposed"),
            }
        }
    }
}
