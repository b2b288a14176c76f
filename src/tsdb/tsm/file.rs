//! TSM file writer and reader.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{BlockType, MAX_POINTS_PER_BLOCK, TsmError, Values, decode_block, encode_block};
use crate::snapshot::CrcSink;

const MAGIC: u32 = 0x16D1_16D1;
const VERSION: u8 = 1;
const HEADER: u64 = 5;
const FOOTER: u64 = 8;
const INDEX_ENTRY: usize = 28;

/// Where one block of a key lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// First timestamp.
    pub min_time: i64,
    /// Last timestamp.
    pub max_time: i64,
    /// Offset of the block's CRC.
    pub offset: u64,
    /// Bytes of CRC + block.
    pub size: u32,
}

/// A finished TSM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// crc32c of the whole file (for snapshot meta tables).
    pub crc32c: u32,
}

/// Writes a TSM file; keys must come in ascending order, each key once.
/// A writer dropped without a successful [`finish`](Self::finish) removes
/// its file, so a failed write never leaves a half-written file behind.
pub struct TsmWriter {
    path: PathBuf,
    out: Option<CrcSink<BufWriter<File>>>,
    offset: u64,
    index: Vec<(String, BlockType, Vec<IndexEntry>)>,
}

impl Drop for TsmWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TsmError + 'a {
    move |source| TsmError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl TsmWriter {
    /// Creates `path` (which must not exist) and writes the header.
    pub fn create(path: &Path) -> Result<Self, TsmError> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io("create", path))?;
        let mut out = CrcSink::new(BufWriter::with_capacity(1 << 20, f));
        out.write_all(&MAGIC.to_be_bytes())
            .map_err(io("write", path))?;
        out.write_all(&[VERSION]).map_err(io("write", path))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: Some(out),
            offset: HEADER,
            index: Vec::new(),
        })
    }

    /// Writes every point of `key` (ascending, distinct timestamps), in
    /// blocks of at most 1000.
    pub fn write(&mut self, key: &str, ts: &[i64], values: &Values) -> Result<(), TsmError> {
        if key.is_empty() || key.len() > u16::MAX as usize {
            return Err(TsmError::Encode(format!("key of {} bytes", key.len())));
        }
        if ts.len() != values.len() {
            return Err(TsmError::Encode(format!(
                "key {key:?}: {} timestamps but {} values",
                ts.len(),
                values.len()
            )));
        }
        if self.index.last().is_some_and(|(k, _, _)| k.as_str() >= key) {
            return Err(TsmError::Encode(format!(
                "key {key:?} is not after the previous key"
            )));
        }
        let mut entries = Vec::new();
        let mut i = 0;
        while i < ts.len() {
            let end = (i + MAX_POINTS_PER_BLOCK).min(ts.len());
            let block = encode_block(&ts[i..end], &values.slice(i..end))?;
            let crc = crc32fast::hash(&block);
            let out = self.sink()?;
            out.write_all(&crc.to_be_bytes())
                .and_then(|()| out.write_all(&block))
                .map_err(io("write", &self.path))?;
            let size = 4 + block.len() as u64;
            entries.push(IndexEntry {
                min_time: ts[i],
                max_time: ts[end - 1],
                offset: self.offset,
                size: u32::try_from(size)
                    .map_err(|_| TsmError::Encode("block over 4 GiB".into()))?,
            });
            self.offset += size;
            i = end;
        }
        if entries.len() > u16::MAX as usize {
            return Err(TsmError::Encode(format!(
                "key {key:?} has more than 65535 blocks"
            )));
        }
        if !entries.is_empty() {
            self.index
                .push((key.to_string(), values.block_type(), entries));
        }
        Ok(())
    }

    fn finished(&self) -> TsmError {
        TsmError::File {
            path: self.path.clone(),
            reason: "writer already finished".into(),
        }
    }

    fn sink(&mut self) -> Result<&mut CrcSink<BufWriter<File>>, TsmError> {
        let err = self.finished();
        self.out.as_mut().ok_or(err)
    }

    /// Writes the index and footer, fsyncs; returns the file's size and crc32c.
    pub fn finish(mut self) -> Result<WrittenFile, TsmError> {
        let index_at = self.offset;
        let mut buf = Vec::new();
        for (key, typ, entries) in &self.index {
            buf.extend_from_slice(&(key.len() as u16).to_be_bytes());
            buf.extend_from_slice(key.as_bytes());
            buf.push(*typ as u8);
            buf.extend_from_slice(&(entries.len() as u16).to_be_bytes());
            for e in entries {
                buf.extend_from_slice(&e.min_time.to_be_bytes());
                buf.extend_from_slice(&e.max_time.to_be_bytes());
                buf.extend_from_slice(&e.offset.to_be_bytes());
                buf.extend_from_slice(&e.size.to_be_bytes());
            }
        }
        buf.extend_from_slice(&index_at.to_be_bytes());
        self.sink()?
            .write_all(&buf)
            .map_err(io("write", &self.path))?;
        let Some(out) = self.out.take() else {
            return Err(self.finished());
        };
        let (w, size, crc32c) = out.finish();
        // From here a failure must still remove the file: put nothing back
        // into `self.out`, remove it by hand.
        let done = w
            .into_inner()
            .map_err(|e| TsmError::Io {
                op: "write",
                path: self.path.clone(),
                source: e.into_error(),
            })
            .and_then(|f| f.sync_all().map_err(io("fsync", &self.path)));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&self.path);
            return Err(e);
        }
        Ok(WrittenFile {
            path: self.path.clone(),
            size,
            crc32c,
        })
    }
}

/// Part of the error a read of a block that fails its CRC gives (readers of
/// query results look for it to report the damage for repair).
pub const BLOCK_CRC_FAILURE: &str = "fails its CRC";

/// Reads a TSM file: the index is loaded at open, blocks on demand.
#[derive(Debug)]
pub struct TsmReader {
    path: PathBuf,
    file: File,
    index: Vec<(String, BlockType, Vec<IndexEntry>)>,
    /// The series index of the keys, built on first use.
    key_index: std::sync::OnceLock<crate::tsdb::key_index::KeyIndex>,
    /// Hashes of its distinct series, sorted (built on first use).
    series_hashes: std::sync::OnceLock<Vec<u64>>,
    /// The first and last times of every block, found as the index is read.
    time_range: Option<(i64, i64)>,
}

impl TsmReader {
    /// Opens and validates the header, footer and index.
    pub fn open(path: &Path) -> Result<Self, TsmError> {
        let bad = |reason: String| TsmError::File {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(io("open", path))?;
        let len = file.metadata().map_err(io("stat", path))?.len();
        if len < HEADER + FOOTER {
            return Err(bad(format!("{len} bytes is too short for a TSM file")));
        }
        let mut head = [0u8; 5];
        file.read_exact_at(&mut head, 0).map_err(io("read", path))?;
        if u32::from_be_bytes([head[0], head[1], head[2], head[3]]) != MAGIC {
            return Err(bad("not a TSM file (bad magic)".into()));
        }
        if head[4] != VERSION {
            return Err(bad(format!("unsupported TSM version {}", head[4])));
        }
        let mut foot = [0u8; 8];
        file.read_exact_at(&mut foot, len - FOOTER)
            .map_err(io("read", path))?;
        let index_at = u64::from_be_bytes(foot);
        if index_at < HEADER || index_at > len - FOOTER {
            return Err(bad(format!(
                "index offset {index_at} outside the file ({len} bytes)"
            )));
        }
        let ilen =
            usize::try_from(len - FOOTER - index_at).map_err(|_| bad("index too large".into()))?;
        let mut idx = vec![0u8; ilen];
        file.read_exact_at(&mut idx, index_at)
            .map_err(io("read", path))?;
        let mut index = Vec::new();
        let mut i = 0;
        let take = |i: &mut usize, n: usize| -> Result<std::ops::Range<usize>, TsmError> {
            let r = *i..i
                .checked_add(n)
                .filter(|e| *e <= ilen)
                .ok_or_else(|| bad("index truncated".into()))?;
            *i = r.end;
            Ok(r)
        };
        while i < ilen {
            let r = take(&mut i, 2)?;
            let klen = u16::from_be_bytes([idx[r.start], idx[r.start + 1]]) as usize;
            let key = String::from_utf8(idx[take(&mut i, klen)?].to_vec())
                .map_err(|_| bad("key is not UTF-8".into()))?;
            let r = take(&mut i, 3)?;
            let typ = BlockType::from_u8(idx[r.start]).map_err(|e| bad(e.to_string()))?;
            let count = u16::from_be_bytes([idx[r.start + 1], idx[r.start + 2]]) as usize;
            if count == 0 {
                return Err(bad(format!("key {key:?} has no blocks")));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let e = &idx[take(&mut i, INDEX_ENTRY)?];
                let g = |a: usize| u64::from_be_bytes(e[a..a + 8].try_into().unwrap_or_default());
                let entry = IndexEntry {
                    min_time: g(0) as i64,
                    max_time: g(8) as i64,
                    offset: g(16),
                    size: u32::from_be_bytes(e[24..28].try_into().unwrap_or_default()),
                };
                if entry.size < 5
                    || entry.offset < HEADER
                    || entry
                        .offset
                        .checked_add(u64::from(entry.size))
                        .is_none_or(|end| end > index_at)
                {
                    return Err(bad(format!(
                        "block of {key:?} at {} (+{}) lies outside the data",
                        entry.offset, entry.size
                    )));
                }
                entries.push(entry);
            }
            if index
                .last()
                .is_some_and(|(k, _, _): &(String, BlockType, Vec<IndexEntry>)| k >= &key)
            {
                return Err(bad(format!("index keys out of order at {key:?}")));
            }
            index.push((key, typ, entries));
        }
        let time_range =
            index
                .iter()
                .flat_map(|(_, _, entries)| entries)
                .fold(None, |acc, e: &IndexEntry| match acc {
                    None => Some((e.min_time, e.max_time)),
                    Some((lo, hi)) => Some((lo.min(e.min_time), hi.max(e.max_time))),
                });
        Ok(Self {
            path: path.to_path_buf(),
            file,
            index,
            key_index: std::sync::OnceLock::new(),
            series_hashes: std::sync::OnceLock::new(),
            time_range,
        })
    }

    /// Every key with its type, in order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, BlockType)> {
        self.index.iter().map(|(k, t, _)| (k.as_str(), *t))
    }

    /// The series index of the file's keys (built on the first call).
    pub fn key_index(&self) -> &crate::tsdb::key_index::KeyIndex {
        self.key_index.get_or_init(|| {
            crate::tsdb::key_index::KeyIndex::build(
                self.index
                    .iter()
                    .map(|(k, t, _)| (k.as_str(), t.type_name())),
            )
        })
    }

    /// Hashes of the distinct series of its keys, sorted ([`series_hashes`]).
    pub fn series_hashes(&self) -> &[u64] {
        self.series_hashes
            .get_or_init(|| series_hashes(self.index.iter().map(|(k, _, _)| k.as_str())))
    }

    /// The key at `ordinal` in the file's key order.
    pub fn key_at(&self, ordinal: u32) -> Option<&str> {
        self.index.get(ordinal as usize).map(|(k, _, _)| k.as_str())
    }

    /// The first and last times of every block in the file (`None` when
    /// it holds none).
    pub fn time_range(&self) -> Option<(i64, i64)> {
        self.time_range
    }

    /// The blocks of `key`.
    pub fn entries(&self, key: &str) -> Option<&[IndexEntry]> {
        self.index
            .binary_search_by(|(k, _, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.index[i].2.as_slice())
    }

    /// Reads one block, checking its CRC.
    pub fn read_block(&self, e: &IndexEntry) -> Result<(Vec<i64>, Values), TsmError> {
        let mut buf = vec![0u8; e.size as usize];
        self.file
            .read_exact_at(&mut buf, e.offset)
            .map_err(io("read", &self.path))?;
        let stored = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let actual = crc32fast::hash(&buf[4..]);
        if stored != actual {
            return Err(TsmError::File {
                path: self.path.clone(),
                reason: format!(
                    "block at {} {BLOCK_CRC_FAILURE} ({stored:#010x} stored, {actual:#010x} computed)",
                    e.offset
                ),
            });
        }
        decode_block(&buf[4..]).map_err(|err| TsmError::File {
            path: self.path.clone(),
            reason: format!("block at {}: {err}", e.offset),
        })
    }

    /// Every point of `key`.
    pub fn read(&self, key: &str) -> Result<Option<(Vec<i64>, Values)>, TsmError> {
        let Some(entries) = self.entries(key) else {
            return Ok(None);
        };
        let mut out: Option<(Vec<i64>, Values)> = None;
        for e in entries {
            let (ts, vals) = self.read_block(e)?;
            match &mut out {
                None => out = Some((ts, vals)),
                Some((t, v)) => {
                    t.extend(ts);
                    v.extend(vals)?;
                }
            }
        }
        Ok(out)
    }
}

/// A series' 64-bit hash (the part of a TSM key before `#!~#`).
pub fn series_hash(series: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write(series.as_bytes());
    h.finish()
}

/// The sorted, distinct hashes of the series of `keys`: what counting
/// series across files and cache segments takes, without a string.
pub fn series_hashes<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<u64> {
    let mut last: Option<&str> = None;
    let mut out = Vec::new();
    for k in keys {
        let series = k.split(super::KEY_FIELD_SEPARATOR).next().unwrap_or(k);
        if last != Some(series) {
            out.push(series_hash(series));
            last = Some(series);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(dir: &Path) -> (PathBuf, Vec<(String, Vec<i64>, Values)>) {
        let series: Vec<(String, Vec<i64>, Values)> = vec![
            (
                "cpu,host=a#!~#b".into(),
                (0..3).collect(),
                Values::Boolean(vec![true, false, true]),
            ),
            (
                "cpu,host=a#!~#f".into(),
                (0..2500)
                    .map(|i| 1_600_000_000_000_000_000 + i * 1_000_000_000)
                    .collect(),
                Values::Float((0..2500).map(|i| i as f64 / 3.0).collect()),
            ),
            (
                "cpu,host=a#!~#i".into(),
                vec![-5, 0, 5],
                Values::Integer(vec![i64::MIN, 0, i64::MAX]),
            ),
            (
                "cpu,host=a#!~#s".into(),
                vec![1],
                Values::String(vec!["héllo".into()]),
            ),
            (
                "cpu,host=a#!~#u".into(),
                vec![1, 2],
                Values::Unsigned(vec![0, u64::MAX]),
            ),
        ];
        let p = dir.join("000000001-000000001.tsm");
        let mut w = TsmWriter::create(&p).unwrap();
        for (k, t, v) in &series {
            w.write(k, t, v).unwrap();
        }
        let f = w.finish().unwrap();
        assert_eq!(f.size, std::fs::metadata(&p).unwrap().len());
        assert_eq!(f.crc32c, crate::snapshot::fsutil_crc(&p));
        (p, series)
    }

    #[test]
    fn write_then_read_every_type() {
        let t = tempfile::tempdir().unwrap();
        let (p, series) = sample(t.path());
        let r = TsmReader::open(&p).unwrap();
        assert_eq!(r.keys().count(), 5);
        assert_eq!(
            r.entries("cpu,host=a#!~#f").unwrap().len(),
            3,
            "2500 points = 3 blocks of ≤1000"
        );
        for (k, ts, vals) in series {
            assert_eq!(r.read(&k).unwrap().unwrap(), (ts, vals), "{k}");
        }
        assert!(r.read("nope").unwrap().is_none());
    }

    #[test]
    fn an_unfinished_writer_leaves_no_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("000000001-000000001.tsm");
        let mut w = TsmWriter::create(&p).unwrap();
        w.write("a", &[1], &Values::Float(vec![1.0])).unwrap();
        assert!(w.write("b", &[1], &Values::Float(vec![f64::NAN])).is_err());
        assert!(p.exists());
        drop(w);
        assert!(!p.exists(), "a failed write left a half-written file");
        // The same name can be written again (a flush retried).
        let mut w = TsmWriter::create(&p).unwrap();
        w.write("a", &[1], &Values::Float(vec![1.0])).unwrap();
        let f = w.finish().unwrap();
        assert!(f.path.exists());
    }

    #[test]
    fn the_writer_refuses_bad_input() {
        let t = tempfile::tempdir().unwrap();
        let mut w = TsmWriter::create(&t.path().join("x.tsm")).unwrap();
        assert!(w.write("b", &[1], &Values::Float(vec![f64::NAN])).is_err());
        w.write("b", &[1], &Values::Float(vec![1.0])).unwrap();
        assert!(
            w.write("a", &[1], &Values::Float(vec![1.0])).is_err(),
            "keys out of order"
        );
        assert!(
            w.write("c", &[2, 1], &Values::Float(vec![1.0, 2.0]))
                .is_err(),
            "unsorted"
        );
        assert!(
            w.write("d", &[1, 2], &Values::Float(vec![1.0])).is_err(),
            "length mismatch"
        );
    }

    #[test]
    fn truncation_bad_crcs_and_bad_offsets_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let (p, _) = sample(t.path());
        let good = std::fs::read(&p).unwrap();
        let check = |bytes: &[u8]| -> Result<(), TsmError> {
            let q = t.path().join("bad.tsm");
            std::fs::write(&q, bytes).unwrap();
            let r = TsmReader::open(&q)?;
            let keys: Vec<String> = r.keys().map(|(k, _)| k.to_string()).collect();
            for k in keys {
                r.read(&k)?;
            }
            Ok(())
        };
        check(&good).unwrap();
        for cut in [0, 4, 5, 12, good.len() / 2, good.len() - 9, good.len() - 1] {
            assert!(check(&good[..cut]).is_err(), "truncated at {cut}");
        }
        // A flipped byte in a block: its CRC catches it.
        let mut b = good.clone();
        b[40] ^= 1;
        let e = check(&b).unwrap_err();
        assert!(e.to_string().contains("CRC"), "{e}");
        // A footer pointing past the file, and into the header.
        let n = good.len();
        let mut b = good.clone();
        b[n - 8..].copy_from_slice(&(n as u64 * 2).to_be_bytes());
        assert!(check(&b).is_err());
        let mut b = good.clone();
        b[n - 8..].copy_from_slice(&1u64.to_be_bytes());
        assert!(check(&b).is_err());
    }

    proptest! {
        #[test]
        fn the_reader_never_panics_on_mangled_files(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
            let t = tempfile::tempdir().unwrap();
            let (p, _) = sample(t.path());
            let mut b = std::fs::read(&p).unwrap();
            for (at, x) in flips {
                let n = b.len();
                b[at % n] ^= x;
            }
            let n = b.len();
            b.truncate(n - cut % 16);
            let q = t.path().join("m.tsm");
            std::fs::write(&q, &b).unwrap();
            if let Ok(r) = TsmReader::open(&q) {
                let keys: Vec<String> = r.keys().map(|(k, _)| k.to_string()).collect();
                for k in keys {
                    let _ = r.read(&k);
                }
            }
        }
    }
}
