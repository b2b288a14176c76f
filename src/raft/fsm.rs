//! The state machine as the node drives it: commands applied in log order,
//! wrapped so that every snapshot also carries the cluster's addresses
//! (`raft/peers.json`), which a node joining by snapshot needs to reach the
//! other members.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub use crate::snapshot::ReplicatedStateMachine;
use crate::snapshot::{
    BoxError, LiveFile, SnapshotMeta, SnapshotReader, SnapshotWriter, StateMachine,
};

/// Addresses of the cluster's members, by id.
pub type Peers = Arc<RwLock<BTreeMap<u64, String>>>;

/// The ids in the node's current configuration (voters and learners, both
/// halves of a joint one), as the raft loop last saw them; empty while a
/// joining node has none.
pub type Members = Arc<RwLock<std::collections::BTreeSet<u64>>>;

/// The snapshot file holding the members' addresses (the `raft/` prefix is
/// reserved for the node).
pub const PEERS_FILE: &str = "raft/peers.json";

/// The user's state machine plus the node's own snapshot content.
pub struct NodeFsm<S> {
    /// The user's state machine.
    pub inner: S,
    peers: Peers,
}

impl<S> NodeFsm<S> {
    /// Wraps `inner`; `peers` is updated when a snapshot is loaded.
    pub fn new(inner: S, peers: Peers) -> Self {
        Self { inner, peers }
    }
}

impl<S: StateMachine> StateMachine for NodeFsm<S> {
    fn on_snapshot_save(
        &mut self,
        writer: &mut SnapshotWriter,
        meta: &SnapshotMeta,
    ) -> Result<(), BoxError> {
        self.inner.on_snapshot_save(writer, meta)?;
        let peers = self
            .peers
            .read()
            .map_err(|_| "peers lock poisoned")?
            .clone();
        writer.write_file(PEERS_FILE, &serde_json::to_vec(&peers)?)?;
        Ok(())
    }

    fn on_snapshot_load(&mut self, reader: &SnapshotReader) -> Result<(), BoxError> {
        self.inner.on_snapshot_load(reader)?;
        if reader.file(PEERS_FILE).is_some() {
            let bytes = std::fs::read(reader.path_of(PEERS_FILE)?)?;
            let loaded: BTreeMap<u64, String> = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{PEERS_FILE} of snapshot {}: {e}", reader.index()))?;
            let mut p = self.peers.write().map_err(|_| "peers lock poisoned")?;
            for (id, addr) in loaded {
                p.entry(id).or_insert(addr);
            }
        }
        Ok(())
    }

    fn live_files(&self) -> Vec<LiveFile> {
        self.inner.live_files()
    }

    fn staging(&self) -> Option<Arc<crate::snapshot::StagingArea>> {
        self.inner.staging()
    }
}
