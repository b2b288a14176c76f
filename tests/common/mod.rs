//! Shared test helpers: an in-memory KV state machine that persists into its
//! snapshot (proving the snapshot layer works with any state machine), a
//! snapshot-serving gRPC endpoint, and in-process raft clusters.
#![allow(dead_code)]

pub mod cluster;
pub mod differential;
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

/// A port free on 127.0.0.1 right now, chosen at random below the
/// kernel's ephemeral range (32768–60999): a node restarted on its port
/// cannot then find it taken by some test's outgoing connection, which
/// the kernel gives ephemeral ports.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..1000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000 after 1000 tries");
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

/// Waits until `f` is `Ok` (up to 30 s); its last `Err` when it never is.
pub fn wait(what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(e) = f() {
        assert!(std::time::Instant::now() < deadline, "{what}: {e}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `Ok` when `ok`, else `diag()`'s message (for [`wait`]).
pub fn check(ok: bool, diag: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(diag()) }
}
