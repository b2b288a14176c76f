//! The raft log on disk: entries, hard state, conf state and the point the
//! log was truncated at (by compaction or by an installed snapshot).
//!
//! [`LogStore`] is the seam; [`WalLogStore`] the implementation, over the
//! segmented write-ahead log of [`crate::raft::wal`]: every write is a
//! record appended to one file stream, and `flush` is an `fdatasync` of it,
//! so one sync makes a whole Ready (entries and hard state) durable.

use std::path::Path;
use std::sync::Mutex;

use raft::prelude::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::raft::error::RaftError;
use crate::raft::wal::{DEFAULT_SEGMENT_BYTES, Wal};

/// The raft log store, as the node uses it.
pub trait LogStore: Send + Sync + 'static {
    /// Hard state and conf state.
    fn initial_state(&self) -> Result<RaftState, RaftError>;
    /// Entries `[low, high)`, at most `max_size` bytes (at least one entry).
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, raft::Error>;
    /// Term of entry `idx` (`first_index() - 1` included).
    fn term(&self, idx: u64) -> Result<u64, raft::Error>;
    /// First index held (truncated index + 1).
    fn first_index(&self) -> u64;
    /// Last index held (the truncated index when empty).
    fn last_index(&self) -> u64;
    /// Appends entries, replacing any conflicting tail.
    fn append(&self, entries: &[Entry]) -> Result<(), RaftError>;
    /// Stores the hard state.
    fn set_hard_state(&self, hs: &HardState) -> Result<(), RaftError>;
    /// Stores the conf state.
    fn set_conf_state(&self, cs: &ConfState) -> Result<(), RaftError>;
    /// Replaces the log with an installed snapshot's position, in one batch:
    /// every entry dropped, truncated at (index, term), conf state set,
    /// commit raised to index.
    fn apply_snapshot(&self, index: u64, term: u64, cs: &ConfState) -> Result<(), RaftError>;
    /// Drops entries before `index`; returns how many were dropped.
    fn compact(&self, index: u64) -> Result<u64, RaftError>;
    /// Makes everything written durable (`fdatasync` of the log file).
    fn flush(&self) -> Result<(), RaftError>;
}

fn raft_store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

/// The [`LogStore`] of a node: a segmented write-ahead log ([`Wal`]) behind
/// a mutex (the raft loop appends; compaction runs on another thread).
pub struct WalLogStore {
    wal: Mutex<Wal>,
}

impl std::fmt::Debug for WalLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.lock();
        f.debug_struct("WalLogStore")
            .field("first_index", &w.first_index())
            .field("last_index", &w.last_index())
            .finish()
    }
}

impl WalLogStore {
    /// Makes every write so far durable; how long the `fdatasync` took, or
    /// `None` when there was nothing to sync.
    pub fn sync(&self) -> Result<Option<std::time::Duration>, RaftError> {
        // fdatasync outside the lock: the raft loop keeps appending while
        // the disk syncs (group commit: the next sync takes all of it).
        let pending = self.lock().sync_target();
        if let Some((file, path, written)) = pending {
            fail::fail_point!("wal::sync", |_| Err(RaftError::Store {
                what: "fdatasync",
                path: path.clone(),
                source: std::io::Error::from_raw_os_error(5),
            }));
            let started = std::time::Instant::now();
            file.sync_data().map_err(|source| RaftError::Store {
                what: "fdatasync",
                path,
                source,
            })?;
            let took = started.elapsed();
            let mut w = self.lock();
            w.mark_synced(written);
            w.maybe_rotate()?;
            return Ok(Some(took));
        }
        self.lock().maybe_rotate()?;
        Ok(None)
    }

    /// Opens (creating) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, RaftError> {
        Self::open_with(dir, DEFAULT_SEGMENT_BYTES)
    }

    /// Opens with segments of `segment_bytes`.
    pub fn open_with(dir: &Path, segment_bytes: u64) -> Result<Self, RaftError> {
        Ok(Self {
            wal: Mutex::new(Wal::open(dir, segment_bytes)?),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of entries held.
    pub fn len(&self) -> u64 {
        let w = self.lock();
        w.last_index() + 1 - w.first_index()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LogStore for WalLogStore {
    fn initial_state(&self) -> Result<RaftState, RaftError> {
        let w = self.lock();
        Ok(RaftState {
            hard_state: w.hard_state().clone(),
            conf_state: w.conf_state().clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, raft::Error> {
        let w = self.lock();
        if low < w.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > w.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for i in low..high {
            size += w.entry_len(i).unwrap_or(0);
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(w.entry(i).map_err(raft_store_err)?);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> Result<u64, raft::Error> {
        let w = self.lock();
        if idx < w.truncated().0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        w.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> u64 {
        self.lock().first_index()
    }

    fn last_index(&self) -> u64 {
        self.lock().last_index()
    }

    fn append(&self, entries: &[Entry]) -> Result<(), RaftError> {
        self.lock().append(entries)
    }

    fn set_hard_state(&self, hs: &HardState) -> Result<(), RaftError> {
        self.lock().set_hard_state(hs)
    }

    fn set_conf_state(&self, cs: &ConfState) -> Result<(), RaftError> {
        self.lock().set_conf_state(cs)
    }

    fn apply_snapshot(&self, index: u64, term: u64, cs: &ConfState) -> Result<(), RaftError> {
        self.lock().apply_snapshot(index, term, cs)
    }

    fn compact(&self, index: u64) -> Result<u64, RaftError> {
        // The Compact record is synced outside the lock (as every sync is),
        // so the raft loop's appends do not wait for it.
        let Some((trunc, term)) = self.lock().write_compact(index)? else {
            return Ok(0);
        };
        self.flush()?;
        self.lock().finish_compact(trunc, term)
    }

    fn flush(&self) -> Result<(), RaftError> {
        self.sync().map(|_| ())
    }
}

/// `raft::Storage` over a [`LogStore`] plus the snapshot source.
pub struct RaftStorage {
    /// The log.
    pub log: std::sync::Arc<dyn LogStore>,
    /// Where `snapshot()` gets snapshots from.
    pub snapshots: std::sync::Arc<dyn SnapshotProvider>,
}

/// What `raft::Storage::snapshot` asks for.
pub trait SnapshotProvider: Send + Sync + 'static {
    /// A snapshot for peer `to` at least as new as `request_index`, or
    /// `SnapshotTemporarilyUnavailable` after starting a save.
    fn snapshot_for(&self, request_index: u64, to: u64) -> raft::Result<raft::prelude::Snapshot>;
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.log.initial_state().map_err(raft_store_err)
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.log.entries(low, high, max_size.into())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.log.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.log.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.log.last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<raft::prelude::Snapshot> {
        self.snapshots.snapshot_for(request_index, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    #[test]
    fn append_truncates_conflicts_and_survives_reopen() {
        let t = tempfile::tempdir().unwrap();
        let s = WalLogStore::open(t.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (1, 0));
        s.append(&(1..=10).map(|i| ent(i, 1)).collect::<Vec<_>>())
            .unwrap();
        // A new leader overwrites 6.. with term 2 and a shorter tail.
        s.append(&[ent(6, 2), ent(7, 2)]).unwrap();
        assert_eq!(s.last_index(), 7);
        assert_eq!(s.term(7).unwrap(), 2);
        assert_eq!(s.term(5).unwrap(), 1);
        assert!(matches!(
            s.term(8),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
        assert!(s.append(&[ent(9, 2)]).is_err(), "gap refused");
        let hs = HardState {
            term: 2,
            commit: 7,
            ..Default::default()
        };
        s.set_hard_state(&hs).unwrap();
        s.flush().unwrap();
        drop(s);
        let s = WalLogStore::open(t.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (1, 7));
        assert_eq!(s.initial_state().unwrap().hard_state, hs);
        assert_eq!(s.entries(1, 8, None).unwrap().len(), 7);
        // max_size: at least one entry.
        assert_eq!(s.entries(1, 8, Some(1)).unwrap().len(), 1);
    }

    #[test]
    fn compact_and_apply_snapshot_move_the_first_index() {
        let t = tempfile::tempdir().unwrap();
        let s = WalLogStore::open(t.path()).unwrap();
        s.append(&(1..=100).map(|i| ent(i, 1 + i / 50)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(s.compact(60).unwrap(), 59);
        assert_eq!((s.first_index(), s.last_index(), s.len()), (60, 100, 41));
        assert_eq!(s.term(59).unwrap(), 2);
        assert!(matches!(
            s.term(58),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            s.entries(59, 61, None),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(s.compact(10).unwrap(), 0);
        assert!(s.compact(102).is_err());
        drop(s);
        let s = WalLogStore::open(t.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (60, 100));
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        s.apply_snapshot(500, 7, &cs).unwrap();
        assert_eq!(
            (s.first_index(), s.last_index(), s.term(500).unwrap()),
            (501, 500, 7)
        );
        let st = s.initial_state().unwrap();
        assert_eq!(
            (st.hard_state.commit, st.conf_state.voters.clone()),
            (500, vec![1, 2, 3])
        );
        s.append(&[ent(501, 7)]).unwrap();
        drop(s);
        let s = WalLogStore::open(t.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (501, 501));
    }
}
