//! The restore side of the snapshotter service: type 6 (MetaStoreUpdate,
//! imported through raft, answered with the shard ID map) and type 7
//! (ShardUpdate: the tar's TSM files staged, checked whole, fetched by the
//! other members and linked into the shard by one `IngestFiles` command).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path};

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::server::{Limits, with_tsdb};
use super::wire::{BACKUP_MAGIC, Request, encode_id_map};
use crate::proto::meta as meta_pb;
use crate::proto::tsdb::{self as pb, CommandResult, command::Cmd};
use crate::raft::NodeHandle;
use crate::snapshot::StageWriter;
use crate::tsdb::fsm::{Tsdb, command};
use crate::tsdb::ingest::{self, CheckedFile};
use crate::tsdb::shard::{ShardFile, write_merged};
use crate::tsdb::tsm::Tombstones;
#[cfg(test)]
use crate::tsdb::tsm::Values;

/// Largest metastore import proposed through raft (it must fit one raft
/// message with room to spare).
pub const MAX_IMPORT_PROPOSAL: usize = 32 << 20;
/// Opens a type-7 failure answer: `u64 magic, u64 len, message`.
pub const UPLOAD_ERROR_MAGIC: u64 = 0x5959_0102;
/// Largest TSM file accepted in an upload (InfluxDB writes at most 2 GiB).
pub const MAX_UPLOAD_TSM: u64 = 4 << 30;

async fn propose(node: &NodeHandle<Tsdb>, cmd: Cmd) -> Result<CommandResult, String> {
    let (_, answer) = node
        .propose(&command(cmd))
        .await
        .map_err(|e| format!("proposal failed: {e}"))?;
    Ok(answer)
}

/// Type 6: reads the `UploadSize` bytes of `meta.Data` (bounded, read as
/// they arrive, never preallocated), imports the chosen databases through
/// raft and answers with the ID map; on a refusal it answers an empty map
/// (the client then reports that nothing changed) and logs why.
pub(crate) async fn metastore_update(
    mut r: BufReader<TcpStream>,
    node: &NodeHandle<Tsdb>,
    limits: &Limits,
    req: &Request,
) -> Result<(), String> {
    if req.UploadSize > limits.max_upload {
        return Err(format!(
            "metastore upload of {} bytes is over the limit of {}",
            req.UploadSize, limits.max_upload
        ));
    }
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    while (data.len() as u64) < req.UploadSize {
        let want = chunk
            .len()
            .min((req.UploadSize - data.len() as u64) as usize);
        let n = tokio::time::timeout(limits.header_timeout, r.read(&mut chunk[..want]))
            .await
            .map_err(|_| "metastore upload stalled".to_string())?
            .map_err(|e| format!("reading the metastore upload: {e}"))?;
        if n == 0 {
            return Err(format!(
                "metastore upload ended after {} of {} bytes",
                data.len(),
                req.UploadSize
            ));
        }
        data.extend_from_slice(&chunk[..n]);
    }
    let mut conn = r.into_inner();
    let result = import(node, req, &data).await;
    let reply = encode_id_map(result.as_deref().unwrap_or(&[]));
    conn.write_all(&reply)
        .await
        .map_err(|e| format!("writing the ID map: {e}"))?;
    let map = result.map_err(|e| format!("metastore import refused: {e}"))?;
    info!(
        db = %req.BackupDatabase,
        newdb = %req.RestoreDatabase,
        shards = map.len(),
        "metastore imported"
    );
    Ok(())
}

async fn import(
    node: &NodeHandle<Tsdb>,
    req: &Request,
    data: &[u8],
) -> Result<Vec<(u64, u64)>, String> {
    let mut d = meta_pb::Data::decode(data).map_err(|e| format!("meta.Data: {e}"))?;
    // Only what the import uses crosses raft: the chosen databases.
    d.databases.retain(|db| {
        db.name != "_internal" && (req.BackupDatabase.is_empty() || db.name == req.BackupDatabase)
    });
    // Users go along (the import keeps those it restores: see
    // `Metastore::import_users`), with their privileges on these only.
    let kept: std::collections::BTreeSet<String> =
        d.databases.iter().map(|db| db.name.clone()).collect();
    for u in &mut d.users {
        u.privileges.retain(|p| kept.contains(&p.database));
    }
    let cmd = pb::ImportMetastore {
        data: d.encode_to_vec(),
        db: req.BackupDatabase.clone(),
        newdb: req.RestoreDatabase.clone(),
        rp: req.BackupRetentionPolicy.clone(),
        newrp: req.RestoreRetentionPolicy.clone(),
    };
    if cmd.data.len() > MAX_IMPORT_PROPOSAL {
        return Err(format!(
            "the databases imported take {} bytes of metadata, over {MAX_IMPORT_PROPOSAL}",
            cmd.data.len()
        ));
    }
    let res = propose(node, Cmd::ImportMetastore(cmd)).await?;
    if !res.error.is_empty() {
        return Err(res.error);
    }
    if res.mapping.is_empty() {
        return Err("no shards to restore".into());
    }
    Ok(res
        .mapping
        .into_iter()
        .map(|m| (m.old_id, m.new_id))
        .collect())
}

/// Checks a tar entry name: relative, no `..`. Errors name the entry.
pub fn check_entry_name(p: &Path) -> Result<(), String> {
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("tar entry {:?} leaves its directory", p));
    }
    Ok(())
}

/// A tar entry and its name, refused if the name leaves its directory.
pub fn checked_entry<R: Read>(
    entry: std::io::Result<tar::Entry<'_, R>>,
) -> Result<(tar::Entry<'_, R>, String), String> {
    let entry = entry.map_err(|e| format!("reading the tar: {e}"))?;
    let path = entry
        .path()
        .map_err(|e| format!("tar entry name: {e}"))?
        .into_owned();
    check_entry_name(&path)?;
    Ok((entry, path.to_string_lossy().into_owned()))
}

/// Largest TSM index accepted in an upload: the reader holds the index in
/// memory (a real file's index is about 1/1000 of its points).
pub const MAX_UPLOAD_INDEX: u64 = 256 << 20;

/// Refuses a TSM file whose index (from its footer) is over [`MAX_UPLOAD_INDEX`].
fn check_index_size(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut foot = [0u8; 8];
    if len < 13 || f.read_exact_at(&mut foot, len - 8).is_err() {
        return Err(format!("{len} bytes is too short for a TSM file"));
    }
    let index = (len - 8).saturating_sub(u64::from_be_bytes(foot));
    if index > MAX_UPLOAD_INDEX {
        return Err(format!(
            "TSM index of {index} bytes, over the {MAX_UPLOAD_INDEX}-byte limit"
        ));
    }
    Ok(())
}

/// What an upload held.
#[derive(Debug, Default)]
struct UploadStats {
    files: u64,
    skipped: u64,
    bytes: u64,
}

/// Largest tombstone file accepted in an upload (it is read into memory).
pub const MAX_UPLOAD_TOMBSTONE: u64 = 256 << 20;

/// Reads the tar from `input`, keeping `db/rp/id/*.tsm` entries: each is
/// copied into the staged set `stage` (crc32c computed on the way,
/// fsynced) and read whole ([`ingest::check_tsm`]: index, every block's CRC
/// and encoding, keys). A `*.tombstone` entry beside a TSM file (influxd
/// backs them up with their files) deletes what it names: that file is
/// staged without the deleted points (left out if none is left). Returns
/// what was found per file, in tar order.
fn read_upload(
    input: &mut dyn Read,
    prefix: &str,
    stage: &mut StageWriter,
) -> Result<(UploadStats, Vec<CheckedFile>), String> {
    let mut stats = UploadStats::default();
    let mut checked = Vec::new();
    // By the entry's name without its extension: the staged TSM file (and
    // its place in `checked`), the tombstones.
    let mut staged_by_stem: HashMap<String, (String, usize)> = HashMap::new();
    let mut tombstones: HashMap<String, (String, Vec<u8>)> = HashMap::new();
    let mut ar = tar::Archive::new(input);
    for entry in ar.entries().map_err(|e| format!("reading the tar: {e}"))? {
        let (mut entry, name) = checked_entry(entry)?;
        let file = entry
            .header()
            .entry_type()
            .is_file()
            .then(|| name.strip_prefix(prefix))
            .flatten()
            .filter(|f| !f.contains('/'));
        if let Some(stem) = file.and_then(|f| f.strip_suffix(".tombstone")) {
            if entry.size() > MAX_UPLOAD_TOMBSTONE {
                return Err(format!(
                    "tar entry {name}: {} bytes, over the {MAX_UPLOAD_TOMBSTONE}-byte limit of a tombstone file",
                    entry.size()
                ));
            }
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("tar entry {name}: {e}"))?;
            tombstones.insert(stem.to_string(), (name.clone(), bytes));
            continue;
        }
        let Some(stem) = file.and_then(|f| f.strip_suffix(".tsm")) else {
            debug!(entry = %name, "tar entry skipped");
            stats.skipped += 1;
            continue;
        };
        if entry.size() > MAX_UPLOAD_TSM {
            return Err(format!(
                "tar entry {name}: {} bytes, over the {MAX_UPLOAD_TSM}-byte limit of a TSM file",
                entry.size()
            ));
        }
        // Staged names keep the tar's order (later files win).
        let staged = format!("{:06}.tsm", stats.files);
        let fm = stage
            .add(&staged, &mut entry)
            .map_err(|e| format!("tar entry {name}: {e}"))?;
        let file = stage
            .path_for_checking(&staged)
            .map_err(|e| format!("tar entry {name}: {e}"))?;
        check_index_size(&file).map_err(|e| format!("tar entry {name}: {e}"))?;
        let c = ingest::check_tsm(&file).map_err(|e| format!("tar entry {name}: {e}"))?;
        debug!(entry = %name, bytes = fm.size, values = c.values, "TSM file of the upload staged");
        stats.files += 1;
        stats.bytes += fm.size;
        staged_by_stem.insert(stem.to_string(), (staged, checked.len()));
        checked.push(Some(c));
    }
    // Tombstones apply whichever order the tar gave them in.
    for (stem, (name, bytes)) in tombstones {
        let Some((staged, i)) = staged_by_stem.get(&stem) else {
            debug!(entry = %name, "tombstone file without its TSM file skipped");
            stats.skipped += 1;
            continue;
        };
        let set = Tombstones::decode(&bytes)
            .map_err(|e| format!("tar entry {name}: not a readable tombstone file: {e}"))?;
        let kept = cut_staged(stage, staged, set).map_err(|e| format!("tar entry {name}: {e}"))?;
        checked[*i] = kept;
    }
    Ok((stats, checked.into_iter().flatten().collect()))
}

/// Rewrites the staged TSM file `staged` without the points `set`
/// deletes: its check, or `None` when no point was left (it then leaves
/// the set).
fn cut_staged(
    stage: &mut StageWriter,
    staged: &str,
    set: Tombstones,
) -> Result<Option<CheckedFile>, String> {
    let path = stage.path_for_checking(staged).map_err(|e| e.to_string())?;
    let crc = stage
        .files()
        .iter()
        .find(|f| f.name == staged)
        .map_or(0, |f| f.crc32c);
    let file = ShardFile::open(&path, crc)
        .and_then(|f| f.with_deletes(set))
        .map_err(|e| e.to_string())?;
    let cut = format!("{staged}.cut");
    let tmp = stage.path_for(&cut).map_err(|e| e.to_string())?;
    let m = write_merged(std::slice::from_ref(&file), &tmp, i64::MIN, i64::MAX);
    drop(file);
    let m = match m {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("applying its tombstones: {e}"));
        }
    };
    if m.values == 0 {
        let _ = std::fs::remove_file(&tmp);
        stage.remove(staged).map_err(|e| e.to_string())?;
        return Ok(None);
    }
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", tmp.display()))?;
    stage
        .rerecord(staged, m.size, m.crc32c)
        .map_err(|e| e.to_string())?;
    ingest::check_tsm(&path).map(Some)
}

/// Publishes a staged set of checked TSM files, has the members fetch
/// it, and proposes one `IngestFiles` command into shard `id` (0: the
/// shard of db/rp holding the files' time range); returns the values
/// ingested. Field types are checked against the shard's first, so a
/// conflict is refused before anything is proposed.
pub(crate) async fn ingest_stage(
    node: &NodeHandle<Tsdb>,
    id: u64,
    db: &str,
    rp: &str,
    stage: StageWriter,
    checked: Vec<CheckedFile>,
) -> Result<u64, String> {
    if checked.is_empty() {
        stage.abort();
        return Ok(0);
    }
    let min = checked.iter().map(|c| c.min_time).min().unwrap_or(0);
    let conflict = with_tsdb(node, |t, _, _| {
        let target = if id != 0 {
            Some(id)
        } else {
            let rp = t.meta().resolve_rp(db, rp).map(str::to_string).ok();
            t.meta()
                .shards()
                .into_iter()
                .find(|s| s.0 == db && Some(&s.1) == rp.as_ref() && s.3 <= min && min < s.4)
                .map(|s| s.2)
        };
        ingest::check_types(checked.iter().map(|c| c.keys.as_slice()), |k| {
            target.and_then(|id| t.stored_type(id, k))
        })
    });
    if let Err(e) = conflict {
        stage.abort();
        return Err(e);
    }
    let set = tokio::task::spawn_blocking(move || stage.commit())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let holders = node
        .stage_on_members(&set)
        .await
        .map_err(|e| e.to_string())?;
    let cmd = ingest::command(&set, &checked, db, rp, id, holders);
    let (_, res) = node
        .propose(&cmd)
        .await
        .map_err(|e| format!("proposal failed: {e}"))?;
    if !res.error.is_empty() {
        return Err(res.error);
    }
    Ok(res.written)
}

/// Type 7: `u64` shard ID, then a tar. The shard must exist (created by a
/// type-6 import). Entries with absolute or `..` names close the connection;
/// entries other than `db/rp/id/*.tsm` of that shard are skipped. The TSM
/// files travel by file (DESIGN §3 "Bulk data by file"): staged here and
/// checked whole, fetched by the other members, then linked into the shard
/// on every replica by one `IngestFiles` command. Finally writes `u64 magic,
/// u64 written, u64 dropped`, or on failure `u64 0x59590102, u64 len,
/// message` (tsnode's client reads it; InfluxDB's has closed).
pub(crate) async fn shard_update(
    mut r: BufReader<TcpStream>,
    node: &NodeHandle<Tsdb>,
    limits: &Limits,
) -> Result<(), String> {
    let mut id = [0u8; 8];
    tokio::time::timeout(limits.header_timeout, r.read_exact(&mut id))
        .await
        .map_err(|_| "no shard ID within the timeout".to_string())?
        .map_err(|e| format!("reading the shard ID: {e}"))?;
    let id = u64::from_be_bytes(id);
    let (db, rp) = with_tsdb(node, |t, _, _| {
        let s = t.meta().shards().into_iter().find(|s| s.2 == id);
        s.map(|s| (s.0, s.1))
    })
    .ok_or_else(|| format!("shard {id} not found (restore the metastore first)"))?;
    let staging = node
        .staging()
        .cloned()
        .ok_or("this node keeps no staged files")?;
    let stage = staging.begin().map_err(|e| e.to_string())?;
    let span = tracing::info_span!("shard_update", shard = id, %db, %rp);
    let _e = span.enter();
    let leftover = r.buffer().to_vec();
    let conn = r
        .into_inner()
        .into_std()
        .map_err(|e| format!("socket: {e}"))?;
    conn.set_nonblocking(false)
        .and_then(|_| conn.set_read_timeout(Some(limits.header_timeout)))
        .and_then(|_| conn.set_write_timeout(Some(limits.header_timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    let prefix = format!("{db}/{rp}/{id}/");
    let reading = tokio::task::spawn_blocking(move || {
        let mut stage = stage;
        let input = Read::chain(std::io::Cursor::new(leftover), &conn);
        let mut input = input;
        let r = read_upload(&mut input, &prefix, &mut stage);
        // Read what follows the tar's end (the rest of its trailer) up to
        // the client's EOF, so closing does not reset the connection and
        // lose the answer. Bounded: 1 MiB, and the socket's read timeout.
        let _ = std::io::copy(&mut input.take(1 << 20), &mut std::io::sink());
        (r, stage, conn)
    });
    drop(_e);
    let (read, stage, conn) = reading.await.map_err(|e| e.to_string())?;
    let outcome = match read {
        Ok((stats, checked)) => ingest_stage(node, id, &db, &rp, stage, checked)
            .await
            .map(|written| (stats, written)),
        Err(e) => {
            stage.abort();
            Err(e)
        }
    }
    .map_err(|e| format!("shard {id}: {e}"));
    let reply = match &outcome {
        Ok((stats, written)) => {
            info!(
                shard = id,
                files = stats.files,
                bytes = stats.bytes,
                skipped = stats.skipped,
                written,
                "shard upload ingested"
            );
            let mut ack = BACKUP_MAGIC.to_be_bytes().to_vec();
            ack.extend(written.to_be_bytes());
            ack.extend(0u64.to_be_bytes());
            ack
        }
        Err(e) => {
            let mut r = UPLOAD_ERROR_MAGIC.to_be_bytes().to_vec();
            let msg = &e.as_bytes()[..e.len().min(4096)];
            r.extend((msg.len() as u64).to_be_bytes());
            r.extend(msg);
            r
        }
    };
    // The InfluxDB client has closed by now; only tsnode's reads this.
    let _ = std::io::Write::write_all(&mut &conn, &reply);
    outcome.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_must_stay_inside() {
        assert!(check_entry_name(Path::new("db/rp/1/a.tsm")).is_ok());
        assert!(check_entry_name(Path::new("./db/rp/1/a.tsm")).is_ok());
        assert!(check_entry_name(Path::new("/etc/passwd")).is_err());
        assert!(check_entry_name(Path::new("db/../../x")).is_err());
        assert!(check_entry_name(Path::new("..")).is_err());
    }

    /// A valid upload tar: one TSM file of `n` values at `db/rp/7/`.
    fn upload_tar(dir: &Path, n: i64) -> Vec<u8> {
        let f = dir.join("src.tsm");
        let mut w = crate::tsdb::tsm::TsmWriter::create(&f).unwrap();
        let ts: Vec<i64> = (0..n).collect();
        w.write(
            "m,host=a#!~#v",
            &ts,
            &Values::Float(ts.iter().map(|t| *t as f64).collect()),
        )
        .unwrap();
        w.finish().unwrap();
        let mut tb = tar::Builder::new(Vec::new());
        tb.append_path_with_name(&f, "db/rp/7/000000001-000000001.tsm")
            .unwrap();
        tb.append_path_with_name(&f, "db/rp/7/ignored.tombstone")
            .unwrap();
        tb.into_inner().unwrap()
    }

    fn read(bytes: &[u8], tmp: &Path) -> (Result<UploadStats, String>, u64) {
        let area =
            crate::snapshot::StagingArea::open(tmp, crate::snapshot::staging::DEFAULT_ORPHAN_TTL)
                .unwrap();
        let mut stage = area.begin().unwrap();
        let r = read_upload(&mut &bytes[..], "db/rp/7/", &mut stage);
        stage.abort();
        match r {
            Ok((stats, checked)) => (Ok(stats), checked.iter().map(|c| c.values).sum()),
            Err(e) => (Err(e), 0),
        }
    }

    #[test]
    fn an_upload_sends_every_value_of_its_tsm_files_and_skips_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let tar = upload_tar(t.path(), 100_000);
        let (r, values) = read(&tar, &t.path().join("tmp"));
        let stats = r.unwrap();
        assert_eq!((stats.files, stats.skipped, values), (1, 1, 100_000));
        let left: Vec<_> = std::fs::read_dir(t.path().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "the aborted stage is removed");
    }

    #[test]
    fn tombstones_in_an_upload_delete_from_their_files_in_either_order() {
        use crate::tsdb::tsm::Tombstones;
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("src.tsm");
        let mut w = crate::tsdb::tsm::TsmWriter::create(&f).unwrap();
        let ts: Vec<i64> = (0..1000).collect();
        let vals = Values::Float(ts.iter().map(|t| *t as f64).collect());
        w.write("m,host=a#!~#v", &ts, &vals).unwrap();
        w.write("m,host=b#!~#v", &ts, &vals).unwrap();
        w.finish().unwrap();
        let mut cut = Tombstones::default();
        cut.add("m,host=a#!~#v", i64::MIN, i64::MAX);
        cut.add("m,host=b#!~#v", 100, 199);
        let mut all = cut.clone();
        all.add("m,host=b#!~#v", i64::MIN, i64::MAX);
        let tar = |entries: &[(&str, Vec<u8>)]| {
            let mut tb = tar::Builder::new(Vec::new());
            for (name, data) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tb.append_data(&mut h, name, &data[..]).unwrap();
            }
            tb.into_inner().unwrap()
        };
        let tsm = std::fs::read(&f).unwrap();
        let (name, tomb) = (
            "db/rp/7/000000001-000000001.tsm",
            "db/rp/7/000000001-000000001.tombstone",
        );
        // influxd's order (the tombstone sorts first), and the other.
        for entries in [
            vec![(tomb, cut.encode().unwrap()), (name, tsm.clone())],
            vec![(name, tsm.clone()), (tomb, cut.encode().unwrap())],
        ] {
            let (r, values) = read(&tar(&entries), &t.path().join("tmp"));
            assert_eq!(r.unwrap().files, 1);
            assert_eq!(values, 900, "a whole and 100 points of b deleted");
        }
        // Everything deleted: the file is left out.
        let (r, values) = read(
            &tar(&[(tomb, all.encode().unwrap()), (name, tsm.clone())]),
            &t.path().join("tmp"),
        );
        assert_eq!((r.unwrap().files, values), (1, 0));
        // A damaged tombstone of a file in the upload fails it, named.
        let (r, _) = read(
            &tar(&[(name, tsm.clone()), (tomb, b"junk".to_vec())]),
            &t.path().join("tmp"),
        );
        let e = r.unwrap_err();
        assert!(e.contains("000000001-000000001.tombstone"), "{e}");
        let left: Vec<_> = std::fs::read_dir(t.path().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "aborted stages are removed");
    }

    #[test]
    fn a_huge_index_is_refused_before_it_is_read() {
        use std::os::unix::fs::FileExt;
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("big.tsm");
        let file = std::fs::File::create(&f).unwrap();
        file.set_len(MAX_UPLOAD_INDEX + 4096).unwrap();
        file.write_all_at(&5u64.to_be_bytes(), MAX_UPLOAD_INDEX + 4088)
            .unwrap();
        assert!(check_index_size(&f).unwrap_err().contains("over the"));
        let ok = t.path().join("ok.tsm");
        let mut w = crate::tsdb::tsm::TsmWriter::create(&ok).unwrap();
        w.write("m#!~#v", &[1], &Values::Float(vec![1.0])).unwrap();
        w.finish().unwrap();
        assert!(check_index_size(&ok).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Mangled uploads never panic and never write outside the staging area.
        #[test]
        fn mangled_uploads_fail_cleanly(
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..5000,
        ) {
            let t = tempfile::tempdir().unwrap();
            let mut tar = upload_tar(t.path(), 300);
            for (at, v) in flips {
                let i = at % tar.len();
                tar[i] ^= v | 1;
            }
            tar.truncate(cut.max(1).min(tar.len()));
            let _ = read(&tar, &t.path().join("tmp"));
            let names: Vec<_> = std::fs::read_dir(t.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "src.tsm" && n != "tmp")
                .collect();
            proptest::prop_assert!(names.is_empty(), "{:?}", names);
        }

        /// Replies of any bytes decode to a value or an error, never a panic.
        #[test]
        fn replies_of_any_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = super::super::wire::decode_id_map(&b);
            let _ = super::super::wire::decode_metastore_reply(&b);
            let _ = serde_json::from_slice::<Request>(&b);
        }
    }
}
