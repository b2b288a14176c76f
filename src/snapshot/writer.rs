//! `SnapshotWriter`: builds a snapshot in `temp/`. Files are added by hard link
//! with a crc32c the caller already knows (the fast path: nothing is read),
//! by copy (crc computed while copying), or written from bytes or a stream.
//! Nothing is durable until [`LocalSnapshotStorage::close_writer`].
//!
//! [`LocalSnapshotStorage::close_writer`]: crate::snapshot::storage::LocalSnapshotStorage::close_writer

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::proto::snapshot::{FileMeta, FileSource, SnapshotMeta};
use crate::snapshot::error::{IoContext, SnapshotError};
use crate::snapshot::fsutil::{CrcWriter, IO_BUF, copy_with_crc, remove_dir_atomically};
use crate::snapshot::meta_table::{self, META_FILE};
use crate::snapshot::storage::{DOWNLOAD_META_FILE, Inner, failpoint};

/// A snapshot being written into `temp/`. Dropping it without
/// [`close_writer`](crate::snapshot::storage::LocalSnapshotStorage::close_writer)
/// removes `temp/`.
pub struct SnapshotWriter {
    storage: Arc<Inner>,
    dir: PathBuf,
    meta: SnapshotMeta,
    files: BTreeMap<String, FileMeta>,
    committed: bool,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("dir", &self.dir)
            .field("index", &self.meta.last_included_index)
            .field("files", &self.files.len())
            .finish()
    }
}

impl SnapshotWriter {
    pub(crate) fn new(storage: Arc<Inner>, dir: PathBuf, meta: SnapshotMeta) -> Self {
        Self {
            storage,
            dir,
            meta,
            files: BTreeMap::new(),
            committed: false,
        }
    }

    /// The directory files are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The meta the snapshot will carry.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Every file added so far, by name.
    pub fn files(&self) -> impl Iterator<Item = &FileMeta> {
        self.files.values()
    }

    /// The entry of one file, if added.
    pub fn file(&self, name: &str) -> Option<&FileMeta> {
        self.files.get(name)
    }

    /// Checks `name` and creates its parent directories; returns the target path.
    fn prepare(&self, name: &str) -> Result<PathBuf, SnapshotError> {
        meta_table::validate_file_name(name).map_err(|e| SnapshotError::BadName {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        let reserved =
            name == META_FILE || name == DOWNLOAD_META_FILE || name == format!("{META_FILE}.tmp");
        if reserved {
            return Err(SnapshotError::BadName {
                name: name.to_string(),
                reason: "reserved for the meta table".into(),
            });
        }
        if self.files.contains_key(name) {
            return Err(SnapshotError::BadName {
                name: name.to_string(),
                reason: "already in this snapshot".into(),
            });
        }
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).at("create directory", parent)?;
        }
        Ok(path)
    }

    fn record(&mut self, name: &str, size: u64, crc32c: u32, user_meta: Vec<u8>) -> &FileMeta {
        self.files.insert(
            name.to_string(),
            FileMeta {
                name: name.to_string(),
                size,
                crc32c,
                source: FileSource::Local as i32,
                user_meta,
            },
        );
        &self.files[name]
    }

    /// Adds `src` as `name` by hard link, trusting `crc32c` (computed when the
    /// file was written). `src` must be immutable from now on and on the same
    /// file system. Nothing is read: the cost does not grow with file size.
    pub fn add_file_link(
        &mut self,
        name: &str,
        src: &Path,
        crc32c: u32,
    ) -> Result<&FileMeta, SnapshotError> {
        let dst = self.prepare(name)?;
        let size = fs::metadata(src).at("stat", src)?.len();
        fs::hard_link(src, &dst).at("hard link into snapshot", src)?;
        Ok(self.record(name, size, crc32c, Vec::new()))
    }

    /// Adds a copy of `src` as `name`; the crc32c is computed while copying.
    pub fn add_file_copy(&mut self, name: &str, src: &Path) -> Result<&FileMeta, SnapshotError> {
        let mut f = File::open(src).at("open", src)?;
        self.write_file_from(name, &mut f)
    }

    /// Writes `data` as a new file `name`.
    pub fn write_file(&mut self, name: &str, data: &[u8]) -> Result<&FileMeta, SnapshotError> {
        self.write_file_from(name, &mut &data[..])
    }

    /// Writes everything `src` yields as a new file `name`.
    pub fn write_file_from(
        &mut self,
        name: &str,
        src: &mut dyn Read,
    ) -> Result<&FileMeta, SnapshotError> {
        let dst = self.prepare(name)?;
        let mut f = BufWriter::with_capacity(
            IO_BUF,
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&dst)
                .at("create", &dst)?,
        );
        failpoint!("writer_write");
        let (size, crc) = copy_with_crc(src, &mut f).at("write", &dst)?;
        f.flush().at("write", &dst)?;
        Ok(self.record(name, size, crc, Vec::new()))
    }

    /// Opens a new file `name` for streaming writes; its crc32c is computed as
    /// it is written and recorded by [`SnapshotFileSink::finish`].
    pub fn create_file(&mut self, name: &str) -> Result<SnapshotFileSink<'_>, SnapshotError> {
        let path = self.prepare(name)?;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .at("create", &path)?;
        Ok(SnapshotFileSink {
            writer: self,
            name: name.to_string(),
            path,
            out: CrcWriter::new(BufWriter::with_capacity(IO_BUF, f)),
        })
    }

    /// Attaches opaque bytes to an added file's entry.
    pub fn set_user_meta(&mut self, name: &str, user_meta: Vec<u8>) -> Result<(), SnapshotError> {
        match self.files.get_mut(name) {
            Some(f) => {
                f.user_meta = user_meta;
                Ok(())
            }
            None => Err(SnapshotError::BadName {
                name: name.to_string(),
                reason: "not in this snapshot".into(),
            }),
        }
    }

    pub(crate) fn mark_committed(&mut self) {
        self.committed = true;
    }

    /// Removes `temp/` (used on error and on drop without commit).
    pub(crate) fn abandon(&mut self) {
        if !self.committed {
            self.committed = true;
            if let Err(e) = remove_dir_atomically(&self.dir) {
                warn!(error = %e, "could not remove an abandoned snapshot; it will be removed at next startup");
            }
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        self.abandon();
        self.storage.writer_closed();
    }
}

/// A file being streamed into a snapshot, see [`SnapshotWriter::create_file`].
pub struct SnapshotFileSink<'a> {
    writer: &'a mut SnapshotWriter,
    name: String,
    path: PathBuf,
    out: CrcWriter<BufWriter<File>>,
}

impl Write for SnapshotFileSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl SnapshotFileSink<'_> {
    /// Flushes the file and records it in the writer. A sink dropped without
    /// `finish` leaves an unlisted file that the save never publishes.
    pub fn finish(self) -> Result<FileMeta, SnapshotError> {
        let (mut buf, size, crc) = self.out.finish();
        buf.flush().at("write", &self.path)?;
        Ok(self
            .writer
            .record(&self.name, size, crc, Vec::new())
            .clone())
    }
}
