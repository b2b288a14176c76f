//! Shared test helpers: an in-memory KV state machine that persists into its
//! snapshot (proving the snapshot layer works with any state machine), a
//! snapshot-serving gRPC endpoint, and in-process raft clusters.
#![allow(dead_code)]

pub mod cluster;
pub mod file_server;
pub mod http;
pub mod influxd;
pub mod kv_fsm;
pub mod procs;
pub mod tmpfs;

/// Failpoints are global to a process: tests that run failpoint-laden code
/// in-process take this lock so a failure injected for one cannot hit another.
pub fn failpoint_lock() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A port free on 127.0.0.1 right now (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `tsnode <args> <path>`; whether it succeeded, and its stdout and
/// stderr.
pub fn tsnode(args: &[&str], path: &std::path::Path) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tsnode"))
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}
