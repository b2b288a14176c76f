//! The persistence thread: makes the raft loop's writes durable. It takes
//! every Ready queued since its last sync, runs one `fdatasync` of the log
//! for all of them (group commit), then releases what waited for it: an
//! installed snapshot's load (to the apply worker) and the messages that must
//! not leave before the state they announce is on disk (append responses,
//! votes), which go back to the loop with the Ready number for
//! `on_persist_ready`.

use std::sync::Arc;

use raft::prelude::Message;
use tracing::error;

use crate::raft::apply::ApplyTask;
use crate::raft::log_store::WalLogStore;
use crate::raft::ready_loop::{Inbound, LoopTx};

/// One Ready's writes, waiting to be synced.
pub(crate) struct PersistTask {
    /// The Ready's number.
    pub number: u64,
    /// Messages to send once synced.
    pub messages: Vec<Message>,
    /// An installed snapshot to load once synced.
    pub load: Option<u64>,
}

/// Runs until the loop drops its sender; a failed sync is fatal to the node.
pub(crate) fn run(
    log: Arc<WalLogStore>,
    rx: std::sync::mpsc::Receiver<PersistTask>,
    to_loop: LoopTx,
    apply_tx: std::sync::mpsc::Sender<ApplyTask>,
    throttle: Arc<crate::snapshot::SnapshotThrottle>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(t) = rx.try_recv() {
            batch.push(t);
        }
        let synced = log.sync();
        if let Ok(Some(took)) = synced {
            throttle.log.log_synced(took);
        }
        if let Err(e) = synced {
            error!(error = %e, "the raft log cannot be synced");
            let _ = to_loop.send(Inbound::Fatal(format!("raft log sync failed: {e}")));
            return;
        }
        let mut number = 0;
        let mut messages = Vec::new();
        for t in batch {
            number = number.max(t.number);
            messages.extend(t.messages);
            if let Some(index) = t.load {
                let _ = apply_tx.send(ApplyTask::Load(index));
            }
        }
        if to_loop
            .send(Inbound::Persisted { number, messages })
            .is_err()
        {
            return;
        }
    }
}
