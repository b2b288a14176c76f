//! `RemoteFileCopier`: pulls a snapshot from a peer's `FileService` into
//! `download/`, then commits it as `snapshot_<index>`.
//!
//! For each file of the remote meta table, a local copy with the same name,
//! size and crc32c is reused by hard link (from the latest local snapshot or
//! the caller's live data); a partial file left in `download/` by an earlier
//! attempt is resumed from its length; everything else is streamed, several
//! files at once. Every chunk's crc32c is checked on arrival and every file's
//! crc32c is checked at its end; a file that fails is fetched once more, then
//! the install fails and nothing is committed. Files and directories are
//! fsynced, the meta table is written last, and `download/` is renamed into
//! place in one step.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::proto::file::file_service_client::FileServiceClient;
use crate::proto::file::{GetFileRequest, GetMetaRequest};
use crate::proto::snapshot::{FileMeta, SnapshotMetaTable};
use crate::snapshot::bulk::{BulkFailure, BulkFetch};
use crate::snapshot::direct_io::ChunkWriter;
use crate::snapshot::error::{IoContext, SnapshotError};
use crate::snapshot::file_service::MAX_MESSAGE_BYTES;
use crate::snapshot::fsutil::{
    IO_BUF, fsync_dir, fsync_dirs_bottom_up, fsync_files, remove_dir_atomically,
    write_file_atomically,
};
use crate::snapshot::meta_table::{self, META_FILE};
use crate::snapshot::reader::SnapshotReader;
use crate::snapshot::storage::{
    DOWNLOAD_DIR, DOWNLOAD_META_FILE, LocalSnapshotStorage, download_table, failpoint,
};
use crate::snapshot::throttle::SnapshotThrottle;

/// The failpoints between the durable steps of an install, in order.
pub const INSTALL_FAILPOINTS: &[&str] = &[
    "install_after_prepare",
    "install_after_files",
    "install_after_meta",
];

/// Options of a [`RemoteFileCopier`].
#[derive(Debug, Clone)]
pub struct CopierOptions {
    /// Files streamed at once (`install_parallel_files`, default 4).
    pub parallel_files: usize,
    /// Fetch files as bulk streams (plain TCP, `sendfile` on the sender)
    /// when TLS between nodes is off, else over gRPC (default true).
    pub bulk: bool,
    /// Requested chunk size (`install_chunk_bytes`, default 1 MiB).
    pub chunk_bytes: u32,
    /// A stream with no data for this long is abandoned (default 30 s).
    pub idle_timeout: Duration,
    /// Connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Transport failures tolerated per file, each resumed at its offset
    /// (default 3).
    pub transport_retries: u32,
}

impl Default for CopierOptions {
    fn default() -> Self {
        Self {
            parallel_files: 4,
            bulk: true,
            chunk_bytes: 1 << 20,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            transport_retries: 3,
        }
    }
}

/// Finds a local file with given content (the live data of the state
/// machine), so an install can hard-link it instead of fetching it.
pub trait LocalFileLookup: Send + Sync {
    /// A path to an immutable file named `name` with this size and crc32c.
    fn find(&self, name: &str, size: u64, crc32c: u32) -> Option<PathBuf>;
}

/// Progress and counters of one install, readable while it runs.
#[derive(Debug, Default)]
pub struct InstallProgress {
    /// Snapshot index.
    pub index: AtomicU64,
    /// Bytes of the snapshot.
    pub bytes_total: AtomicU64,
    /// Bytes in place so far (reused, resumed or fetched).
    pub bytes_done: AtomicU64,
    /// Bytes fetched over the network (counted once written).
    pub fetched_bytes: AtomicU64,
    /// Bytes reused by hard link from local files.
    pub reused_bytes: AtomicU64,
    /// Bytes of partial files in `download/` kept from an earlier attempt.
    pub resumed_bytes: AtomicU64,
    /// Files fetched again after a crc32c mismatch.
    pub refetched_files: AtomicU64,
    /// Bulk streams asked of a peer that serves none (the file then came
    /// over gRPC).
    pub bulk_refused: AtomicU64,
}

/// A plain copy of [`InstallProgress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProgressSnapshot {
    /// Snapshot index.
    pub index: u64,
    /// Bytes of the snapshot.
    pub bytes_total: u64,
    /// Bytes in place so far.
    pub bytes_done: u64,
    /// Bytes fetched over the network.
    pub fetched_bytes: u64,
    /// Bytes reused by hard link.
    pub reused_bytes: u64,
    /// Bytes kept from an earlier attempt.
    pub resumed_bytes: u64,
    /// Files fetched again after a crc32c mismatch.
    pub refetched_files: u64,
    /// Bulk streams asked of a peer that serves none.
    pub bulk_refused: u64,
}

impl InstallProgress {
    /// Reads every counter.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProgressSnapshot {
            index: g(&self.index),
            bytes_total: g(&self.bytes_total),
            bytes_done: g(&self.bytes_done),
            fetched_bytes: g(&self.fetched_bytes),
            reused_bytes: g(&self.reused_bytes),
            resumed_bytes: g(&self.resumed_bytes),
            refetched_files: g(&self.refetched_files),
            bulk_refused: g(&self.bulk_refused),
        }
    }

    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// `raftsnap://<host:port>/<reader_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotUri {
    /// `host:port` of the peer's gRPC server.
    pub addr: String,
    /// The reader id registered on that peer.
    pub reader_id: u64,
}

impl SnapshotUri {
    /// Parses `raftsnap://host:port/reader_id`.
    pub fn parse(uri: &str) -> Result<Self, SnapshotError> {
        let bad = |reason| SnapshotError::BadUri {
            uri: uri.to_string(),
            reason,
        };
        let rest = uri
            .strip_prefix("raftsnap://")
            .ok_or_else(|| bad("must start with raftsnap://"))?;
        let (addr, id) = rest
            .rsplit_once('/')
            .ok_or_else(|| bad("missing /<reader_id>"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("address must be host:port"))?;
        if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
            return Err(bad("address must be host:port"));
        }
        let reader_id = id.parse().map_err(|_| bad("reader id must be a number"))?;
        Ok(Self {
            addr: addr.to_string(),
            reader_id,
        })
    }
}

impl std::fmt::Display for SnapshotUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raftsnap://{}/{}", self.addr, self.reader_id)
    }
}

/// How a file will be put in place.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Already there and verified (or linked).
    Ready,
    /// Stream from `offset`; `crc` is the crc32c of the bytes before it.
    Fetch { offset: u64, crc: u32 },
}

/// Pulls snapshots from peers into a [`LocalSnapshotStorage`].
pub struct RemoteFileCopier {
    storage: LocalSnapshotStorage,
    opts: CopierOptions,
    throttle: Arc<SnapshotThrottle>,
    lookup: Option<Arc<dyn LocalFileLookup>>,
    /// Peers found serving no bulk streams, and when: their files come
    /// over gRPC without asking again until [`ASK_BULK_AGAIN`] has passed.
    without_bulk: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

/// How long a peer found without bulk streams is not asked for them.
const ASK_BULK_AGAIN: Duration = Duration::from_secs(60);

impl std::fmt::Debug for RemoteFileCopier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFileCopier")
            .field("root", &self.storage.root())
            .field("opts", &self.opts)
            .finish()
    }
}

fn rpc_err(peer: &str, what: String, status: tonic::Status) -> SnapshotError {
    SnapshotError::Rpc {
        peer: peer.to_string(),
        what,
        status: Box::new(status),
    }
}

/// Errors worth another try at the same offset.
fn is_transient(e: &SnapshotError) -> bool {
    use tonic::Code;
    match e {
        SnapshotError::Rpc { status, .. } => matches!(
            status.code(),
            Code::Unavailable
                | Code::Unknown
                | Code::Aborted
                | Code::Internal
                | Code::Cancelled
                | Code::DeadlineExceeded
        ),
        SnapshotError::Connect { .. } | SnapshotError::IdleTimeout { .. } => true,
        SnapshotError::Protocol { reason, .. } => reason.starts_with("transient:"),
        _ => false,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, SnapshotError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SnapshotError::Io {
            op: "join blocking task",
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })?
}

impl RemoteFileCopier {
    /// A copier into `storage`'s `download/`.
    pub fn new(
        storage: LocalSnapshotStorage,
        opts: CopierOptions,
        throttle: Arc<SnapshotThrottle>,
    ) -> Self {
        Self {
            storage,
            opts,
            throttle,
            lookup: None,
            without_bulk: Arc::default(),
        }
    }

    /// Also reuse matching files of the live data found by `lookup`.
    pub fn with_lookup(mut self, lookup: Arc<dyn LocalFileLookup>) -> Self {
        self.lookup = Some(lookup);
        self
    }

    async fn connect(
        &self,
        uri: &SnapshotUri,
    ) -> Result<FileServiceClient<Channel>, SnapshotError> {
        let mut ep = Endpoint::from_shared(crate::raft::peer_tls::url(&uri.addr))
            .map_err(|_| SnapshotError::BadUri {
                uri: uri.to_string(),
                reason: "address is not a valid endpoint",
            })?
            .connect_timeout(self.opts.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(2 << 20))
            .initial_connection_window_size(Some(8 << 20))
            // Large frames: far fewer reads and wake-ups per chunk (the
            // default 16 KiB frame costs a syscall per 8-16 KiB).
            .max_frame_size(Some(1 << 20));
        if let Some(tls) = crate::raft::peer_tls::current() {
            ep = ep
                .tls_config(tls.client())
                .map_err(|source| SnapshotError::Connect {
                    peer: uri.addr.clone(),
                    source,
                })?;
        }
        let ch = ep
            .connect()
            .await
            .map_err(|source| SnapshotError::Connect {
                peer: uri.addr.clone(),
                source,
            })?;
        Ok(FileServiceClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Fetches and decodes (crc-checked) the remote meta table.
    pub async fn fetch_meta(&self, uri: &SnapshotUri) -> Result<SnapshotMetaTable, SnapshotError> {
        let mut client = self.connect(uri).await?;
        self.get_meta(&mut client, uri).await
    }

    async fn get_meta(
        &self,
        client: &mut FileServiceClient<Channel>,
        uri: &SnapshotUri,
    ) -> Result<SnapshotMetaTable, SnapshotError> {
        let resp = client
            .get_meta(GetMetaRequest {
                reader_id: uri.reader_id,
            })
            .await
            .map_err(|s| rpc_err(&uri.addr, "GetMeta".into(), s))?;
        meta_table::decode(&resp.into_inner().meta_table).map_err(|source| {
            SnapshotError::RemoteMeta {
                peer: uri.addr.clone(),
                source,
            }
        })
    }

    /// Copies the snapshot at `uri` and commits it; returns a reader on it.
    /// `expected`, when given, must equal the served meta table. On error
    /// nothing is committed; `download/` keeps what was verified for a later
    /// attempt.
    pub async fn copy(
        &self,
        uri: &SnapshotUri,
        expected: Option<&SnapshotMetaTable>,
        progress: &Arc<InstallProgress>,
        cancel: &CancellationToken,
    ) -> Result<SnapshotReader, SnapshotError> {
        self.copy_from(uri, expected, &[], progress, cancel).await
    }

    /// [`copy`](Self::copy), also fetching each file that one of
    /// `alternates` holds (same size and crc32c, under any name) from it:
    /// files go to the least loaded source first, and a file that fails on
    /// one source resumes on the next. Every byte is checked as from `uri`.
    pub async fn copy_from(
        &self,
        uri: &SnapshotUri,
        expected: Option<&SnapshotMetaTable>,
        alternates: &[AlternateSource],
        progress: &Arc<InstallProgress>,
        cancel: &CancellationToken,
    ) -> Result<SnapshotReader, SnapshotError> {
        let mut client = self.connect(uri).await?;
        let table = self.get_meta(&mut client, uri).await?;
        let index = table.meta.as_ref().map_or(0, |m| m.last_included_index);
        if let Some(exp) = expected
            && exp != &table
        {
            return Err(SnapshotError::MetaMismatch {
                peer: uri.addr.clone(),
                served: index,
                expected: exp.meta.as_ref().map_or(0, |m| m.last_included_index),
            });
        }
        let span = info_span!("snapshot_install", snapshot_index = index, peer = %uri.addr);
        async {
            if let Ok(r) = self.storage.open_reader_at(index) {
                return Ok(r);
            }
            progress.index.store(index, Ordering::Relaxed);
            progress
                .bytes_total
                .store(table.files.iter().map(|f| f.size).sum(), Ordering::Relaxed);
            let storage = self.storage.clone();
            let lookup = self.lookup.clone();
            let (t2, p2) = (table.clone(), progress.clone());
            let plans = blocking(move || prepare(&storage, &t2, lookup.as_deref(), &p2)).await?;
            failpoint!("install_after_prepare");
            let dl = self.storage.root().join(DOWNLOAD_DIR);

            let mut sources = vec![uri.clone()];
            sources.extend(alternates.iter().map(|a| a.uri.clone()));
            let jobs: Vec<Job> = plans
                .into_iter()
                .filter_map(|(fm, plan)| match plan {
                    Plan::Ready => None,
                    Plan::Fetch { offset, crc } => {
                        let mut holders = vec![(0, fm.name.clone())];
                        holders.extend(alternates.iter().enumerate().filter_map(|(i, a)| {
                            a.holds(&fm).map(|name| (i + 1, name.to_string()))
                        }));
                        Some(Job {
                            fm,
                            offset,
                            crc,
                            holders,
                        })
                    }
                })
                .collect();
            let mut clients = vec![tokio::sync::OnceCell::new_with(Some(Some(client)))];
            clients.extend(alternates.iter().map(|_| tokio::sync::OnceCell::new()));
            let first_err = self
                .spread(&sources, &clients, jobs, &dl, index, progress, cancel)
                .await;
            if cancel.is_cancelled() {
                return Err(SnapshotError::Cancelled { index });
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            failpoint!("install_after_files");
            let storage = self.storage.clone();
            blocking(move || commit(&storage, &dl, index, table)).await?;
            info!(snapshot_index = index, progress = ?progress.snapshot(), "snapshot installed");
            self.storage.open_reader_at(index)
        }
        .instrument(span)
        .await
    }

    /// Streams one file into place, resuming after transport failures and
    /// fetching it once more after a crc32c mismatch.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_file(
        &self,
        mut client: FileServiceClient<Channel>,
        uri: &SnapshotUri,
        remote: &str,
        index: u64,
        fm: &FileMeta,
        path: &Path,
        mut offset: u64,
        mut crc: u32,
        progress: &Arc<InstallProgress>,
        cancel: &CancellationToken,
    ) -> Result<(), SnapshotError> {
        let mut attempts = 1u32;
        let mut transport_failures = 0u32;
        let p2 = path.to_path_buf();
        let file = Arc::new(std::sync::Mutex::new(
            blocking(move || ChunkWriter::open(&p2, offset).at("open", &p2)).await?,
        ));
        loop {
            let r = if offset < fm.size {
                let t = Target {
                    uri,
                    remote,
                    fm,
                    file: &file,
                    progress,
                    cancel,
                };
                let bulk = if self.bulk_enabled() && self.may_serve_bulk(&uri.addr) {
                    self.stream_bulk(t, &mut offset, &mut crc).await
                } else {
                    Ok(false)
                };
                match bulk {
                    Ok(true) => Ok(()),
                    Ok(false) => self.stream(&mut client, t, &mut offset, &mut crc).await,
                    Err(e) => Err(e),
                }
            } else {
                Ok(())
            };
            match r {
                Ok(()) => {
                    // Synced with the others once all are written.
                    if crc == fm.crc32c {
                        debug!(file = %fm.name, "file verified");
                        return Ok(());
                    }
                    if attempts >= 2 {
                        return Err(SnapshotError::Checksum {
                            peer: uri.addr.clone(),
                            index,
                            file: fm.name.clone(),
                            expected: fm.crc32c,
                            actual: crc,
                            attempts,
                        });
                    }
                    warn!(file = %fm.name, expected = fm.crc32c, actual = crc, "crc32c mismatch; fetching the file again");
                    attempts += 1;
                    InstallProgress::add(&progress.refetched_files, 1);
                    progress.bytes_done.fetch_sub(fm.size, Ordering::Relaxed);
                    file.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .set_len(0)
                        .at("truncate", path)?;
                    offset = 0;
                    crc = 0;
                }
                Err(e) if is_transient(&e) && transport_failures < self.opts.transport_retries => {
                    transport_failures += 1;
                    warn!(file = %fm.name, offset, error = %e, "transfer interrupted; resuming");
                    let backoff = Duration::from_millis(200 * u64::from(transport_failures));
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(SnapshotError::Cancelled { index }),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether files are fetched as bulk streams (plain TCP only).
    fn bulk_enabled(&self) -> bool {
        self.opts.bulk && crate::raft::peer_tls::current().is_none()
    }

    /// Whether `peer` may serve bulk streams: not found without them in
    /// the last [`ASK_BULK_AGAIN`].
    fn may_serve_bulk(&self, peer: &str) -> bool {
        let mut known = self.without_bulk.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(peer) {
            Some(at) if at.elapsed() < ASK_BULK_AGAIN => false,
            Some(_) => {
                known.remove(peer);
                true
            }
            None => true,
        }
    }

    /// One bulk stream from `offset` to the end (or an error). `Ok(false)`
    /// when the peer does not serve bulk streams: nothing was fetched.
    async fn stream_bulk(
        &self,
        t: Target<'_>,
        offset: &mut u64,
        crc: &mut u32,
    ) -> Result<bool, SnapshotError> {
        let (uri, remote, fm) = (t.uri, t.remote, t.fm);
        let index = t.progress.index.load(Ordering::Relaxed);
        let (addr, name, reader_id, size) =
            (uri.addr.clone(), remote.to_string(), uri.reader_id, fm.size);
        let (file, progress, cancel) = (t.file.clone(), t.progress.clone(), t.cancel.clone());
        let (throttle, handle) = (self.throttle.clone(), tokio::runtime::Handle::current());
        let opts = self.opts.clone();
        let (mut o, mut c) = (*offset, *crc);
        let (o, c, r) = tokio::task::spawn_blocking(move || {
            let mut out = file.lock().unwrap_or_else(|p| p.into_inner());
            let fetch = BulkFetch {
                addr: &addr,
                reader_id,
                name: &name,
                size,
                chunk_bytes: opts.chunk_bytes as usize,
                connect_timeout: opts.connect_timeout,
                idle_timeout: opts.idle_timeout,
                cancel: &cancel,
                throttle: Some((&throttle, handle)),
            };
            let r = fetch.run(&mut out, &mut o, &mut c, &mut |n| {
                InstallProgress::add(&progress.bytes_done, n);
                InstallProgress::add(&progress.fetched_bytes, n);
            });
            (o, c, r)
        })
        .await
        .map_err(|e| SnapshotError::Io {
            op: "join bulk fetch",
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })?;
        *offset = o;
        *crc = c;
        let peer = || uri.addr.clone();
        match r {
            Ok(()) => Ok(true),
            Err(BulkFailure::Unsupported) => {
                debug!(peer = %uri.addr, "no bulk streams there; fetching over gRPC");
                InstallProgress::add(&t.progress.bulk_refused, 1);
                self.without_bulk
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(uri.addr.clone(), std::time::Instant::now());
                Ok(false)
            }
            Err(BulkFailure::Refused(status)) => Err(rpc_err(
                &uri.addr,
                format!("bulk fetch of {remote}"),
                status,
            )),
            Err(BulkFailure::Interrupted(reason)) => Err(SnapshotError::Protocol {
                peer: peer(),
                file: fm.name.clone(),
                reason: format!("transient: {reason}"),
            }),
            Err(BulkFailure::Idle(after)) => Err(SnapshotError::IdleTimeout {
                peer: peer(),
                file: fm.name.clone(),
                after,
            }),
            Err(BulkFailure::Cancelled) => Err(SnapshotError::Cancelled { index }),
            Err(BulkFailure::Write(source)) => Err(SnapshotError::Io {
                op: "write",
                path: PathBuf::from(&fm.name),
                source,
            }),
        }
    }

    /// One GetFile stream from `offset` to the end (or an error).
    async fn stream(
        &self,
        client: &mut FileServiceClient<Channel>,
        t: Target<'_>,
        offset: &mut u64,
        crc: &mut u32,
    ) -> Result<(), SnapshotError> {
        let Target {
            uri,
            remote,
            fm,
            file,
            progress,
            cancel,
        } = t;
        let index = progress.index.load(Ordering::Relaxed);
        let what = || format!("GetFile {}", fm.name);
        let protocol = |reason: String| SnapshotError::Protocol {
            peer: uri.addr.clone(),
            file: fm.name.clone(),
            reason,
        };
        let req = GetFileRequest {
            reader_id: uri.reader_id,
            filename: remote.to_string(),
            offset: *offset,
            chunk_bytes: self.opts.chunk_bytes,
        };
        let mut stream = tokio::select! {
            _ = cancel.cancelled() => return Err(SnapshotError::Cancelled { index }),
            r = client.get_file(req) => r.map_err(|s| rpc_err(&uri.addr, what(), s))?.into_inner(),
        };
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return Err(SnapshotError::Cancelled { index }),
                r = tokio::time::timeout(self.opts.idle_timeout, stream.message()) => r,
            };
            let chunk = match msg {
                Err(_) => {
                    return Err(SnapshotError::IdleTimeout {
                        peer: uri.addr.clone(),
                        file: fm.name.clone(),
                        after: self.opts.idle_timeout,
                    });
                }
                Ok(Err(s)) => return Err(rpc_err(&uri.addr, what(), s)),
                Ok(Ok(None)) if *offset == fm.size => return Ok(()),
                Ok(Ok(None)) => {
                    return Err(protocol(format!(
                        "transient: stream ended at {} of {} bytes",
                        offset, fm.size
                    )));
                }
                Ok(Ok(Some(c))) => c,
            };
            if chunk.offset != *offset {
                return Err(protocol(format!(
                    "chunk at offset {}, expected {}",
                    chunk.offset, offset
                )));
            }
            let n = chunk.data.len() as u64;
            if n == 0 || *offset + n > fm.size {
                return Err(protocol(format!(
                    "chunk of {n} bytes at {} does not fit a file of {} bytes",
                    offset, fm.size
                )));
            }
            let chunk_crc = crc32c::crc32c(&chunk.data);
            if chunk_crc != chunk.crc32c {
                return Err(protocol(format!(
                    "transient: chunk at {offset} failed its crc32c"
                )));
            }
            self.throttle.received(n).await;
            let (f, at, data) = (file.clone(), *offset, chunk.data);
            let path_for_err = fm.name.clone();
            blocking(move || {
                f.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write_at(&data, at)
                    .at("write", Path::new(&path_for_err))
            })
            .await?;
            // The file's crc extends by the chunk's, already computed.
            *crc = crc32c::crc32c_combine(*crc, chunk_crc, n as usize);
            *offset += n;
            InstallProgress::add(&progress.bytes_done, n);
            InstallProgress::add(&progress.fetched_bytes, n);
        }
    }
}

impl RemoteFileCopier {
    /// Fetches `files` into `dir` (a flat set of staged files, not a
    /// snapshot) from any of `sources`, each serving them under its own
    /// id. Files are spread over the sources, the least loaded first; a
    /// file that fails on one source (after its transport retries) is
    /// resumed on the next. A partial file left in `dir` is resumed when
    /// its prefix still matches; every file is checked against its crc32c
    /// and fsynced. Returns the bytes fetched.
    pub async fn fetch_files(
        &self,
        sources: &[SnapshotUri],
        files: &[FileMeta],
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, SnapshotError> {
        if sources.is_empty() && !files.is_empty() {
            return Err(SnapshotError::Protocol {
                peer: String::new(),
                file: files[0].name.clone(),
                reason: "no source holds these files".into(),
            });
        }
        let progress = Arc::new(InstallProgress::default());
        let (d, fs2) = (dir.to_path_buf(), files.to_vec());
        let plans = blocking(move || plan_flat(&d, &fs2)).await?;
        let jobs: Vec<Job> = plans
            .into_iter()
            .filter_map(|(fm, plan)| match plan {
                Plan::Ready => None,
                Plan::Fetch { offset, crc } => Some(Job {
                    holders: (0..sources.len()).map(|i| (i, fm.name.clone())).collect(),
                    fm,
                    offset,
                    crc,
                }),
            })
            .collect();
        let clients: Vec<_> = sources
            .iter()
            .map(|_| tokio::sync::OnceCell::new())
            .collect();
        if let Some(e) = self
            .spread(sources, &clients, jobs, dir, 0, &progress, cancel)
            .await
        {
            return Err(e);
        }
        let d = dir.to_path_buf();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(&f.name)).collect();
        blocking(move || {
            fsync_files(&paths)?;
            fsync_dir(&d)
        })
        .await?;
        Ok(progress.fetched_bytes.load(Ordering::Relaxed))
    }
}

impl RemoteFileCopier {
    /// Fetches `jobs` into `dir`, several files at once, each from the
    /// least loaded of its holders (ties go to the earlier holder); a file
    /// that fails on one holder (after its transport retries) resumes on
    /// the next from its verified prefix. Clients connect lazily; a source
    /// that cannot be reached is skipped. Returns the root error, if any:
    /// for a file every holder failed, the error of its first holder.
    #[allow(clippy::too_many_arguments)]
    async fn spread(
        &self,
        sources: &[SnapshotUri],
        clients: &[tokio::sync::OnceCell<Option<FileServiceClient<Channel>>>],
        jobs: Vec<Job>,
        dir: &Path,
        index: u64,
        progress: &Arc<InstallProgress>,
        cancel: &CancellationToken,
    ) -> Option<SnapshotError> {
        let load: Vec<AtomicU64> = sources.iter().map(|_| AtomicU64::new(0)).collect();
        let fail_fast = cancel.child_token();
        let mut results = futures::stream::iter(jobs.into_iter().map(|job| {
            let (load, fail_fast) = (&load, &fail_fast);
            let path = dir.join(&job.fm.name);
            async move {
                let Job {
                    fm,
                    mut offset,
                    mut crc,
                    mut holders,
                } = job;
                holders.sort_by_key(|(i, _)| load[*i].load(Ordering::Relaxed));
                let mut failed: Vec<(usize, SnapshotError)> = Vec::new();
                for (i, remote) in &holders {
                    let uri = &sources[*i];
                    // Counted before connecting, so the files that start
                    // meanwhile see this source as busy.
                    let left = fm.size - offset;
                    load[*i].fetch_add(left, Ordering::Relaxed);
                    let client = clients[*i]
                        .get_or_init(|| async { self.connect(uri).await.ok() })
                        .await
                        .clone();
                    let Some(client) = client else {
                        load[*i].fetch_sub(left, Ordering::Relaxed);
                        failed.push((
                            *i,
                            SnapshotError::Protocol {
                                peer: uri.addr.clone(),
                                file: fm.name.clone(),
                                reason: "cannot connect".into(),
                            },
                        ));
                        continue;
                    };
                    let r = self
                        .fetch_file(
                            client, uri, remote, index, &fm, &path, offset, crc, progress,
                            fail_fast,
                        )
                        .await;
                    load[*i].fetch_sub(left, Ordering::Relaxed);
                    match r {
                        Ok(()) => return Ok(()),
                        Err(e @ SnapshotError::Cancelled { .. }) => return Err(e),
                        Err(e) => {
                            if holders.len() > 1 {
                                warn!(file = %fm.name, peer = %uri.addr, error = %e, "fetch failed; trying the next source");
                            }
                            failed.push((*i, e));
                            // Resume what this source delivered, if it is sound.
                            let (p, size) = (path.clone(), fm.size);
                            (offset, crc) = blocking(move || {
                                let (len, crc) = resume_point(&p, size)?;
                                if len == size {
                                    // Whole but wrong: start over.
                                    fs::remove_file(&p).at("remove bad partial file", &p)?;
                                    return Ok((0, 0));
                                }
                                Ok((len, crc))
                            })
                            .await
                            .unwrap_or_default();
                        }
                    }
                }
                fail_fast.cancel();
                // The first source's word counts (the leader's, for an install).
                failed.sort_by_key(|(i, _)| *i);
                Err(failed
                    .into_iter()
                    .next()
                    .map(|(_, e)| e)
                    .unwrap_or(SnapshotError::Cancelled { index }))
            }
        }))
        .buffer_unordered(self.opts.parallel_files.max(1));
        let first_err = root_error(&mut results).await;
        drop(results);
        first_err
    }
}

/// One file being streamed: from where, into what.
#[derive(Clone, Copy)]
struct Target<'a> {
    uri: &'a SnapshotUri,
    /// The file's name at the source.
    remote: &'a str,
    fm: &'a FileMeta,
    file: &'a Arc<std::sync::Mutex<ChunkWriter>>,
    progress: &'a Arc<InstallProgress>,
    cancel: &'a CancellationToken,
}

/// One file to fetch and where it can come from.
struct Job {
    fm: FileMeta,
    /// Bytes already in place, verified, and their crc32c.
    offset: u64,
    crc: u32,
    /// (source index, the file's name there); the preferred first.
    holders: Vec<(usize, String)>,
}

/// Another member's snapshot that may hold some of the files being
/// installed (the same size and crc32c; the name may differ).
#[derive(Debug, Clone)]
pub struct AlternateSource {
    /// Where its files are served.
    pub uri: SnapshotUri,
    /// Its meta table.
    pub table: SnapshotMetaTable,
}

impl AlternateSource {
    /// The name under which this source holds `fm`'s content, if it does
    /// (its own name first).
    pub fn holds(&self, fm: &FileMeta) -> Option<&str> {
        let same = |f: &&FileMeta| f.size == fm.size && f.crc32c == fm.crc32c;
        self.table
            .files
            .iter()
            .filter(same)
            .find(|f| f.name == fm.name)
            .or_else(|| self.table.files.iter().find(|f| same(f) && f.size > 0))
            .map(|f| f.name.as_str())
    }
}

/// Runs every fetch to its end; returns the first error that is a root
/// cause, not a cancellation it caused in the others.
async fn root_error(
    results: &mut (impl futures::Stream<Item = Result<(), SnapshotError>> + Unpin),
) -> Option<SnapshotError> {
    let mut first = None;
    while let Some(r) = results.next().await {
        if let Err(e) = r {
            let replace = match &first {
                None => true,
                Some(SnapshotError::Cancelled { .. }) => {
                    !matches!(e, SnapshotError::Cancelled { .. })
                }
                Some(_) => false,
            };
            if replace {
                first = Some(e);
            }
        }
    }
    first
}

/// Where to resume a partial file: its length and the crc32c of its bytes
/// (from zero if it is longer than the file should be).
fn resume_point(path: &Path, size: u64) -> Result<(u64, u32), SnapshotError> {
    match fs::metadata(path) {
        Ok(m) if m.len() <= size => Ok((m.len(), crc_prefix(path, m.len())?)),
        Ok(_) => {
            fs::remove_file(path).at("remove bad partial file", path)?;
            Ok((0, 0))
        }
        Err(_) => Ok((0, 0)),
    }
}

/// Plans a flat fetch into `dir`: a complete file with the right crc32c is
/// ready, a shorter one is resumed, anything else starts over.
fn plan_flat(dir: &Path, files: &[FileMeta]) -> Result<Vec<(FileMeta, Plan)>, SnapshotError> {
    fs::create_dir_all(dir).at("create directory", dir)?;
    let mut out = Vec::with_capacity(files.len());
    for fm in files {
        meta_table::validate_file_name(&fm.name).map_err(|source| SnapshotError::RemoteMeta {
            peer: String::new(),
            source,
        })?;
        let dst = dir.join(&fm.name);
        let (len, crc) = resume_point(&dst, fm.size)?;
        let plan = if len == fm.size && crc == fm.crc32c {
            Plan::Ready
        } else if len == fm.size {
            fs::remove_file(&dst).at("remove bad partial file", &dst)?;
            Plan::Fetch { offset: 0, crc: 0 }
        } else {
            Plan::Fetch { offset: len, crc }
        };
        if fm.size == 0 {
            File::create(&dst).at("create", &dst)?;
            out.push((fm.clone(), Plan::Ready));
            continue;
        }
        out.push((fm.clone(), plan));
    }
    Ok(out)
}

/// Lists files under `dir` as relative `/`-separated names.
fn list_files(dir: &Path) -> Result<Vec<String>, SnapshotError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).at("read directory", &d)? {
            let e = e.at("read directory", &d)?;
            let p = e.path();
            if e.file_type().at("stat", &p)?.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    Ok(out)
}

/// crc32c of the first `len` bytes of a file.
fn crc_prefix(path: &Path, len: u64) -> Result<u32, SnapshotError> {
    let f = File::open(path).at("open", path)?;
    let mut buf = vec![0u8; IO_BUF];
    let (mut crc, mut at) = (0u32, 0u64);
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], at).at("read", path)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        at += n as u64;
    }
    Ok(crc)
}

fn link_into(src: &Path, dst: &Path) -> std::io::Result<()> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::remove_file(dst) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::hard_link(src, dst)
}

/// Sets up `download/` for `table` and decides, per file, what is reused,
/// what is kept from an earlier attempt and what must be fetched.
fn prepare(
    storage: &LocalSnapshotStorage,
    table: &SnapshotMetaTable,
    lookup: Option<&dyn LocalFileLookup>,
    progress: &InstallProgress,
) -> Result<Vec<(FileMeta, Plan)>, SnapshotError> {
    let dl = storage.root().join(DOWNLOAD_DIR);
    let old = download_table(&dl).ok();
    if old.is_none() {
        remove_dir_atomically(&dl)?;
    }
    storage.write_download_meta(table)?;
    // Keep only partial files that belong to the same content in the new table.
    for name in list_files(&dl)? {
        if name == DOWNLOAD_META_FILE || name == META_FILE {
            continue;
        }
        let wanted = table.files.iter().find(|f| f.name == name);
        let same = match (wanted, &old) {
            (Some(w), Some(o)) => o
                .files
                .iter()
                .any(|f| f.name == name && f.size == w.size && f.crc32c == w.crc32c),
            _ => false,
        };
        if !same {
            let p = dl.join(&name);
            fs::remove_file(&p).at("remove stale partial file", &p)?;
        }
    }
    let latest = storage.open_reader();
    let mut plans = Vec::with_capacity(table.files.len());
    for fm in &table.files {
        let dst = dl.join(&fm.name);
        let from_snapshot = latest.as_ref().and_then(|r| {
            r.file(&fm.name)
                .filter(|f| f.size == fm.size && f.crc32c == fm.crc32c)
                .and_then(|_| r.path_of(&fm.name).ok())
        });
        let source =
            from_snapshot.or_else(|| lookup.and_then(|l| l.find(&fm.name, fm.size, fm.crc32c)));
        if let Some(src) = source {
            match link_into(&src, &dst) {
                Ok(()) => {
                    InstallProgress::add(&progress.reused_bytes, fm.size);
                    InstallProgress::add(&progress.bytes_done, fm.size);
                    plans.push((fm.clone(), Plan::Ready));
                    continue;
                }
                Err(e) => {
                    warn!(file = %fm.name, src = %src.display(), error = %e, "could not hard-link a local copy; fetching it")
                }
            }
        }
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).at("create directory", parent)?;
        }
        let have = fs::metadata(&dst).map(|m| m.len()).ok();
        let plan = match have {
            None => Plan::Fetch { offset: 0, crc: 0 },
            Some(len) if len > fm.size => Plan::Fetch { offset: 0, crc: 0 },
            Some(len) => {
                let crc = crc_prefix(&dst, len)?;
                if len == fm.size && crc != fm.crc32c {
                    Plan::Fetch { offset: 0, crc: 0 }
                } else {
                    InstallProgress::add(&progress.resumed_bytes, len);
                    InstallProgress::add(&progress.bytes_done, len);
                    if len == fm.size {
                        Plan::Ready
                    } else {
                        Plan::Fetch { offset: len, crc }
                    }
                }
            }
        };
        if let Plan::Fetch { offset: 0, .. } = plan
            && have.is_some()
        {
            fs::remove_file(&dst).at("remove bad partial file", &dst)?;
        }
        if fm.size == 0 {
            File::create(&dst).at("create", &dst)?;
            plans.push((fm.clone(), Plan::Ready));
            continue;
        }
        plans.push((fm.clone(), plan));
    }
    Ok(plans)
}

/// Writes the meta table into `download/` (last), fsyncs, and publishes it.
fn commit(
    storage: &LocalSnapshotStorage,
    dl: &Path,
    index: u64,
    table: SnapshotMetaTable,
) -> Result<(), SnapshotError> {
    // Anything not in the table (a stray file) must not be published.
    for name in list_files(dl)? {
        if name != DOWNLOAD_META_FILE && !table.files.iter().any(|f| f.name == name) {
            let p = dl.join(&name);
            fs::remove_file(&p).at("remove stray file", &p)?;
        }
    }
    // Every file durable before the meta table that vouches for them.
    let paths: Vec<PathBuf> = table.files.iter().map(|f| dl.join(&f.name)).collect();
    fsync_files(&paths)?;
    write_file_atomically(dl, META_FILE, &meta_table::encode(&table))?;
    failpoint!("install_after_meta");
    let dm = dl.join(DOWNLOAD_META_FILE);
    match fs::remove_file(&dm) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at("remove", &dm),
        _ => {}
    }
    fsync_dirs_bottom_up(dl)?;
    storage.publish(dl, index, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_print() {
        let u = SnapshotUri::parse("raftsnap://127.0.0.1:5000/42").unwrap();
        assert_eq!(
            u,
            SnapshotUri {
                addr: "127.0.0.1:5000".into(),
                reader_id: 42
            }
        );
        assert_eq!(u.to_string(), "raftsnap://127.0.0.1:5000/42");
        assert_eq!(
            SnapshotUri::parse("raftsnap://[::1]:7/1").unwrap().addr,
            "[::1]:7"
        );
        for bad in [
            "remote://127.0.0.1:5000/42",
            "raftsnap://127.0.0.1:5000",
            "raftsnap://127.0.0.1/42",
            "raftsnap://:5000/42",
            "raftsnap://h:99999/42",
            "raftsnap://h:1/x",
            "raftsnap://h:1/",
            "raftsnap://a/b:1/2",
        ] {
            assert!(
                matches!(SnapshotUri::parse(bad), Err(SnapshotError::BadUri { .. })),
                "{bad}"
            );
        }
    }
}
