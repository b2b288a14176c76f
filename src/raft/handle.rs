//! `NodeHandle`: the one door to a running node. Everything above the raft
//! layer (HTTP API, snapshotter, restore, demo) reaches the state machine
//! through [`NodeHandle::propose`] (a typed command in, the state machine's
//! typed answer out, once applied here) and [`NodeHandle::read`] (a closure
//! on the state machine after a linearizable read-index round, or a stale
//! local read when asked for).

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::raft::config::NodeConfig;
use crate::raft::error::RaftError;
use crate::raft::fsm::{NodeFsm, ReplicatedStateMachine};
use crate::raft::log_store::WalLogStore;
use crate::raft::membership::MembershipChange;
use crate::raft::ready_loop::{Fault, Inbound, LoopTx, RaftCounters, ask, lock};
use crate::raft::status::Status;
use crate::snapshot::{ExecutorStats, SaveOutcome, SnapshotError, SnapshotExecutor, SnapshotMeta};

/// How a read sees the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    /// Sees every write acknowledged before the read began, on any node: a
    /// read-index round with the leader, then wait until applied up to it.
    #[default]
    Linearizable,
    /// This node's state as it is: no round, may miss recent writes on a
    /// follower (the opt-in for cheap, possibly stale reads).
    Stale,
}

/// The raft position a read sees: the last entry applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Its index.
    pub index: u64,
    /// Its term.
    pub term: u64,
}

/// A running node. Cheap to clone.
pub struct NodeHandle<S: ReplicatedStateMachine> {
    pub(crate) inner: Arc<HandleInner<S>>,
}

impl<S: ReplicatedStateMachine> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct HandleInner<S: ReplicatedStateMachine> {
    pub id: u64,
    pub addr: SocketAddr,
    pub cfg: NodeConfig,
    pub to_loop: LoopTx,
    pub exec: Arc<SnapshotExecutor<NodeFsm<S>>>,
    pub applied_rx: watch::Receiver<u64>,
    /// The log store; released by `shutdown` so the node can restart in-process.
    pub log: Mutex<Option<Arc<WalLogStore>>>,
    pub counters: Arc<Mutex<RaftCounters>>,
    pub saving: Arc<AtomicBool>,
    pub shutdown: CancellationToken,
    pub fault: Fault,
    pub tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Where damaged files found outside the node (a backup) are reported.
    pub findings: tokio::sync::mpsc::UnboundedSender<crate::raft::repair::Finding>,
    /// The state machine's staged files, if it has any.
    pub staging: Option<Arc<crate::snapshot::StagingArea>>,
    pub peers: crate::raft::fsm::Peers,
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
    /// it), and starts the raft loop, the persistence and apply threads and
    /// the server.
    pub async fn start(
        cfg: NodeConfig,
        state_machine: S,
        listener: std::net::TcpListener,
    ) -> Result<Self, RaftError> {
        crate::raft::bootstrap::start(cfg, state_machine, listener, None).await
    }

    /// Like [`start`](Self::start); installs also reuse the live files that
    /// `lookup` finds (same name, size and crc32c) by hard link.
    pub async fn start_with(
        cfg: NodeConfig,
        state_machine: S,
        listener: std::net::TcpListener,
        lookup: Option<Arc<dyn crate::snapshot::LocalFileLookup>>,
    ) -> Result<Self, RaftError> {
        crate::raft::bootstrap::start(cfg, state_machine, listener, lookup).await
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The gRPC address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    /// The snapshot executor (for the snapshot subsystem's own tools:
    /// statistics, storage, installs). The state machine is reached through
    /// [`propose`](Self::propose) and [`read`](Self::read) only.
    pub fn executor(&self) -> &Arc<SnapshotExecutor<NodeFsm<S>>> {
        &self.inner.exec
    }

    /// Reports files of the live state that failed their checksums (found
    /// by a reader outside the node, e.g. a backup): the node checks every
    /// file and repairs itself as after a scrub finding.
    pub fn report_damage(&self, found_by: &'static str, files: Vec<String>) {
        let _ = self
            .inner
            .findings
            .send(crate::raft::repair::Finding::Damaged { found_by, files });
    }

    /// The state machine's staged files (bulk data by file), if it has any.
    pub fn staging(&self) -> Option<&Arc<crate::snapshot::StagingArea>> {
        self.inner.staging.as_ref()
    }

    /// Has every other member fetch staged set `set` from this node, at
    /// once; returns the ids of the members that hold it now (this node
    /// first). Fails unless a majority of the voters holds it: a command
    /// naming the set must stay applicable if this node dies right after
    /// it commits.
    pub async fn stage_on_members(
        &self,
        set: &crate::snapshot::StagedSet,
    ) -> Result<Vec<u64>, RaftError> {
        let voters: Vec<u64> = {
            let fsm = self
                .inner
                .exec
                .state_machine()
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            fsm.applied.voters.clone()
        };
        let others: Vec<(u64, String)> = self
            .inner
            .peers
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(id, _)| *id != self.inner.id)
            .collect();
        let manifest = set.meta_bytes();
        let bytes: u64 = set.files().iter().map(|f| f.size).sum();
        // Generous: the slowest install rate the node accepts, plus a floor.
        let deadline = Duration::from_secs(30)
            + Duration::from_secs(bytes / self.inner.cfg.install_min_rate.max(1));
        let asks = others.into_iter().map(|(peer, addr)| {
            let req = crate::proto::raft::StageRequest {
                from: self.inner.id,
                id: set.id,
                manifest: manifest.as_ref().clone(),
            };
            async move {
                let Some(mut c) = crate::raft::transport::client(&addr) else {
                    return (peer, Err(format!("node {peer}: bad address {addr}")));
                };
                match tokio::time::timeout(deadline, c.stage(req)).await {
                    Ok(Ok(_)) => (peer, Ok(())),
                    Ok(Err(s)) => (peer, Err(format!("node {peer}: {}", s.message()))),
                    Err(_) => (peer, Err(format!("node {peer}: no answer in {deadline:?}"))),
                }
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut holders = vec![self.inner.id];
        let mut errors = Vec::new();
        for (peer, r) in answers {
            match r {
                Ok(()) => holders.push(peer),
                Err(e) => errors.push(e),
            }
        }
        let held = voters.iter().filter(|v| holders.contains(v)).count();
        if !voters.is_empty() && held * 2 <= voters.len() {
            return Err(RaftError::NotStaged {
                id: set.id,
                held,
                voters: voters.len(),
                errors: errors.join("; "),
            });
        }
        if !errors.is_empty() {
            tracing::warn!(staging_id = %format!("{:016x}", set.id), errors = %errors.join("; "), "some members did not stage the files; they fetch them when they apply");
        }
        Ok(holders)
    }

    /// Counters of the snapshot executor since the process started.
    pub fn snapshot_stats(&self) -> ExecutorStats {
        self.inner.exec.stats()
    }

    /// Index applied to the state machine.
    pub fn applied_index(&self) -> u64 {
        *self.inner.applied_rx.borrow()
    }

    /// The fatal error that stopped this node, if one did. A fenced node
    /// serves nothing: every proposal and read fails with it.
    pub fn fault(&self) -> Option<String> {
        lock(&self.inner.fault).clone()
    }

    fn stopped_error(&self) -> RaftError {
        match self.fault() {
            Some(f) => RaftError::Fenced(f),
            None => RaftError::Shutdown,
        }
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
        self.inner.to_loop.send(m).map_err(|_| self.stopped_error())
    }

    async fn ask(
        &self,
        make: impl FnOnce(super::apply::Reply) -> Inbound,
    ) -> Result<(u64, Vec<u8>), RaftError> {
        if let Some(f) = self.fault() {
            return Err(RaftError::Fenced(f));
        }
        match ask(&self.inner.to_loop, self.inner.cfg.proposal_timeout, make).await {
            Err(RaftError::Shutdown) => Err(self.stopped_error()),
            r => r,
        }
    }

    /// Proposes a command; answers once it is committed and applied on this
    /// node, with its index and the state machine's answer. A follower
    /// forwards it to the leader.
    pub async fn propose(&self, command: &S::Command) -> Result<(u64, S::Answer), RaftError> {
        let (index, bytes) = self.propose_bytes(command.encode_to_vec()).await?;
        let answer = S::Answer::decode(&bytes[..]).map_err(|e| {
            RaftError::Internal(format!("the answer to entry {index} does not decode: {e}"))
        })?;
        Ok((index, answer))
    }

    async fn propose_bytes(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), RaftError> {
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
                let mut c = crate::raft::transport::client(&addr)
                    .ok_or_else(|| RaftError::BadLeaderAddress(addr.clone()))?;
                let t = self.inner.cfg.proposal_timeout;
                let r = tokio::time::timeout(
                    t,
                    c.propose(crate::proto::raft::ProposeRequest {
                        command,
                        from: self.inner.id,
                    }),
                )
                .await
                .map_err(|_| RaftError::Timeout(t))?
                .map_err(|s| RaftError::Forward {
                    leader: addr.clone(),
                    status: Box::new(s),
                })?
                .into_inner();
                // Answer once this node has applied it too (read-your-writes here).
                if !self.wait_applied(r.index, t).await {
                    return Err(RaftError::Timeout(t));
                }
                Ok((r.index, r.result))
            }
            r => r,
        }
    }

    /// A read-index round: the index this node must apply before a read
    /// started now sees every write acknowledged before it.
    pub async fn read_index(&self) -> Result<u64, RaftError> {
        if let Some(f) = self.fault() {
            return Err(RaftError::Fenced(f));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Inbound::ReadIndex(tx))?;
        let t = self.inner.cfg.proposal_timeout;
        match tokio::time::timeout(t, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.stopped_error()),
            Err(_) => Err(RaftError::NoQuorum(t)),
        }
    }

    /// Runs `f` on a read view of the state machine (see
    /// [`ReplicatedStateMachine::view`]), on a blocking thread: never on the
    /// async workers, never on the raft loop, never under the apply lock
    /// (which is held only to take the view). `Linearizable` first runs a
    /// read-index round and waits until this node has applied up to it.
    pub async fn read<R, F>(&self, consistency: ReadConsistency, f: F) -> Result<R, RaftError>
    where
        R: Send + 'static,
        F: FnOnce(&S::View, Applied) -> R + Send + 'static,
    {
        if let Some(fault) = self.fault() {
            return Err(RaftError::Fenced(fault));
        }
        if consistency == ReadConsistency::Linearizable {
            let index = self.read_index().await?;
            let t = self.inner.cfg.proposal_timeout;
            if !self.wait_applied(index, t).await {
                return Err(self
                    .fault()
                    .map_or(RaftError::Timeout(t), RaftError::Fenced));
            }
        }
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let (view, at) = node.local(|s, at| (s.view(), at));
            f(&view, at)
        })
        .await
        .map_err(|e| RaftError::Internal(format!("read task failed: {e}")))
    }

    /// Runs `f` on this node's state machine as it is now, on the calling
    /// thread (call it from a blocking thread: it waits for the apply lock).
    /// For local work that must not change the replicated state: flushing a
    /// cache into files before they are backed up, naming scratch files.
    pub fn local<R>(&self, f: impl FnOnce(&mut S, Applied) -> R) -> R {
        let mut g = self
            .inner
            .exec
            .state_machine()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let at = Applied {
            index: g.applied.last_included_index,
            term: g.applied.last_included_term,
        };
        f(&mut g.state_machine.inner, at)
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
                let mut c = crate::raft::transport::client(&addr)
                    .ok_or_else(|| RaftError::BadLeaderAddress(addr.clone()))?;
                let req = match change {
                    MembershipChange::Add { id, addr } => crate::proto::raft::MembershipRequest {
                        op: 0,
                        id,
                        addr,
                        from: self.inner.id,
                    },
                    MembershipChange::Remove { id } => crate::proto::raft::MembershipRequest {
                        op: 1,
                        id,
                        addr: String::new(),
                        from: self.inner.id,
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
        if let Some(f) = self.fault() {
            return Err(RaftError::Fenced(f));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Inbound::Status(tx))?;
        match tokio::time::timeout(Duration::from_secs(5), rx).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(_)) => Err(self.stopped_error()),
            Err(_) => Err(RaftError::Internal(
                "the raft loop did not answer within 5 s".into(),
            )),
        }
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
        .map_err(|e| RaftError::Internal(format!("snapshot task failed: {e}")))??;
        self.send(Inbound::SnapshotSaved(meta.clone()))?;
        Ok(meta)
    }

    /// Resolves once the node is stopping (shutdown or a fatal error; see
    /// [`fault`](Self::fault)).
    pub async fn stopped(&self) {
        self.inner.shutdown.cancelled().await
    }

    /// Stops the node: the loop, the server, the worker threads.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let _ = self.inner.to_loop.send(Inbound::Wake);
        let tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        // The loop ends on the token; the persistence and apply threads end
        // when their last sender (the loop) is gone.
        let threads: Vec<_> = lock(&self.inner.threads).drain(..).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for th in threads {
                let _ = th.join();
            }
        })
        .await;
        lock(&self.inner.log).take();
    }
}
