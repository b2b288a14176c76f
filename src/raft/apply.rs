//! The apply worker: a thread that applies committed entries to the state
//! machine in order, answers proposals, loads installed snapshots, and starts
//! saves (on yet another thread) when a trigger fires. The raft loop only
//! hands it work, so nothing here can stall ticks or heartbeats.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message as _;
use raft::prelude::{ConfState, Entry, EntryType};
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use crate::proto::raft::EntryContext;
use crate::raft::error::RaftError;
use crate::raft::fsm::{NodeFsm, ReplicatedStateMachine};
use crate::raft::log_store::{LogStore, WalLogStore};
use crate::raft::ready_loop::{Inbound, LoopTx};
use crate::raft::snapshot_source::set_membership;
use crate::snapshot::{
    ApplyError, SaveOutcome, SnapshotError, SnapshotExecutor, SnapshotReader, StagingArea,
};
use tokio_util::sync::CancellationToken;

/// The answer to a proposal: the entry's index and the state machine's answer.
pub type Reply = oneshot::Sender<Result<(u64, Vec<u8>), RaftError>>;
/// Proposals waiting for their entry to be applied, by proposal id.
pub(crate) type Proposals = Arc<Mutex<HashMap<u64, Reply>>>;

/// One committed entry, with the conf state after it for a conf change.
pub(crate) struct Committed {
    pub entry: Entry,
    pub conf: Option<ConfState>,
}

/// Work for the apply worker.
pub(crate) enum ApplyTask {
    /// Apply these entries in order.
    Committed(Vec<Committed>),
    /// Load the installed snapshot at this index.
    Load(u64),
    /// Start a save now (a follower needs a snapshot, the timer fired).
    Save,
    /// Replace the state, which failed its checksums, by this sound
    /// snapshot's plus the log after it (see [`crate::raft::repair`]).
    Reseed {
        reader: SnapshotReader,
        done: oneshot::Sender<Result<u64, String>>,
    },
}

pub(crate) struct ApplyWorker<S: ReplicatedStateMachine> {
    pub exec: Arc<SnapshotExecutor<NodeFsm<S>>>,
    pub proposals: Proposals,
    pub to_loop: LoopTx,
    pub applied_tx: watch::Sender<u64>,
    pub log_gap: u64,
    pub log_bytes: u64,
    pub saving: Arc<AtomicBool>,
    pub log: Arc<WalLogStore>,
    /// Staged files commands need (bulk data by file), if the state machine has any.
    pub staging: Option<Arc<StagingArea>>,
    pub shutdown: CancellationToken,
}

/// How often ended staging leases are looked for.
const RELEASE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl<S: ReplicatedStateMachine> ApplyWorker<S> {
    /// Runs until the task channel closes.
    pub(crate) fn run(self, rx: std::sync::mpsc::Receiver<ApplyTask>) {
        let mut bytes_since = 0u64;
        let mut released = std::time::Instant::now();
        while let Ok(task) = rx.recv() {
            match task {
                ApplyTask::Committed(entries) => {
                    bytes_since += entries
                        .iter()
                        .map(|c| c.entry.data.len() as u64)
                        .sum::<u64>();
                    let staged = match self.obtain_staged(&entries) {
                        Ok(s) => s,
                        // Shutting down mid-fetch: nothing failed (a restart
                        // fetches the set again before applying the entry).
                        Err(_) if self.shutdown.is_cancelled() => return,
                        Err(e) => {
                            error!(error = %e, "staged files a command needs cannot be obtained; stopping the node");
                            let _ = self.to_loop.send(Inbound::Fatal(e));
                            return;
                        }
                    };
                    let applied = match self.apply(entries) {
                        Ok(a) => a,
                        Err(e) => {
                            error!(error = %e, "the state machine cannot apply; stopping the node");
                            let _ = self.to_loop.send(Inbound::Fatal(e));
                            return;
                        }
                    };
                    if let Some(staging) = &self.staging {
                        for (id, index) in staged {
                            if let Err(e) = staging.mark_applied(id, index) {
                                warn!(error = %e, "could not record a staged set's lease");
                            }
                        }
                        if released.elapsed() >= RELEASE_EVERY {
                            released = std::time::Instant::now();
                            staging.release(self.log.first_index());
                        }
                    }
                    if let Some(last) = applied {
                        // (`apply` told the raft loop already.)
                        let _ = self.applied_tx.send(last);
                        let since = last.saturating_sub(self.exec.storage().latest_index());
                        if since >= self.log_gap || bytes_since >= self.log_bytes {
                            bytes_since = 0;
                            start_save(&self.exec, &self.saving, &self.to_loop);
                        }
                    }
                }
                ApplyTask::Load(index) => {
                    let res = self
                        .exec
                        .storage()
                        .open_reader_at(index)
                        .and_then(|r| self.exec.load(&r));
                    match res {
                        Ok(meta) => {
                            bytes_since = 0;
                            let _ = self.applied_tx.send(meta.last_included_index);
                            let _ = self
                                .to_loop
                                .send(Inbound::Applied(meta.last_included_index));
                        }
                        Err(e) => {
                            error!(snapshot_index = index, error = %e, "installed snapshot failed to load; stopping the node");
                            let _ = self
                                .to_loop
                                .send(Inbound::Fatal(format!("load of snapshot {index}: {e}")));
                            return;
                        }
                    }
                }
                ApplyTask::Save => start_save(&self.exec, &self.saving, &self.to_loop),
                ApplyTask::Reseed { reader, done } => match self.reseed(&reader) {
                    Ok(applied) => {
                        bytes_since = 0;
                        let _ = self.applied_tx.send(applied);
                        let _ = done.send(Ok(applied));
                    }
                    Err(Reseed::NotStarted(e)) => {
                        let _ = done.send(Err(e));
                    }
                    Err(Reseed::Broken(e)) => {
                        // The state was replaced but not brought back to the
                        // applied index: going on would diverge. A restart
                        // loads the sound snapshot and replays the log.
                        error!(error = %e, "repair failed half-way; stopping the node");
                        let _ = done.send(Err(e.clone()));
                        let _ = self
                            .to_loop
                            .send(Inbound::Fatal(format!("repair failed half-way: {e}")));
                        return;
                    }
                },
            }
        }
    }

    /// Obtains the staged sets that these entries' commands need (and that
    /// are not in the loaded state already) before the apply lock is
    /// taken: fetching them never blocks readers. Returns (set, index).
    fn obtain_staged(&self, entries: &[Committed]) -> Result<Vec<(u64, u64)>, String> {
        let Some(staging) = &self.staging else {
            return Ok(Vec::new());
        };
        let needs: Vec<(u64, crate::snapshot::StagedNeed)> = entries
            .iter()
            .filter(|c| c.entry.get_entry_type() == EntryType::EntryNormal)
            .filter_map(|c| S::staged_need(&c.entry.data).map(|n| (c.entry.index, n)))
            .collect();
        if needs.is_empty() {
            return Ok(Vec::new());
        }
        let applied = self.applied_index();
        let mut out = Vec::new();
        for (index, need) in needs {
            if index <= applied {
                continue;
            }
            staging
                .obtain(&need, &self.shutdown)
                .map_err(|e| format!("entry {index}: {e}"))?;
            out.push((need.id, index));
        }
        Ok(out)
    }

    /// Loads `reader`'s snapshot and re-applies the log after it up to the
    /// index applied before (answers are dropped: their proposers heard
    /// them the first time). Returns the index applied afterwards.
    fn reseed(&self, reader: &SnapshotReader) -> Result<u64, Reseed> {
        let log = self.log.clone();
        // The log must hold every entry after the snapshot; compaction
        // cannot pass it meanwhile (saves are held off during a repair).
        if log.first_index() > reader.index() + 1 {
            return Err(Reseed::NotStarted(format!(
                "the log starts at {}, after snapshot {}",
                log.first_index(),
                reader.index()
            )));
        }
        let meta = self
            .exec
            .reseed(reader, |fsm, before| {
                let from = fsm.applied.last_included_index;
                let to = before.last_included_index;
                if to <= from {
                    return Ok(());
                }
                let mut next = from + 1;
                while next <= to {
                    let entries = log
                        .entries(next, to + 1, Some(64 << 20))
                        .map_err(|e| format!("log entries {next}..={to}: {e}"))?;
                    let Some(last) = entries.last().map(|e| e.index) else {
                        return Err(format!("the log holds no entry {next}"));
                    };
                    for entry in &entries {
                        if entry.get_entry_type() == EntryType::EntryNormal
                            && !entry.data.is_empty()
                        {
                            apply_one(&mut fsm.state_machine.inner, entry)
                                .map_err(|e| format!("re-applying entry {}: {e}", entry.index))?;
                        }
                    }
                    next = last + 1;
                }
                fsm.applied = before.clone();
                info!(from, to, "log re-applied after the sound snapshot");
                Ok(())
            })
            .map_err(|e| match e {
                SnapshotError::StateMachine { .. } | SnapshotError::InstallFailed { .. } => {
                    Reseed::Broken(e.to_string())
                }
                e => Reseed::NotStarted(e.to_string()),
            })?;
        Ok(self.applied_index().max(meta.last_included_index))
    }

    /// The index the state machine has applied.
    fn applied_index(&self) -> u64 {
        self.exec
            .state_machine()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .applied
            .last_included_index
    }

    /// Applies entries; returns the last index applied, or the error that
    /// stops the node (the entries before it stay applied).
    fn apply(&self, entries: Vec<Committed>) -> Result<Option<u64>, String> {
        let mut fsm = self
            .exec
            .state_machine()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut last = None;
        let mut replies = Vec::new();
        let mut failed = None;
        for Committed { entry, conf } in entries {
            if entry.index <= fsm.applied.last_included_index {
                continue; // already in the loaded snapshot
            }
            let ctx = EntryContext::decode(&entry.context[..]).unwrap_or_default();
            let result = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => Vec::new(),
                EntryType::EntryNormal => match apply_one(&mut fsm.state_machine.inner, &entry) {
                    Ok(answer) => answer,
                    Err(e) => {
                        failed = Some(format!("apply of entry {}: {e}", entry.index));
                        break;
                    }
                },
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => Vec::new(),
            };
            if let Some(cs) = conf {
                set_membership(&mut fsm.applied, &cs);
            }
            fsm.applied.last_included_index = entry.index;
            fsm.applied.last_included_term = entry.term;
            if ctx.proposal_id != 0 {
                replies.push((ctx.proposal_id, entry.index, result));
            }
            last = Some(entry.index);
        }
        drop(fsm);
        // The raft loop learns what is applied before any caller does: a
        // caller's next request (a membership change right after one that
        // was answered) then never meets raft's pending-change check ahead
        // of the applied index it needs.
        if let Some(last) = last {
            let _ = self.to_loop.send(Inbound::Applied(last));
        }
        let mut map = self.proposals.lock().unwrap_or_else(|p| p.into_inner());
        for (id, index, result) in replies {
            if let Some(tx) = map.remove(&id) {
                let _ = tx.send(Ok((index, result)));
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(last),
        }
    }
}

/// Why a reseed failed: before the state was touched, or half-way.
enum Reseed {
    NotStarted(String),
    Broken(String),
}

/// The state machine's `apply`, behind the `apply::reject` failpoint:
/// `apply::reject=return(MARKER)` rejects every command whose bytes contain
/// MARKER, on every replica alike (tests of a command that fails at apply).
fn apply_checked<S: ReplicatedStateMachine>(
    fsm: &mut S,
    entry: &Entry,
    cmd: S::Command,
) -> Result<S::Answer, ApplyError> {
    #[cfg(feature = "failpoints")]
    if let Some(Some(marker)) = fail::eval("apply::reject", |arg| arg)
        && entry
            .data
            .windows(marker.len().max(1))
            .any(|w| w == marker.as_bytes())
    {
        return Err(ApplyError::Rejected(format!(
            "rejected at apply by failpoint apply::reject ({marker})"
        )));
    }
    fsm.apply(entry.index, entry.term, cmd)
}

/// Applies one normal entry; returns the encoded answer for its proposer.
/// A command that does not decode or that the state machine rejects is
/// answered with the rejection (every replica decides alike) and the node
/// goes on; `Err` is a fatal local failure.
fn apply_one<S: ReplicatedStateMachine>(fsm: &mut S, entry: &Entry) -> Result<Vec<u8>, String> {
    let answer = match S::Command::decode(&entry.data[..]) {
        Err(e) => S::rejected(format!("command does not decode: {e}")),
        Ok(cmd) => {
            let res = apply_checked(fsm, entry, cmd);
            match res {
                Ok(a) => a,
                Err(ApplyError::Rejected(reason)) => {
                    warn!(index = entry.index, %reason, "command rejected at apply; state unchanged");
                    S::rejected(reason)
                }
                Err(ApplyError::Fatal(e)) => return Err(e.to_string()),
            }
        }
    };
    Ok(answer.encode_to_vec())
}

/// Starts a save on its own thread unless one is running; a committed
/// snapshot is reported to the loop, which compacts the log.
pub(crate) fn start_save<S: ReplicatedStateMachine>(
    exec: &Arc<SnapshotExecutor<NodeFsm<S>>>,
    saving: &Arc<AtomicBool>,
    to_loop: &LoopTx,
) {
    if saving.swap(true, Ordering::AcqRel) {
        return;
    }
    let (exec, flag, to_loop) = (exec.clone(), saving.clone(), to_loop.clone());
    let spawned = std::thread::Builder::new()
        .name("snapshot-save".into())
        .spawn(move || {
            match exec.do_snapshot() {
                Ok(SaveOutcome::Saved(meta)) => {
                    info!(
                        snapshot_index = meta.last_included_index,
                        "snapshot saved; compacting the log"
                    );
                    let _ = to_loop.send(Inbound::SnapshotSaved(meta));
                }
                Ok(SaveOutcome::Skipped { .. }) | Err(SnapshotError::Busy(_)) => {}
                Err(e) => warn!(error = %e, "snapshot save failed; the log is not compacted"),
            }
            flag.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "could not start a snapshot save thread");
        saving.store(false, Ordering::Release);
    }
}
