//! Remote snapshot install over real gRPC and bulk streams on 127.0.0.1: full and incremental
//! installs, corruption, an endpoint killed mid-transfer, bad requests, the
//! install rules (already have / join / newer cancels older / older rejected)
//! and the throttle.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::file_server::{Endpoint, bytes, save};
use common::kv_fsm::KvFsm;
use raftsnap::proto::file::file_service_client::FileServiceClient;
use raftsnap::proto::file::{GetFileRequest, GetMetaRequest};
use raftsnap::snapshot::bulk::{BulkFailure, BulkFetch};
use raftsnap::snapshot::direct_io::ChunkWriter;
use raftsnap::snapshot::storage::{DOWNLOAD_DIR, snapshot_dir_name};
use raftsnap::snapshot::{
    CopierOptions, ExecutorOptions, Fetched, InstallOutcome, LocalSnapshotStorage, SnapshotError,
    SnapshotExecutor, SnapshotThrottle, StorageOptions, ThrottleOptions, shared,
};
use tokio_util::sync::CancellationToken;

const MIB: usize = 1 << 20;

struct Follower {
    exec: Arc<SnapshotExecutor<KvFsm>>,
    dir: tempfile::TempDir,
}

fn follower(throttle: ThrottleOptions, copier: CopierOptions) -> Follower {
    let dir = tempfile::tempdir().unwrap();
    let (storage, _) =
        LocalSnapshotStorage::open(dir.path().join("snapshots"), StorageOptions::default())
            .unwrap();
    let exec = SnapshotExecutor::new(
        storage,
        shared(KvFsm::default()),
        ExecutorOptions {
            copier,
            ..Default::default()
        },
    )
    .with_throttle(Arc::new(SnapshotThrottle::new(throttle)));
    Follower {
        exec: Arc::new(exec),
        dir,
    }
}

fn files(prefix: &str, n: usize, size: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("data/{prefix}{i:03}.tsm"),
                bytes(seed + i as u64, size),
            )
        })
        .collect()
}

fn lease() -> Duration {
    Duration::from_secs(300)
}

fn installed(o: InstallOutcome) -> raftsnap::snapshot::ProgressSnapshot {
    match o {
        InstallOutcome::Installed { progress, .. } => progress,
        other => panic!("expected an install, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_install_moves_only_new_bytes() {
    let leader = Endpoint::start(Arc::new(SnapshotThrottle::default()), lease());
    let base = files("a", 8, MIB + 123, 1);
    save(&leader.storage, 10, &base);
    let f = follower(ThrottleOptions::default(), CopierOptions::default());

    let (uri, table) = leader.offer_latest();
    let total: u64 = table.files.iter().map(|f| f.size).sum();
    let p = installed(f.exec.install(&uri, &table).await.unwrap());
    assert_eq!(
        (p.fetched_bytes, p.reused_bytes, p.bytes_done, p.bytes_total),
        (total, 0, total, total)
    );
    let r = f.exec.storage().open_reader().unwrap();
    assert_eq!(r.index(), 10);
    assert_eq!(r.table(), &table);
    r.verify().unwrap();
    drop(r);
    {
        let g = f.exec.state_machine().lock().unwrap();
        assert_eq!(g.applied.last_included_index, 10);
        assert_eq!(g.state_machine.map["index"], "10");
    }
    assert!(!f.dir.path().join("snapshots").join(DOWNLOAD_DIR).exists());

    // A few new files: only they (and the rewritten kv.json) cross the wire.
    let mut more = base.clone();
    let added = files("b", 3, 300_000, 100);
    more.extend(added.clone());
    save(&leader.storage, 20, &more);
    let (uri, table) = leader.offer_latest();
    let kv = table
        .files
        .iter()
        .find(|f| f.name == "kv.json")
        .unwrap()
        .size;
    let new_bytes: u64 = added.iter().map(|(_, d)| d.len() as u64).sum::<u64>() + kv;
    let p = installed(f.exec.install(&uri, &table).await.unwrap());
    assert_eq!(p.fetched_bytes, new_bytes);
    assert_eq!(p.reused_bytes, total - kv);
    let r = f.exec.storage().open_reader().unwrap();
    r.verify().unwrap();
    assert_eq!(r.table(), &table);
    let s = f.exec.stats();
    assert_eq!(
        (s.installs_total, s.install_bytes_total),
        (2, total + new_bytes)
    );
    assert_eq!(s.reused_bytes_total, total - kv);
    // The old snapshot is gone (retain 1), the new one is complete.
    assert!(
        !f.dir
            .path()
            .join("snapshots")
            .join(snapshot_dir_name(10))
            .exists()
    );

    // Installing what it already has copies nothing.
    let before = f.exec.stats();
    assert!(
        matches!(f.exec.install(&uri, &table).await.unwrap(), InstallOutcome::AlreadyHave(m) if m.last_included_index == 20)
    );
    assert_eq!(f.exec.stats(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_bulk_streams_is_fetched_from_over_grpc() {
    let leader = Endpoint::start_grpc_only(Arc::new(SnapshotThrottle::default()), lease());
    save(&leader.storage, 4, &files("a", 12, MIB + 5, 4));
    let opts = CopierOptions::default();
    let parallel = opts.parallel_files as u64;
    let f = follower(ThrottleOptions::default(), opts);
    let (uri, table) = leader.offer_latest();
    let total: u64 = table.files.iter().map(|f| f.size).sum();
    let p = installed(f.exec.install(&uri, &table).await.unwrap());
    assert_eq!((p.fetched_bytes, p.bytes_done), (total, total));
    // The peer is asked for bulk streams by the first files fetched at
    // once, not by every file.
    assert!(
        (1..=parallel).contains(&p.bulk_refused),
        "{} bulk asks for 12 files, {parallel} at once",
        p.bulk_refused
    );
    f.exec.storage().open_reader().unwrap().verify().unwrap();
    // The bulk request itself was refused by closing the connection.
    let id: u64 = uri.rsplit('/').next().unwrap().parse().unwrap();
    let e = bulk_get(leader.addr, id, "data/a000.tsm", 0, MIB as u64 + 5)
        .await
        .unwrap_err();
    assert!(matches!(e, BulkFailure::Unsupported), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_leader_file_is_fetched_twice_then_the_install_fails_naming_it() {
    corrupt_leader_file(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_leader_file_fetched_over_grpc_fails_the_same_way() {
    corrupt_leader_file(false).await;
}

async fn corrupt_leader_file(bulk: bool) {
    let leader = Endpoint::start(Arc::new(SnapshotThrottle::default()), lease());
    save(&leader.storage, 5, &files("a", 2, 2000, 7));
    let f = follower(
        ThrottleOptions::default(),
        CopierOptions {
            bulk,
            ..Default::default()
        },
    );
    let (uri, table) = leader.offer_latest();
    installed(f.exec.install(&uri, &table).await.unwrap());

    save(&leader.storage, 9, &files("c", 3, 3 * MIB, 9));
    let (uri, table) = leader.offer_latest();
    // Flip one byte of a leader file after its save.
    let victim = leader.storage.snapshot_dir(9).join("data/c001.tsm");
    let mut b = std::fs::read(&victim).unwrap();
    b[MIB + 17] ^= 0x40;
    std::fs::write(&victim, b).unwrap();

    let err = f.exec.install(&uri, &table).await.unwrap_err();
    match &err {
        SnapshotError::Checksum {
            file,
            attempts,
            index,
            ..
        } => {
            assert_eq!((file.as_str(), *attempts, *index), ("data/c001.tsm", 2, 9));
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(err.to_string().contains("data/c001.tsm"), "{err}");
    // Nothing committed, the old snapshot and state kept.
    assert_eq!(f.exec.storage().latest_index(), 5);
    assert!(
        !f.dir
            .path()
            .join("snapshots")
            .join(snapshot_dir_name(9))
            .exists()
    );
    f.exec.storage().open_reader().unwrap().verify().unwrap();
    assert_eq!(
        f.exec
            .state_machine()
            .lock()
            .unwrap()
            .applied
            .last_included_index,
        5
    );
    assert_eq!(f.exec.stats().install_failures_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_cut_mid_transfer_completes_from_a_second_endpoint_fetching_only_what_is_missing()
 {
    cut_mid_transfer(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_over_grpc_cut_mid_transfer_completes_from_a_second_endpoint() {
    cut_mid_transfer(false).await;
}

async fn cut_mid_transfer(bulk: bool) {
    let mut a = Endpoint::start(Arc::new(SnapshotThrottle::default()), lease());
    save(&a.storage, 30, &files("d", 6, 4 * MIB, 30));
    // B serves the same snapshot (a copy of A's directory, like a new leader).
    let bdir = tempfile::tempdir().unwrap();
    let src = a.storage.snapshot_dir(30);
    let dst = bdir.path().join("snapshots").join(snapshot_dir_name(30));
    std::fs::create_dir_all(dst.join("data")).unwrap();
    for e in walk(&src) {
        let rel = e.strip_prefix(&src).unwrap();
        std::fs::copy(&e, dst.join(rel)).unwrap();
    }
    let b = Endpoint::start_in(bdir, Arc::new(SnapshotThrottle::default()), lease());
    assert_eq!(b.storage.latest_index(), 30);

    // Slow receive so that the transfer is surely in flight when A dies.
    let f = follower(
        ThrottleOptions {
            recv_rate: Some(24 * MIB as u64),
            ..Default::default()
        },
        CopierOptions {
            bulk,
            parallel_files: 2,
            transport_retries: 1,
            idle_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    );
    let (uri_a, table) = a.offer_latest();
    let total: u64 = table.files.iter().map(|f| f.size).sum();
    let exec = f.exec.clone();
    let t2 = table.clone();
    let first = tokio::spawn(async move { exec.install(&uri_a, &t2).await });
    loop {
        let done = f
            .exec
            .install_status()
            .map_or(0, |s| s.progress.snapshot().fetched_bytes);
        if done >= 6 * MIB as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill();
    let err = first.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Rpc { .. }
                | SnapshotError::Connect { .. }
                | SnapshotError::Protocol { .. }
        ),
        "{err:?}"
    );
    let fetched_first = f.exec.stats().install_bytes_total;
    assert!(
        fetched_first >= 6 * MIB as u64 && fetched_first < total,
        "{fetched_first} of {total}"
    );
    assert_eq!(f.exec.storage().latest_index(), 0);
    assert!(f.dir.path().join("snapshots").join(DOWNLOAD_DIR).exists());

    // The same snapshot from B: only the missing bytes move.
    let (uri_b, table_b) = b.offer_latest();
    assert_eq!(table_b, table);
    let p = installed(f.exec.install(&uri_b, &table_b).await.unwrap());
    assert_eq!(p.resumed_bytes, fetched_first);
    assert_eq!(p.fetched_bytes, total - fetched_first);
    assert_eq!(f.exec.stats().install_bytes_total, total);
    f.exec.storage().open_reader().unwrap().verify().unwrap();
    assert_eq!(
        f.exec
            .state_machine()
            .lock()
            .unwrap()
            .applied
            .last_included_index,
        30
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_nothing_outside_the_snapshot_is_read() {
    let leader = Endpoint::start(
        Arc::new(SnapshotThrottle::default()),
        Duration::from_secs(60),
    );
    save(&leader.storage, 3, &files("e", 1, 1000, 3));
    std::fs::write(leader.dir.path().join("secret"), b"TOP SECRET").unwrap();
    let (uri, _) = leader.offer_latest();
    let id: u64 = uri.rsplit('/').next().unwrap().parse().unwrap();
    let mut c = FileServiceClient::connect(format!("http://{}", leader.addr))
        .await
        .unwrap();
    let get = |name: &str, offset: u64, reader_id: u64| GetFileRequest {
        reader_id,
        filename: name.to_string(),
        offset,
        chunk_bytes: 1 << 20,
    };
    use tonic::Code;
    let cases = [
        (get("data/e000.tsm", 0, 12345), Code::NotFound, "unknown"),
        (
            get("../secret", 0, id),
            Code::InvalidArgument,
            "`..` component",
        ),
        (
            get("../../secret", 0, id),
            Code::InvalidArgument,
            "`..` component",
        ),
        (
            get("/etc/passwd", 0, id),
            Code::InvalidArgument,
            "absolute path",
        ),
        (get("", 0, id), Code::InvalidArgument, "empty name"),
        (
            get("a//b", 0, id),
            Code::InvalidArgument,
            "empty path component",
        ),
        (
            get("secret", 0, id),
            Code::NotFound,
            "not a file of snapshot 3",
        ),
        (
            get("__raft_snapshot_meta", 0, id),
            Code::NotFound,
            "not a file of snapshot 3",
        ),
        (
            get("data/e000.tsm", 1001, id),
            Code::OutOfRange,
            "past the end",
        ),
    ];
    for (req, code, text) in cases {
        let name = req.filename.clone();
        // The same request as a bulk stream gets the same answer.
        let bulk = bulk_get(leader.addr, req.reader_id, &name, req.offset, 1000)
            .await
            .unwrap_err();
        let BulkFailure::Refused(bst) = bulk else {
            panic!("{name}: bulk {bulk:?}");
        };
        let st = c.get_file(req).await.unwrap_err();
        assert_eq!(st.code(), code, "{name}: {st:?}");
        assert!(st.message().contains(text), "{name}: {}", st.message());
        assert!(!st.message().contains("TOP SECRET"));
        assert_eq!((bst.code(), bst.message()), (code, st.message()), "{name}");
    }
    // Over bulk too: offset == size is an empty read, a middle offset the rest.
    assert!(
        bulk_get(leader.addr, id, "data/e000.tsm", 1000, 1000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        bulk_get(leader.addr, id, "data/e000.tsm", 600, 1000)
            .await
            .unwrap(),
        bytes(3, 1000)[600..]
    );
    // A size that does not match the served length is refused, not written.
    let e = bulk_get(leader.addr, id, "data/e000.tsm", 0, 999)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BulkFailure::Refused(st) if st.message().contains("listed as 999 bytes")),
        "{e:?}"
    );
    // offset == size is a valid, empty read; a middle offset reads the rest.
    let mut s = c
        .get_file(get("data/e000.tsm", 1000, id))
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().is_none());
    let mut s = c
        .get_file(get("data/e000.tsm", 600, id))
        .await
        .unwrap()
        .into_inner();
    let chunk = s.message().await.unwrap().unwrap();
    assert_eq!((chunk.offset, chunk.data.len()), (600, 400));
    assert_eq!(chunk.data, bytes(3, 1000)[600..]);
    assert_eq!(chunk.crc32c, crc32c::crc32c(&chunk.data));
    drop(s);

    // Lease expiry releases the reader, and its id then says so.
    let expired = leader
        .registry
        .expire_idle(tokio::time::Instant::now() + Duration::from_secs(61));
    assert_eq!(expired, vec![id]);
    let st = c
        .get_meta(GetMetaRequest { reader_id: id })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::NotFound);
    assert!(st.message().contains("lease expired"), "{}", st.message());
    let st = c.get_file(get("data/e000.tsm", 0, id)).await.unwrap_err();
    assert!(st.message().contains("lease expired"), "{}", st.message());
    // Released: a superseded snapshot is now deleted.
    assert!(leader.registry.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_held_by_the_service_keeps_its_snapshot_until_released() {
    let leader = Endpoint::start(Arc::new(SnapshotThrottle::default()), lease());
    save(&leader.storage, 3, &files("h", 1, 100, 3));
    let (uri, _) = leader.offer_latest();
    let id: u64 = uri.rsplit('/').next().unwrap().parse().unwrap();
    save(&leader.storage, 4, &files("h", 1, 100, 4));
    let old = leader.storage.snapshot_dir(3);
    assert!(old.exists(), "held by the registry");
    assert!(leader.registry.release(id));
    assert!(!old.exists(), "released and superseded");
}

/// Fetches `name` of reader `id` at `addr` from `offset` as a bulk stream,
/// expecting a file of `size` bytes; returns the bytes after `offset`.
async fn bulk_get(
    addr: std::net::SocketAddr,
    id: u64,
    name: &str,
    offset: u64,
    size: u64,
) -> Result<Vec<u8>, BulkFailure> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut out = ChunkWriter::open(&path, offset).unwrap();
        let cancel = CancellationToken::new();
        let (mut at, mut crc) = (offset, 0);
        BulkFetch {
            addr: &addr.to_string(),
            reader_id: id,
            name: &name,
            size,
            chunk_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            cancel: &cancel,
            throttle: None,
        }
        .run(&mut out, &mut at, &mut crc, &mut |_| {})?;
        drop(out);
        let all = std::fs::read(&path).unwrap();
        assert_eq!(crc, crc32c::crc32c(&all[offset as usize..]));
        Ok(all[offset as usize..].to_vec())
    })
    .await
    .unwrap()
}

/// A leader that serves one snapshot at a time, holding one small file
/// (`data/g000.tsm`) at index 3.
fn one_send_slot_leader() -> Endpoint {
    let leader = Endpoint::start(
        Arc::new(SnapshotThrottle::new(ThrottleOptions {
            max_concurrent_sends: 1,
            ..Default::default()
        })),
        lease(),
    );
    save(&leader.storage, 3, &files("g", 1, 1000, 3));
    leader
}

/// The whole of `data/g000.tsm` from reader `reader_id`.
fn g000(reader_id: u64) -> GetFileRequest {
    GetFileRequest {
        reader_id,
        filename: "data/g000.tsm".into(),
        offset: 0,
        chunk_bytes: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_concurrency_is_limited_with_a_retry_hint() {
    let leader = one_send_slot_leader();
    let (uri1, _) = leader.offer_latest();
    let (uri2, _) = leader.offer_latest();
    let id = |u: &str| -> u64 { u.rsplit('/').next().unwrap().parse().unwrap() };
    let mut c = FileServiceClient::connect(format!("http://{}", leader.addr))
        .await
        .unwrap();
    let req = g000;
    let mut s = c.get_file(req(id(&uri1))).await.unwrap().into_inner();
    while s.message().await.unwrap().is_some() {}
    let st = c.get_file(req(id(&uri2))).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    assert_eq!(st.metadata().get("retry-after-ms").unwrap(), "1000");
    // The first reader keeps its slot until released.
    assert!(c.get_file(req(id(&uri1))).await.is_ok());
    leader.registry.release(id(&uri1));
    assert!(c.get_file(req(id(&uri2))).await.is_ok());
}

/// A snapshot offered as one source among several (nobody releases it)
/// holds a send slot only while it streams; reader ids are not sequential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_offered_as_a_source_holds_a_send_slot_only_while_streaming() {
    let leader = one_send_slot_leader();
    let reader = || leader.storage.open_reader().unwrap();
    let a = leader.registry.register_as_source(reader());
    let b = leader.registry.register_as_source(reader());
    assert!(a.abs_diff(b) > 1_000_000, "ids {a} and {b} look sequential");
    let mut c = FileServiceClient::connect(format!("http://{}", leader.addr))
        .await
        .unwrap();
    let req = g000;
    for id in [a, b, a] {
        // The previous stream's slot is returned as its sender ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match c.get_file(req(id)).await {
                Ok(s) => break s.into_inner(),
                Err(st) if st.code() == tonic::Code::ResourceExhausted => {
                    assert!(std::time::Instant::now() < deadline, "{st:?}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(st) => panic!("{st:?}"),
            }
        };
        while s.message().await.unwrap().is_some() {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_rules_join_same_reject_older_cancel_for_newer() {
    let leader = Endpoint::start(Arc::new(SnapshotThrottle::default()), lease());
    save(&leader.storage, 40, &files("j", 4, 2 * MIB, 40));
    let (uri40, t40) = leader.offer_latest();
    let f = follower(
        ThrottleOptions {
            recv_rate: Some(16 * MIB as u64),
            ..Default::default()
        },
        CopierOptions::default(),
    );
    // Same index twice: one download, the second call joins it.
    let (e1, e2) = (f.exec.clone(), f.exec.clone());
    let (u1, u2, ta, tb) = (uri40.clone(), uri40.clone(), t40.clone(), t40.clone());
    let a = tokio::spawn(async move { e1.fetch(&u1, &ta).await });
    while f.exec.install_status().is_none() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let b = tokio::spawn(async move { e2.fetch(&u2, &tb).await });
    // An older snapshot while 40 downloads: rejected.
    let mut t39 = t40.clone();
    t39.meta.as_mut().unwrap().last_included_index = 39;
    assert!(matches!(
        f.exec.fetch(&uri40, &t39).await,
        Err(SnapshotError::Stale {
            index: 39,
            latest: 40
        })
    ));
    let (ra, rb) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert!(matches!(ra, Fetched::Downloaded { .. }), "{ra:?}");
    assert!(
        matches!(rb, Fetched::Joined(ref m) if m.last_included_index == 40),
        "{rb:?}"
    );
    drop(ra);
    assert_eq!(f.exec.stats().installs_total, 1);

    // A newer snapshot while one downloads: the old download is cancelled.
    save(&leader.storage, 50, &files("k", 4, 2 * MIB, 50));
    let (uri50, t50) = leader.offer_latest();
    save(&leader.storage, 60, &files("k", 4, 2 * MIB, 50));
    let (uri60, t60) = leader.offer_latest();
    let e1 = f.exec.clone();
    let old = tokio::spawn(async move { e1.fetch(&uri50, &t50).await });
    while f
        .exec
        .install_status()
        .is_none_or(|s| s.progress.snapshot().fetched_bytes < 2 * MIB as u64)
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let new = f.exec.fetch(&uri60, &t60).await.unwrap();
    assert!(matches!(
        old.await.unwrap(),
        Err(SnapshotError::Cancelled { index: 50 })
    ));
    let Fetched::Downloaded { reader, progress } = new else {
        panic!("{new:?}")
    };
    assert_eq!(reader.index(), 60);
    reader.verify().unwrap();
    // 50 and 60 share their data files: what 50 had fetched was kept.
    let total: u64 = t60.files.iter().map(|f| f.size).sum();
    assert!(progress.resumed_bytes >= 2 * MIB as u64, "{progress:?}");
    assert_eq!(
        progress.resumed_bytes + progress.fetched_bytes,
        total,
        "{progress:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_rate_is_held_by_the_buckets_own_accounting() {
    let leader = Endpoint::start(Arc::new(SnapshotThrottle::default()), lease());
    save(&leader.storage, 7, &files("t", 4, 2 * MIB, 7));
    let throttle = Arc::new(SnapshotThrottle::new(ThrottleOptions {
        recv_rate: Some(32 * MIB as u64),
        ..Default::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let (storage, _) =
        LocalSnapshotStorage::open(dir.path().join("s"), StorageOptions::default()).unwrap();
    let exec = Arc::new(
        SnapshotExecutor::new(
            storage,
            shared(KvFsm::default()),
            ExecutorOptions::default(),
        )
        .with_throttle(throttle.clone()),
    );
    let (uri, table) = leader.offer_latest();
    let p = installed(exec.install(&uri, &table).await.unwrap());
    let s = throttle.recv_limiter().unwrap().stats();
    assert_eq!(s.granted_bytes, p.fetched_bytes);
    // Never faster than the rate (one 100 ms burst of slack; 1 ms more for
    // the rounding of the bucket's own clock arithmetic: CI once saw the
    // span short of the floor by 3 ns).
    let floor = (s.granted_bytes as f64 - 0.1 * (32 * MIB) as f64) / (32 * MIB) as f64;
    assert!(
        s.span.as_secs_f64() + 0.001 >= floor,
        "{:?} for {} bytes",
        s.span,
        s.granted_bytes
    );
}

/// A member holding `data`'s contents under its own names; with `damage`,
/// every file is altered on its disk after its snapshot was saved.
fn member_with(data: &[(String, Vec<u8>)], damage: bool) -> (Endpoint, Arc<SnapshotThrottle>) {
    let throttle = Arc::new(SnapshotThrottle::default());
    let m = Endpoint::start(throttle.clone(), lease());
    let renamed: Vec<(String, Vec<u8>)> = data
        .iter()
        .enumerate()
        .map(|(i, (_, d))| (format!("shards/{i}.tsm"), d.clone()))
        .collect();
    save(&m.storage, 8, &renamed);
    if damage {
        let r = m.storage.open_reader().unwrap();
        for (name, _) in &renamed {
            let p = r.path_of(name).unwrap();
            let mut b = std::fs::read(&p).unwrap();
            b[1000] ^= 0xff;
            std::fs::write(&p, &b).unwrap();
        }
    }
    (m, throttle)
}

fn alternate_of(m: &Endpoint) -> raftsnap::snapshot::AlternateSource {
    let (uri, table) = m.offer_latest();
    raftsnap::snapshot::AlternateSource {
        uri: raftsnap::snapshot::SnapshotUri::parse(&uri).unwrap(),
        table,
    }
}

async fn fetch_verified(
    uri: &str,
    table: &raftsnap::snapshot::SnapshotMetaTable,
    alternates: &[raftsnap::snapshot::AlternateSource],
) {
    let f = follower(ThrottleOptions::default(), CopierOptions::default());
    match f.exec.fetch_from(uri, table, alternates).await.unwrap() {
        Fetched::Downloaded { reader, .. } => {
            assert_eq!(reader.table(), table);
            reader.verify().unwrap();
        }
        other => panic!("expected a download, got {other:?}"),
    }
}

/// Files another member holds (same size and crc32c, another name) come
/// from it too; a member that serves wrong bytes, or cannot be reached,
/// only sends its files back to the leader; every file ends verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_other_members_hold_come_from_them_and_a_bad_one_changes_nothing() {
    let leader_throttle = Arc::new(SnapshotThrottle::default());
    let leader = Endpoint::start(leader_throttle.clone(), lease());
    let data = files("a", 6, MIB, 7);
    save(&leader.storage, 10, &data);
    let (uri, table) = leader.offer_latest();
    let total: u64 = table.files.iter().map(|f| f.size).sum();

    // A sound member: the second file (the first goes to the leader)
    // starts on it, the least loaded source.
    let (good, good_throttle) = member_with(&data, false);
    fetch_verified(&uri, &table, &[alternate_of(&good)]).await;
    let (from_leader, from_good) = (leader_throttle.served_bytes(), good_throttle.served_bytes());
    assert!(
        from_good >= MIB as u64 && from_leader < total,
        "leader {from_leader}, other member {from_good} of {total} bytes"
    );
    assert_eq!(from_leader + from_good, total);

    // A member whose copies are all damaged, and one that is gone: the
    // files tried on them end up coming from the leader, verified.
    let (bad, bad_throttle) = member_with(&data, true);
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_uri = format!("raftsnap://{}/1", gone.local_addr().unwrap());
    drop(gone);
    let gone = raftsnap::snapshot::AlternateSource {
        uri: raftsnap::snapshot::SnapshotUri::parse(&gone_uri).unwrap(),
        table: table.clone(),
    };
    let before = leader_throttle.served_bytes();
    fetch_verified(&uri, &table, &[alternate_of(&bad), gone]).await;
    let from_bad = bad_throttle.served_bytes();
    assert!(
        from_bad >= MIB as u64,
        "the damaged member served {from_bad}"
    );
    assert_eq!(leader_throttle.served_bytes() - before, total);
}
