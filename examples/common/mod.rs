//! Helpers shared by the benchmark examples.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The value after `name` on the command line (`--gib 4`).
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The baseline every benchmark compares with: times `cp -r <srcs…> <dst>`
/// then `sync -f <dst>`, and removes `dst` afterwards. Several sources go
/// into `dst` as a directory.
pub fn cp_sync(srcs: &[&Path], dst: &Path) -> Duration {
    if srcs.len() > 1 {
        std::fs::create_dir_all(dst).expect("create the copy's directory");
    }
    let t = Instant::now();
    let cp = Command::new("cp")
        .arg("-r")
        .args(srcs)
        .arg(dst)
        .status()
        .expect("run cp");
    assert!(cp.success(), "cp failed");
    let sync = Command::new("sync")
        .arg("-f")
        .arg(dst)
        .status()
        .expect("run sync");
    assert!(sync.success(), "sync failed");
    let took = t.elapsed();
    std::fs::remove_dir_all(dst).expect("remove the copy");
    took
}
