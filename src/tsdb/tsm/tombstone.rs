//! Tombstones: the time ranges deleted from the keys of one TSM file, kept
//! beside it as `<gen>-<seq>.tombstone` in InfluxDB 1.x's v4 format, so
//! that a delete costs a small file, not a rewrite of the TSM file.
//!
//! Format (v4): the big-endian `u32` header `0x00001504`, then one or more
//! gzip members, each a run of entries `u32 key length | key | i64 min |
//! i64 max` (big-endian; `key` is a TSM key, `series#!~#field`; the range is
//! inclusive). influxd appends a member per delete; this writer writes the
//! whole set as one member into a new file that replaces the old by rename,
//! so that every version of the file is immutable (snapshots hard-link it).
//! The reader takes any number of members, and v3 files (one member) and v2
//! files (no gzip) as well.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use super::TsmError;
use super::file::WrittenFile;

const HEADER_V2: u32 = 0x1502;
const HEADER_V3: u32 = 0x1503;
const HEADER_V4: u32 = 0x1504;
/// A key longer than a TSM index allows is not a key of any file.
const MAX_KEY: usize = u16::MAX as usize;

/// The deleted ranges of each key, merged and in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    ranges: BTreeMap<String, Vec<(i64, i64)>>,
}

impl Tombstones {
    /// No key has a deleted range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many keys have a deleted range.
    pub fn keys(&self) -> usize {
        self.ranges.len()
    }

    /// Deletes `[min, max]` of `key` (an empty range is ignored).
    pub fn add(&mut self, key: &str, min: i64, max: i64) {
        if min > max {
            return;
        }
        let rs = match self.ranges.get_mut(key) {
            Some(rs) => rs,
            None => self.ranges.entry(key.to_string()).or_default(),
        };
        rs.push((min, max));
        rs.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(rs.len());
        for &(lo, hi) in rs.iter() {
            match merged.last_mut() {
                // Touching ranges join too (`hi + 1 == lo`).
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        *rs = merged;
    }

    /// The deleted ranges of `key`, in time order, not overlapping.
    pub fn ranges(&self, key: &str) -> Option<&[(i64, i64)]> {
        self.ranges.get(key).map(Vec::as_slice)
    }

    /// Whether every time in `[min, max]` of `key` is deleted.
    pub fn covers(&self, key: &str, min: i64, max: i64) -> bool {
        self.ranges(key)
            .is_some_and(|rs| rs.iter().any(|&(lo, hi)| lo <= min && max <= hi))
    }

    /// Which of `ts` (ascending) survive the deletes of `key`: `None` when
    /// all do.
    pub fn survivors(&self, key: &str, ts: &[i64]) -> Option<Vec<bool>> {
        let rs = self.ranges(key)?;
        let (lo, hi) = (ts.first()?, ts.last()?);
        if !rs.iter().any(|&(a, b)| a <= *hi && *lo <= b) {
            return None;
        }
        let mut r = 0;
        Some(
            ts.iter()
                .map(|&t| {
                    while r < rs.len() && rs[r].1 < t {
                        r += 1;
                    }
                    !(r < rs.len() && rs[r].0 <= t)
                })
                .collect(),
        )
    }

    /// Reads a tombstone file (v2, v3 or v4).
    pub fn read(path: &Path) -> Result<Self, TsmError> {
        let bad = |reason: String| TsmError::File {
            path: path.to_path_buf(),
            reason,
        };
        let data = std::fs::read(path).map_err(|source| TsmError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::decode(&data).map_err(|e| bad(format!("not a readable tombstone file: {e}")))
    }

    /// Decodes a tombstone file's bytes.
    pub fn decode(data: &[u8]) -> Result<Self, String> {
        let Some((head, body)) = data.split_first_chunk::<4>() else {
            return Err(format!("{} bytes is too short", data.len()));
        };
        let mut out = Self::default();
        match u32::from_be_bytes(*head) {
            HEADER_V2 => out.decode_entries(body)?,
            HEADER_V3 | HEADER_V4 => {
                let mut plain = Vec::new();
                flate2::read::MultiGzDecoder::new(body)
                    .read_to_end(&mut plain)
                    .map_err(|e| format!("gzip: {e}"))?;
                out.decode_entries(&plain)?;
            }
            h => return Err(format!("unknown header {h:#010x}")),
        }
        Ok(out)
    }

    fn decode_entries(&mut self, mut b: &[u8]) -> Result<(), String> {
        while !b.is_empty() {
            let Some((len, rest)) = b.split_first_chunk::<4>() else {
                return Err("entry cut inside its key length".into());
            };
            let len = u32::from_be_bytes(*len) as usize;
            if len > MAX_KEY || rest.len() < len + 16 {
                return Err(format!(
                    "entry of a {len}-byte key cut short ({} bytes left)",
                    rest.len()
                ));
            }
            let key = std::str::from_utf8(&rest[..len])
                .map_err(|_| "a key that is not UTF-8".to_string())?;
            let mut t = [0u8; 8];
            t.copy_from_slice(&rest[len..len + 8]);
            let min = i64::from_be_bytes(t);
            t.copy_from_slice(&rest[len + 8..len + 16]);
            let max = i64::from_be_bytes(t);
            self.add(key, min, max);
            b = &rest[len + 16..];
        }
        Ok(())
    }

    /// The file's bytes (v4, one gzip member).
    pub fn encode(&self) -> Result<Vec<u8>, std::io::Error> {
        let mut out = HEADER_V4.to_be_bytes().to_vec();
        let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
        for (key, rs) in &self.ranges {
            for &(min, max) in rs {
                gz.write_all(&(key.len() as u32).to_be_bytes())?;
                gz.write_all(key.as_bytes())?;
                gz.write_all(&min.to_be_bytes())?;
                gz.write_all(&max.to_be_bytes())?;
            }
        }
        gz.finish()?;
        Ok(out)
    }

    /// Writes the set at `path` (a new file, fsynced; an existing file is
    /// not replaced: see [`Tombstones::write_aside`]).
    pub fn write(&self, path: &Path) -> Result<WrittenFile, TsmError> {
        self.write_new(path, true)
    }

    fn write_new(&self, path: &Path, sync: bool) -> Result<WrittenFile, TsmError> {
        let io = |op: &'static str| {
            move |source: std::io::Error| TsmError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        let bytes = self.encode().map_err(io("encode"))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io("create"))?;
        // From here the file is ours: a failure removes it.
        let done = (|| -> Result<(), TsmError> {
            f.write_all(&bytes).map_err(io("write"))?;
            if sync {
                f.sync_all().map_err(io("fsync"))?;
            }
            Ok(())
        })();
        if let Err(e) = done {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(WrittenFile {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        })
    }

    /// Writes the set beside `path` (as `path` + `.tmp`), to be put in
    /// place with [`AsideFile::commit`]. Not fsynced: a shard's live files
    /// are rebuilt from the last snapshot and the log at startup, and a
    /// snapshot that links the file fsyncs it when it is saved.
    pub fn write_aside(&self, path: &Path) -> Result<AsideFile, TsmError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let written = self.write_new(&tmp, false)?;
        Ok(AsideFile {
            tmp,
            path: path.to_path_buf(),
            size: written.size,
            crc32c: written.crc32c,
        })
    }
}

/// A tombstone file written beside the one it replaces.
#[derive(Debug)]
pub struct AsideFile {
    tmp: std::path::PathBuf,
    /// Where it goes.
    pub path: std::path::PathBuf,
    /// Its size.
    pub size: u64,
    /// Its crc32c.
    pub crc32c: u32,
}

impl AsideFile {
    /// Renames it over its place (a hard link to the file it replaces, as
    /// a snapshot holds, keeps the old contents).
    pub fn commit(self) -> Result<(), TsmError> {
        std::fs::rename(&self.tmp, &self.path).map_err(|source| TsmError::Io {
            op: "rename",
            path: self.tmp.clone(),
            source,
        })
    }

    /// Removes it.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// The tombstone file's name for a TSM file's (`<stem>.tsm` →
/// `<stem>.tombstone`, as influxd names it).
pub fn tombstone_name(tsm_name: &str) -> String {
    format!(
        "{}.tombstone",
        tsm_name.strip_suffix(".tsm").unwrap_or(tsm_name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_survivors_follow_them() {
        let mut t = Tombstones::default();
        t.add("k", 10, 20);
        t.add("k", 21, 25);
        t.add("k", 40, 50);
        t.add("k", 5, 12);
        t.add("k", 9, 1); // empty: ignored
        assert_eq!(t.ranges("k").unwrap(), &[(5, 25), (40, 50)]);
        assert!(t.covers("k", 6, 25));
        assert!(!t.covers("k", 20, 40));
        assert!(!t.covers("j", 0, 0));
        assert_eq!(
            t.survivors("k", &[1, 5, 30, 45, 51]),
            Some(vec![true, false, true, false, true])
        );
        assert_eq!(t.survivors("k", &[26, 30]), None);
        assert_eq!(t.survivors("j", &[1]), None);
    }

    #[test]
    fn a_file_round_trips_and_influxds_appended_members_read() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tombstones::default();
        t.add("cpu,host=a#!~#v", i64::MIN, i64::MAX);
        t.add("cpu,host=b#!~#v", 3, 9);
        let w = t.write(&d.path().join("1.tombstone")).unwrap();
        let bytes = std::fs::read(&w.path).unwrap();
        assert_eq!(w.size, bytes.len() as u64);
        assert_eq!(w.crc32c, crc32c::crc32c(&bytes));
        assert_eq!(&bytes[..4], &[0, 0, 0x15, 0x04]);
        assert_eq!(Tombstones::read(&w.path).unwrap(), t);
        // influxd appends one gzip member per delete.
        let mut more = Tombstones::default();
        more.add("mem#!~#x", 1, 2);
        let extra = more.encode().unwrap();
        let mut both = bytes.clone();
        both.extend_from_slice(&extra[4..]);
        let read = Tombstones::decode(&both).unwrap();
        assert_eq!(read.keys(), 3);
        assert!(read.covers("mem#!~#x", 1, 2));
        // v2: no gzip.
        let mut v2 = 0x1502u32.to_be_bytes().to_vec();
        v2.extend_from_slice(&3u32.to_be_bytes());
        v2.extend_from_slice(b"a#b");
        v2.extend_from_slice(&1i64.to_be_bytes());
        v2.extend_from_slice(&2i64.to_be_bytes());
        assert!(Tombstones::decode(&v2).unwrap().covers("a#b", 1, 2));
        // An existing file is not replaced by `write`.
        assert!(t.write(&w.path).is_err());
        assert_eq!(std::fs::read(&w.path).unwrap(), bytes);
    }

    /// A file influxd 1.6.7 wrote (`DELETE FROM cpu WHERE host='h1' AND
    /// time < 1000s`, then `DROP SERIES FROM cpu WHERE host='h0'`): one
    /// gzip member per delete.
    const INFLUXD_V4: &str = "000015041f8b08000000000000ff62606010482e28d5c9c82f2eb1cd305456ac532e6b608083175796f2ff07040000ffff04407742240000001f8b08000000000000ff62606010482e28d5c9c82f2eb1cd305056ac532e6b608080faff1000080000ffff726fb98624000000";

    #[test]
    fn a_file_influxd_wrote_reads() {
        let bytes: Vec<u8> = (0..INFLUXD_V4.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&INFLUXD_V4[i..i + 2], 16).unwrap())
            .collect();
        let t = Tombstones::decode(&bytes).unwrap();
        assert_eq!(t.keys(), 2);
        assert_eq!(
            t.ranges("cpu,host=h1#!~#v").unwrap(),
            &[(i64::MIN, 999_999_999_999)]
        );
        assert_eq!(
            t.ranges("cpu,host=h0#!~#v").unwrap(),
            &[(i64::MIN, i64::MAX)]
        );
    }

    #[test]
    fn damaged_files_are_refused_naming_the_damage() {
        let mut t = Tombstones::default();
        t.add("k", 1, 2);
        let good = t.encode().unwrap();
        for (bytes, what) in [
            (vec![0u8; 2], "too short"),
            (vec![0, 0, 0x99, 0x99], "unknown header"),
            (good[..good.len() - 3].to_vec(), "gzip"),
        ] {
            let e = Tombstones::decode(&bytes).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
        let mut v2 = 0x1502u32.to_be_bytes().to_vec();
        v2.extend_from_slice(&100u32.to_be_bytes());
        v2.extend_from_slice(b"short");
        assert!(Tombstones::decode(&v2).unwrap_err().contains("cut short"));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.tombstone");
        std::fs::write(&p, [1, 2, 3, 4, 5]).unwrap();
        let e = Tombstones::read(&p).unwrap_err().to_string();
        assert!(
            e.contains("x.tombstone") && e.contains("unknown header"),
            "{e}"
        );
    }

    #[test]
    fn an_aside_file_replaces_the_old_one_only_when_committed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("1-1.tombstone");
        let mut t = Tombstones::default();
        t.add("k", 1, 2);
        t.write(&p).unwrap();
        let link = d.path().join("snapshot-link");
        std::fs::hard_link(&p, &link).unwrap();
        t.add("k", 5, 6);
        let aside = t.write_aside(&p).unwrap();
        assert_eq!(Tombstones::read(&p).unwrap().ranges("k").unwrap().len(), 1);
        aside.commit().unwrap();
        assert_eq!(Tombstones::read(&p).unwrap(), t);
        // The hard link (a snapshot's) keeps the old contents.
        assert_eq!(
            Tombstones::read(&link).unwrap().ranges("k").unwrap().len(),
            1
        );
        let aside = t.write_aside(&p).unwrap();
        aside.abandon();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
        assert_eq!(
            tombstone_name("000000001-000000002.tsm"),
            "000000001-000000002.tombstone"
        );
    }
}
