//! `tsnode serve` processes on free loopback ports for process tests; every
//! child is killed and reaped on drop.

use super::free_port;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One node's addresses and process.
pub struct Proc {
    pub id: u64,
    pub http: String,
    pub raft: String,
    pub snapshotter: String,
    pub child: Option<Child>,
    /// The raft address it joined through (`--join`), if it was added to
    /// the running cluster rather than started with it.
    pub join: Option<String>,
}

impl Proc {
    /// Node `id` on free loopback ports, not started; `join` is the raft
    /// address it joins through, if it is added to a running cluster.
    fn new(id: u64, join: Option<String>) -> Self {
        Proc {
            id,
            http: format!("127.0.0.1:{}", free_port()),
            raft: format!("127.0.0.1:{}", free_port()),
            snapshotter: format!("127.0.0.1:{}", free_port()),
            child: None,
            join,
        }
    }
}

/// A cluster of `tsnode` processes.
pub struct Procs {
    pub nodes: BTreeMap<u64, Proc>,
    pub dir: tempfile::TempDir,
    pub extra: Vec<String>,
    /// Environment variables given to every node.
    pub env: Vec<(String, String)>,
    /// When set, nodes run under `strace` with these options, writing
    /// `<dir>/strace.<id>` (tests that watch the real syscalls).
    pub strace: Option<Vec<String>>,
    /// When set, every node runs with this open-file limit (soft and hard).
    pub nofile: Option<u64>,
    /// The `Authorization` header the helpers send (a cluster with
    /// authentication on): see [`Procs::login`].
    pub auth: Option<String>,
    /// Flags for one node only (its certificate, say), by id.
    pub per_node: Option<PerNode>,
}

/// Flags for node `id` only.
pub type PerNode = Arc<dyn Fn(u64) -> Vec<String> + Send + Sync>;

impl Procs {
    /// Starts `n` nodes; `extra` flags go to every node. Ports come from
    /// [`free_port`], which another process may take before a node binds
    /// it: then every node is stopped and the cluster started again on new
    /// ports (up to 5 times).
    pub fn start(n: u64, extra: &[&str]) -> Self {
        Self::start_env(n, extra, &[])
    }

    /// Like [`start`](Self::start), with environment variables for every node.
    pub fn start_env(n: u64, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(n, extra, env, None, None, None)
    }

    /// Like [`start`](Self::start), with `per_node(id)` flags for each
    /// node (and for nodes that join later).
    pub fn start_per_node(n: u64, extra: &[&str], per_node: PerNode) -> Self {
        Self::start_with(n, extra, &[], None, None, Some(per_node))
    }

    /// Like [`start`](Self::start), every node limited to `nofile` open
    /// files (soft and hard).
    pub fn start_nofile(n: u64, extra: &[&str], nofile: u64) -> Self {
        Self::start_with(n, extra, &[], None, Some(nofile), None)
    }

    /// Like [`start`](Self::start), every node under `strace` with `opts`.
    pub fn start_traced(n: u64, extra: &[&str], opts: &[&str]) -> Self {
        Self::start_with(
            n,
            extra,
            &[],
            Some(opts.iter().map(|s| s.to_string()).collect()),
            None,
            None,
        )
    }

    fn start_with(
        n: u64,
        extra: &[&str],
        env: &[(&str, &str)],
        strace: Option<Vec<String>>,
        nofile: Option<u64>,
        per_node: Option<PerNode>,
    ) -> Self {
        for attempt in 1..=5 {
            let mut p = Self::spawn_all(n, extra, env, strace.clone(), nofile, per_node.clone());
            if p.wait_all_or_port_race() {
                return p;
            }
            eprintln!("a port was taken before a node bound it (attempt {attempt}); retrying");
            for id in 1..=n {
                p.kill(id);
            }
        }
        panic!("could not start {n} nodes on free ports in 5 attempts");
    }

    fn spawn_all(
        n: u64,
        extra: &[&str],
        env: &[(&str, &str)],
        strace: Option<Vec<String>>,
        nofile: Option<u64>,
        per_node: Option<PerNode>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nodes: BTreeMap<u64, Proc> = (1..=n).map(|id| (id, Proc::new(id, None))).collect();
        let mut p = Procs {
            nodes,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            strace,
            nofile,
            auth: None,
            per_node,
        };
        for id in 1..=n {
            p.spawn(id);
        }
        p
    }

    /// Waits for every node's /ping; false if one exited on a taken port.
    fn wait_all_or_port_race(&mut self) -> bool {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let deadline = Instant::now() + Duration::from_secs(30);
            while ureq::get(&format!("http://{}/ping", self.nodes[&id].http))
                .call()
                .is_err()
            {
                let exited = self
                    .nodes
                    .get_mut(&id)
                    .and_then(|n| n.child.as_mut())
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited {
                    let log = self.log(id);
                    assert!(log.contains("in use"), "node {id} exited at start: {log}");
                    return false;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} never answered: {}",
                    self.log(id)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        true
    }

    fn peers(&self) -> String {
        self.nodes
            .values()
            .filter(|n| n.join.is_none())
            .map(|n| format!("{}={}", n.id, n.raft))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// (Re)starts node `id` on its addresses and data.
    pub fn spawn(&mut self, id: u64) {
        self.spawn_env(id, &[]);
        // A node restarted on its old port may find it held a moment
        // longer (CI saw `Address already in use` twice): it is started
        // again, up to 10 times, while that is why it exited.
        for _ in 0..10 {
            let deadline = Instant::now() + Duration::from_secs(2);
            let exited = loop {
                let up = ureq::get(&format!("http://{}/ping", self.nodes[&id].http))
                    .call()
                    .is_ok();
                let gone = self
                    .nodes
                    .get_mut(&id)
                    .and_then(|n| n.child.as_mut())
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                if up || Instant::now() >= deadline {
                    break false;
                }
                if gone {
                    break true;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if !(exited && self.log(id).contains("in use")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
            self.spawn_env(id, &[]);
        }
    }

    /// (Re)starts node `id` with extra environment variables.
    pub fn spawn_env(&mut self, id: u64, env: &[(&str, &str)]) {
        let peers = self.peers();
        let data = self.dir.path().join(format!("node{id}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))
            .unwrap();
        let common_env = self.env.clone();
        let n = self.nodes.get(&id).unwrap();
        let mut cmd = match &self.strace {
            None => Command::new(env!("CARGO_BIN_EXE_tsnode")),
            Some(opts) => {
                let mut c = Command::new("strace");
                c.args(opts)
                    .arg("-o")
                    .arg(self.dir.path().join(format!("strace.{id}")))
                    .arg(env!("CARGO_BIN_EXE_tsnode"));
                c
            }
        };
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit (async-signal-safe) runs in the child
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .args([
                "serve",
                "--id",
                &id.to_string(),
                "--raft-addr",
                &n.raft,
                "--http-addr",
                &n.http,
            ])
            .args(match &n.join {
                Some(via) => ["--join", via],
                None => ["--peers", &peers],
            })
            .args(["--snapshotter-addr", &n.snapshotter])
            .arg("--data-dir")
            .arg(&data)
            .args(["--snapshot-interval", "0"])
            .args(&self.extra)
            .args(self.per_node.as_ref().map(|f| f(id)).unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(common_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tsnode");
        self.nodes.get_mut(&id).unwrap().child = Some(child);
    }

    /// The helpers send `user`'s credentials (HTTP Basic) from now on.
    pub fn login(&mut self, user: &str, password: &str) {
        self.auth = Some(super::http::basic(user, password));
    }

    fn authed<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    /// Starts a new node `id` with an empty data directory that joins the
    /// running cluster through node `via`; waits for its /ping.
    pub fn join(&mut self, id: u64, via: u64) {
        let join = Some(self.nodes[&via].raft.clone());
        self.nodes.insert(id, Proc::new(id, join));
        self.spawn(id);
        self.wait_http(id);
    }

    /// Saves a snapshot on `leader`, waits until its log is compacted past
    /// it (start the cluster with `--trailing-logs 0`), then starts node
    /// `id` joining through `leader` and waits until it installed a
    /// snapshot: the new member learns the state only from a snapshot.
    pub fn join_from_snapshot(&mut self, id: u64, leader: u64) {
        let snap = self.snapshot(leader)["index"].as_u64().unwrap_or(0);
        super::wait("the leader's log is compacted past the snapshot", || {
            let st = self.status(leader);
            super::check(
                st.as_ref()
                    .and_then(|s| s["first_log_index"].as_u64())
                    .is_some_and(|f| f > snap),
                || format!("{st:?}"),
            )
        });
        self.join(id, leader);
        super::wait("the new member installs a snapshot", || {
            let st = self.status(id);
            super::check(
                st.as_ref()
                    .and_then(|s| s["snapshot"]["installs_total"].as_u64())
                    .is_some_and(|n| n >= 1),
                || format!("{st:?}\n{}", self.log(id)),
            )
        });
    }

    /// A counter of node `id`'s /metrics (0 when absent).
    pub fn metric(&self, id: u64, name: &str) -> f64 {
        let body = self
            .authed(ureq::get(&format!(
                "http://{}/metrics",
                self.nodes[&id].http
            )))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        body.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until node `id` answers /ping.
    pub fn wait_http(&self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("http://{}/ping", self.nodes[&id].http))
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "node {id} never answered: {}",
                self.log(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to `secs`) for node `id` to exit by itself; its status.
    pub fn wait_exit(&mut self, id: u64, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let c = self.nodes.get_mut(&id)?.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.nodes.get_mut(&id)?.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        let traced = self.strace.is_some();
        if let Some(mut c) = self.nodes.get_mut(&id).unwrap().child.take() {
            if traced {
                // strace's tracee outlives a killed strace: kill it first.
                let _ = Command::new("pkill")
                    .args(["-KILL", "-P", &c.id().to_string()])
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Node `id`'s log.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }

    /// GET /status of node `id`.
    pub fn status(&self, id: u64) -> Option<serde_json::Value> {
        let mut r = self
            .authed(ureq::get(&format!(
                "http://{}/status",
                self.nodes[&id].http
            )))
            .call()
            .ok()?;
        serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
    }

    /// The leader all running nodes agree on (waits up to 30 s).
    pub fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let running: Vec<u64> = self
                .nodes
                .values()
                .filter(|n| n.child.is_some())
                .map(|n| n.id)
                .collect();
            let st: Vec<serde_json::Value> =
                running.iter().filter_map(|id| self.status(*id)).collect();
            let leaders: Vec<u64> = st
                .iter()
                .filter(|s| s["role"] == "leader")
                .map(|s| s["id"].as_u64().unwrap())
                .collect();
            if leaders.len() == 1
                && st.len() == running.len()
                && st
                    .iter()
                    .all(|s| s["leader_id"].as_u64() == Some(leaders[0]))
            {
                return leaders[0];
            }
            assert!(Instant::now() < deadline, "no agreed leader: {st:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// POST /query through node `id`; the JSON answer.
    pub fn query(&self, id: u64, db: &str, q: &str) -> serde_json::Value {
        let mut r = self
            .authed(ureq::post(&format!(
                "http://{}/query",
                self.nodes[&id].http
            )))
            .query("db", db)
            .query("q", q)
            .send_empty()
            .unwrap_or_else(|e| panic!("query {q} on node {id}: {e}"));
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// POST /write through node `id`; the status and body (status 0 when
    /// the request failed without an answer).
    pub fn write_answer(&self, id: u64, db: &str, body: &str) -> (u16, String) {
        let r = self
            .authed(ureq::post(&format!(
                "http://{}/write",
                self.nodes[&id].http
            )))
            .query("db", db)
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build()
            .send(body);
        match r {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    }

    /// POST /write through node `id`; true on 204.
    pub fn write(&self, id: u64, db: &str, body: &str) -> bool {
        self.authed(ureq::post(&format!(
            "http://{}/write",
            self.nodes[&id].http
        )))
        .query("db", db)
        .config()
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .send(body)
        .map(|r| r.status() == 204)
        .unwrap_or(false)
    }

    /// POST /snapshot on node `id`.
    pub fn snapshot(&self, id: u64) -> serde_json::Value {
        let mut r = self
            .authed(ureq::post(&format!(
                "http://{}/snapshot",
                self.nodes[&id].http
            )))
            .send_empty()
            .unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// What one writer saw: acknowledged batches (first ts, points), 5xx
/// answers, other failures.
pub type Tally = (Vec<(u64, u64)>, u64, u64);

/// Writes from `threads` connections until `stop`; (acknowledged batches
/// as (first ts, points), 5xx answers, other failures).
pub fn writers(
    p: &Procs,
    via: Vec<u64>,
    threads: usize,
    points: u64,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Tally>> {
    let next = Arc::new(AtomicU64::new(0));
    (0..threads)
        .map(|t| {
            let url = format!("http://{}/write?db=db", p.nodes[&via[t % via.len()]].http);
            let (stop, next) = (stop.clone(), next.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(20)))
                    .build()
                    .new_agent();
                let (mut acked, mut e5, mut other) = (Vec::new(), 0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    let first = b * points + 1;
                    let body: String = (first..first + points)
                        .map(|i| format!("m,s=s{} v={i} {}\n", i % 100, i * 1_000_000))
                        .collect();
                    match agent.post(&url).send(&body) {
                        Ok(r) if r.status() == 204 => acked.push((first, points)),
                        Ok(r) if r.status().as_u16() >= 500 => e5 += 1,
                        _ => other += 1,
                    }
                }
                (acked, e5, other)
            })
        })
        .collect()
}
