//! `tsnode demo`: a local 3-node cluster, in this process, on free loopback
//! ports. It writes generated records through raft, takes a snapshot, stops a
//! follower, writes more so the leader snapshots and compacts its log past
//! the follower, restarts the follower, shows its snapshot install, checks
//! that all three nodes hold the same state, and prints a summary.
//!
//! The state machine is [`BatchStore`](crate::batch_store::BatchStore) (state
//! in immutable files, like the time-series store); it becomes the
//! time-series store once that lands.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::batch_store::BatchStore;
use crate::cli::DemoArgs;
use crate::progress::Progress;
use crate::raft::{NodeConfig, NodeHandle};
use crate::snapshot::BoxError;

/// Records per proposal at most.
const MAX_BATCH: u64 = 5_000;
/// Proposals per half at least: more than `trailing_logs` (5), so that the
/// leader compacts past the stopped follower.
const MIN_PROPOSALS: u64 = 20;

struct Demo {
    dir: std::path::PathBuf,
    addrs: BTreeMap<u64, String>,
    nodes: BTreeMap<u64, NodeHandle<BatchStore>>,
}

impl Demo {
    async fn launch(
        &self,
        id: u64,
        listener: std::net::TcpListener,
    ) -> Result<NodeHandle<BatchStore>, BoxError> {
        let data = self.dir.join(format!("node{id}"));
        let mut cfg = NodeConfig::new(id, &data, self.addrs[&id].clone());
        cfg.peers = self.addrs.clone();
        cfg.tick = Duration::from_millis(50);
        cfg.snapshot_log_gap = 20;
        cfg.trailing_logs = 5;
        cfg.snapshot_interval = Duration::ZERO;
        let fsm = BatchStore::open(data.join("fsm"))?;
        let lookup = fsm.lookup();
        Ok(NodeHandle::start_with(cfg, fsm, listener, Some(lookup)).await?)
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

    async fn write(&self, label: &str, records: u64) -> Result<u64, BoxError> {
        let mut bar = Progress::items(label, records);
        let batch = (records / MIN_PROPOSALS).clamp(1, MAX_BATCH);
        let mut done = 0;
        let mut last = 0;
        while done < records {
            let n = batch.min(records - done);
            let leader = self.leader().await?;
            let (index, answer) = self.nodes[&leader]
                .propose(format!("records {n}").into_bytes())
                .await?;
            if answer != b"ok" {
                return Err(String::from_utf8_lossy(&answer).into_owned().into());
            }
            last = index;
            done += n;
            bar.set(done);
        }
        bar.finish();
        Ok(last)
    }

    fn state(&self, id: u64) -> (u64, u64, u32) {
        let g = self.nodes[&id]
            .executor()
            .state_machine()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let s = &g.state_machine.inner;
        (s.records(), s.bytes(), s.digest())
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
    };
    println!("raftsnap demo: a 3-node cluster in {}", dir.display());
    for (id, l) in listeners {
        let n = demo.launch(id, l).await?;
        println!("  node {id} on {}", demo.addrs[&id]);
        demo.nodes.insert(id, n);
    }
    let leader = demo.leader().await?;
    println!("  node {leader} is the leader");

    let half = (args.points / 2).max(MIN_PROPOSALS);
    println!("\n[1] write {half} records through raft");
    demo.write("records", half).await?;

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
        "\n[3] stop node {follower}, write {half} more records; the leader snapshots and compacts"
    );
    if let Some(n) = demo.nodes.remove(&follower) {
        n.shutdown().await;
    }
    let last = demo.write("records", half).await?;
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
        "  caught up in {:.2?}: {} install(s), {} bytes fetched, {} bytes reused from its own files",
        t.elapsed(),
        fs.snapshot.installs_total,
        fs.snapshot.install_bytes_total,
        fs.snapshot.reused_bytes_total
    );

    println!("\n[5] compare the three nodes");
    for n in demo.nodes.values() {
        n.wait_applied(last, Duration::from_secs(30)).await;
    }
    let states: BTreeMap<u64, (u64, u64, u32)> =
        demo.nodes.keys().map(|id| (*id, demo.state(*id))).collect();
    for (id, (records, bytes, digest)) in &states {
        println!("  node {id}: {records} records, {bytes} bytes, digest {digest:08x}");
    }
    let first = states.values().next().copied();
    if states.values().any(|s| Some(*s) != first) || fs.snapshot.installs_total == 0 {
        return Err("the nodes differ, or the follower did not install a snapshot".into());
    }
    let total = first.map_or(0, |s| s.0);
    println!(
        "\nsummary: {total} records on 3 nodes, snapshot index {}, {} bytes installed over the network, {} reused, in {:.2?}",
        meta.last_included_index,
        fs.snapshot.install_bytes_total,
        fs.snapshot.reused_bytes_total,
        started.elapsed()
    );
    if args.keep {
        println!("\n--keep: the cluster keeps running; gRPC addresses:");
        for (id, a) in &demo.addrs {
            println!("  node {id}: {a}");
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
