//! A blocking client of the snapshotter protocol (reference/influx.md §1),
//! speaking to tsnode or to a real `influxd`: one connection per request,
//! replies read to EOF. An empty reply is the server refusing (its log
//! says why).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::wire::{self, BACKUP_MAGIC, Request, RequestType};

/// An error talking to a snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or moving bytes failed.
    #[error("{what} ({host}): {source}")]
    Io {
        /// The request.
        what: String,
        /// The server.
        host: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered nothing or something malformed.
    #[error("{what} ({host}): {reason}")]
    Reply {
        /// The request.
        what: String,
        /// The server.
        host: String,
        /// What was wrong.
        reason: String,
    },
}

/// A snapshotter at `host:port`.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    timeout: Duration,
}

/// The point counts a tsnode server reports for a shard upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadAck {
    /// Values written.
    pub written: u64,
    /// Values refused (type conflicts, NaN).
    pub dropped: u64,
}

impl Client {
    /// A client; `timeout` bounds connecting and each read or write.
    pub fn new(host: &str, timeout: Duration) -> Self {
        Self {
            host: host.to_string(),
            timeout,
        }
    }

    fn io(&self, what: &str) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
        let what = what.to_string();
        move |source| ClientError::Io {
            what,
            host: self.host.clone(),
            source,
        }
    }

    fn bad(&self, what: &str, reason: impl Into<String>) -> ClientError {
        ClientError::Reply {
            what: what.to_string(),
            host: self.host.clone(),
            reason: reason.into(),
        }
    }

    fn connect(&self, what: &str, header: &[u8]) -> Result<TcpStream, ClientError> {
        let addr = self
            .host
            .to_socket_addrs()
            .map_err(self.io(what))?
            .next()
            .ok_or_else(|| self.bad(what, "the host resolves to no address"))?;
        let mut c = TcpStream::connect_timeout(&addr, self.timeout).map_err(self.io(what))?;
        c.set_read_timeout(Some(self.timeout))
            .and_then(|_| c.set_write_timeout(Some(self.timeout)))
            .map_err(self.io(what))?;
        c.write_all(header).map_err(self.io(what))?;
        Ok(c)
    }

    fn small_reply(&self, what: &str, req: &Request, limit: u64) -> Result<Vec<u8>, ClientError> {
        let c = self.connect(what, &req.encode())?;
        let mut out = Vec::new();
        c.take(limit + 1)
            .read_to_end(&mut out)
            .map_err(self.io(what))?;
        if out.is_empty() {
            return Err(self.bad(what, "the server closed without a reply (see its log)"));
        }
        if out.len() as u64 > limit {
            return Err(self.bad(what, format!("reply over {limit} bytes")));
        }
        Ok(out)
    }

    /// Type 1: the server's `meta.Data` bytes.
    pub fn metastore(&self) -> Result<Vec<u8>, ClientError> {
        let what = "metastore backup";
        let req = Request {
            Type: RequestType::MetastoreBackup as u8,
            ..Default::default()
        };
        let b = self.small_reply(what, &req, 1 << 30)?;
        wire::decode_metastore_reply(&b)
            .map(<[u8]>::to_vec)
            .map_err(|e| self.bad(what, e))
    }

    /// Types 3/4: `db/rp/id` paths of the shards of `db` (all when empty),
    /// or of one retention policy.
    pub fn shard_paths(&self, db: &str, rp: &str) -> Result<Vec<String>, ClientError> {
        let (what, typ) = if rp.is_empty() {
            ("database info", RequestType::DatabaseInfo)
        } else {
            ("retention policy info", RequestType::RetentionPolicyInfo)
        };
        let req = Request {
            Type: typ as u8,
            BackupDatabase: db.into(),
            BackupRetentionPolicy: rp.into(),
            ..Default::default()
        };
        let b = self.small_reply(what, &req, 64 << 20)?;
        #[derive(serde::Deserialize)]
        struct Paths {
            #[serde(rename = "Paths")]
            paths: Option<Vec<String>>,
        }
        let p: Paths = serde_json::from_slice(&b).map_err(|e| self.bad(what, e.to_string()))?;
        Ok(p.paths.unwrap_or_default())
    }

    /// Types 0/5: streams a shard's tar into `out`; with `range` an export
    /// of `[start, end]`, else a backup of files modified after `since`.
    /// Returns the tar's size; fails unless the tar ended with its trailer.
    pub fn shard_tar(
        &self,
        db: &str,
        rp: &str,
        id: u64,
        since: Option<i64>,
        range: Option<(i64, i64)>,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        let what = format!("shard {id} backup");
        let mut req = Request {
            Type: RequestType::ShardBackup as u8,
            BackupDatabase: db.into(),
            BackupRetentionPolicy: rp.into(),
            ShardID: id,
            ..Default::default()
        };
        if let Some(s) = since {
            req.Since = wire::format_time(s);
        }
        if let Some((start, end)) = range {
            req.Type = RequestType::ShardExport as u8;
            req.ExportStart = wire::format_time(start);
            req.ExportEnd = wire::format_time(end);
        }
        let mut c = self.connect(&what, &req.encode())?;
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        // The last 1024 bytes seen: a complete tar ends with two zero blocks.
        let mut tail = [1u8; 1024];
        loop {
            let n = c.read(&mut buf).map_err(self.io(&what))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(self.io(&what))?;
            total += n as u64;
            if n >= 1024 {
                tail.copy_from_slice(&buf[n - 1024..n]);
            } else {
                tail.copy_within(n.., 0);
                tail[1024 - n..].copy_from_slice(&buf[..n]);
            }
        }
        if total == 0 {
            return Err(self.bad(&what, "the server closed without a reply (see its log)"));
        }
        if !total.is_multiple_of(512) || tail.iter().any(|b| *b != 0) {
            return Err(self.bad(
                &what,
                format!("the tar ended after {total} bytes without its trailer (server error?)"),
            ));
        }
        Ok(total)
    }

    /// Type 6: imports `meta` (raw `meta.Data`) with renames; the ID map
    /// (old → new shard). An empty map is a refusal (e.g. the database
    /// exists), reported as an error.
    pub fn import_metastore(
        &self,
        meta: &[u8],
        db: &str,
        newdb: &str,
        rp: &str,
        newrp: &str,
    ) -> Result<Vec<(u64, u64)>, ClientError> {
        let what = "metastore import";
        let req = Request {
            Type: RequestType::MetaStoreUpdate as u8,
            BackupDatabase: db.into(),
            RestoreDatabase: newdb.into(),
            BackupRetentionPolicy: rp.into(),
            RestoreRetentionPolicy: newrp.into(),
            UploadSize: meta.len() as u64,
            ..Default::default()
        };
        let mut c = self.connect(what, &req.encode())?;
        c.write_all(meta).map_err(self.io(what))?;
        let mut out = Vec::new();
        c.take(64 << 20)
            .read_to_end(&mut out)
            .map_err(self.io(what))?;
        if out.is_empty() {
            return Err(self.bad(what, "the server closed without a reply (see its log)"));
        }
        let map = wire::decode_id_map(&out).map_err(|e| self.bad(what, e))?;
        if map.is_empty() {
            return Err(self.bad(
                what,
                "metadata not changed: the database may already exist, or the backup holds no shards (see the server's log)",
            ));
        }
        Ok(map)
    }

    /// Type 7: uploads a tar (entries already named `db/rp/<new_id>/…`) into
    /// shard `new_id`, then waits for the server to close. A tsnode server
    /// answers once the values are applied, with the counts; a real
    /// influxd answers nothing (`None`) and applies on its own.
    pub fn upload_shard(
        &self,
        new_id: u64,
        write_tar: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<Option<UploadAck>, ClientError> {
        let what = format!("shard {new_id} upload");
        let mut head = vec![wire::MUX_HEADER, RequestType::ShardUpdate as u8];
        head.extend(new_id.to_be_bytes());
        let mut c = self.connect(&what, &head)?;
        {
            let mut w = std::io::BufWriter::with_capacity(256 << 10, &mut c);
            write_tar(&mut w).map_err(self.io(&what))?;
            w.flush().map_err(self.io(&what))?;
        }
        c.shutdown(Shutdown::Write).map_err(self.io(&what))?;
        // Applying takes as long as it takes: wait for the answer without
        // the per-read timeout, the server bounds its own work.
        c.set_read_timeout(None).map_err(self.io(&what))?;
        let mut out = Vec::new();
        match (&c).take(8192).read_to_end(&mut out) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && out.is_empty() => {}
            Err(e) => return Err(self.io(&what)(e)),
        }
        if out.is_empty() {
            return Ok(None);
        }
        let u = |i: usize| {
            out.get(i..i + 8)
                .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
        };
        if u(0) == super::restore::UPLOAD_ERROR_MAGIC {
            let msg = String::from_utf8_lossy(out.get(16..).unwrap_or_default());
            return Err(self.bad(&what, format!("the server refused it: {msg}")));
        }
        if out.len() != 24 || u(0) != BACKUP_MAGIC {
            return Err(self.bad(&what, format!("unexpected {}-byte answer", out.len())));
        }
        Ok(Some(UploadAck {
            written: u(8),
            dropped: u(16),
        }))
    }
}
