//! The leader's side of `raft::Storage::snapshot`: the latest local snapshot
//! registered with the FileService for the follower, as a raft `Snapshot`
//! whose data is an `InstallPayload`; or, when there is none new enough, a
//! save started and `SnapshotTemporarilyUnavailable`.
//!
//! It also keeps, per peer, how installs to it failed: a failed install is
//! retried after a capped exponential backoff with jitter (0.5 s doubling to
//! 30 s), and `/status` shows the last failure per peer. The same readers
//! serve a member repairing its state ([`SnapshotSource::offer`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use raft::StorageError;
use raft::prelude::{ConfState, Snapshot};
use tracing::{debug, info};

use crate::proto::file::{InstallPayload, Member};
use crate::raft::fsm::Peers;
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

/// First delay before an install to a peer is retried after a failure.
pub const INSTALL_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest delay between install attempts to one peer.
pub const INSTALL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How installs to one peer have been failing.
#[derive(Debug, Clone)]
struct PeerFailures {
    snapshot_index: u64,
    kind: &'static str,
    reason: String,
    attempts: u32,
    not_before: Instant,
}

/// The last failed install to a peer, as `/status` shows it.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct InstallFailureStatus {
    /// The peer.
    pub peer: u64,
    /// The snapshot offered.
    pub snapshot_index: u64,
    /// `checksum`, `refused`, `timeout`, `unavailable` or `other`.
    pub kind: &'static str,
    /// What the peer (or the transport) said.
    pub reason: String,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// Milliseconds until the next attempt is allowed.
    pub retry_in_ms: u64,
}

/// The backoff after `attempts` failures in a row: 0.5 s doubling to 30 s,
/// each delay drawn from its upper half (jitter, so that peers that failed
/// together do not retry together).
pub fn install_backoff(attempts: u32) -> Duration {
    let base = INSTALL_BACKOFF_MIN
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
        .min(INSTALL_BACKOFF_MAX);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = f64::from(nanos % 1000) / 1000.0;
    base.mul_f64(0.5 + 0.5 * jitter)
}

/// Serves raft-rs's snapshot requests from the local snapshot storage.
pub struct SnapshotSource {
    storage: LocalSnapshotStorage,
    registry: Arc<ReaderRegistry>,
    advertise_addr: String,
    peers: Peers,
    request_save: Box<dyn Fn() + Send + Sync>,
    inflight: Mutex<HashMap<u64, Inflight>>,
    failures: Mutex<BTreeMap<u64, PeerFailures>>,
    failures_by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl SnapshotSource {
    /// A source over `storage`, registering readers in `registry`, reachable
    /// at `advertise_addr`; `peers` are the members a payload names as other
    /// sources; `request_save` starts a save (asynchronously).
    pub fn new(
        storage: LocalSnapshotStorage,
        registry: Arc<ReaderRegistry>,
        advertise_addr: String,
        peers: Peers,
        request_save: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            storage,
            registry,
            advertise_addr,
            peers,
            request_save,
            inflight: Mutex::new(HashMap::new()),
            failures: Mutex::new(BTreeMap::new()),
            failures_by_kind: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records how an install to `to` of snapshot `index` ended: `Ok` clears
    /// its failures; `Err((kind, reason))` counts one more and sets when the
    /// next attempt may start.
    pub fn record_install(&self, to: u64, index: u64, result: Result<(), (&'static str, String)>) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                f.remove(&to);
            }
            Err((kind, reason)) => {
                *self
                    .failures_by_kind
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(kind)
                    .or_insert(0) += 1;
                let attempts = f.get(&to).map_or(0, |p| p.attempts) + 1;
                let wait = install_backoff(attempts);
                info!(
                    peer = to,
                    snapshot_index = index,
                    kind,
                    attempts,
                    retry_in = ?wait,
                    "install to a peer failed; backing off"
                );
                f.insert(
                    to,
                    PeerFailures {
                        snapshot_index: index,
                        kind,
                        reason,
                        attempts,
                        not_before: Instant::now() + wait,
                    },
                );
            }
        }
    }

    /// Lets every peer retry at once (the snapshot that failed was replaced
    /// after a repair); the failures stay listed until an install succeeds.
    pub fn clear_backoff(&self) {
        let now = Instant::now();
        for p in self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
        {
            p.not_before = now;
        }
    }

    /// The last failure per peer whose installs are failing.
    pub fn install_failures(&self) -> Vec<InstallFailureStatus> {
        let now = Instant::now();
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(&peer, p)| InstallFailureStatus {
                peer,
                snapshot_index: p.snapshot_index,
                kind: p.kind,
                reason: p.reason.clone(),
                attempts: p.attempts,
                retry_in_ms: p.not_before.saturating_duration_since(now).as_millis() as u64,
            })
            .collect()
    }

    /// Failed installs to peers since the process started, by kind.
    pub fn failures_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.failures_by_kind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A snapshot of at least `min_index` for a member repairing its state:
    /// the payload to fetch it with, or `None` when there is none that new
    /// yet (a save is started; ask again).
    pub fn offer(&self, min_index: u64) -> Option<InstallPayload> {
        let meta = self
            .storage
            .latest_meta()
            .filter(|m| m.last_included_index >= min_index.max(1));
        let Some(meta) = meta else {
            (self.request_save)();
            return None;
        };
        self.register(meta.last_included_index).map(|(_, p)| p)
    }

    /// The latest snapshot as it is, for a member installing another
    /// snapshot that fetches the files both share from here too; no save
    /// is started when there is none.
    pub fn offer_as_source(&self) -> Option<InstallPayload> {
        let meta = self.storage.latest_meta()?;
        self.register_with(meta.last_included_index, true)
            .map(|(_, p)| p)
    }

    /// Registers a reader on snapshot `index` with the file service: its
    /// id and the payload a peer fetches the snapshot with.
    fn register(&self, index: u64) -> Option<(u64, InstallPayload)> {
        self.register_with(index, false)
    }

    fn register_with(&self, index: u64, as_source: bool) -> Option<(u64, InstallPayload)> {
        let reader = self.storage.open_reader_at(index).ok()?;
        let meta_table = meta_table::encode(reader.table());
        let reader_id = if as_source {
            self.registry.register_as_source(reader)
        } else {
            self.registry.register(reader)
        };
        let members = self
            .peers
            .read()
            .map(|p| {
                p.iter()
                    .filter(|(_, addr)| **addr != self.advertise_addr)
                    .map(|(&id, addr)| Member {
                        id,
                        addr: addr.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some((
            reader_id,
            InstallPayload {
                uri: format!("raftsnap://{}/{reader_id}", self.advertise_addr),
                meta_table,
                members,
            },
        ))
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
        if let Some(p) = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&to)
            .filter(|p| Instant::now() < p.not_before)
        {
            debug!(
                peer = to,
                attempts = p.attempts,
                "install to this peer is backing off"
            );
            return Err(unavailable());
        }
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
        let Some((reader_id, payload)) = self.register(meta.last_included_index) else {
            return Err(unavailable());
        };
        self.lock().insert(
            to,
            Inflight {
                reader_id,
                index: meta.last_included_index,
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_half_a_second_to_thirty_with_jitter() {
        for attempts in 1..40 {
            let cap = INSTALL_BACKOFF_MIN
                .saturating_mul(1u32 << (attempts - 1).min(16))
                .min(INSTALL_BACKOFF_MAX);
            let d = install_backoff(attempts);
            assert!(d >= cap / 2 && d <= cap, "{attempts}: {d:?} vs {cap:?}");
        }
        assert!(install_backoff(1) <= INSTALL_BACKOFF_MIN);
        assert!(install_backoff(30) >= INSTALL_BACKOFF_MAX / 2);
        // 30 s of failures allow at most ~10 attempts.
        let (mut t, mut n) = (Duration::ZERO, 0);
        while t < Duration::from_secs(30) {
            n += 1;
            t += install_backoff(n);
        }
        assert!(n <= 10, "{n} attempts in 30 s");
    }
}
