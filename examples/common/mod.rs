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

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed and reaped on drop.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to 60 s) until `http` answers /ping.
pub fn wait_ping(http: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(&format!("http://{http}/ping")).call().is_err() {
        assert!(Instant::now() < deadline, "{http} never answered /ping");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POST /query; the JSON answer.
pub fn query(http: &str, db: &str, q: &str) -> serde_json::Value {
    let mut r = ureq::post(&format!("http://{http}/query"))
        .query("db", db)
        .query("q", q)
        .send_empty()
        .unwrap_or_else(|e| panic!("{http}: {q}: {e}"));
    serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("JSON")
}

/// A real influxd 1.6.7 (Debian's package) in `dir`: (process, HTTP
/// address, bind address for backups).
pub fn start_influxd(dir: &Path) -> (Kill, String, String) {
    start_influxd_with(dir, "")
}

/// [`start_influxd`] with `data_extra` appended to its `[data]` section.
pub fn start_influxd_with(dir: &Path, data_extra: &str) -> (Kill, String, String) {
    let influxd = Path::new("/usr/bin/influxd");
    assert!(influxd.exists(), "install Debian's influxdb package first");
    let (http, bind) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    std::fs::create_dir_all(dir).expect("dir");
    let cfg = format!(
        "reporting-disabled = true\nbind-address = \"{bind}\"\n[meta]\n  dir = \"{0}/meta\"\n  logging-enabled = false\n\
         [data]\n  dir = \"{0}/data\"\n  wal-dir = \"{0}/wal\"\n  query-log-enabled = false\n{data_extra}\n\
         [http]\n  bind-address = \"{http}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n",
        dir.display()
    );
    std::fs::write(dir.join("influxdb.conf"), cfg).expect("config");
    let child = Command::new(influxd)
        .arg("-config")
        .arg(dir.join("influxdb.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start influxd");
    let k = Kill(child);
    wait_ping(&http);
    (k, http, bind)
}

/// The release `tsnode` binary beside this example (`TSNODE_BIN` names
/// another one, e.g. an older build to compare with).
pub fn tsnode_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("TSNODE_BIN") {
        return p.into();
    }
    let p = std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("tsnode"))
        .expect("target dir");
    assert!(p.exists(), "build target/release/tsnode first");
    p
}

/// A tsnode cluster of `n` processes under `dir`: (processes, HTTP
/// addresses by id, snapshotter addresses by id). Waits for a leader.
pub fn start_tsnodes(n: u64, dir: &Path, extra: &[&str]) -> (Vec<Kill>, Vec<String>, Vec<String>) {
    let (procs, http, _, snap) = start_cluster(n, dir, extra);
    (procs, http, snap)
}

/// Like [`start_tsnodes`], with the raft addresses too: (processes, HTTP,
/// raft, snapshotter addresses by id).
pub fn start_cluster(
    n: u64,
    dir: &Path,
    extra: &[&str],
) -> (Vec<Kill>, Vec<String>, Vec<String>, Vec<String>) {
    let ports = |_| format!("127.0.0.1:{}", free_port());
    let http: Vec<String> = (0..n).map(ports).collect();
    let raft: Vec<String> = (0..n).map(ports).collect();
    let snap: Vec<String> = (0..n).map(ports).collect();
    let peers = raft
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let bin = tsnode_binary();
    let procs: Vec<Kill> = (0..n as usize)
        .map(|i| {
            Kill(
                Command::new(&bin)
                    .args(["serve", "--id", &(i + 1).to_string()])
                    .args(["--raft-addr", &raft[i], "--http-addr", &http[i]])
                    .args(["--snapshotter-addr", &snap[i], "--peers", &peers])
                    .arg("--data-dir")
                    .arg(dir.join(format!("node{}", i + 1)))
                    .args(extra)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start tsnode"),
            )
        })
        .collect();
    for h in &http {
        wait_ping(h);
    }
    (procs, http, raft, snap)
}

/// Creates database `db` through the tsnode at `http`, retrying for 30 s
/// while its cluster elects a leader.
pub fn create_database_when_elected(http: &str, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::post(&format!("http://{http}/query"))
        .query("q", format!("CREATE DATABASE {db}"))
        .send_empty()
        .is_err()
    {
        assert!(Instant::now() < deadline, "tsnode never elected itself");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GET /status of the node at `http` (null when it does not answer).
pub fn status(http: &str) -> serde_json::Value {
    ureq::get(&format!("http://{http}/status"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default()
}

/// A counter of the node at `http`'s /metrics (0 when absent).
pub fn metric(http: &str, name: &str) -> f64 {
    let body = ureq::get(&format!("http://{http}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    body.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The HTTP address of the cluster's leader (waits up to 30 s).
pub fn leader_of(http: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for h in http {
            if status(h)["role"] == "leader" {
                return h.clone();
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A keep-alive HTTP client that returns every status as an answer (no
/// error) and gives a request 60 s.
pub fn keep_alive_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// CPU ticks (user, system; 100 per second here) a process used so far:
/// fields 14 and 15 of `/proc/<pid>/stat` (`pid` "self" for this one).
#[allow(dead_code)]
pub fn cpu_ticks(pid: &str) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    )
}

/// Line protocol of points `from..to` of the benches' `cpu` measurement:
/// `series` hosts taking turns, one point a second each from 2023-11-14,
/// a pseudo-random float `v` (and `n`, the point's number, when `int`).
#[allow(dead_code)]
pub fn cpu_body(from: u64, to: u64, series: u64, int: bool) -> String {
    let base = 1_700_000_000_000_000_000i64;
    (from..to)
        .map(|j| {
            let v = (j.wrapping_mul(2_654_435_761) % 1_000_003) as f64 / 7.0;
            let t = base + (j / series) as i64 * 1_000_000_000;
            if int {
                format!("cpu,host=h{} v={v},n={j}i {t}\n", j % series)
            } else {
                format!("cpu,host=h{} v={v} {t}\n", j % series)
            }
        })
        .collect()
}
