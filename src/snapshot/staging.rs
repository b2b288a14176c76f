//! Staged files: bulk data that travels by file, not through the raft log
//! (DESIGN §3 "Bulk data by file").
//!
//! A node that receives bulk data writes it into a staged set
//! (`staging/<id>/`: the files, fsynced, and a `MANIFEST` meta table with
//! each file's size and crc32c, written last; the directory is renamed
//! from `<id>.part` in one step). The [`FileService`] serves complete sets
//! under their id, so other replicas fetch them with the
//! [`RemoteFileCopier`] from any holder. A command naming the set is then
//! proposed; each replica makes sure it holds the set before applying it
//! ([`StagingArea::obtain`]) and records the index it applied it at.
//!
//! Lease: a set stays until the local raft log no longer reaches the entry
//! that applied it (a snapshot covers it, so a replica that is behind gets
//! the data inside its next snapshot install, and any replica that still
//! replays the entry from a log has not released its own copy). A set no
//! command applied is dropped after `orphan_ttl`.
//!
//! [`FileService`]: crate::snapshot::SnapshotFileService

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::proto::snapshot::{FileMeta, SnapshotMetaTable};
use crate::snapshot::copier::{RemoteFileCopier, SnapshotUri};
use crate::snapshot::error::{IoContext, SnapshotError};
use crate::snapshot::fsutil::{
    copy_with_crc, fsync_dir, remove_dir_atomically, write_file_atomically,
};
use crate::snapshot::meta_table;

/// The meta table of a staged set (written last).
pub const MANIFEST: &str = "MANIFEST";
/// The raft index that applied a staged set.
pub const APPLIED: &str = "APPLIED";
/// Staged sets a node fetches at once.
pub const FETCHES_AT_ONCE: usize = 1;
/// How long a set that no command applied is kept (1 h).
pub const DEFAULT_ORPHAN_TTL: Duration = Duration::from_secs(3600);

/// True for a staging id (top bit set; snapshot reader ids never have it).
pub fn is_staging_id(id: u64) -> bool {
    id >> 63 == 1
}

/// A fresh, unguessable staging id.
pub fn new_staging_id() -> u64 {
    crate::snapshot::fsutil::random_u64() | (1 << 63)
}

/// A set's files, as the command that ingests them names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedNeed {
    /// The staging id.
    pub id: u64,
    /// Its files.
    pub files: Vec<FileMeta>,
    /// Nodes that held the set when the command was proposed (the
    /// proposer first).
    pub holders: Vec<u64>,
}

/// A complete staged set.
#[derive(Debug, Clone)]
pub struct StagedSet {
    /// Its id.
    pub id: u64,
    dir: PathBuf,
    table: SnapshotMetaTable,
    meta_bytes: Arc<Vec<u8>>,
}

impl StagedSet {
    /// Its files.
    pub fn files(&self) -> &[FileMeta] {
        &self.table.files
    }

    /// One file's entry.
    pub fn file(&self, name: &str) -> Option<&FileMeta> {
        self.table.files.iter().find(|f| f.name == name)
    }

    /// The path of one of its files.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The manifest as served (framed, with its crc32c).
    pub fn meta_bytes(&self) -> Arc<Vec<u8>> {
        self.meta_bytes.clone()
    }
}

/// Writes one staged set; nothing is visible until [`commit`](Self::commit).
#[derive(Debug)]
pub struct StageWriter {
    id: u64,
    part: PathBuf,
    root: PathBuf,
    files: Vec<FileMeta>,
}

impl StageWriter {
    /// The id of the set being written.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Copies `src` into the set as `name` (crc32c computed on the way,
    /// fsynced).
    pub fn add(&mut self, name: &str, src: &mut dyn Read) -> Result<FileMeta, SnapshotError> {
        let path = self.path_for(name)?;
        let mut f = File::create(&path).at("create", &path)?;
        let (size, crc32c) = copy_with_crc(src, &mut f).at("write", &path)?;
        f.sync_all().at("fsync file", &path)?;
        Ok(self.record(name, size, crc32c))
    }

    /// Where to write a file named `name` directly (then [`record`](Self::record) it).
    pub fn path_for(&self, name: &str) -> Result<PathBuf, SnapshotError> {
        meta_table::validate_file_name(name).map_err(|source| SnapshotError::MetaTable {
            path: self.part.join(name),
            source,
        })?;
        if self.files.iter().any(|f| f.name == name) {
            return Err(SnapshotError::Staged {
                id: self.id,
                reason: format!("{name} added twice"),
            });
        }
        Ok(self.part.join(name))
    }

    /// The path of a file already added (to read it back).
    pub fn path_for_checking(&self, name: &str) -> Result<PathBuf, SnapshotError> {
        if !self.files.iter().any(|f| f.name == name) {
            return Err(SnapshotError::Staged {
                id: self.id,
                reason: format!("{name} is not in the set"),
            });
        }
        Ok(self.part.join(name))
    }

    /// Records a file written (and fsynced) at [`path_for`](Self::path_for).
    pub fn record(&mut self, name: &str, size: u64, crc32c: u32) -> FileMeta {
        let fm = FileMeta {
            name: name.to_string(),
            size,
            crc32c,
            ..Default::default()
        };
        self.files.push(fm.clone());
        fm
    }

    /// Records new contents of a file already added (rewritten in place
    /// and fsynced).
    pub fn rerecord(&mut self, name: &str, size: u64, crc32c: u32) -> Result<(), SnapshotError> {
        let id = self.id;
        let f = self
            .files
            .iter_mut()
            .find(|f| f.name == name)
            .ok_or_else(|| SnapshotError::Staged {
                id,
                reason: format!("{name} is not in the set"),
            })?;
        f.size = size;
        f.crc32c = crc32c;
        Ok(())
    }

    /// Takes a file added out of the set (and off the disk).
    pub fn remove(&mut self, name: &str) -> Result<(), SnapshotError> {
        let path = self.path_for_checking(name)?;
        self.files.retain(|f| f.name != name);
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    /// Files added so far.
    pub fn files(&self) -> &[FileMeta] {
        &self.files
    }

    /// Writes the manifest and publishes the set under its id.
    pub fn commit(mut self) -> Result<StagedSet, SnapshotError> {
        let files = std::mem::take(&mut self.files);
        publish(&self.root, &self.part, self.id, manifest(files))
    }

    /// Drops what was written (as dropping the writer does).
    pub fn abort(self) {}
}

impl Drop for StageWriter {
    /// An uncommitted set is removed (a committed one was renamed away).
    fn drop(&mut self) {
        if self.part.exists() {
            let _ = fs::remove_dir_all(&self.part);
        }
    }
}

fn set_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("{id:016x}"))
}

fn part_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("{id:016x}.part"))
}

/// The manifest of a staged set: a meta table whose position is a
/// placeholder (index 1; a staged set is not a snapshot), so that the
/// snapshot tools' framing, crc32c and name checks apply unchanged.
fn manifest(files: Vec<FileMeta>) -> SnapshotMetaTable {
    SnapshotMetaTable {
        meta: Some(crate::proto::snapshot::SnapshotMeta {
            last_included_index: 1,
            ..Default::default()
        }),
        files,
    }
}

fn publish(
    root: &Path,
    part: &Path,
    id: u64,
    table: SnapshotMetaTable,
) -> Result<StagedSet, SnapshotError> {
    let bytes = meta_table::encode(&table);
    write_file_atomically(part, MANIFEST, &bytes)?;
    let dir = set_dir(root, id);
    fs::rename(part, &dir).at("publish staged set", part)?;
    fsync_dir(root)?;
    Ok(StagedSet {
        id,
        dir,
        table,
        meta_bytes: Arc::new(bytes),
    })
}

/// How a node fetches sets it does not hold (set once the node runs).
struct Fetcher {
    copier: Arc<RemoteFileCopier>,
    rt: tokio::runtime::Handle,
    /// This node's id and the members' gRPC addresses.
    self_id: u64,
    members: Box<dyn Fn() -> BTreeMap<u64, String> + Send + Sync>,
}

/// The staged sets of one node.
pub struct StagingArea {
    root: PathBuf,
    orphan_ttl: Duration,
    /// Sets applied, by id: the raft index that applied them.
    applied: Mutex<BTreeMap<u64, u64>>,
    /// One fetch or publish of a set at a time.
    busy: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// Sets fetched at once by this node (each streams several files):
    /// bounds what a burst of ingests costs the holders that serve them.
    fetch_slots: tokio::sync::Semaphore,
    fetcher: OnceLock<Fetcher>,
}

impl std::fmt::Debug for StagingArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagingArea")
            .field("root", &self.root)
            .finish()
    }
}

fn parse_id(name: &str) -> Option<u64> {
    (name.len() == 16)
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

impl StagingArea {
    /// Opens (creating) the staging directory: unfinished sets are dropped,
    /// the applied ones are remembered.
    pub fn open(
        root: impl Into<PathBuf>,
        orphan_ttl: Duration,
    ) -> Result<Arc<Self>, SnapshotError> {
        let root = root.into();
        fs::create_dir_all(&root).at("create directory", &root)?;
        let mut applied = BTreeMap::new();
        for e in fs::read_dir(&root).at("read directory", &root)? {
            let e = e.at("read directory", &root)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if let Some(id) = parse_id(&name) {
                if let Ok(s) = fs::read_to_string(path.join(APPLIED))
                    && let Ok(index) = s.trim().parse::<u64>()
                {
                    applied.insert(id, index);
                }
            } else if name.ends_with(".part") || name.ends_with(".del") {
                fs::remove_dir_all(&path).at("remove unfinished staged set", &path)?;
            }
        }
        Ok(Arc::new(Self {
            root,
            orphan_ttl,
            applied: Mutex::new(applied),
            busy: Mutex::new(HashMap::new()),
            fetch_slots: tokio::sync::Semaphore::new(FETCHES_AT_ONCE),
            fetcher: OnceLock::new(),
        }))
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lets the node fetch missing sets from the members (once, at start).
    pub fn attach(
        &self,
        copier: Arc<RemoteFileCopier>,
        rt: tokio::runtime::Handle,
        self_id: u64,
        members: Box<dyn Fn() -> BTreeMap<u64, String> + Send + Sync>,
    ) {
        let _ = self.fetcher.set(Fetcher {
            copier,
            rt,
            self_id,
            members,
        });
    }

    fn lock_id(&self, id: u64) -> Arc<tokio::sync::Mutex<()>> {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    /// Starts a new set.
    pub fn begin(&self) -> Result<StageWriter, SnapshotError> {
        let id = new_staging_id();
        let part = part_dir(&self.root, id);
        fs::create_dir_all(&part).at("create directory", &part)?;
        Ok(StageWriter {
            id,
            part,
            root: self.root.clone(),
            files: Vec::new(),
        })
    }

    /// The complete set `id`, if held here (its manifest verified).
    pub fn get(&self, id: u64) -> Option<StagedSet> {
        let dir = set_dir(&self.root, id);
        let bytes = fs::read(dir.join(MANIFEST)).ok()?;
        let table = meta_table::decode(&bytes).ok()?;
        Some(StagedSet {
            id,
            dir,
            table,
            meta_bytes: Arc::new(bytes),
        })
    }

    /// Fetches set `id` (these files) from `sources` unless it is held
    /// here already; the set is published only once every file is
    /// verified.
    pub async fn fetch(
        &self,
        id: u64,
        files: &[FileMeta],
        sources: &[SnapshotUri],
        cancel: &CancellationToken,
    ) -> Result<StagedSet, SnapshotError> {
        let Some(f) = self.fetcher.get() else {
            return Err(SnapshotError::Staged {
                id,
                reason: "this node cannot fetch staged files".into(),
            });
        };
        let lock = self.lock_id(id);
        let _g = lock.lock().await;
        if let Some(s) = self.get(id) {
            if s.files() == files {
                return Ok(s);
            }
            return Err(SnapshotError::Staged {
                id,
                reason: "held here with other files than the command names".into(),
            });
        }
        let _slot = self
            .fetch_slots
            .acquire()
            .await
            .map_err(|_| SnapshotError::Staged {
                id,
                reason: "the staging area is closing".into(),
            })?;
        let part = part_dir(&self.root, id);
        let bytes = f.copier.fetch_files(sources, files, &part, cancel).await?;
        let (root, table) = (self.root.clone(), manifest(files.to_vec()));
        let set = tokio::task::spawn_blocking(move || publish(&root, &part, id, table))
            .await
            .map_err(|e| SnapshotError::Staged {
                id,
                reason: e.to_string(),
            })??;
        info!(staging_id = %format!("{id:016x}"), bytes, files = files.len(), "staged files fetched");
        Ok(set)
    }

    /// Makes sure set `need` is held here before the command naming it
    /// applies: fetched from its holders (the proposer first), then from
    /// the other members, retried with backoff (0.5 s doubling to 30 s)
    /// until it is held or `cancel` fires. Blocking (the apply thread).
    pub fn obtain(
        &self,
        need: &StagedNeed,
        cancel: &CancellationToken,
    ) -> Result<StagedSet, SnapshotError> {
        if let Some(s) = self.get(need.id)
            && s.files() == need.files.as_slice()
        {
            return Ok(s);
        }
        let Some(f) = self.fetcher.get() else {
            return Err(SnapshotError::Staged {
                id: need.id,
                reason: "not held here, and this node cannot fetch".into(),
            });
        };
        let mut delay = Duration::from_millis(500);
        loop {
            let members = (f.members)();
            let mut order: Vec<u64> = need.holders.clone();
            order.extend(members.keys().filter(|m| !need.holders.contains(m)));
            let sources: Vec<SnapshotUri> = order
                .into_iter()
                .filter(|m| *m != f.self_id)
                .filter_map(|m| members.get(&m).cloned())
                .map(|addr| SnapshotUri {
                    addr,
                    reader_id: need.id,
                })
                .collect();
            match f
                .rt
                .block_on(self.fetch(need.id, &need.files, &sources, cancel))
            {
                Ok(s) => return Ok(s),
                Err(e) if cancel.is_cancelled() => return Err(e),
                Err(e) => {
                    warn!(staging_id = %format!("{:016x}", need.id), error = %e, retry_in = ?delay, "staged files not fetched; retrying");
                }
            }
            let stop = f.rt.block_on(async {
                tokio::select! {
                    _ = cancel.cancelled() => true,
                    _ = tokio::time::sleep(delay) => false,
                }
            });
            if stop {
                return Err(SnapshotError::Staged {
                    id: need.id,
                    reason: "cancelled while fetching".into(),
                });
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Records that the command at `index` applied set `id` (durably: a
    /// restart keeps its lease).
    pub fn mark_applied(&self, id: u64, index: u64) -> Result<(), SnapshotError> {
        let dir = set_dir(&self.root, id);
        if dir.exists() {
            write_file_atomically(&dir, APPLIED, index.to_string().as_bytes())?;
        }
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, index);
        Ok(())
    }

    /// Ends the leases the log no longer needs: sets applied before
    /// `first_log_index`, and sets no command applied within the orphan
    /// TTL. Returns the ids removed.
    pub fn release(&self, first_log_index: u64) -> Vec<u64> {
        let mut done: Vec<u64> = {
            let mut a = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<u64> = a
                .iter()
                .filter(|(_, idx)| **idx < first_log_index)
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                a.remove(id);
            }
            ids
        };
        let applied = self
            .applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Ok(rd) = fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let age = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                // A fetch or upload that failed leaves its `.part` (a retry
                // resumes it); one untouched for the TTL is abandoned.
                if let Some(id) = name.strip_suffix(".part").and_then(parse_id) {
                    let idle = self
                        .busy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&id)
                        .is_none_or(|l| l.try_lock().is_ok());
                    if age > self.orphan_ttl && idle {
                        let _ = fs::remove_dir_all(e.path());
                    }
                    continue;
                }
                let Some(id) = parse_id(&name) else { continue };
                if applied.contains_key(&id) || done.contains(&id) {
                    continue;
                }
                if age > self.orphan_ttl && !e.path().join(APPLIED).exists() {
                    done.push(id);
                }
            }
        }
        for id in &done {
            let dir = set_dir(&self.root, *id);
            match remove_dir_atomically(&dir) {
                Ok(()) => info!(staging_id = %format!("{id:016x}"), "staged set released"),
                Err(e) => warn!(error = %e, "could not remove a staged set"),
            }
            self.busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
        done
    }

    /// Sets held here (complete ones).
    pub fn held(&self) -> Vec<u64> {
        fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| parse_id(&e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_marked_and_distinct() {
        let a = new_staging_id();
        let b = new_staging_id();
        assert!(is_staging_id(a) && is_staging_id(b));
        assert_ne!(a, b);
        assert!(!is_staging_id(12345));
    }

    #[test]
    fn a_set_is_visible_only_once_committed_and_survives_a_reopen() {
        let t = tempfile::tempdir().unwrap();
        let area = StagingArea::open(t.path().join("staging"), DEFAULT_ORPHAN_TTL).unwrap();
        let mut w = area.begin().unwrap();
        let id = w.id();
        let fm = w.add("a.tsm", &mut &b"hello"[..]).unwrap();
        assert_eq!((fm.size, fm.crc32c), (5, crc32c::crc32c(b"hello")));
        assert!(w.add("a.tsm", &mut &b"x"[..]).is_err(), "a name twice");
        assert!(
            w.add("../x", &mut &b"x"[..]).is_err(),
            "a name leaving the set"
        );
        assert!(area.get(id).is_none());
        let set = w.commit().unwrap();
        assert_eq!(set.files().len(), 1);
        assert_eq!(fs::read(set.path_of("a.tsm")).unwrap(), b"hello");
        // An unfinished set is dropped at open; the applied one stays.
        let w2 = area.begin().unwrap();
        let part = part_dir(area.root(), w2.id());
        area.mark_applied(id, 7).unwrap();
        drop(area);
        let area = StagingArea::open(t.path().join("staging"), DEFAULT_ORPHAN_TTL).unwrap();
        assert!(!part.exists());
        assert!(area.get(id).is_some());
        // The lease ends once the log starts after the applying entry.
        assert!(area.release(7).is_empty());
        assert_eq!(area.release(8), vec![id]);
        assert!(area.get(id).is_none());
    }

    #[test]
    fn orphans_expire_and_a_damaged_manifest_hides_the_set() {
        let t = tempfile::tempdir().unwrap();
        let area = StagingArea::open(t.path().join("s"), Duration::ZERO).unwrap();
        let mut w = area.begin().unwrap();
        w.add("f", &mut &b"abc"[..]).unwrap();
        let set = w.commit().unwrap();
        let m = set.dir.join(MANIFEST);
        let mut b = fs::read(&m).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        fs::write(&m, b).unwrap();
        assert!(area.get(set.id).is_none());
        let abandoned = part_dir(area.root(), new_staging_id());
        fs::create_dir_all(&abandoned).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(area.release(0), vec![set.id]);
        assert!(!abandoned.exists(), "an abandoned .part is removed");
    }

    #[test]
    fn obtain_without_a_fetcher_names_the_set() {
        let t = tempfile::tempdir().unwrap();
        let area = StagingArea::open(t.path().join("s"), DEFAULT_ORPHAN_TTL).unwrap();
        let need = StagedNeed {
            id: new_staging_id(),
            files: vec![],
            holders: vec![1],
        };
        let e = area.obtain(&need, &CancellationToken::new()).unwrap_err();
        assert!(e.to_string().contains("cannot fetch"), "{e}");
    }
}
