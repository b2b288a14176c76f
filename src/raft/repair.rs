//! Repair of a node whose files fail their checksums (DESIGN §3 Integrity).
//!
//! Findings come from a peer whose install could not verify a file of a
//! snapshot this node offered, and from the background scrub. For each:
//! 1. a peer's claim is first checked against this node's own copy of that
//!    file; a sound copy ends it (the fault was on the way or at the peer);
//! 2. every local snapshot is verified; one that fails is renamed
//!    `*.broken` and never offered, reused or loaded again; every live file
//!    is re-read against the crc32c recorded when it was written;
//! 3. if the live state is sound, a fresh snapshot is saved from it;
//! 4. otherwise saves stop (they would capture the damage) and the state is
//!    replaced: by the newest sound local snapshot if the log still reaches
//!    it, else by a snapshot fetched from a member (`OfferSnapshot`, then
//!    the file copier, which verifies every file), plus the log after it
//!    re-applied — one step under the state machine's lock, so no read sees
//!    the older state. Then a fresh snapshot is saved and peers whose
//!    installs failed may retry at once.
//!
//! Until then no damaged value is served: every TSM block carries its own
//! CRC, checked on each read, so a query touching a damaged block fails with
//! an error naming the file instead of answering wrong data.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::proto::file::InstallPayload;
use crate::proto::raft::{InstallFailure, OfferSnapshotRequest};
use crate::raft::apply::ApplyTask;
use crate::raft::fsm::{NodeFsm, Peers, ReplicatedStateMachine};
use crate::raft::log_store::{LogStore, WalLogStore};
use crate::raft::snapshot_source::SnapshotSource;
use crate::raft::transport::client;
use crate::snapshot::integrity::{Pace, Target, check_file, check_targets};
use crate::snapshot::{Fetched, SnapshotExecutor, SnapshotReader, StateMachine, meta_table};

type Executor<S> = Arc<SnapshotExecutor<NodeFsm<S>>>;

/// Something found wrong with this node's files.
#[derive(Debug, Clone)]
pub(crate) enum Finding {
    /// A peer could not verify a file of a snapshot this node offered.
    PeerClaim { peer: u64, claim: InstallFailure },
    /// Files that fail their checksums, found by the scrub, a backup or a
    /// query (`found_by` says which).
    Damaged {
        found_by: &'static str,
        files: Vec<String>,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::PeerClaim { peer, claim } => write!(
                f,
                "node {peer} could not verify {} of snapshot {} (crc32c {:#010x}, meta table says {:#010x})",
                claim.file, claim.snapshot_index, claim.actual_crc32c, claim.expected_crc32c
            ),
            Finding::Damaged { found_by, files } => {
                write!(f, "{found_by} found {}", files.join(", "))
            }
        }
    }
}

/// What repairs did, for `/status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RepairStatus {
    /// `idle`, `checking` or `repairing`.
    pub state: &'static str,
    /// Repairs that replaced the live state since the process started.
    pub repairs_total: u64,
    /// Snapshots renamed `*.broken` since the process started: index, why
    /// (filled from the storage when `/status` is asked).
    pub broken_snapshots: Vec<BrokenSnapshot>,
    /// The last finding handled.
    pub last: Option<RepairReport>,
}

impl Default for RepairStatus {
    fn default() -> Self {
        Self {
            state: "idle",
            repairs_total: 0,
            broken_snapshots: Vec::new(),
            last: None,
        }
    }
}

/// A snapshot taken out of service.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BrokenSnapshot {
    /// Its index.
    pub index: u64,
    /// Why.
    pub reason: String,
}

/// One finding and what was done about it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RepairReport {
    /// What was found.
    pub cause: String,
    /// Live files that failed their checksums.
    pub bad_live_files: Vec<String>,
    /// Where the sound state came from (empty if the live state was sound).
    pub source: String,
    /// How it ended.
    pub outcome: String,
    /// When it ended (ms since the Unix epoch).
    pub finished_unix_ms: u64,
}

/// Shared between the repairer, the scrub and `/status`.
pub(crate) type SharedRepairStatus = Arc<Mutex<RepairStatus>>;

pub(crate) struct Repairer<S: ReplicatedStateMachine> {
    pub id: u64,
    pub advertise: String,
    pub exec: Executor<S>,
    pub source: Arc<SnapshotSource>,
    pub log: Arc<WalLogStore>,
    pub peers: Peers,
    pub apply_tx: std::sync::mpsc::Sender<ApplyTask>,
    pub applied_rx: watch::Receiver<u64>,
    pub status: SharedRepairStatus,
    pub shutdown: CancellationToken,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Verifies every local snapshot (renaming the bad ones `*.broken`) and
/// every live file, reading a file they share by hard link once; returns
/// the live files that fail.
fn check_all<S: ReplicatedStateMachine>(exec: &Executor<S>) -> Vec<String> {
    let storage = exec.storage();
    // Readers hold the snapshots while they are read.
    let readers: Vec<SnapshotReader> = storage
        .list()
        .iter()
        .filter_map(|i| storage.open_reader_at(i.meta.last_included_index).ok())
        .collect();
    let live = || {
        exec.state_machine()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state_machine
            .live_files()
    };
    let mut targets: Vec<Target> = Vec::new();
    let mut owners: Vec<Option<usize>> = Vec::new();
    for (i, r) in readers.iter().enumerate() {
        for f in r.files() {
            targets.push(Target {
                path: r.dir().join(&f.name),
                size: f.size,
                crc32c: f.crc32c,
            });
            owners.push(Some(i));
        }
    }
    for f in live() {
        targets.push(Target {
            path: f.path,
            size: f.size,
            crc32c: f.crc32c,
        });
        owners.push(None);
    }
    let (found, _) = check_targets(&targets, &mut Pace::new(0), &|| false);
    let mut bad_snapshots: Vec<Vec<String>> = vec![Vec::new(); readers.len()];
    let mut bad_live = Vec::new();
    for ((t, owner), problem) in targets.iter().zip(owners).zip(found) {
        let Some(p) = problem else { continue };
        match owner {
            Some(i) => bad_snapshots[i].push(format!(
                "{}: {p}",
                t.path
                    .strip_prefix(readers[i].dir())
                    .unwrap_or(&t.path)
                    .display()
            )),
            None => bad_live.push((t.path.clone(), t.crc32c, p)),
        }
    }
    for (r, bad) in readers.into_iter().zip(bad_snapshots) {
        if bad.is_empty() {
            continue;
        }
        let index = r.index();
        drop(r);
        if let Err(e) = storage.quarantine(index, &bad.join("; ")) {
            warn!(snapshot_index = index, error = %e, "could not rename a broken snapshot");
        }
    }
    // A file merged away (or a tombstone file replaced) meanwhile is gone,
    // not damaged.
    let still: Vec<(PathBuf, u32)> = live().into_iter().map(|f| (f.path, f.crc32c)).collect();
    bad_live
        .into_iter()
        .filter(|(path, crc, _)| still.iter().any(|(p, c)| p == path && c == crc))
        .map(|(path, _, p)| format!("{}: {p}", path.display()))
        .collect()
}

impl<S: ReplicatedStateMachine> Repairer<S> {
    /// Handles findings until shutdown.
    pub(crate) async fn run(self, mut rx: mpsc::UnboundedReceiver<Finding>) {
        loop {
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                f = rx.recv() => match f { Some(f) => f, None => return },
            };
            let mut findings = vec![first];
            while let Ok(f) = rx.try_recv() {
                findings.push(f);
            }
            self.handle(findings).await;
        }
    }

    fn set_state(&self, state: &'static str) {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).state = state;
    }

    fn finish(&self, report: RepairReport, replaced: bool) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.state = "idle";
        if replaced {
            st.repairs_total += 1;
        }
        st.last = Some(report);
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Executor<S>) -> T + Send + 'static,
    ) -> Option<T> {
        let exec = self.exec.clone();
        tokio::task::spawn_blocking(move || f(exec)).await.ok()
    }

    async fn handle(&self, findings: Vec<Finding>) {
        let cause = findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        // A peer's claim alone is checked against our own copy first.
        let claims: Vec<InstallFailure> = findings
            .iter()
            .filter_map(|f| match f {
                Finding::PeerClaim { claim, .. } => Some(claim.clone()),
                Finding::Damaged { .. } => None,
            })
            .collect();
        if claims.len() == findings.len() {
            let confirmed = self
                .blocking(move |exec| {
                    claims.iter().any(|c| {
                        let Ok(r) = exec.storage().open_reader_at(c.snapshot_index) else {
                            return false;
                        };
                        let Some(fm) = r.file(&c.file) else {
                            return false;
                        };
                        let path = r.dir().join(&fm.name);
                        check_file(&path, fm.size, fm.crc32c, &mut Pace::new(0), &|| false)
                            .is_some()
                    })
                })
                .await
                .unwrap_or(false);
            if !confirmed {
                info!(%cause, "our copy of the file is sound; nothing to repair");
                return;
            }
        }
        warn!(%cause, "files fail their checksums; checking every snapshot and live file");
        self.set_state("checking");
        // No save until we know the live state is sound: it would publish
        // the damage again.
        self.exec.set_repairing(true);
        let bad_live = self
            .blocking(|exec| check_all(&exec))
            .await
            .unwrap_or_default();
        let mut report = RepairReport {
            cause,
            bad_live_files: bad_live.clone(),
            ..Default::default()
        };
        if bad_live.is_empty() {
            self.exec.set_repairing(false);
            report.outcome = self.resave().await;
            report.finished_unix_ms = now_ms();
            self.finish(report, false);
            return;
        }
        warn!(files = ?bad_live, "live files are damaged; replacing the state from a sound snapshot");
        self.set_state("repairing");
        let mut tries = 0u32;
        let source = loop {
            tries += 1;
            match self.reseed_once().await {
                Ok(source) => break Some(source),
                Err(e) => {
                    warn!(attempt = tries, error = %e, "repair did not succeed yet; retrying")
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        self.exec.set_repairing(false);
        let Some(source) = source else {
            return;
        };
        info!(%source, "state repaired");
        report.source = source;
        report.outcome = format!("state replaced; {}", self.resave().await);
        report.finished_unix_ms = now_ms();
        self.finish(report, true);
    }

    /// Saves a snapshot of the (sound) live state and lets peers whose
    /// installs failed retry at once; says how it went.
    async fn resave(&self) -> String {
        let storage = self.exec.storage().clone();
        // Sound snapshots up to the applied index: the one fetched for the
        // repair may already be that.
        let want = *self.applied_rx.borrow();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut asked = Instant::now() - Duration::from_secs(10);
        while Instant::now() < deadline && !self.shutdown.is_cancelled() {
            if storage.latest_index() >= want.max(1) {
                self.source.clear_backoff();
                return format!("snapshot {} saved", storage.latest_index());
            }
            if asked.elapsed() >= Duration::from_secs(2) {
                let _ = self.apply_tx.send(ApplyTask::Save);
                asked = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.source.clear_backoff();
        "no new snapshot within 60 s".into()
    }

    /// One attempt: a sound base snapshot, then the apply worker's reseed.
    async fn reseed_once(&self) -> Result<String, String> {
        let min = self.log.first_index().saturating_sub(1);
        let local = self
            .exec
            .storage()
            .open_reader()
            .filter(|r| r.index() >= min);
        let (reader, source) = match local {
            Some(r) => {
                let s = format!("local snapshot {}", r.index());
                (r, s)
            }
            None => {
                let members = self
                    .peers
                    .read()
                    .map_err(|_| "peers lock poisoned".to_string())?
                    .clone();
                fetch_from_member(&self.exec, self.id, &self.advertise, &members, min).await?
            }
        };
        let index = reader.index();
        let mut applied = self.applied_rx.clone();
        tokio::time::timeout(Duration::from_secs(60), applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| format!("not applied up to snapshot {index} within 60 s"))?
            .map_err(|_| "node stopping".to_string())?;
        let (tx, rx) = oneshot::channel();
        self.apply_tx
            .send(ApplyTask::Reseed { reader, done: tx })
            .map_err(|_| "node stopping".to_string())?;
        let applied = rx.await.map_err(|_| "node stopping".to_string())??;
        Ok(format!("{source}, log re-applied up to {applied}"))
    }
}

/// Asks each member in turn for a snapshot of at least `min` and fetches
/// it (every file verified on arrival); says where it came from.
pub(crate) async fn fetch_from_member<S: ReplicatedStateMachine>(
    exec: &Executor<S>,
    id: u64,
    advertise: &str,
    members: &std::collections::BTreeMap<u64, String>,
    min: u64,
) -> Result<(SnapshotReader, String), String> {
    let mut why = Vec::new();
    for (&peer, addr) in members.iter().filter(|(p, _)| **p != id) {
        let Some(mut c) = client(addr) else {
            why.push(format!("node {peer}: bad address {addr}"));
            continue;
        };
        let req = OfferSnapshotRequest {
            from: id,
            from_addr: advertise.to_string(),
            min_index: min,
            as_source: false,
        };
        let resp = match tokio::time::timeout(Duration::from_secs(5), c.offer_snapshot(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(st)) => {
                why.push(format!("node {peer}: {}", st.message()));
                continue;
            }
            Err(_) => {
                why.push(format!("node {peer}: no answer within 5 s"));
                continue;
            }
        };
        let table = match InstallPayload::decode(&resp.payload[..])
            .map_err(|e| e.to_string())
            .and_then(|p| {
                meta_table::decode(&p.meta_table)
                    .map(|t| (p.uri, t))
                    .map_err(|e| e.to_string())
            }) {
            Ok(t) => t,
            Err(e) => {
                why.push(format!("node {peer}: bad offer: {e}"));
                continue;
            }
        };
        let reader = match exec.fetch(&table.0, &table.1).await {
            Ok(Fetched::Downloaded { reader, .. }) => reader,
            Ok(Fetched::AlreadyHave(m) | Fetched::Joined(m)) => {
                match exec.storage().open_reader_at(m.last_included_index) {
                    Ok(r) => r,
                    Err(e) => {
                        why.push(format!("node {peer}: {e}"));
                        continue;
                    }
                }
            }
            Err(e) => {
                why.push(format!("node {peer}: {e}"));
                continue;
            }
        };
        let s = format!("snapshot {} of node {peer}", reader.index());
        return Ok((reader, s));
    }
    Err(format!(
        "no member offered a sound snapshot of index {min} or newer yet ({})",
        why.join("; ")
    ))
}
