//! The background scrub: every `scrub_interval` a node re-reads its retained
//! snapshots and its live files at `scrub_rate` and compares each with the
//! size and crc32c recorded when it was written
//! ([`check_targets`]: a file shared by hard link, a live TSM file and the
//! snapshots holding it, is read once). Findings go
//! to the repairer ([`crate::raft::repair`]); the figures to `/status` and
//! `/metrics`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::raft::fsm::{NodeFsm, ReplicatedStateMachine};
use crate::raft::repair::Finding;
use crate::snapshot::integrity::{Pace, Target, check_targets};
use crate::snapshot::{FileProblem, SnapshotExecutor, StateMachine};

/// What the scrub did, for `/status` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ScrubStatus {
    /// A pass is running now.
    pub running: bool,
    /// Passes finished since the process started.
    pub passes_total: u64,
    /// Bytes read since the process started.
    pub bytes_total: u64,
    /// Files found failing their checksums since the process started.
    pub corrupt_files_total: u64,
    /// The last finished pass.
    pub last: Option<ScrubPass>,
}

/// One pass of the scrub.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ScrubPass {
    /// When it ended (ms since the Unix epoch).
    pub finished_unix_ms: u64,
    /// How long it took (ms).
    pub duration_ms: u64,
    /// Files read.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Files that failed, with what was wrong.
    pub findings: Vec<String>,
}

pub(crate) type SharedScrubStatus = Arc<Mutex<ScrubStatus>>;

/// Every file a pass re-reads: the retained snapshots' and the live ones.
pub(crate) fn targets_of<S: ReplicatedStateMachine>(
    exec: &SnapshotExecutor<NodeFsm<S>>,
) -> Vec<Target> {
    let mut out = Vec::new();
    let storage = exec.storage();
    for info in storage.list() {
        if let Ok(r) = storage.open_reader_at(info.meta.last_included_index) {
            out.extend(r.files().iter().map(|f| Target {
                path: r.dir().join(&f.name),
                size: f.size,
                crc32c: f.crc32c,
            }));
        }
    }
    let live = exec
        .state_machine()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .state_machine
        .live_files();
    out.extend(live.into_iter().map(|f| Target {
        path: f.path,
        size: f.size,
        crc32c: f.crc32c,
    }));
    out
}

/// Runs passes every `interval` (the first after one interval) until
/// `shutdown`. Meant for its own thread: it sleeps to hold its rate.
pub(crate) fn run<S: ReplicatedStateMachine>(
    exec: Arc<SnapshotExecutor<NodeFsm<S>>>,
    interval: Duration,
    rate: u64,
    status: SharedScrubStatus,
    findings: mpsc::UnboundedSender<Finding>,
    shutdown: CancellationToken,
) {
    if interval.is_zero() {
        return;
    }
    loop {
        let until = Instant::now() + interval;
        while Instant::now() < until {
            if shutdown.is_cancelled() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100).min(interval));
        }
        let started = Instant::now();
        status.lock().unwrap_or_else(|p| p.into_inner()).running = true;
        let mut pace = Pace::new(rate);
        let stop = || shutdown.is_cancelled();
        let targets = targets_of(&exec);
        let (found, files) = check_targets(&targets, &mut pace, &stop);
        if stop() {
            return;
        }
        let mut pass = ScrubPass {
            files,
            bytes: pace.bytes(),
            ..Default::default()
        };
        // A file replaced while the pass read it (a tombstone file a delete
        // rewrote) is not damaged: only files still listed as they were
        // count.
        let current: Option<std::collections::HashSet<(PathBuf, u32)>> =
            found.iter().any(Option::is_some).then(|| {
                targets_of(&exec)
                    .into_iter()
                    .map(|t| (t.path, t.crc32c))
                    .collect()
            });
        for (t, problem) in targets.iter().zip(found) {
            let listed = current
                .as_ref()
                .is_some_and(|c| c.contains(&(t.path.clone(), t.crc32c)));
            match problem {
                // Merged away or released while we read: gone, not damaged.
                None | Some(FileProblem::Missing) => {}
                Some(_) if !listed => {}
                Some(p) => {
                    let f = format!("{}: {p}", t.path.display());
                    warn!(finding = %f, "scrub: a file fails its checksum");
                    pass.findings.push(f);
                }
            }
        }
        pass.duration_ms = started.elapsed().as_millis() as u64;
        pass.finished_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        info!(
            files = pass.files,
            bytes = pass.bytes,
            findings = pass.findings.len(),
            ms = pass.duration_ms,
            "scrub pass done"
        );
        if !pass.findings.is_empty() {
            let _ = findings.send(Finding::Damaged {
                found_by: "the scrub",
                files: pass.findings.clone(),
            });
        }
        let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
        st.running = false;
        st.passes_total += 1;
        st.bytes_total += pass.bytes;
        st.corrupt_files_total += pass.findings.len() as u64;
        st.last = Some(pass);
    }
}
