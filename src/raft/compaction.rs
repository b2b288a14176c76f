//! Log compaction after a snapshot: the raft log is cut to
//! `index − trailing_logs`, never past what an in-flight snapshot send still
//! needs, never past what is applied. The cut (a synced `Compact` record and
//! the removal of whole segments) runs on its own thread.

use std::sync::atomic::Ordering;

use tracing::{info, warn};

use crate::raft::fsm::ReplicatedStateMachine;
use crate::raft::log_store::LogStore;
use crate::raft::ready_loop::{Loop, lock};
use crate::snapshot::SnapshotMeta;

impl<S: ReplicatedStateMachine> Loop<S> {
    /// Starts a compaction for the snapshot `meta` unless one is running.
    pub(crate) fn compact(&mut self, meta: &SnapshotMeta) {
        let index = meta.last_included_index;
        let mut target = index.saturating_sub(self.cfg.trailing_logs) + 1;
        if let Some(min) = self.source.min_inflight_index() {
            target = target.min(min + 1);
        }
        target = target
            .min(self.raw.raft.raft_log.applied + 1)
            .min(self.raw.raft.raft_log.persisted + 1)
            .min(self.log.last_index() + 1);
        if target <= self.log.first_index() || self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (log, counters, flag) = (
            self.log.clone(),
            self.counters.clone(),
            self.compacting.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("raft-compact".into())
            .spawn(move || {
                match log.compact(target) {
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
                flag.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            warn!(error = %e, "could not start a compaction thread");
            self.compacting.store(false, Ordering::Release);
        }
    }
}
