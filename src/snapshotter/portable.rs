//! InfluxDB 1.x's portable backup format, as `influxd backup -portable`
//! writes it: `<ts>.meta` (a `PortableData` protobuf holding `meta.Data`),
//! one `<ts>.s<id>.tar.gz` per shard (USTAR entries `db/rp/id/<file>`,
//! gzipped), and `<ts>.manifest` (indented JSON; sizes are uncompressed).
//! `ts` is the UTC start time as `20060102T150405Z`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::proto::backup_util::PortableData;
use crate::proto::meta as pb;

/// An error writing or reading a portable backup.
#[derive(Debug, thiserror::Error)]
pub enum PortableError {
    /// I/O on a file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Bad content.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PortableError + 'a {
    move |source| PortableError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The manifest's `meta` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestMeta {
    /// `<ts>.meta`.
    #[serde(rename = "fileName")]
    pub file_name: String,
    /// Bytes of the `meta.Data` it holds.
    pub size: u64,
}

/// One shard of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Database.
    pub database: String,
    /// Retention policy.
    pub policy: String,
    /// Shard id.
    #[serde(rename = "shardID")]
    pub shard_id: u64,
    /// `<ts>.s<id>.tar.gz`.
    #[serde(rename = "fileName")]
    pub file_name: String,
    /// Bytes of the uncompressed tar.
    pub size: u64,
    /// Always 0, as influxd writes it.
    #[serde(rename = "lastModified")]
    pub last_modified: i64,
}

/// `<ts>.manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The metastore file.
    pub meta: ManifestMeta,
    /// Whether the backup was limited to a time range.
    pub limited: bool,
    /// Every shard file.
    pub files: Vec<ManifestFile>,
}

/// The files of one shard to back up.
#[derive(Debug, Clone)]
pub struct ShardFiles {
    /// Database.
    pub db: String,
    /// Retention policy.
    pub rp: String,
    /// Shard id.
    pub shard_id: u64,
    /// (name inside the shard directory, path on disk).
    pub files: Vec<(String, PathBuf)>,
}

/// `20060102T150405Z` for a time given in seconds since the epoch.
pub fn backup_timestamp(unix_secs: i64) -> String {
    let (y, m, d) = crate::tsdb::timefmt::civil(unix_secs.div_euclid(86_400));
    let secs = unix_secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the tar of one shard (entries `db/rp/id/name`, in name order) to `out`.
pub fn write_shard_tar(out: impl Write, shard: &ShardFiles) -> Result<u64, PortableError> {
    let mut c = Counting { inner: out, n: 0 };
    {
        let mut tb = tar::Builder::new(&mut c);
        tb.mode(tar::HeaderMode::Deterministic);
        let mut files = shard.files.clone();
        files.sort();
        for (name, path) in &files {
            let entry = format!("{}/{}/{}/{}", shard.db, shard.rp, shard.shard_id, name);
            let mut f = File::open(path).map_err(io("open", path))?;
            tb.append_file(&entry, &mut f).map_err(io("tar", path))?;
        }
        tb.finish().map_err(io("tar", Path::new(&shard.db)))?;
    }
    Ok(c.n)
}

/// Writes a portable backup of `data` and `shards` into `dir`, named by `ts`;
/// every file is fsynced. Returns the manifest written.
pub fn write_backup(
    dir: &Path,
    ts: &str,
    data: &pb::Data,
    shards: &[ShardFiles],
) -> Result<Manifest, PortableError> {
    std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let raw = data.encode_to_vec();
    let meta_name = format!("{ts}.meta");
    let meta_path = dir.join(&meta_name);
    let portable = PortableData {
        data: raw.clone(),
        max_node_id: 0,
    };
    write_synced(&meta_path, &portable.encode_to_vec())?;
    let mut files = Vec::new();
    for s in shards {
        let name = format!("{ts}.s{}.tar.gz", s.shard_id);
        let path = dir.join(&name);
        let f = File::create(&path).map_err(io("create", &path))?;
        let gz = flate2::GzBuilder::new()
            .filename(format!("{ts}.s{}.tar", s.shard_id))
            .write(BufWriter::new(f), flate2::Compression::fast());
        let mut gz = gz;
        let size = write_shard_tar(&mut gz, s)?;
        let bw = gz.finish().map_err(io("gzip", &path))?;
        let f = bw.into_inner().map_err(|e| PortableError::Io {
            op: "write",
            path: path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io("fsync", &path))?;
        files.push(ManifestFile {
            database: s.db.clone(),
            policy: s.rp.clone(),
            shard_id: s.shard_id,
            file_name: name,
            size,
            last_modified: 0,
        });
    }
    let manifest = Manifest {
        meta: ManifestMeta {
            file_name: meta_name,
            size: raw.len() as u64,
        },
        limited: false,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| PortableError::Invalid {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_synced(&dir.join(format!("{ts}.manifest")), &json)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))?;
    Ok(manifest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PortableError> {
    let mut f = File::create(path).map_err(io("create", path))?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("fsync", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_influxdb_style() {
        assert_eq!(backup_timestamp(0), "19700101T000000Z");
        assert_eq!(backup_timestamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(backup_timestamp(951_782_400), "20000229T000000Z");
        assert_eq!(backup_timestamp(-1), "19691231T235959Z");
    }

    #[test]
    fn a_backup_has_meta_tarballs_and_a_manifest() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("x.tsm");
        std::fs::write(&f, b"tsm bytes").unwrap();
        let shard = ShardFiles {
            db: "db".into(),
            rp: "autogen".into(),
            shard_id: 7,
            files: vec![("000000001-000000001.tsm".into(), f)],
        };
        let out = t.path().join("bk");
        let m = write_backup(&out, "20240101T000000Z", &pb::Data::default(), &[shard]).unwrap();
        assert_eq!(m.files[0].file_name, "20240101T000000Z.s7.tar.gz");
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("20240101T000000Z.manifest")).unwrap())
                .unwrap();
        assert_eq!(j["files"][0]["shardID"], 7);
        assert_eq!(j["meta"]["fileName"], "20240101T000000Z.meta");
        let gz = flate2::read::GzDecoder::new(
            File::open(out.join("20240101T000000Z.s7.tar.gz")).unwrap(),
        );
        let mut ar = tar::Archive::new(gz);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["db/autogen/7/000000001-000000001.tsm"]);
        let pd =
            PortableData::decode(&std::fs::read(out.join("20240101T000000Z.meta")).unwrap()[..])
                .unwrap();
        assert_eq!(pd.data, pb::Data::default().encode_to_vec());
    }
}
