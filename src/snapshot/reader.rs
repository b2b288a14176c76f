//! `SnapshotReader`: a refcounted handle on one committed snapshot. While it
//! lives, the snapshot's directory is not deleted. Also the stand-alone
//! [`verify_dir`] used by `tsnode snapshot verify`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::proto::snapshot::{FileMeta, SnapshotMeta, SnapshotMetaTable};
use crate::snapshot::error::{BadFile, IoContext, SnapshotError};
use crate::snapshot::integrity::{Pace, check_file};
use crate::snapshot::meta_table;
use crate::snapshot::storage::Inner;

/// A handle on a committed snapshot; holds a ref until dropped.
pub struct SnapshotReader {
    storage: Arc<Inner>,
    index: u64,
    dir: PathBuf,
    table: Arc<SnapshotMetaTable>,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("dir", &self.dir)
            .field("index", &self.index)
            .finish()
    }
}

impl SnapshotReader {
    pub(crate) fn new(storage: Arc<Inner>, index: u64, table: Arc<SnapshotMetaTable>) -> Self {
        let dir = storage.snapshot_dir(index);
        Self {
            storage,
            index,
            dir,
            table,
        }
    }

    /// The snapshot's index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The snapshot's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot's meta (index, term, membership).
    pub fn meta(&self) -> &SnapshotMeta {
        // `validate` guarantees the meta is present in every table we hold.
        static EMPTY: SnapshotMeta = SnapshotMeta {
            last_included_index: 0,
            last_included_term: 0,
            voters: Vec::new(),
            learners: Vec::new(),
            voters_outgoing: Vec::new(),
            learners_next: Vec::new(),
            auto_leave: false,
        };
        self.table.meta.as_ref().unwrap_or(&EMPTY)
    }

    /// The whole meta table.
    pub fn table(&self) -> &SnapshotMetaTable {
        &self.table
    }

    /// Every file of the snapshot.
    pub fn files(&self) -> &[FileMeta] {
        &self.table.files
    }

    /// The entry of one file.
    pub fn file(&self, name: &str) -> Option<&FileMeta> {
        self.table.files.iter().find(|f| f.name == name)
    }

    /// Total bytes of the snapshot's files.
    pub fn total_bytes(&self) -> u64 {
        self.table.files.iter().map(|f| f.size).sum()
    }

    /// The path of a file listed in the meta table; names not listed are
    /// refused, so no path outside the snapshot can be reached.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, SnapshotError> {
        match self.file(name) {
            Some(f) => Ok(self.dir.join(&f.name)),
            None => Err(SnapshotError::BadName {
                name: name.to_string(),
                reason: format!("not a file of snapshot {}", self.index),
            }),
        }
    }

    /// Opens a listed file for reading.
    pub fn open_file(&self, name: &str) -> Result<File, SnapshotError> {
        let p = self.path_of(name)?;
        File::open(&p).at("open", &p)
    }

    /// Recomputes every file's size and crc32c; the error names every bad file.
    pub fn verify(&self) -> Result<(), SnapshotError> {
        let bad = verify_files(&self.dir, &self.table);
        if bad.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError::Verify {
                dir: self.dir.clone(),
                bad,
            })
        }
    }
}

impl Clone for SnapshotReader {
    fn clone(&self) -> Self {
        // The snapshot is live (we hold a ref), so taking one more cannot fail;
        // should it ever, the clone still holds the table it reads.
        if self.storage.try_ref(self.index).is_none() {
            tracing::error!(
                snapshot_index = self.index,
                "cloned a reader whose snapshot is not registered"
            );
        }
        Self {
            storage: self.storage.clone(),
            index: self.index,
            dir: self.dir.clone(),
            table: self.table.clone(),
        }
    }
}

impl Drop for SnapshotReader {
    fn drop(&mut self) {
        self.storage.unref(self.index);
    }
}

/// Checks every file of `table` under `dir`: present, right size, right crc32c.
pub fn verify_files(dir: &Path, table: &SnapshotMetaTable) -> Vec<BadFile> {
    let mut pace = Pace::new(0);
    table
        .files
        .iter()
        .filter_map(|f| {
            check_file(&dir.join(&f.name), f.size, f.crc32c, &mut pace, &|| false).map(|problem| {
                BadFile {
                    name: f.name.clone(),
                    problem,
                }
            })
        })
        .collect()
}

/// Verifies a snapshot directory on its own (no storage needed).
/// `Err` when the meta table itself is unreadable; otherwise the table and
/// the list of bad files (empty when the snapshot is sound).
pub fn verify_dir(dir: &Path) -> Result<(SnapshotMetaTable, Vec<BadFile>), SnapshotError> {
    let table = meta_table::read_dir_table(dir)?;
    let bad = verify_files(dir, &table);
    Ok((table, bad))
}
