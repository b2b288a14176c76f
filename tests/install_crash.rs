//! Crash and error injection between every durable step of an install
//! (`cargo test --features failpoints`). The parent serves a snapshot over
//! gRPC; a child process installs it and aborts at the failpoint; the parent
//! reopens the follower's storage and finishes the install, which must then
//! fetch nothing it already had.
#![cfg(feature = "failpoints")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::file_server::{Endpoint, bytes, save};
use common::kv_fsm::{KvFsm, kv_executor};
use raftsnap::snapshot::copier::INSTALL_FAILPOINTS;
use raftsnap::snapshot::storage::{DOWNLOAD_DIR, snapshot_dir_name};
use raftsnap::snapshot::{
    CopierOptions, InstallOutcome, LocalSnapshotStorage, RemoteFileCopier, SnapshotExecutor,
    SnapshotThrottle, SnapshotUri, StorageOptions,
};

/// Every failpoint of an install, and whether the snapshot is already
/// published (renamed into place) when it fires.
fn points() -> Vec<(&'static str, bool)> {
    let mut v: Vec<(&str, bool)> = INSTALL_FAILPOINTS.iter().map(|p| (*p, false)).collect();
    v.push(("save_after_publish_rename", true));
    v.push(("save_after_parent_fsync", true));
    v
}

fn executor(root: &Path) -> Arc<SnapshotExecutor<KvFsm>> {
    Arc::new(kv_executor(root, 1))
}

fn leader() -> Endpoint {
    let e = Endpoint::start(
        Arc::new(SnapshotThrottle::default()),
        Duration::from_secs(300),
    );
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("data/f{i}.tsm"), bytes(i, 700_000)))
        .collect();
    save(&e.storage, 77, &files);
    e
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn table_of(root: &Path, uri: &str) -> raftsnap::snapshot::SnapshotMetaTable {
    let (storage, _) = LocalSnapshotStorage::open(root, StorageOptions::default()).unwrap();
    let c = RemoteFileCopier::new(
        storage,
        CopierOptions::default(),
        Arc::new(SnapshotThrottle::default()),
    );
    c.fetch_meta(&SnapshotUri::parse(uri).unwrap())
        .await
        .unwrap()
}

/// Ends the leader's send of this snapshot (as raft does when the install
/// RPC returns), freeing its slot under `max_concurrent_sends`.
fn release(leader: &Endpoint, uri: &str) {
    assert!(
        leader
            .registry
            .release(SnapshotUri::parse(uri).unwrap().reader_id)
    );
}

/// The child half of `a_crash_at_every_install_step_recovers`.
#[test]
fn child_crash_during_install() {
    let (Ok(dir), Ok(point), Ok(uri)) = (
        std::env::var("RAFTSNAP_CRASH_DIR"),
        std::env::var("RAFTSNAP_CRASH_AT"),
        std::env::var("RAFTSNAP_CRASH_URI"),
    ) else {
        return;
    };
    rt().block_on(async {
        let exec = executor(Path::new(&dir));
        let table = table_of(Path::new(&dir), &uri).await;
        fail::cfg_callback(point, || std::process::abort()).unwrap();
        let _ = exec.install(&uri, &table).await;
        std::process::exit(3);
    });
}

/// After a crash or failure: finish the install; it fetches only what the
/// first attempt had not written, and the state is the snapshot's.
async fn finish(root: &Path, uri: &str, total: u64, published: bool, point: &str) {
    let exec = executor(root);
    let table = table_of(root, uri).await;
    match exec.install(uri, &table).await.unwrap() {
        InstallOutcome::AlreadyHave(m) => {
            assert!(published, "{point}: published too early");
            assert_eq!(m.last_included_index, 77);
            exec.load_latest(1).unwrap();
        }
        InstallOutcome::Installed { progress, .. } => {
            assert!(!published, "{point}: the snapshot was already in place");
            assert_eq!(
                progress.fetched_bytes + progress.resumed_bytes,
                total,
                "{point}: {progress:?}"
            );
            if point != "install_after_prepare" {
                assert_eq!(
                    progress.fetched_bytes, 0,
                    "{point}: refetched what it had: {progress:?}"
                );
            }
        }
        other => panic!("{point}: {other:?}"),
    }
    exec.storage().open_reader().unwrap().verify().unwrap();
    assert!(!root.join(DOWNLOAD_DIR).exists(), "{point}");
    let g = exec.state_machine().lock().unwrap();
    assert_eq!(g.applied.last_included_index, 77, "{point}");
    assert_eq!(g.state_machine.map["index"], "77", "{point}");
}

#[test]
fn a_crash_at_every_install_step_recovers() {
    let _serial = common::failpoint_lock();
    let rt = rt();
    let leader = leader();
    let exe = std::env::current_exe().unwrap();
    for (point, published) in points() {
        let (uri, table) = leader.offer_latest();
        let total: u64 = table.files.iter().map(|f| f.size).sum();
        let t = tempfile::tempdir().unwrap();
        let status = Command::new(&exe)
            .args([
                "--exact",
                "child_crash_during_install",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RAFTSNAP_CRASH_DIR", t.path())
            .env("RAFTSNAP_CRASH_AT", point)
            .env("RAFTSNAP_CRASH_URI", &uri)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(6),
            "{point}: child did not crash there ({status})"
        );
        assert_eq!(
            t.path().join(snapshot_dir_name(77)).exists(),
            published,
            "{point}"
        );
        rt.block_on(finish(t.path(), &uri, total, published, point));
        release(&leader, &uri);
    }
}

#[test]
fn an_injected_error_at_every_install_step_fails_cleanly() {
    let _serial = common::failpoint_lock();
    let rt = rt();
    let leader = leader();
    let scenario = fail::FailScenario::setup();
    for (point, _) in points() {
        let (uri, table) = leader.offer_latest();
        let total: u64 = table.files.iter().map(|f| f.size).sum();
        let t = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let exec = executor(t.path());
            fail::cfg(point, "return").unwrap();
            let err = exec.install(&uri, &table).await.unwrap_err();
            fail::remove(point);
            assert!(
                err.to_string()
                    .contains(&format!("injected failure at {point}")),
                "{point}: {err}"
            );
            assert_eq!(exec.storage().latest_index(), 0, "{point}");
            assert!(!t.path().join(snapshot_dir_name(77)).exists(), "{point}");
            assert_eq!(
                exec.state_machine()
                    .lock()
                    .unwrap()
                    .applied
                    .last_included_index,
                0
            );
            drop(exec);
            finish(t.path(), &uri, total, false, point).await;
        });
        release(&leader, &uri);
    }
    scenario.teardown();
}
