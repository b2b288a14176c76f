//! The gRPC `FileService` through which followers pull snapshot files, and the
//! registry of snapshot readers it serves.
//!
//! Registering a [`SnapshotReader`] gives a `reader_id` and keeps the reader
//! (so its snapshot stays on disk) until it is released or stays idle longer
//! than `reader_idle_lease`. Only names listed in that reader's meta table are
//! served; every chunk carries its offset and crc32c.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::proto::file::file_service_server::{FileService, FileServiceServer};
use crate::proto::file::{FileChunk, GetFileRequest, GetMetaRequest, GetMetaResponse};
use crate::proto::snapshot::FileMeta;
use crate::snapshot::meta_table;
use crate::snapshot::reader::SnapshotReader;
use crate::snapshot::staging::{StagedSet, StagingArea, is_staging_id};
use crate::snapshot::throttle::SnapshotThrottle;

/// Smallest chunk served.
pub const MIN_CHUNK_BYTES: u32 = 64 << 10;
/// Largest chunk served.
pub const MAX_CHUNK_BYTES: u32 = 4 << 20;
/// gRPC message limit for file chunks (a chunk plus framing).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Retry hint sent in the `retry-after-ms` metadata when throttled.
pub const RETRY_AFTER_KEY: &str = "retry-after-ms";
/// How many expired ids are remembered to answer "lease expired".
const EXPIRED_MEMORY: usize = 1024;

struct Entry {
    reader: Arc<SnapshotReader>,
    meta_bytes: Arc<Vec<u8>>,
    last_used: Instant,
    active_streams: usize,
    send_slot: Option<OwnedSemaphorePermit>,
    /// The send slot is held only while a stream is open (a snapshot
    /// offered as one source among several, which nobody releases).
    slot_while_streaming: bool,
}

struct Registry {
    readers: HashMap<u64, Entry>,
    expired: VecDeque<u64>,
}

/// Snapshot readers being served, by id. Shared by the service and by the
/// code that registers snapshots for followers.
pub struct ReaderRegistry {
    inner: Mutex<Registry>,
    lease: Duration,
    throttle: Arc<SnapshotThrottle>,
    /// Staged sets, served under their staging ids.
    staging: std::sync::OnceLock<Arc<StagingArea>>,
}

impl std::fmt::Debug for ReaderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderRegistry")
            .field("readers", &self.lock().readers.len())
            .field("lease", &self.lease)
            .finish()
    }
}

impl ReaderRegistry {
    /// A registry whose readers expire after `lease` without use.
    pub fn new(lease: Duration, throttle: Arc<SnapshotThrottle>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Registry {
                readers: HashMap::new(),
                expired: VecDeque::new(),
            }),
            lease,
            throttle,
            staging: std::sync::OnceLock::new(),
        })
    }

    /// Also serves the complete sets of `staging` (under their ids).
    pub fn serve_staging(&self, staging: Arc<StagingArea>) {
        let _ = self.staging.set(staging);
    }

    /// The staged set `id`, when `id` is a staging id.
    fn staged(&self, id: u64) -> Option<Result<StagedSet, Status>> {
        if !is_staging_id(id) {
            return None;
        }
        Some(
            self.staging
                .get()
                .and_then(|s| s.get(id))
                .ok_or_else(|| Status::not_found(format!("staged set {id:016x} is not held here"))),
        )
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a reader; returns its id. The reader is held until
    /// [`release`](Self::release) or lease expiry, and holds a send slot
    /// from its first stream on.
    pub fn register(&self, reader: SnapshotReader) -> u64 {
        self.insert(reader, false)
    }

    /// Registers a reader offered as one source among several: it holds a
    /// send slot only while one of its streams is open, and is released by
    /// lease expiry.
    pub fn register_as_source(&self, reader: SnapshotReader) -> u64 {
        self.insert(reader, true)
    }

    fn insert(&self, reader: SnapshotReader, slot_while_streaming: bool) -> u64 {
        let meta_bytes = Arc::new(meta_table::encode(reader.table()));
        let mut r = self.lock();
        // Random, so that a reader cannot be guessed (nor one of an earlier
        // run mistaken for a live one); never a staging id.
        let id = loop {
            let id = crate::snapshot::fsutil::random_u64() & !(1 << 63);
            if id != 0 && !r.readers.contains_key(&id) && !r.expired.contains(&id) {
                break id;
            }
        };
        info!(
            reader_id = id,
            snapshot_index = reader.index(),
            "snapshot reader registered"
        );
        r.readers.insert(
            id,
            Entry {
                reader: Arc::new(reader),
                meta_bytes,
                last_used: Instant::now(),
                active_streams: 0,
                send_slot: None,
                slot_while_streaming,
            },
        );
        id
    }

    /// Releases a reader (its snapshot may then be deleted). True if it was held.
    pub fn release(&self, id: u64) -> bool {
        let removed = self.lock().readers.remove(&id);
        if removed.is_some() {
            debug!(reader_id = id, "snapshot reader released");
        }
        removed.is_some()
    }

    /// Number of readers held.
    pub fn len(&self) -> usize {
        self.lock().readers.len()
    }

    /// True when no reader is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Releases every reader idle (no stream open) for longer than the lease
    /// as of `now`; returns their ids.
    pub fn expire_idle(&self, now: Instant) -> Vec<u64> {
        let mut r = self.lock();
        let lease = self.lease;
        let ids: Vec<u64> = r
            .readers
            .iter()
            .filter(|(_, e)| {
                e.active_streams == 0 && now.saturating_duration_since(e.last_used) > lease
            })
            .map(|(&id, _)| id)
            .collect();
        for id in &ids {
            r.readers.remove(id);
            r.expired.push_back(*id);
            if r.expired.len() > EXPIRED_MEMORY {
                r.expired.pop_front();
            }
            info!(reader_id = id, "snapshot reader lease expired");
        }
        ids
    }

    /// Spawns a task that expires idle readers every `every`, until the
    /// registry is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(reg) => {
                        reg.expire_idle(Instant::now());
                    }
                    None => return,
                }
            }
        })
    }

    fn unknown(&self, r: &Registry, id: u64) -> Status {
        if r.expired.contains(&id) {
            Status::not_found(format!(
                "snapshot reader {id}: lease expired after {:?} idle",
                self.lease
            ))
        } else {
            Status::not_found(format!(
                "snapshot reader {id}: unknown (released, or from another run)"
            ))
        }
    }

    fn meta(&self, id: u64) -> Result<Arc<Vec<u8>>, Status> {
        if let Some(set) = self.staged(id) {
            return Ok(set?.meta_bytes());
        }
        let mut r = self.lock();
        match r.readers.get_mut(&id) {
            Some(e) => {
                e.last_used = Instant::now();
                Ok(e.meta_bytes.clone())
            }
            None => Err(self.unknown(&r, id)),
        }
    }

    /// Starts a stream on reader `id`: takes a send slot for it if it has none.
    fn begin_stream(self: &Arc<Self>, id: u64) -> Result<StreamGuard, Status> {
        let mut r = self.lock();
        let Some(e) = r.readers.get_mut(&id) else {
            return Err(self.unknown(&r, id));
        };
        if e.send_slot.is_none() {
            match self.throttle.try_start_send() {
                Ok(p) => e.send_slot = Some(p),
                Err(err) => {
                    let mut st = Status::resource_exhausted(err.to_string());
                    if let crate::snapshot::SnapshotError::Throttled { retry_after, .. } = err
                        && let Ok(v) = retry_after.as_millis().to_string().parse()
                    {
                        st.metadata_mut().insert(RETRY_AFTER_KEY, v);
                    }
                    return Err(st);
                }
            }
        }
        e.active_streams += 1;
        e.last_used = Instant::now();
        Ok(StreamGuard {
            registry: self.clone(),
            id,
            reader: e.reader.clone(),
        })
    }

    /// Where file `name` of reader (or staged set) `id` is, from `offset`
    /// on: its entry, its path, and for a snapshot reader the claim of an
    /// open stream (a send slot), held until the stream ends.
    pub(crate) fn open_stream(
        self: &Arc<Self>,
        id: u64,
        name: &str,
        offset: u64,
    ) -> Result<(FileMeta, std::path::PathBuf, Option<StreamGuard>), Status> {
        meta_table::validate_file_name(name)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (fm, path, guard) = match self.staged(id) {
            Some(set) => {
                let set = set?;
                let Some(fm) = set.file(name).cloned() else {
                    return Err(Status::not_found(format!(
                        "{name:?} is not a file of staged set {:016x}",
                        set.id
                    )));
                };
                let path = set.path_of(&fm.name);
                (fm, path, None)
            }
            None => {
                let guard = self.begin_stream(id)?;
                let reader = guard.reader.clone();
                let Some(fm) = reader.file(name).cloned() else {
                    return Err(Status::not_found(format!(
                        "{name:?} is not a file of snapshot {}",
                        reader.index()
                    )));
                };
                let path = reader
                    .path_of(&fm.name)
                    .map_err(|e| Status::internal(e.to_string()))?;
                (fm, path, Some(guard))
            }
        };
        if offset > fm.size {
            return Err(Status::out_of_range(format!(
                "offset {} is past the end of {} ({} bytes)",
                offset, fm.name, fm.size
            )));
        }
        Ok((fm, path, guard))
    }

    /// Marks reader `id` as used now.
    pub(crate) fn touch(&self, id: u64) {
        if let Some(e) = self.lock().readers.get_mut(&id) {
            e.last_used = Instant::now();
        }
    }
}

/// One open stream on a reader; ends the stream's claim on drop.
pub(crate) struct StreamGuard {
    pub(crate) registry: Arc<ReaderRegistry>,
    pub(crate) id: u64,
    reader: Arc<SnapshotReader>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut r = self.registry.lock();
        if let Some(e) = r.readers.get_mut(&self.id) {
            e.active_streams = e.active_streams.saturating_sub(1);
            e.last_used = Instant::now();
            if e.slot_while_streaming && e.active_streams == 0 {
                e.send_slot = None;
            }
        }
    }
}

/// The `FileService` implementation over a [`ReaderRegistry`].
#[derive(Debug, Clone)]
pub struct SnapshotFileService {
    registry: Arc<ReaderRegistry>,
    throttle: Arc<SnapshotThrottle>,
}

impl SnapshotFileService {
    /// A service serving the readers of `registry`, paced by `throttle`.
    pub fn new(registry: Arc<ReaderRegistry>, throttle: Arc<SnapshotThrottle>) -> Self {
        Self { registry, throttle }
    }

    /// The same readers served as bulk streams ([`crate::snapshot::bulk`]).
    pub fn bulk(&self) -> crate::snapshot::bulk::BulkServer {
        crate::snapshot::bulk::BulkServer::new(self.registry.clone(), self.throttle.clone())
    }

    /// The tonic server, with message limits sized for file chunks.
    pub fn into_server(self) -> FileServiceServer<Self> {
        FileServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl FileService for SnapshotFileService {
    async fn get_meta(
        &self,
        req: Request<GetMetaRequest>,
    ) -> Result<Response<GetMetaResponse>, Status> {
        let id = req.into_inner().reader_id;
        let bytes = self.registry.meta(id)?;
        Ok(Response::new(GetMetaResponse {
            meta_table: bytes.as_ref().clone(),
        }))
    }

    type GetFileStream = ReceiverStream<Result<FileChunk, Status>>;

    async fn get_file(
        &self,
        req: Request<GetFileRequest>,
    ) -> Result<Response<Self::GetFileStream>, Status> {
        let req = req.into_inner();
        let (fm, path, guard) =
            self.registry
                .open_stream(req.reader_id, &req.filename, req.offset)?;
        let chunk = req.chunk_bytes.clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES) as u64;
        let file = std::fs::File::open(&path)
            .map_err(|e| Status::data_loss(format!("open {}: {e}", fm.name)))?;
        let file = Arc::new(file);
        // Chunks read ahead of the network: a snapshot install is one
        // follower's stream; a staged set is fetched by every member at
        // once, so each of its streams holds less.
        let depth = if guard.is_some() { 4 } else { 2 };
        let (tx, rx) = mpsc::channel(depth);
        let throttle = self.throttle.clone();
        tokio::spawn(async move {
            let guard = guard;
            let mut offset = req.offset;
            while offset < fm.size {
                let n = chunk.min(fm.size - offset) as usize;
                let f = file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; n];
                    f.read_exact_at(&mut buf, offset).map(|()| buf)
                })
                .await;
                let data = match read {
                    Ok(Ok(buf)) => buf,
                    Ok(Err(e)) => {
                        warn!(file = %fm.name, offset, error = %e, "snapshot file unreadable");
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "read {} at {offset}: {e}",
                                fm.name
                            ))))
                            .await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                throttle.sent(n as u64).await;
                if let Some(g) = &guard {
                    g.registry.touch(g.id);
                }
                let crc32c = crc32c::crc32c(&data);
                let data = data.into();
                if tx
                    .send(Ok(FileChunk {
                        offset,
                        data,
                        crc32c,
                    }))
                    .await
                    .is_err()
                {
                    return; // the client went away
                }
                offset += n as u64;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
