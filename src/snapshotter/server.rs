//! The InfluxDB 1.x snapshotter service (reference/influx.md §1), on its own
//! TCP port: a mux byte `3`, a request-type byte, then (types 0–6) one JSON
//! request line; type 7 sends a shard ID and a tar instead.
//!
//! Input is bounded: the header and request must arrive within
//! [`Limits::header_timeout`] (30 s), and later reads may not stall longer
//! than that; the JSON line is at most 64 KiB; a type-6 upload at most
//! [`Limits::max_upload`] (256 MiB). Bad input is logged and the connection
//! closed, as InfluxDB does. Backups (types 0, 1, 3, 4, 5) read only this
//! node's files, so a follower can serve them; restores (6, 7) go through
//! raft so every replica gets them.
//!
//! Differences from InfluxDB, on purpose: type 5 exports exactly the points
//! within `[ExportStart, ExportEnd]` (InfluxDB ships whole blocks that
//! overlap), and type 7, after applying the upload, writes back
//! `u64 magic, u64 values written, u64 values dropped` (InfluxDB writes
//! nothing; its client has closed by then and ignores it).

use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::io::SyncIoBridge;
use tracing::{Instrument, debug, info_span, warn};

use super::wire::{MUX_HEADER, Request, RequestType, parse_time};
use crate::raft::NodeHandle;
use crate::tsdb::fsm::Tsdb;

/// Limits of the service.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the header and the JSON request, and the longest a
    /// read may stall afterwards (30 s).
    pub header_timeout: Duration,
    /// Largest JSON request (64 KiB).
    pub max_json: usize,
    /// Largest type-6 metastore upload (256 MiB).
    pub max_upload: u64,
    /// Clients from other hosts are served (with authentication on, only
    /// loopback clients are, unless `snapshotter_allow_remote`: the
    /// snapshotter protocol has no credentials, as influxd's).
    pub remote_allowed: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            max_json: 64 << 10,
            max_upload: 256 << 20,
            remote_allowed: true,
        }
    }
}

/// Serves connections from `listener` until the node stops.
pub async fn serve(listener: TcpListener, node: NodeHandle<Tsdb>, limits: Limits) {
    loop {
        let (conn, peer) = tokio::select! {
            _ = node.stopped() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "snapshotter accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !limits.remote_allowed && !peer.ip().is_loopback() {
            warn!(%peer, "snapshotter client from another host refused (authentication is on; \
                          set snapshotter_allow_remote to serve it)");
            drop(conn);
            continue;
        }
        let (node, limits) = (node.clone(), limits.clone());
        let span = info_span!("snapshotter", %peer, node = node.id());
        tokio::spawn(
            async move {
                if let Err(e) = handle(conn, &node, &limits).await {
                    warn!(error = %e, "snapshotter request refused; connection closed");
                }
            }
            .instrument(span),
        );
    }
}

/// Runs `f` on this node's state machine as it is (a backup is of the
/// local state, as influxd's is).
pub(crate) fn with_tsdb<T>(node: &NodeHandle<Tsdb>, f: impl FnOnce(&mut Tsdb, u64, u64) -> T) -> T {
    node.local(|t, at| f(t, at.term, at.index))
}

async fn timed<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("{what}: nothing within {limit:?}"))?
        .map_err(|e| format!("{what}: {e}"))
}

async fn handle(conn: TcpStream, node: &NodeHandle<Tsdb>, limits: &Limits) -> Result<(), String> {
    let mut r = BufReader::new(conn);
    let mut head = [0u8; 2];
    timed(
        limits.header_timeout,
        "reading the header",
        r.read_exact(&mut head),
    )
    .await?;
    if head[0] != MUX_HEADER {
        return Err(format!("unknown mux header {}", head[0]));
    }
    let typ = match RequestType::from_u8(head[1]) {
        Some(RequestType::SeriesFileBackup) | None => {
            return Err(format!("request type {} is not served", head[1]));
        }
        Some(t) => t,
    };
    if typ == RequestType::ShardUpdate {
        return super::restore::shard_update(r, node, limits).await;
    }
    let mut line = Vec::new();
    let mut limited = (&mut r).take(limits.max_json as u64 + 1);
    timed(
        limits.header_timeout,
        "reading the request",
        limited.read_until(b'\n', &mut line),
    )
    .await?;
    if line.last() != Some(&b'\n') {
        return Err(format!(
            "request JSON missing its newline or over {} bytes",
            limits.max_json
        ));
    }
    let req: Request =
        serde_json::from_slice(&line).map_err(|e| format!("bad request JSON: {e}"))?;
    debug!(?typ, ?req, "snapshotter request");
    match typ {
        RequestType::MetaStoreUpdate => {
            return super::restore::metastore_update(r, node, limits, &req).await;
        }
        RequestType::MetastoreBackup => {
            let blob = with_tsdb(node, |t, term, index| t.meta().backup_blob(term, index));
            r.into_inner()
                .write_all(&blob)
                .await
                .map_err(|e| e.to_string())?;
        }
        RequestType::DatabaseInfo | RequestType::RetentionPolicyInfo => {
            let rp = if typ == RequestType::RetentionPolicyInfo {
                if req.BackupDatabase.is_empty() || req.BackupRetentionPolicy.is_empty() {
                    return Err(
                        "retention policy info needs a database and a retention policy".into(),
                    );
                }
                req.BackupRetentionPolicy.as_str()
            } else {
                ""
            };
            let paths = with_tsdb(node, |t, _, _| {
                if !req.BackupDatabase.is_empty() && !t.meta().has_database(&req.BackupDatabase) {
                    return Err(format!("database not found: {}", req.BackupDatabase));
                }
                if !rp.is_empty() {
                    t.meta()
                        .resolve_rp(&req.BackupDatabase, rp)
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(t.shard_paths(&req.BackupDatabase, rp))
            })?;
            let mut body = serde_json::to_vec(&serde_json::json!({ "Paths": paths }))
                .map_err(|e| e.to_string())?;
            body.push(b'\n');
            r.into_inner()
                .write_all(&body)
                .await
                .map_err(|e| e.to_string())?;
        }
        RequestType::ShardBackup => shard_backup(r.into_inner(), node, &req).await?,
        RequestType::ShardExport => shard_export(r.into_inner(), node, &req).await?,
        RequestType::SeriesFileBackup | RequestType::ShardUpdate => {}
    }
    Ok(())
}

fn tar_header(size: u64, mtime: SystemTime) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(
        mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    h.set_cksum();
    h
}

/// One file of a shard tar.
struct TarFile {
    /// `db/rp/id/name`.
    path: String,
    file: std::fs::File,
    size: u64,
    mtime: SystemTime,
    /// crc32c recorded when the file was written (`None`: not recorded).
    crc32c: Option<u32>,
}

/// Re-reads every file that has a recorded crc32c and compares; the files
/// that differ, described. A backup never ships a damaged file.
fn damaged(files: &[TarFile]) -> Vec<String> {
    use crate::snapshot::integrity::{Pace, check_open};
    let mut pace = Pace::new(0);
    files
        .iter()
        .filter_map(|f| {
            let p = check_open(&f.file, f.size, f.crc32c?, &mut pace, &|| false)?;
            Some(format!("{}: {p}", f.path))
        })
        .collect()
}

/// Writes `files` as a tar (with its trailer) to the connection, then
/// closes it.
fn send_tar(out: SyncIoBridge<TcpStream>, files: Vec<TarFile>) -> Result<(), String> {
    let mut tb = tar::Builder::new(out);
    for mut f in files {
        let mut h = tar_header(f.size, f.mtime);
        tb.append_data(&mut h, &f.path, &mut f.file)
            .map_err(|e| format!("tar {}: {e}", f.path))?;
    }
    let mut out = tb.into_inner().map_err(|e| e.to_string())?;
    std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
    out.shutdown().map_err(|e| e.to_string())
}

/// Runs `f` on a blocking thread: shard requests flush a cache and read
/// files, which must not hold up the async workers (and the raft loop).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

/// Type 0: a tar of the shard's TSM files (after a flush); with `Since`,
/// only files modified after it, comparing file mtimes as InfluxDB does.
async fn shard_backup(
    conn: TcpStream,
    node: &NodeHandle<Tsdb>,
    req: &Request,
) -> Result<(), String> {
    let since = parse_time(&req.Since)?.and_then(|ns| match u64::try_from(ns) {
        Ok(n) => SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(n)),
        Err(_) => SystemTime::UNIX_EPOCH.checked_sub(Duration::from_nanos(ns.unsigned_abs())),
    });
    let (id, node) = (req.ShardID, node.clone());
    let out = SyncIoBridge::new(conn);
    blocking(move || {
        // Files are opened under the lock: an open handle keeps a file
        // readable even if a merge removes it afterwards. A file with
        // deletes (tombstones) is sent rewritten without the deleted
        // points, so that a restore, by tsnode or influxd, never brings
        // them back: those are noted, to be written after the lock.
        type Rewrite = (usize, crate::tsdb::shard::ShardFile, std::path::PathBuf);
        let (mut files, rewrites) = with_tsdb(
            &node,
            |t, _, _| -> Result<(Vec<TarFile>, Vec<Rewrite>), String> {
                let (db, rp, files) = t
                    .shard_files(id)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("shard {id} not found"))?;
                let mut out = Vec::new();
                let mut rewrites = Vec::new();
                for f in files {
                    let open = || -> std::io::Result<(std::fs::File, SystemTime)> {
                        let file = std::fs::File::open(&f.path)?;
                        let mut mtime = file.metadata()?.modified()?;
                        // Changed when its deletes changed.
                        if let Some(t) = f.tombstone() {
                            mtime = mtime.max(std::fs::metadata(&t.path)?.modified()?);
                        }
                        Ok((file, mtime))
                    };
                    let (file, mtime) =
                        open().map_err(|e| format!("{}: {e}", f.path.display()))?;
                    if since.is_none_or(|s| mtime > s) {
                        if f.tombstone().is_some() {
                            let tmp = t.scratch_path(&format!("backup-{id}"));
                            rewrites.push((out.len(), f.clone(), tmp));
                        }
                        out.push(TarFile {
                            path: format!("{db}/{rp}/{id}/{}", f.name),
                            file,
                            size: f.size,
                            mtime,
                            crc32c: Some(f.crc32c),
                        });
                    }
                }
                Ok((out, rewrites))
            },
        )?;
        let bad = damaged(&files);
        if !bad.is_empty() {
            node.report_damage("a backup", bad.clone());
            return Err(format!(
                "shard {id} not sent: its files fail their checksums ({}); the node repairs them from a replica, try again later",
                bad.join("; ")
            ));
        }
        let mut empty = Vec::new();
        for (i, f, tmp) in rewrites {
            let m = crate::tsdb::shard::write_merged(std::slice::from_ref(&f), &tmp, i64::MIN, i64::MAX);
            // Open, the file stays readable once its name is gone.
            let opened = m.and_then(|m| {
                let file = std::fs::File::open(&tmp).map_err(|source| crate::tsdb::tsm::TsmError::Io {
                    op: "open",
                    path: tmp.clone(),
                    source,
                })?;
                Ok((m, file))
            });
            let _ = std::fs::remove_file(&tmp);
            let (m, file) = opened.map_err(|e| format!("backup of shard {id}: {e}"))?;
            if m.values == 0 {
                empty.push(i);
                continue;
            }
            files[i].file = file;
            files[i].size = m.size;
            // Written just now from blocks whose CRCs were checked.
            files[i].crc32c = None;
        }
        let files = files
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !empty.contains(i))
            .map(|(_, f)| f)
            .collect();
        send_tar(out, files)
    })
    .await
}

/// Type 5: the points of the shard within `[ExportStart, ExportEnd]`
/// (unset ends are open), merged into one TSM file in the scratch
/// directory, sent as a tar with one entry and removed.
async fn shard_export(
    conn: TcpStream,
    node: &NodeHandle<Tsdb>,
    req: &Request,
) -> Result<(), String> {
    let min = parse_time(&req.ExportStart)?.unwrap_or(i64::MIN);
    let max = parse_time(&req.ExportEnd)?.unwrap_or(i64::MAX);
    let (id, node) = (req.ShardID, node.clone());
    let out = SyncIoBridge::new(conn);
    blocking(move || {
        let (db, rp, files, tmp) = with_tsdb(&node, |t, _, _| {
            let tmp = t.scratch_path(&format!("export-{id}"));
            t.shard_files(id)
                .map(|o| o.map(|(db, rp, files)| (db, rp, files, tmp)))
        })
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("shard {id} not found"))?;
        struct Remove<'a>(&'a std::path::Path);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(self.0);
            }
        }
        let _rm = Remove(&tmp);
        let merged = crate::tsdb::shard::write_merged(&files, &tmp, min, max)
            .map_err(|e| format!("export of shard {id}: {e}"))?;
        let mut entries = Vec::new();
        if merged.values > 0 {
            entries.push(TarFile {
                path: format!("{db}/{rp}/{id}/000000001-000000001.tsm"),
                file: std::fs::File::open(&tmp).map_err(|e| e.to_string())?,
                size: merged.size,
                mtime: SystemTime::now(),
                // Written just now from blocks whose CRCs were checked.
                crc32c: None,
            });
        }
        send_tar(out, entries)
    })
    .await
}
