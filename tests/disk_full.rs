//! A save on a real full disk: the snapshot root sits on a 1 MiB tmpfs and
//! the state machine writes more than fits. The save must fail with ENOSPC,
//! leave the previous snapshot loadable and no `temp/`.
//!
//! Mounting needs root (CI runs as root). Elsewhere the test says why it did
//! not run; under CI (`CI` set) a failed mount fails the test.

mod common;

use common::tmpfs::Tmpfs;

use std::path::Path;

use common::kv_fsm::{KvFsm, apply_range, expected_map, kv_executor};
use raftsnap::snapshot::{SaveOutcome, SnapshotError, SnapshotExecutor};

fn executor(root: &Path) -> SnapshotExecutor<KvFsm> {
    kv_executor(root, 1)
}

#[test]
fn a_save_on_a_full_disk_fails_cleanly_and_keeps_the_previous_snapshot() {
    let fs = match Tmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "disk-full test not run: cannot mount a tmpfs here ({e}); it needs root, as in CI"
            );
            return;
        }
        Err(e) => panic!("CI must be able to mount a tmpfs for the disk-full test: {e}"),
    };
    let root = fs.dir.join("snapshots");
    let exec = executor(&root);
    apply_range(exec.state_machine(), 1, 100);
    assert!(matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(_)));

    apply_range(exec.state_machine(), 101, 200);
    exec.state_machine().lock().unwrap().state_machine.blob = vec![7u8; 2 << 20];
    let err = exec.do_snapshot().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SnapshotError::StateMachine { .. }), "{msg}");
    assert!(
        msg.contains("No space left on device") || msg.contains("storage full"),
        "{msg}"
    );
    assert!(msg.contains("blob"), "the error names the file: {msg}");
    assert!(!root.join("temp").exists());
    assert_eq!(exec.storage().latest_index(), 100);
    drop(exec);

    // Restart: the previous snapshot is there and sound.
    let exec = executor(&root);
    assert_eq!(
        exec.load_latest(1).unwrap().unwrap().last_included_index,
        100
    );
    assert_eq!(
        exec.state_machine().lock().unwrap().state_machine.map,
        expected_map(100)
    );
    // With the space back, saving works again.
    apply_range(exec.state_machine(), 101, 200);
    assert!(
        matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(m) if m.last_included_index == 200)
    );
}
