//! `tsnode demo`: a local 3-node cluster, in this process, on free loopback
//! ports. It writes generated records through raft, takes a snapshot, stops a
//! follower, writes more so the leader snapshots and compacts its log past
//! the follower, restarts the follower, shows its snapshot install, checks
//! that all three nodes hold the same state, and prints a summary.
//!
//! The state machine is the time-series store ([`Tsdb`]); each node also
//! serves the HTTP API, so `--keep` leaves a cluster that `curl` and the
//! `influx` CLI can talk to.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::DemoArgs;
use crate::progress::Progress;
use crate::proto::tsdb::{
    CreateDatabase, Field, Point, Tag, WritePoints, command::Cmd, field::Value as FieldV,
};
use crate::raft::ReadConsistency;
use crate::raft::{NodeConfig, NodeHandle};
use crate::snapshot::BoxError;
use crate::tsdb::fsm::{Tsdb, command};
use crate::tsdb::query::{execute_read, parse as parse_query};

/// The query every node must answer identically.
const CHECK: &str = "SELECT count(usage), sum(temp), max(usage) FROM cpu";

/// Points per proposal at most.
const MAX_BATCH: u64 = 5_000;
/// Proposals per half at least: more than `trailing_logs` (5), so that the
/// leader compacts past the stopped follower.
const MIN_PROPOSALS: u64 = 20;

struct Demo {
    dir: std::path::PathBuf,
    addrs: BTreeMap<u64, String>,
    nodes: BTreeMap<u64, NodeHandle<Tsdb>>,
    http: BTreeMap<u64, String>,
    written: u64,
}

impl Demo {
    async fn launch(
        &mut self,
        id: u64,
        listener: std::net::TcpListener,
    ) -> Result<NodeHandle<Tsdb>, BoxError> {
        let data = self.dir.join(format!("node{id}"));
        let mut cfg = NodeConfig::new(id, &data, self.addrs[&id].clone());
        cfg.peers = self.addrs.clone();
        cfg.tick = Duration::from_millis(50);
        cfg.snapshot_log_gap = 20;
        cfg.trailing_logs = 5;
        cfg.snapshot_interval = Duration::ZERO;
        let node = NodeHandle::start(cfg, Tsdb::open(data.join("tsdb"))?, listener).await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        self.http.insert(id, http.local_addr()?.to_string());
        let app = crate::server::http::router(
            node.clone(),
            Default::default(),
            Default::default(),
            Default::default(),
        );
        let n2 = node.clone();
        tokio::spawn(async move {
            let _ = axum::serve(http, app)
                .with_graceful_shutdown(async move { n2.stopped().await })
                .await;
        });
        Ok(node)
    }

    async fn leader(&self) -> Result<u64, BoxError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for n in self.nodes.values() {
                let s = n.status().await?;
                if s.role == "leader" {
                    return Ok(s.id);
                }
            }
            if Instant::now() > deadline {
                return Err("no leader elected within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn propose(&self, cmd: Cmd) -> Result<u64, BoxError> {
        let leader = self.leader().await?;
        let (index, r) = self.nodes[&leader].propose(&command(cmd)).await?;
        if !r.error.is_empty() {
            return Err(r.error.into());
        }
        Ok(index)
    }

    /// Writes `n` generated points (16 hosts, one point per host per second).
    async fn write(&mut self, label: &str, n: u64) -> Result<u64, BoxError> {
        let mut bar = Progress::items(label, n);
        let batch = (n / MIN_PROPOSALS).clamp(1, MAX_BATCH);
        let (mut done, mut last) = (0, 0);
        while done < n {
            let k = batch.min(n - done);
            let points = (self.written..self.written + k)
                .map(|g| Point {
                    measurement: "cpu".into(),
                    tags: vec![Tag {
                        key: "host".into(),
                        value: format!("h{:02}", g % 16),
                    }],
                    fields: vec![
                        Field {
                            key: "usage".into(),
                            value: Some(FieldV::Float((g % 1000) as f64 / 10.0)),
                        },
                        Field {
                            key: "temp".into(),
                            value: Some(FieldV::Integer((g % 50) as i64)),
                        },
                    ],
                    timestamp: 1_700_000_000_000_000_000 + (g / 16) as i64 * 1_000_000_000,
                })
                .collect();
            last = self
                .propose(Cmd::Write(WritePoints {
                    db: "demo".into(),
                    rp: String::new(),
                    points,
                }))
                .await?;
            self.written += k;
            done += k;
            bar.set(done);
        }
        bar.finish();
        Ok(last)
    }

    /// Node `id`'s answer to the check query.
    async fn answer(&self, id: u64) -> serde_json::Value {
        let q = match parse_query(CHECK, 0) {
            Ok(q) => q,
            Err(e) => return serde_json::json!({ "error": e }),
        };
        self.nodes[&id]
            .read(ReadConsistency::Stale, move |t, _| {
                execute_read(t, "demo", &q[0], None)
            })
            .await
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }
}

fn listener() -> Result<std::net::TcpListener, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
}

/// Runs the demo; prints each step; fails if any check fails.
pub fn run(args: &DemoArgs) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: &DemoArgs) -> Result<(), BoxError> {
    let tmp;
    let dir: &Path = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path()
        }
    };
    let started = Instant::now();
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(id, listener()?);
    }
    let addrs = listeners
        .iter()
        .map(|(id, l)| Ok((*id, l.local_addr()?.to_string())))
        .collect::<Result<BTreeMap<_, _>, std::io::Error>>()?;
    let mut demo = Demo {
        dir: dir.to_path_buf(),
        addrs,
        nodes: BTreeMap::new(),
        http: BTreeMap::new(),
        written: 0,
    };
    println!("raftsnap demo: a 3-node cluster in {}", dir.display());
    for (id, l) in listeners {
        let n = demo.launch(id, l).await?;
        println!(
            "  node {id}: raft {} http {}",
            demo.addrs[&id], demo.http[&id]
        );
        demo.nodes.insert(id, n);
    }
    let leader = demo.leader().await?;
    println!("  node {leader} is the leader");

    demo.propose(Cmd::CreateDatabase(CreateDatabase {
        name: "demo".into(),
    }))
    .await?;
    let half = (args.points / 2).max(MIN_PROPOSALS);
    println!("\n[1] CREATE DATABASE demo; write {half} points through raft");
    demo.write("points", half).await?;

    println!("\n[2] snapshot on the leader");
    let t = Instant::now();
    let meta = demo.nodes[&leader].snapshot_now().await?;
    let st = demo.nodes[&leader].status().await?;
    println!(
        "  snapshot {} in {:.0?}: {} files, {} bytes, hard-linked (nothing copied)",
        meta.last_included_index,
        t.elapsed(),
        st.snapshot.files,
        st.snapshot.bytes
    );

    let follower = *demo
        .nodes
        .keys()
        .find(|i| **i != leader)
        .ok_or("no follower")?;
    println!(
        "\n[3] stop node {follower}, write {half} more points; the leader snapshots and compacts"
    );
    if let Some(n) = demo.nodes.remove(&follower) {
        n.shutdown().await;
    }
    let last = demo.write("points", half).await?;
    let meta = demo.nodes[&leader].snapshot_now().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let ls = loop {
        let s = demo.nodes[&leader].status().await?;
        if s.first_log_index > 1 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "  snapshot {}; leader's log now holds entries {}..={} (node {follower} stopped near the start)",
        meta.last_included_index, ls.first_log_index, ls.last_log_index
    );

    println!("\n[4] restart node {follower}: it installs the leader's snapshot");
    let l = rebind(&demo.addrs[&follower]).await?;
    let n = demo.launch(follower, l).await?;
    demo.nodes.insert(follower, n.clone());
    let t = Instant::now();
    let mut bar = Progress::bytes("install", ls.snapshot.bytes.max(1));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !n.wait_applied(last, Duration::from_millis(50)).await {
        if let Some(i) = n.status().await?.snapshot.install {
            bar.set_total(i.bytes_total.max(1));
            bar.set(i.bytes_done);
        }
        if Instant::now() > deadline {
            return Err(format!("node {follower} did not catch up within 120 s").into());
        }
    }
    bar.finish();
    let fs = n.status().await?;
    println!(
        "  caught up in {:.2?}: {} install(s), {} bytes fetched, {} bytes reused",
        t.elapsed(),
        fs.snapshot.installs_total,
        fs.snapshot.install_bytes_total,
        fs.snapshot.reused_bytes_total
    );

    println!("\n[5] compare the three nodes");
    for n in demo.nodes.values() {
        n.wait_applied(last, Duration::from_secs(30)).await;
    }
    println!("  {CHECK}");
    let mut answers: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    for id in demo.nodes.keys() {
        answers.insert(*id, demo.answer(*id).await);
    }
    for (id, a) in &answers {
        println!("  node {id}: {}", a["series"][0]["values"][0]);
    }
    let first = answers.values().next().cloned().unwrap_or_default();
    let total = first["series"][0]["values"][0][1].as_u64().unwrap_or(0);
    if answers.values().any(|a| a != &first)
        || total != demo.written
        || fs.snapshot.installs_total == 0
    {
        return Err("the nodes answer differently, points are missing, or the follower did not install a snapshot".into());
    }
    println!(
        "\nsummary: {total} points on 3 nodes, snapshot index {}, {} bytes installed over the network, {} reused, in {:.2?}",
        meta.last_included_index,
        fs.snapshot.install_bytes_total,
        fs.snapshot.reused_bytes_total,
        started.elapsed()
    );
    if args.keep {
        println!("\n--keep: the cluster keeps running (database `demo`):");
        for (id, a) in &demo.addrs {
            println!("  node {id}: http {} raft {a}", demo.http[id]);
        }
        if let Some(h) = demo.http.values().next() {
            println!("  try: curl -G 'http://{h}/query?db=demo' --data-urlencode 'q={CHECK}'");
        }
        println!("press Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    futures::future::join_all(demo.nodes.values().map(|n| n.shutdown())).await;
    Ok(())
}

async fn rebind(addr: &str) -> Result<std::net::TcpListener, BoxError> {
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind(addr) {
            return Ok(l);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("cannot bind {addr} again").into())
}
