//! The leader's side of `raft::Storage::snapshot`: the latest local snapshot
//! registered with the FileService for the follower, as a raft `Snapshot`
//! whose data is an `InstallPayload`; or, when there is none new enough, a
//! save started and `SnapshotTemporarilyUnavailable`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prost::Message as _;
use raft::StorageError;
use raft::prelude::{ConfState, Snapshot};
use tracing::{debug, info};

use crate::proto::file::InstallPayload;
use crate::raft::log_store::SnapshotProvider;
use crate::snapshot::{LocalSnapshotStorage, ReaderRegistry, SnapshotMeta, meta_table};

/// Converts a snapshot meta's membership into raft's `ConfState`.
pub fn conf_state_of(m: &SnapshotMeta) -> ConfState {
    ConfState {
        voters: m.voters.clone(),
        learners: m.learners.clone(),
        voters_outgoing: m.voters_outgoing.clone(),
        learners_next: m.learners_next.clone(),
        auto_leave: m.auto_leave,
        ..Default::default()
    }
}

/// Copies raft's `ConfState` into a snapshot meta's membership.
pub fn set_membership(m: &mut SnapshotMeta, cs: &ConfState) {
    m.voters = cs.voters.clone();
    m.learners = cs.learners.clone();
    m.voters_outgoing = cs.voters_outgoing.clone();
    m.learners_next = cs.learners_next.clone();
    m.auto_leave = cs.auto_leave;
}

/// True if `id` is in the snapshot's membership (any role, joint included).
pub fn is_member(m: &SnapshotMeta, id: u64) -> bool {
    [&m.voters, &m.learners, &m.voters_outgoing, &m.learners_next]
        .iter()
        .any(|ids| ids.contains(&id))
}

/// A snapshot being sent to one follower.
#[derive(Debug, Clone, Copy)]
pub struct Inflight {
    /// Reader id in the registry.
    pub reader_id: u64,
    /// Snapshot index.
    pub index: u64,
}

/// Serves raft-rs's snapshot requests from the local snapshot storage.
pub struct SnapshotSource {
    storage: LocalSnapshotStorage,
    registry: Arc<ReaderRegistry>,
    advertise_addr: String,
    request_save: Box<dyn Fn() + Send + Sync>,
    inflight: Mutex<HashMap<u64, Inflight>>,
}

impl SnapshotSource {
    /// A source over `storage`, registering readers in `registry`, reachable
    /// at `advertise_addr`; `request_save` starts a save (asynchronously).
    pub fn new(
        storage: LocalSnapshotStorage,
        registry: Arc<ReaderRegistry>,
        advertise_addr: String,
        request_save: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            storage,
            registry,
            advertise_addr,
            request_save,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Inflight>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the send to `to`: releases its reader.
    pub fn release(&self, to: u64) {
        if let Some(f) = self.lock().remove(&to) {
            self.registry.release(f.reader_id);
        }
    }

    /// The lowest snapshot index being sent (compaction keeps what follows it).
    pub fn min_inflight_index(&self) -> Option<u64> {
        self.lock().values().map(|f| f.index).min()
    }
}

impl SnapshotProvider for SnapshotSource {
    fn snapshot_for(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let Some(meta) = self
            .storage
            .latest_meta()
            .filter(|m| m.last_included_index >= request_index.max(1))
            // raft-rs ignores a snapshot whose conf state lacks the receiver
            // (a member added after the latest save): save a newer one.
            .filter(|m| is_member(m, to))
        else {
            info!(
                peer = to,
                request_index, "no snapshot new enough for a follower; saving one"
            );
            (self.request_save)();
            return Err(unavailable());
        };
        self.release(to);
        let Ok(reader) = self.storage.open_reader_at(meta.last_included_index) else {
            return Err(unavailable());
        };
        let table = reader.table().clone();
        let reader_id = self.registry.register(reader);
        self.lock().insert(
            to,
            Inflight {
                reader_id,
                index: meta.last_included_index,
            },
        );
        let payload = InstallPayload {
            uri: format!("raftsnap://{}/{reader_id}", self.advertise_addr),
            meta_table: meta_table::encode(&table),
        };
        let mut snap = Snapshot {
            data: payload.encode_to_vec().into(),
            ..Default::default()
        };
        let md = snap.mut_metadata();
        md.index = meta.last_included_index;
        md.term = meta.last_included_term;
        md.set_conf_state(conf_state_of(&meta));
        debug!(
            peer = to,
            snapshot_index = md.index,
            reader_id,
            "snapshot offered to a follower"
        );
        Ok(snap)
    }
}
