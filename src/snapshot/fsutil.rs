//! Durable file-system steps shared by the snapshot writer, storage and copier:
//! fsync of files and directories, crc32c while copying, and crash-safe removal.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::snapshot::error::{IoContext, SnapshotError};

/// Buffer size for copying and checksumming files.
pub(crate) const IO_BUF: usize = 1 << 20;

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("fsync directory", dir)
}

/// fsyncs a file's data and metadata.
pub(crate) fn fsync_file(path: &Path) -> Result<(), SnapshotError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .at("fsync file", path)
}

/// Every directory under `root` (itself included), deepest first, so that a
/// child's entry is durable before its parent is synced.
pub(crate) fn dirs_bottom_up(root: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).at("read directory", &dir)? {
            let entry = entry.at("read directory", &dir)?;
            if entry.file_type().at("stat", &entry.path())?.is_dir() {
                stack.push(entry.path());
            }
        }
        out.push(dir);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(out)
}

/// fsyncs every directory under `root` (itself included), deepest first:
/// the directories of one depth are synced at once, a few threads
/// together, so that their journal commits are shared (64 directories one
/// by one took 40 ms of a 0.3 s install).
pub(crate) fn fsync_dirs_bottom_up(root: &Path) -> Result<(), SnapshotError> {
    let dirs = dirs_bottom_up(root)?;
    for level in dirs.chunk_by(|a, b| a.components().count() == b.components().count()) {
        fsync_together(level, fsync_dir)?;
    }
    Ok(())
}

/// fsyncs the files at `paths`, a few threads together (an install's
/// files are synced once all are written: one by one, each stream waited
/// for a journal commit per file before it could start the next).
pub(crate) fn fsync_files(paths: &[PathBuf]) -> Result<(), SnapshotError> {
    fsync_together(paths, fsync_file)
}

/// Runs `sync` on every path, up to 8 at once; the first error wins.
fn fsync_together(
    paths: &[PathBuf],
    sync: fn(&Path) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    const THREADS: usize = 8;
    if paths.len() <= 1 {
        return paths.iter().try_for_each(|p| sync(p));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..THREADS.min(paths.len()))
            .map(|_| {
                sc.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match paths.get(i) {
                            Some(p) => sync(p)?,
                            None => return Ok(()),
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(SnapshotError::Io {
                    op: "fsync",
                    path: paths[0].clone(),
                    source: std::io::Error::other("a syncing thread panicked"),
                })
            })
        })
    })
}

/// A writer that computes the crc32c and length of what passes through it
/// (for state machines that record each file's crc32c as they write it).
pub struct CrcWriter<W> {
    inner: W,
    crc: u32,
    len: u64,
}

impl<W: Write> CrcWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            crc: 0,
            len: 0,
        }
    }

    /// The inner writer, the byte count and the crc32c so far.
    pub fn finish(self) -> (W, u64, u32) {
        (self.inner, self.len, self.crc)
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies all of `src` into `dst`; returns (bytes, crc32c of the bytes).
pub(crate) fn copy_with_crc(src: &mut dyn Read, dst: &mut dyn Write) -> io::Result<(u64, u32)> {
    let mut buf = vec![0u8; IO_BUF];
    let mut crc = 0u32;
    let mut len = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
    }
    Ok((len, crc))
}

/// Removes a directory tree if it exists. The tree is first renamed to
/// `<name>.del` (one atomic step), so a crash mid-removal never leaves a
/// half-deleted directory under its real name; leftovers are swept at startup.
pub(crate) fn remove_dir_atomically(dir: &Path) -> Result<(), SnapshotError> {
    if !dir.exists() {
        return Ok(());
    }
    let mut tomb = dir.as_os_str().to_owned();
    tomb.push(".del");
    let tomb = PathBuf::from(tomb);
    if tomb.exists() {
        fs::remove_dir_all(&tomb).at("remove", &tomb)?;
    }
    fs::rename(dir, &tomb).at("rename for removal", dir)?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    fs::remove_dir_all(&tomb).at("remove", &tomb)
}

/// Writes `bytes` to `dir/name` crash-safely: write `name.tmp`, fsync it,
/// rename it over `name`, fsync `dir`.
pub(crate) fn write_file_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), SnapshotError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = File::create(&tmp).at("create", &tmp)?;
    f.write_all(bytes).at("write", &tmp)?;
    f.sync_all().at("fsync file", &tmp)?;
    drop(f);
    fs::rename(&tmp, &dst).at("rename", &tmp)?;
    fsync_dir(dir)
}

/// 64 random bits from the kernel (`/dev/urandom`), or, should it be
/// unreadable, from a randomly keyed hash of the clock.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if random.is_err() {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        b = h.finish().to_be_bytes();
    }
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_writer_matches_one_shot_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = CrcWriter::new(Vec::new());
        for chunk in data.chunks(333) {
            w.write_all(chunk).unwrap();
        }
        let (out, len, crc) = w.finish();
        assert_eq!(out, data);
        assert_eq!(len, data.len() as u64);
        assert_eq!(crc, crc32c::crc32c(&data));
    }

    #[test]
    fn removal_leaves_nothing_and_sweeps_old_tombs() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("snap");
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/f"), b"x").unwrap();
        fs::create_dir_all(t.path().join("snap.del")).unwrap();
        remove_dir_atomically(&d).unwrap();
        assert!(!d.exists());
        assert!(!t.path().join("snap.del").exists());
    }

    #[test]
    fn every_directory_of_a_wide_tree_is_synced_and_a_missing_one_is_named() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..20 {
            fs::create_dir_all(t.path().join(format!("data/db/rp/{i}"))).unwrap();
        }
        fsync_dirs_bottom_up(t.path()).unwrap();
        let gone = t.path().join("gone");
        let e = fsync_dirs_bottom_up(&gone).unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
    }

    #[test]
    fn dirs_bottom_up_lists_children_first() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        let dirs = dirs_bottom_up(t.path()).unwrap();
        assert_eq!(dirs.len(), 4);
        assert_eq!(dirs.last().unwrap(), t.path());
        assert!(dirs[0].ends_with("a/b/c"));
    }
}
