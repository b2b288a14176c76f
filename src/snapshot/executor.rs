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
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use crate::proto::snapshot::{SnapshotMeta, SnapshotMetaTable};
use crate::snapshot::copier::{
    AlternateSource, CopierOptions, InstallProgress, LocalFileLookup, ProgressSnapshot,
    RemoteFileCopier, SnapshotUri,
};
use crate::snapshot::error::{BoxError, SnapshotError};
use crate::snapshot::meta_table;
use crate::snapshot::reader::SnapshotReader;
use crate::snapshot::storage::LocalSnapshotStorage;
use crate::snapshot::throttle::SnapshotThrottle;
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

    /// The immutable files the live state reads, with the size and crc32c
    /// recorded when each was written (the background scrub re-reads them).
    /// None by default.
    fn live_files(&self) -> Vec<LiveFile> {
        Vec::new()
    }

    /// Where this state machine keeps staged files (bulk data that travels
    /// by file): the node serves them to other replicas and fetches the
    /// ones a command needs before applying it. `None`: no bulk data.
    fn staging(&self) -> Option<std::sync::Arc<crate::snapshot::StagingArea>> {
        None
    }
}

/// An immutable file of the live state, as [`StateMachine::live_files`]
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// Where it is.
    pub path: std::path::PathBuf,
    /// Its size when written.
    pub size: u64,
    /// Its crc32c when written.
    pub crc32c: u32,
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
    /// Replacing a state that failed its checksums (see
    /// [`SnapshotExecutor::reseed`]).
    Repairing,
}

impl Phase {
    fn busy_reason(self) -> &'static str {
        match self {
            Phase::Repairing => "the node is repairing its state from a sound snapshot",
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
    /// How an install fetches files.
    pub copier: CopierOptions,
    /// How long an install waits for a running save to end (default 30 s).
    pub install_save_wait: Duration,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            snapshot_min_gap: 1,
            verify_on_load: true,
            copier: CopierOptions::default(),
            install_save_wait: Duration::from_secs(30),
        }
    }
}

/// The result of [`SnapshotExecutor::fetch`].
#[derive(Debug)]
pub enum Fetched {
    /// This call downloaded and committed the snapshot.
    Downloaded {
        /// A reader on the new snapshot.
        reader: SnapshotReader,
        /// The copier's counters.
        progress: ProgressSnapshot,
    },
    /// A snapshot at least as new is already local; nothing was copied.
    AlreadyHave(SnapshotMeta),
    /// Another call was downloading the same snapshot; this one waited for it.
    Joined(SnapshotMeta),
}

/// The result of [`SnapshotExecutor::install`].
#[derive(Debug, Clone, PartialEq)]
pub enum InstallOutcome {
    /// The snapshot was downloaded and loaded into the state machine.
    Installed {
        /// Its meta.
        meta: SnapshotMeta,
        /// The copier's counters.
        progress: ProgressSnapshot,
    },
    /// Nothing to do: a snapshot at least as new is already local.
    AlreadyHave(SnapshotMeta),
    /// Another install of the same snapshot did the work.
    Joined(SnapshotMeta),
}

/// An install in progress, for `/status`.
#[derive(Debug, Clone)]
pub struct InstallStatus {
    /// The peer it is fetched from.
    pub from: String,
    /// Live counters.
    pub progress: Arc<InstallProgress>,
}

type JobResult = Option<Result<SnapshotMeta, String>>;

struct DownloadJob {
    index: u64,
    from: String,
    cancel: CancellationToken,
    done: watch::Receiver<JobResult>,
    progress: Arc<InstallProgress>,
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
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExecutorStats {
    /// Snapshots saved.
    pub saves_total: u64,
    /// Saves that failed.
    pub save_failures_total: u64,
    /// Snapshots loaded into the state machine.
    pub loads_total: u64,
    /// Snapshots downloaded and committed by an install.
    pub installs_total: u64,
    /// Installs that failed.
    pub install_failures_total: u64,
    /// Bytes fetched over the network by installs.
    pub install_bytes_total: u64,
    /// Bytes installs reused from local files by hard link.
    pub reused_bytes_total: u64,
    /// Seconds spent in saves.
    pub save_seconds_total: f64,
    /// Seconds spent in installs (fetch and commit).
    pub install_seconds_total: f64,
    /// Bytes this node's file service served to members (snapshots and
    /// staged sets).
    pub served_bytes_total: u64,
}

/// The last failed install on this node (the receiving side), for
/// `/status`; cleared by the next install that succeeds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstallFailureRecord {
    /// Snapshot index.
    pub index: u64,
    /// The peer it was fetched from.
    pub from: String,
    /// What went wrong.
    pub reason: String,
    /// Failed installs in a row.
    pub attempts: u32,
}

struct ExecState {
    phase: Phase,
    /// Snapshots this executor just installed: every byte was checked
    /// against its crc32c on arrival, so their load does not read them all
    /// again (after direct writes that would be a read from the disk).
    installed_verified: std::collections::BTreeSet<u64>,
    last_failure: Option<InstallFailureRecord>,
    /// A repair is under way: saves are refused (they would capture the
    /// damaged state) until it ends.
    repairing: bool,
    stats: ExecutorStats,
    job: Option<DownloadJob>,
}

/// Drives save and load of one node's snapshots. See the module docs.
pub struct SnapshotExecutor<S: StateMachine> {
    storage: LocalSnapshotStorage,
    fsm: SharedStateMachine<S>,
    opts: ExecutorOptions,
    state: Mutex<ExecState>,
    idle: Condvar,
    throttle: Arc<SnapshotThrottle>,
    lookup: Option<Arc<dyn LocalFileLookup>>,
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
                installed_verified: Default::default(),
                last_failure: None,
                repairing: false,
                stats: ExecutorStats::default(),
                job: None,
            }),
            idle: Condvar::new(),
            throttle: Arc::new(SnapshotThrottle::default()),
            lookup: None,
        }
    }

    /// Uses `throttle` for install rates and concurrency.
    pub fn with_throttle(mut self, throttle: Arc<SnapshotThrottle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Lets installs reuse the state machine's live files found by `lookup`.
    pub fn with_lookup(mut self, lookup: Arc<dyn LocalFileLookup>) -> Self {
        self.lookup = Some(lookup);
        self
    }

    /// The install in progress, if any.
    pub fn install_status(&self) -> Option<InstallStatus> {
        lock(&self.state).job.as_ref().map(|j| InstallStatus {
            from: j.from.clone(),
            progress: j.progress.clone(),
        })
    }

    /// The last failed install, unless one succeeded since.
    pub fn last_install_failure(&self) -> Option<InstallFailureRecord> {
        lock(&self.state).last_failure.clone()
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
        ExecutorStats {
            served_bytes_total: self.throttle.served_bytes(),
            ..lock(&self.state).stats
        }
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
        let started = std::time::Instant::now();
        let res = self.save();
        if matches!(res, Ok(SaveOutcome::Saved(_))) {
            lock(&self.state).stats.save_seconds_total += started.elapsed().as_secs_f64();
        }
        if res.is_err() {
            lock(&self.state).stats.save_failures_total += 1;
        }
        res
    }

    fn save(&self) -> Result<SaveOutcome, SnapshotError> {
        if lock(&self.state).repairing {
            return Err(SnapshotError::Busy(Phase::Repairing.busy_reason()));
        }
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
        let just_installed = lock(&self.state)
            .installed_verified
            .remove(&meta.last_included_index);
        if self.opts.verify_on_load && !just_installed {
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

    /// Marks the start (`true`) or end of a repair: while it lasts, saves
    /// are refused, so no snapshot captures the damaged state.
    pub fn set_repairing(&self, on: bool) {
        lock(&self.state).repairing = on;
    }

    /// True while a repair is under way.
    pub fn repairing(&self) -> bool {
        lock(&self.state).repairing
    }

    /// Replaces a damaged state: loads `reader`'s snapshot (verified first)
    /// and, holding the state machine's lock throughout so that no reader
    /// sees the older state in between, runs `replay` to bring it back to
    /// where it was (re-applying the log after the snapshot); `replay` gets
    /// the state and the position applied before the load. Its error leaves
    /// the loaded state and is returned.
    pub fn reseed(
        &self,
        reader: &SnapshotReader,
        replay: impl FnOnce(&mut AppliedState<S>, &SnapshotMeta) -> Result<(), String>,
    ) -> Result<SnapshotMeta, SnapshotError> {
        let _phase = self.enter(Phase::Repairing)?;
        let meta = reader.meta().clone();
        let index = meta.last_included_index;
        let _span = info_span!("snapshot_reseed", snapshot_index = index).entered();
        reader.verify()?;
        let mut fsm = lock(&self.fsm);
        let before = fsm.applied.clone();
        fsm.state_machine
            .on_snapshot_load(reader)
            .map_err(|source| SnapshotError::StateMachine {
                op: "load",
                index,
                source,
            })?;
        fsm.applied = meta.clone();
        replay(&mut fsm, &before)
            .map_err(|reason| SnapshotError::InstallFailed { index, reason })?;
        drop(fsm);
        lock(&self.state).stats.loads_total += 1;
        info!(
            snapshot_index = index,
            "state replaced from a sound snapshot"
        );
        Ok(meta)
    }

    /// Downloads and commits the snapshot described by `table` from `uri`
    /// (DESIGN §3 Install 1–4), without loading it:
    /// 1. a local snapshot at least as new → `AlreadyHave`, nothing copied;
    /// 2. a save running → wait for it (bounded by `install_save_wait`);
    /// 3. the same index downloading → wait for that download (`Joined`);
    ///    a newer index → cancel it (its verified files stay for reuse) and
    ///    start; an older index → `Stale`;
    /// 4. copy, verify, commit.
    pub async fn fetch(
        &self,
        uri: &str,
        table: &SnapshotMetaTable,
    ) -> Result<Fetched, SnapshotError> {
        self.fetch_from(uri, table, &[]).await
    }

    /// [`fetch`](Self::fetch), also taking the files that `alternates`
    /// (other members' snapshots) hold with the same size and crc32c from
    /// them, so that installs at once do not all weigh on `uri`'s node.
    pub async fn fetch_from(
        &self,
        uri: &str,
        table: &SnapshotMetaTable,
        alternates: &[AlternateSource],
    ) -> Result<Fetched, SnapshotError> {
        let uri = SnapshotUri::parse(uri)?;
        meta_table::validate(table).map_err(|source| SnapshotError::RemoteMeta {
            peer: uri.addr.clone(),
            source,
        })?;
        let index = table.meta.as_ref().map_or(0, |m| m.last_included_index);
        let deadline = tokio::time::Instant::now() + self.opts.install_save_wait;
        enum Next {
            Wait,
            Join(watch::Receiver<JobResult>),
            Cancelled(watch::Receiver<JobResult>),
            Start(
                watch::Sender<JobResult>,
                CancellationToken,
                Arc<InstallProgress>,
                tokio::sync::OwnedSemaphorePermit,
            ),
        }
        let (tx, cancel, progress, _permit) = loop {
            if let Some(m) = self
                .storage
                .latest_meta()
                .filter(|m| m.last_included_index >= index)
            {
                return Ok(Fetched::AlreadyHave(m));
            }
            let next = {
                let mut st = lock(&self.state);
                match (st.phase, &st.job) {
                    (Phase::Idle, _) => {
                        let permit = self.throttle.try_start_install()?;
                        let (tx, rx) = watch::channel(None);
                        let cancel = CancellationToken::new();
                        let progress = Arc::new(InstallProgress::default());
                        st.phase = Phase::Downloading;
                        st.job = Some(DownloadJob {
                            index,
                            from: uri.addr.clone(),
                            cancel: cancel.clone(),
                            done: rx,
                            progress: progress.clone(),
                        });
                        Next::Start(tx, cancel, progress, permit)
                    }
                    (Phase::Downloading, Some(j)) if j.index == index => Next::Join(j.done.clone()),
                    (Phase::Downloading, Some(j)) if j.index > index => {
                        return Err(SnapshotError::Stale {
                            index,
                            latest: j.index,
                        });
                    }
                    (Phase::Downloading, Some(j)) => {
                        info!(
                            old = j.index,
                            new = index,
                            "a newer snapshot replaces the one downloading"
                        );
                        j.cancel.cancel();
                        Next::Cancelled(j.done.clone())
                    }
                    _ => Next::Wait,
                }
            };
            match next {
                Next::Start(tx, cancel, progress, permit) => break (tx, cancel, progress, permit),
                Next::Join(mut rx) => {
                    let r = rx
                        .wait_for(Option::is_some)
                        .await
                        .map(|v| v.clone())
                        .ok()
                        .flatten();
                    return match r {
                        Some(Ok(meta)) => Ok(Fetched::Joined(meta)),
                        Some(Err(reason)) => Err(SnapshotError::InstallFailed { index, reason }),
                        None => Err(SnapshotError::InstallFailed {
                            index,
                            reason: "the install it joined was dropped".into(),
                        }),
                    };
                }
                Next::Cancelled(mut rx) => {
                    let _ = rx.wait_for(Option::is_some).await;
                }
                Next::Wait => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(SnapshotError::Busy(Phase::Saving.busy_reason()));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        // Whatever happens below, the phase returns to idle and joiners hear.
        struct Finish<'a, S: StateMachine> {
            exec: &'a SnapshotExecutor<S>,
            tx: watch::Sender<JobResult>,
        }
        impl<S: StateMachine> Drop for Finish<'_, S> {
            fn drop(&mut self) {
                {
                    let mut st = lock(&self.exec.state);
                    st.phase = Phase::Idle;
                    st.job = None;
                }
                self.tx.send_if_modified(|v| {
                    if v.is_none() {
                        *v = Some(Err("the install was dropped".into()));
                        true
                    } else {
                        false
                    }
                });
                self.exec.idle.notify_all();
            }
        }
        let finish = Finish { exec: self, tx };
        let copier = {
            let c = RemoteFileCopier::new(
                self.storage.clone(),
                self.opts.copier.clone(),
                self.throttle.clone(),
            );
            match &self.lookup {
                Some(l) => c.with_lookup(l.clone()),
                None => c,
            }
        };
        let started = std::time::Instant::now();
        let res = copier
            .copy_from(&uri, Some(table), alternates, &progress, &cancel)
            .await;
        let p = progress.snapshot();
        {
            let mut st = lock(&self.state);
            st.stats.install_seconds_total += started.elapsed().as_secs_f64();
            match &res {
                Ok(r) => {
                    st.installed_verified.insert(r.index());
                    st.stats.installs_total += 1;
                    st.stats.install_bytes_total += p.fetched_bytes;
                    st.stats.reused_bytes_total += p.reused_bytes;
                    st.last_failure = None;
                }
                Err(e) => {
                    st.stats.install_failures_total += 1;
                    st.stats.install_bytes_total += p.fetched_bytes;
                    let attempts = st.last_failure.as_ref().map_or(0, |f| f.attempts) + 1;
                    st.last_failure = Some(InstallFailureRecord {
                        index,
                        from: uri.addr.clone(),
                        reason: e.to_string(),
                        attempts,
                    });
                }
            }
        }
        let _ = finish.tx.send(Some(match &res {
            Ok(r) => Ok(r.meta().clone()),
            Err(e) => Err(e.to_string()),
        }));
        drop(finish);
        match res {
            Ok(reader) => Ok(Fetched::Downloaded {
                reader,
                progress: p,
            }),
            Err(e) => {
                warn!(snapshot_index = index, error = %e, "snapshot install failed");
                Err(e)
            }
        }
    }

    /// Downloads the snapshot (see [`fetch`](Self::fetch)) and loads it into
    /// the state machine. The load runs on a blocking thread.
    pub async fn install(
        self: &Arc<Self>,
        uri: &str,
        table: &SnapshotMetaTable,
    ) -> Result<InstallOutcome, SnapshotError> {
        match self.fetch(uri, table).await? {
            Fetched::AlreadyHave(m) => Ok(InstallOutcome::AlreadyHave(m)),
            Fetched::Joined(m) => Ok(InstallOutcome::Joined(m)),
            Fetched::Downloaded { reader, progress } => {
                let exec = self.clone();
                let meta = tokio::task::spawn_blocking(move || exec.load(&reader))
                    .await
                    .map_err(|e| SnapshotError::InstallFailed {
                        index: progress.index,
                        reason: format!("load task failed: {e}"),
                    })??;
                Ok(InstallOutcome::Installed { meta, progress })
            }
        }
    }
}
