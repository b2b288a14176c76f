//! `LocalSnapshotStorage`: the snapshots of one node on local disk.
//!
//! ```text
//! <root>/temp/                          a local save in progress (deleted at startup)
//! <root>/download/                      an install in progress (kept if its meta decodes)
//! <root>/snapshot_00000000000000012345/ one committed snapshot, named by its index
//! <root>/snapshot_….broken              a snapshot that failed validation (at most one kept)
//! ```
//!
//! A snapshot directory exists under its real name only once it is complete:
//! files and meta table are fsynced, then `temp` is renamed in one step. Every
//! snapshot is refcounted: the storage holds one ref on each of the newest
//! `retain` snapshots, each open [`SnapshotReader`] holds one more, and a
//! snapshot is deleted when its count reaches zero. A reader therefore never
//! sees its files vanish, however many newer snapshots are saved meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{info, warn};

use crate::proto::snapshot::{SnapshotMeta, SnapshotMetaTable};
use crate::snapshot::error::{IoContext, SnapshotError};
use crate::snapshot::fsutil::{
    fsync_dir, fsync_dirs_bottom_up, fsync_file, remove_dir_atomically, write_file_atomically,
};
use crate::snapshot::meta_table::{self, META_FILE};
use crate::snapshot::reader::SnapshotReader;
use crate::snapshot::writer::SnapshotWriter;

/// Directory of a local save in progress.
pub const TEMP_DIR: &str = "temp";
/// Directory of an install in progress.
pub const DOWNLOAD_DIR: &str = "download";
/// The remote meta table an install in progress is fetching, inside `download/`.
pub const DOWNLOAD_META_FILE: &str = "__raft_download_meta";
/// Suffix of a quarantined snapshot directory.
pub const BROKEN_SUFFIX: &str = ".broken";

/// The failpoints between the durable steps of a save, in order. A test can
/// crash or inject an I/O error at each one (feature `failpoints`).
pub const SAVE_FAILPOINTS: &[&str] = &[
    "save_before_fsync_files",
    "save_after_fsync_files",
    "save_after_meta_tmp",
    "save_after_meta_rename",
    "save_after_dir_fsync",
    "save_after_publish_rename",
    "save_after_parent_fsync",
];

/// Index of the first failpoint at which the new snapshot is already published.
pub const SAVE_FAILPOINTS_PUBLISHED_FROM: usize = 5;

macro_rules! failpoint {
    ($name:expr) => {
        fail::fail_point!($name, |_| Err(SnapshotError::Injected($name)))
    };
}
pub(crate) use failpoint;

/// The meta table of the install in `download/`: its download meta, or, once
/// the install has written it, the snapshot's own meta table.
pub(crate) fn download_table(download: &Path) -> Result<SnapshotMetaTable, SnapshotError> {
    meta_table::read_file(&download.join(DOWNLOAD_META_FILE))
        .or_else(|_| meta_table::read_file(&download.join(META_FILE)))
}

/// `snapshot_%020d`, braft's naming.
pub fn snapshot_dir_name(index: u64) -> String {
    format!("snapshot_{index:020}")
}

/// Parses `snapshot_%020d`; anything else (including `.broken`) is `None`.
pub fn parse_snapshot_dir_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot_")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Options of a [`LocalSnapshotStorage`].
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// How many committed snapshots to keep (at least 1; default 1).
    pub retain: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self { retain: 1 }
    }
}

/// What [`LocalSnapshotStorage::open`] found and did at startup.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// A leftover `temp/` was deleted.
    pub removed_temp: bool,
    /// `download/` holds a valid partial install and was kept.
    pub kept_download: bool,
    /// `download/` was invalid and was deleted.
    pub removed_download: bool,
    /// Snapshots that failed validation, renamed `*.broken`, with the reason.
    pub broken: Vec<(u64, String)>,
    /// Valid snapshots deleted beyond `retain`.
    pub pruned: Vec<u64>,
    /// Indexes of the snapshots kept, oldest first.
    pub kept: Vec<u64>,
}

/// A summary of one committed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its directory.
    pub dir: PathBuf,
    /// Its meta.
    pub meta: SnapshotMeta,
    /// Number of files (the meta table not counted).
    pub files: usize,
    /// Total bytes of its files.
    pub bytes: u64,
    /// Current refcount (storage + open readers).
    pub refs: usize,
}

pub(crate) struct State {
    /// index → refcount, for every snapshot directory that exists.
    refs: BTreeMap<u64, usize>,
    /// index → meta table, for the same snapshots.
    tables: BTreeMap<u64, Arc<SnapshotMetaTable>>,
    /// Snapshots the storage itself keeps a ref on (the newest `retain`).
    retained: BTreeSet<u64>,
    /// A writer is open on `temp/`.
    writer_open: bool,
    /// Snapshots renamed `*.broken` since the process started: index, why.
    broken: Vec<(u64, String)>,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    retain: usize,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (each
        // update is a single insert/remove), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn snapshot_dir(&self, index: u64) -> PathBuf {
        self.root.join(snapshot_dir_name(index))
    }

    /// Drops one ref; deletes the snapshot when none is left.
    pub(crate) fn unref(&self, index: u64) {
        let delete = {
            let mut st = self.lock();
            match st.refs.get_mut(&index) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    st.refs.remove(&index);
                    st.tables.remove(&index);
                    true
                }
                None => false,
            }
        };
        if delete {
            let dir = self.snapshot_dir(index);
            match remove_dir_atomically(&dir) {
                Ok(()) => info!(
                    snapshot_index = index,
                    "deleted snapshot no longer referenced"
                ),
                Err(e) => {
                    warn!(snapshot_index = index, error = %e, "could not delete old snapshot; it will be swept at next startup")
                }
            }
        }
    }

    /// Adds one ref to a live snapshot and returns its meta table.
    pub(crate) fn try_ref(&self, index: u64) -> Option<Arc<SnapshotMetaTable>> {
        let mut st = self.lock();
        let table = st.tables.get(&index)?.clone();
        *st.refs.entry(index).or_insert(0) += 1;
        Some(table)
    }

    pub(crate) fn writer_closed(&self) {
        self.lock().writer_open = false;
    }
}

/// The snapshots of one node on local disk. Cheap to clone (shared state).
#[derive(Clone)]
pub struct LocalSnapshotStorage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalSnapshotStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSnapshotStorage")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// Checks a snapshot directory cheaply: the meta table decodes, its index
/// matches the directory name, and every file exists with the listed size.
/// (Full crc32c verification is [`SnapshotReader::verify`].)
fn validate_dir(dir: &Path, index: u64) -> Result<SnapshotMetaTable, String> {
    let table = meta_table::read_dir_table(dir).map_err(|e| e.to_string())?;
    let meta_index = table.meta.as_ref().map_or(0, |m| m.last_included_index);
    if meta_index != index {
        return Err(format!(
            "directory says index {index} but its meta table says {meta_index}"
        ));
    }
    for f in &table.files {
        let p = dir.join(&f.name);
        match fs::metadata(&p) {
            Ok(md) if md.len() == f.size => {}
            Ok(md) => {
                return Err(format!(
                    "{}: size {} bytes, meta table says {}",
                    f.name,
                    md.len(),
                    f.size
                ));
            }
            Err(e) => return Err(format!("{}: {e}", f.name)),
        }
    }
    Ok(table)
}

impl LocalSnapshotStorage {
    /// Opens (creating if needed) the snapshot directory `root` and applies the
    /// startup rules of DESIGN §2: delete `temp/`, keep `download/` only if its
    /// meta decodes, quarantine snapshots that fail validation as `*.broken`
    /// (keeping at most one), keep the newest `retain` valid ones.
    pub fn open(
        root: impl Into<PathBuf>,
        opts: StorageOptions,
    ) -> Result<(Self, OpenReport), SnapshotError> {
        let root = root.into();
        let retain = opts.retain.max(1);
        let mut report = OpenReport::default();
        if !root.exists() {
            fs::create_dir_all(&root).at("create directory", &root)?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        let temp = root.join(TEMP_DIR);
        if temp.exists() {
            remove_dir_atomically(&temp)?;
            report.removed_temp = true;
            info!(dir = %temp.display(), "removed an interrupted save");
        }
        let download = root.join(DOWNLOAD_DIR);
        if download.exists() {
            match download_table(&download) {
                Ok(t) => {
                    report.kept_download = true;
                    info!(
                        snapshot_index = t.meta.map_or(0, |m| m.last_included_index),
                        "kept a partial install for resume"
                    );
                }
                Err(e) => {
                    remove_dir_atomically(&download)?;
                    report.removed_download = true;
                    info!(error = %e, "removed a partial install without a valid meta");
                }
            }
        }

        let mut found: Vec<u64> = Vec::new();
        let mut broken_existing: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(&root).at("read directory", &root)? {
            let entry = entry.at("read directory", &root)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(idx) = parse_snapshot_dir_name(name) {
                found.push(idx);
            } else if name.ends_with(BROKEN_SUFFIX) {
                broken_existing.push(entry.path());
            } else if name.ends_with(".del") {
                fs::remove_dir_all(entry.path()).at("remove", &entry.path())?;
            }
        }
        found.sort_unstable_by(|a, b| b.cmp(a));

        let mut tables = BTreeMap::new();
        let mut newest_broken: Option<u64> = None;
        for idx in found {
            let dir = root.join(snapshot_dir_name(idx));
            if tables.len() >= retain {
                // Older than what we keep: no need to validate.
                remove_dir_atomically(&dir)?;
                report.pruned.push(idx);
                continue;
            }
            match validate_dir(&dir, idx) {
                Ok(t) => {
                    tables.insert(idx, Arc::new(t));
                }
                Err(reason) => {
                    warn!(snapshot_index = idx, %reason, "snapshot failed validation; renamed *.broken");
                    let mut b = dir.as_os_str().to_owned();
                    b.push(BROKEN_SUFFIX);
                    let b = PathBuf::from(b);
                    if b.exists() {
                        fs::remove_dir_all(&b).at("remove", &b)?;
                    }
                    fs::rename(&dir, &b).at("rename to .broken", &dir)?;
                    if newest_broken.is_none() {
                        newest_broken = Some(idx);
                    } else {
                        broken_existing.push(b);
                    }
                    report.broken.push((idx, reason));
                }
            }
        }
        // Keep at most one broken snapshot: the newest.
        let keep_broken = match newest_broken {
            Some(i) => Some(root.join(format!("{}{BROKEN_SUFFIX}", snapshot_dir_name(i)))),
            None => broken_existing
                .iter()
                .max_by_key(|p| p.file_name().map(|n| n.to_owned()))
                .cloned(),
        };
        for b in broken_existing {
            if Some(&b) != keep_broken.as_ref() {
                fs::remove_dir_all(&b).at("remove", &b)?;
            }
        }
        fsync_dir(&root)?;

        report.kept = tables.keys().copied().collect();
        let state = State {
            refs: tables.keys().map(|&i| (i, 1)).collect(),
            retained: tables.keys().copied().collect(),
            tables,
            writer_open: false,
            broken: report.broken.clone(),
        };
        Ok((
            Self {
                inner: Arc::new(Inner {
                    root,
                    retain,
                    state: Mutex::new(state),
                }),
            },
            report,
        ))
    }

    /// The storage's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory a snapshot of `index` has (or would have).
    pub fn snapshot_dir(&self, index: u64) -> PathBuf {
        self.inner.snapshot_dir(index)
    }

    /// The meta of the newest committed snapshot.
    pub fn latest_meta(&self) -> Option<SnapshotMeta> {
        let st = self.inner.lock();
        let idx = *st.retained.last()?;
        st.tables.get(&idx).and_then(|t| t.meta.clone())
    }

    /// Index of the newest committed snapshot (0 if none).
    pub fn latest_index(&self) -> u64 {
        self.inner.lock().retained.last().copied().unwrap_or(0)
    }

    /// Opens a writer on a fresh `temp/` for a snapshot with `meta`. Only one
    /// writer can be open at a time.
    pub fn create_writer(&self, meta: SnapshotMeta) -> Result<SnapshotWriter, SnapshotError> {
        let temp = self.inner.root.join(TEMP_DIR);
        {
            let mut st = self.inner.lock();
            if st.writer_open {
                return Err(SnapshotError::WriterActive(temp));
            }
            st.writer_open = true;
        }
        let made = (|| {
            remove_dir_atomically(&temp)?;
            fs::create_dir(&temp).at("create directory", &temp)?;
            fsync_dir(&self.inner.root)
        })();
        if let Err(e) = made {
            self.inner.writer_closed();
            return Err(e);
        }
        Ok(SnapshotWriter::new(self.inner.clone(), temp, meta))
    }

    /// Commits a writer: fsync every file → meta table (temp name, fsync,
    /// rename) → fsync every directory → rename `temp` → `snapshot_<index>` →
    /// fsync the root. Then refs the new snapshot and releases those beyond
    /// `retain`. On any error `temp/` is removed, the previous snapshots are
    /// untouched, and the error is returned (the caller must not compact).
    pub fn close_writer(&self, mut writer: SnapshotWriter) -> Result<SnapshotMeta, SnapshotError> {
        let res = self.commit(&mut writer);
        if res.is_err() {
            writer.abandon();
        }
        res
    }

    fn commit(&self, writer: &mut SnapshotWriter) -> Result<SnapshotMeta, SnapshotError> {
        let meta = writer.meta().clone();
        let index = meta.last_included_index;
        let latest = self.latest_index();
        if index <= latest {
            return Err(SnapshotError::Stale { index, latest });
        }
        let table = SnapshotMetaTable {
            meta: Some(meta.clone()),
            files: writer.files().cloned().collect(),
        };
        meta_table::validate(&table).map_err(|source| SnapshotError::MetaTable {
            path: writer.dir().join(META_FILE),
            source,
        })?;
        let dir = writer.dir().to_path_buf();
        let _span = tracing::info_span!("snapshot_commit", snapshot_index = index).entered();

        failpoint!("save_before_fsync_files");
        for f in &table.files {
            fsync_file(&dir.join(&f.name))?;
        }
        failpoint!("save_after_fsync_files");
        let bytes = meta_table::encode(&table);
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        (|| -> std::io::Result<()> {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        })()
        .at("write meta table", &tmp)?;
        failpoint!("save_after_meta_tmp");
        fs::rename(&tmp, dir.join(META_FILE)).at("rename meta table", &tmp)?;
        failpoint!("save_after_meta_rename");
        fsync_dirs_bottom_up(&dir)?;
        failpoint!("save_after_dir_fsync");
        self.publish(&dir, index, table)?;
        writer.mark_committed();
        info!(snapshot_index = index, "snapshot saved");
        Ok(meta)
    }

    /// Renames a complete directory to `snapshot_<index>`, fsyncs the root,
    /// then registers it and releases snapshots beyond `retain`. If the root
    /// fsync fails, the renamed directory is removed again and the previous
    /// snapshots stay. Shared by local saves and installs.
    pub(crate) fn publish(
        &self,
        dir: &Path,
        index: u64,
        table: SnapshotMetaTable,
    ) -> Result<(), SnapshotError> {
        let dst = self.inner.snapshot_dir(index);
        if dst.exists() {
            return Err(SnapshotError::Io {
                op: "publish snapshot",
                path: dst,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a snapshot directory with this index already exists",
                ),
            });
        }
        fs::rename(dir, &dst).at("rename snapshot into place", dir)?;
        let durable = (|| -> Result<(), SnapshotError> {
            failpoint!("save_after_publish_rename");
            fsync_dir(&self.inner.root)?;
            failpoint!("save_after_parent_fsync");
            Ok(())
        })();
        if let Err(e) = durable {
            // Not durable: take it back so the last good state stays the
            // latest, and report the failure (the caller must not compact).
            // It goes back where it came from (an install can resume from
            // there); failing that, it is removed.
            let back = fs::rename(&dst, dir)
                .at("rename snapshot back", &dst)
                .and_then(|()| fsync_dir(&self.inner.root));
            if let Err(e2) = back {
                warn!(snapshot_index = index, error = %e2, "could not move back a snapshot whose publish failed; removing it");
                if let Err(e3) = remove_dir_atomically(&dst) {
                    warn!(snapshot_index = index, error = %e3, "could not remove a snapshot whose publish failed");
                }
            }
            return Err(e);
        }
        let released = {
            let mut st = self.inner.lock();
            st.tables.insert(index, Arc::new(table));
            *st.refs.entry(index).or_insert(0) += 1;
            st.retained.insert(index);
            let mut out = Vec::new();
            while st.retained.len() > self.inner.retain {
                if let Some(old) = st.retained.pop_first() {
                    out.push(old);
                }
            }
            out
        };
        for old in released {
            self.inner.unref(old);
        }
        Ok(())
    }

    /// Takes a snapshot whose files failed their checksums out of service:
    /// it is no longer offered, read for reuse or loaded, and its directory
    /// is renamed `snapshot_<index>.broken` (kept for inspection; one
    /// broken snapshot is kept, as at startup). Readers still open on it
    /// fail from now on. Returns false if no such snapshot was registered.
    pub fn quarantine(&self, index: u64, reason: &str) -> Result<bool, SnapshotError> {
        {
            let mut st = self.inner.lock();
            if st.tables.remove(&index).is_none() {
                return Ok(false);
            }
            st.refs.remove(&index);
            st.retained.remove(&index);
            st.broken.push((index, reason.to_string()));
            if st.broken.len() > 16 {
                st.broken.remove(0);
            }
        }
        let dir = self.inner.snapshot_dir(index);
        let root = &self.inner.root;
        for entry in fs::read_dir(root).at("read directory", root)? {
            let entry = entry.at("read directory", root)?;
            if entry.file_name().to_string_lossy().ends_with(BROKEN_SUFFIX) {
                remove_dir_atomically(&entry.path())?;
            }
        }
        let mut b = dir.as_os_str().to_owned();
        b.push(BROKEN_SUFFIX);
        fs::rename(&dir, PathBuf::from(b)).at("rename to .broken", &dir)?;
        fsync_dir(root)?;
        warn!(snapshot_index = index, %reason, "snapshot failed verification; renamed *.broken");
        Ok(true)
    }

    /// Snapshots renamed `*.broken` since the process started (at startup
    /// or by [`quarantine`](Self::quarantine)), oldest first: index, why.
    pub fn broken(&self) -> Vec<(u64, String)> {
        self.inner.lock().broken.clone()
    }

    /// Writes the remote meta table of an install into `download/`, so a
    /// restart can resume it (used by the remote copier).
    pub fn write_download_meta(&self, table: &SnapshotMetaTable) -> Result<PathBuf, SnapshotError> {
        let dl = self.inner.root.join(DOWNLOAD_DIR);
        fs::create_dir_all(&dl).at("create directory", &dl)?;
        fsync_dir(&self.inner.root)?;
        write_file_atomically(&dl, DOWNLOAD_META_FILE, &meta_table::encode(table))?;
        Ok(dl)
    }

    /// Opens a reader on the newest snapshot, holding a ref until dropped.
    pub fn open_reader(&self) -> Option<SnapshotReader> {
        let idx = self.latest_index();
        if idx == 0 {
            return None;
        }
        self.open_reader_at(idx).ok()
    }

    /// Opens a reader on the snapshot at `index` if it still exists.
    pub fn open_reader_at(&self, index: u64) -> Result<SnapshotReader, SnapshotError> {
        let table = self
            .inner
            .try_ref(index)
            .ok_or(SnapshotError::NotFound(index))?;
        Ok(SnapshotReader::new(self.inner.clone(), index, table))
    }

    /// Every live snapshot (retained or still read), oldest first.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        let st = self.inner.lock();
        st.tables
            .iter()
            .map(|(&idx, t)| SnapshotInfo {
                dir: self.inner.snapshot_dir(idx),
                meta: t.meta.clone().unwrap_or_default(),
                files: t.files.len(),
                bytes: t.files.iter().map(|f| f.size).sum(),
                refs: st.refs.get(&idx).copied().unwrap_or(0),
            })
            .collect()
    }
}

/// Read-only view of a snapshot root for `tsnode snapshot list`: it never
/// changes anything on disk, so it is safe while a node is running.
#[derive(Debug, Clone)]
pub struct ScannedSnapshot {
    /// The directory.
    pub dir: PathBuf,
    /// Index from the directory name (`None` for `temp`/`download`).
    pub index: Option<u64>,
    /// The meta table, or why it could not be read.
    pub table: Result<SnapshotMetaTable, String>,
    /// What the directory is: "snapshot", "broken", "temp" or "download".
    pub kind: &'static str,
}

/// Lists every snapshot-like directory under `root` without touching them.
pub fn scan(root: &Path) -> Result<Vec<ScannedSnapshot>, SnapshotError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root).at("read directory", root)? {
        let entry = entry.at("read directory", root)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let (kind, index, meta_name) = if let Some(i) = parse_snapshot_dir_name(&name) {
            ("snapshot", Some(i), META_FILE)
        } else if let Some(base) = name.strip_suffix(BROKEN_SUFFIX) {
            ("broken", parse_snapshot_dir_name(base), META_FILE)
        } else if name == TEMP_DIR {
            ("temp", None, META_FILE)
        } else if name == DOWNLOAD_DIR {
            ("download", None, DOWNLOAD_META_FILE)
        } else {
            continue;
        };
        let table = meta_table::read_file(&dir.join(meta_name)).map_err(|e| e.to_string());
        out.push(ScannedSnapshot {
            dir,
            index,
            table,
            kind,
        });
    }
    out.sort_by(|a, b| a.index.cmp(&b.index).then(a.kind.cmp(b.kind)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip_and_reject_others() {
        assert_eq!(snapshot_dir_name(12345), "snapshot_00000000000000012345");
        assert_eq!(
            parse_snapshot_dir_name("snapshot_00000000000000012345"),
            Some(12345)
        );
        assert_eq!(parse_snapshot_dir_name("snapshot_12345"), None);
        assert_eq!(
            parse_snapshot_dir_name("snapshot_00000000000000012345.broken"),
            None
        );
        assert_eq!(
            parse_snapshot_dir_name("snapshot_0000000000000001234x"),
            None
        );
        assert_eq!(parse_snapshot_dir_name("temp"), None);
    }

    fn save(storage: &LocalSnapshotStorage, index: u64) {
        let mut w = storage
            .create_writer(SnapshotMeta {
                last_included_index: index,
                last_included_term: 1,
                ..Default::default()
            })
            .unwrap();
        w.write_file("f", format!("data {index}").as_bytes())
            .unwrap();
        storage.close_writer(w).unwrap();
    }

    #[test]
    fn a_quarantined_snapshot_is_renamed_broken_and_never_offered_again() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, _) =
            LocalSnapshotStorage::open(dir.path(), StorageOptions { retain: 2 }).unwrap();
        save(&storage, 5);
        save(&storage, 9);
        assert_eq!(storage.latest_index(), 9);
        assert!(storage.quarantine(9, "f: crc32c mismatch").unwrap());
        assert_eq!(storage.latest_index(), 5, "the older sound one is latest");
        assert!(storage.open_reader_at(9).is_err());
        assert!(
            dir.path()
                .join("snapshot_00000000000000000009.broken")
                .is_dir()
        );
        assert!(!dir.path().join("snapshot_00000000000000000009").exists());
        assert_eq!(
            storage.broken(),
            vec![(9, "f: crc32c mismatch".to_string())]
        );
        // Unknown (or already quarantined) indexes change nothing.
        assert!(!storage.quarantine(9, "again").unwrap());
        // One broken snapshot is kept on disk, the newest.
        assert!(storage.quarantine(5, "f: missing").unwrap());
        assert_eq!(storage.latest_index(), 0);
        assert!(
            dir.path()
                .join("snapshot_00000000000000000005.broken")
                .is_dir()
        );
        assert!(
            !dir.path()
                .join("snapshot_00000000000000000009.broken")
                .exists()
        );
        // A new save after a quarantine may reuse the index.
        save(&storage, 5);
        assert_eq!(storage.latest_index(), 5);
        // Reopening keeps the sound snapshot and the broken one aside.
        drop(storage);
        let (storage, report) =
            LocalSnapshotStorage::open(dir.path(), StorageOptions { retain: 2 }).unwrap();
        assert_eq!(report.kept, vec![5]);
        assert_eq!(storage.latest_index(), 5);
    }
}
