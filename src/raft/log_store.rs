//! The raft log on disk: entries, hard state, conf state and the point the
//! log was truncated at (by compaction or by an installed snapshot).
//!
//! [`LogStore`] is the seam; [`SledLogStore`] the implementation (one sled
//! tree, keys `e` + index for entries and `m:` for metadata, so that every
//! multi-key change is one atomic sled batch). sled's `flush` uses
//! `sync_file_range` on Linux, which does not flush a drive's write cache:
//! see the README's durability note.

use std::path::Path;
use std::sync::Mutex;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::raft::error::RaftError;

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
    /// Stores the commit index.
    fn set_commit(&self, commit: u64) -> Result<(), RaftError>;
    /// Replaces the log with an installed snapshot's position, in one batch:
    /// every entry dropped, truncated at (index, term), conf state set,
    /// commit raised to index.
    fn apply_snapshot(&self, index: u64, term: u64, cs: &ConfState) -> Result<(), RaftError>;
    /// Drops entries before `index`; returns how many were dropped.
    fn compact(&self, index: u64) -> Result<u64, RaftError>;
    /// Makes everything written durable (fsync).
    fn flush(&self) -> Result<(), RaftError>;
}

const HS: &[u8] = b"m:hs";
const CS: &[u8] = b"m:cs";
const TRUNC: &[u8] = b"m:trunc";

fn ekey(i: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&i.to_be_bytes());
    k
}

fn store_err(what: &'static str) -> impl FnOnce(sled::Error) -> RaftError {
    move |source| RaftError::Store { what, source }
}

fn raft_store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    trunc_index: u64,
    trunc_term: u64,
    last_index: u64,
}

/// A sled-backed [`LogStore`].
pub struct SledLogStore {
    db: sled::Db,
    tree: sled::Tree,
    bounds: Mutex<Bounds>,
}

impl std::fmt::Debug for SledLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLogStore")
            .field("bounds", &*self.lock())
            .finish()
    }
}

impl SledLogStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, RaftError> {
        // sled's background threads may hold a just-dropped database's file
        // lock for a moment (an in-process restart): retry for up to 10 s.
        let mut tries = 0;
        let db = loop {
            match sled::Config::new().path(dir).flush_every_ms(None).open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && tries < 500 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(store_err("open")(e)),
            }
        };
        let tree = db.open_tree("raft").map_err(store_err("open tree"))?;
        let (trunc_index, trunc_term) = match tree.get(TRUNC).map_err(store_err("read"))? {
            Some(v) if v.len() == 16 => (
                u64::from_be_bytes(v[..8].try_into().unwrap_or_default()),
                u64::from_be_bytes(v[8..].try_into().unwrap_or_default()),
            ),
            Some(_) => {
                return Err(RaftError::Corrupt {
                    what: "truncation point".into(),
                    reason: "not 16 bytes".into(),
                });
            }
            None => (0, 0),
        };
        let last_index = match tree.scan_prefix(b"e").next_back() {
            Some(kv) => {
                let (k, _) = kv.map_err(store_err("scan"))?;
                u64::from_be_bytes(k[1..9].try_into().unwrap_or_default())
            }
            None => trunc_index,
        };
        Ok(Self {
            db,
            tree,
            bounds: Mutex::new(Bounds {
                trunc_index,
                trunc_term,
                last_index: last_index.max(trunc_index),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bounds> {
        self.bounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_msg<M: protobuf::Message>(&self, key: &[u8], what: &str) -> Result<M, RaftError> {
        match self.tree.get(key).map_err(store_err("read"))? {
            None => Ok(M::new()),
            Some(v) => M::parse_from_bytes(&v).map_err(|e| RaftError::Corrupt {
                what: what.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn put_msg(&self, key: &[u8], m: &impl protobuf::Message) -> Result<(), RaftError> {
        let bytes = m
            .write_to_bytes()
            .map_err(|e| RaftError::Invalid(e.to_string()))?;
        self.tree.insert(key, bytes).map_err(store_err("write"))?;
        Ok(())
    }

    /// Number of entries held.
    pub fn len(&self) -> u64 {
        let b = *self.lock();
        b.last_index - b.trunc_index
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LogStore for SledLogStore {
    fn initial_state(&self) -> Result<RaftState, RaftError> {
        Ok(RaftState {
            hard_state: self.get_msg(HS, "hard state")?,
            conf_state: self.get_msg(CS, "conf state")?,
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, raft::Error> {
        let b = *self.lock();
        if low <= b.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > b.last_index + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for kv in self.tree.range(ekey(low)..ekey(high)) {
            let (_, v) = kv.map_err(raft_store_err)?;
            let e = Entry::parse_from_bytes(&v).map_err(raft_store_err)?;
            size += u64::from(e.compute_size());
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(e);
        }
        if out.len() as u64 != high - low && max_size.is_none() {
            return Err(raft_store_err(format!(
                "entries {low}..{high}: only {} found",
                out.len()
            )));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> Result<u64, raft::Error> {
        let b = *self.lock();
        if idx == b.trunc_index {
            return Ok(b.trunc_term);
        }
        if idx < b.trunc_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > b.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        match self.tree.get(ekey(idx)).map_err(raft_store_err)? {
            Some(v) => Ok(Entry::parse_from_bytes(&v).map_err(raft_store_err)?.term),
            None => Err(raft_store_err(format!("entry {idx} missing"))),
        }
    }

    fn first_index(&self) -> u64 {
        self.lock().trunc_index + 1
    }

    fn last_index(&self) -> u64 {
        self.lock().last_index
    }

    fn append(&self, entries: &[Entry]) -> Result<(), RaftError> {
        let mut b = self.lock();
        let entries: Vec<&Entry> = entries.iter().filter(|e| e.index > b.trunc_index).collect();
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        if first.index > b.last_index + 1 {
            return Err(RaftError::Invalid(format!(
                "append at {} leaves a gap after {}",
                first.index, b.last_index
            )));
        }
        let mut batch = sled::Batch::default();
        for i in last.index + 1..=b.last_index {
            batch.remove(&ekey(i));
        }
        for e in &entries {
            let bytes = e
                .write_to_bytes()
                .map_err(|e| RaftError::Invalid(e.to_string()))?;
            batch.insert(&ekey(e.index), bytes);
        }
        self.tree.apply_batch(batch).map_err(store_err("append"))?;
        b.last_index = last.index;
        Ok(())
    }

    fn set_hard_state(&self, hs: &HardState) -> Result<(), RaftError> {
        self.put_msg(HS, hs)
    }

    fn set_conf_state(&self, cs: &ConfState) -> Result<(), RaftError> {
        self.put_msg(CS, cs)
    }

    fn set_commit(&self, commit: u64) -> Result<(), RaftError> {
        let mut hs: HardState = self.get_msg(HS, "hard state")?;
        hs.commit = commit;
        self.put_msg(HS, &hs)
    }

    fn apply_snapshot(&self, index: u64, term: u64, cs: &ConfState) -> Result<(), RaftError> {
        let mut b = self.lock();
        let mut hs: HardState = self.get_msg(HS, "hard state")?;
        hs.commit = hs.commit.max(index);
        hs.term = hs.term.max(term);
        let mut batch = sled::Batch::default();
        for kv in self.tree.scan_prefix(b"e") {
            let (k, _) = kv.map_err(store_err("scan"))?;
            batch.remove(k);
        }
        let mut trunc = [0u8; 16];
        trunc[..8].copy_from_slice(&index.to_be_bytes());
        trunc[8..].copy_from_slice(&term.to_be_bytes());
        batch.insert(TRUNC, &trunc[..]);
        batch.insert(
            HS,
            hs.write_to_bytes()
                .map_err(|e| RaftError::Invalid(e.to_string()))?,
        );
        batch.insert(
            CS,
            cs.write_to_bytes()
                .map_err(|e| RaftError::Invalid(e.to_string()))?,
        );
        self.tree
            .apply_batch(batch)
            .map_err(store_err("apply snapshot"))?;
        *b = Bounds {
            trunc_index: index,
            trunc_term: term,
            last_index: index,
        };
        Ok(())
    }

    fn compact(&self, index: u64) -> Result<u64, RaftError> {
        let (from, upto, term) = {
            let b = *self.lock();
            if index <= b.trunc_index + 1 {
                return Ok(0);
            }
            if index > b.last_index + 1 {
                return Err(RaftError::Invalid(format!(
                    "compact to {index} past the last index {}",
                    b.last_index
                )));
            }
            let term = self
                .term(index - 1)
                .map_err(|e| RaftError::Invalid(e.to_string()))?;
            (b.trunc_index + 1, index, term)
        };
        // Move the truncation point first (readers see a shorter log at
        // once), then delete the entries below it.
        let mut trunc = [0u8; 16];
        trunc[..8].copy_from_slice(&(upto - 1).to_be_bytes());
        trunc[8..].copy_from_slice(&term.to_be_bytes());
        {
            let mut b = self.lock();
            self.tree
                .insert(TRUNC, &trunc[..])
                .map_err(store_err("compact"))?;
            b.trunc_index = upto - 1;
            b.trunc_term = term;
        }
        let mut batch = sled::Batch::default();
        for i in from..upto {
            batch.remove(&ekey(i));
        }
        self.tree.apply_batch(batch).map_err(store_err("compact"))?;
        Ok(upto - from)
    }

    fn flush(&self) -> Result<(), RaftError> {
        self.db.flush().map_err(store_err("flush"))?;
        Ok(())
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
        let s = SledLogStore::open(t.path()).unwrap();
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
        let s = SledLogStore::open(t.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (1, 7));
        assert_eq!(s.initial_state().unwrap().hard_state, hs);
        assert_eq!(s.entries(1, 8, None).unwrap().len(), 7);
        // max_size: at least one entry.
        assert_eq!(s.entries(1, 8, Some(1)).unwrap().len(), 1);
    }

    #[test]
    fn compact_and_apply_snapshot_move_the_first_index() {
        let t = tempfile::tempdir().unwrap();
        let s = SledLogStore::open(t.path()).unwrap();
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
        let s = SledLogStore::open(t.path()).unwrap();
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
        let s = SledLogStore::open(t.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (501, 501));
    }
}
