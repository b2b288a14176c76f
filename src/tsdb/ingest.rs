//! Bulk data by file, on the time-series side: TSM files are validated on
//! the node that received them (index, every block's CRC and encoding, keys
//! and field types against the shard's), staged, fetched by the other
//! replicas, and linked into the shard by one `IngestFiles` command.
//!
//! Overlap rule: an ingested file is newer than everything the shard held
//! when the command applied (its points overwrite older points at the same
//! series, field and time, as a write would), and points written later
//! overwrite the ingested ones (the cache and later flushes are newer).

use std::collections::HashMap;
use std::path::Path;

use prost::Message as _;

use super::line_protocol::{MAX_KEY_LENGTH, check_time};
use super::shard::measurement_of;
use super::tsm::{BlockType, KEY_FIELD_SEPARATOR, TsmReader};
use crate::proto::tsdb::{self as pb, command::Cmd};
use crate::snapshot::{FileMeta, StagedNeed, StagedSet};

/// What validation found in one TSM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    /// Values it holds.
    pub values: u64,
    /// Its first timestamp.
    pub min_time: i64,
    /// Its last timestamp.
    pub max_time: i64,
    /// Its keys and their types.
    pub keys: Vec<(String, BlockType)>,
}

/// InfluxDB's message for a field whose type differs from the one stored.
pub fn type_conflict(key: &str, new: BlockType, old: BlockType) -> String {
    let (series, field) = super::tsm::split_key(key);
    format!(
        "field type conflict: input field \"{field}\" on series \"{series}\" is type {}, already exists as type {}",
        new.type_name(),
        old.type_name()
    )
}

/// Reads a whole TSM file: its index, every block (CRC checked and
/// decoded, timestamps inside the block's index entry and InfluxDB's time
/// range), and every key (a series key and a field, within InfluxDB's
/// length limit). Errors name the file, key or block.
pub fn check_tsm(path: &Path) -> Result<CheckedFile, String> {
    let r = TsmReader::open(path).map_err(|e| e.to_string())?;
    let mut out = CheckedFile {
        values: 0,
        min_time: i64::MAX,
        max_time: i64::MIN,
        keys: Vec::new(),
    };
    for (key, t) in r.keys() {
        let valid = key.len() <= MAX_KEY_LENGTH
            && key
                .rsplit_once(KEY_FIELD_SEPARATOR)
                .is_some_and(|(s, f)| !f.is_empty() && f != "time" && !s.is_empty())
            && !measurement_of(key).is_empty();
        if !valid {
            return Err(format!("key {key:?} is not a series key and a field"));
        }
        for e in r.entries(key).unwrap_or_default() {
            let (ts, v) = r.read_block(e).map_err(|e| e.to_string())?;
            if v.block_type() != t {
                return Err(format!(
                    "key {key:?}: a {:?} block in a {t:?} key",
                    v.block_type()
                ));
            }
            let (Some(first), Some(last)) = (ts.first(), ts.last()) else {
                return Err(format!("key {key:?}: an empty block"));
            };
            if *first < e.min_time || *last > e.max_time || ts.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "key {key:?}: block timestamps out of order or outside its index entry"
                ));
            }
            check_time(*first)
                .and_then(|_| check_time(*last))
                .map_err(|e| format!("key {key:?}: {e}"))?;
            out.min_time = out.min_time.min(*first);
            out.max_time = out.max_time.max(*last);
            out.values += ts.len() as u64;
        }
        out.keys.push((key.to_string(), t));
    }
    if out.keys.is_empty() {
        return Err("the file holds no keys".into());
    }
    Ok(out)
}

/// Checks the files' keys against each other (one type per measurement
/// field) and against `stored` (the type a key, or its measurement's
/// field, holds in the target shard): the first conflict, in InfluxDB's
/// words.
pub fn check_types<'a>(
    files: impl IntoIterator<Item = &'a [(String, BlockType)]>,
    stored: impl Fn(&str) -> Option<BlockType>,
) -> Result<(), String> {
    // A field has one type per measurement in a shard, as in influxd.
    let mut seen: HashMap<(&str, &str), BlockType> = HashMap::new();
    for keys in files {
        for (k, t) in keys {
            let (series, field) = super::tsm::split_key(k);
            let at = (super::shard::measurement_part(series), field);
            let old = seen.get(&at).copied().or_else(|| stored(k));
            match old {
                Some(old) if old != *t => return Err(type_conflict(k, *t, old)),
                Some(_) => {}
                None => {
                    seen.insert(at, *t);
                }
            }
        }
    }
    Ok(())
}

/// The command that ingests a staged set whose files were checked
/// (`checked`, in the set's order).
pub fn command(
    set: &StagedSet,
    checked: &[CheckedFile],
    db: &str,
    rp: &str,
    shard_id: u64,
    holders: Vec<u64>,
) -> pb::Command {
    let files = set
        .files()
        .iter()
        .zip(checked)
        .map(|(f, c)| pb::IngestFile {
            name: f.name.clone(),
            size: f.size,
            crc32c: f.crc32c,
            min_time: c.min_time,
            max_time: c.max_time,
            values: c.values,
        })
        .collect();
    super::fsm::command(Cmd::IngestFiles(pb::IngestFiles {
        staging_id: set.id,
        db: db.to_string(),
        rp: rp.to_string(),
        shard_id,
        files,
        holders,
    }))
}

/// The first byte of an encoded `IngestFiles` command (field 11, length
/// delimited).
const INGEST_TAG: u8 = (11 << 3) | 2;

/// The staged set an encoded command needs, if it is an ingest.
pub fn staged_need(bytes: &[u8]) -> Option<StagedNeed> {
    if bytes.first() != Some(&INGEST_TAG) {
        return None;
    }
    let Ok(pb::Command {
        cmd: Some(Cmd::IngestFiles(c)),
    }) = pb::Command::decode(bytes)
    else {
        return None;
    };
    Some(StagedNeed {
        id: c.staging_id,
        files: files_of(&c),
        holders: c.holders,
    })
}

/// The staged files an ingest names.
pub fn files_of(c: &pb::IngestFiles) -> Vec<FileMeta> {
    c.files
        .iter()
        .map(|f| FileMeta {
            name: f.name.clone(),
            size: f.size,
            crc32c: f.crc32c,
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::tsm::{TsmWriter, Values};

    #[test]
    fn the_tag_byte_finds_ingests_only() {
        let c = super::super::fsm::command(Cmd::IngestFiles(pb::IngestFiles {
            staging_id: 1 << 63 | 5,
            holders: vec![2, 1],
            files: vec![pb::IngestFile {
                name: "a.tsm".into(),
                size: 9,
                crc32c: 7,
                ..Default::default()
            }],
            ..Default::default()
        }))
        .encode_to_vec();
        let need = staged_need(&c).unwrap();
        assert_eq!(
            (need.id, need.holders.as_slice()),
            (1 << 63 | 5, &[2, 1][..])
        );
        assert_eq!((need.files[0].size, need.files[0].crc32c), (9, 7));
        let w = super::super::fsm::command(Cmd::CreateDatabase(pb::CreateDatabase {
            name: "x".into(),
        }))
        .encode_to_vec();
        assert!(staged_need(&w).is_none());
        assert!(staged_need(&[INGEST_TAG, 0xff]).is_none());
    }

    #[test]
    fn files_are_read_whole_and_types_must_agree() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.tsm");
        let mut w = TsmWriter::create(&p).unwrap();
        w.write(
            "m,h=a#!~#v",
            &[1, 2, 3],
            &Values::Float(vec![1.0, 2.0, 3.0]),
        )
        .unwrap();
        w.write("m,h=b#!~#n", &[5], &Values::Integer(vec![5]))
            .unwrap();
        w.finish().unwrap();
        let c = check_tsm(&p).unwrap();
        assert_eq!((c.values, c.min_time, c.max_time), (4, 1, 5));
        assert!(check_types([c.keys.as_slice()], |_| None).is_ok());
        let e = check_types([c.keys.as_slice()], |k| {
            (k == "m,h=b#!~#n").then_some(BlockType::Float)
        })
        .unwrap_err();
        assert_eq!(
            e,
            "field type conflict: input field \"n\" on series \"m,h=b\" is type integer, already exists as type float"
        );
        // A flipped byte in a block fails its CRC; the error names it.
        let mut b = std::fs::read(&p).unwrap();
        b[8] ^= 0x40;
        std::fs::write(&p, b).unwrap();
        let e = check_tsm(&p).unwrap_err();
        assert!(e.contains("CRC") || e.contains("crc"), "{e}");
    }
}
