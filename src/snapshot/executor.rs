//! `SnapshotExecutor`: drives save and load (and, in `install`, remote
//! installs) of one node's snapshots over a [`LocalSnapshotStorage`], and
//! keeps them from overlapping: one of idle / saving / downloading / loading
//! at a time.
//!
//! The executor owns no thread: callers run `do_snapshot` and loads on a
//! worker (never on the raft loop). The state machine sits behind a mutex
//! shared with the apply path; a save holds it only while the state machine
//! captures its state (hard links, a small metadata file), and writes the meta
//! table and fsyncs after releasing it, so applying resumes at once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tracing::{info, info_span};

use crate::proto::snapshot::SnapshotMeta;
use crate::snapshot::error::{BoxError, SnapshotError};
use crate::snapshot::reader::SnapshotReader;
use crate::snapshot::storage::LocalSnapshotStorage;
use crate::snapshot::writer::SnapshotWriter;

/// The replicated state machine, as the snapshot layer sees it.
///
/// Contract:
/// - `on_snapshot_save` captures the state as of `meta.last_included_index`
///   (every entry up to it applied, none after) into `writer`. Files handed
///   over by hard link must never be modified afterwards.
/// - `on_snapshot_load` replaces the whole state with the snapshot's. After it
///   returns, the state is exactly as it was at the snapshot's index.
/// - Either may fail; the executor then leaves the last good state on disk.
pub trait StateMachine: Send + 'static {
    /// Writes the state into a new snapshot.
    fn on_snapshot_save(
        &mut self,
        writer: &mut SnapshotWriter,
        meta: &SnapshotMeta,
    ) -> Result<(), BoxError>;

    /// Replaces the state with the snapshot's.
    fn on_snapshot_load(&mut self, reader: &SnapshotReader) -> Result<(), BoxError>;
}

/// A state machine with the raft position it has applied up to.
#[derive(Debug)]
pub struct AppliedState<S> {
    /// The state machine.
    pub state_machine: S,
    /// Index, term and membership of the last entry applied to it.
    pub applied: SnapshotMeta,
}

/// The state machine shared between the apply path and the executor.
pub type SharedStateMachine<S> = Arc<Mutex<AppliedState<S>>>;

/// Wraps a fresh state machine (nothing applied yet) for the executor.
pub fn shared<S>(state_machine: S) -> SharedStateMachine<S> {
    Arc::new(Mutex::new(AppliedState {
        state_machine,
        applied: SnapshotMeta::default(),
    }))
}

/// What the executor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing.
    Idle,
    /// A local save.
    Saving,
    /// Fetching a snapshot from a peer.
    Downloading,
    /// Loading a snapshot into the state machine.
    Loading,
}

impl Phase {
    fn busy_reason(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Saving => "a snapshot save is in progress",
            Phase::Downloading => "a snapshot install is in progress",
            Phase::Loading => "a snapshot is being loaded",
        }
    }
}

/// Options of a [`SnapshotExecutor`].
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// A save is a no-op unless at least this many entries were applied since
    /// the last snapshot (default 1).
    pub snapshot_min_gap: u64,
    /// Recompute every file's crc32c before loading a snapshot (default true).
    pub verify_on_load: bool,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            snapshot_min_gap: 1,
            verify_on_load: true,
        }
    }
}

/// The result of [`SnapshotExecutor::do_snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub enum SaveOutcome {
    /// A new snapshot was committed; the log may be compacted up to it.
    Saved(SnapshotMeta),
    /// Too few entries applied since the last snapshot; nothing was written.
    Skipped {
        /// Index applied by the state machine.
        applied_index: u64,
        /// Index of the latest snapshot.
        last_snapshot_index: u64,
    },
}

/// Counters since the executor was created (Prometheus-style `_total`s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Snapshots saved.
    pub saves_total: u64,
    /// Saves that failed.
    pub save_failures_total: u64,
    /// Snapshots loaded into the state machine.
    pub loads_total: u64,
}

struct ExecState {
    phase: Phase,
    stats: ExecutorStats,
}

/// Drives save and load of one node's snapshots. See the module docs.
pub struct SnapshotExecutor<S: StateMachine> {
    storage: LocalSnapshotStorage,
    fsm: SharedStateMachine<S>,
    opts: ExecutorOptions,
    state: Mutex<ExecState>,
    idle: Condvar,
}

/// Resets the phase to idle when a save or load ends, however it ends.
struct PhaseGuard<'a> {
    state: &'a Mutex<ExecState>,
    idle: &'a Condvar,
}

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        lock(self.state).phase = Phase::Idle;
        self.idle.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: StateMachine> SnapshotExecutor<S> {
    /// An executor over `storage` and the shared state machine.
    pub fn new(
        storage: LocalSnapshotStorage,
        fsm: SharedStateMachine<S>,
        opts: ExecutorOptions,
    ) -> Self {
        Self {
            storage,
            fsm,
            opts,
            state: Mutex::new(ExecState {
                phase: Phase::Idle,
                stats: ExecutorStats::default(),
            }),
            idle: Condvar::new(),
        }
    }

    /// The storage.
    pub fn storage(&self) -> &LocalSnapshotStorage {
        &self.storage
    }

    /// The shared state machine (the apply path locks it to apply entries).
    pub fn state_machine(&self) -> &SharedStateMachine<S> {
        &self.fsm
    }

    /// What the executor is doing now.
    pub fn phase(&self) -> Phase {
        lock(&self.state).phase
    }

    /// Counters since creation.
    pub fn stats(&self) -> ExecutorStats {
        lock(&self.state).stats
    }

    fn enter(&self, phase: Phase) -> Result<PhaseGuard<'_>, SnapshotError> {
        let mut st = lock(&self.state);
        if st.phase != Phase::Idle {
            return Err(SnapshotError::Busy(st.phase.busy_reason()));
        }
        st.phase = phase;
        Ok(PhaseGuard {
            state: &self.state,
            idle: &self.idle,
        })
    }

    /// Waits until the executor is idle or `timeout` passes; true if idle.
    pub fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let st = lock(&self.state);
        let (st, _) = self
            .idle
            .wait_timeout_while(st, timeout, |s| s.phase != Phase::Idle)
            .unwrap_or_else(|p| p.into_inner());
        st.phase == Phase::Idle
    }

    /// Takes a snapshot of the state machine at its applied index.
    ///
    /// `Busy` while another save, an install or a load runs; `Skipped` when
    /// fewer than `snapshot_min_gap` entries were applied since the last
    /// snapshot. Any error leaves the previous snapshot intact and `temp/`
    /// removed; the caller must then not compact the log.
    pub fn do_snapshot(&self) -> Result<SaveOutcome, SnapshotError> {
        let _phase = self.enter(Phase::Saving)?;
        let res = self.save();
        if res.is_err() {
            lock(&self.state).stats.save_failures_total += 1;
        }
        res
    }

    fn save(&self) -> Result<SaveOutcome, SnapshotError> {
        let mut fsm = lock(&self.fsm);
        let meta = fsm.applied.clone();
        let last = self.storage.latest_index();
        let applied_index = meta.last_included_index;
        if applied_index == 0
            || applied_index.saturating_sub(last) < self.opts.snapshot_min_gap.max(1)
        {
            return Ok(SaveOutcome::Skipped {
                applied_index,
                last_snapshot_index: last,
            });
        }
        let _span = info_span!("snapshot_save", snapshot_index = applied_index).entered();
        let mut writer = self.storage.create_writer(meta.clone())?;
        fsm.state_machine
            .on_snapshot_save(&mut writer, &meta)
            .map_err(|source| SnapshotError::StateMachine {
                op: "save",
                index: applied_index,
                source,
            })?;
        // The capture is done: applying may resume while we make it durable.
        drop(fsm);
        let meta = self.storage.close_writer(writer)?;
        lock(&self.state).stats.saves_total += 1;
        Ok(SaveOutcome::Saved(meta))
    }

    /// Loads the newest local snapshot at startup. `first_log_index` is the
    /// first entry the raft log still holds (1 for a log that starts at the
    /// beginning): if the log does not reach the snapshot, the node must not
    /// start, and the error says what to do.
    pub fn load_latest(&self, first_log_index: u64) -> Result<Option<SnapshotMeta>, SnapshotError> {
        let _phase = self.enter(Phase::Loading)?;
        let reader = self.storage.open_reader();
        let snapshot_index = reader.as_ref().map_or(0, SnapshotReader::index);
        if first_log_index > snapshot_index + 1 {
            let broken = crate::snapshot::storage::scan(self.storage.root())
                .map(|v| v.into_iter().filter(|s| s.kind == "broken").count())
                .unwrap_or(0);
            let mut hint = String::from(
                "Restore this node from a backup, or wipe its data directory and add it back to \
                 the cluster so that it installs a snapshot from the leader.",
            );
            if broken > 0 {
                hint.push_str(&format!(
                    " A newer snapshot failed validation and was kept as *.broken under {}.",
                    self.storage.root().display()
                ));
            }
            return Err(SnapshotError::LogGap {
                snapshot_index,
                first_log_index,
                hint,
            });
        }
        match reader {
            None => Ok(None),
            Some(r) => self.load_reader(&r).map(Some),
        }
    }

    /// Replaces the state machine's state with `reader`'s snapshot (after an
    /// install). `Busy` while a save or another load runs.
    pub fn load(&self, reader: &SnapshotReader) -> Result<SnapshotMeta, SnapshotError> {
        let _phase = self.enter(Phase::Loading)?;
        self.load_reader(reader)
    }

    fn load_reader(&self, reader: &SnapshotReader) -> Result<SnapshotMeta, SnapshotError> {
        let meta = reader.meta().clone();
        let _span =
            info_span!("snapshot_load", snapshot_index = meta.last_included_index).entered();
        if self.opts.verify_on_load {
            reader.verify()?;
        }
        let mut fsm = lock(&self.fsm);
        fsm.state_machine
            .on_snapshot_load(reader)
            .map_err(|source| SnapshotError::StateMachine {
                op: "load",
                index: meta.last_included_index,
                source,
            })?;
        fsm.applied = meta.clone();
        drop(fsm);
        lock(&self.state).stats.loads_total += 1;
        info!(snapshot_index = meta.last_included_index, "snapshot loaded");
        Ok(meta)
    }
}
