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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    #[serde(default)]
    pub limited: bool,
    /// Every shard file.
    #[serde(default)]
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

/// Writes `<ts>.meta` (a `PortableData` around the raw `meta.Data`), fsynced.
pub fn write_meta(dir: &Path, ts: &str, raw: &[u8]) -> Result<ManifestMeta, PortableError> {
    let meta_name = format!("{ts}.meta");
    let portable = PortableData {
        data: raw.to_vec(),
        max_node_id: 0,
    };
    write_synced(&dir.join(&meta_name), &portable.encode_to_vec())?;
    Ok(ManifestMeta {
        file_name: meta_name,
        size: raw.len() as u64,
    })
}

/// Writes `<ts>.s<id>.tar.gz`: `fill` writes the uncompressed tar and
/// returns its size. The file is fsynced; a failure removes it.
pub fn write_shard_archive(
    dir: &Path,
    ts: &str,
    db: &str,
    rp: &str,
    shard_id: u64,
    fill: impl FnOnce(&mut dyn Write) -> Result<u64, PortableError>,
) -> Result<ManifestFile, PortableError> {
    let name = format!("{ts}.s{shard_id}.tar.gz");
    let path = dir.join(&name);
    let run = || -> Result<u64, PortableError> {
        let f = File::create(&path).map_err(io("create", &path))?;
        let mut gz = flate2::GzBuilder::new()
            .filename(format!("{ts}.s{shard_id}.tar"))
            .write(BufWriter::new(f), flate2::Compression::fast());
        let size = fill(&mut gz)?;
        let bw = gz.finish().map_err(io("gzip", &path))?;
        let f = bw.into_inner().map_err(|e| PortableError::Io {
            op: "write",
            path: path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io("fsync", &path))?;
        Ok(size)
    };
    match run() {
        Ok(size) => Ok(ManifestFile {
            database: db.to_string(),
            policy: rp.to_string(),
            shard_id,
            file_name: name,
            size,
            last_modified: 0,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Writes `<ts>.manifest` (indented JSON) last, atomically (temporary file,
/// fsync, rename), then fsyncs `dir`: a backup without its manifest is not
/// a backup.
pub fn write_manifest(dir: &Path, ts: &str, manifest: &Manifest) -> Result<(), PortableError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| PortableError::Invalid {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Written aside and renamed: a crash never leaves a torn manifest,
    // which, being the newest, would make the whole directory unreadable.
    let tmp = dir.join(format!("{ts}.manifest.tmp"));
    let path = dir.join(format!("{ts}.manifest"));
    write_synced(&tmp, &json)?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
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
    let meta = write_meta(dir, ts, &data.encode_to_vec())?;
    let mut files = Vec::new();
    for s in shards {
        files.push(write_shard_archive(
            dir,
            ts,
            &s.db,
            &s.rp,
            s.shard_id,
            |w| write_shard_tar(w, s),
        )?);
    }
    let manifest = Manifest {
        meta,
        limited: false,
        files,
    };
    write_manifest(dir, ts, &manifest)?;
    Ok(manifest)
}

/// A portable backup as `restore` reads it: the newest manifest's
/// metastore, and for each shard the newest entry whose file exists.
#[derive(Debug, Clone)]
pub struct BackupSet {
    /// Raw `meta.Data`.
    pub meta: Vec<u8>,
    /// Shard archives, by shard id.
    pub files: Vec<ManifestFile>,
}

/// Reads every `*.manifest` in `dir` (newest name first), as
/// `influxd restore -portable` does.
pub fn read_backup(dir: &Path) -> Result<BackupSet, PortableError> {
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("read directory", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "manifest"))
        .collect();
    manifests.sort();
    manifests.reverse();
    let invalid = |path: &Path, reason: String| PortableError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let Some(newest) = manifests.first() else {
        return Err(invalid(
            dir,
            "no *.manifest file: not a portable backup".into(),
        ));
    };
    let mut meta = None;
    let mut files: Vec<ManifestFile> = Vec::new();
    for mp in &manifests {
        let b = std::fs::read(mp).map_err(io("read", mp))?;
        let m: Manifest =
            serde_json::from_slice(&b).map_err(|e| invalid(mp, format!("bad manifest: {e}")))?;
        if mp == newest {
            let path = dir.join(&m.meta.file_name);
            check_name(&m.meta.file_name, mp)?;
            let pd = PortableData::decode(&std::fs::read(&path).map_err(io("read", &path))?[..])
                .map_err(|e| invalid(&path, format!("bad PortableData: {e}")))?;
            meta = Some(pd.data);
        }
        for f in m.files {
            check_name(&f.file_name, mp)?;
            if !files.iter().any(|g| g.shard_id == f.shard_id) && dir.join(&f.file_name).is_file() {
                files.push(f);
            }
        }
    }
    files.sort_by_key(|f| f.shard_id);
    Ok(BackupSet {
        meta: meta.unwrap_or_default(),
        files,
    })
}

fn check_name(name: &str, manifest: &Path) -> Result<(), PortableError> {
    if name.is_empty() || name.contains('/') || name.contains('\\') || name == ".." {
        return Err(PortableError::Invalid {
            path: manifest.to_path_buf(),
            reason: format!("file name {name:?} is not a plain name in the backup directory"),
        });
    }
    Ok(())
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

    #[test]
    fn restore_reads_the_newest_manifest_and_the_newest_file_per_shard() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("x.tsm");
        std::fs::write(&f, b"tsm").unwrap();
        let shard = |id| ShardFiles {
            db: "db".into(),
            rp: "autogen".into(),
            shard_id: id,
            files: vec![("1-1.tsm".into(), f.clone())],
        };
        let out = t.path().join("bk");
        let old = pb::Data {
            term: 1,
            ..Default::default()
        };
        let new = pb::Data {
            term: 2,
            ..Default::default()
        };
        write_backup(&out, "20240101T000000Z", &old, &[shard(1), shard(2)]).unwrap();
        write_backup(&out, "20240102T000000Z", &new, &[shard(2)]).unwrap();
        let set = read_backup(&out).unwrap();
        assert_eq!(set.meta, new.encode_to_vec(), "the newest manifest's meta");
        let names: Vec<&str> = set.files.iter().map(|f| f.file_name.as_str()).collect();
        assert_eq!(
            names,
            vec!["20240101T000000Z.s1.tar.gz", "20240102T000000Z.s2.tar.gz"]
        );
        // A manifest torn by a crash stays aside and is not read.
        std::fs::write(out.join("20240109T000000Z.manifest.tmp"), b"{\"meta\":").unwrap();
        assert_eq!(read_backup(&out).unwrap().meta, new.encode_to_vec());
        assert!(!out.join("20240102T000000Z.manifest.tmp").exists());
        // A manifest naming a file outside the directory is refused.
        let bad = r#"{"meta":{"fileName":"../x.meta","size":1},"limited":false,"files":[]}"#;
        std::fs::write(out.join("20240103T000000Z.manifest"), bad).unwrap();
        assert!(
            read_backup(&out)
                .unwrap_err()
                .to_string()
                .contains("not a plain name")
        );
        assert!(
            read_backup(t.path())
                .unwrap_err()
                .to_string()
                .contains("no *.manifest")
        );
    }
}
