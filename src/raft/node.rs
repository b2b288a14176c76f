//! The raft node: a tokio task owning the `RawNode` (ticks, steps, the Ready
//! loop in the order of raft-rs's docs), the apply worker thread, the gRPC
//! server (raft RPCs + the snapshot FileService), compaction and membership.
//!
//! Nothing slow runs on the loop: entries are applied and snapshots loaded on
//! the apply worker, saves run on their own thread, installs are fetched by
//! the InstallSnapshot RPC handler, compaction runs on a blocking task. All
//! of them report back to the loop through its inbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message};
use raft::{RawNode, SnapshotStatus, StateRole};
use raft_proto::ConfChangeI;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::proto::raft::EntryContext;
use crate::raft::apply::{ApplyTask, ApplyWorker, Committed, Proposals, Reply};
use crate::raft::config::NodeConfig;
use crate::raft::error::RaftError;
use crate::raft::fsm::{NodeFsm, Peers, ReplicatedStateMachine};
use crate::raft::log_store::{LogStore, RaftStorage, WalLogStore};
use crate::raft::snapshot_source::{SnapshotSource, conf_state_of, set_membership};
use crate::raft::status::{InstallProgressStatus, SnapshotStatus as SnapStatus, Status};
use crate::raft::transport::{Transport, learn_peer};
use crate::snapshot::{
    CopierOptions, ExecutorOptions, LocalSnapshotStorage, ReaderRegistry, SaveOutcome,
    SnapshotError, SnapshotExecutor, SnapshotFileService, SnapshotMeta, SnapshotThrottle,
    StorageOptions, ThrottleOptions, shared,
};

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
    ReportSnapshot {
        to: u64,
        ok: bool,
    },
    Unreachable(u64),
    Applied(u64),
    SnapshotSaved(SnapshotMeta),
    Status(oneshot::Sender<Status>),
    Fatal(String),
}

/// Counters of the raft layer since the process started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RaftCounters {
    /// Log compactions done.
    pub compactions_total: u64,
    /// Entries removed by compaction.
    pub compacted_entries_total: u64,
}

struct Loop<S: ReplicatedStateMachine> {
    id: u64,
    cfg: NodeConfig,
    raw: RawNode<RaftStorage>,
    log: Arc<WalLogStore>,
    inbox: mpsc::UnboundedReceiver<Inbound>,
    apply_tx: std::sync::mpsc::Sender<ApplyTask>,
    transport: Transport,
    source: Arc<SnapshotSource>,
    exec: Arc<SnapshotExecutor<NodeFsm<S>>>,
    proposals: Proposals,
    peers: Peers,
    next_proposal: u64,
    promote: BTreeMap<u64, String>,
    counters: Arc<Mutex<RaftCounters>>,
    compacting: Arc<AtomicBool>,
    shutdown: CancellationToken,
    was_leader: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: ReplicatedStateMachine> Loop<S> {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let interval_ticks = (!self.cfg.snapshot_interval.is_zero()).then(|| {
            let full = (self.cfg.snapshot_interval.as_millis() / self.cfg.tick.as_millis().max(1))
                .max(1) as u64;
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
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tick.tick() => {
                    ticks += 1;
                    self.raw.tick();
                    if ticks.is_multiple_of(5) {
                        self.promote_caught_up_learners();
                    }
                    if let (Some(at), Some((full, _))) = (next_timer, interval_ticks)
                        && ticks >= at
                    {
                        let _ = self.apply_tx.send(ApplyTask::Save);
                        next_timer = Some(ticks + full);
                    }
                }
                m = self.inbox.recv() => {
                    let Some(m) = m else { break };
                    if !self.handle(m) { break; }
                    for _ in 0..256 {
                        match self.inbox.try_recv() {
                            Ok(m) => if !self.handle(m) { return self.stop(); },
                            Err(_) => break,
                        }
                    }
                }
            }
            if let Err(e) = self.on_ready() {
                error!(error = %e, "raft ready processing failed; stopping the node");
                break;
            }
            self.on_role_change();
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.shutdown.cancel();
        let _ = self.log.flush();
        let mut p = lock(&self.proposals);
        for (_, tx) in p.drain() {
            let _ = tx.send(Err(RaftError::Shutdown));
        }
    }

    fn leader_addr(&self) -> (Option<u64>, Option<String>) {
        let l = self.raw.raft.leader_id;
        if l == 0 {
            return (None, None);
        }
        (
            Some(l),
            self.peers.read().ok().and_then(|p| p.get(&l).cloned()),
        )
    }

    fn not_leader(&self) -> RaftError {
        let (leader, leader_addr) = self.leader_addr();
        RaftError::NotLeader {
            leader,
            leader_addr,
        }
    }

    fn context(&mut self, addr: &str) -> (u64, Vec<u8>) {
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

    /// Handles one inbox item; false to stop.
    fn handle(&mut self, m: Inbound) -> bool {
        match m {
            Inbound::Raft(msg) => {
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
            Inbound::Membership { change, reply } => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                } else {
                    let (id, addr, kind) = match &change {
                        MembershipChange::Add { id, addr } => {
                            (*id, addr.clone(), ConfChangeType::AddLearnerNode)
                        }
                        MembershipChange::Remove { id } => {
                            (*id, String::new(), ConfChangeType::RemoveNode)
                        }
                    };
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
            }
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
            Inbound::SnapshotSaved(meta) => self.compact(&meta),
            Inbound::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Inbound::Fatal(msg) => {
                error!(%msg, "fatal error; stopping the node");
                return false;
            }
        }
        true
    }

    /// The Ready loop, in the order of raft-rs's docs.
    fn on_ready(&mut self) -> Result<(), RaftError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        // 1. A leader may send before persisting.
        self.transport.send(rd.take_messages());
        // 2. An installed snapshot replaces the log, in one batch.
        let mut load = None;
        if !rd.snapshot().is_empty() {
            let s = rd.snapshot();
            let md = s.get_metadata();
            self.log
                .apply_snapshot(md.index, md.term, md.get_conf_state())?;
            load = Some(md.index);
        }
        // 3-5. New entries and hard state, made durable before anything
        // that depends on them (persisted messages, applying).
        let committed = rd.take_committed_entries();
        self.log.append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            self.log.set_hard_state(hs)?;
        }
        let dirty =
            load.is_some() || !rd.entries().is_empty() || rd.hs().is_some() || rd.must_sync();
        if dirty {
            self.log.flush()?;
        }
        if let Some(index) = load {
            let _ = self.apply_tx.send(ApplyTask::Load(index));
        }
        self.forward_committed(committed);
        // 6. Messages that needed the persisted state.
        self.transport.send(rd.take_persisted_messages());
        // 7. Advance; then the light ready.
        let mut light = self.raw.advance_append(rd);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit)?;
            self.log.flush()?;
        }
        self.transport.send(light.take_messages());
        self.forward_committed(light.take_committed_entries());
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

    fn apply_conf(&mut self, e: &Entry, cc: ConfChangeV2) -> Option<raft::prelude::ConfState> {
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
    fn promote_caught_up_learners(&mut self) {
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

    /// After a snapshot: compact to `index − trailing_logs`, never past what
    /// an in-flight snapshot send needs, never past what is applied.
    fn compact(&mut self, meta: &SnapshotMeta) {
        let index = meta.last_included_index;
        let mut target = index.saturating_sub(self.cfg.trailing_logs) + 1;
        if let Some(min) = self.source.min_inflight_index() {
            target = target.min(min + 1);
        }
        target = target
            .min(self.raw.raft.raft_log.applied + 1)
            .min(self.log.last_index() + 1);
        if target <= self.log.first_index()
            || self
                .compacting
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let (log, counters, flag) = (
            self.log.clone(),
            self.counters.clone(),
            self.compacting.clone(),
        );
        tokio::task::spawn_blocking(move || {
            match log.compact(target).and_then(|n| log.flush().map(|()| n)) {
                Ok(n) => {
                    let mut c = lock(&counters);
                    c.compactions_total += 1;
                    c.compacted_entries_total += n;
                    info!(
                        snapshot_index = index,
                        compact_to = target,
                        removed = n,
                        "raft log compacted"
                    );
                }
                Err(e) => warn!(error = %e, "log compaction failed"),
            }
            flag.store(false, std::sync::atomic::Ordering::Release);
        });
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
            },
        }
    }
}

/// Sends the loop a request carrying a reply channel and waits for the
/// answer, at most `timeout`.
pub(crate) async fn ask(
    to_loop: &mpsc::UnboundedSender<Inbound>,
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

/// A running node. Cheap to clone.
pub struct NodeHandle<S: ReplicatedStateMachine> {
    inner: Arc<HandleInner<S>>,
}

impl<S: ReplicatedStateMachine> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct HandleInner<S: ReplicatedStateMachine> {
    id: u64,
    addr: SocketAddr,
    cfg: NodeConfig,
    to_loop: mpsc::UnboundedSender<Inbound>,
    exec: Arc<SnapshotExecutor<NodeFsm<S>>>,
    applied_rx: watch::Receiver<u64>,
    /// The log store; released by `shutdown` so the node can restart in-process.
    log: Mutex<Option<Arc<WalLogStore>>>,
    counters: Arc<Mutex<RaftCounters>>,
    saving: Arc<AtomicBool>,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    apply_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<S: ReplicatedStateMachine> std::fmt::Debug for NodeHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("id", &self.inner.id)
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl<S: ReplicatedStateMachine> NodeHandle<S> {
    /// Starts a node serving gRPC on `listener`: opens its snapshots and log,
    /// loads the latest snapshot (refusing to start if the log does not reach
    /// it), and starts the raft loop, the apply worker and the server.
    pub async fn start(
        cfg: NodeConfig,
        state_machine: S,
        listener: std::net::TcpListener,
    ) -> Result<Self, RaftError> {
        Self::start_with(cfg, state_machine, listener, None).await
    }

    /// Like [`start`](Self::start); installs also reuse the live files that
    /// `lookup` finds (same name, size and crc32c) by hard link.
    pub async fn start_with(
        cfg: NodeConfig,
        state_machine: S,
        listener: std::net::TcpListener,
        lookup: Option<Arc<dyn crate::snapshot::LocalFileLookup>>,
    ) -> Result<Self, RaftError> {
        cfg.validate().map_err(RaftError::Invalid)?;
        let id = cfg.id;
        let span = info_span!("node", id);
        let addr = listener
            .local_addr()
            .map_err(|e| RaftError::Invalid(format!("listener: {e}")))?;
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| RaftError::Invalid(format!("create {}: {e}", cfg.data_dir.display())))?;
        let (storage, report) = LocalSnapshotStorage::open(
            cfg.data_dir.join("snapshots"),
            StorageOptions {
                retain: cfg.snapshot_retain,
            },
        )?;
        if !report.broken.is_empty() {
            warn!(broken = ?report.broken, "snapshots failed validation at startup");
        }
        let throttle = Arc::new(SnapshotThrottle::new(ThrottleOptions {
            send_rate: cfg.snapshot_send_rate,
            recv_rate: cfg.snapshot_recv_rate,
            max_concurrent_sends: cfg.max_concurrent_sends,
            max_concurrent_installs: cfg.max_concurrent_installs,
            ..Default::default()
        }));
        let peers: Peers = Arc::new(RwLock::new(cfg.peers.clone()));
        learn_peer(&peers, id, &cfg.advertise_addr);
        let exec = Arc::new(
            SnapshotExecutor::new(
                storage.clone(),
                shared(NodeFsm::new(state_machine, peers.clone())),
                ExecutorOptions {
                    snapshot_min_gap: cfg.snapshot_min_gap,
                    copier: CopierOptions {
                        parallel_files: cfg.install_parallel_files,
                        chunk_bytes: cfg.install_chunk_bytes,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .with_throttle(throttle.clone()),
        );
        let exec = match lookup {
            Some(l) => Arc::new(
                Arc::try_unwrap(exec)
                    .map_err(|_| RaftError::Invalid("executor shared too early".into()))?
                    .with_lookup(l),
            ),
            None => exec,
        };
        let log = Arc::new(WalLogStore::open(&cfg.data_dir.join("raft"))?);
        let mut state = log.initial_state()?;
        let fresh = state.hard_state == Default::default()
            && state.conf_state.voters.is_empty()
            && log.last_index() == 0;
        if fresh && !cfg.peers.is_empty() && storage.latest_index() == 0 {
            state.conf_state.voters = cfg.peers.keys().copied().collect();
            log.set_conf_state(&state.conf_state)?;
            log.flush()?;
            info!(voters = ?state.conf_state.voters, "bootstrapped a new cluster");
        }
        let exec2 = exec.clone();
        let first = log.first_index();
        let loaded = tokio::task::spawn_blocking(move || exec2.load_latest(first))
            .await
            .map_err(|e| RaftError::Invalid(e.to_string()))??;
        let applied = match &loaded {
            Some(m) => {
                let commit = log.initial_state()?.hard_state.commit;
                if m.last_included_index > commit {
                    // An install committed this snapshot but the process
                    // stopped before raft applied it to the log: do it now,
                    // as raft-rs's restore would have (the snapshot is the
                    // leader's committed state, already verified).
                    warn!(
                        snapshot_index = m.last_included_index,
                        commit, "finishing an install interrupted before raft applied it"
                    );
                    log.apply_snapshot(
                        m.last_included_index,
                        m.last_included_term,
                        &conf_state_of(m),
                    )?;
                } else {
                    // The log's conf state is the one as of the loaded
                    // snapshot; replaying the entries after it rebuilds the
                    // current one.
                    log.set_conf_state(&conf_state_of(m))?;
                }
                log.flush()?;
                m.last_included_index
            }
            None => {
                let mut fsm = exec
                    .state_machine()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                set_membership(&mut fsm.applied, &state.conf_state);
                0
            }
        };
        info!(
            applied,
            first_log_index = log.first_index(),
            last_log_index = log.last_index(),
            "node starting"
        );

        let (to_loop, inbox) = mpsc::unbounded_channel();
        let (apply_tx, apply_rx) = std::sync::mpsc::channel();
        let registry = ReaderRegistry::new(cfg.reader_idle_lease, throttle.clone());
        let save_tx = apply_tx.clone();
        let source = Arc::new(SnapshotSource::new(
            storage,
            registry.clone(),
            cfg.advertise_addr.clone(),
            Box::new(move || {
                let _ = save_tx.send(ApplyTask::Save);
            }),
        ));
        let rcfg = raft::Config {
            id,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let raw = RawNode::new(
            &rcfg,
            RaftStorage {
                log: log.clone(),
                snapshots: source.clone(),
            },
            &crate::raft::slog_bridge::logger(id),
        )?;
        let shutdown = CancellationToken::new();
        let (applied_tx, applied_rx) = watch::channel(applied);
        let proposals: Proposals = Arc::new(Mutex::new(HashMap::new()));
        let counters = Arc::new(Mutex::new(RaftCounters::default()));
        let saving = Arc::new(AtomicBool::new(false));
        let worker = ApplyWorker {
            exec: exec.clone(),
            proposals: proposals.clone(),
            to_loop: to_loop.clone(),
            applied_tx,
            log_gap: cfg.snapshot_log_gap,
            log_bytes: cfg.snapshot_log_bytes,
            saving: saving.clone(),
        };
        let apply_span = span.clone();
        let apply_thread = std::thread::Builder::new()
            .name(format!("apply-{id}"))
            .spawn(move || {
                let _g = apply_span.enter();
                worker.run(apply_rx)
            })
            .map_err(|e| RaftError::Invalid(format!("spawn apply thread: {e}")))?;
        let transport = Transport::new(
            id,
            cfg.advertise_addr.clone(),
            peers.clone(),
            to_loop.clone(),
            cfg.install_min_rate,
            shutdown.clone(),
        );
        let node_loop = Loop {
            id,
            cfg: cfg.clone(),
            raw,
            log: log.clone(),
            inbox,
            apply_tx,
            transport,
            source,
            exec: exec.clone(),
            proposals,
            peers: peers.clone(),
            next_proposal: 0,
            promote: BTreeMap::new(),
            counters: counters.clone(),
            compacting: Arc::new(AtomicBool::new(false)),
            shutdown: shutdown.clone(),
            was_leader: false,
        };
        let mut tasks = vec![tokio::spawn(node_loop.run().instrument(span.clone()))];
        tasks.push(registry.spawn_sweeper(Duration::from_secs(5)));
        let service = crate::raft::service::RaftRpc {
            id,
            to_loop: to_loop.clone(),
            exec: exec.clone(),
            peers,
            applied_rx: applied_rx.clone(),
            proposal_timeout: cfg.proposal_timeout,
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| RaftError::Invalid(e.to_string()))?;
        let files = SnapshotFileService::new(registry, throttle).into_server();
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(
            async move {
                let incoming = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => tokio_stream::wrappers::TcpListenerStream::new(l),
                    Err(e) => {
                        error!(error = %e, "cannot serve gRPC");
                        return;
                    }
                };
                let res = tonic::transport::Server::builder()
                    .add_service(service.into_server())
                    .add_service(files)
                    .serve_with_incoming_shutdown(incoming, sd.cancelled())
                    .await;
                if let Err(e) = res {
                    error!(error = %e, "gRPC server stopped");
                }
            }
            .instrument(span),
        ));
        Ok(Self {
            inner: Arc::new(HandleInner {
                id,
                addr,
                cfg,
                to_loop,
                exec,
                applied_rx,
                log: Mutex::new(Some(log)),
                counters,
                saving,
                shutdown,
                tasks: Mutex::new(tasks),
                apply_thread: Mutex::new(Some(apply_thread)),
            }),
        })
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The gRPC address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The snapshot executor (and through it the state machine).
    pub fn executor(&self) -> &Arc<SnapshotExecutor<NodeFsm<S>>> {
        &self.inner.exec
    }

    /// Index applied to the state machine.
    pub fn applied_index(&self) -> u64 {
        *self.inner.applied_rx.borrow()
    }

    /// Waits until `index` is applied or `timeout` passes; true if applied.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.inner.applied_rx.clone();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Raft-layer counters.
    pub fn counters(&self) -> RaftCounters {
        *lock(&self.inner.counters)
    }

    /// Number of entries in the raft log.
    pub fn log_len(&self) -> u64 {
        lock(&self.inner.log).as_ref().map_or(0, |l| l.len())
    }

    fn send(&self, m: Inbound) -> Result<(), RaftError> {
        self.inner.to_loop.send(m).map_err(|_| RaftError::Shutdown)
    }

    async fn ask(&self, make: impl FnOnce(Reply) -> Inbound) -> Result<(u64, Vec<u8>), RaftError> {
        ask(&self.inner.to_loop, self.inner.cfg.proposal_timeout, make).await
    }

    /// Proposes a command; answers once it is applied here, with its index and
    /// the state machine's answer. A follower forwards it to the leader.
    pub async fn propose(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), RaftError> {
        match self
            .ask(|reply| Inbound::Propose {
                command: command.clone(),
                reply,
            })
            .await
        {
            Err(RaftError::NotLeader {
                leader_addr: Some(addr),
                ..
            }) => {
                let mut c = crate::raft::transport::client(&addr).ok_or(RaftError::Shutdown)?;
                let t = self.inner.cfg.proposal_timeout;
                let r = tokio::time::timeout(
                    t,
                    c.propose(crate::proto::raft::ProposeRequest { command }),
                )
                .await
                .map_err(|_| RaftError::Timeout(t))?
                .map_err(|s| RaftError::Forward {
                    leader: addr.clone(),
                    status: Box::new(s),
                })?
                .into_inner();
                // Answer once this node has applied it too (read-your-writes here).
                self.wait_applied(r.index, t).await;
                Ok((r.index, r.result))
            }
            r => r,
        }
    }

    /// Changes the membership (leader only; a follower forwards it).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<u64, RaftError> {
        match self
            .ask(|reply| Inbound::Membership {
                change: change.clone(),
                reply,
            })
            .await
        {
            Ok((index, _)) => Ok(index),
            Err(RaftError::NotLeader {
                leader_addr: Some(addr),
                ..
            }) => {
                let mut c = crate::raft::transport::client(&addr).ok_or(RaftError::Shutdown)?;
                let req = match change {
                    MembershipChange::Add { id, addr } => {
                        crate::proto::raft::MembershipRequest { op: 0, id, addr }
                    }
                    MembershipChange::Remove { id } => crate::proto::raft::MembershipRequest {
                        op: 1,
                        id,
                        addr: String::new(),
                    },
                };
                let r = c
                    .change_membership(req)
                    .await
                    .map_err(|s| RaftError::Forward {
                        leader: addr.clone(),
                        status: Box::new(s),
                    })?;
                Ok(r.into_inner().index)
            }
            Err(e) => Err(e),
        }
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.send(Inbound::Status(tx))?;
        rx.await.map_err(|_| RaftError::Shutdown)
    }

    /// Takes a snapshot now (waiting for a running save first) and compacts
    /// the log; returns the latest snapshot's meta.
    pub async fn snapshot_now(&self) -> Result<SnapshotMeta, RaftError> {
        let exec = self.inner.exec.clone();
        let saving = self.inner.saving.clone();
        let meta = tokio::task::spawn_blocking(move || -> Result<SnapshotMeta, SnapshotError> {
            for _ in 0..3 {
                while saving.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                match exec.do_snapshot() {
                    Ok(SaveOutcome::Saved(m)) => return Ok(m),
                    Ok(SaveOutcome::Skipped { .. }) => {
                        return exec
                            .storage()
                            .latest_meta()
                            .ok_or(SnapshotError::NotFound(0));
                    }
                    Err(SnapshotError::Busy(_)) => {
                        exec.wait_idle(Duration::from_secs(30));
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(SnapshotError::Busy("snapshot executor stayed busy"))
        })
        .await
        .map_err(|e| RaftError::Invalid(e.to_string()))??;
        self.send(Inbound::SnapshotSaved(meta.clone()))?;
        Ok(meta)
    }

    /// Resolves once the node is stopping (for servers that live beside it).
    pub async fn stopped(&self) {
        self.inner.shutdown.cancelled().await
    }

    /// Stops the node: the loop, the server, the apply worker; flushes the log.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        if let Some(log) = lock(&self.inner.log).take() {
            let _ = log.flush();
        }
        // The apply worker ends when the loop (its last sender) is gone.
        let th = lock(&self.inner.apply_thread).take();
        if let Some(th) = th {
            let _ = tokio::task::spawn_blocking(move || th.join()).await;
        }
    }
}
