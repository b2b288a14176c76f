//! The InfluxDB 1.x snapshotter service (reference/influx.md §1), on its own
//! TCP port: a mux byte `3`, a request-type byte, then (types 0–6) one JSON
//! request line. Input is bounded: 30 s for the header, 64 KiB of JSON.
//!
//! Served so far: 1 MetastoreBackup, 3 DatabaseInfo, 4 RetentionPolicyInfo
//! and 0 ShardBackup (a tar of the shard's TSM files, `Since` comparing file
//! mtimes as InfluxDB does), which is what `influxd backup -portable` uses.
//! Other types are logged and the connection closed (as InfluxDB does for
//! type 2); export and restore (5, 6, 7) are still to come. A follower
//! serves from its local files.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::raft::NodeHandle;
use crate::tsdb::fsm::Tsdb;
use crate::tsdb::timefmt::parse_rfc3339;

/// The only mux header the snapshotter answers.
pub const MUX_HEADER: u8 = 3;
/// Limits of the service.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the header and the JSON request (30 s).
    pub header_timeout: Duration,
    /// Largest JSON request (64 KiB).
    pub max_json: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            max_json: 64 << 10,
        }
    }
}

/// A request as `influxd backup` sends it (Go field names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[allow(non_snake_case, missing_docs)]
pub struct Request {
    pub Type: u8,
    pub BackupDatabase: String,
    pub RestoreDatabase: String,
    pub BackupRetentionPolicy: String,
    pub RestoreRetentionPolicy: String,
    pub ShardID: u64,
    pub Since: String,
    pub ExportStart: String,
    pub ExportEnd: String,
    pub UploadSize: u64,
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
        let (node, limits) = (node.clone(), limits.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(conn, &node, &limits).await {
                warn!(%peer, error = %e, "snapshotter request refused; connection closed");
            }
        });
    }
}

async fn handle(conn: TcpStream, node: &NodeHandle<Tsdb>, limits: &Limits) -> Result<(), String> {
    let mut r = BufReader::new(conn);
    let mut head = [0u8; 2];
    tokio::time::timeout(limits.header_timeout, r.read_exact(&mut head))
        .await
        .map_err(|_| "no header within the timeout".to_string())?
        .map_err(|e| format!("reading the header: {e}"))?;
    if head[0] != MUX_HEADER {
        return Err(format!("unknown mux header {}", head[0]));
    }
    let typ = head[1];
    if typ > 6 {
        return Err(format!("request type {typ} is not served"));
    }
    let mut line = Vec::new();
    let mut limited = (&mut r).take(limits.max_json as u64 + 1);
    let read = tokio::time::timeout(limits.header_timeout, limited.read_until(b'\n', &mut line));
    read.await
        .map_err(|_| "no request within the timeout".to_string())?
        .map_err(|e| e.to_string())?;
    if line.last() != Some(&b'\n') {
        return Err(format!(
            "request JSON missing its newline or over {} bytes",
            limits.max_json
        ));
    }
    let req: Request =
        serde_json::from_slice(&line).map_err(|e| format!("bad request JSON: {e}"))?;
    debug!(typ, ?req, "snapshotter request");
    let mut conn = r.into_inner();
    match typ {
        1 => {
            let blob = {
                let g = node
                    .executor()
                    .state_machine()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                g.state_machine
                    .inner
                    .meta()
                    .backup_blob(g.applied.last_included_term, g.applied.last_included_index)
            };
            conn.write_all(&blob).await.map_err(|e| e.to_string())?;
        }
        3 | 4 => {
            let rp = if typ == 4 {
                req.BackupRetentionPolicy.as_str()
            } else {
                ""
            };
            if typ == 4 && (req.BackupDatabase.is_empty() || rp.is_empty()) {
                return Err("retention policy info needs a database and a retention policy".into());
            }
            let paths = {
                let g = node
                    .executor()
                    .state_machine()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                g.state_machine.inner.shard_paths(&req.BackupDatabase, rp)
            };
            let mut body = serde_json::to_vec(&serde_json::json!({ "Paths": paths }))
                .map_err(|e| e.to_string())?;
            body.push(b'\n');
            conn.write_all(&body).await.map_err(|e| e.to_string())?;
        }
        0 => shard_backup(conn, node, &req).await?,
        t => return Err(format!("request type {t} is not served yet")),
    }
    Ok(())
}

async fn shard_backup(
    conn: TcpStream,
    node: &NodeHandle<Tsdb>,
    req: &Request,
) -> Result<(), String> {
    let since = match req.Since.as_str() {
        "" => None,
        s => Some(parse_rfc3339(s).ok_or_else(|| format!("bad Since {s:?}"))?),
    };
    let backup = {
        let mut g = node
            .executor()
            .state_machine()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        g.state_machine
            .inner
            .open_shard_files(req.ShardID)
            .map_err(|e| e.to_string())?
    }
    .ok_or_else(|| format!("shard {} not found", req.ShardID))?;
    // `Since` as a file time (Go's zero time, sent without -since, is long
    // before any file).
    let since = since.and_then(|ns| match u64::try_from(ns) {
        Ok(n) => SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(n)),
        Err(_) => SystemTime::UNIX_EPOCH.checked_sub(Duration::from_nanos(ns.unsigned_abs())),
    });
    let id = req.ShardID;
    let out = tokio_util::io::SyncIoBridge::new(conn);
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut tb = tar::Builder::new(out);
        let mut files = backup.files;
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, mut file, mtime, size) in files {
            if since.is_some_and(|s| mtime <= s) {
                continue;
            }
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(
                mtime
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            );
            h.set_cksum();
            let path = format!("{}/{}/{id}/{name}", backup.db, backup.rp);
            tb.append_data(&mut h, &path, &mut file)
                .map_err(|e| format!("tar {path}: {e}"))?;
        }
        let mut out = tb.into_inner().map_err(|e| e.to_string())?;
        std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
        out.shutdown().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
