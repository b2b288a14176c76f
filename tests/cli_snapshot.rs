//! `tsnode snapshot list|inspect|verify` run as a process against real
//! snapshots: JSON shape, exit codes 0/1/2, every bad file named.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::kv_fsm::{KvFsm, apply_range};
use raftsnap::cli::snapshot_cmd::InspectJson;
use raftsnap::snapshot::meta_table::META_FILE;
use raftsnap::snapshot::{
    ExecutorOptions, LocalSnapshotStorage, SaveOutcome, SnapshotExecutor, StorageOptions, shared,
};

fn tsnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsnode"))
        .args(args)
        .output()
        .unwrap()
}

/// A data dir with one snapshot (kv.json + blob); returns its directory.
fn snapshot(data_dir: &Path) -> std::path::PathBuf {
    let (storage, _) =
        LocalSnapshotStorage::open(data_dir.join("snapshots"), StorageOptions::default()).unwrap();
    let exec = SnapshotExecutor::new(
        storage,
        shared(KvFsm::default()),
        ExecutorOptions::default(),
    );
    exec.state_machine().lock().unwrap().state_machine.blob = vec![1u8; 5000];
    apply_range(exec.state_machine(), 1, 42);
    assert!(matches!(exec.do_snapshot().unwrap(), SaveOutcome::Saved(_)));
    exec.storage().snapshot_dir(42)
}

#[test]
fn inspect_json_lists_index_term_membership_and_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = snapshot(t.path());
    let out = tsnode(&["snapshot", "inspect", dir.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: InspectJson = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((j.index, j.term), (42, 1));
    assert_eq!((j.voters, j.learners), (vec![1, 2, 3], vec![4]));
    let names: Vec<&str> = j.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["blob", "kv.json"]);
    assert_eq!(j.files[0].size, 5000);
    assert_eq!(j.files[0].crc32c, crc32c::crc32c(&[1u8; 5000]));
    assert_eq!(j.bytes, j.files.iter().map(|f| f.size).sum::<u64>());
    // The raw JSON has exactly the contract's field names.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["bytes", "files", "index", "learners", "term", "voters"]
    );

    let text = tsnode(&["snapshot", "inspect", dir.to_str().unwrap()]);
    let s = String::from_utf8(text.stdout).unwrap();
    assert!(
        s.contains("index      42") && s.contains("voters [1, 2, 3] learners [4]"),
        "{s}"
    );
}

#[test]
fn verify_exit_codes_name_every_bad_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = snapshot(t.path());
    let d = dir.to_str().unwrap();
    let ok = tsnode(&["snapshot", "verify", d]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    // One flipped byte, one truncation: exit 1, both named.
    let blob = dir.join("blob");
    let mut b = fs::read(&blob).unwrap();
    b[100] ^= 0x80;
    fs::write(&blob, b).unwrap();
    let kv = dir.join("kv.json");
    let len = fs::metadata(&kv).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&kv)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let bad = tsnode(&["snapshot", "verify", d]);
    assert_eq!(bad.status.code(), Some(1));
    let s = String::from_utf8(bad.stdout).unwrap();
    assert!(s.contains("BAD blob: crc32c"), "{s}");
    assert!(s.contains("BAD kv.json: size"), "{s}");
    assert!(s.contains("2 of 2 files failed"), "{s}");

    // Missing file: exit 1 and named.
    fs::remove_file(&blob).unwrap();
    let s = String::from_utf8(tsnode(&["snapshot", "verify", d]).stdout).unwrap();
    assert!(s.contains("BAD blob: missing"), "{s}");

    // Meta table unreadable: exit 2, for verify and inspect.
    let meta = dir.join(META_FILE);
    let mut m = fs::read(&meta).unwrap();
    m[0] = b'X';
    fs::write(&meta, m).unwrap();
    let out = tsnode(&["snapshot", "verify", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad magic"));
    assert_eq!(tsnode(&["snapshot", "inspect", d]).status.code(), Some(2));
    assert_eq!(
        tsnode(&["snapshot", "verify", "/nonexistent/x"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn list_shows_snapshots_and_leftovers_without_touching_them() {
    let t = tempfile::tempdir().unwrap();
    snapshot(t.path());
    fs::create_dir_all(t.path().join("snapshots/temp")).unwrap();
    let out = tsnode(&[
        "snapshot",
        "list",
        "--data-dir",
        t.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["temp", "snapshot"]);
    assert_eq!(v[1]["meta"]["index"], 42);
    // Read-only: temp/ is still there.
    assert!(t.path().join("snapshots/temp").exists());
    let text = String::from_utf8(
        tsnode(&["snapshot", "list", "--data-dir", t.path().to_str().unwrap()]).stdout,
    )
    .unwrap();
    assert!(text.contains("snapshot") && text.contains("42"), "{text}");
}

#[test]
fn the_demo_runs_and_checks_itself() {
    let out = tsnode(&["demo", "--points", "4000"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("summary: 4000 points on 3 nodes"), "{s}");
    assert!(
        s.contains("caught up in") && !s.contains(": 0 install(s)"),
        "{s}"
    );
}
