//! `KvFsm`: an in-memory key-value state machine. Its snapshot is one file,
//! `kv.json`, written through the writer (the "write from bytes" path).

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use raftsnap::snapshot::{
    ApplyError, BoxError, SharedStateMachine, SnapshotMeta, SnapshotReader, SnapshotWriter,
    StateMachine,
};

/// An in-memory map; optional hooks let tests fail or stall a save.
#[derive(Default)]
pub struct KvFsm {
    pub map: BTreeMap<String, String>,
    /// The next save fails with this message.
    pub fail_next_save: Option<String>,
    /// The next save waits on this barrier twice (entered, then released).
    pub stall_next_save: Option<Arc<Barrier>>,
    /// Extra bytes written as `blob` in each snapshot (for disk-full tests).
    pub blob: Vec<u8>,
}

impl StateMachine for KvFsm {
    fn on_snapshot_save(
        &mut self,
        w: &mut SnapshotWriter,
        _meta: &SnapshotMeta,
    ) -> Result<(), BoxError> {
        if let Some(b) = self.stall_next_save.take() {
            b.wait();
            b.wait();
        }
        if let Some(msg) = self.fail_next_save.take() {
            return Err(msg.into());
        }
        w.write_file("kv.json", &serde_json::to_vec(&self.map)?)?;
        if !self.blob.is_empty() {
            w.write_file("blob", &self.blob)?;
        }
        Ok(())
    }

    fn on_snapshot_load(&mut self, r: &SnapshotReader) -> Result<(), BoxError> {
        let bytes = std::fs::read(r.path_of("kv.json")?)?;
        self.map = serde_json::from_slice(&bytes)?;
        Ok(())
    }
}

/// Applies `set key=value` as raft entry `index` (term 1, voters 1-3).
pub fn apply(fsm: &SharedStateMachine<KvFsm>, index: u64, key: &str, value: &str) {
    let mut g = fsm.lock().unwrap();
    g.state_machine
        .map
        .insert(key.to_string(), value.to_string());
    g.applied = SnapshotMeta {
        last_included_index: index,
        last_included_term: 1,
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..Default::default()
    };
}

/// Applies entries `from..=to`, each setting `k<i>` = `v<i>`.
pub fn apply_range(fsm: &SharedStateMachine<KvFsm>, from: u64, to: u64) {
    for i in from..=to {
        apply(fsm, i, &format!("k{i}"), &format!("v{i}"));
    }
}

/// The map a KV holds after `apply_range(1, n)`.
pub fn expected_map(n: u64) -> BTreeMap<String, String> {
    (1..=n)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect()
}

/// Commands are `key=value` (set); the answer is the previous value or empty.
impl raftsnap::snapshot::ReplicatedStateMachine for KvFsm {
    type Command = String;
    type Answer = String;
    type View = BTreeMap<String, String>;

    fn view(&mut self) -> Self::View {
        self.map.clone()
    }

    fn apply(&mut self, _index: u64, _term: u64, cmd: String) -> Result<String, ApplyError> {
        match cmd.split_once('=') {
            Some((k, v)) => Ok(self
                .map
                .insert(k.to_string(), v.to_string())
                .unwrap_or_default()),
            None => Err(ApplyError::Rejected("expected key=value".into())),
        }
    }

    fn rejected(reason: String) -> String {
        format!("error: {reason}")
    }
}

/// An executor over a fresh KV state machine and the storage at `root`.
pub fn kv_executor(
    root: &std::path::Path,
    retain: usize,
) -> raftsnap::snapshot::SnapshotExecutor<KvFsm> {
    let (storage, _) = raftsnap::snapshot::LocalSnapshotStorage::open(
        root,
        raftsnap::snapshot::StorageOptions { retain },
    )
    .unwrap();
    raftsnap::snapshot::SnapshotExecutor::new(
        storage,
        raftsnap::snapshot::shared(KvFsm::default()),
        raftsnap::snapshot::ExecutorOptions::default(),
    )
}
