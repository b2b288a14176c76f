//! A snapshot-serving endpoint on 127.0.0.1 for install tests: real gRPC on a
//! free port, on its own runtime so that `kill` cuts every connection at once,
//! like a process dying.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raftsnap::snapshot::{
    LocalSnapshotStorage, ReaderRegistry, SnapshotFileService, SnapshotMeta, SnapshotMetaTable,
    SnapshotThrottle, StorageOptions, split_incoming,
};

/// A leader-like endpoint: a snapshot storage and a FileService serving it.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub storage: LocalSnapshotStorage,
    pub registry: Arc<ReaderRegistry>,
    pub dir: tempfile::TempDir,
    rt: Option<tokio::runtime::Runtime>,
}

impl Endpoint {
    /// Starts serving the snapshots under a fresh temp dir.
    pub fn start(throttle: Arc<SnapshotThrottle>, lease: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, throttle, lease)
    }

    /// Starts serving the snapshots under `dir`.
    pub fn start_in(
        dir: tempfile::TempDir,
        throttle: Arc<SnapshotThrottle>,
        lease: Duration,
    ) -> Self {
        Self::start_with(dir, throttle, lease, true)
    }

    /// Starts serving over gRPC only, as a node that predates bulk streams.
    #[allow(dead_code)]
    pub fn start_grpc_only(throttle: Arc<SnapshotThrottle>, lease: Duration) -> Self {
        Self::start_with(tempfile::tempdir().unwrap(), throttle, lease, false)
    }

    fn start_with(
        dir: tempfile::TempDir,
        throttle: Arc<SnapshotThrottle>,
        lease: Duration,
        bulk: bool,
    ) -> Self {
        let (storage, _) =
            LocalSnapshotStorage::open(dir.path().join("snapshots"), StorageOptions::default())
                .unwrap();
        let registry = ReaderRegistry::new(lease, throttle.clone());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = SnapshotFileService::new(registry.clone(), throttle);
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let bulk = bulk.then(|| svc.bulk());
            let _ = tonic::transport::Server::builder()
                .add_service(svc.into_server())
                .serve_with_incoming(split_incoming(listener, bulk))
                .await;
        });
        Self {
            addr,
            storage,
            registry,
            dir,
            rt: Some(rt),
        }
    }

    /// Registers the latest snapshot; returns its URI and meta table.
    pub fn offer_latest(&self) -> (String, SnapshotMetaTable) {
        let r = self.storage.open_reader().expect("a snapshot to offer");
        let table = r.table().clone();
        let id = self.registry.register(r);
        (format!("raftsnap://{}/{id}", self.addr), table)
    }

    /// Stops serving at once, dropping every connection.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Commits a snapshot at `index` holding `files` (name → bytes) plus a
/// `kv.json` the test KV state machine can load.
pub fn save(
    storage: &LocalSnapshotStorage,
    index: u64,
    files: &[(String, Vec<u8>)],
) -> SnapshotMeta {
    let meta = SnapshotMeta {
        last_included_index: index,
        last_included_term: 2,
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    let mut w = storage.create_writer(meta).unwrap();
    let kv: std::collections::BTreeMap<String, String> =
        [("index".to_string(), index.to_string())].into();
    w.write_file("kv.json", &serde_json::to_vec(&kv).unwrap())
        .unwrap();
    for (name, data) in files {
        w.write_file(name, data).unwrap();
    }
    storage.close_writer(w).unwrap()
}
