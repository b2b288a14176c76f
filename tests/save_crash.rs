//! Crash and error injection between every durable step of a save
//! (`cargo test --features failpoints`).
//!
//! Crashes are real: a child process (this test binary, re-run on one test)
//! aborts at the failpoint, with no destructors run; the parent then reopens
//! the storage. Injected errors run in-process, one point at a time.
#![cfg(feature = "failpoints")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use common::kv_fsm::{KvFsm, apply_range, expected_map, kv_executor};
use raftsnap::snapshot::storage::{
    SAVE_FAILPOINTS, SAVE_FAILPOINTS_PUBLISHED_FROM, TEMP_DIR, snapshot_dir_name,
};
use raftsnap::snapshot::{SaveOutcome, SnapshotError, SnapshotExecutor};

/// Every failpoint of a save, with the snapshot the node must come back with
/// (10 = the previous one, 20 = the new one, already renamed into place).
fn points() -> Vec<(&'static str, u64)> {
    let mut v = vec![("writer_write", 10)];
    for (i, p) in SAVE_FAILPOINTS.iter().enumerate() {
        v.push((
            p,
            if i >= SAVE_FAILPOINTS_PUBLISHED_FROM {
                20
            } else {
                10
            },
        ));
    }
    v
}

fn executor(root: &Path) -> SnapshotExecutor<KvFsm> {
    kv_executor(root, 1)
}

fn first_snapshot(root: &Path) {
    let exec = executor(root);
    apply_range(exec.state_machine(), 1, 10);
    assert!(matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(_)));
}

/// After a crash or failure: no temp/, and the expected snapshot loads and
/// verifies into a fresh state machine; a later save works.
fn check_recovered(root: &Path, expect: u64, point: &str) {
    let exec = executor(root);
    assert!(!root.join(TEMP_DIR).exists(), "{point}: temp/ left behind");
    let meta = exec
        .load_latest(1)
        .unwrap()
        .unwrap_or_else(|| panic!("{point}: nothing to load"));
    assert_eq!(meta.last_included_index, expect, "{point}");
    exec.storage().open_reader().unwrap().verify().unwrap();
    assert_eq!(
        exec.state_machine().lock().unwrap().state_machine.map,
        expected_map(expect),
        "{point}"
    );
    apply_range(exec.state_machine(), expect + 1, 30);
    assert!(
        matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(m) if m.last_included_index == 30),
        "{point}"
    );
}

/// The child half of `a_crash_at_every_save_step_recovers`; a no-op unless
/// run by it.
#[test]
fn child_crash_during_save() {
    let (Ok(dir), Ok(point)) = (
        std::env::var("RAFTSNAP_CRASH_DIR"),
        std::env::var("RAFTSNAP_CRASH_AT"),
    ) else {
        return;
    };
    let exec = executor(Path::new(&dir));
    exec.load_latest(1).unwrap();
    apply_range(exec.state_machine(), 11, 20);
    fail::cfg_callback(point, || std::process::abort()).unwrap();
    let _ = exec.do_snapshot();
    // The failpoint did not fire: tell the parent.
    std::process::exit(3);
}

#[test]
fn a_crash_at_every_save_step_recovers() {
    let _serial = common::failpoint_lock();
    let exe = std::env::current_exe().unwrap();
    for (point, expect) in points() {
        let t = tempfile::tempdir().unwrap();
        first_snapshot(t.path());
        let status = Command::new(&exe)
            .args([
                "--exact",
                "child_crash_during_save",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RAFTSNAP_CRASH_DIR", t.path())
            .env("RAFTSNAP_CRASH_AT", point)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(libc_sigabrt()),
            "{point}: child did not crash there ({status})"
        );
        if expect == 20 {
            assert!(t.path().join(snapshot_dir_name(20)).exists(), "{point}");
        }
        check_recovered(t.path(), expect, point);
    }
}

fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn an_injected_error_at_every_save_step_fails_cleanly() {
    let _serial = common::failpoint_lock();
    let scenario = fail::FailScenario::setup();
    for (point, _) in points() {
        let t = tempfile::tempdir().unwrap();
        first_snapshot(t.path());
        let exec = executor(t.path());
        exec.load_latest(1).unwrap();
        apply_range(exec.state_machine(), 11, 20);
        fail::cfg(point, "return").unwrap();
        let res = exec.do_snapshot();
        fail::remove(point);
        // Injected directly, or through the state machine's save for a
        // failure while it writes its files.
        match res {
            Err(e @ (SnapshotError::Injected(_) | SnapshotError::StateMachine { .. })) => {
                assert!(
                    e.to_string()
                        .contains(&format!("injected failure at {point}")),
                    "{e}"
                )
            }
            other => panic!("{point}: expected the injected error, got {other:?}"),
        }
        // The failed save changed nothing: same latest, no temp, no new dir.
        assert_eq!(exec.storage().latest_index(), 10, "{point}");
        assert!(!t.path().join(TEMP_DIR).exists(), "{point}");
        assert!(!t.path().join(snapshot_dir_name(20)).exists(), "{point}");
        assert_eq!(exec.stats().save_failures_total, 1);
        drop(exec);
        check_recovered(t.path(), 10, point);
    }
    scenario.teardown();
}
