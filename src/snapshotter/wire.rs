//! The snapshotter's wire format (reference/influx.md §1), shared by the
//! server and the client: the mux byte, request types, the JSON request as
//! Go's `json.Encoder` writes it, and the binary replies.

use serde::{Deserialize, Serialize};

/// The only mux header the snapshotter answers.
pub const MUX_HEADER: u8 = 3;
/// Magic number opening a metastore backup and an ID map reply.
pub const BACKUP_MAGIC: u64 = 0x5959_0101;
/// Go's zero `time.Time`, which the client sends for unset times.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Request types (the byte after the mux header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestType {
    /// A shard's TSM files as a tar (`Since` compares file mtimes).
    ShardBackup = 0,
    /// The metastore (`meta.Data`).
    MetastoreBackup = 1,
    /// Defined by InfluxDB but never served.
    SeriesFileBackup = 2,
    /// Shard paths of a database (all when empty).
    DatabaseInfo = 3,
    /// Shard paths of a retention policy.
    RetentionPolicyInfo = 4,
    /// The points of a shard within `[ExportStart, ExportEnd]`, as a tar.
    ShardExport = 5,
    /// Import a metastore (restore); the reply is the shard ID map.
    MetaStoreUpdate = 6,
    /// Upload a shard's tar into an existing (new) shard.
    ShardUpdate = 7,
}

impl RequestType {
    /// The type for a byte, if known.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::ShardBackup,
            1 => Self::MetastoreBackup,
            2 => Self::SeriesFileBackup,
            3 => Self::DatabaseInfo,
            4 => Self::RetentionPolicyInfo,
            5 => Self::ShardExport,
            6 => Self::MetaStoreUpdate,
            7 => Self::ShardUpdate,
            _ => return None,
        })
    }
}

/// A request as `influxd backup`/`restore` send it (Go field names, all ten
/// always present; times as RFC3339Nano, Go's zero time when unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[allow(non_snake_case)]
pub struct Request {
    /// The request type (repeats the type byte).
    pub Type: u8,
    /// Database backed up (or, for type 6, restored from).
    pub BackupDatabase: String,
    /// Type 6: the database to restore into.
    pub RestoreDatabase: String,
    /// Retention policy backed up (or restored from).
    pub BackupRetentionPolicy: String,
    /// Type 6: the retention policy to restore into.
    pub RestoreRetentionPolicy: String,
    /// Types 0 and 5: the shard.
    pub ShardID: u64,
    /// Type 0: only files modified after this time.
    pub Since: String,
    /// Type 5: first time exported.
    pub ExportStart: String,
    /// Type 5: last time exported.
    pub ExportEnd: String,
    /// Type 6: bytes of payload after the JSON line.
    pub UploadSize: u64,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            Type: 0,
            BackupDatabase: String::new(),
            RestoreDatabase: String::new(),
            BackupRetentionPolicy: String::new(),
            RestoreRetentionPolicy: String::new(),
            ShardID: 0,
            Since: GO_ZERO_TIME.into(),
            ExportStart: GO_ZERO_TIME.into(),
            ExportEnd: GO_ZERO_TIME.into(),
            UploadSize: 0,
        }
    }
}

impl Request {
    /// The bytes a client sends: mux header, type, compact JSON, `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MUX_HEADER, self.Type];
        // Serializing a struct of strings and integers cannot fail.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out.push(b'\n');
        out
    }
}

/// Parses a request time: `None` when empty or Go's zero time (unset).
pub fn parse_time(s: &str) -> Result<Option<i64>, String> {
    if s.is_empty() || s.starts_with("0001-01-01T00:00:00") {
        return Ok(None);
    }
    crate::tsdb::timefmt::parse_rfc3339(s)
        .map(Some)
        .ok_or_else(|| format!("bad time {s:?}"))
}

/// Formats nanoseconds since the epoch for a request.
pub fn format_time(ns: i64) -> String {
    crate::tsdb::timefmt::rfc3339_nano(ns)
}

/// The type-6 reply: magic, count, then (old, new) shard ID pairs.
pub fn encode_id_map(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 16 * pairs.len());
    out.extend(BACKUP_MAGIC.to_be_bytes());
    out.extend((pairs.len() as u64).to_be_bytes());
    for (old, new) in pairs {
        out.extend(old.to_be_bytes());
        out.extend(new.to_be_bytes());
    }
    out
}

/// Parses a type-6 reply; an empty map means the server refused.
pub fn decode_id_map(b: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let u =
        |i: usize| -> Option<u64> { Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?)) };
    match u(0) {
        Some(BACKUP_MAGIC) => {}
        Some(m) => return Err(format!("bad magic {m:#x} in the ID map reply")),
        None => return Err(format!("ID map reply of {} bytes is too short", b.len())),
    }
    let n = u(8).ok_or("ID map reply has no count")?;
    if b.len() as u64 != n.saturating_mul(16).saturating_add(16) {
        return Err(format!(
            "ID map reply of {} bytes does not hold {n} pairs",
            b.len()
        ));
    }
    Ok((0..n as usize)
        .filter_map(|i| Some((u(16 + 16 * i)?, u(24 + 16 * i)?)))
        .collect())
}

/// Parses a type-1 reply: magic, length, `meta.Data`, length, node JSON.
/// Returns the `meta.Data` bytes.
pub fn decode_metastore_reply(b: &[u8]) -> Result<&[u8], String> {
    let u =
        |i: usize| -> Option<u64> { Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?)) };
    match u(0) {
        Some(BACKUP_MAGIC) => {}
        Some(m) => return Err(format!("bad magic {m:#x} in the metastore reply")),
        None => return Err("empty or short metastore reply (refused by the server?)".into()),
    }
    let n = u(8).ok_or("metastore reply has no length")?;
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(16))
        .filter(|e| *e <= b.len())
        .ok_or_else(|| format!("metastore reply truncated ({} bytes, meta of {n})", b.len()))?;
    Ok(&b[16..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_as_influxd_sends_them() {
        let r = Request {
            Type: 0,
            BackupDatabase: "mydb".into(),
            BackupRetentionPolicy: "autogen".into(),
            ShardID: 1,
            ..Default::default()
        };
        let b = r.encode();
        assert_eq!(&b[..2], &[3, 0]);
        assert_eq!(
            std::str::from_utf8(&b[2..]).unwrap(),
            "{\"Type\":0,\"BackupDatabase\":\"mydb\",\"RestoreDatabase\":\"\",\"BackupRetentionPolicy\":\"autogen\",\"RestoreRetentionPolicy\":\"\",\"ShardID\":1,\"Since\":\"0001-01-01T00:00:00Z\",\"ExportStart\":\"0001-01-01T00:00:00Z\",\"ExportEnd\":\"0001-01-01T00:00:00Z\",\"UploadSize\":0}\n"
        );
        let back: Request = serde_json::from_slice(&b[2..]).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn id_maps_round_trip_and_bad_replies_are_errors() {
        let b = encode_id_map(&[(1, 10), (2, 11)]);
        assert_eq!(decode_id_map(&b).unwrap(), vec![(1, 10), (2, 11)]);
        assert_eq!(decode_id_map(&encode_id_map(&[])).unwrap(), vec![]);
        assert!(decode_id_map(&b[..20]).is_err());
        assert!(decode_id_map(&[]).is_err());
        let mut bad = b.clone();
        bad[7] ^= 1;
        assert!(decode_id_map(&bad).is_err());
        let mut huge = encode_id_map(&[]);
        huge[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(decode_id_map(&huge).is_err());
    }

    #[test]
    fn times_parse_with_go_zero_as_unset() {
        assert_eq!(parse_time(GO_ZERO_TIME).unwrap(), None);
        assert_eq!(parse_time("").unwrap(), None);
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z").unwrap(),
            Some(1_000_000_000)
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_time(&format_time(1_500)).unwrap(), Some(1_500));
    }

    #[test]
    fn metastore_replies_are_checked() {
        let mut b = BACKUP_MAGIC.to_be_bytes().to_vec();
        b.extend(3u64.to_be_bytes());
        b.extend(b"abc");
        b.extend(5u64.to_be_bytes());
        b.extend(b"null\n");
        assert_eq!(decode_metastore_reply(&b).unwrap(), b"abc");
        assert!(decode_metastore_reply(&b[..18]).is_err());
        assert!(decode_metastore_reply(&[]).is_err());
    }
}
