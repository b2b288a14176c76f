//! A shard: an in-memory cache of recent points plus immutable TSM files.
//! Reads merge the files (oldest first) and the cache; the last write of a
//! timestamp wins. `flush` turns the cache into a new TSM file; `compact`
//! merges all files into one (local work, no raft needed).

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::key_index::{KeyIndex, MeasurementKeys};
use super::line_protocol::FieldValue;
use super::tsm::tombstone::{AsideFile, tombstone_name};
use super::tsm::{
    BlockType, IndexEntry, KEY_FIELD_SEPARATOR, Tombstones, TsmError, TsmReader, TsmWriter, Values,
};

/// One TSM file of a shard.
#[derive(Debug, Clone)]
pub struct ShardFile {
    /// File name (`<gen>-<seq>.tsm`).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Size.
    pub size: u64,
    /// crc32c, computed when written.
    pub crc32c: u32,
    reader: Arc<TsmReader>,
    /// Its deletes, if any (`<stem>.tombstone` beside it).
    tomb: Option<Arc<TombFile>>,
}

/// The tombstone file of a TSM file: the ranges deleted from its keys, and
/// which keys have no point left.
#[derive(Debug)]
pub struct TombFile {
    /// File name (`<gen>-<seq>.tombstone`).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Size.
    pub size: u64,
    /// crc32c, computed when written.
    pub crc32c: u32,
    set: Tombstones,
    /// Keys of the TSM file with no point left.
    dead: rustc_hash::FxHashSet<String>,
    /// The live keys in order and their index, when some key is dead
    /// (built on first use).
    live: std::sync::OnceLock<(Vec<String>, KeyIndex)>,
    /// Hashes of the series of the live keys, sorted (built on first use).
    live_series: std::sync::OnceLock<Vec<u64>>,
}

/// A shard's state.
#[derive(Debug)]
pub struct Shard {
    /// Shard id.
    pub id: u64,
    dir: PathBuf,
    /// Points written since the last view was taken (mutable).
    cache: CacheMap,
    /// Older cached points, frozen when a read view was taken: shared with
    /// the views, never changed (oldest first; later segments win).
    frozen: Vec<Frozen>,
    /// Values written into `cache` since it was last frozen.
    cache_points: usize,
    cache_bytes: u64,
    files: Vec<ShardFile>,
    next_gen: u64,
    types: HashMap<String, BlockType>,
    /// Each measurement's fields and their types here: as influxd's, a
    /// field has one type in a shard, whatever the series.
    fields: HashMap<String, HashMap<String, BlockType>>,
}

/// The block type a value is stored as.
pub(crate) fn block_type(v: &FieldValue) -> BlockType {
    match v {
        FieldValue::Float(_) => BlockType::Float,
        FieldValue::Integer(_) => BlockType::Integer,
        FieldValue::Unsigned(_) => BlockType::Unsigned,
        FieldValue::String(_) => BlockType::String,
        FieldValue::Boolean(_) => BlockType::Boolean,
    }
}

fn value_size(v: &FieldValue) -> u64 {
    16 + match v {
        FieldValue::String(s) => s.len() as u64,
        _ => 8,
    }
}

fn to_values(points: &[(i64, FieldValue)]) -> Result<(Vec<i64>, Values), TsmError> {
    let ts = points.iter().map(|p| p.0).collect();
    let bad = || TsmError::Encode("mixed types in one key".into());
    let vals = match points.first().map(|p| &p.1) {
        Some(FieldValue::Float(_)) => Values::Float(
            points
                .iter()
                .map(|p| {
                    if let FieldValue::Float(v) = p.1 {
                        Ok(v)
                    } else {
                        Err(bad())
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(FieldValue::Integer(_)) => Values::Integer(
            points
                .iter()
                .map(|p| {
                    if let FieldValue::Integer(v) = p.1 {
                        Ok(v)
                    } else {
                        Err(bad())
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(FieldValue::Unsigned(_)) => Values::Unsigned(
            points
                .iter()
                .map(|p| {
                    if let FieldValue::Unsigned(v) = p.1 {
                        Ok(v)
                    } else {
                        Err(bad())
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(FieldValue::Boolean(_)) => Values::Boolean(
            points
                .iter()
                .map(|p| {
                    if let FieldValue::Boolean(v) = p.1 {
                        Ok(v)
                    } else {
                        Err(bad())
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(FieldValue::String(_)) => Values::String(
            points
                .iter()
                .map(|p| {
                    if let FieldValue::String(v) = &p.1 {
                        Ok(v.clone())
                    } else {
                        Err(bad())
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        None => return Err(TsmError::Encode("no points".into())),
    };
    Ok((ts, vals))
}

fn from_values(ts: Vec<i64>, v: Values) -> Vec<(i64, FieldValue)> {
    match v {
        Values::Float(v) => ts
            .into_iter()
            .zip(v.into_iter().map(FieldValue::Float))
            .collect(),
        Values::Integer(v) => ts
            .into_iter()
            .zip(v.into_iter().map(FieldValue::Integer))
            .collect(),
        Values::Unsigned(v) => ts
            .into_iter()
            .zip(v.into_iter().map(FieldValue::Unsigned))
            .collect(),
        Values::Boolean(v) => ts
            .into_iter()
            .zip(v.into_iter().map(FieldValue::Boolean))
            .collect(),
        Values::String(v) => ts
            .into_iter()
            .zip(v.into_iter().map(FieldValue::String))
            .collect(),
    }
}

impl ShardFile {
    /// Opens a TSM file outside any shard (an import's input) whose
    /// crc32c is known.
    pub fn open(path: &Path, crc32c: u32) -> Result<Self, TsmError> {
        let reader = Arc::new(TsmReader::open(path)?);
        let size = std::fs::metadata(path)
            .map_err(|e| TsmError::File {
                path: path.to_path_buf(),
                reason: format!("stat: {e}"),
            })?
            .len();
        Ok(Self {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            size,
            crc32c,
            reader,
            tomb: None,
        })
    }

    /// This file (outside any shard) with the deletes of `set`: reads and
    /// [`write_merged`] leave the deleted points out (a TSM file that came
    /// with a tombstone file from elsewhere).
    pub fn with_deletes(self, set: Tombstones) -> Result<Self, TsmError> {
        let dead = self.dead_under(&set, self.reader.keys().map(|(k, _)| k))?;
        let file = TombstoneFile {
            name: tombstone_name(&self.name),
            path: PathBuf::new(),
            size: 0,
            crc32c: 0,
        };
        Ok(self.with_tombstones(set, file, dead))
    }

    fn new(name: String, path: PathBuf, size: u64, crc32c: u32, reader: Arc<TsmReader>) -> Self {
        Self {
            name,
            path,
            size,
            crc32c,
            reader,
            tomb: None,
        }
    }

    /// Its tombstone file, if points were deleted from it.
    pub fn tombstone(&self) -> Option<&TombFile> {
        self.tomb.as_deref()
    }

    fn is_dead(&self, key: &str) -> bool {
        self.tomb.as_ref().is_some_and(|t| t.dead.contains(key))
    }

    /// Every key with a point left, with its type, in order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, BlockType)> {
        self.reader.keys().filter(move |(k, _)| !self.is_dead(k))
    }

    /// The blocks of `key` (none when every point of it was deleted); a
    /// block may hold deleted points, which [`ShardFile::read_block`]
    /// leaves out.
    pub fn entries(&self, key: &str) -> Option<&[IndexEntry]> {
        if self.is_dead(key) {
            return None;
        }
        self.reader.entries(key)
    }

    /// Reads one block of `key` (CRC checked) without its deleted points.
    pub fn read_block(&self, key: &str, e: &IndexEntry) -> Result<(Vec<i64>, Values), TsmError> {
        let (mut ts, mut v) = self.reader.read_block(e)?;
        if let Some(t) = &self.tomb
            && let Some(keep) = t.set.survivors(key, &ts)
        {
            v.retain_marked(&keep);
            let mut i = 0;
            ts.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        Ok((ts, v))
    }

    /// Hashes of the series of its live keys, sorted.
    fn series_hashes(&self) -> &[u64] {
        match self.tomb.as_ref().filter(|t| !t.dead.is_empty()) {
            Some(t) => t
                .live_series
                .get_or_init(|| super::tsm::file::series_hashes(self.keys().map(|(k, _)| k))),
            None => self.reader.series_hashes(),
        }
    }

    /// The series index of its live keys.
    fn key_index(&self) -> &KeyIndex {
        match self.live() {
            Some((_, index)) => index,
            None => self.reader.key_index(),
        }
    }

    /// The live key at `ordinal` of [`ShardFile::key_index`].
    fn key_at(&self, ordinal: u32) -> Option<&str> {
        match self.live() {
            Some((keys, _)) => keys.get(ordinal as usize).map(String::as_str),
            None => self.reader.key_at(ordinal),
        }
    }

    fn live(&self) -> Option<&(Vec<String>, KeyIndex)> {
        let t = self.tomb.as_ref().filter(|t| !t.dead.is_empty())?;
        Some(t.live.get_or_init(|| {
            let keys: Vec<(String, BlockType)> =
                self.keys().map(|(k, t)| (k.to_string(), t)).collect();
            let index = KeyIndex::build(keys.iter().map(|(k, t)| (k.as_str(), t.type_name())));
            (keys.into_iter().map(|(k, _)| k).collect(), index)
        }))
    }

    /// Which of `keys` have no point left once `set` is applied (blocks
    /// only partly covered by a range are read to tell).
    fn dead_under<'k>(
        &self,
        set: &Tombstones,
        keys: impl Iterator<Item = &'k str>,
    ) -> Result<Vec<String>, TsmError> {
        let mut dead = Vec::new();
        'keys: for key in keys {
            let Some(entries) = self.reader.entries(key) else {
                continue;
            };
            for e in entries {
                if set.covers(key, e.min_time, e.max_time) {
                    continue;
                }
                // A block's first and last times are points of it: one
                // not deleted keeps the key without a read.
                let deleted = |t: i64| set.covers(key, t, t);
                if !deleted(e.min_time) || !deleted(e.max_time) {
                    continue 'keys;
                }
                let (ts, _) = self.reader.read_block(e)?;
                match set.survivors(key, &ts) {
                    Some(keep) if !keep.contains(&true) => {}
                    _ => continue 'keys,
                }
            }
            dead.push(key.to_string());
        }
        Ok(dead)
    }

    /// This file with `set` as its deletes (written as `file`), the keys
    /// `dead` having no point left (besides those dead before).
    fn with_tombstones(&self, set: Tombstones, file: TombstoneFile, dead: Vec<String>) -> Self {
        let mut all = self
            .tomb
            .as_ref()
            .map(|t| t.dead.clone())
            .unwrap_or_default();
        all.extend(dead);
        Self {
            tomb: Some(Arc::new(TombFile {
                name: file.name,
                path: file.path,
                size: file.size,
                crc32c: file.crc32c,
                set,
                dead: all,
                live: std::sync::OnceLock::new(),
                live_series: std::sync::OnceLock::new(),
            })),
            ..self.clone()
        }
    }

    /// Whether `other` is this file with the same deletes.
    fn same_as(&self, other: &ShardFile) -> bool {
        self.name == other.name
            && match (&self.tomb, &other.tomb) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }

    /// Removes the file and its tombstone file from disk.
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(t) = &self.tomb {
            let _ = std::fs::remove_file(&t.path);
        }
    }
}

/// Whether failpoint `name` is armed (never without the `failpoints`
/// feature).
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
fn failpoint_armed(name: &str) -> bool {
    fail::fail_point!(name, |_| true);
    false
}

/// A tombstone file on disk: name, path, size, crc32c.
#[derive(Debug, Clone)]
pub struct TombstoneFile {
    /// File name.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Size.
    pub size: u64,
    /// crc32c.
    pub crc32c: u32,
}

/// What a delete did to a shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// Points removed from the cache.
    pub cached: u64,
    /// Files that got (more) tombstones.
    pub tombstoned: usize,
    /// Files removed: no point was left in them.
    pub dropped: usize,
    /// Keys left without any point in the shard.
    pub keys_gone: usize,
}

impl Shard {
    /// An empty shard in `dir` (created).
    pub fn create(id: u64, dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            id,
            dir,
            cache: HashMap::default(),
            frozen: Vec::new(),
            cache_points: 0,
            cache_bytes: 0,
            files: Vec::new(),
            next_gen: 1,
            types: HashMap::default(),
            fields: HashMap::default(),
        })
    }

    /// Adds an existing TSM file (from a snapshot) to the shard.
    pub fn add_file(
        &mut self,
        name: &str,
        path: PathBuf,
        size: u64,
        crc32c: u32,
    ) -> Result<(), TsmError> {
        let reader = Arc::new(TsmReader::open(&path)?);
        for (k, t) in reader.keys() {
            self.types.insert(k.to_string(), t);
            self.note_field(k, t);
        }
        if let Some(g) = name.split('-').next().and_then(|g| g.parse::<u64>().ok()) {
            self.next_gen = self.next_gen.max(g + 1);
        }
        self.files
            .push(ShardFile::new(name.to_string(), path, size, crc32c, reader));
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    /// Attaches an existing tombstone file (from a snapshot) to its TSM
    /// file, added before. A tombstone whose TSM file is not here deletes
    /// nothing and is left out (false).
    pub fn add_tombstone(&mut self, file: TombstoneFile) -> Result<bool, TsmError> {
        let Some(i) = self
            .files
            .iter()
            .position(|f| tombstone_name(&f.name) == file.name)
        else {
            return Ok(false);
        };
        let set = Tombstones::read(&file.path)?;
        let f = &self.files[i];
        let dead = f.dead_under(&set, f.reader.keys().map(|(k, _)| k))?;
        self.files[i] = f.with_tombstones(set, file, dead);
        Ok(true)
    }

    /// Links an ingested TSM file (validated, its size and crc32c known)
    /// into the shard as its newest file: it overwrites what the shard held
    /// before at the same key and time, and what is written later
    /// overwrites it. Flush the cache first.
    pub fn ingest_file(&mut self, src: &Path, size: u64, crc32c: u32) -> Result<(), TsmError> {
        let name = format!("{:09}-{:09}.tsm", self.next_gen, 1);
        let dst = self.dir.join(&name);
        let io = |op: &'static str| {
            move |e: std::io::Error| TsmError::File {
                path: src.to_path_buf(),
                reason: format!("{op}: {e}"),
            }
        };
        if std::fs::hard_link(src, &dst).is_err() {
            std::fs::copy(src, &dst).map_err(io("copy into the shard"))?;
        }
        self.add_file(&name, dst, size, crc32c)
    }

    /// The type `key` holds here (files or cache), or for a new key the
    /// type its measurement's field holds here, if any.
    pub fn type_of(&self, key: &str) -> Option<BlockType> {
        self.types
            .get(key)
            .copied()
            .or_else(|| self.field_type(key))
    }

    /// The type `key`'s measurement field holds here, if any.
    fn field_type(&self, key: &str) -> Option<BlockType> {
        let (series, field) = super::tsm::split_key(key);
        self.fields
            .get(measurement_part(series))?
            .get(field)
            .copied()
    }

    /// Recomputes the types of the measurement fields in `gone` (whose
    /// keys were deleted) from the keys still held, as a restart or a
    /// snapshot install would find them, so every replica decides the
    /// next write alike: a field no key holds is forgotten; one that keys
    /// of two types hold (written by an earlier version) takes its
    /// smallest key's.
    fn refield(&mut self, gone: &HashMap<String, rustc_hash::FxHashSet<String>>) {
        if gone.is_empty() {
            return;
        }
        for (m, fields) in gone {
            if let Some(held) = self.fields.get_mut(m) {
                held.retain(|f, _| !fields.contains(f));
            }
        }
        // (measurement, field) → (smallest key, its type), of the keys left.
        let mut left: HashMap<(&str, &str), (&str, BlockType)> = HashMap::default();
        for (k, t) in &self.types {
            let (series, field) = super::tsm::split_key(k);
            let m = measurement_part(series);
            if !gone.get(m).is_some_and(|f| f.contains(field)) {
                continue;
            }
            let at = left.entry((m, field)).or_insert((k, *t));
            if k.as_str() < at.0 {
                *at = (k, *t);
            }
        }
        let left: Vec<(String, String, BlockType)> = left
            .into_iter()
            .map(|((m, f), (_, t))| (m.to_string(), f.to_string(), t))
            .collect();
        for (m, f, t) in left {
            self.fields.entry(m).or_default().insert(f, t);
        }
        self.fields.retain(|_, held| !held.is_empty());
    }

    /// Records the type of `key`'s measurement field, unless it has one.
    fn note_field(&mut self, key: &str, t: BlockType) {
        let (series, field) = super::tsm::split_key(key);
        let m = measurement_part(series);
        let fields = match self.fields.get_mut(m) {
            Some(f) => f,
            None => self.fields.entry(m.to_string()).or_default(),
        };
        if !fields.contains_key(field) {
            fields.insert(field.to_string(), t);
        }
    }

    /// The shard's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its TSM files, oldest first.
    pub fn files(&self) -> &[ShardFile] {
        &self.files
    }

    /// Bytes held in the cache (approximate).
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Writes one field value; refused (false) if the key, or its
    /// measurement's field, already holds another type (InfluxDB's "field
    /// type conflict").
    pub fn write(&mut self, key: &str, ts: i64, v: FieldValue) -> bool {
        self.try_write(key, ts, v).is_ok()
    }

    /// [`Shard::write`], refused with the type held (None for a key that
    /// is empty or too long): the conflict's message needs it, and it is
    /// looked up once.
    pub fn try_write(
        &mut self,
        key: &str,
        ts: i64,
        v: FieldValue,
    ) -> Result<(), Option<BlockType>> {
        self.claim_type(key, block_type(&v))?;
        self.cache_bytes += value_size(&v) + key.len() as u64 / 8;
        self.cache_points += 1;
        match self.cache.get_mut(key) {
            Some(c) => c.insert(ts, v),
            None => {
                let mut c = CacheSeries::default();
                c.insert(ts, v);
                self.cache.insert(key.to_string(), c);
            }
        }
        Ok(())
    }

    /// Whether `key` may hold values of type `t` (recording it for a new
    /// key): refused with the type held is InfluxDB's "field type
    /// conflict". A key too long for a TSM index entry is refused here too
    /// (with no type), so that no value in the cache can ever fail a flush.
    fn claim_type(&mut self, key: &str, t: BlockType) -> Result<(), Option<BlockType>> {
        if key.is_empty() || key.len() > super::line_protocol::MAX_KEY_LENGTH {
            return Err(None);
        }
        if let Some(old) = self.types.get(key) {
            return if *old == t { Ok(()) } else { Err(Some(*old)) };
        }
        // A new key: its measurement's field may hold another type here.
        if let Some(old) = self.field_type(key).filter(|old| *old != t) {
            return Err(Some(old));
        }
        self.types.insert(key.to_string(), t);
        self.note_field(key, t);
        Ok(())
    }

    /// Writes many values of one key (one lookup for all); returns how
    /// many were refused for a type conflict (then all are).
    pub fn write_series(&mut self, key: &str, values: Vec<(i64, FieldValue)>) -> usize {
        let Some(t) = values.first().map(|v| block_type(&v.1)) else {
            return 0;
        };
        if values.iter().any(|v| block_type(&v.1) != t) || self.claim_type(key, t).is_err() {
            return values.len();
        }
        let cache = match self.cache.get_mut(key) {
            Some(c) => c,
            None => self.cache.entry(key.to_string()).or_default(),
        };
        self.cache_points += values.len();
        for (ts, v) in values {
            self.cache_bytes += value_size(&v) + key.len() as u64 / 8;
            cache.insert(ts, v);
        }
        0
    }

    /// Writes the cache as a new TSM file; returns it (None if empty).
    pub fn flush(&mut self) -> Result<Option<ShardFile>, TsmError> {
        if self.cache.is_empty() && self.frozen.is_empty() {
            return Ok(None);
        }
        let points = self.cache_points + self.frozen.iter().map(|f| f.points).sum::<usize>();
        let mut all = CacheMap::default();
        for seg in self.frozen.drain(..) {
            merge_into(&mut all, seg.into_map());
        }
        merge_into(&mut all, std::mem::take(&mut self.cache));
        self.cache_points = 0;
        let name = format!("{:09}-{:09}.tsm", self.next_gen, 1);
        let path = self.dir.join(&name);
        match write_cache_file(&path, &mut all) {
            Ok((size, crc32c, reader)) => {
                self.next_gen += 1;
                self.cache_bytes = 0;
                let sf = ShardFile::new(name, path, size, crc32c, reader);
                self.files.push(sf.clone());
                Ok(Some(sf))
            }
            Err(e) => {
                // Nothing is lost: the points stay cached, as one segment,
                // for the next flush (a save or backup that failed on a full
                // disk must not drop them from the live state).
                self.cache = all;
                self.cache_points = points;
                Err(e)
            }
        }
    }

    /// Plans a merge of every file into one (at least `min_files`): the
    /// output's generation is reserved now, so later flushes stay newer.
    /// A file with tombstones is rewritten without its deleted points
    /// even when alone.
    pub fn plan_merge(&mut self, min_files: usize) -> Option<MergeJob> {
        let tombstoned = self.files.iter().any(|f| f.tomb.is_some());
        if self.files.len() < min_files.max(2) && !tombstoned {
            return None;
        }
        let out_name = format!("{:09}-{:09}.tsm", self.next_gen, 2);
        self.next_gen += 1;
        Some(MergeJob {
            shard_id: self.id,
            inputs: self.files.clone(),
            out_path: self.dir.join(&out_name),
            out_name,
        })
    }

    /// Puts a merged file in place of its inputs if they are all still
    /// there with the deletes they had when merged (true); otherwise drops
    /// the merged file (false). The inputs and their tombstones are removed
    /// from the shard directory (snapshots keep their own links).
    pub fn install_merge(&mut self, inputs: &[ShardFile], out: ShardFile) -> bool {
        if !inputs
            .iter()
            .all(|i| self.files.iter().any(|f| f.same_as(i)))
        {
            let _ = std::fs::remove_file(&out.path);
            return false;
        }
        self.files.retain(|f| {
            let merged = inputs.iter().any(|i| i.name == f.name);
            if merged {
                f.remove();
            }
            !merged
        });
        self.files.push(out);
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
        true
    }

    /// Merges every file into one now (the synchronous form of a merge).
    pub fn compact(&mut self) -> Result<(), TsmError> {
        if let Some(job) = self.plan_merge(2) {
            let out = job.run()?;
            self.install_merge(&job.inputs, out);
        }
        Ok(())
    }

    /// Removes the points in `[min, max]` of every key whose series
    /// `reach` says (it is given the TSM key). Files are not rewritten: each
    /// file holding such points gets the range in its tombstone file (a new
    /// file that replaces the old by rename, so snapshots keep theirs), and
    /// reads, merges and backups leave the points out; a file left without
    /// any point goes. The cache loses them at once (frozen segments are
    /// copied, so views keep their point in time). On an error nothing has
    /// changed.
    pub fn delete(
        &mut self,
        reach: &dyn Fn(&str) -> bool,
        min: i64,
        max: i64,
    ) -> Result<DeleteOutcome, TsmError> {
        let mut out = DeleteOutcome::default();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        // The new list is built aside, its tombstone files written beside
        // the old ones: an error leaves the shard as it was.
        let mut next: Vec<Option<ShardFile>> = Vec::with_capacity(self.files.len());
        let mut aside: Vec<AsideFile> = Vec::new();
        let planned = (|| -> Result<(), TsmError> {
            for f in &self.files {
                let hits: Vec<&str> = f
                    .keys()
                    .map(|(k, _)| k)
                    .filter(|k| {
                        reach(k)
                            && f.reader.entries(k).is_some_and(|es| {
                                es.iter().any(|e| e.max_time >= min && e.min_time <= max)
                            })
                    })
                    .collect();
                if hits.is_empty() {
                    next.push(Some(f.clone()));
                    continue;
                }
                touched.extend(hits.iter().map(|k| k.to_string()));
                let mut set = f.tomb.as_ref().map(|t| t.set.clone()).unwrap_or_default();
                for k in &hits {
                    set.add(k, min, max);
                }
                // Deleted already (the same delete again): nothing to write.
                if f.tomb.as_ref().is_some_and(|t| t.set == set) {
                    next.push(Some(f.clone()));
                    continue;
                }
                let dead = f.dead_under(&set, hits.iter().copied())?;
                let already = f.tomb.as_ref().map_or(0, |t| t.dead.len());
                if already + dead.len() == f.reader.keys().count() {
                    next.push(None);
                    continue;
                }
                let name = tombstone_name(&f.name);
                let path = self.dir.join(&name);
                let written = set.write_aside(&path)?;
                let file = TombstoneFile {
                    name,
                    path,
                    size: written.size,
                    crc32c: written.crc32c,
                };
                aside.push(written);
                next.push(Some(f.with_tombstones(set, file, dead)));
            }
            Ok(())
        })();
        if let Err(e) = planned {
            aside.into_iter().for_each(AsideFile::abandon);
            return Err(e);
        }
        if failpoint_armed("tsdb::delete::before_tombstones_renamed") {
            aside.into_iter().for_each(AsideFile::abandon);
            return Err(TsmError::File {
                path: self.dir.clone(),
                reason: "injected failure before the tombstones were renamed".into(),
            });
        }
        out.tombstoned = aside.len();
        for a in aside {
            a.commit()?;
        }
        // Files left without a point go (snapshots keep their own links).
        for (old, new) in self.files.iter().zip(&next) {
            if new.is_none() {
                old.remove();
                out.dropped += 1;
            }
        }
        self.files = next.into_iter().flatten().collect();
        let cut = |map: &mut CacheMap, touched: &mut BTreeSet<String>| -> usize {
            let mut n = 0;
            map.retain(|k, c| {
                if !reach(k) {
                    return true;
                }
                let before = c.points.len();
                c.points.retain(|(t, _)| *t < min || *t > max);
                n += before - c.points.len();
                if before != c.points.len() {
                    touched.insert(k.clone());
                }
                !c.points.is_empty()
            });
            n
        };
        let n = cut(&mut self.cache, &mut touched);
        self.cache_points = self.cache_points.saturating_sub(n);
        out.cached += n as u64;
        for seg in &mut self.frozen {
            let hit = seg
                .map
                .map
                .iter()
                .any(|(k, c)| reach(k) && c.points.iter().any(|(t, _)| *t >= min && *t <= max));
            if hit {
                let mut map = seg.map.map.clone();
                let n = cut(&mut map, &mut touched);
                seg.points = seg.points.saturating_sub(n);
                seg.map = Arc::new(Segment::new(map));
                out.cached += n as u64;
            }
        }
        // A key gone everywhere may take another type later; so may a
        // measurement's field no key holds any more.
        let mut gone: HashMap<String, rustc_hash::FxHashSet<String>> = HashMap::default();
        for k in touched {
            let cached = self.segments().any(|s| s.contains_key(&k));
            let filed = self.files.iter().any(|f| f.entries(&k).is_some());
            if !cached && !filed {
                self.types.remove(&k);
                out.keys_gone += 1;
                let (series, field) = super::tsm::split_key(&k);
                gone.entry(measurement_part(series).to_string())
                    .or_default()
                    .insert(field.to_string());
            }
        }
        self.refield(&gone);

        Ok(out)
    }

    /// Every key (files and cache).
    pub fn keys(&self) -> BTreeSet<String> {
        keys_of(&self.files, self.segments())
    }

    /// The points of `key` in `[min, max]`, last write winning.
    pub fn read(&self, key: &str, min: i64, max: i64) -> Result<Vec<(i64, FieldValue)>, TsmError> {
        read_key(&self.files, self.segments(), key, min, max)
    }

    /// Frozen cache segments held (views share them).
    pub fn frozen_segments(&self) -> usize {
        self.frozen.len()
    }

    /// The cache's segments, oldest first.
    fn segments(&self) -> impl Iterator<Item = &CacheMap> {
        self.frozen
            .iter()
            .map(|f| &f.map.map)
            .chain(std::iter::once(&self.cache))
    }

    /// A read view: the files and the cache as they are now, readable
    /// without the shard (the points written since the last view are
    /// frozen into a shared segment; small segments are merged so that
    /// reads stay cheap).
    pub fn view(&mut self) -> ShardView {
        if !self.cache.is_empty() {
            self.frozen.push(Frozen {
                map: Arc::new(Segment::new(std::mem::take(&mut self.cache))),
                points: std::mem::take(&mut self.cache_points),
            });
            // Tiered: the newest segment is merged into the one before it
            // while it is at least half its size (or past 16 segments), so
            // a value is copied O(log n) times however many views are taken.
            while let [.., older, newer] = &self.frozen[..] {
                if newer.points * 2 < older.points && self.frozen.len() <= 16 {
                    break;
                }
                let (Some(newer), Some(older)) = (self.frozen.pop(), self.frozen.pop()) else {
                    break;
                };
                let points = older.points + newer.points;
                let mut map = older.into_map();
                merge_into(&mut map, newer.into_map());
                self.frozen.push(Frozen {
                    map: Arc::new(Segment::new(map)),
                    points,
                });
            }
        }
        ShardView {
            files: self.files.clone(),
            frozen: self.frozen.iter().map(|f| f.map.clone()).collect(),
        }
    }
}

/// A frozen cache segment and how many values went into it.
#[derive(Debug)]
struct Frozen {
    map: Arc<Segment>,
    points: usize,
}

impl Frozen {
    /// Its map, copied only if a view still shares it.
    fn into_map(self) -> CacheMap {
        Arc::try_unwrap(self.map).map_or_else(|a| a.map.clone(), |s| s.map)
    }
}

/// A frozen cache segment: its points, and the series index of its keys
/// (built when a query first reads it).
#[derive(Debug)]
struct Segment {
    map: CacheMap,
    index: std::sync::OnceLock<(Vec<String>, KeyIndex)>,
    series: std::sync::OnceLock<Vec<u64>>,
}

impl Segment {
    fn new(map: CacheMap) -> Self {
        Self {
            map,
            index: std::sync::OnceLock::new(),
            series: std::sync::OnceLock::new(),
        }
    }

    /// Hashes of its series, sorted.
    fn series_hashes(&self) -> &[u64] {
        self.series.get_or_init(|| {
            super::tsm::file::series_hashes(self.index().0.iter().map(String::as_str))
        })
    }

    /// Its keys in order, and their index.
    fn index(&self) -> &(Vec<String>, KeyIndex) {
        self.index.get_or_init(|| {
            let mut keys: Vec<String> = self.map.keys().cloned().collect();
            keys.sort_unstable();
            let index = KeyIndex::build(keys.iter().map(|k| {
                let type_name = self
                    .map
                    .get(k)
                    .and_then(|c| c.points.first())
                    .map_or("float", |(_, v)| v.type_name());
                (k.as_str(), type_name)
            }));
            (keys, index)
        })
    }
}

/// Writes cached points (sorted here) as a TSM file at `path`: its size,
/// crc32c and an open reader.
fn write_cache_file(
    path: &Path,
    all: &mut CacheMap,
) -> Result<(u64, u32, Arc<TsmReader>), TsmError> {
    for c in all.values_mut() {
        c.normalize();
    }
    let mut keys: Vec<&String> = all.keys().collect();
    keys.sort_unstable();
    let mut w = TsmWriter::create(path)?;
    for key in keys {
        let Some(pts) = all.get(key) else {
            continue;
        };
        let (ts, vals) = to_values(&pts.points)?;
        w.write(key, &ts, &vals)?;
    }
    let f = w.finish()?;
    let reader = Arc::new(TsmReader::open(path)?);
    Ok((f.size, f.crc32c, reader))
}

/// A shard as it was when the view was taken: immutable files and frozen
/// cache segments, read without any lock.
#[derive(Debug, Clone)]
pub struct ShardView {
    files: Vec<ShardFile>,
    frozen: Vec<Arc<Segment>>,
}

impl ShardView {
    /// (bytes of its TSM files, how many, values held in its cache).
    pub fn sizes(&self) -> (u64, usize, usize) {
        let cached = self
            .frozen
            .iter()
            .flat_map(|seg| seg.map.values())
            .map(|c| c.points.len())
            .sum();
        (
            self.files.iter().map(|f| f.size).sum(),
            self.files.len(),
            cached,
        )
    }

    /// What reading `key` over `[min, max]` costs here, as influxd counts
    /// it for `EXPLAIN`: (values cached in the range, files with a block
    /// reaching into it, those blocks, their bytes). Like influxd's, a
    /// file or block counts when it ends after `min` and starts before
    /// `max`.
    pub fn cost(&self, key: &str, min: i64, max: i64) -> (u64, u64, u64, u64) {
        let cached = self
            .frozen
            .iter()
            .filter_map(|seg| seg.map.get(key))
            .map(|c| {
                c.points
                    .iter()
                    .filter(|(t, _)| *t >= min && *t <= max)
                    .count() as u64
            })
            .sum();
        let (mut files, mut blocks, mut bytes) = (0, 0, 0);
        for f in &self.files {
            let Some((lo, hi)) = f.reader.time_range() else {
                continue;
            };
            if !(hi > min && lo < max) {
                continue;
            }
            let mut read = false;
            for e in f.entries(key).unwrap_or(&[]) {
                if e.max_time > min && e.min_time < max {
                    blocks += 1;
                    bytes += u64::from(e.size);
                    read = true;
                }
            }
            files += u64::from(read);
        }
        (cached, files, blocks, bytes)
    }

    /// The sorted hashes of the series of each of its files and cache
    /// segments (a series may be in several): [`count_union`] counts them
    /// without building a key.
    pub fn series_lists(&self) -> Vec<&[u64]> {
        self.files
            .iter()
            .map(ShardFile::series_hashes)
            .chain(self.frozen.iter().map(|s| s.series_hashes()))
            .collect()
    }

    /// Calls `f` with every key it holds (files' keys with a point left,
    /// then the cache's; a key may come more than once).
    pub fn for_each_key(&self, mut f: impl FnMut(&str)) {
        for file in &self.files {
            file.keys().for_each(|(k, _)| f(k));
        }
        for seg in &self.frozen {
            seg.map.keys().for_each(|k| f(k));
        }
    }

    /// Every measurement (from the series index of its files and cache).
    pub fn measurements(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for f in &self.files {
            out.extend(f.key_index().measurements().map(str::to_string));
        }
        for seg in &self.frozen {
            out.extend(seg.index().1.measurements().map(str::to_string));
        }
        out
    }

    /// The index entries of measurement `m` in each file and cache segment
    /// that has it, with the key at each ordinal.
    fn pieces<'a>(&'a self, m: &'a str) -> impl Iterator<Item = Piece<'a>> + 'a {
        let files = self.files.iter().filter_map(move |f| {
            let mk = f.key_index().measurement(m)?;
            let key_at: KeyAt<'a> = Box::new(move |o| f.key_at(o));
            Some((mk, key_at))
        });
        let segments = self.frozen.iter().filter_map(move |seg| {
            let (keys, index) = seg.index();
            let mk = index.measurement(m)?;
            let key_at: KeyAt<'a> = Box::new(move |o| keys.get(o as usize).map(String::as_str));
            Some((mk, key_at))
        });
        files.chain(segments)
    }

    /// Adds the tag keys measurement `m` has here.
    pub fn tag_keys(&self, m: &str, out: &mut BTreeSet<String>) {
        for (mk, _) in self.pieces(m) {
            out.extend(mk.tag_keys().map(str::to_string));
        }
    }

    /// Adds the fields of measurement `m` here with their types' names
    /// (a field already in `out` keeps its type).
    pub fn field_types(&self, m: &str, out: &mut BTreeMap<String, &'static str>) {
        for (mk, _) in self.pieces(m) {
            for (f, t) in mk.fields() {
                out.entry(f.clone()).or_insert(t);
            }
        }
    }

    /// Adds the values tag `key` of measurement `m` takes here.
    pub fn tag_values(&self, m: &str, key: &str, out: &mut BTreeSet<String>) {
        for (mk, _) in self.pieces(m) {
            out.extend(mk.tag_values(key).map(str::to_string));
        }
    }

    /// Adds the series of measurement `m` that have every `(tag, value)`
    /// of `eq` (all when empty), each with its field names: series key →
    /// fields.
    pub fn series(
        &self,
        m: &str,
        eq: &[(&str, &str)],
        out: &mut BTreeMap<String, BTreeSet<String>>,
    ) {
        for (mk, key_at) in self.pieces(m) {
            for key in mk.matching(eq).into_iter().filter_map(&key_at) {
                let (series, field) = super::tsm::split_key(key);
                match out.get_mut(series) {
                    Some(fields) => {
                        if !fields.contains(field) {
                            fields.insert(field.to_string());
                        }
                    }
                    None => {
                        out.insert(series.to_string(), BTreeSet::from([field.to_string()]));
                    }
                }
            }
        }
    }

    /// The points of `key` in `[min, max]`, last write winning.
    pub fn read(&self, key: &str, min: i64, max: i64) -> Result<Vec<(i64, FieldValue)>, TsmError> {
        read_key(
            &self.files,
            self.frozen.iter().map(|a| &a.map),
            key,
            min,
            max,
        )
    }

    /// A bound on the time of `key`'s first point in `[min, max]` (of its
    /// last when `last`), read from the file indexes and the cache without
    /// decoding a block: never after the real first point (never before
    /// the real last), as a block may hold deleted points or none in the
    /// range. None when nothing of `key` reaches into the range.
    pub fn time_bound(&self, key: &str, min: i64, max: i64, last: bool) -> Option<i64> {
        let mut bound: Option<i64> = None;
        let mut take = |t: i64| {
            bound = Some(match bound {
                Some(b) if last => b.max(t),
                Some(b) => b.min(t),
                None => t,
            });
        };
        for f in &self.files {
            for e in f.entries(key).unwrap_or(&[]) {
                if e.max_time >= min && e.min_time <= max {
                    take(if last {
                        e.max_time.min(max)
                    } else {
                        e.min_time.max(min)
                    });
                }
            }
        }
        for seg in &self.frozen {
            if let Some(t) = seg.map.get(key).and_then(|c| c.edge(min, max, last)) {
                take(t);
            }
        }
        bound
    }

    /// The first `n` points of `key` in `[min, max]` (the last `n` when
    /// `last`), in time order, last write winning: only the blocks that
    /// hold them are read.
    pub fn read_n(
        &self,
        key: &str,
        min: i64,
        max: i64,
        n: usize,
        last: bool,
    ) -> Result<Vec<(i64, FieldValue)>, TsmError> {
        // A file's (or segment's) first n points hold every one of the
        // first n of the union that it has, so later files still win.
        let mut merged: BTreeMap<i64, FieldValue> = BTreeMap::new();
        for f in &self.files {
            let Some(entries) = f.entries(key) else {
                continue;
            };
            // Blocks that overlap each other are all read (a file written
            // elsewhere may hold such).
            let ordered = entries.windows(2).all(|w| w[0].max_time < w[1].min_time);
            let n = if ordered { n } else { usize::MAX };
            let mut taken: Vec<(i64, FieldValue)> = Vec::new();
            let blocks = entries
                .iter()
                .filter(|e| e.max_time >= min && e.min_time <= max);
            let blocks: Box<dyn Iterator<Item = _>> = if last {
                Box::new(blocks.rev())
            } else {
                Box::new(blocks)
            };
            for e in blocks {
                let (ts, v) = f.read_block(key, e)?;
                let pts = from_values(ts, v)
                    .into_iter()
                    .filter(|(t, _)| *t >= min && *t <= max);
                if last {
                    let mut block: Vec<_> = pts.collect();
                    block.reverse();
                    taken.extend(block);
                } else {
                    taken.extend(pts);
                }
                if taken.len() >= n {
                    break;
                }
            }
            if ordered {
                taken.truncate(n);
                merged.extend(taken);
            } else {
                for (t, v) in taken {
                    merged.insert(t, v);
                }
            }
        }
        for seg in &self.frozen {
            if let Some(c) = seg.map.get(key) {
                merged.extend(c.range_n(min, max, n, last));
            }
        }
        let all: Vec<(i64, FieldValue)> = merged.into_iter().collect();
        let skip = if last { all.len().saturating_sub(n) } else { 0 };
        Ok(all.into_iter().skip(skip).take(n).collect())
    }
}

/// How many distinct values the sorted, deduplicated `lists` hold
/// together: the longest counts whole, and the values of the others that
/// it lacks are looked up in it (series lists are mostly one big file's
/// and a few small ones: no union is built).
pub fn count_union(lists: &[&[u64]]) -> usize {
    let mut lists: Vec<&[u64]> = lists.iter().copied().filter(|l| !l.is_empty()).collect();
    lists.sort_by_key(|l| std::cmp::Reverse(l.len()));
    let Some((big, rest)) = lists.split_first() else {
        return 0;
    };
    let mut extra: Vec<u64> = rest
        .iter()
        .flat_map(|l| l.iter())
        .filter(|h| big.binary_search(h).is_err())
        .copied()
        .collect();
    extra.sort_unstable();
    extra.dedup();
    big.len() + extra.len()
}

/// The key at an ordinal of a file or cache segment.
type KeyAt<'a> = Box<dyn Fn(u32) -> Option<&'a str> + 'a>;

/// A measurement's index entries in one file or cache segment, and the key
/// at each ordinal.
type Piece<'a> = (&'a MeasurementKeys, KeyAt<'a>);

/// Cached points by key.
type CacheMap = HashMap<String, CacheSeries>;

/// Adds `newer`'s points after `older`'s (so they win per timestamp).
fn merge_into(older: &mut CacheMap, newer: CacheMap) {
    for (k, c) in newer {
        match older.get_mut(&k) {
            None => {
                older.insert(k, c);
            }
            Some(o) => {
                for (t, v) in c.points {
                    o.insert(t, v);
                }
            }
        }
    }
}

fn keys_of<'a>(
    files: &[ShardFile],
    segments: impl Iterator<Item = &'a CacheMap>,
) -> BTreeSet<String> {
    let mut k = BTreeSet::new();
    for s in segments {
        k.extend(s.keys().cloned());
    }
    for f in files {
        k.extend(f.keys().map(|(k, _)| k.to_string()));
    }
    k
}

fn read_key<'a>(
    files: &[ShardFile],
    segments: impl Iterator<Item = &'a CacheMap>,
    key: &str,
    min: i64,
    max: i64,
) -> Result<Vec<(i64, FieldValue)>, TsmError> {
    // Runs of points, each sorted with one point per time, in the order
    // they win (later over earlier): blocks of older files first, then
    // the cache segments.
    let mut runs: Vec<Vec<(i64, FieldValue)>> = Vec::new();
    for f in files {
        let Some(entries) = f.entries(key) else {
            continue;
        };
        for e in entries
            .iter()
            .filter(|e| e.max_time >= min && e.min_time <= max)
        {
            let (ts, v) = f.read_block(key, e)?;
            let mut run = from_values(ts, v);
            run.retain(|(t, _)| *t >= min && *t <= max);
            if !run.is_empty() {
                runs.push(run);
            }
        }
    }
    for s in segments {
        if let Some(c) = s.get(key) {
            let run = c.range(min, max);
            if !run.is_empty() {
                runs.push(run);
            }
        }
    }
    // Usually the runs do not overlap in time (blocks written in order,
    // the cache newer than the files): put end to end, nothing to merge.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| runs[i][0].0);
    let disjoint = order.windows(2).all(|w| {
        runs[w[0]]
            .last()
            .zip(runs[w[1]].first())
            .is_some_and(|(a, b)| a.0 < b.0)
    });
    if disjoint {
        let mut out = Vec::with_capacity(runs.iter().map(Vec::len).sum());
        for i in order {
            out.append(&mut runs[i]);
        }
        return Ok(out);
    }
    let mut merged: BTreeMap<i64, FieldValue> = BTreeMap::new();
    for run in runs {
        merged.extend(run);
    }
    Ok(merged.into_iter().collect())
}

/// The cached points of one key. Appends are O(1) whatever the order the
/// writes arrive in (concurrent bodies often land out of time order); the
/// points are sorted, one per timestamp with the last write winning, when
/// flushed or read.
#[derive(Debug, Default, Clone)]
struct CacheSeries {
    points: Vec<(i64, FieldValue)>,
    /// Points are in strictly increasing time order.
    sorted: bool,
}

impl CacheSeries {
    fn insert(&mut self, ts: i64, v: FieldValue) {
        match self.points.last() {
            None => self.sorted = true,
            Some((last, _)) if ts <= *last => self.sorted = false,
            Some(_) => {}
        }
        self.points.push((ts, v));
    }

    /// Sorted by time, the last write of a timestamp kept.
    fn normalized(points: &mut Vec<(i64, FieldValue)>) {
        points.reverse();
        // Stable: among equal timestamps the last write now comes first.
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
    }

    fn normalize(&mut self) {
        if !self.sorted {
            Self::normalized(&mut self.points);
            self.sorted = true;
        }
    }

    /// The time of the first point in `[min, max]` (the last when
    /// `last`).
    fn edge(&self, min: i64, max: i64, last: bool) -> Option<i64> {
        let p = &self.points;
        if self.sorted {
            let lo = p.partition_point(|x| x.0 < min);
            let hi = p.partition_point(|x| x.0 <= max);
            let at = if last { hi.checked_sub(1)? } else { lo };
            return (lo < hi).then(|| p[at].0);
        }
        let inside = p.iter().map(|x| x.0).filter(|t| *t >= min && *t <= max);
        if last { inside.max() } else { inside.min() }
    }

    /// The first `n` points in `[min, max]` (the last `n` when `last`),
    /// sorted, last write winning: only those are copied when the series
    /// is sorted (a page of a long series no longer copies the rest).
    fn range_n(&self, min: i64, max: i64, n: usize, last: bool) -> Vec<(i64, FieldValue)> {
        if self.sorted {
            let p = &self.points;
            let lo = p.partition_point(|x| x.0 < min);
            let hi = p.partition_point(|x| x.0 <= max).max(lo);
            let (lo, hi) = if last {
                (hi.saturating_sub(n).max(lo), hi)
            } else {
                (lo, lo.saturating_add(n).min(hi))
            };
            return p[lo..hi].to_vec();
        }
        let mut all = self.range(min, max);
        if all.len() > n {
            if last {
                all.drain(..all.len() - n);
            } else {
                all.truncate(n);
            }
        }
        all
    }

    /// The points in `[min, max]`, sorted, last write winning.
    fn range(&self, min: i64, max: i64) -> Vec<(i64, FieldValue)> {
        let cut = |p: &[(i64, FieldValue)]| {
            let lo = p.partition_point(|x| x.0 < min);
            let hi = p.partition_point(|x| x.0 <= max);
            p[lo..hi.max(lo)].to_vec()
        };
        if self.sorted {
            return cut(&self.points);
        }
        let mut all: Vec<(i64, FieldValue)> = self
            .points
            .iter()
            .filter(|p| p.0 >= min && p.0 <= max)
            .cloned()
            .collect();
        Self::normalized(&mut all);
        all
    }
}

/// A merge of a shard's files into one, runnable without the shard (its
/// inputs are immutable files with their own readers).
#[derive(Debug, Clone)]
pub struct MergeJob {
    /// The shard.
    pub shard_id: u64,
    /// Files merged, oldest first.
    pub inputs: Vec<ShardFile>,
    /// Output name (generation reserved by `plan_merge`).
    pub out_name: String,
    /// Output path.
    pub out_path: PathBuf,
}

impl MergeJob {
    /// Writes the merged file (later inputs win per timestamp).
    pub fn run(&self) -> Result<ShardFile, TsmError> {
        let out = write_merged(&self.inputs, &self.out_path, i64::MIN, i64::MAX)?;
        let reader = Arc::new(TsmReader::open(&self.out_path)?);
        Ok(ShardFile::new(
            self.out_name.clone(),
            self.out_path.clone(),
            out.size,
            out.crc32c,
            reader,
        ))
    }
}

/// What [`write_merged`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct MergedFile {
    /// File size.
    pub size: u64,
    /// Its crc32c.
    pub crc32c: u32,
    /// Values written.
    pub values: u64,
}

/// Writes one TSM file at `out` holding exactly the points of `inputs`
/// (oldest first; later files win per timestamp) with times in `[min, max]`.
/// Only blocks that overlap the range are read. Keys without a point in
/// the range are left out.
pub fn write_merged(
    inputs: &[ShardFile],
    out: &Path,
    min: i64,
    max: i64,
) -> Result<MergedFile, TsmError> {
    let mut w = TsmWriter::create(out)?;
    let keys: BTreeSet<String> = inputs
        .iter()
        .flat_map(|f| f.keys().map(|(k, _)| k.to_string()).collect::<Vec<_>>())
        .collect();
    let mut values = 0u64;
    for key in &keys {
        // One file whose blocks of this key are in time order and do not
        // overlap (as TSM files are written): blocks are sliced to the
        // range and written as they come, no merge needed.
        if let [only] = inputs
            && let Some(entries) = only.entries(key)
            && entries.windows(2).all(|w| w[0].max_time < w[1].min_time)
        {
            let mut out: Option<(Vec<i64>, Values)> = None;
            for e in entries
                .iter()
                .filter(|e| e.max_time >= min && e.min_time <= max)
            {
                let (ts, v) = only.read_block(key, e)?;
                let from = ts.partition_point(|t| *t < min);
                let to = ts.partition_point(|t| *t <= max);
                let (ts, v) = if from == 0 && to == ts.len() {
                    (ts, v)
                } else {
                    (ts[from..to].to_vec(), v.slice(from..to))
                };
                match &mut out {
                    None => out = Some((ts, v)),
                    Some((ots, ov)) => {
                        ots.extend(ts);
                        ov.extend(v)?;
                    }
                }
            }
            if let Some((ts, v)) = out.filter(|(ts, _)| !ts.is_empty()) {
                values += ts.len() as u64;
                w.write(key, &ts, &v)?;
            }
            continue;
        }
        let points = read_key(inputs, std::iter::empty(), key, min, max)?;
        if points.is_empty() {
            continue;
        }
        values += points.len() as u64;
        let (ts, vals) = to_values(&points)?;
        w.write(key, &ts, &vals)?;
    }
    let f = w.finish()?;
    Ok(MergedFile {
        size: f.size,
        crc32c: f.crc32c,
        values,
    })
}

/// The measurement part of a series key, as written (escapes kept): up to
/// its first comma that is not escaped.
pub(crate) fn measurement_part(series: &str) -> &str {
    let b = series.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b',' => return series.get(..i).unwrap_or(series),
            _ => i += 1,
        }
    }
    series
}

/// The measurement of a TSM key (unescaped).
pub fn measurement_of(key: &str) -> String {
    let series = key.split(KEY_FIELD_SEPARATOR).next().unwrap_or(key);
    let mut out = String::new();
    let mut chars = series.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(',') | Some(' ')) => {
                out.push(chars.next().unwrap_or(c))
            }
            ',' => break,
            _ => out.push(c),
        }
    }
    out
}

/// The field of a TSM key.
pub fn field_of(key: &str) -> &str {
    super::tsm::split_key(key).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_series_gives_its_first_or_last_points_in_a_range() {
        for shuffled in [false, true] {
            let mut c = CacheSeries::default();
            let mut times: Vec<i64> = (0..100).map(|i| i * 10).collect();
            if shuffled {
                times.reverse();
                times.push(500); // written twice: the last write wins
            }
            for t in &times {
                c.insert(
                    *t,
                    FieldValue::Integer(*t + i64::from(*t == 500 && shuffled)),
                );
            }
            let all = c.range(95, 555);
            assert_eq!(all.len(), 46);
            for n in [0, 1, 5, 46, 100] {
                for last in [false, true] {
                    let want: Vec<_> = if last {
                        all[all.len().saturating_sub(n)..].to_vec()
                    } else {
                        all[..n.min(all.len())].to_vec()
                    };
                    assert_eq!(c.range_n(95, 555, n, last), want, "{shuffled} {n} {last}");
                }
            }
            assert_eq!(c.range_n(2000, 3000, 5, false), vec![]);
        }
    }

    #[test]
    fn one_file_is_cut_to_the_range_block_by_block() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src.tsm");
        let mut w = TsmWriter::create(&src).unwrap();
        let ts: Vec<i64> = (0..2500).collect();
        w.write(
            "m#!~#a",
            &ts,
            &Values::Float(ts.iter().map(|t| *t as f64).collect()),
        )
        .unwrap();
        w.write("m#!~#b", &[5, 3000], &Values::Integer(vec![5, 3000]))
            .unwrap();
        w.finish().unwrap();
        let f = ShardFile::open(&src, 0).unwrap();
        let out = t.path().join("out.tsm");
        let m = write_merged(std::slice::from_ref(&f), &out, 100, 1599).unwrap();
        assert_eq!(m.values, 1500);
        let r = TsmReader::open(&out).unwrap();
        let (ts, v) = r.read("m#!~#a").unwrap().unwrap();
        assert_eq!((ts.len(), ts[0], ts[1499]), (1500, 100, 1599));
        assert_eq!(v.slice(0..1), Values::Float(vec![100.0]));
        assert!(
            r.read("m#!~#b").unwrap().is_none(),
            "no point of b in range"
        );
    }

    #[test]
    fn the_cache_takes_points_in_any_order_and_the_last_write_wins() {
        let mut c = CacheSeries::default();
        for (t, v) in [(5, 1.0), (6, 2.0), (1, 3.0), (5, 4.0), (9, 5.0), (1, 6.0)] {
            c.insert(t, FieldValue::Float(v));
        }
        let want: Vec<(i64, FieldValue)> = [(1, 6.0), (5, 4.0), (6, 2.0), (9, 5.0)]
            .into_iter()
            .map(|(t, v)| (t, FieldValue::Float(v)))
            .collect();
        assert_eq!(c.range(i64::MIN, i64::MAX), want);
        assert_eq!(c.range(2, 6), want[1..3].to_vec());
        c.normalize();
        assert_eq!(c.points, want);
        assert_eq!(c.range(6, 100), want[2..].to_vec());
    }

    #[test]
    fn a_field_has_one_type_per_measurement_whatever_the_series() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("1");
        let mut s = Shard::create(1, dir.clone()).unwrap();
        let float = FieldValue::Float(1.0);
        let int = FieldValue::Integer(1);
        assert!(s.write("cpu,host=a#!~#v", 1, float.clone()));
        // Another series of the measurement: the field's type holds.
        assert!(!s.write("cpu,host=b#!~#v", 1, int.clone()));
        assert_eq!(s.type_of("cpu,host=b#!~#v"), Some(BlockType::Float));
        assert!(s.write("cpu,host=b#!~#v", 1, float.clone()));
        // Another field, another measurement, a measurement whose name
        // holds an escaped comma: their own types.
        assert!(s.write("cpu,host=b#!~#w", 1, int.clone()));
        assert!(s.write("mem,host=a#!~#v", 1, int.clone()));
        assert!(s.write("cpu\\,x,host=a#!~#v", 1, int.clone()));
        assert!(s.write("cpu\\,x#!~#v", 2, int.clone()));
        // Read back from the files after a flush, as after a restart.
        s.flush().unwrap();
        let mut again = Shard::create(1, dir).unwrap();
        for f in s.files() {
            again
                .add_file(&f.name, f.path.clone(), f.size, f.crc32c)
                .unwrap();
        }
        assert!(!again.write("cpu,host=c#!~#v", 1, int.clone()));
        assert!(again.write("cpu,host=c#!~#w", 1, int.clone()));
        // While a series still holds the field, its type stands.
        let a = |k: &str| k == "cpu,host=a#!~#v";
        assert_eq!(again.delete(&a, i64::MIN, i64::MAX).unwrap().keys_gone, 1);
        assert!(!again.write("cpu,host=e#!~#v", 1, int.clone()));
        // Once no series of the measurement holds the field, it may take
        // another type.
        let cpu = |k: &str| k.starts_with("cpu,");
        let done = again.delete(&cpu, i64::MIN, i64::MAX).unwrap();
        assert!(done.keys_gone > 0);
        assert!(again.write("cpu,host=d#!~#v", 1, int.clone()));
        assert!(!again.write("cpu\\,x,host=b#!~#v", 1, float));
    }

    #[test]
    fn a_failed_flush_keeps_every_cached_point() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("1");
        let mut s = Shard::create(1, dir.clone()).unwrap();
        let k = "cpu,host=a#!~#v";
        for i in 0..10 {
            assert!(s.write(k, i, FieldValue::Float(i as f64)));
        }
        let _view = s.view(); // a frozen segment shared with a reader
        for i in 10..15 {
            assert!(s.write(k, i, FieldValue::Float(i as f64)));
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(s.flush().is_err(), "no directory to write into");
        assert!(s.files().is_empty());
        assert_eq!(s.read(k, i64::MIN, i64::MAX).unwrap().len(), 15);
        std::fs::create_dir_all(&dir).unwrap();
        let f = s.flush().unwrap().unwrap();
        assert_eq!(f.reader.keys().count(), 1);
        assert_eq!(s.read(k, i64::MIN, i64::MAX).unwrap().len(), 15);
        assert!(s.flush().unwrap().is_none(), "the cache is empty now");
    }

    #[test]
    fn a_delete_leaves_cache_and_files_but_not_views_or_later_writes() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Shard::create(1, t.path().join("1")).unwrap();
        let (a, b) = ("cpu,host=a#!~#v", "cpu,host=b#!~#v");
        for i in 0..10 {
            assert!(s.write(a, i, FieldValue::Float(i as f64)));
            assert!(s.write(b, i, FieldValue::Float(i as f64)));
        }
        s.flush().unwrap().unwrap();
        let only_a = s.files()[0].name.clone();
        for i in 10..15 {
            assert!(s.write(a, i, FieldValue::Float(i as f64)));
        }
        let before = s.view();
        assert!(s.write(a, 15, FieldValue::Float(15.0)));
        let reach = |k: &str| k.starts_with("cpu,host=a#");
        let done = s.delete(&reach, 3, 12).unwrap();
        assert_eq!((done.cached, done.tombstoned, done.dropped), (3, 1, 0));
        // The file keeps its name and gets a tombstone file; b is whole.
        assert_eq!(s.files().len(), 1);
        assert_eq!(s.files()[0].name, only_a);
        // The same delete again writes nothing.
        let again = s.delete(&reach, 3, 9).unwrap();
        assert_eq!((again.cached, again.tombstoned, again.dropped), (0, 0, 0));
        let tomb = s.files()[0].tombstone().unwrap();
        assert_eq!(tomb.name, "000000001-000000001.tombstone");
        let on_disk = std::fs::read(&tomb.path).unwrap();
        assert_eq!(
            (tomb.size, tomb.crc32c),
            (on_disk.len() as u64, crc32c::crc32c(&on_disk))
        );
        let times = |pts: Vec<(i64, FieldValue)>| pts.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(
            times(s.read(a, i64::MIN, i64::MAX).unwrap()),
            vec![0, 1, 2, 13, 14, 15]
        );
        assert_eq!(s.read(b, i64::MIN, i64::MAX).unwrap().len(), 10);
        // A view taken before keeps its point in time.
        assert_eq!(before.read(a, i64::MIN, i64::MAX).unwrap().len(), 15);
        let after = s.view();
        assert_eq!(
            times(after.read_n(a, 0, 20, 4, false).unwrap()),
            vec![0, 1, 2, 13]
        );
        assert_eq!(
            times(after.read_n(a, 0, 20, 2, true).unwrap()),
            vec![14, 15]
        );
        // Writes after the delete stay.
        assert!(s.write(a, 5, FieldValue::Float(5.5)));
        assert_eq!(s.read(a, 5, 5).unwrap(), vec![(5, FieldValue::Float(5.5))]);
        // Everything of a key gone: it may take another type, and the
        // series index no longer has it.
        assert!(s.write(b, 20, FieldValue::Float(1.0)));
        s.flush().unwrap();
        let reach_b = |k: &str| k.starts_with("cpu,host=b#");
        let done = s.delete(&reach_b, i64::MIN, i64::MAX).unwrap();
        // Both files hold b (the second one a's point 5 too).
        assert_eq!((done.cached, done.tombstoned, done.dropped), (0, 2, 0));
        assert!(s.keys().iter().all(|k| k != b));
        // A file of nothing but deleted points goes, with its tombstone;
        // keys already dead elsewhere are not tombstoned again.
        assert!(s.write(b, 30, FieldValue::Float(1.0)));
        let only_b = s.flush().unwrap().unwrap();
        let done = s.delete(&reach_b, i64::MIN, i64::MAX).unwrap();
        assert_eq!((done.cached, done.tombstoned, done.dropped), (0, 0, 1));
        assert!(!only_b.path.exists());
        assert_eq!(s.files().len(), 2);
        assert!(s.keys().iter().all(|k| k != b));
        let mut series = BTreeMap::new();
        s.view().series("cpu", &[], &mut series);
        assert_eq!(series.keys().collect::<Vec<_>>(), vec!["cpu,host=a"]);
        let mut values = BTreeSet::new();
        s.view().tag_values("cpu", "host", &mut values);
        assert_eq!(values.into_iter().collect::<Vec<_>>(), vec!["a"]);
        // `a` still holds the measurement's field as a float.
        assert!(!s.write(b, 1, FieldValue::Integer(1)));
        assert!(s.write(b, 1, FieldValue::Float(1.0)));
    }

    /// A shard of one file holding `a` (floats) and `b` (integers) at
    /// times 0..100.
    fn two_key_shard(dir: &Path) -> (Shard, &'static str, &'static str) {
        let mut s = Shard::create(1, dir.join("1")).unwrap();
        let (a, b) = ("cpu,host=a#!~#v", "cpu,host=b#!~#n");
        for i in 0..100 {
            assert!(s.write(a, i, FieldValue::Float(i as f64)));
            assert!(s.write(b, i, FieldValue::Integer(i)));
        }
        s.flush().unwrap().unwrap();
        (s, a, b)
    }

    #[test]
    fn a_merge_that_raced_a_delete_is_refused_and_a_tombstoned_file_is_rewritten_alone() {
        let t = tempfile::tempdir().unwrap();
        let (mut s, a, b) = two_key_shard(t.path());
        assert!(s.write(a, 200, FieldValue::Float(2.0)));
        s.flush().unwrap().unwrap();
        // A merge planned before the delete, installed after it, would
        // bring the deleted points back: it is refused.
        let job = s.plan_merge(2).unwrap();
        let reach = |k: &str| k.starts_with("cpu,host=a#");
        s.delete(&reach, 10, 19).unwrap();
        let out = job.run().unwrap();
        let out_path = out.path.clone();
        assert!(!s.install_merge(&job.inputs, out));
        assert!(!out_path.exists());
        assert_eq!(s.read(a, 10, 19).unwrap(), vec![]);
        // Planned again, it merges what the files hold now.
        let job = s.plan_merge(2).unwrap();
        let out = job.run().unwrap();
        assert!(s.install_merge(&job.inputs, out));
        assert_eq!(s.files().len(), 1);
        assert!(s.files()[0].tombstone().is_none());
        assert_eq!(s.read(a, i64::MIN, i64::MAX).unwrap().len(), 91);
        assert_eq!(s.read(b, i64::MIN, i64::MAX).unwrap().len(), 100);
        // One file with a tombstone is rewritten alone, its tombstone
        // file removed; one without is left as it is.
        assert!(s.plan_merge(2).is_none());
        s.delete(&|k: &str| k.starts_with("cpu,host=b#"), 0, 49)
            .unwrap();
        let tomb = s.files()[0].tombstone().unwrap().path.clone();
        let job = s.plan_merge(2).unwrap();
        let out = job.run().unwrap();
        assert!(s.install_merge(&job.inputs, out));
        assert!(!tomb.exists());
        assert!(s.files()[0].tombstone().is_none());
        let times: Vec<i64> = s
            .read(b, i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(times, (50..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_shard_loaded_with_a_tombstone_reads_as_before_and_a_stray_one_is_left_out() {
        let t = tempfile::tempdir().unwrap();
        let (mut s, a, b) = two_key_shard(t.path());
        s.delete(&|k: &str| k.starts_with("cpu,host=a#"), i64::MIN, i64::MAX)
            .unwrap();
        s.delete(&|k: &str| k.starts_with("cpu,host=b#"), 5, 94)
            .unwrap();
        let f = s.files()[0].clone();
        let tomb = f.tombstone().unwrap();
        let mut again = Shard::create(1, t.path().join("again")).unwrap();
        again
            .add_file(&f.name, f.path.clone(), f.size, f.crc32c)
            .unwrap();
        let stray = TombstoneFile {
            name: "000000009-000000001.tombstone".into(),
            path: tomb.path.clone(),
            size: tomb.size,
            crc32c: tomb.crc32c,
        };
        assert!(!again.add_tombstone(stray).unwrap());
        let file = TombstoneFile {
            name: tomb.name.clone(),
            path: tomb.path.clone(),
            size: tomb.size,
            crc32c: tomb.crc32c,
        };
        assert!(again.add_tombstone(file).unwrap());
        assert_eq!(again.keys(), BTreeSet::from([b.to_string()]));
        assert_eq!(again.read(a, i64::MIN, i64::MAX).unwrap(), vec![]);
        assert_eq!(
            again.read(b, i64::MIN, i64::MAX).unwrap(),
            s.read(b, i64::MIN, i64::MAX).unwrap()
        );
        assert_eq!(again.read(b, i64::MIN, i64::MAX).unwrap().len(), 10);
        // A damaged tombstone file is refused, naming it.
        let bad = t.path().join("bad.tombstone");
        std::fs::write(&bad, b"nonsense").unwrap();
        let mut third = Shard::create(1, t.path().join("third")).unwrap();
        third
            .add_file(&f.name, f.path.clone(), f.size, f.crc32c)
            .unwrap();
        let e = third
            .add_tombstone(TombstoneFile {
                name: tomb.name.clone(),
                path: bad,
                size: 8,
                crc32c: 0,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.tombstone"), "{e}");
        // A key whose every point lies in deleted ranges (with a gap
        // holding none) is gone, even though the ranges do not cover its
        // span.
        s.delete(&|k: &str| k.starts_with("cpu,host=b#"), 0, 4)
            .unwrap();
        s.delete(&|k: &str| k.starts_with("cpu,host=b#"), 95, 99)
            .unwrap();
        assert!(s.keys().is_empty());
        assert!(s.files().is_empty(), "the file has no point left");
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_delete_that_fails_before_its_tombstones_are_renamed_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (mut s, a, _) = two_key_shard(t.path());
        assert!(s.write(a, 500, FieldValue::Float(5.0)));
        let listing = |s: &Shard| {
            let mut v: Vec<String> = std::fs::read_dir(s.dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let before = (listing(&s), s.read(a, i64::MIN, i64::MAX).unwrap());
        fail::cfg("tsdb::delete::before_tombstones_renamed", "return").unwrap();
        let r = s.delete(&|k: &str| k.starts_with("cpu,host=a#"), 0, 1000);
        fail::remove("tsdb::delete::before_tombstones_renamed");
        assert!(r.is_err());
        assert_eq!(
            (listing(&s), s.read(a, i64::MIN, i64::MAX).unwrap()),
            before
        );
        assert!(s.files()[0].tombstone().is_none());
    }

    #[test]
    fn a_key_is_gone_only_when_no_point_of_it_is_left_between_deleted_ranges() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Shard::create(1, t.path().join("1")).unwrap();
        let k = "m#!~#v";
        for ts in [0, 10, 20] {
            assert!(s.write(k, ts, FieldValue::Integer(ts)));
        }
        assert!(s.write("m#!~#w", 0, FieldValue::Integer(0)));
        s.flush().unwrap().unwrap();
        let only = |key: &'static str| move |x: &str| x == key;
        // Both ends of the block deleted, the middle point not: a read
        // tells the key stays.
        s.delete(&only(k), 0, 0).unwrap();
        s.delete(&only(k), 20, 20).unwrap();
        assert!(s.keys().contains(k));
        assert_eq!(s.read(k, i64::MIN, i64::MAX).unwrap().len(), 1);
        // The middle one too: ranges with gaps that hold no point.
        s.delete(&only(k), 10, 10).unwrap();
        assert!(!s.keys().contains(k));
        assert_eq!(s.files().len(), 1, "w is left in the file");
    }

    #[test]
    fn sorted_lists_count_their_distinct_values() {
        assert_eq!(count_union(&[&[1, 4, 9], &[], &[2, 4, 10], &[9]]), 5);
        assert_eq!(count_union(&[&[], &[3, 5]]), 2);
        assert_eq!(count_union(&[&[7], &[1, 2, 3], &[7, 8]]), 5);
        assert_eq!(count_union(&[]), 0);
    }

    #[test]
    fn series_are_counted_across_files_and_cache_without_deleted_ones() {
        let t = tempfile::tempdir().unwrap();
        let (mut s, a, _) = two_key_shard(t.path());
        // Another field of a series already filed, and a new series.
        assert!(s.write("cpu,host=a#!~#w", 1, FieldValue::Float(1.0)));
        assert!(s.write("cpu,host=c#!~#v", 1, FieldValue::Float(1.0)));
        assert_eq!(count_union(&s.view().series_lists()), 3);
        s.flush().unwrap();
        let v = s.view();
        assert_eq!(count_union(&v.series_lists()), 3);
        let mut listed = BTreeMap::new();
        v.series("cpu", &[], &mut listed);
        let want: Vec<u64> = {
            let mut h: Vec<u64> = listed
                .keys()
                .map(|k| super::super::tsm::file::series_hash(k))
                .collect();
            h.sort_unstable();
            h
        };
        let mut all: Vec<u64> = v.series_lists().concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, want);
        // A series deleted everywhere no longer counts; one with a field
        // left does.
        s.delete(&|k: &str| k == "cpu,host=b#!~#n", i64::MIN, i64::MAX)
            .unwrap();
        s.delete(&|k: &str| k == a, i64::MIN, i64::MAX).unwrap();
        assert_eq!(count_union(&s.view().series_lists()), 2);
    }

    #[test]
    fn reads_merge_files_and_cache_last_write_wins() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Shard::create(1, t.path().join("1")).unwrap();
        let k = "cpu,host=a#!~#v";
        for i in 0..10 {
            assert!(s.write(k, i, FieldValue::Float(i as f64)));
        }
        s.flush().unwrap().unwrap();
        assert!(s.write(k, 5, FieldValue::Float(55.0)));
        assert!(s.write(k, 20, FieldValue::Float(20.0)));
        s.flush().unwrap();
        assert!(s.write(k, 6, FieldValue::Float(66.0)));
        assert!(
            !s.write(k, 7, FieldValue::Integer(1)),
            "type conflict refused"
        );
        let got = s.read(k, 4, 7).unwrap();
        assert_eq!(
            got,
            vec![
                (4, FieldValue::Float(4.0)),
                (5, FieldValue::Float(55.0)),
                (6, FieldValue::Float(66.0)),
                (7, FieldValue::Float(7.0))
            ]
        );
        s.compact().unwrap();
        assert_eq!(s.files().len(), 1);
        assert_eq!(s.read(k, i64::MIN, i64::MAX).unwrap().len(), 11);
        assert_eq!(s.read(k, 5, 5).unwrap(), vec![(5, FieldValue::Float(55.0))]);
        assert_eq!(
            s.read(k, 6, 6).unwrap(),
            vec![(6, FieldValue::Float(66.0))],
            "the cache still wins"
        );
        assert_eq!(measurement_of(r"my\ m\,x,host=a#!~#v"), "my m,x");
        assert_eq!(field_of(k), "v");
    }
}
