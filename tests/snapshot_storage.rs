//! Save, load, retain, refcounts, startup rules and verification of the local
//! snapshot storage and executor, driven through the test KV state machine.

mod common;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Barrier};

use common::kv_fsm::{KvFsm, apply_range, expected_map, kv_executor};
use raftsnap::snapshot::meta_table::META_FILE;
use raftsnap::snapshot::storage::{DOWNLOAD_DIR, DOWNLOAD_META_FILE, TEMP_DIR, snapshot_dir_name};
use raftsnap::snapshot::{
    ExecutorOptions, FileProblem, LocalSnapshotStorage, Phase, SaveOutcome, SnapshotError,
    SnapshotExecutor, SnapshotMeta, SnapshotMetaTable, StorageOptions, shared,
};

fn executor(root: &Path, retain: usize) -> SnapshotExecutor<KvFsm> {
    kv_executor(root, retain)
}

fn saved(out: SaveOutcome) -> SnapshotMeta {
    match out {
        SaveOutcome::Saved(m) => m,
        other => panic!("expected a save, got {other:?}"),
    }
}

#[test]
fn save_then_load_into_a_fresh_state_machine() {
    let t = tempfile::tempdir().unwrap();
    let exec = executor(t.path(), 1);
    apply_range(exec.state_machine(), 1, 50);
    let m = saved(exec.do_snapshot().unwrap());
    assert_eq!(m.last_included_index, 50);
    assert_eq!(m.voters, vec![1, 2, 3]);
    assert!(
        t.path()
            .join(snapshot_dir_name(50))
            .join(META_FILE)
            .exists()
    );
    assert!(!t.path().join(TEMP_DIR).exists());
    drop(exec);

    let exec = executor(t.path(), 1);
    let loaded = exec.load_latest(1).unwrap().unwrap();
    assert_eq!(loaded, m);
    let g = exec.state_machine().lock().unwrap();
    assert_eq!(g.state_machine.map, expected_map(50));
    assert_eq!(g.applied, m);
    assert_eq!(exec.stats().loads_total, 1);
}

#[test]
fn save_is_skipped_below_min_gap_and_at_index_zero() {
    let t = tempfile::tempdir().unwrap();
    let (storage, _) = LocalSnapshotStorage::open(t.path(), StorageOptions::default()).unwrap();
    let exec = SnapshotExecutor::new(
        storage,
        shared(KvFsm::default()),
        ExecutorOptions {
            snapshot_min_gap: 10,
            ..Default::default()
        },
    );
    assert_eq!(
        exec.do_snapshot().unwrap(),
        SaveOutcome::Skipped {
            applied_index: 0,
            last_snapshot_index: 0
        }
    );
    apply_range(exec.state_machine(), 1, 9);
    assert!(matches!(
        exec.do_snapshot().unwrap(),
        SaveOutcome::Skipped {
            applied_index: 9,
            ..
        }
    ));
    apply_range(exec.state_machine(), 10, 10);
    saved(exec.do_snapshot().unwrap());
    apply_range(exec.state_machine(), 11, 19);
    assert!(matches!(
        exec.do_snapshot().unwrap(),
        SaveOutcome::Skipped {
            applied_index: 19,
            last_snapshot_index: 10
        }
    ));
    assert_eq!(exec.stats().saves_total, 1);
}

#[test]
fn a_reader_keeps_an_old_snapshot_until_dropped() {
    let t = tempfile::tempdir().unwrap();
    let exec = executor(t.path(), 1);
    apply_range(exec.state_machine(), 1, 10);
    saved(exec.do_snapshot().unwrap());
    let old = exec.storage().open_reader().unwrap();
    let old_dir = old.dir().to_path_buf();
    for end in [20, 30, 40] {
        apply_range(exec.state_machine(), end - 9, end);
        saved(exec.do_snapshot().unwrap());
    }
    // Read while newer snapshots were saved: still whole.
    assert!(old_dir.exists());
    old.verify().unwrap();
    let kv: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&fs::read(old.path_of("kv.json").unwrap()).unwrap()).unwrap();
    assert_eq!(kv, expected_map(10));
    let live: Vec<u64> = exec
        .storage()
        .list()
        .iter()
        .map(|i| i.meta.last_included_index)
        .collect();
    assert_eq!(live, vec![10, 40]);
    // A clone is a second ref.
    let clone = old.clone();
    drop(old);
    assert!(old_dir.exists());
    drop(clone);
    assert!(!old_dir.exists());
    assert!(!t.path().join(snapshot_dir_name(20)).exists());
    assert!(!t.path().join(snapshot_dir_name(30)).exists());
    assert_eq!(exec.storage().latest_index(), 40);
}

#[test]
fn retain_keeps_the_newest_n() {
    let t = tempfile::tempdir().unwrap();
    let exec = executor(t.path(), 3);
    for end in (10..=60).step_by(10) {
        apply_range(exec.state_machine(), end - 9, end);
        saved(exec.do_snapshot().unwrap());
    }
    let live: Vec<u64> = exec
        .storage()
        .list()
        .iter()
        .map(|i| i.meta.last_included_index)
        .collect();
    assert_eq!(live, vec![40, 50, 60]);
    drop(exec);
    // Reopening with a smaller retain prunes the oldest.
    let (storage, report) =
        LocalSnapshotStorage::open(t.path(), StorageOptions { retain: 1 }).unwrap();
    assert_eq!(report.kept, vec![60]);
    assert_eq!(report.pruned, vec![50, 40]);
    assert_eq!(storage.latest_index(), 60);
    assert!(storage.open_reader_at(50).is_err());
}

#[test]
fn startup_removes_temp_and_invalid_download_keeps_valid_download() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join(TEMP_DIR).join("data")).unwrap();
    fs::write(t.path().join(TEMP_DIR).join("data/x"), b"half").unwrap();
    fs::create_dir_all(t.path().join(DOWNLOAD_DIR)).unwrap();
    fs::write(t.path().join(DOWNLOAD_DIR).join("f"), b"partial").unwrap();
    let (_, report) = LocalSnapshotStorage::open(t.path(), StorageOptions::default()).unwrap();
    assert!(report.removed_temp && report.removed_download);
    assert!(!t.path().join(TEMP_DIR).exists());
    assert!(!t.path().join(DOWNLOAD_DIR).exists());

    let (storage, _) = LocalSnapshotStorage::open(t.path(), StorageOptions::default()).unwrap();
    let remote = SnapshotMetaTable {
        meta: Some(SnapshotMeta {
            last_included_index: 99,
            last_included_term: 3,
            ..Default::default()
        }),
        files: vec![],
    };
    storage.write_download_meta(&remote).unwrap();
    fs::write(t.path().join(DOWNLOAD_DIR).join("f"), b"partial").unwrap();
    drop(storage);
    let (_, report) = LocalSnapshotStorage::open(t.path(), StorageOptions::default()).unwrap();
    assert!(report.kept_download);
    assert!(t.path().join(DOWNLOAD_DIR).join("f").exists());
    // A download meta that no longer decodes: the partial install is dropped.
    let p = t.path().join(DOWNLOAD_DIR).join(DOWNLOAD_META_FILE);
    let mut b = fs::read(&p).unwrap();
    b[12] ^= 1;
    fs::write(&p, b).unwrap();
    let (_, report) = LocalSnapshotStorage::open(t.path(), StorageOptions::default()).unwrap();
    assert!(report.removed_download);
}

fn two_snapshots(root: &Path) -> (SnapshotMeta, SnapshotMeta) {
    let exec = executor(root, 2);
    apply_range(exec.state_machine(), 1, 10);
    let a = saved(exec.do_snapshot().unwrap());
    apply_range(exec.state_machine(), 11, 20);
    let b = saved(exec.do_snapshot().unwrap());
    (a, b)
}

#[test]
fn a_broken_newest_snapshot_is_quarantined_and_the_older_one_used() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = two_snapshots(t.path());
    let newest = t.path().join(snapshot_dir_name(b.last_included_index));
    let meta = newest.join(META_FILE);
    let mut bytes = fs::read(&meta).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&meta, bytes).unwrap();

    let (storage, report) =
        LocalSnapshotStorage::open(t.path(), StorageOptions { retain: 2 }).unwrap();
    assert_eq!(report.broken.len(), 1);
    assert_eq!(report.broken[0].0, 20);
    assert!(
        report.broken[0].1.contains("crc32c mismatch"),
        "{}",
        report.broken[0].1
    );
    assert!(!newest.exists());
    assert!(
        t.path()
            .join(format!("{}.broken", snapshot_dir_name(20)))
            .exists()
    );
    assert_eq!(storage.latest_index(), a.last_included_index);

    // The log still reaches the older snapshot: it loads.
    let exec = SnapshotExecutor::new(
        storage.clone(),
        shared(KvFsm::default()),
        ExecutorOptions::default(),
    );
    assert_eq!(exec.load_latest(11).unwrap().unwrap(), a);
    assert_eq!(
        exec.state_machine().lock().unwrap().state_machine.map,
        expected_map(10)
    );
    drop(exec);
    // The log was compacted past it: refuse to start, say what to do.
    let exec = SnapshotExecutor::new(
        storage,
        shared(KvFsm::default()),
        ExecutorOptions::default(),
    );
    match exec.load_latest(16) {
        Err(
            e @ SnapshotError::LogGap {
                snapshot_index: 10,
                first_log_index: 16,
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains("wipe its data directory") && msg.contains(".broken"),
                "{msg}"
            );
        }
        other => panic!("expected LogGap, got {other:?}"),
    }
    // No snapshot at all and a log that does not start at 1: also refused.
    let t2 = tempfile::tempdir().unwrap();
    assert!(matches!(
        executor(t2.path(), 1).load_latest(5),
        Err(SnapshotError::LogGap { .. })
    ));
    assert_eq!(executor(t2.path(), 1).load_latest(1).unwrap(), None);
}

#[test]
fn a_truncated_file_makes_a_snapshot_broken_at_startup_and_only_one_broken_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let exec = executor(t.path(), 1);
    for round in 1..=3u64 {
        apply_range(exec.state_machine(), round * 10 - 9, round * 10);
        saved(exec.do_snapshot().unwrap());
    }
    drop(exec);
    // Break snapshot 30 (truncate), reopen → 30.broken; no snapshot left.
    let f = t.path().join(snapshot_dir_name(30)).join("kv.json");
    let len = fs::metadata(&f).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let (storage, report) =
        LocalSnapshotStorage::open(t.path(), StorageOptions::default()).unwrap();
    assert_eq!(report.broken[0].0, 30);
    assert!(
        report.broken[0].1.contains("kv.json"),
        "{}",
        report.broken[0].1
    );
    assert_eq!(storage.latest_index(), 0);
    // Save 40, break it too: only the newest broken (40) is kept.
    let exec = SnapshotExecutor::new(
        storage,
        shared(KvFsm::default()),
        ExecutorOptions::default(),
    );
    apply_range(exec.state_machine(), 1, 40);
    saved(exec.do_snapshot().unwrap());
    drop(exec);
    fs::remove_file(t.path().join(snapshot_dir_name(40)).join("kv.json")).unwrap();
    LocalSnapshotStorage::open(t.path(), StorageOptions::default()).unwrap();
    let broken: Vec<String> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".broken"))
        .collect();
    assert_eq!(broken, vec![format!("{}.broken", snapshot_dir_name(40))]);
}

#[test]
fn verify_names_every_flipped_truncated_or_missing_file() {
    let t = tempfile::tempdir().unwrap();
    let exec = executor(t.path(), 1);
    {
        let mut g = exec.state_machine().lock().unwrap();
        g.state_machine.blob = (0..4096u32).map(|i| i as u8).collect();
    }
    apply_range(exec.state_machine(), 1, 30);
    saved(exec.do_snapshot().unwrap());
    let r = exec.storage().open_reader().unwrap();
    r.verify().unwrap();
    for f in r.files().to_vec() {
        let p = r.path_of(&f.name).unwrap();
        let orig = fs::read(&p).unwrap();
        for pos in [0, orig.len() / 2, orig.len() - 1] {
            let mut b = orig.clone();
            b[pos] ^= 0x01;
            fs::write(&p, &b).unwrap();
            match r.verify() {
                Err(SnapshotError::Verify { bad, .. }) => {
                    assert_eq!(bad.len(), 1);
                    assert_eq!(bad[0].name, f.name);
                    assert!(matches!(bad[0].problem, FileProblem::CrcMismatch { .. }));
                }
                other => panic!("flip at {pos} of {} not caught: {other:?}", f.name),
            }
        }
        fs::write(&p, &orig).unwrap();
    }
    r.verify().unwrap();
    // Truncate one, delete the other: both named.
    let blob = r.path_of("blob").unwrap();
    fs::write(&blob, b"short").unwrap();
    fs::remove_file(r.path_of("kv.json").unwrap()).unwrap();
    match r.verify() {
        Err(e @ SnapshotError::Verify { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("blob: size 5 bytes"), "{msg}");
            assert!(msg.contains("kv.json: missing"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_state_machine_save_leaves_the_previous_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let exec = executor(t.path(), 1);
    apply_range(exec.state_machine(), 1, 10);
    let first = saved(exec.do_snapshot().unwrap());
    apply_range(exec.state_machine(), 11, 20);
    exec.state_machine()
        .lock()
        .unwrap()
        .state_machine
        .fail_next_save = Some("disk on fire".into());
    match exec.do_snapshot() {
        Err(SnapshotError::StateMachine {
            op: "save",
            index: 20,
            source,
        }) => {
            assert_eq!(source.to_string(), "disk on fire")
        }
        other => panic!("{other:?}"),
    }
    assert!(!t.path().join(TEMP_DIR).exists());
    assert_eq!(exec.storage().latest_meta().unwrap(), first);
    assert_eq!(exec.stats().save_failures_total, 1);
    assert_eq!(exec.phase(), Phase::Idle);
    // The next save works.
    assert_eq!(saved(exec.do_snapshot().unwrap()).last_included_index, 20);
}

#[test]
fn save_and_load_are_exclusive() {
    let t = tempfile::tempdir().unwrap();
    let exec = Arc::new(executor(t.path(), 1));
    apply_range(exec.state_machine(), 1, 10);
    saved(exec.do_snapshot().unwrap());
    apply_range(exec.state_machine(), 11, 20);
    let barrier = Arc::new(Barrier::new(2));
    exec.state_machine()
        .lock()
        .unwrap()
        .state_machine
        .stall_next_save = Some(barrier.clone());
    let e2 = exec.clone();
    let saver = std::thread::spawn(move || e2.do_snapshot());
    barrier.wait(); // the save is inside the state machine now
    assert_eq!(exec.phase(), Phase::Saving);
    assert!(matches!(exec.do_snapshot(), Err(SnapshotError::Busy(_))));
    let r = exec.storage().open_reader().unwrap();
    assert!(matches!(exec.load(&r), Err(SnapshotError::Busy(_))));
    assert!(!exec.wait_idle(std::time::Duration::from_millis(1)));
    barrier.wait();
    assert_eq!(
        saved(saver.join().unwrap().unwrap()).last_included_index,
        20
    );
    assert!(exec.wait_idle(std::time::Duration::from_secs(5)));
}

#[test]
fn writer_rules_one_writer_valid_names_newer_index() {
    let t = tempfile::tempdir().unwrap();
    let (storage, _) = LocalSnapshotStorage::open(t.path(), StorageOptions::default()).unwrap();
    let meta = |i| SnapshotMeta {
        last_included_index: i,
        last_included_term: 1,
        ..Default::default()
    };
    let mut w = storage.create_writer(meta(5)).unwrap();
    assert!(matches!(
        storage.create_writer(meta(6)),
        Err(SnapshotError::WriterActive(_))
    ));
    for bad in [
        "../x",
        "/abs",
        "a//b",
        "",
        "./a",
        META_FILE,
        DOWNLOAD_META_FILE,
    ] {
        assert!(
            matches!(w.write_file(bad, b"x"), Err(SnapshotError::BadName { .. })),
            "{bad:?}"
        );
    }
    w.write_file("a/b/c", b"abc").unwrap();
    assert!(matches!(
        w.write_file("a/b/c", b"x"),
        Err(SnapshotError::BadName { .. })
    ));
    let src = t.path().join("live.dat");
    fs::write(&src, b"live bytes").unwrap();
    let crc = crc32c::crc32c(b"live bytes");
    w.add_file_link("data/live.dat", &src, crc).unwrap();
    w.add_file_copy("copy.dat", &src).unwrap();
    assert_eq!(w.file("copy.dat").unwrap().crc32c, crc);
    {
        use std::io::Write;
        let mut sink = w.create_file("streamed").unwrap();
        sink.write_all(b"live ").unwrap();
        sink.write_all(b"bytes").unwrap();
        let fm = sink.finish().unwrap();
        assert_eq!((fm.size, fm.crc32c), (10, crc));
    }
    storage.close_writer(w).unwrap();
    let r = storage.open_reader().unwrap();
    r.verify().unwrap();
    assert_eq!(r.files().len(), 4);
    assert!(r.path_of("../../etc/passwd").is_err());
    // Hard link: same inode as the live file.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(&src).unwrap().ino(),
        fs::metadata(r.path_of("data/live.dat").unwrap())
            .unwrap()
            .ino()
    );
    // Not newer than the latest: refused, nothing left behind.
    let w = storage.create_writer(meta(5)).unwrap();
    assert!(matches!(
        storage.close_writer(w),
        Err(SnapshotError::Stale {
            index: 5,
            latest: 5
        })
    ));
    assert!(!t.path().join(TEMP_DIR).exists());
    // Dropping a writer without closing removes temp/.
    let mut w = storage.create_writer(meta(9)).unwrap();
    w.write_file("x", b"x").unwrap();
    drop(w);
    assert!(!t.path().join(TEMP_DIR).exists());
    assert_eq!(storage.latest_index(), 5);
}
