//! `BatchStore`: a small replicated state machine that keeps its state the
//! way the time-series store does, in immutable files, each with the crc32c
//! computed while it was written. Snapshots hard-link the files (a save costs
//! nothing for data that did not change), loads hard-link them back, and an
//! install reuses a follower's own live files through [`BatchLookup`].
//! Used by `tsnode demo` and the catch-up benchmark.
//!
//! Commands (text): `records N` appends a file of N generated line-protocol
//! records; `bytes N` appends a file of N pseudo-random bytes. Both are
//! deterministic in the entry index, so every replica writes the same file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::snapshot::{
    ApplyError, BoxError, LocalFileLookup, ReplicatedStateMachine, SnapshotMeta, SnapshotReader,
    SnapshotWriter, StateMachine,
};

/// One immutable file of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchFile {
    /// Size in bytes.
    pub size: u64,
    /// crc32c of the contents.
    pub crc32c: u32,
    /// Records in it (0 for a `bytes` file).
    pub records: u64,
}

type Index = Arc<RwLock<BTreeMap<String, BatchFile>>>;

/// The state machine. See the module docs.
pub struct BatchStore {
    data: PathBuf,
    files: Index,
}

/// Finds the store's live files for an install (same name, size, crc32c).
pub struct BatchLookup {
    data: PathBuf,
    files: Index,
}

impl LocalFileLookup for BatchLookup {
    fn find(&self, name: &str, size: u64, crc32c: u32) -> Option<PathBuf> {
        let file = name.strip_prefix("data/")?;
        let f = *self.files.read().ok()?.get(file)?;
        (f.size == size && f.crc32c == crc32c).then(|| self.data.join(file))
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

impl BatchStore {
    /// A store over `data` (created if missing). Files left there by an
    /// earlier run are dropped: the state is rebuilt from the snapshot and
    /// the log.
    pub fn open(data: PathBuf) -> std::io::Result<Self> {
        fs::create_dir_all(&data)?;
        for e in fs::read_dir(&data)? {
            fs::remove_file(e?.path())?;
        }
        Ok(Self {
            data,
            files: Arc::new(RwLock::new(BTreeMap::new())),
        })
    }

    /// The lookup an install uses to reuse live files.
    pub fn lookup(&self) -> Arc<BatchLookup> {
        Arc::new(BatchLookup {
            data: self.data.clone(),
            files: self.files.clone(),
        })
    }

    fn write(
        &self,
        name: &str,
        records: u64,
        mut fill: impl FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<BatchFile, BoxError> {
        let path = self.data.join(name);
        let f = fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let mut w = crate::snapshot::CrcSink::new(std::io::BufWriter::with_capacity(1 << 20, f));
        fill(&mut w).map_err(|e| format!("write {}: {e}", path.display()))?;
        let (buf, size, crc32c) = w.finish();
        let f = buf
            .into_inner()
            .map_err(|e| format!("write {}: {}", path.display(), e.error()))?;
        f.sync_all()
            .map_err(|e| format!("fsync {}: {e}", path.display()))?;
        Ok(BatchFile {
            size,
            crc32c,
            records,
        })
    }

    /// Total records.
    pub fn records(&self) -> u64 {
        self.files
            .read()
            .map_or(0, |f| f.values().map(|b| b.records).sum())
    }

    /// Total bytes of the files.
    pub fn bytes(&self) -> u64 {
        self.files
            .read()
            .map_or(0, |f| f.values().map(|b| b.size).sum())
    }

    /// A digest of the whole state (names and crcs of every file).
    pub fn digest(&self) -> u32 {
        self.files.read().map_or(0, |f| {
            f.iter().fold(0, |d, (n, b)| {
                crc32c::crc32c_append(
                    crc32c::crc32c_append(d, n.as_bytes()),
                    &b.crc32c.to_le_bytes(),
                )
            })
        })
    }
}

impl ReplicatedStateMachine for BatchStore {
    type Command = String;
    type Answer = String;
    type View = BTreeMap<String, BatchFile>;

    fn view(&mut self) -> Self::View {
        self.files.read().map(|f| f.clone()).unwrap_or_default()
    }

    fn rejected(reason: String) -> String {
        format!("error: {reason}")
    }

    fn apply(&mut self, index: u64, _term: u64, cmd: String) -> Result<String, ApplyError> {
        let mut parts = cmd.split_whitespace();
        let (kind, n) = match (
            parts.next(),
            parts.next().map(str::parse::<u64>),
            parts.next(),
        ) {
            (Some(k @ ("records" | "bytes")), Some(Ok(n)), None) if n > 0 && n <= 1 << 30 => (k, n),
            _ => {
                return Err(ApplyError::Rejected(format!(
                    "expected `records N` or `bytes N` (1..2^30), got {cmd:?}"
                )));
            }
        };
        let name = format!("batch-{index:012}.dat");
        let file = if kind == "records" {
            self.write(&name, n, |w| {
                for i in 0..n {
                    let t = index * 1_000_000 + i;
                    writeln!(
                        w,
                        "cpu,host=h{} usage={}.{} {}",
                        i % 16,
                        (t * 7) % 100,
                        t % 10,
                        1_700_000_000_000_000_000 + t
                    )?;
                }
                Ok(())
            })?
        } else {
            let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            self.write(&name, 0, |w| {
                let mut block = vec![0u8; 1 << 20];
                let mut left = n;
                while left > 0 {
                    for c in block.chunks_mut(8) {
                        c.copy_from_slice(&xorshift(&mut x).to_le_bytes()[..c.len()]);
                    }
                    let k = left.min(block.len() as u64) as usize;
                    w.write_all(&block[..k])?;
                    left -= k as u64;
                }
                Ok(())
            })?
        };
        self.files
            .write()
            .map_err(|_| ApplyError::Fatal("index lock poisoned".into()))?
            .insert(name, file);
        Ok("ok".into())
    }
}

impl StateMachine for BatchStore {
    fn on_snapshot_save(
        &mut self,
        w: &mut SnapshotWriter,
        _m: &SnapshotMeta,
    ) -> Result<(), BoxError> {
        let files = self
            .files
            .read()
            .map_err(|_| "index lock poisoned")?
            .clone();
        for (name, f) in &files {
            w.add_file_link(&format!("data/{name}"), &self.data.join(name), f.crc32c)?;
        }
        w.write_file("index.json", &serde_json::to_vec(&files)?)?;
        Ok(())
    }

    fn on_snapshot_load(&mut self, r: &SnapshotReader) -> Result<(), BoxError> {
        let files: BTreeMap<String, BatchFile> =
            serde_json::from_slice(&fs::read(r.path_of("index.json")?)?)
                .map_err(|e| format!("index.json of snapshot {}: {e}", r.index()))?;
        // Replace data/ with the snapshot's files, by hard link; a live file
        // that is the same inode already stays.
        let mut keep = std::collections::HashSet::new();
        for name in files.keys() {
            let src = r.path_of(&format!("data/{name}"))?;
            let dst = self.data.join(name);
            if !same_file(&src, &dst) {
                let _ = fs::remove_file(&dst);
                fs::hard_link(&src, &dst)?;
            }
            keep.insert(name.clone());
        }
        for e in fs::read_dir(&self.data)? {
            let e = e?;
            if !keep.contains(e.file_name().to_string_lossy().as_ref()) {
                fs::remove_file(e.path())?;
            }
        }
        *self.files.write().map_err(|_| "index lock poisoned")? = files;
        Ok(())
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
