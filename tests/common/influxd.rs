//! A real `influxd` 1.6.7 (Debian package `influxdb`) on free loopback ports,
//! for interop tests. Outside CI a missing `influxd` skips the test with a
//! message; under CI (`CI` set) it fails it.

use super::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running influxd, killed on drop.
pub struct Influxd {
    pub http: String,
    pub bind: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// `Some(path)` of influxd; `None` (after saying why) when a test should
/// skip; panics under CI, where `.ci/run` installs it.
pub fn binary(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{tool} is missing under CI: .ci/run must install Debian's influxdb and influxdb-client"
            );
        }
        eprintln!(
            "SKIPPED: {tool} not found; install Debian's `influxdb` and `influxdb-client` to run the interop tests"
        );
    }
    found
}

/// Runs `influxd <backup|restore> -portable -host <host> [args] <dir>`;
/// panics with its output and `context` (e.g. the server's log) on failure.
pub fn portable(cmd: &str, host: &str, args: &[&str], dir: &Path, context: impl Fn() -> String) {
    let o = Command::new(binary("influxd").expect("influxd"))
        .args([cmd, "-portable", "-host", host])
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "influxd {cmd} -host {host} {args:?} failed: {}{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        context()
    );
}

impl Influxd {
    /// Starts influxd with its data in a fresh temp dir; waits for /ping.
    /// If another process took a port between [`free_port`] and influxd's
    /// bind, it starts again on new ports (up to 5 times).
    pub fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// Like [`start`](Self::start), with more keys for its `[http]` section.
    pub fn start_with(http_extra: &str) -> Option<Self> {
        Self::start_sections(http_extra, "")
    }

    /// Like [`start_with`](Self::start_with), with more keys for its
    /// `[data]` section too.
    pub fn start_sections(http_extra: &str, data_extra: &str) -> Option<Self> {
        let exe = binary("influxd")?;
        for _ in 0..5 {
            if let Some(me) = Self::try_start(&exe, http_extra, data_extra) {
                return Some(me);
            }
            eprintln!("influxd lost a port race; retrying on new ports");
        }
        panic!("influxd could not start on free ports in 5 attempts");
    }

    fn try_start(exe: &Path, http_extra: &str, data_extra: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (http, bind) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );
        let d = dir.path().display();
        let cfg = format!(
            "reporting-disabled = true\nbind-address = \"{bind}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n{data_extra}\n\
             [http]\n  bind-address = \"{http}\"\n  log-enabled = false\n{http_extra}\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n"
        );
        std::fs::write(dir.path().join("influxdb.conf"), cfg).unwrap();
        let child = Command::new(exe)
            .arg("-config")
            .arg(dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("influxd.log")).unwrap())
            .spawn()
            .expect("start influxd");
        let mut me = Influxd {
            http,
            bind,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("http://{}/ping", me.http))
            .call()
            .is_err()
        {
            if matches!(me.child.try_wait(), Ok(Some(_))) {
                let log = me.log();
                assert!(
                    log.contains("address already in use"),
                    "influxd exited: {log}"
                );
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "influxd did not answer /ping: {}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(me)
    }

    /// Stops influxd (SIGKILL, waited for), runs `between` on its data
    /// directory, and starts it again on the same ports and config.
    #[allow(dead_code)]
    pub fn restart_with(&mut self, between: impl FnOnce(&Path)) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        between(self.dir.path());
        let exe = binary("influxd").expect("influxd");
        self.child = Command::new(exe)
            .arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("influxd.log")).unwrap())
            .spawn()
            .expect("start influxd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("http://{}/ping", self.http))
            .call()
            .is_err()
        {
            assert!(
                !matches!(self.child.try_wait(), Ok(Some(_))),
                "influxd exited on restart: {}",
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "influxd did not answer /ping after a restart: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// influxd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }

    /// Runs an InfluxQL statement; returns the JSON answer (times in ns).
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let mut r = ureq::post(&format!("http://{}/query", self.http))
            .query("db", db)
            .query("q", q)
            .query("epoch", "ns")
            .send_empty()
            .unwrap_or_else(|e| panic!("query {q}: {e}"));
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// Writes line protocol (ns precision).
    pub fn write(&self, db: &str, body: &str) {
        ureq::post(&format!("http://{}/write", self.http))
            .query("db", db)
            .send(body)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// Runs `influxd backup -portable [args] dir` against this server.
    pub fn backup(&self, args: &[&str], out: &Path) {
        portable("backup", &self.bind, args, out, || self.log());
    }

    /// Runs `influxd restore -portable [args] dir` against this server.
    pub fn restore(&self, args: &[&str], dir: &Path) {
        portable("restore", &self.bind, args, dir, || self.log());
    }

    /// The rows of `SELECT <field> FROM <m>` as (time, value) pairs, waiting
    /// up to 30 s for `want` rows (a restore applies asynchronously).
    pub fn rows(&self, db: &str, q: &str, want: usize) -> Vec<(i64, serde_json::Value)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let j = self.query(db, q);
            let rows: Vec<(i64, serde_json::Value)> = j["results"][0]["series"][0]["values"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .map(|r| (r[0].as_i64().unwrap(), r[1].clone()))
                        .collect()
                })
                .unwrap_or_default();
            if rows.len() >= want || Instant::now() > deadline {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
