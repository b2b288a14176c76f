//! The meta table file `__raft_snapshot_meta` (DESIGN §2).
//!
//! Layout: `b"RSNAPMT1"` | u32 payload length (big-endian) | payload (prost
//! `SnapshotMetaTable`) | u32 crc32c of the payload (big-endian).
//!
//! Decoding checks the framing, the crc, the protobuf, and every file name, so
//! a table that decodes names only safe relative paths, each once.

use std::collections::HashSet;
use std::path::Path;

use prost::Message;

use crate::proto::snapshot::{SnapshotMeta, SnapshotMetaTable};
use crate::snapshot::error::{IoContext, MetaTableError, SnapshotError};

/// The file name of the meta table inside a snapshot directory.
pub const META_FILE: &str = "__raft_snapshot_meta";
/// The magic bytes at the start of a meta table.
pub const MAGIC: &[u8; 8] = b"RSNAPMT1";
/// Magic + length + crc.
pub const FRAMING_BYTES: usize = 8 + 4 + 4;
/// The largest meta table we read (a table of a million files is ~60 MiB).
pub const MAX_META_TABLE_BYTES: u64 = 256 << 20;

/// Encodes a table into its on-disk bytes.
pub fn encode(table: &SnapshotMetaTable) -> Vec<u8> {
    let payload = table.encode_to_vec();
    let mut out = Vec::with_capacity(payload.len() + FRAMING_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out
}

/// Decodes and validates a table from its on-disk bytes.
pub fn decode(bytes: &[u8]) -> Result<SnapshotMetaTable, MetaTableError> {
    if bytes.len() < FRAMING_BYTES {
        return Err(MetaTableError::TooShort {
            len: bytes.len(),
            min: FRAMING_BYTES,
        });
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&bytes[..8]);
    if &magic != MAGIC {
        return Err(MetaTableError::BadMagic { found: magic });
    }
    let declared = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as u64;
    let actual = (bytes.len() - FRAMING_BYTES) as u64;
    if declared != actual {
        return Err(MetaTableError::LengthMismatch { declared, actual });
    }
    let payload = &bytes[12..bytes.len() - 4];
    let tail = &bytes[bytes.len() - 4..];
    let stored = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crc32c::crc32c(payload);
    if stored != computed {
        return Err(MetaTableError::CrcMismatch { stored, computed });
    }
    let table =
        SnapshotMetaTable::decode(payload).map_err(|e| MetaTableError::Decode(e.to_string()))?;
    validate(&table)?;
    Ok(table)
}

/// Checks a decoded table: meta present, index > 0, file names valid and unique.
pub fn validate(table: &SnapshotMetaTable) -> Result<(), MetaTableError> {
    let meta = table.meta.as_ref().ok_or(MetaTableError::MissingMeta)?;
    if meta.last_included_index == 0 {
        return Err(MetaTableError::ZeroIndex);
    }
    let mut seen = HashSet::with_capacity(table.files.len());
    for f in &table.files {
        validate_file_name(&f.name)?;
        if f.name == META_FILE {
            return Err(MetaTableError::BadFileName {
                name: f.name.clone(),
                reason: "the meta table does not list itself",
            });
        }
        if !seen.insert(f.name.as_str()) {
            return Err(MetaTableError::DuplicateName(f.name.clone()));
        }
    }
    Ok(())
}

/// Checks that `name` is a relative path of normal components separated by `/`:
/// no `..`, no `.`, no absolute path, no empty part, no NUL.
pub fn validate_file_name(name: &str) -> Result<(), MetaTableError> {
    let bad = |reason| {
        Err(MetaTableError::BadFileName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name.len() > 4096 {
        return bad("longer than 4096 bytes");
    }
    if name.starts_with('/') {
        return bad("absolute path");
    }
    if name.contains('\0') {
        return bad("contains NUL");
    }
    for part in name.split('/') {
        match part {
            "" => return bad("empty path component"),
            "." => return bad("`.` component"),
            ".." => return bad("`..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Reads and decodes the meta table in snapshot directory `dir`.
pub fn read_dir_table(dir: &Path) -> Result<SnapshotMetaTable, SnapshotError> {
    read_file(&dir.join(META_FILE))
}

/// Reads and decodes a meta table file.
pub fn read_file(path: &Path) -> Result<SnapshotMetaTable, SnapshotError> {
    let len = std::fs::metadata(path).at("stat", path)?.len();
    if len > MAX_META_TABLE_BYTES {
        return Err(SnapshotError::MetaTable {
            path: path.to_path_buf(),
            source: MetaTableError::TooLarge {
                len,
                max: MAX_META_TABLE_BYTES,
            },
        });
    }
    let bytes = std::fs::read(path).at("read", path)?;
    decode(&bytes).map_err(|source| SnapshotError::MetaTable {
        path: path.to_path_buf(),
        source,
    })
}

/// The meta's membership as `voters`/`learners` plus the joint-consensus parts.
pub fn describe_membership(meta: &SnapshotMeta) -> String {
    let mut s = format!("voters {:?} learners {:?}", meta.voters, meta.learners);
    if !meta.voters_outgoing.is_empty() || !meta.learners_next.is_empty() {
        s.push_str(&format!(
            " (joint: outgoing {:?}, learners_next {:?}, auto_leave {})",
            meta.voters_outgoing, meta.learners_next, meta.auto_leave
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::snapshot::{FileMeta, FileSource};
    use proptest::prelude::*;

    fn sample() -> SnapshotMetaTable {
        SnapshotMetaTable {
            meta: Some(SnapshotMeta {
                last_included_index: 12345,
                last_included_term: 7,
                voters: vec![1, 2, 3],
                learners: vec![4],
                ..Default::default()
            }),
            files: vec![
                FileMeta {
                    name: "meta".into(),
                    size: 10,
                    crc32c: 0xdead_beef,
                    source: FileSource::Local as i32,
                    user_meta: vec![],
                },
                FileMeta {
                    name: "data/db/rp/1/000000001-000000001.tsm".into(),
                    size: 1 << 30,
                    crc32c: 42,
                    source: FileSource::Reference as i32,
                    user_meta: b"x".to_vec(),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let t = sample();
        let bytes = encode(&t);
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(decode(&bytes).unwrap(), t);
    }

    #[test]
    fn every_single_byte_change_is_detected() {
        let bytes = encode(&sample());
        for pos in 0..bytes.len() {
            for x in 1..=255u8 {
                let mut b = bytes.clone();
                b[pos] ^= x;
                assert!(
                    decode(&b).is_err(),
                    "flip {x:#04x} at byte {pos} of {} went undetected",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn framing_errors_are_named() {
        let bytes = encode(&sample());
        assert!(matches!(
            decode(&bytes[..10]),
            Err(MetaTableError::TooShort { len: 10, .. })
        ));
        let mut b = bytes.clone();
        b[0] = b'X';
        assert!(matches!(decode(&b), Err(MetaTableError::BadMagic { .. })));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(MetaTableError::LengthMismatch { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode(&long),
            Err(MetaTableError::LengthMismatch { .. })
        ));
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 1] ^= 1;
        assert!(matches!(
            decode(&b),
            Err(MetaTableError::CrcMismatch { .. })
        ));
    }

    fn with_names(names: &[&str]) -> Vec<u8> {
        let mut t = sample();
        t.files = names
            .iter()
            .map(|n| FileMeta {
                name: n.to_string(),
                ..Default::default()
            })
            .collect();
        encode(&t)
    }

    #[test]
    fn bad_names_are_rejected() {
        for (name, why) in [
            ("", "empty name"),
            ("/etc/passwd", "absolute path"),
            ("../x", "`..` component"),
            ("a/../../x", "`..` component"),
            ("./a", "`.` component"),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("a\0b", "contains NUL"),
            (META_FILE, "the meta table does not list itself"),
        ] {
            match decode(&with_names(&[name])) {
                Err(MetaTableError::BadFileName { reason, .. }) => {
                    assert_eq!(reason, why, "{name:?}")
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert_eq!(
            decode(&with_names(&["a", "b", "a"])),
            Err(MetaTableError::DuplicateName("a".into()))
        );
        assert!(decode(&with_names(&["a/b/c.tsm", "meta", "..a", "a.."])).is_ok());
    }

    #[test]
    fn missing_meta_and_zero_index_are_rejected() {
        let mut t = sample();
        t.meta = None;
        assert_eq!(decode(&encode(&t)), Err(MetaTableError::MissingMeta));
        let mut t = sample();
        t.meta.as_mut().unwrap().last_included_index = 0;
        assert_eq!(decode(&encode(&t)), Err(MetaTableError::ZeroIndex));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_well_framed_garbage(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            b.extend_from_slice(&payload);
            b.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            let _ = decode(&b);
        }
    }
}
