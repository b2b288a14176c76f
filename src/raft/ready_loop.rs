//! The raft loop: one OS thread owning the `RawNode` — ticks, steps,
//! proposals and the Ready loop in raft-rs's asynchronous form.
//!
//! Per Ready: the leader's messages go out at once (it replicates while it
//! appends, raft thesis §10.2.1); entries, hard state and an installed
//! snapshot's position are written to the log (`pwrite`, into the page
//! cache); committed entries go to the apply worker; then the persistence
//! thread ([`crate::raft::persist`]) makes the writes durable with one
//! `fdatasync` for every Ready that queued up meanwhile (group commit) and
//! hands back the messages that needed them (a follower's append responses,
//! votes). So ticks, heartbeats and sends never wait for the disk.
//!
//! Nothing slow runs here: applying and snapshot loads run on the apply
//! worker, saves on their own thread, installs in the InstallSnapshot RPC
//! handler, compaction on its own thread. They report back through the inbox.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Message};
use raft::{RawNode, SnapshotStatus, StateRole};
use raft_proto::ConfChangeI;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::proto::raft::EntryContext;
use crate::raft::apply::{ApplyTask, Committed, Proposals, Reply};
use crate::raft::config::NodeConfig;
use crate::raft::error::RaftError;
use crate::raft::fsm::{NodeFsm, Peers, ReplicatedStateMachine};
use crate::raft::log_store::{LogStore, RaftStorage, WalLogStore};
use crate::raft::membership::MembershipChange;
use crate::raft::persist::PersistTask;
use crate::raft::read_index::{ReadReply, Reads};
use crate::raft::snapshot_source::SnapshotSource;
use crate::raft::status::{InstallProgressStatus, SnapshotStatus as SnapStatus, Status};
use crate::raft::transport::Transport;
use crate::snapshot::{SnapshotExecutor, SnapshotMeta};

/// The sending side of the raft loop's inbox.
pub(crate) type LoopTx = std::sync::mpsc::Sender<Inbound>;

/// What the raft loop is told.
pub(crate) enum Inbound {
    Raft(Box<Message>),
    Propose {
        command: Vec<u8>,
        reply: Reply,
    },
    Membership {
        change: MembershipChange,
        reply: Reply,
    },
    ReadIndex(ReadReply),
    ReportSnapshot {
        to: u64,
        ok: bool,
    },
    Unreachable(u64),
    Applied(u64),
    /// The persistence thread synced every Ready up to `number`.
    Persisted {
        number: u64,
        messages: Vec<Message>,
    },
    SnapshotSaved(SnapshotMeta),
    Status(oneshot::Sender<Status>),
    Fatal(String),
    /// Wakes the loop to see the shutdown token.
    Wake,
}

/// Counters of the raft layer since the process started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RaftCounters {
    /// Log compactions done.
    pub compactions_total: u64,
    /// Entries removed by compaction.
    pub compacted_entries_total: u64,
    /// Read-index rounds started (each one serves every read queued with it).
    pub read_index_rounds_total: u64,
    /// Reads served through a read-index round.
    pub read_index_reads_total: u64,
    /// Raft messages dropped unstepped (not for this node, `MsgTimeoutNow`
    /// not from the leader, or from a non-member while a leader is heard).
    pub dropped_messages_total: u64,
}

/// The fatal error that stopped a node, if any (shared with its handle).
pub(crate) type Fault = Arc<Mutex<Option<String>>>;

pub(crate) struct Loop<S: ReplicatedStateMachine> {
    pub id: u64,
    pub cfg: NodeConfig,
    pub raw: RawNode<RaftStorage>,
    pub log: Arc<WalLogStore>,
    pub inbox: std::sync::mpsc::Receiver<Inbound>,
    pub apply_tx: std::sync::mpsc::Sender<ApplyTask>,
    pub persist_tx: std::sync::mpsc::Sender<PersistTask>,
    pub transport: Transport,
    pub source: Arc<SnapshotSource>,
    pub exec: Arc<SnapshotExecutor<NodeFsm<S>>>,
    pub proposals: Proposals,
    pub peers: Peers,
    pub members: crate::raft::fsm::Members,
    pub next_proposal: u64,
    pub promote: BTreeMap<u64, String>,
    pub counters: Arc<Mutex<RaftCounters>>,
    pub compacting: Arc<AtomicBool>,
    pub shutdown: CancellationToken,
    pub fault: Fault,
    pub reads: Reads,
    pub was_leader: bool,
    pub repair: crate::raft::repair::SharedRepairStatus,
    pub scrub: crate::raft::scrub::SharedScrubStatus,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: ReplicatedStateMachine> Loop<S> {
    /// Runs until shutdown or a fatal error (then the node is fenced: every
    /// waiter is told why, and the handle reports the fault).
    pub(crate) fn run(mut self) {
        let tick = self.cfg.tick;
        let mut next_tick = Instant::now() + tick;
        let mut ticks: u64 = 0;
        let interval_ticks = (!self.cfg.snapshot_interval.is_zero()).then(|| {
            let full =
                (self.cfg.snapshot_interval.as_millis() / tick.as_millis().max(1)).max(1) as u64;
            // First firing random in [full/2, full] (braft#87: not all at once).
            let jitter = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| {
                    d.subsec_nanos() as u64 ^ self.id.wrapping_mul(0x9E37_79B9)
                })
                % (full / 2 + 1);
            (full, full / 2 + jitter)
        });
        let mut next_timer = interval_ticks.map(|(_, first)| first);
        let fatal = loop {
            if self.shutdown.is_cancelled() {
                break None;
            }
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(wait) {
                Ok(m) => {
                    if let Err(e) = self.handle(m) {
                        break Some(e);
                    }
                    // Everything already queued joins this Ready (group
                    // commit: proposals that arrived during a sync go
                    // into one append and one sync).
                    let mut fatal = None;
                    for _ in 0..4096 {
                        match self.inbox.try_recv() {
                            Ok(m) => {
                                if let Err(e) = self.handle(m) {
                                    fatal = Some(e);
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    if fatal.is_some() {
                        break fatal;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + tick;
                ticks += 1;
                self.raw.tick();
                if ticks.is_multiple_of(5) {
                    self.promote_caught_up_learners();
                }
                self.reads.on_tick(&mut self.raw);
                if let (Some(at), Some((full, _))) = (next_timer, interval_ticks)
                    && ticks >= at
                {
                    let _ = self.apply_tx.send(ApplyTask::Save);
                    next_timer = Some(ticks + full);
                }
            }
            self.reads.start_round(&mut self.raw, &self.counters);
            if let Err(e) = self.on_ready() {
                break Some(format!("raft ready processing failed: {e}"));
            }
            self.on_role_change();
            self.publish_members();
        };
        if let Some(msg) = fatal {
            error!(error = %msg, "fatal error; the node stops serving (fenced)");
            *lock(&self.fault) = Some(msg);
        }
        self.stop();
    }

    /// Publishes the configuration's ids for the gRPC service when they
    /// changed.
    fn publish_members(&self) {
        let prs = self.raw.raft.prs();
        let same = self.members.read().is_ok_and(|m| {
            m.len() == prs.iter().count() && prs.iter().all(|(id, _)| m.contains(id))
        });
        if !same && let Ok(mut m) = self.members.write() {
            *m = prs.iter().map(|(id, _)| *id).collect();
        }
    }

    fn stop(&mut self) {
        self.shutdown.cancel();
        let err = || match lock(&self.fault).clone() {
            Some(f) => RaftError::Fenced(f),
            None => RaftError::Shutdown,
        };
        let mut p = lock(&self.proposals);
        for (_, tx) in p.drain() {
            let _ = tx.send(Err(err()));
        }
        drop(p);
        self.reads.fail_all(err);
    }

    pub(crate) fn leader_addr(&self) -> (Option<u64>, Option<String>) {
        let l = self.raw.raft.leader_id;
        if l == 0 {
            return (None, None);
        }
        (
            Some(l),
            self.peers.read().ok().and_then(|p| p.get(&l).cloned()),
        )
    }

    pub(crate) fn not_leader(&self) -> RaftError {
        let (leader, leader_addr) = self.leader_addr();
        RaftError::NotLeader {
            leader,
            leader_addr,
        }
    }

    pub(crate) fn context(&mut self, addr: &str) -> (u64, Vec<u8>) {
        self.next_proposal += 1;
        let id = (self.id << 40) | self.next_proposal;
        (
            id,
            EntryContext {
                proposal_id: id,
                addr: addr.to_string(),
            }
            .encode_to_vec(),
        )
    }

    /// Handles one inbox item; `Err` is a fatal error.
    fn handle(&mut self, m: Inbound) -> Result<(), String> {
        match m {
            Inbound::Raft(msg) => {
                if let Err(why) = crate::raft::sender_check::check(&self.raw.raft, &msg) {
                    lock(&self.counters).dropped_messages_total += 1;
                    debug!(
                        from = msg.from,
                        msg_type = ?msg.get_msg_type(),
                        term = msg.term,
                        reason = why.as_str(),
                        "raft message dropped"
                    );
                    return Ok(());
                }
                if let Err(e) = self.raw.step(*msg) {
                    debug!(error = %e, "step refused a message");
                }
            }
            Inbound::Propose { command, reply } => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                } else {
                    let (pid, ctx) = self.context("");
                    lock(&self.proposals).insert(pid, reply);
                    if let Err(e) = self.raw.propose(ctx, command)
                        && let Some(tx) = lock(&self.proposals).remove(&pid)
                    {
                        let _ = tx.send(Err(e.into()));
                    }
                }
            }
            Inbound::Membership { change, reply } => self.propose_membership(change, reply),
            Inbound::ReadIndex(reply) => self.reads.queue(reply),
            Inbound::ReportSnapshot { to, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
                self.source.release(to);
            }
            Inbound::Unreachable(to) => self.raw.report_unreachable(to),
            Inbound::Applied(index) => {
                let max = self
                    .raw
                    .raft
                    .raft_log
                    .committed
                    .min(self.raw.raft.raft_log.persisted);
                let index = index.min(max);
                if index > self.raw.raft.raft_log.applied {
                    self.raw.advance_apply_to(index);
                }
            }
            Inbound::Persisted { number, messages } => {
                self.raw.on_persist_ready(number);
                self.transport.send(messages);
            }
            Inbound::SnapshotSaved(meta) => self.compact(&meta),
            Inbound::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Inbound::Fatal(msg) => return Err(msg),
            Inbound::Wake => {}
        }
        Ok(())
    }

    /// One Ready, in raft-rs's asynchronous order (see the module docs).
    fn on_ready(&mut self) -> Result<(), RaftError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        self.transport.send(rd.take_messages());
        self.reads.complete(rd.take_read_states(), &self.counters);
        let mut load = None;
        if !rd.snapshot().is_empty() {
            let md = rd.snapshot().get_metadata();
            self.log
                .apply_snapshot(md.index, md.term, md.get_conf_state())?;
            load = Some(md.index);
        }
        // Committed entries are already durable here (raft-rs hands out
        // only entries up to the persisted index).
        self.forward_committed(rd.take_committed_entries());
        self.log.append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            self.log.set_hard_state(hs)?;
        }
        let task = PersistTask {
            number: rd.number(),
            messages: rd.take_persisted_messages(),
            load,
        };
        // The entries are readable through `Storage` now (written, not yet
        // synced), as `advance_append_async` requires.
        self.raw.advance_append_async(rd);
        self.persist_tx
            .send(task)
            .map_err(|_| RaftError::Internal("the persistence thread stopped".into()))?;
        Ok(())
    }

    /// Applies conf changes to raft here (their conf state travels with the
    /// entry) and hands every committed entry to the apply worker.
    fn forward_committed(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let conf = match e.get_entry_type() {
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    match cc.merge_from_bytes(&e.data) {
                        Ok(()) => self.apply_conf(&e, cc.into_v2()),
                        Err(err) => {
                            warn!(index = e.index, error = %err, "undecodable conf change ignored");
                            None
                        }
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    match cc.merge_from_bytes(&e.data) {
                        Ok(()) => self.apply_conf(&e, cc),
                        Err(err) => {
                            warn!(index = e.index, error = %err, "undecodable conf change ignored");
                            None
                        }
                    }
                }
                EntryType::EntryNormal => None,
            };
            out.push(Committed { entry: e, conf });
        }
        let _ = self.apply_tx.send(ApplyTask::Committed(out));
    }

    /// A leader that stepped down fails its pending proposals: their outcome
    /// is unknown (they may still commit under the new leader).
    fn on_role_change(&mut self) {
        let leader = self.raw.raft.state == StateRole::Leader;
        if self.was_leader && !leader {
            let mut p = lock(&self.proposals);
            for (_, tx) in p.drain() {
                let _ = tx.send(Err(RaftError::LeadershipLost));
            }
        }
        self.was_leader = leader;
    }

    fn status(&self) -> Status {
        let r = &self.raw.raft;
        let conf = r.prs().conf();
        let mut voters: Vec<u64> = conf.voters().ids().iter().collect();
        voters.sort_unstable();
        let mut learners: Vec<u64> = conf.learners().iter().copied().collect();
        learners.sort_unstable();
        let role = match r.state {
            StateRole::Leader => "leader",
            StateRole::Candidate | StateRole::PreCandidate => "candidate",
            StateRole::Follower if learners.contains(&self.id) => "learner",
            StateRole::Follower => "follower",
        };
        let st = self.exec.stats();
        let latest = self.exec.storage().list().into_iter().last();
        let install = self.exec.install_status().map(|s| {
            let p = s.progress.snapshot();
            InstallProgressStatus {
                index: p.index,
                from: s.from,
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
            }
        });
        Status {
            id: self.id,
            role: role.into(),
            leader_id: r.leader_id,
            term: r.term,
            commit_index: r.raft_log.committed,
            applied_index: self.raw.raft.raft_log.applied,
            first_log_index: self.log.first_index(),
            last_log_index: self.log.last_index(),
            voters,
            learners,
            snapshot: SnapStatus {
                last_index: latest.as_ref().map_or(0, |i| i.meta.last_included_index),
                last_term: latest.as_ref().map_or(0, |i| i.meta.last_included_term),
                files: latest.as_ref().map_or(0, |i| i.files),
                bytes: latest.as_ref().map_or(0, |i| i.bytes),
                saves_total: st.saves_total,
                installs_total: st.installs_total,
                install_bytes_total: st.install_bytes_total,
                reused_bytes_total: st.reused_bytes_total,
                install,
                install_failures_total: st.install_failures_total,
                last_install_failure: self.exec.last_install_failure(),
                peer_install_failures: self.source.install_failures(),
                peer_install_failures_total: self.source.failures_by_kind(),
            },
            repair: {
                let mut r = self
                    .repair
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                r.broken_snapshots = self
                    .exec
                    .storage()
                    .broken()
                    .into_iter()
                    .map(|(index, reason)| crate::raft::repair::BrokenSnapshot { index, reason })
                    .collect();
                r
            },
            scrub: self.scrub.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Sends the loop a request carrying a reply channel and waits for the
/// answer, at most `timeout`.
pub(crate) async fn ask(
    to_loop: &LoopTx,
    timeout: Duration,
    make: impl FnOnce(Reply) -> Inbound,
) -> Result<(u64, Vec<u8>), RaftError> {
    let (tx, rx) = oneshot::channel();
    to_loop.send(make(tx)).map_err(|_| RaftError::Shutdown)?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(RaftError::Shutdown),
        Err(_) => Err(RaftError::Timeout(timeout)),
    }
}
